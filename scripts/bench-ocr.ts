/**
 * OCR ingest throughput: a folder of scanned pages (text typeset with pdf-lib, photographed at 300 dpi by pdf.js, the
 * pictures wrapped as image-only PDFs or saved as PNG files) is ingested through the same service call as
 * `npm run ingest`, several times into fresh collections. Prints the median OCR pages/s (a pass that only reads the
 * folder, OCR on the parser thread as in an ingest), the share of the ingest's wall time that reading takes, and the
 * process's CPU time per wall second during the ingest (process.cpuUsage counts every thread: the parser thread, the
 * tesseract worker, onnxruntime), and the longest the main thread's event loop was held while the folder was read.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Command } from 'commander';
import { PDFDocument, StandardFonts } from 'pdf-lib';
import { getDocumentProxy } from 'unpdf';
import { renderPdfPage } from '../src/ingest/formats/page-image.js';
import { readSources } from '../src/ingest/index.js';
import { startBlockProbe } from './lib/event-loop.js';
import { BERT_FULL } from './lib/full-fixtures.js';
import { openIngestBench } from './lib/ingest-bench.js';
import { median } from './lib/stats.js';

const int = (v: string) => Number.parseInt(v, 10);
const program = new Command()
  .name('bench:ocr')
  .description('OCR ingest throughput (pages/s), the share of ingest time spent reading (OCR), CPU per wall second; medians')
  .option('--models <dir>', 'models folder (default: full-size fixtures, built on first use)')
  .option('--model <name>', 'embedding model (folder name or hub id)', BERT_FULL)
  .option('--pages <n>', 'scanned pages in the folder (in 4-page PDFs, every fifth page a PNG file)', int, 20)
  .option('--lines <n>', 'lines of 13 pt text per page', int, 30)
  .option('--runs <n>', 'timed runs', int, 3)
  .option('--workers <n>', 'tesseract workers (ingest.ocr.workers; default: the configured default)', int)
  .parse();
const opts = program.opts<{ models?: string; model: string; pages: number; lines: number; runs: number; workers?: number }>();

const WORDS = (
  'the reader encodes every retrieved passage with the question and the decoder attends over all of them ' +
  'while it writes the answer so each citation points at the passage whose tokens carried the most weight ' +
  'scanned reports arrive as pictures without a text layer and optical character recognition turns them back ' +
  'into words that can be searched ranked and quoted with their page numbers and a confidence for every page'
).split(' ');

/** Page `p`: lines of a few dozen characters, drawn in a single column. */
function pageLines(p: number): string[] {
  const lines: string[] = [];
  for (let l = 0; l < opts.lines; l++) {
    const words: string[] = [];
    for (let w = 0; words.join(' ').length < 60; w++) words.push(WORDS[(p * 131 + l * 17 + w * 7) % WORDS.length]!);
    lines.push(words.join(' '));
  }
  return lines;
}

async function scanOf(p: number): Promise<Uint8Array> {
  const pdf = await PDFDocument.create();
  const font = await pdf.embedFont(StandardFonts.Helvetica);
  const page = pdf.addPage([612, 792]);
  pageLines(p).forEach((line, i) => page.drawText(line, { x: 72, y: 720 - i * 19, size: 13, font }));
  const doc = await getDocumentProxy(new Uint8Array(await pdf.save()));
  try {
    return (await renderPdfPage(doc, 1, 300)).png;
  } finally {
    await doc.destroy();
  }
}

/** The folder: image-only PDFs of up to four pages, and every fifth page as a PNG of its own. */
async function writeScans(dir: string): Promise<void> {
  let pdf = await PDFDocument.create();
  let file = 0;
  const flush = async () => {
    if (pdf.getPageCount() === 0) return;
    writeFileSync(path.join(dir, `scan-${String(file++).padStart(2, '0')}.pdf`), await pdf.save());
    pdf = await PDFDocument.create();
  };
  for (let p = 0; p < opts.pages; p++) {
    const png = await scanOf(p);
    if (p % 5 === 4) {
      writeFileSync(path.join(dir, `page-${String(p).padStart(2, '0')}.png`), png);
      continue;
    }
    pdf.addPage([612, 792]).drawImage(await pdf.embedPng(png), { x: 0, y: 0, width: 612, height: 792 });
    if (pdf.getPageCount() === 4) await flush();
  }
  await flush();
}

const work = mkdtempSync(path.join(os.tmpdir(), 'bench-ocr-'));
try {
  const folder = path.join(work, 'scans');
  mkdirSync(folder);
  await writeScans(folder);
  const { config, service } = await openIngestBench(
    work,
    opts,
    opts.workers === undefined ? {} : { ingest: { ocr: { workers: opts.workers } } },
  );
  const rows: Array<{ ocrPagesPerS: number; ocrShare: number; cpuPerWall: number; ingestS: number; passages: number; blockMs: number }> =
    [];
  for (let run = 0; run < opts.runs; run++) {
    // Reading alone: every page rendered and OCR'd, nothing embedded or written; the main thread's event loop watched.
    const probe = startBlockProbe({ mainThreadOnly: true });
    const t0 = performance.now();
    let pages = 0;
    for await (const item of readSources([folder], { ocr: config.ingest.ocr })) {
      if (item.kind !== 'document') throw new Error(`not read: ${JSON.stringify(item)}`);
      pages += Number(item.document.metadata.ocrPages ?? 0);
    }
    const readMs = performance.now() - t0;
    const block = probe.stop();
    if (pages !== opts.pages) throw new Error(`OCR'd ${pages} pages, expected ${opts.pages}`);

    const collection = `bench-${run}`;
    await service.createCollection(collection);
    const cpu0 = process.cpuUsage();
    const t1 = performance.now();
    const summary = await service.ingestPaths([folder], { collection, progress: false });
    const ingestMs = performance.now() - t1;
    const cpu = process.cpuUsage(cpu0);
    if (summary.errors.length > 0) throw new Error(`ingest errors: ${JSON.stringify(summary.errors)}`);
    const row = {
      ocrPagesPerS: pages / (readMs / 1000),
      ocrShare: Math.min(1, readMs / ingestMs),
      cpuPerWall: (cpu.user + cpu.system) / 1000 / ingestMs,
      ingestS: ingestMs / 1000,
      passages: summary.passagesAdded,
      blockMs: block.maxBlockCpuMs,
    };
    rows.push(row);
    console.log(
      `run ${run + 1}: OCR ${row.ocrPagesPerS.toFixed(2)} pages/s (${(readMs / 1000).toFixed(1)} s for ${pages} pages); ingest ` +
        `${row.ingestS.toFixed(1)} s (${row.passages} passages), OCR ${(row.ocrShare * 100).toFixed(0)} % of it; ` +
        `CPU ${row.cpuPerWall.toFixed(2)} s per wall s; longest main-thread block while reading ${row.blockMs.toFixed(0)} ms`,
    );
  }
  await service.close();
  const m = (k: keyof (typeof rows)[number]) => median(rows.map((r) => r[k]));
  console.log(
    `model=${opts.model} pages=${opts.pages} lines/page=${opts.lines} dpi=${config.ingest.ocr.dpi} runs=${opts.runs} median: ` +
      `OCR ${m('ocrPagesPerS').toFixed(2)} pages/s (${(1 / m('ocrPagesPerS')).toFixed(2)} s/page), ingest ${m('ingestS').toFixed(1)} s, ` +
      `OCR share of ingest time ${(m('ocrShare') * 100).toFixed(0)} %, CPU/wall ${m('cpuPerWall').toFixed(2)}, ` +
      `longest main-thread block while reading ${Math.max(...rows.map((r) => r.blockMs)).toFixed(0)} ms | load ${os
        .loadavg()
        .map((l) => l.toFixed(2))
        .join(' ')} | cores ${os.cpus().length}`,
  );
} finally {
  rmSync(work, { recursive: true, force: true });
}
