import sharp from 'sharp';
import { FileOcr } from './ocr.js';
import { MAX_PAGE_PIXELS } from './page-image.js';
import { assemblePages, ocrPageBudget, type PageText } from './paged-text.js';
import { UnreadableFileError, type FileReadOptions, type ParsedFile, type ParseLimits } from './types.js';

/** Pixels sharp decodes at most from one image (its own default, stated so the bound is visible here). */
const MAX_INPUT_PIXELS = 268_402_689;

/**
 * One page of the image (a TIFF's `page`-th), upright (a JPEG's EXIF orientation applied), grey and at most
 * MAX_PAGE_PIXELS, as a PNG for tesseract. sharp works on libuv's thread pool, so none of this holds the event loop.
 */
async function pageImage(bytes: Uint8Array, page: number): Promise<{ png: Uint8Array; dpi: number | undefined }> {
  const image = sharp(bytes, { page, limitInputPixels: MAX_INPUT_PIXELS }).rotate();
  const { width = 0, height = 0, density } = await image.metadata();
  const pixels = width * height;
  const f = pixels > MAX_PAGE_PIXELS ? Math.sqrt(MAX_PAGE_PIXELS / pixels) : 1;
  if (f < 1) image.resize(Math.floor(width * f), Math.floor(height * f), { fit: 'fill' });
  // A PNG's pHYs, a JPEG's JFIF or a TIFF's resolution, when the scanner wrote one.
  const dpi = density !== undefined && density >= 50 ? density * f : undefined;
  return { png: await image.greyscale().png({ compressionLevel: 1 }).toBuffer(), dpi };
}

async function pageCount(bytes: Uint8Array): Promise<number> {
  try {
    const meta = await sharp(bytes, { limitInputPixels: MAX_INPUT_PIXELS }).metadata();
    return meta.pages ?? 1;
  } catch (err) {
    throw new UnreadableFileError(`not a readable image: ${(err as Error).message}`);
  }
}

/**
 * An image file (PNG, JPEG, TIFF) read by OCR: each of a multi-page TIFF's pages is a page. Without OCR (none
 * configured, or mode `off`) it is refused: an image has no text to read otherwise.
 */
export async function parseImage(
  bytes: Uint8Array,
  title: string,
  limits: ParseLimits | undefined,
  read: FileReadOptions | undefined,
): Promise<ParsedFile> {
  if (!read || read.ocr.mode === 'off') {
    throw new UnreadableFileError('an image has no text layer and OCR is off (ingest.ocr.mode); turn it on to read images');
  }
  const pages = await pageCount(bytes);
  ocrPageBudget(pages, read.ocr, limits, 'image');
  const ocr = new FileOcr(read.ocr, pages);
  const texts: PageText[] = [];
  for (let n = 1; n <= pages; n++) {
    let image: Awaited<ReturnType<typeof pageImage>>;
    try {
      image = await pageImage(bytes, n - 1);
    } catch (err) {
      throw new UnreadableFileError(`not a readable image (page ${n}): ${(err as Error).message}`);
    }
    const { text, confidence } = await ocr.page(image.png, image.dpi);
    texts.push({ page: n, text, ocrConfidence: confidence });
    read.onOcrPage?.({ page: n, done: n, total: pages, confidence });
  }
  const { text, layout } = assemblePages(texts);
  if (text === '') throw new UnreadableFileError(`OCR found no text on ${pages} page(s) of the image`);
  return { title, text, layout, metadata: { pages, ocrPages: pages } };
}
