/**
 * Memory with many collections: the real server (child process, tiny fixture models) gets N collections, each written
 * and then queried; its RSS and open file descriptors are read from /proc. Run once with the configured bound and
 * once with every collection allowed open, so the two are compared in the same run.
 *   npm run bench:collections -- --collections 50 --max-open 4 --docs 40
 */
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Command } from 'commander';
import { fixtureDirName } from '../src/fixtures/index.js';
import { formatTable, intOption, runCli } from './lib/cli.js';
import { rssBytes, startServerProcess } from './lib/server-process.js';
import { ensureTinyFixtures } from './lib/full-fixtures.js';

const WORDS = 'river stone lantern harbor meadow copper violin glacier orchard falcon pepper canyon ember willow'.split(' ');

function prose(seed: number, words: number): string {
  let x = seed * 2654435761;
  return Array.from({ length: words }, (_, i) => {
    x = (x * 1103515245 + 12345) >>> 0;
    return WORDS[x % WORDS.length]! + (i % 12 === 11 ? '.' : '');
  }).join(' ');
}

async function post(base: string, route: string, body: unknown): Promise<any> {
  const res = await fetch(base + route, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  const json = await res.json();
  if (!res.ok) throw new Error(`${route}: ${res.status} ${JSON.stringify(json)}`);
  return json;
}

async function run(opts: { collections: number; docs: number; maxOpen: number }, modelsDir: string) {
  const work = mkdtempSync(path.join(os.tmpdir(), 'bench-collections-'));
  const configFile = path.join(work, 'rag.config.json');
  writeFileSync(configFile, JSON.stringify({ collections: { maxOpen: opts.maxOpen }, auth: { disabled: true }, server: { ingestCorpusOnStart: false } }));
  const server = await startServerProcess({
    modelsDir,
    embedModel: fixtureDirName('bert', 'tiny'),
    readerModel: fixtureDirName('t5', 'tiny'),
    indexesDir: path.join(work, 'indexes'),
    corpusDir: path.join(work, 'no-corpus'),
    configFile,
    // The machine may be shared: model loading alone can take a minute under load.
    readyTimeoutMs: 300_000,
  });
  try {
    const fds = () => readdirSync(`/proc/${server.pid}/fd`).length;
    const before = { rss: rssBytes(server.pid), fds: fds() };
    for (let c = 0; c < opts.collections; c++) {
      const name = `bench-${c}`;
      await post(server.base, '/v1/collections', { name });
      const documents = Array.from({ length: opts.docs }, (_, d) => ({ id: `d${d}`, text: prose(c * 1000 + d, 120) }));
      await post(server.base, `/v1/collections/${name}/documents`, { documents });
    }
    const written = { rss: rssBytes(server.pid), fds: fds() };
    for (let round = 0; round < 2; round++) {
      for (let c = 0; c < opts.collections; c++) {
        await post(server.base, `/v1/collections/bench-${c}/search`, { query: prose(round * 7 + c, 6), mode: 'hybrid', k: 10 });
      }
    }
    const queried = { rss: rssBytes(server.pid), fds: fds() };
    const listing = (await (await fetch(`${server.base}/v1/collections`)).json()) as { open: { count: number; peak: number } };
    return { before, written, queried, open: listing.open };
  } finally {
    server.child.kill('SIGTERM');
    await server.exited;
    rmSync(work, { recursive: true, force: true });
  }
}

runCli(async () => {
  const opts = new Command()
    .name('bench:collections')
    .option('--collections <n>', 'collections to create and query', intOption('--collections'), 50)
    .option('--max-open <n>', 'collections.maxOpen for the bounded run', intOption('--max-open'), 4)
    .option('--docs <n>', 'documents (~120 words each) per collection', intOption('--docs'), 40)
    .parse()
    .opts<{ collections: number; maxOpen: number; docs: number }>();
  const modelsDir = await ensureTinyFixtures();
  const mb = (b: number) => (b / 2 ** 20).toFixed(1);
  const rows: Array<Array<string | number>> = [['collections.maxOpen', 'RSS start MB', 'after writes MB', 'after queries MB', 'fds start → end', 'open now / peak']];
  const results: Array<Awaited<ReturnType<typeof run>>> = [];
  for (const maxOpen of [opts.maxOpen, opts.collections]) {
    const r = await run({ ...opts, maxOpen }, modelsDir);
    results.push(r);
    rows.push([maxOpen, mb(r.before.rss), mb(r.written.rss), mb(r.queried.rss), `${r.before.fds} → ${r.queried.fds}`, `${r.open.count} / ${r.open.peak}`]);
  }
  console.log(`${opts.collections} collections × ${opts.docs} documents, tiny fixture models, server as a child process`);
  console.log(formatTable(rows));
  const growth = (r: Awaited<ReturnType<typeof run>>) => r.queried.rss - r.before.rss;
  console.log(`RSS growth bounded / unbounded: ${(growth(results[0]!) / growth(results[1]!)).toFixed(2)}`);
});
