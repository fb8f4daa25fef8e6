import mammoth from 'mammoth';
import { parseHtml } from './html.js';
import { UnreadableFileError, type ParsedFile } from './types.js';

/**
 * DOCX through mammoth, which maps Word's heading styles to <h1>…<h6>, then the HTML path, so headings give the
 * section path exactly as in HTML.
 */
export async function parseDocx(bytes: Uint8Array, fallbackTitle: string): Promise<ParsedFile> {
  let html: string;
  try {
    ({ value: html } = await mammoth.convertToHtml({ buffer: Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength) }));
  } catch (err) {
    throw new UnreadableFileError(`not a readable DOCX file: ${(err as Error).message}`);
  }
  return parseHtml(html, fallbackTitle);
}
