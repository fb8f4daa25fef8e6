/**
 * `npm run bench:replicas`: the PostgreSQL deployment's replication figures.
 *  - propagation lag: a document written through replica A, until replica B's local index serves it (p50/p95);
 *  - catch-up: replica B was down while 10k passages were written; time from its restart until caught up;
 *  - rebuild: B's local files are gone; time to rebuild them from PostgreSQL (stored vectors, no embedding);
 *  - re-ingest: what the same passages cost to embed and write again, measured on a sample, per 10k passages.
 * Replicas are two engines with their own local folders over one throwaway PostgreSQL server (or --database-url).
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Command } from 'commander';
import pg from 'pg';
import { Embedder } from '../src/models/index.js';
import { openStoreEngine, type EngineSpec, type OpenCollectionOptions, type PassageStore } from '../src/store/index.js';

type PostgresEngineSpec = Extract<EngineSpec, { kind: 'postgres' }>;
import type { DocumentWrite } from '../src/store/index.js';
import { loadConfig } from '../src/config/index.js';
import { formatTable, intOption, runCli } from './lib/cli.js';
import { BERT_FULL, ensureFullFixtures } from './lib/full-fixtures.js';
import { median } from './lib/stats.js';
import { startThrowawayPostgres } from './lib/throwaway-postgres.js';

const program = new Command()
  .name('bench:replicas')
  .description('Replication lag, catch-up and rebuild times of the PostgreSQL deployment')
  .option('--database-url <url>', 'an existing PostgreSQL database (default: a throwaway server)')
  .option('--models <dir>', 'models folder (default: full-size fixtures, built on first use)')
  .option('--model <name>', 'embedding model for the re-ingest measurement', BERT_FULL)
  .option('--passages <n>', 'passages written while replica B is down', intOption('--passages'), 10_000)
  .option('--lag-writes <n>', 'single-document writes for the lag measurement', intOption('--lag-writes'), 200)
  .option('--reingest-sample <n>', 'passages embedded and written to measure re-ingest', intOption('--reingest-sample'), 256)
  .option('--text <file>', 'BEIR corpus.jsonl to draw passage text from', '../shared/data/beir-msmarco-mini/corpus.jsonl')
  .option('--probe-memory <json>', '(internal) measure the RSS growth of opening one collection, in a fresh process')
  .parse();
const opts = program.opts<{
  databaseUrl?: string;
  models?: string;
  model: string;
  passages: number;
  lagWrites: number;
  reingestSample: number;
  text: string;
  probeMemory?: string;
}>();

/** Bytes PostgreSQL's tables and indexes take per stored passage (the bench's database holds only its collection). */
async function pgBytesPerPassage(url: string): Promise<number> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    await client.query('VACUUM ANALYZE passages, documents, changes');
    const { rows } = await client.query<{ bytes: string; passages: string }>(
      `SELECT pg_total_relation_size('passages') + pg_total_relation_size('documents') + pg_total_relation_size('changes') AS bytes,
              (SELECT count(*) FROM passages) AS passages`,
    );
    return Number(rows[0]!.bytes) / Number(rows[0]!.passages);
  } finally {
    await client.end();
  }
}

/** Runs this script in probe mode in a child process: RSS growth from opening the collection's local index. */
function memoryProbe(engineSpec: PostgresEngineSpec, collection: string, open: OpenCollectionOptions): number {
  const result = spawnSync(
    process.execPath,
    ['--expose-gc', '--import', 'tsx', fileURLToPath(import.meta.url), '--probe-memory', JSON.stringify({ engineSpec, collection, open })],
    {
      encoding: 'utf8',
    },
  );
  const match = /^rss-growth (\d+)$/m.exec(result.stdout);
  if (!match) throw new Error(`memory probe failed: ${result.stdout}${result.stderr}`);
  return Number(match[1]);
}

async function probeMemory(json: string): Promise<void> {
  const { engineSpec, collection, open } = JSON.parse(json) as {
    engineSpec: PostgresEngineSpec;
    collection: string;
    open: OpenCollectionOptions;
  };
  const gc = globalThis.gc ?? (() => undefined);
  const engine = await openStoreEngine({ ...engineSpec, pollIntervalMs: 3_600_000 });
  // An empty collection first: loads the native modules and SQLite's fixed allocations outside the measurement.
  const empty = await engine.openCollection(`${collection}-empty`, { ...open, create: true });
  await empty.close();
  gc();
  const before = process.memoryUsage().rss;
  const store = await engine.openCollection(collection, { ...open, create: false });
  gc();
  console.log(`rss-growth ${Math.max(0, process.memoryUsage().rss - before)}`);
  await store.close();
  await engine.close();
}

function percentile(values: number[], p: number): number {
  const s = [...values].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]!;
}

function randomUnit(dim: number, seed: number): Float32Array {
  let x = seed * 2654435761 + 1;
  const v = new Float32Array(dim);
  for (let i = 0; i < dim; i++) {
    x = (x * 1103515245 + 12345) % 2147483648;
    v[i] = x / 2147483648 - 0.5;
  }
  return v;
}

function docWrite(id: string, text: string, vector: Float32Array): DocumentWrite {
  return {
    document: { id, title: '', contentHash: id, chunking: 'bench', metadata: {} },
    passages: [{ id: `${id}#0`, chunkNo: 0, title: '', text, metadata: {}, charStart: 0, charEnd: text.length, vector }],
  };
}

async function main(): Promise<void> {
  const config = loadConfig({ env: {} });
  const texts = readFileSync(opts.text, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => (JSON.parse(l) as { text: string }).text);
  const embedder = await Embedder.load(opts.model, {
    modelsDir: opts.models ? path.resolve(opts.models) : await ensureFullFixtures(),
    allowRemote: false,
    quantized: false,
    batchSize: config.embedding.batchSize,
  });
  const server = opts.databaseUrl ? undefined : await startThrowawayPostgres({ fast: false });
  const url = opts.databaseUrl ?? server!.url;
  const root = mkdtempSync(path.join(os.tmpdir(), 'rag-bench-replicas-'));
  const spec = (name: string): PostgresEngineSpec => ({
    kind: 'postgres',
    url,
    localDir: path.join(root, name),
    poolMax: config.database.poolMax,
    connectTimeoutMs: config.database.connectTimeoutMs,
    pollIntervalMs: config.database.pollIntervalMs,
    applyBatchChanges: config.database.applyBatchChanges,
  });
  const open: OpenCollectionOptions = {
    embedModel: embedder.modelId,
    dim: embedder.dim,
    hnsw: config.hnsw,
    exactFilterThreshold: 256,
    create: true,
  };
  const collection = `bench-${Date.now()}`;
  const rows: Array<Array<string | number>> = [['measure', 'value']];
  try {
    const a = await openStoreEngine(spec('a'));
    const storeA = await a.openCollection(collection, open);
    let b = await openStoreEngine(spec('b'));
    let storeB: PassageStore = await b.openCollection(collection, open);

    // Propagation lag: write through A, poll B's local index. From A's acknowledgement (A has committed and applied
    // the write itself), and from the start of the write (embedding excluded: vectors are given).
    const lags: number[] = [];
    const endToEnd: number[] = [];
    for (let i = 0; i < opts.lagWrites; i++) {
      const id = `lag-${i}`;
      const start = performance.now();
      await storeA.writeDocuments([docWrite(id, texts[i % texts.length]!, randomUnit(embedder.dim, i))]);
      const acked = performance.now();
      while ((await storeB.getDocument(id)) === undefined) await new Promise((r) => setTimeout(r, 1));
      const visible = performance.now();
      lags.push(visible - acked);
      endToEnd.push(visible - start);
    }
    rows.push(
      ['propagation lag after A acknowledged, p50 / p95 (ms)', `${median(lags).toFixed(1)} / ${percentile(lags, 95).toFixed(1)}`],
      ['write start on A → visible on B, p50 / p95 (ms)', `${median(endToEnd).toFixed(1)} / ${percentile(endToEnd, 95).toFixed(1)}`],
    );

    // B goes down; A writes the bulk.
    await storeB.close();
    await b.close();
    const batch = 100;
    const writeStarted = performance.now();
    for (let i = 0; i < opts.passages; i += batch) {
      const writes: DocumentWrite[] = [];
      for (let j = i; j < Math.min(opts.passages, i + batch); j++)
        writes.push(docWrite(`doc-${j}`, texts[j % texts.length]!, randomUnit(embedder.dim, j + 1_000_000)));
      await storeA.writeDocuments(writes);
    }
    const writeMs = performance.now() - writeStarted;
    const per10k = (ms: number) => ((ms / opts.passages) * 10_000) / 1000;
    rows.push(['write through A incl. its local apply (s per 10k passages)', per10k(writeMs).toFixed(1)]);

    // Catch-up: B restarts with its checkpoint.
    let started = performance.now();
    b = await openStoreEngine(spec('b'));
    storeB = await b.openCollection(collection, open);
    const catchUpMs = performance.now() - started;
    const caughtUp = (await storeB.stats()).passages;
    rows.push([`catch-up after restart (s per 10k passages; ${caughtUp} passages now)`, per10k(catchUpMs).toFixed(1)]);
    await storeB.close();
    await b.close();

    // Rebuild: B's local files are gone.
    rmSync(spec('b').localDir, { recursive: true, force: true });
    started = performance.now();
    b = await openStoreEngine(spec('b'));
    storeB = await b.openCollection(collection, open);
    const rebuildMs = performance.now() - started;
    const rebuiltStats = await storeB.stats();
    const rebuiltPassages = rebuiltStats.passages;
    rows.push([
      `rebuild from PostgreSQL (s per 10k passages; ${rebuiltPassages} rebuilt)`,
      (((rebuildMs / rebuiltPassages) * 10_000) / 1000).toFixed(1),
    ]);
    await storeB.close();
    await b.close();

    // What a replica holds per passage: resident memory of an open collection (measured in a fresh process, so
    // nothing else this benchmark allocated blurs it), and its local files.
    const rssGrowth = memoryProbe(spec('b'), collection, open);
    const perMillion = (bytes: number) => `${((bytes * 1e6) / 1024 ** 3).toFixed(2)} GiB`;
    rows.push([`replica memory per 1M passages (${embedder.dim}-d; RSS growth on open)`, perMillion(rssGrowth / rebuiltPassages)]);
    rows.push(['replica local files per 1M passages', perMillion(rebuiltStats.bytes / rebuiltPassages)]);
    const pgBytes = await pgBytesPerPassage(url);
    rows.push(['PostgreSQL (passages + documents + change log) per 1M passages', perMillion(pgBytes)]);
    await storeB.close();
    await b.close();

    // Re-ingest: embed and write a sample of the same texts.
    const sample = texts.slice(0, opts.reingestSample);
    started = performance.now();
    const vectors = await embedder.embedPassages(sample);
    await storeA.writeDocuments(sample.map((t, i) => docWrite(`re-${i}`, t, vectors[i]!)));
    const reingestMs = performance.now() - started;
    const reingestPer10k = ((reingestMs / sample.length) * 10_000) / 1000;
    rows.push([`re-ingest: embed (${embedder.modelId}) + write (s per 10k passages, from ${sample.length})`, reingestPer10k.toFixed(1)]);
    rows.push(['re-ingest / rebuild (ratio)', (reingestPer10k / (((rebuildMs / rebuiltPassages) * 10_000) / 1000)).toFixed(1)]);
    await storeA.close();
    await a.close();
  } finally {
    rmSync(root, { recursive: true, force: true });
    server?.stop();
  }
  console.log(formatTable(rows));
  console.log(
    `load average: ${os
      .loadavg()
      .map((l) => l.toFixed(2))
      .join(' ')} (${os.cpus().length} cores)`,
  );
}

runCli(() => (opts.probeMemory ? probeMemory(opts.probeMemory) : main()));
