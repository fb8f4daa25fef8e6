/**
 * Chunking cost and what a large write does to the server's event loop.
 *   npm run bench:chunk                 # chunking time for 100 KB, 1 MB and 5 MB of prose, then a 2 MB API write
 *   npm run bench:chunk -- --runs 5 --write-mb 2
 * Chunking uses the embedding model's real tokenizer (bge-small's, as in the fixtures); times are medians. The write
 * step runs the server in this process on the tiny fixture models, POSTs one document of `--write-mb` megabytes while
 * a client keeps searching, and reports the longest event-loop block seen meanwhile (perf_hooks' event-loop delay).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Command, InvalidArgumentError } from 'commander';
import { pino } from 'pino';
import { loadConfig } from '../src/config/index.js';
import { findRepoRoot } from '../src/fixtures/index.js';
import { chunkText, effectiveChunkOptions, tokenCounter } from '../src/ingest/index.js';
import { loadEmbedder } from '../src/models/index.js';
import { startServer } from '../src/main.js';
import { formatTable, runCli } from './lib/cli.js';
import { proseOfLength, writeWhileSearching } from './lib/event-loop.js';
import { BERT_TINY, ensureTinyFixtures, T5_TINY } from './lib/full-fixtures.js';
import { median } from './lib/stats.js';

const atLeast =
  (name: string, min: number, what: string) =>
  (value: string): number => {
    const n = Number(value);
    if (!Number.isFinite(n) || n < min) throw new InvalidArgumentError(`${name} must be ${what}`);
    return n;
  };

const SIZES = [
  { label: '100 KB', chars: 100_000 },
  { label: '1 MB', chars: 1_000_000 },
  { label: '5 MB', chars: 5_000_000 },
];

runCli(async () => {
  const opts = new Command()
    .name('bench-chunk')
    .option('--runs <n>', 'runs per size (median reported)', atLeast('--runs', 1, 'at least 1'), 3)
    .option(
      '--write-mb <n>',
      'size of the document written through the API, in MB (0 skips the step)',
      atLeast('--write-mb', 0, 'a number of MB, 0 or more'),
      2,
    )
    .parse()
    .opts<{ runs: number; writeMb: number }>();
  const repoRoot = findRepoRoot(process.cwd());
  const corpusDir = path.join(repoRoot, 'corpus');
  const modelsDir = await ensureTinyFixtures();
  const indexesDir = mkdtempSync(path.join(os.tmpdir(), 'bench-chunk-'));
  const config = loadConfig({
    env: {},
    overrides: {
      modelsDir,
      embedModel: BERT_TINY,
      readerModel: T5_TINY,
      quantized: false,
      allowRemote: false,
      indexesDir,
      corpusDir,
      port: 0,
      host: '127.0.0.1',
      logLevel: 'silent',
      auth: { disabled: true },
      documents: { maxTextChars: Math.ceil(opts.writeMb * 1_000_000) + 1 },
      server: { rateLimit: { max: 0 } },
    },
  });
  try {
    const embedder = await loadEmbedder(config);
    const count = tokenCounter(embedder.tokenizer);
    const chunk = effectiveChunkOptions(embedder, config.chunk);
    console.log(
      `chunking with ${config.embedModel}'s tokenizer, ${chunk.maxTokens} tokens, overlap ${chunk.overlapTokens}; ${opts.runs} runs per size`,
    );
    const rows: Array<Array<string | number>> = [['text', 'passages', 'median ms', 'MB/s', 'ms per 100 KB']];
    const perChar: number[] = [];
    chunkText(proseOfLength(corpusDir, SIZES[0]!.chars), count, chunk); // warm-up: JIT and tokenizer caches
    for (const { label, chars } of SIZES) {
      const text = proseOfLength(corpusDir, chars);
      const times: number[] = [];
      let passages = 0;
      for (let run = 0; run < opts.runs; run++) {
        const started = performance.now();
        passages = chunkText(text, count, chunk).length;
        times.push(performance.now() - started);
      }
      const ms = median(times);
      perChar.push(ms / chars);
      rows.push([label, passages, ms.toFixed(0), (chars / 1e6 / (ms / 1000)).toFixed(2), ((ms / chars) * 100_000).toFixed(1)]);
    }
    console.log(formatTable(rows));
    console.log(
      `time per character, 1 MB vs 100 KB: ${(perChar[1]! / perChar[0]!).toFixed(2)}x; 5 MB vs 100 KB: ${(perChar[2]! / perChar[0]!).toFixed(2)}x (1.00 = linear)`,
    );

    if (opts.writeMb > 0) {
      const server = await startServer(config, pino({ level: 'silent' }));
      try {
        await server.ready;
        const base = `http://127.0.0.1:${server.port}`;
        const result = await writeWhileSearching(base, proseOfLength(corpusDir, Math.round(opts.writeMb * 1_000_000)));
        if (result.status !== 200) throw new Error(`the write answered ${result.status}`);
        console.log(
          `\nPOST /v1/documents of ${opts.writeMb} MB with searches running: write ${(result.writeMs / 1000).toFixed(1)} s, ` +
            `longest event-loop block ${result.maxBlockMs.toFixed(0)} ms wall / ${result.maxBlockCpuMs.toFixed(0)} ms CPU, ${result.searches} searches answered meanwhile ` +
            `(slowest ${result.maxSearchMs.toFixed(0)} ms, ${result.searchFailures} failed)`,
        );
      } finally {
        await server.close();
      }
    }
    console.log(
      `load average: ${os
        .loadavg()
        .map((l) => l.toFixed(2))
        .join(' ')}`,
    );
  } finally {
    rmSync(indexesDir, { recursive: true, force: true });
  }
});
