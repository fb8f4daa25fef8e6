/**
 * OCR of scanned PDFs and images with real tesseract.js and pdf.js: known text is typeset with pdf-lib, rendered to a
 * picture by pdf.js, and wrapped as an image-only PDF, so what OCR reads can be compared with what was written
 * (character error rate). Page numbers, blank pages, columns, /Rotate, the modes, the page and time budgets, a
 * multi-page TIFF, ingest and search, and an uploaded PNG over REST.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { degrees, PDFDocument, StandardFonts } from 'pdf-lib';
import { pino } from 'pino';
import sharp from 'sharp';
import { getDocumentProxy } from 'unpdf';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../src/config/index.js';
import {
  closeOcr,
  FileLimitError,
  ingestPaths,
  parseFile,
  UnreadableFileError,
  type OcrOptions,
  type ParsedDocument,
} from '../src/ingest/index.js';
import { renderPdfPage } from '../src/ingest/formats/page-image.js';
import { startServer } from '../src/main.js';
import { Embedder } from '../src/models/index.js';
import { queryTerms } from '../src/retrieval/index.js';
import { fixtureConfig } from './helpers/config.js';
import { BERT_TINY, FIXTURES_DIR } from './helpers/fixtures.js';
import { readReply, request } from './helpers/http.js';
import { DEFAULTS, ingestOptions, openTestStore } from './helpers/store.js';

const TMP = mkdtempSync(path.join(os.tmpdir(), 'ocr-'));
const OCR: OcrOptions = DEFAULTS.ingest.ocr;
const LETTER: [number, number] = [612, 792];
const SIZE = 13;
const LEADING = 19;

afterAll(async () => {
  await closeOcr();
  rmSync(TMP, { recursive: true, force: true });
});

// ---------------------------------------------------------------------------------------------- building scans

/** Levenshtein distance over characters, two rows at a time. */
function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const row = [i];
    for (let j = 1; j <= b.length; j++) {
      row[j] = Math.min(previous[j]! + 1, row[j - 1]! + 1, previous[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    previous = row;
  }
  return previous[b.length]!;
}

const normalise = (text: string) => text.replace(/\s+/g, ' ').trim();

/** Character error rate of `read` against `truth`, whitespace runs counted as one space. */
function cer(read: string, truth: string): number {
  return editDistance(normalise(read), normalise(truth)) / normalise(truth).length;
}

interface Column {
  x: number;
  lines: string[];
}

/** A text PDF: each page a list of columns (lines drawn top down), Helvetica 13 pt. */
async function typeset(pages: Column[][], size: [number, number] = LETTER): Promise<Uint8Array> {
  const pdf = await PDFDocument.create();
  const font = await pdf.embedFont(StandardFonts.Helvetica);
  for (const columns of pages) {
    const page = pdf.addPage(size);
    for (const { x, lines } of columns) {
      lines.forEach((line, i) => page.drawText(line, { x, y: size[1] - 72 - i * LEADING, size: SIZE, font }));
    }
  }
  return pdf.save();
}

/** Every page of a PDF as the picture a scanner would make of it (300 dpi PNG). */
async function photograph(pdfBytes: Uint8Array): Promise<Uint8Array[]> {
  const pdf = await getDocumentProxy(new Uint8Array(pdfBytes));
  try {
    const images: Uint8Array[] = [];
    for (let n = 1; n <= pdf.numPages; n++) images.push((await renderPdfPage(pdf, n, 300)).png);
    return images;
  } finally {
    await pdf.destroy();
  }
}

/** An image-only PDF: one picture per page filling it; `rotate` sets the page's /Rotate. */
async function scannedPdf(images: Uint8Array[], size: [number, number] = LETTER, rotate = 0): Promise<Uint8Array> {
  const pdf = await PDFDocument.create();
  for (const png of images) {
    const page = pdf.addPage(size);
    page.drawImage(await pdf.embedPng(png), { x: 0, y: 0, width: size[0], height: size[1] });
    if (rotate !== 0) page.setRotation(degrees(rotate));
  }
  return pdf.save();
}

const PAGE_ONE = [
  'Fusion in decoder readers encode every passage',
  'together with the question, and the decoder reads',
  'all of them at once through cross attention.',
];
const PAGE_THREE = ['The third page describes the glacier survey of', 'the northern valley, measured in the spring.'];
const LEFT = ['Alpine lakes freeze early', 'in the autumn months and', 'thaw late in the spring.'];
const RIGHT = ['Desert rivers carry sand', 'across the dry plains in', 'short violent floods.'];

let threePageScan: Uint8Array;
/** The three-page scan as parseFile reads it, for the tests that compare with it. */
let threePages: ParsedDocument;

beforeAll(async () => {
  const pages = await photograph(await typeset([[{ x: 72, lines: PAGE_ONE }], [], [{ x: 72, lines: PAGE_THREE }]]));
  threePageScan = await scannedPdf(pages);
  threePages = await parseFile(threePageScan, 'scan.pdf', 'pdf', undefined, { ocr: OCR });
});

// ---------------------------------------------------------------------------------------------- reading

describe('OCR of scanned PDFs', () => {
  it('reads an image-only PDF with page numbers and confidence; a blank page gives no text and no error', async () => {
    const parsed = threePages;
    const pages = parsed.layout!.pages!;
    expect(pages.map((p) => p.page)).toEqual([1, 3]);
    expect(cer(parsed.text.slice(pages[0]!.start, pages[0]!.end), PAGE_ONE.join('\n'))).toBeLessThanOrEqual(0.03);
    expect(cer(parsed.text.slice(pages[1]!.start, pages[1]!.end), PAGE_THREE.join('\n'))).toBeLessThanOrEqual(0.03);
    for (const p of pages) expect(p.ocrConfidence).toBeGreaterThan(70);
    expect(parsed.metadata).toEqual({ pages: 3, ocrPages: 3 });
  });

  it('reads the same text and confidences with one tesseract worker as with several', async () => {
    expect(OCR.workers).toBeGreaterThan(1);
    const alone = await parseFile(threePageScan, 'scan.pdf', 'pdf', undefined, { ocr: { ...OCR, workers: 1 } });
    expect(alone.text).toBe(threePages.text);
    expect(alone.layout).toEqual(threePages.layout);
  });

  it('reads a two-column scan column by column', async () => {
    const [image] = await photograph(
      await typeset([
        [
          { x: 72, lines: LEFT },
          { x: 330, lines: RIGHT },
        ],
      ]),
    );
    const parsed = await parseFile(await scannedPdf([image!]), 'columns.pdf', 'pdf', undefined, { ocr: OCR });
    expect(cer(parsed.text, [...LEFT, ...RIGHT].join('\n'))).toBeLessThanOrEqual(0.03);
    expect(parsed.text.indexOf('Desert')).toBeGreaterThan(parsed.text.indexOf('spring'));
  });

  it('reads a page whose /Rotate 90 turns its sideways picture upright', async () => {
    const [upright] = await photograph(await typeset([[{ x: 72, lines: PAGE_THREE }]]));
    // Stored a quarter turn anticlockwise on a landscape page; /Rotate 90 turns it clockwise when shown.
    const sideways = await sharp(upright).rotate(-90).png().toBuffer();
    const parsed = await parseFile(await scannedPdf([sideways], [792, 612], 90), 'rotated.pdf', 'pdf', undefined, { ocr: OCR });
    expect(cer(parsed.text, PAGE_THREE.join('\n'))).toBeLessThanOrEqual(0.03);
  });

  it('off refuses an image-only PDF with the reason; force OCRs a page that has a text layer', async () => {
    const off = parseFile(threePageScan, 'scan.pdf', 'pdf', undefined, { ocr: { ...OCR, mode: 'off' } });
    await expect(off).rejects.toThrow(UnreadableFileError);
    await expect(off).rejects.toThrow(/no text layer in 3 page\(s\).*OCR is off \(ingest\.ocr\.mode\)/);

    const withText = await typeset([[{ x: 72, lines: PAGE_THREE }]]);
    const auto = await parseFile(withText, 'text.pdf', 'pdf', undefined, { ocr: OCR });
    expect(auto.metadata).toEqual({ pages: 1 });
    expect(auto.layout!.pages![0]!.ocrConfidence).toBeUndefined();
    const forced = await parseFile(withText, 'text.pdf', 'pdf', undefined, { ocr: { ...OCR, mode: 'force' } });
    expect(forced.metadata).toEqual({ pages: 1, ocrPages: 1 });
    expect(forced.layout!.pages![0]!.ocrConfidence).toBeGreaterThan(70);
    expect(cer(forced.text, PAGE_THREE.join('\n'))).toBeLessThanOrEqual(0.03);
  });

  it('refuses a file needing OCR on more pages than its budget, before reading any, naming the setting', async () => {
    const started = performance.now();
    const refused = parseFile(threePageScan, 'scan.pdf', 'pdf', undefined, { ocr: { ...OCR, maxPages: 2 } });
    await expect(refused).rejects.toThrow(FileLimitError);
    await expect(refused).rejects.toThrow(/needs OCR on 3 pages; at most 2 are OCR'd per file \(ingest\.ocr\.maxPages\)/);
    // Refused from the text layer's count alone: no page was rendered or recognised.
    expect(performance.now() - started).toBeLessThan(1500);
  });

  it('stops OCR past its time budget with a 422 naming the setting', async () => {
    const slow = parseFile(threePageScan, 'scan.pdf', 'pdf', undefined, { ocr: { ...OCR, maxMsPerFile: 50 } });
    await expect(slow).rejects.toThrow(FileLimitError);
    await expect(slow).rejects.toMatchObject({
      status: 422,
      message: expect.stringMatching(/longer than 50 ms \(ingest\.ocr\.maxMsPerFile\)/),
    });
  });

  it('an every-page-blank scan is unreadable; a language without data is a config error naming the package', async () => {
    const blank = await scannedPdf(await photograph(await typeset([[]])));
    await expect(parseFile(blank, 'blank.pdf', 'pdf', undefined, { ocr: OCR })).rejects.toThrow(
      /neither a text layer nor any that OCR could read/,
    );
    expect(() => loadConfig({ env: {}, cwd: TMP, overrides: { ingest: { ocr: { languages: ['deu'] } } } })).toThrow(
      /ingest\.ocr\.languages: no OCR data installed for "deu": add it with `npm install --save @tesseract\.js-data\/deu@1\.0\.0`/,
    );
  });
});

describe('OCR of image files', () => {
  it('reads each page of a multi-page TIFF as a page', async () => {
    const [first, second] = await photograph(await typeset([[{ x: 36, lines: LEFT }], [{ x: 36, lines: RIGHT }]], [400, 160]));
    const tiff = await sharp([first!, second!], { join: { animated: true } })
      .tiff()
      .toBuffer();
    const parsed = await parseFile(tiff, 'pages.tif', 'image', undefined, { ocr: OCR });
    expect(parsed.metadata).toEqual({ pages: 2, ocrPages: 2 });
    const pages = parsed.layout!.pages!;
    expect(pages.map((p) => p.page)).toEqual([1, 2]);
    expect(cer(parsed.text.slice(pages[0]!.start, pages[0]!.end), LEFT.join('\n'))).toBeLessThanOrEqual(0.03);
    expect(cer(parsed.text.slice(pages[1]!.start, pages[1]!.end), RIGHT.join('\n'))).toBeLessThanOrEqual(0.03);
    await expect(parseFile(tiff, 'pages.tif', 'image', undefined, { ocr: { ...OCR, mode: 'off' } })).rejects.toThrow(/OCR is off/);
  });
});

// ---------------------------------------------------------------------------------------------- ingest and upload

describe('OCR in ingest', () => {
  it('scanned passages are searchable through the real ingest path, with pages and confidence', async () => {
    const embedder = await Embedder.load(BERT_TINY, { modelsDir: FIXTURES_DIR, allowRemote: false, quantized: false, batchSize: 16 });
    const root = mkdtempSync(path.join(TMP, 'folder-'));
    writeFileSync(path.join(root, 'scan.pdf'), threePageScan);
    const store = await openTestStore(path.join(TMP, `index-${Date.now()}`), { embedModel: embedder.modelId, dim: embedder.dim });
    try {
      const summary = await ingestPaths(
        [root],
        ingestOptions(store, embedder, { read: { ocr: OCR }, chunk: { maxTokens: 24, overlapTokens: 0 } }),
      );
      expect(summary.errors).toEqual([]);
      expect(summary.added).toBe(1);
      expect((await store.getDocument('scan.pdf'))!.metadata).toEqual({ format: 'pdf', pages: 3, ocrPages: 3 });
      const hits = await store.bm25Search(queryTerms('glacier survey'), 5, { titleWeight: 1, textWeight: 1 });
      expect(hits.length).toBeGreaterThan(0);
      const passages = await store.passagesOfDocument('scan.pdf');
      const hit = passages.find((p) => p.label === hits[0]!.label)!;
      expect(hit.text).toContain('glacier');
      expect(hit.pageEnd).toBe(3);
      // Page 2 is blank: passages are on pages 1 and 3 only, each with the confidence of its worst page.
      expect(new Set(passages.flatMap((p) => [p.pageStart, p.pageEnd]))).toEqual(new Set([1, 3]));
      const confidence = threePages.layout!.pages!;
      for (const p of passages) {
        const spanned = confidence.filter((c) => c.page >= p.pageStart! && c.page <= p.pageEnd!).map((c) => c.ocrConfidence!);
        expect(p.metadata.ocrConfidence).toBe(Math.min(...spanned));
      }
    } finally {
      await store.close();
    }
  });

  it("an uploaded PNG is OCR'd and indexed through POST /v1/documents/files; an upload over its OCR budget is a 413", async () => {
    const [png] = await photograph(await typeset([[{ x: 36, lines: PAGE_THREE }]], [400, 160]));
    const corpus = mkdtempSync(path.join(TMP, 'corpus-'));
    writeFileSync(path.join(corpus, 'seed.md'), '# Seed\n\nA seed document about gardening.');
    const config = fixtureConfig({ corpusDir: corpus, server: { rateLimit: { max: 0 } }, documents: { upload: { maxOcrPages: 2 } } });
    const server = await startServer(config, pino({ level: 'silent' }));
    try {
      await server.ready;
      const base = `http://127.0.0.1:${server.port}`;
      const form = new FormData();
      form.append('files', new Blob([png!], { type: 'image/png' }), 'survey.png');
      const reply = await readReply(await fetch(`${base}/v1/documents/files`, { method: 'POST', body: form }));
      expect(reply.status, reply.text).toBe(200);
      expect(reply.json.documents).toEqual([{ id: 'survey.png', status: 'added', passages: 1 }]);
      const doc = await request(base, 'GET', '/v1/documents/survey.png');
      expect(doc.json.metadata).toMatchObject({ format: 'image', pages: 1, ocrPages: 1 });
      const search = await request(base, 'POST', '/v1/search', { body: { query: 'glacier survey', mode: 'bm25', k: 3 } });
      expect(search.json.results[0]).toMatchObject({ docId: 'survey.png', pageStart: 1, pageEnd: 1 });
      // The page's OCR confidence reaches clients with the hit, and with the document's passages.
      expect(search.json.results[0].ocrConfidence).toBeGreaterThan(70);
      expect(doc.json.passages[0].ocrConfidence).toBe(search.json.results[0].ocrConfidence);

      // Three pages to OCR against an upload budget of two: refused before any is read, naming the file and setting.
      const big = new FormData();
      big.append('files', new Blob([threePageScan], { type: 'application/pdf' }), 'scan.pdf');
      const refused = await readReply(await fetch(`${base}/v1/documents/files`, { method: 'POST', body: big }));
      expect(refused.status).toBe(413);
      expect(refused.json.error.message).toMatch(/files\.0 \("scan\.pdf"\).*needs OCR on 3 pages.*documents\.upload\.maxOcrPages/);
    } finally {
      await server.close();
    }
  });
});
