import { readFileSync } from 'node:fs';
import path from 'node:path';
import { Command } from 'commander';
import { Embedder } from '../src/models/index.js';
import { median } from './lib/stats.js';
import { BERT_FULL, ensureFullFixtures } from './lib/full-fixtures.js';

const program = new Command()
  .name('bench:embed')
  .description('Embedding throughput (passages/s) on ~N-token passages; prints the median of several runs')
  .option('--models <dir>', 'models folder (default: full-size fixtures, built on first use)')
  .option('--model <name>', 'embedding model (folder name or hub id)', BERT_FULL)
  .option('--passages <n>', 'passages per run', (v) => Number.parseInt(v, 10), 256)
  .option('--tokens <n>', 'tokens per passage', (v) => Number.parseInt(v, 10), 200)
  .option('--runs <n>', 'timed runs', (v) => Number.parseInt(v, 10), 5)
  .option('--batch <n>', 'batch size', (v) => Number.parseInt(v, 10), 32)
  .option('--quantized', 'load the _quantized ONNX file', false)
  .option('--text <file>', 'BEIR corpus.jsonl to draw passage text from', '../shared/data/beir-msmarco-mini/corpus.jsonl')
  .parse();
const opts = program.opts<{ models?: string; model: string; passages: number; tokens: number; runs: number; batch: number; quantized: boolean; text: string }>();

const embedder = await Embedder.load(opts.model, {
  modelsDir: opts.models ? path.resolve(opts.models) : await ensureFullFixtures(),
  allowRemote: false,
  quantized: opts.quantized,
  batchSize: opts.batch,
});

// Real text, cut to the requested length with the model's own tokenizer, so the measurement has realistic padding.
const words = readFileSync(opts.text, 'utf8')
  .split('\n')
  .filter(Boolean)
  .map((l) => (JSON.parse(l) as { text: string }).text)
  .join(' ')
  .split(/\s+/);
const passages: string[] = [];
let cursor = 0;
while (passages.length < opts.passages) {
  let n = Math.round(opts.tokens * 0.7);
  let text = words.slice(cursor, cursor + n).join(' ');
  while (embedder.encode(text).length < opts.tokens && n < opts.tokens * 2) text = words.slice(cursor, cursor + ++n).join(' ');
  passages.push(text);
  cursor = (cursor + n) % Math.max(1, words.length - opts.tokens * 2);
}
const meanTokens = passages.reduce((s, p) => s + embedder.encode(p).length, 0) / passages.length;

await embedder.embedPassages(passages.slice(0, opts.batch)); // warm-up: session initialisation and allocator growth
const rates: number[] = [];
for (let r = 0; r < opts.runs; r++) {
  const t0 = performance.now();
  await embedder.embedPassages(passages);
  const seconds = (performance.now() - t0) / 1000;
  rates.push(passages.length / seconds);
  console.log(`run ${r + 1}: ${(passages.length / seconds).toFixed(1)} passages/s`);
}
console.log(
  `model=${opts.model} dim=${embedder.dim} passages=${passages.length} meanTokens=${meanTokens.toFixed(0)} batch=${opts.batch} ` +
    `median=${median(rates).toFixed(1)} passages/s`,
);
