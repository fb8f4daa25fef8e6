/**
 * PDF ingest throughput: a folder of generated multi-page PDFs (text from a BEIR corpus, laid out with pdf-lib) is
 * read and ingested; prints pages/s and how the time splits between text extraction, embedding and the rest
 * (tokenizing, chunking, SQLite, HNSW). Embedding time is the embedding model's onnxruntime time. Medians over several
 * runs, each into a fresh collection.
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Command } from 'commander';
import { PDFDocument, StandardFonts } from 'pdf-lib';
import { readDocumentFile, type SourceDocument } from '../src/ingest/index.js';
import { BERT_FULL } from './lib/full-fixtures.js';
import { openIngestBench } from './lib/ingest-bench.js';
import { median } from './lib/stats.js';

const int = (v: string) => Number.parseInt(v, 10);
const program = new Command()
  .name('bench:ingest-pdf')
  .description('PDF ingest throughput (pages/s) and the share of time in text extraction vs embedding; medians of several runs')
  .option('--models <dir>', 'models folder (default: full-size fixtures, built on first use)')
  .option('--model <name>', 'embedding model (folder name or hub id)', BERT_FULL)
  .option('--files <n>', 'PDFs in the folder', int, 6)
  .option('--pages <n>', 'pages per PDF', int, 3)
  .option('--runs <n>', 'timed runs', int, 3)
  .option('--text <file>', 'BEIR corpus.jsonl to draw page text from', '../shared/data/beir-msmarco-mini/corpus.jsonl')
  .parse();
const opts = program.opts<{ models?: string; model: string; files: number; pages: number; runs: number; text: string }>();

const LINES_PER_PAGE = 46;
const CHARS_PER_LINE = 95;

/** Text wrapped into lines of about CHARS_PER_LINE characters, words hyphenated at a line end now and then. */
function pageLines(words: string[], start: number): { lines: string[]; next: number } {
  const lines: string[] = [];
  let i = start;
  while (lines.length < LINES_PER_PAGE) {
    let line = '';
    while (line.length < CHARS_PER_LINE) {
      const word = words[i++ % words.length]!;
      if (line.length + word.length + 1 > CHARS_PER_LINE && word.length > 6 && lines.length % 5 === 0) {
        const cut = Math.ceil(word.length / 2);
        line += ` ${word.slice(0, cut)}-`;
        words.splice(i % words.length, 0, word.slice(cut));
        break;
      }
      line += line ? ` ${word}` : word;
    }
    lines.push(line);
  }
  return { lines, next: i };
}

async function writePdfs(dir: string): Promise<void> {
  const words = readFileSync(opts.text, 'utf8')
    .split('\n')
    .filter(Boolean)
    .slice(0, 3000)
    .map((l) => (JSON.parse(l) as { text: string }).text)
    .join(' ')
    .split(/\s+/)
    .filter((w) => /^[\x20-\x7e]+$/.test(w));
  let cursor = 0;
  for (let f = 0; f < opts.files; f++) {
    const pdf = await PDFDocument.create();
    const font = await pdf.embedFont(StandardFonts.Helvetica);
    for (let p = 0; p < opts.pages; p++) {
      const page = pdf.addPage([612, 792]);
      const { lines, next } = pageLines(words, cursor);
      cursor = next;
      lines.forEach((line, i) => page.drawText(line, { x: 54, y: 740 - i * 15, size: 10, font }));
    }
    writeFileSync(path.join(dir, `report-${String(f).padStart(3, '0')}.pdf`), await pdf.save());
  }
}

const work = mkdtempSync(path.join(os.tmpdir(), 'bench-ingest-pdf-'));
try {
  const folder = path.join(work, 'pdfs');
  mkdirSync(folder);
  await writePdfs(folder);
  const files = Array.from({ length: opts.files }, (_, f) => path.join(folder, `report-${String(f).padStart(3, '0')}.pdf`));
  const totalPages = opts.files * opts.pages;
  const { service } = await openIngestBench(work, opts);
  // Warm-up: pdf.js initialisation and the first onnxruntime runs are paid once per process, not per file.
  const warm = await readDocumentFile(files[0]!, 'warm-up');
  if (warm.kind !== 'document') throw new Error(`could not read ${files[0]}`);
  await service.createCollection('warm-up');
  await service.ingestDocuments([warm.document], { collection: 'warm-up', progress: false });

  const rows: Array<{
    pagesPerS: number;
    extractShare: number;
    embedShare: number;
    otherShare: number;
    passages: number;
    extractPagesPerS: number;
  }> = [];
  for (let run = 0; run < opts.runs; run++) {
    const t0 = performance.now();
    const docs: SourceDocument[] = [];
    for (const file of files) {
      const item = await readDocumentFile(file, path.basename(file));
      if (item.kind !== 'document') throw new Error(`could not read ${file}: ${JSON.stringify(item)}`);
      docs.push(item.document);
    }
    const extractMs = performance.now() - t0;
    const collection = `bench-${run}`;
    await service.createCollection(collection);
    const embedBefore = service.diagnostics.embedOnnxMs;
    const t1 = performance.now();
    const summary = await service.ingestDocuments(docs, { collection, progress: false });
    const ingestMs = performance.now() - t1;
    const embedMs = service.diagnostics.embedOnnxMs - embedBefore;
    const totalMs = extractMs + ingestMs;
    const row = {
      pagesPerS: totalPages / (totalMs / 1000),
      extractPagesPerS: totalPages / (extractMs / 1000),
      extractShare: extractMs / totalMs,
      embedShare: embedMs / totalMs,
      otherShare: (ingestMs - embedMs) / totalMs,
      passages: summary.passagesAdded,
    };
    rows.push(row);
    console.log(
      `run ${run + 1}: ${row.pagesPerS.toFixed(2)} pages/s end to end (${row.passages} passages), extraction alone ` +
        `${row.extractPagesPerS.toFixed(1)} pages/s; time: extraction ${(row.extractShare * 100).toFixed(1)} %, ` +
        `embedding ${(row.embedShare * 100).toFixed(1)} %, other ${(row.otherShare * 100).toFixed(1)} %`,
    );
  }
  await service.close();
  const m = (k: keyof (typeof rows)[number]) => median(rows.map((r) => r[k]));
  console.log(
    `model=${opts.model} files=${opts.files} pages=${totalPages} passages=${m('passages')} runs=${opts.runs} ` +
      `median: ${m('pagesPerS').toFixed(2)} pages/s end to end, extraction ${m('extractPagesPerS').toFixed(1)} pages/s; ` +
      `share of time: extraction ${(m('extractShare') * 100).toFixed(1)} %, embedding ${(m('embedShare') * 100).toFixed(1)} %, ` +
      `other ${(m('otherShare') * 100).toFixed(1)} % | load ${os
        .loadavg()
        .map((l) => l.toFixed(2))
        .join(' ')}`,
  );
} finally {
  rmSync(work, { recursive: true, force: true });
}
