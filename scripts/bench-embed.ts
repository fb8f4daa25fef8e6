/**
 * Embedding throughput, fp32 and int8 side by side in one run: passages/s for each batch policy and thread count on
 * short MS MARCO passages and on ~N-token passages, medians of a few runs, plus each run's share inside onnxruntime.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { Command } from 'commander';
import { Embedder } from '../src/models/index.js';
import { formatTable } from './lib/cli.js';
import { BERT_FULL, ensureFullFixtures } from './lib/full-fixtures.js';
import { median } from './lib/stats.js';

const list = (v: string) =>
  v
    .split(',')
    .map((x) => x.trim())
    .filter(Boolean);
const program = new Command()
  .name('bench:embed')
  .description('Embedding throughput (passages/s) for precisions × batch policies × threads; medians of several runs')
  .option('--models <dir>', 'models folder (default: full-size fixtures, built on first use)')
  .option('--model <name>', 'embedding model (folder name or hub id)', BERT_FULL)
  .option('--passages <n>', 'passages per run', (v) => Number.parseInt(v, 10), 128)
  .option('--tokens <n>', 'tokens per long passage', (v) => Number.parseInt(v, 10), 200)
  .option('--runs <n>', 'timed runs', (v) => Number.parseInt(v, 10), 3)
  .option('--precisions <list>', 'fp32,int8', 'fp32,int8')
  .option('--policies <list>', 'batch policies: b<N> = N texts per batch, t<N> = N-token budget', 'b1,b32,t1024,t2048,t4096')
  .option('--threads <list>', 'intra-op threads', '1,2')
  .option('--text <file>', 'BEIR corpus.jsonl to draw passage text from', '../shared/data/beir-msmarco-mini/corpus.jsonl')
  .parse();
const opts = program.opts<{
  models?: string;
  model: string;
  passages: number;
  tokens: number;
  runs: number;
  precisions: string;
  policies: string;
  threads: string;
  text: string;
}>();
const modelsDir = opts.models ? path.resolve(opts.models) : await ensureFullFixtures();

const corpus = readFileSync(opts.text, 'utf8')
  .split('\n')
  .filter(Boolean)
  .map((l) => (JSON.parse(l) as { text: string }).text);

function policy(name: string): { batchSize: number; batchTokens?: number } {
  const n = Number.parseInt(name.slice(1), 10);
  return name.startsWith('t') ? { batchSize: 256, batchTokens: n } : { batchSize: n };
}

/** Real text cut to ~`tokens` tokens with the model's tokenizer, so padding is realistic. */
function longPassages(embedder: Embedder): string[] {
  const words = corpus.join(' ').split(/\s+/);
  const out: string[] = [];
  let cursor = 0;
  while (out.length < opts.passages) {
    let n = Math.round(opts.tokens * 0.7);
    let text = words.slice(cursor, cursor + n).join(' ');
    while (embedder.encode(text).length < opts.tokens && n < opts.tokens * 2) text = words.slice(cursor, cursor + ++n).join(' ');
    out.push(text);
    cursor = (cursor + n) % Math.max(1, words.length - opts.tokens * 2);
  }
  return out;
}

const rows: Array<Array<string | number>> = [
  ['precision', 'threads', 'policy', 'msmarco passages/s', '~200-token passages/s', 'inside onnxruntime'],
];
for (const precision of list(opts.precisions)) {
  for (const threads of list(opts.threads).map(Number)) {
    for (const p of list(opts.policies)) {
      const embedder = await Embedder.load(opts.model, {
        modelsDir,
        allowRemote: false,
        quantized: precision === 'int8',
        threads: { intraOp: threads, interOp: 1 },
        ...policy(p),
      });
      const sets = [corpus.slice(0, opts.passages), longPassages(embedder)];
      const rates: number[][] = [[], []];
      let inside = 0;
      let total = 0;
      for (const [s, texts] of sets.entries()) {
        await embedder.embedPassages(texts.slice(0, 16)); // warm-up
        for (let r = 0; r < opts.runs; r++) {
          const before = embedder.onnxRunMs;
          const t0 = performance.now();
          await embedder.embedPassages(texts);
          const ms = performance.now() - t0;
          rates[s]!.push(texts.length / (ms / 1000));
          inside += embedder.onnxRunMs - before;
          total += ms;
        }
      }
      rows.push([
        precision,
        threads,
        p,
        median(rates[0]!).toFixed(1),
        median(rates[1]!).toFixed(1),
        `${((100 * inside) / total).toFixed(1)}%`,
      ]);
      console.error(rows.at(-1)!.join(' | '));
    }
  }
}
console.log(`model=${opts.model} passages/run=${opts.passages} runs=${opts.runs} (medians)`);
console.log(formatTable(rows));
