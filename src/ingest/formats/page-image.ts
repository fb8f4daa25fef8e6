import { renderPageAsImage } from 'unpdf';
import type { getDocumentProxy } from 'unpdf';

/**
 * Page images for OCR. PDF pages are rendered by pdf.js (through unpdf, onto an @napi-rs/canvas) rather than their
 * embedded images extracted: rendering honours the page's /Rotate and crop box, composes a page of several image strips
 * or with vector text over a scan, and gives one resolution whatever the scanner chose; extraction would need all of
 * that redone by hand. Rendering decodes the page's images synchronously (300–500 ms for a 300 dpi letter scan), which
 * is why OCR'd files are read on the parser thread.
 */

/**
 * Pixels of one page image at most: a letter page at 300 dpi is 8.4 million. A page of 200 × 200 inches (PDF allows it)
 * at 200 dpi would be 1.6 billion pixels, 6 GB of canvas, so larger pages are rendered at a lower resolution.
 */
export const MAX_PAGE_PIXELS = 25_000_000;

/** Pixels of one image in a PDF that pdf.js decodes at most (larger ones are left out of the rendering). */
export const MAX_PDF_IMAGE_PIXELS = 100_000_000;

let polyfilled = false;

/**
 * pdf.js 5 compiles font data for rendering with ES2024's ArrayBuffer.prototype.transferToFixedLength, which Node 20
 * lacks: without it every text drawn with a font is silently left out of the image. A copy is what it returns.
 */
function polyfillTransfer(): void {
  if (polyfilled) return;
  polyfilled = true;
  const proto = ArrayBuffer.prototype as ArrayBuffer & { transferToFixedLength?: (length?: number) => ArrayBuffer };
  if (typeof proto.transferToFixedLength === 'function') return;
  Object.defineProperty(ArrayBuffer.prototype, 'transferToFixedLength', {
    configurable: true,
    writable: true,
    value(this: ArrayBuffer, length: number = this.byteLength): ArrayBuffer {
      const copy = new ArrayBuffer(length);
      new Uint8Array(copy).set(new Uint8Array(this, 0, Math.min(length, this.byteLength)));
      return copy;
    },
  });
}

/** The scale that renders a page of `width` × `height` points at `dpi`, or less when that is over MAX_PAGE_PIXELS. */
export function renderScale(width: number, height: number, dpi: number): number {
  const wanted = dpi / 72;
  const pixels = width * wanted * height * wanted;
  return pixels <= MAX_PAGE_PIXELS ? wanted : wanted * Math.sqrt(MAX_PAGE_PIXELS / pixels);
}

/** Page `n` as a PNG at `dpi` (or less, see renderScale), upright as a viewer shows it (its /Rotate applied). */
export async function renderPdfPage(
  pdf: Awaited<ReturnType<typeof getDocumentProxy>>,
  n: number,
  dpi: number,
): Promise<{ png: Uint8Array; dpi: number }> {
  polyfillTransfer();
  const page = await pdf.getPage(n);
  const { width, height } = page.getViewport({ scale: 1 });
  const scale = renderScale(width, height, dpi);
  const png = await renderPageAsImage(pdf, n, { canvasImport: () => import('@napi-rs/canvas'), scale });
  page.cleanup();
  return { png: new Uint8Array(png), dpi: scale * 72 };
}
