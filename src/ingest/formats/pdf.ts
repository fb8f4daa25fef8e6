import { getDocumentProxy } from 'unpdf';
import { yieldToEventLoop } from '../../common/yield.js';
import { FileOcr, type OcrPage } from './ocr.js';
import { MAX_PDF_IMAGE_PIXELS, renderPdfPage } from './page-image.js';
import { assemblePages, ocrPageBudget, type PageText } from './paged-text.js';
import { checkPdfStreams } from './pdf-streams.js';
import { buildLines, linesToText, readingOrder, type Run } from './reading-order.js';
import { FileLimitError, UnreadableFileError, type FileReadOptions, type ParsedFile, type ParseLimits } from './types.js';

function runsOf(items: unknown[]): Run[] {
  const runs: Run[] = [];
  for (const item of items) {
    const it = item as { str?: unknown; transform?: number[]; width?: number; height?: number };
    if (typeof it.str !== 'string' || it.str === '' || !Array.isArray(it.transform)) continue;
    const [a = 0, b = 0, , d = 0, e = 0, f = 0] = it.transform;
    const size = Math.abs(it.height ?? 0) || Math.hypot(a, b) || Math.abs(d) || 1;
    runs.push({ text: it.str, x0: e, x1: e + (it.width ?? 0), y: f, size });
  }
  return runs;
}

type PdfLimits = Pick<ParseLimits, 'maxPdfPages' | 'maxPdfInflatedBytes' | 'maxOcrPages'>;
type PdfDocument = Awaited<ReturnType<typeof getDocumentProxy>>;

/** Every page's text layer in reading order ('' for a page without one). */
async function textLayer(pdf: PdfDocument): Promise<PageText[]> {
  const pages: PageText[] = [];
  for (let n = 1; n <= pdf.numPages; n++) {
    const page = await pdf.getPage(n);
    const content = await page.getTextContent();
    pages.push({ page: n, text: linesToText(readingOrder(buildLines(runsOf(content.items)))) });
    page.cleanup();
    // Parsing a page is synchronous inside pdf.js; between pages other requests get their turn.
    await yieldToEventLoop();
  }
  return pages;
}

/** The pages OCR reads: none when it is off, every page when forced, else those without a text layer. */
function pagesToOcr(pages: readonly PageText[], read: FileReadOptions | undefined): PageText[] {
  const mode = read?.ocr.mode ?? 'off';
  if (mode === 'off') return [];
  return mode === 'force' ? [...pages] : pages.filter((p) => p.text.trim() === '');
}

/**
 * OCRs the given pages in place (their text replaced by what OCR read, with its confidence). Pages are rendered here
 * one after another while tesseract's workers (`ocr.workers`) read earlier ones on their own threads, one page more
 * rendered than there are workers, so a worker that finishes finds its next page ready. Results are taken in page
 * order, so the text and the progress do not depend on which worker was faster.
 */
async function ocrPages(pdf: PdfDocument, pages: PageText[], read: FileReadOptions): Promise<void> {
  const ocr = new FileOcr(read.ocr, pages.length);
  const ahead = read.ocr.workers + 1;
  let rendering: Promise<unknown> = Promise.resolve();
  const start = (i: number): Promise<OcrPage> => {
    const image = rendering.then(() => renderPdfPage(pdf, pages[i]!.page, read.ocr.dpi));
    rendering = image.catch(() => undefined);
    const result = image.then(({ png, dpi }) => ocr.page(png, dpi));
    // Awaited in its turn; a file stopped before then must not leave it an unhandled rejection.
    result.catch(() => undefined);
    return result;
  };
  const jobs = pages.slice(0, ahead).map((_, i) => start(i));
  for (const [i, page] of pages.entries()) {
    const result = await jobs[i]!;
    if (i + ahead < pages.length) jobs.push(start(i + ahead));
    page.text = result.text;
    page.ocrConfidence = result.confidence;
    read.onOcrPage?.({ page: page.page, done: i + 1, total: pages.length, confidence: result.confidence });
  }
}

/**
 * PDF text per page in reading order, with page spans. Encrypted and damaged PDFs are refused with the reason. Pages
 * without a text layer are OCR'd when `read` allows it (`ocr.mode` auto, or every page with force); without OCR an
 * image-only PDF is refused, never indexed as an empty document. With `limits` (uploads), a PDF whose streams
 * inflate beyond them, that has too many pages or needs OCR on too many is refused before its pages are read.
 */
export async function parsePdf(bytes: Uint8Array, fallbackTitle: string, limits?: PdfLimits, read?: FileReadOptions): Promise<ParsedFile> {
  // Before pdf.js opens it: opening already inflates the cross-reference and object streams.
  if (limits) await checkPdfStreams(bytes, limits.maxPdfInflatedBytes);
  let pdf;
  try {
    // pdf.js takes ownership of (and detaches) the buffer it is given.
    pdf = await getDocumentProxy(new Uint8Array(bytes), {
      verbosity: 0,
      isEvalSupported: false,
      stopAtErrors: false,
      maxImageSize: MAX_PDF_IMAGE_PIXELS,
    });
  } catch (err) {
    const e = err as { name?: string; message?: string };
    if (e.name === 'PasswordException') throw new UnreadableFileError('encrypted PDF (needs a password to open); decrypt it first');
    throw new UnreadableFileError(`not a readable PDF: ${e.message ?? String(err)}`);
  }
  try {
    if (limits && pdf.numPages > limits.maxPdfPages) {
      throw new FileLimitError(
        `the PDF has ${pdf.numPages} pages; at most ${limits.maxPdfPages} are read (documents.upload.maxPdfPages)`,
        413,
      );
    }
    const pages = await textLayer(pdf);
    const toOcr = pagesToOcr(pages, read);
    if (toOcr.length > 0) {
      ocrPageBudget(toOcr.length, read!.ocr, limits, 'PDF');
      await ocrPages(pdf, toOcr, read!);
    }
    const { text, layout } = assemblePages(pages);
    if (text.trim() === '') {
      if (toOcr.length > 0)
        throw new UnreadableFileError(`no text in ${pdf.numPages} page(s): neither a text layer nor any that OCR could read`);
      const fix = read ? 'OCR is off (ingest.ocr.mode): turn it on, or run OCR on it first' : 'run OCR on it first';
      throw new UnreadableFileError(`no text layer in ${pdf.numPages} page(s): an image-only (scanned) PDF; ${fix}`);
    }
    let title = fallbackTitle;
    try {
      const meta = await pdf.getMetadata();
      const info = meta.info as { Title?: unknown } | undefined;
      if (typeof info?.Title === 'string' && info.Title.trim() !== '') title = info.Title.trim();
    } catch {
      // Metadata is optional; the file name stands in.
    }
    const metadata: Record<string, number> = { pages: pdf.numPages };
    if (toOcr.length > 0) metadata.ocrPages = toOcr.length;
    return { title, text, layout, metadata };
  } catch (err) {
    if (err instanceof UnreadableFileError) throw err;
    throw new UnreadableFileError(`not a readable PDF: ${(err as Error).message}`);
  } finally {
    await pdf.destroy();
  }
}
