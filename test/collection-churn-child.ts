/**
 * Child process for test/collection-churn.test.ts (run with --expose-gc): the real HTTP server in this process on the
 * tiny fixture models, with the configured `collections.maxOpen`. `churn` searches more collections than that in turn,
 * so every search reopens one, and prints the memory readings as one JSON line. `recycled-graphs` fills the pool of
 * closed HNSW graphs and then loads files hnswlib cannot load, and survives the garbage collections after.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { startServer } from '../src/main.js';
import { DEFAULTS } from './helpers/store.js';
import { HnswIndex } from '../src/store/index.js';
import { fixtureConfig } from './helpers/config.js';

const gc = (globalThis as { gc?: () => void }).gc;
if (!gc) throw new Error('run with --expose-gc');

/** A full collection, and another a turn later once native objects' finalizers (deferred to a turn) have run. */
async function collectGarbage(): Promise<void> {
  for (let i = 0; i < 2; i++) {
    gc!();
    await new Promise((r) => setImmediate(r));
  }
}

function memory(): { rss: number; heapTotal: number } {
  const { rss, heapTotal } = process.memoryUsage();
  return { rss, heapTotal };
}

export interface ChurnReport {
  /** After the first `warmup` reopenings, then a full GC: where the server settled. */
  settled: { rss: number; heapTotal: number };
  /** After all of them, with no GC forced in between. */
  end: { rss: number; heapTotal: number };
  /** After all of them and a full GC. */
  endAfterGc: { rss: number; heapTotal: number };
  /** Collections the bound closed during the searches. */
  closedByBound: number;
  maxOpen: number;
}

async function churn(collections: number, warmup: number, reopenings: number): Promise<ChurnReport> {
  let closedByBound = 0;
  const counting = new Writable({
    write(chunk: Buffer, _encoding, done) {
      closedByBound += chunk.toString().split('collection closed (least recently used)').length - 1;
      done();
    },
  });
  const config = fixtureConfig({
    logLevel: 'info',
    auth: { disabled: true },
    corpusDir: mkdtempSync(path.join(os.tmpdir(), 'churn-no-corpus-')),
    server: { ingestCorpusOnStart: false, rateLimit: { max: 0 } },
  });
  const server = await startServer(config, pino({ level: 'info' }, counting));
  await server.ready;
  const base = `http://127.0.0.1:${server.port}`;
  const post = async (route: string, body: unknown) => {
    const res = await fetch(base + route, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
    if (!res.ok) throw new Error(`${route}: ${res.status} ${await res.text()}`);
    return res.json();
  };
  try {
    for (let c = 0; c < collections; c++) {
      await post('/v1/collections', { name: `churn-${c}` });
      const documents = Array.from({ length: 8 }, (_, d) => ({
        id: `d${d}`,
        text: `Collection ${c} document ${d} is about harbor${d} and lantern${c}.`,
      }));
      await post(`/v1/collections/churn-${c}/documents`, { documents });
    }
    const search = (i: number) =>
      post(`/v1/collections/churn-${i % collections}/search`, { query: `harbor${i % 8} lantern`, mode: 'hybrid', k: 5 });
    const closedBefore = closedByBound;
    for (let i = 0; i < warmup; i++) await search(i);
    await collectGarbage();
    const settled = memory();
    for (let i = warmup; i < warmup + reopenings; i++) await search(i);
    const end = memory();
    await collectGarbage();
    return { settled, end, endAfterGc: memory(), closedByBound: closedByBound - closedBefore, maxOpen: config.collections.maxOpen };
  } finally {
    await server.close();
    for (const dir of [config.indexesDir, config.corpusDir]) rmSync(dir, { recursive: true, force: true });
  }
}

/** Loads that must fail (missing, truncated, another dimension) while closed graphs of that dimension wait for reuse. */
async function recycledGraphs(): Promise<string[]> {
  const dim = 16;
  const dir = mkdtempSync(path.join(os.tmpdir(), 'recycled-graphs-'));
  const params = DEFAULTS.hnsw;
  const vector = (seed: number) => Float32Array.from({ length: dim }, (_, i) => Math.sin(seed * 31 + i));
  const saved = HnswIndex.create(dim, params);
  for (let label = 1; label <= 50; label++) saved.add(label, vector(label));
  const good = path.join(dir, 'good.bin');
  await saved.write(good);
  saved.close();
  const other = HnswIndex.create(dim * 2, params);
  other.add(
    1,
    Float32Array.from({ length: dim * 2 }, (_, i) => i + 1),
  );
  const otherDim = path.join(dir, 'other-dim.bin');
  await other.write(otherDim);
  other.close();
  const bytes = readFileSync(good);
  const truncated = path.join(dir, 'truncated.bin');
  writeFileSync(truncated, bytes.subarray(0, bytes.length - 7));

  const errors: string[] = [];
  for (let round = 0; round < 3; round++) {
    // Closed graphs of this dimension are waiting for reuse when each bad load is tried.
    for (let i = 0; i < 3; i++) HnswIndex.create(dim, params).close();
    for (const file of [path.join(dir, 'missing.bin'), truncated, otherDim]) {
      try {
        HnswIndex.load(file, dim, params).close();
        errors.push(`${path.basename(file)}: loaded`);
      } catch (err) {
        errors.push(`${path.basename(file)}: ${(err as Error).message}`);
      }
    }
    // The good file still loads into a reused object and answers.
    const loaded = HnswIndex.load(good, dim, params);
    for (let label = 1; label <= 50; label++) loaded.adoptFromFile(label);
    const top = loaded.search(vector(7), 1)[0];
    if (top?.label !== 7) errors.push(`good.bin: nearest to vector 7 is ${JSON.stringify(top)}`);
    loaded.close();
    await collectGarbage();
  }
  rmSync(dir, { recursive: true, force: true });
  return errors;
}

const [mode, ...args] = process.argv.slice(2);
if (mode === 'churn') {
  const [collections, warmup, reopenings] = args.map(Number) as [number, number, number];
  process.stdout.write(JSON.stringify(await churn(collections, warmup, reopenings)) + '\n');
} else if (mode === 'recycled-graphs') {
  const errors = await recycledGraphs();
  await collectGarbage();
  process.stdout.write(JSON.stringify({ errors }) + '\n');
} else {
  throw new Error(`unknown mode ${mode}`);
}
