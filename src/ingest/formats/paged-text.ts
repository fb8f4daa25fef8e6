import type { TextLayout } from '../types.js';
import { FileLimitError, type OcrOptions, type ParseLimits } from './types.js';

/** One page's text, from the text layer or from OCR (then with tesseract's confidence). */
export interface PageText {
  page: number;
  text: string;
  ocrConfidence?: number;
}

const PAGE_SEPARATOR = '\n\n';

/** Pages → the document's text and page spans; a page without text gets no span (nor does the gap between pages). */
export function assemblePages(pages: readonly PageText[]): { text: string; layout: TextLayout } {
  let text = '';
  const spans: NonNullable<TextLayout['pages']> = [];
  for (const { page, text: pageText, ocrConfidence } of pages) {
    if (pageText === '') continue;
    if (text !== '') text += PAGE_SEPARATOR;
    spans.push({ page, start: text.length, end: text.length + pageText.length, ...(ocrConfidence !== undefined ? { ocrConfidence } : {}) });
    text += pageText;
  }
  return { text, layout: { pages: spans } };
}

/**
 * Refuses, before any page is OCR'd, a file that needs OCR on more pages than it may have: `ingest.ocr.maxPages`, or
 * for uploads `documents.upload.maxOcrPages` when that is lower. 413, like a PDF over `maxPdfPages`.
 */
export function ocrPageBudget(needed: number, ocr: OcrOptions, limits: Pick<ParseLimits, 'maxOcrPages'> | undefined, what: string): void {
  const upload = limits !== undefined && limits.maxOcrPages < ocr.maxPages;
  const max = upload ? limits.maxOcrPages : ocr.maxPages;
  if (needed <= max) return;
  const setting = upload ? 'documents.upload.maxOcrPages' : 'ingest.ocr.maxPages';
  throw new FileLimitError(`the ${what} needs OCR on ${needed} pages; at most ${max} are OCR'd per file (${setting})`, 413);
}
