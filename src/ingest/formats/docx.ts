import JSZip from 'jszip';
import mammoth from 'mammoth';
import { parseHtml } from './html.js';
import { FileLimitError, UnreadableFileError, type ParsedFile, type ParseLimits } from './types.js';

type DocxLimits = Pick<ParseLimits, 'maxDocxInflatedBytes' | 'maxDocxEntries'>;

/**
 * The archive as mammoth reads it (its `openZip` accepts one as `file`): parts by name, each inflated when mammoth
 * asks for it. Reading through it is what bounds the memory of a DOCX: mammoth unpacks with JSZip into memory, and
 * a 971 KB archive inflated to 1 GB of XML took ~1 GB of RSS.
 */
interface MammothArchive {
  exists(name: string): boolean;
  read(name: string, encoding?: string): Promise<Uint8Array | string>;
}

const END_OF_CENTRAL_DIRECTORY = 0x06054b50;
const ZIP64_LOCATOR = 0x07064b50;
const ZIP64_END_OF_CENTRAL_DIRECTORY = 0x06064b50;
const EOCD_BYTES = 22;
const MAX_COMMENT_BYTES = 0xffff;

/**
 * Entries the end-of-central-directory record declares (its ZIP64 form too), read before JSZip builds an object per
 * entry; undefined when there is no such record (JSZip then says why the file is no archive). The record is found
 * as JSZip finds it: the last signature within the final 22 + 65,535 bytes.
 */
function declaredEntryCount(bytes: Uint8Array): number | undefined {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  for (let at = bytes.length - EOCD_BYTES; at >= 0 && at >= bytes.length - EOCD_BYTES - MAX_COMMENT_BYTES; at--) {
    if (view.getUint32(at, true) !== END_OF_CENTRAL_DIRECTORY) continue;
    const count = view.getUint16(at + 10, true);
    const locator = at - 20;
    if (count !== 0xffff || locator < 0 || view.getUint32(locator, true) !== ZIP64_LOCATOR) return count;
    const record = Number(view.getBigUint64(locator + 8, true));
    if (record + 56 > bytes.length || view.getUint32(record, true) !== ZIP64_END_OF_CENTRAL_DIRECTORY) return count;
    return Number(view.getBigUint64(record + 32, true));
  }
  return undefined;
}

/** The uncompressed size the central directory declares; JSZip keeps it on an object its typings leave out. */
function declaredSize(entry: JSZip.JSZipObject): number | undefined {
  const size = (entry as { _data?: { uncompressedSize?: unknown } })._data?.uncompressedSize;
  return typeof size === 'number' && size >= 0 ? size : undefined;
}

const tooLarge = (limit: number) =>
  new FileLimitError(
    `the DOCX inflates to more than ${limit} bytes (documents.upload.maxDocxInflatedBytes): a zip bomb or too large to read`,
    413,
  );

/**
 * The archive's parts, inflated on demand within one budget for the whole file. Declared sizes are checked before a
 * part is inflated, and the bytes are counted while it is, since the central directory may lie.
 */
async function openArchive(bytes: Uint8Array, limits: DocxLimits): Promise<MammothArchive> {
  const entries = declaredEntryCount(bytes);
  if (entries !== undefined && entries > limits.maxDocxEntries) {
    throw new FileLimitError(
      `the DOCX archive declares ${entries} entries; at most ${limits.maxDocxEntries} are read (documents.upload.maxDocxEntries)`,
      413,
    );
  }
  let zip: JSZip;
  try {
    zip = await JSZip.loadAsync(bytes);
  } catch (err) {
    throw new UnreadableFileError(`not a readable DOCX file: ${(err as Error).message}`);
  }
  const count = Object.keys(zip.files).length;
  if (count > limits.maxDocxEntries) {
    throw new FileLimitError(
      `the DOCX archive has ${count} entries; at most ${limits.maxDocxEntries} are read (documents.upload.maxDocxEntries)`,
      413,
    );
  }
  const budget = limits.maxDocxInflatedBytes;
  let inflated = 0;
  const inflate = (entry: JSZip.JSZipObject): Promise<Uint8Array> => {
    const declared = declaredSize(entry);
    if (declared !== undefined && inflated + declared > budget) return Promise.reject(tooLarge(budget));
    return new Promise((resolve, reject) => {
      const chunks: Buffer[] = [];
      const stream = entry.nodeStream('nodebuffer');
      stream.on('data', (chunk: Buffer) => {
        inflated += chunk.length;
        if (inflated <= budget) {
          chunks.push(chunk);
          return;
        }
        // Left paused, JSZip inflates nothing more; what it made so far is garbage once this promise settles.
        stream.pause();
        stream.removeAllListeners('data');
        chunks.length = 0;
        reject(tooLarge(budget));
      });
      stream.on('error', (err: Error) => reject(new UnreadableFileError(`not a readable DOCX file: ${entry.name}: ${err.message}`)));
      stream.on('end', () => resolve(Buffer.concat(chunks)));
    });
  };
  return {
    exists: (name) => zip.file(name) !== null,
    read: async (name, encoding) => {
      const entry = zip.file(name);
      if (!entry) throw new UnreadableFileError(`not a readable DOCX file: no part ${name}`);
      const data = await inflate(entry);
      if (encoding === 'base64') return Buffer.from(data.buffer, data.byteOffset, data.byteLength).toString('base64');
      return encoding ? new TextDecoder(encoding).decode(data) : data;
    },
  };
}

/** Images are not indexed: mammoth is told not to read them at all, so their bytes are never inflated. */
const SKIP_IMAGES = mammoth.images.imgElement(() => Promise.resolve({ src: '' }));

/**
 * DOCX through mammoth, which maps Word's heading styles to <h1>…<h6>, then the HTML path, so headings give the
 * section path exactly as in HTML. With `limits` (uploads), the archive is read within them.
 */
export async function parseDocx(bytes: Uint8Array, fallbackTitle: string, limits?: DocxLimits): Promise<ParsedFile> {
  const buffer = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let html: string;
  try {
    const input = limits ? ({ file: await openArchive(bytes, limits) } as unknown as { buffer: Buffer }) : { buffer };
    ({ value: html } = await mammoth.convertToHtml(input, { convertImage: SKIP_IMAGES }));
  } catch (err) {
    if (err instanceof UnreadableFileError) throw err;
    throw new UnreadableFileError(`not a readable DOCX file: ${(err as Error).message}`);
  }
  return parseHtml(html, fallbackTitle);
}
