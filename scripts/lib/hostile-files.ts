/**
 * Hostile and oversized files for the upload limits (issue 24), built here by a small zip writer and a small PDF
 * writer so tests and `npm run bench:upload-limits` read the same ones: DOCX and PDF decompression bombs, a zip whose
 * central directory lies, PDFs of many pages, and Markdown with a heading every ~80 characters.
 */
import { deflateRawSync, deflateSync } from 'node:zlib';

export interface ZipEntry {
  name: string;
  data: Uint8Array;
  /** What the central directory claims the entry inflates to (a lie when it differs from `data`). */
  declaredSize?: number;
}

/** A zip of deflated entries. CRCs are left 0: JSZip, like mammoth's use of it, does not check them. */
export function zip(entries: ZipEntry[]): Buffer {
  const locals: Buffer[] = [];
  const centrals: Buffer[] = [];
  let offset = 0;
  for (const e of entries) {
    const name = Buffer.from(e.name);
    const raw = deflateRawSync(e.data, { level: 9 });
    const declared = e.declaredSize ?? e.data.length;
    const local = Buffer.alloc(30);
    local.writeUInt32LE(0x04034b50, 0);
    local.writeUInt16LE(20, 4);
    local.writeUInt16LE(8, 8);
    local.writeUInt32LE(raw.length, 18);
    local.writeUInt32LE(declared, 22);
    local.writeUInt16LE(name.length, 26);
    const central = Buffer.alloc(46);
    central.writeUInt32LE(0x02014b50, 0);
    central.writeUInt16LE(20, 4);
    central.writeUInt16LE(20, 6);
    central.writeUInt16LE(8, 10);
    central.writeUInt32LE(raw.length, 20);
    central.writeUInt32LE(declared, 24);
    central.writeUInt16LE(name.length, 28);
    central.writeUInt32LE(offset, 42);
    locals.push(local, name, raw);
    centrals.push(central, name);
    offset += 30 + name.length + raw.length;
  }
  const directory = Buffer.concat(centrals);
  const end = Buffer.alloc(22);
  end.writeUInt32LE(0x06054b50, 0);
  end.writeUInt16LE(entries.length, 8);
  end.writeUInt16LE(entries.length, 10);
  end.writeUInt32LE(directory.length, 12);
  end.writeUInt32LE(offset, 16);
  return Buffer.concat([...locals, directory, end]);
}

const W = 'http://schemas.openxmlformats.org/wordprocessingml/2006/main';
const DOCX_PARTS: ZipEntry[] = [
  {
    name: '[Content_Types].xml',
    data: Buffer.from(
      '<?xml version="1.0" encoding="UTF-8"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">' +
        '<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/><Default Extension="xml" ContentType="application/xml"/></Types>',
    ),
  },
  {
    name: '_rels/.rels',
    data: Buffer.from(
      '<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">' +
        '<Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument" Target="word/document.xml"/></Relationships>',
    ),
  },
];

/** A DOCX whose document.xml is one paragraph and then `spaces` spaces (a thousandfold compression). */
export function docxBomb(spaces: number, declaredSize?: number, extraEntries = 0): Buffer {
  const xml = Buffer.concat([
    Buffer.from(`<?xml version="1.0" encoding="UTF-8"?><w:document xmlns:w="${W}"><w:body><w:p><w:r><w:t>Bomb text</w:t></w:r></w:p>`),
    Buffer.alloc(spaces, 0x20),
    Buffer.from('</w:body></w:document>'),
  ]);
  const extra = Array.from({ length: extraEntries }, (_, i) => ({ name: `customXml/item${i}.xml`, data: Buffer.from('<a/>') }));
  return zip([...DOCX_PARTS, { name: 'word/document.xml', data: xml, declaredSize }, ...extra]);
}

export interface PdfStream {
  dict: string;
  data: Buffer;
}

/**
 * A minimal PDF: Helvetica, `pages` pages sharing one content stream (so 20,000 pages are ~3 MB), or each with the
 * stream `content` gives it; `extra` streams are added as objects no page uses.
 */
export function minimalPdf(pages: number, content?: (n: number) => PdfStream, extra: PdfStream[] = []): Buffer {
  const parts: Buffer[] = [];
  const offsets: number[] = [];
  let length = 0;
  const push = (b: Buffer | string) => {
    const buf = typeof b === 'string' ? Buffer.from(b, 'latin1') : b;
    parts.push(buf);
    length += buf.length;
  };
  const object = (id: number, body: string, stream?: PdfStream) => {
    offsets[id] = length;
    push(`${id} 0 obj\n`);
    if (stream) {
      push(`<< /Length ${stream.data.length}${stream.dict} >>\nstream\n`);
      push(stream.data);
      push('\nendstream');
    } else push(body);
    push('\nendobj\n');
  };
  push('%PDF-1.4\n%\xe2\xe3\xcf\xd3\n');
  const firstPage = 5 + extra.length;
  const pageId = (i: number) => firstPage + (content ? 2 * i : i);
  object(1, '<< /Type /Catalog /Pages 2 0 R >>');
  object(2, `<< /Type /Pages /Kids [${Array.from({ length: pages }, (_, i) => `${pageId(i)} 0 R`).join(' ')}] /Count ${pages} >>`);
  object(3, '<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>');
  object(4, '', { dict: '', data: Buffer.from('BT /F1 12 Tf 72 720 Td (A page of the long report about glaciers) Tj ET') });
  extra.forEach((s, i) => object(5 + i, '', s));
  for (let i = 0; i < pages; i++) {
    const contents = content ? pageId(i) + 1 : 4;
    object(
      pageId(i),
      `<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 3 0 R >> >> /Contents ${contents} 0 R >>`,
    );
    if (content) object(contents, '', content(i + 1));
  }
  const count = content ? firstPage + 2 * pages : firstPage + pages;
  const xref = length;
  push(`xref\n0 ${count}\n0000000000 65535 f \n`);
  for (let id = 1; id < count; id++) push(`${String(offsets[id]).padStart(10, '0')} 00000 n \n`);
  push(`trailer\n<< /Size ${count} /Root 1 0 R >>\nstartxref\n${xref}\n%%EOF\n`);
  return Buffer.concat(parts);
}

export const flate = (data: Buffer): PdfStream => ({ dict: ' /Filter /FlateDecode', data: deflateSync(data, { level: 9 }) });
export const pageText = (n: number) => Buffer.from(`BT /F1 12 Tf 72 720 Td (Page ${n} is about moraines) Tj ET\n`);
/** One page whose content stream is its text and then `spaces` spaces, deflated. */
export const pdfBomb = (spaces: number) => minimalPdf(1, (n) => flate(Buffer.concat([pageText(n), Buffer.alloc(spaces, 0x20)])));

/** A Markdown text of ~`chars` characters with a heading every ~80 characters (a long layout), numbered to be unique. */
export function headingDenseMarkdown(chars: number): string {
  const parts: string[] = [];
  let length = 0;
  for (let n = 0; length < chars; n++) {
    const part = `${'#'.repeat(1 + (n % 6))} Heading ${n} on topic ${n % 97}\n\nA short paragraph ${n} explains one detail.\n\n`;
    parts.push(part);
    length += part.length;
  }
  return parts.join('');
}
