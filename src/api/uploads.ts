import { isUtf8 } from 'node:buffer';
import busboy from 'busboy';
import type { Request } from 'express';
import { fileFormat, MEDIA_TYPES, type FileFormat } from '../ingest/index.js';
import { HttpError } from './errors.js';

export interface UploadLimits {
  maxFileBytes: number;
  maxRequestBytes: number;
  maxFiles: number;
}

export interface UploadedFile {
  /** The multipart field it came in (index in the request for error messages). */
  field: string;
  index: number;
  /** The client's file name, without any directory part. */
  name: string;
  mimeType: string;
  format: FileFormat;
  bytes: Buffer;
}

export interface MultipartUpload {
  files: UploadedFile[];
  fields: Map<string, string>;
}

const MAX_FIELD_BYTES = 64 * 1024;
const MAX_FIELDS = 20;

/** A file's format from its name's extension, else from its declared media type. */
function formatOf(name: string, mimeType: string): FileFormat | undefined {
  return fileFormat(name) ?? MEDIA_TYPES.get(mimeType.split(';')[0]!.trim().toLowerCase());
}

function baseName(name: string): string {
  return name.split(/[\\/]/).pop() ?? name;
}

/**
 * busboy is given latin1 for parameters and field values, which keeps their bytes one per character, so that bytes
 * that are not UTF-8 are refused here instead of becoming U+FFFD in an id the client never sent. A character above
 * U+00FF means busboy already decoded the text from a charset the part declared (`filename*=utf-8''…`); that text
 * is refused when it holds U+FFFD, the mark of bytes its decoder could not read.
 */
function strictUtf8(text: string): string | undefined {
  if (/[^\u0000-\u00ff]/.test(text)) return text.includes('\ufffd') ? undefined : text;
  const bytes = Buffer.from(text, 'latin1');
  return isUtf8(bytes) ? bytes.toString('utf8') : undefined;
}

const malformed = (err: Error) => new HttpError(400, 'invalid_request', `malformed multipart request: ${err.message}`, { field: '(body)' });

const tooLarge = (message: string) => new HttpError(413, 'payload_too_large', message, { field: 'files' });

/**
 * Reads a multipart/form-data body with busboy: files in memory within the per-file and per-request limits, text
 * fields as strings. Every refusal is decided while reading — an unsupported type (415), a file or request over its
 * limit (413) — so nothing is written for a request that fails.
 */
export function readMultipart(req: Request, limits: UploadLimits): Promise<MultipartUpload> {
  if (!req.is('multipart/form-data')) {
    return Promise.reject(
      new HttpError(415, 'unsupported_media_type', 'send files as multipart/form-data, one part per file', { field: '(body)' }),
    );
  }
  const declared = Number(req.headers['content-length']);
  if (Number.isFinite(declared) && declared > limits.maxRequestBytes) {
    req.resume();
    return Promise.reject(tooLarge(`request body of ${declared} bytes exceeds the request limit of ${limits.maxRequestBytes} bytes`));
  }
  return new Promise((resolve, reject) => {
    let parser: busboy.Busboy;
    try {
      parser = busboy({
        headers: req.headers,
        limits: {
          fileSize: limits.maxFileBytes,
          files: limits.maxFiles,
          fields: MAX_FIELDS,
          fieldSize: MAX_FIELD_BYTES,
          parts: limits.maxFiles + MAX_FIELDS,
        },
        defParamCharset: 'latin1',
        defCharset: 'latin1',
      });
    } catch (err) {
      reject(malformed(err as Error));
      return;
    }
    const files: UploadedFile[] = [];
    const fields = new Map<string, string>();
    let total = 0;
    let parts = 0;
    let failed = false;
    const fail = (err: HttpError) => {
      if (failed) return;
      failed = true;
      req.unpipe(parser);
      // Drain the rest so the client sees the error response instead of a reset connection.
      req.resume();
      reject(err);
    };

    parser.on('file', (field, stream, info) => {
      const index = parts++;
      // A truncated body ends the file stream with an error; without a listener it would take the process down.
      stream.on('error', (err: Error) => fail(malformed(err)));
      const decoded = strictUtf8(info.filename ?? '');
      if (decoded === undefined) {
        stream.resume();
        fail(new HttpError(400, 'invalid_utf8', `files.${index}: the file name is not valid UTF-8`, { field: `files.${index}` }));
        return;
      }
      const name = baseName(decoded);
      const format = formatOf(name, info.mimeType);
      if (!format) {
        stream.resume();
        const ext = name.includes('.') ? `"${name.slice(name.lastIndexOf('.'))}"` : 'no extension';
        fail(
          new HttpError(
            415,
            'unsupported_media_type',
            `files.${index} (${JSON.stringify(name)}): unsupported type ${JSON.stringify(info.mimeType)} with ${ext}; ` +
              'upload PDF, DOCX, Markdown, HTML or plain text',
            { field: `files.${index}` },
          ),
        );
        return;
      }
      if (name === '') {
        stream.resume();
        fail(
          new HttpError(400, 'invalid_request', `files.${index}: a file part needs a file name (it becomes the document id)`, {
            field: `files.${index}`,
          }),
        );
        return;
      }
      const chunks: Buffer[] = [];
      stream.on('data', (chunk: Buffer) => {
        total += chunk.length;
        if (total > limits.maxRequestBytes) fail(tooLarge(`the files exceed the request limit of ${limits.maxRequestBytes} bytes`));
        else chunks.push(chunk);
      });
      stream.on('limit', () =>
        fail(tooLarge(`files.${index} (${JSON.stringify(name)}) exceeds the file limit of ${limits.maxFileBytes} bytes`)),
      );
      stream.on('end', () => {
        if (!failed) files.push({ field, index, name, mimeType: info.mimeType, format, bytes: Buffer.concat(chunks) });
      });
    });
    parser.on('field', (rawName, rawValue, info) => {
      const name = strictUtf8(rawName);
      const value = strictUtf8(rawValue);
      if (name === undefined) fail(new HttpError(400, 'invalid_utf8', 'a form field name is not valid UTF-8', { field: '(body)' }));
      else if (value === undefined)
        fail(new HttpError(400, 'invalid_utf8', `field ${JSON.stringify(name)} is not valid UTF-8`, { field: name }));
      else if (info.valueTruncated) fail(tooLarge(`field ${JSON.stringify(name)} exceeds ${MAX_FIELD_BYTES} bytes`));
      else fields.set(name, value);
    });
    parser.on('filesLimit', () => fail(tooLarge(`at most ${limits.maxFiles} files per request`)));
    parser.on('fieldsLimit', () => fail(tooLarge(`at most ${MAX_FIELDS} fields per request`)));
    parser.on('partsLimit', () => fail(tooLarge('too many parts in the request')));
    parser.on('error', (err: Error) => fail(malformed(err)));
    parser.on('close', () => {
      if (failed) return;
      if (files.length === 0) {
        fail(new HttpError(400, 'invalid_request', 'no files in the request: send one multipart part per file', { field: 'files' }));
        return;
      }
      resolve({ files, fields });
    });
    req.on('aborted', () => fail(new HttpError(499, 'client_closed', 'client closed the connection')));
    req.on('error', (err: Error) => fail(malformed(err)));
    req.pipe(parser);
  });
}
