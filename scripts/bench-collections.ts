/**
 * Memory with many collections: the real server (child process, tiny fixture models) gets N collections, each written
 * and then queried; its RSS and open file descriptors are read from /proc. Run once with the configured bound and
 * once with every collection allowed open, so the two are compared in the same run.
 *   npm run bench:collections -- --collections 50 --max-open 4 --docs 40
 *
 * Churn: the collections are searched in turn, so with more of them than `collections.maxOpen` (the config's
 * default unless --max-open is given) every search reopens one the bound closed. RSS is read after the first 100
 * reopenings and after all of them; the run fails (exit 1) when it grew by more than --max-growth-mb.
 *   npm run bench:collections -- --churn 1000
 */
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Command } from 'commander';
import { loadConfig } from '../src/config/index.js';
import { fixtureDirName } from '../src/fixtures/index.js';
import { fail, formatTable, intOption, runCli } from './lib/cli.js';
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

type Server = Awaited<ReturnType<typeof startServerProcess>>;

const MEMORY_REPORT = 'bench-memory ';
/**
 * Preloaded into a churn's server: on SIGUSR2 it prints its memory as it is; on SIGHUP it first runs a full garbage
 * collection, then (a turn later, once native objects' finalizers have run) another, and prints its memory then.
 */
const MEMORY_ON_SIGNAL = [
  `const report = (kind) => process.stdout.write(${JSON.stringify(MEMORY_REPORT)} + JSON.stringify({ kind, ...process.memoryUsage() }) + '\\n');`,
  `process.on('SIGUSR2', () => report('as-is'));`,
  `process.on('SIGHUP', () => { gc(); setImmediate(() => { gc(); setImmediate(() => report('after-gc')); }); });`,
].join(' ');

/** Runs `work` against a fresh server with the given collections bound, in a folder of its own removed afterwards. */
async function withServer<T>(maxOpen: number, modelsDir: string, work: (server: Server) => Promise<T>, memoryOnSignal = false): Promise<T> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'bench-collections-'));
  const configFile = path.join(dir, 'rag.config.json');
  // No rate limit: a churn sends more requests a minute than the default allows.
  writeFileSync(
    configFile,
    JSON.stringify({ collections: { maxOpen }, auth: { disabled: true }, server: { ingestCorpusOnStart: false, rateLimit: { max: 0 } } }),
  );
  const server = await startServerProcess({
    modelsDir,
    embedModel: fixtureDirName('bert', 'tiny'),
    readerModel: fixtureDirName('t5', 'tiny'),
    indexesDir: path.join(dir, 'indexes'),
    corpusDir: path.join(dir, 'no-corpus'),
    configFile,
    // The machine may be shared: model loading alone can take a minute under load.
    readyTimeoutMs: 300_000,
    ...(memoryOnSignal
      ? { env: { NODE_OPTIONS: `--expose-gc --import=data:text/javascript,${encodeURIComponent(MEMORY_ON_SIGNAL)}` } }
      : {}),
  });
  try {
    return await work(server);
  } finally {
    server.child.kill('SIGTERM');
    await server.exited;
    rmSync(dir, { recursive: true, force: true });
  }
}

async function createCollections(server: Server, opts: { collections: number; docs: number }): Promise<void> {
  for (let c = 0; c < opts.collections; c++) {
    const name = `bench-${c}`;
    await post(server.base, '/v1/collections', { name });
    const documents = Array.from({ length: opts.docs }, (_, d) => ({ id: `d${d}`, text: prose(c * 1000 + d, 120) }));
    await post(server.base, `/v1/collections/${name}/documents`, { documents });
  }
}

async function run(opts: { collections: number; docs: number; maxOpen: number }, modelsDir: string) {
  return withServer(opts.maxOpen, modelsDir, async (server) => {
    const fds = () => readdirSync(`/proc/${server.pid}/fd`).length;
    const before = { rss: rssBytes(server.pid), fds: fds() };
    await createCollections(server, opts);
    const written = { rss: rssBytes(server.pid), fds: fds() };
    for (let round = 0; round < 2; round++) {
      for (let c = 0; c < opts.collections; c++) {
        await post(server.base, `/v1/collections/bench-${c}/search`, { query: prose(round * 7 + c, 6), mode: 'hybrid', k: 10 });
      }
    }
    const queried = { rss: rssBytes(server.pid), fds: fds() };
    const listing = (await (await fetch(`${server.base}/v1/collections`)).json()) as { open: { count: number; peak: number } };
    return { before, written, queried, open: listing.open };
  });
}

interface MemoryReading {
  rss: number;
  heapTotal: number;
}

/** The server's own memory figures (see MEMORY_ON_SIGNAL): as they are, or after a full garbage collection. */
async function serverMemory(server: Server, kind: 'as-is' | 'after-gc'): Promise<MemoryReading> {
  const reports = () =>
    server
      .output()
      .split('\n')
      .filter((line) => line.startsWith(MEMORY_REPORT))
      .map((line) => JSON.parse(line.slice(MEMORY_REPORT.length)) as MemoryReading & { kind: string })
      .filter((r) => r.kind === kind);
  const before = reports().length;
  // The server is idle now; a short pause lets a reading taken mid-allocation settle.
  await new Promise((r) => setTimeout(r, 50));
  process.kill(server.pid, kind === 'as-is' ? 'SIGUSR2' : 'SIGHUP');
  const deadline = Date.now() + 30_000;
  for (;;) {
    const all = reports();
    if (all.length > before) return all[all.length - 1]!;
    if (Date.now() > deadline) throw new Error(`the server did not report its memory (${kind}) within 30 s`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** Collections the bound closed so far, from the server's log. */
function boundCloses(server: Server): number {
  return server.output().split('collection closed (least recently used)').length - 1;
}

const FIRST_REOPENINGS = 100;

interface ChurnSample {
  reopenings: number;
  asIs: MemoryReading;
  /** Only after the first 100 reopenings and at the end: a forced collection in between would hide memory V8 leaves. */
  afterGc?: MemoryReading;
}

/**
 * Searches the collections in turn, `reopenings` times in all, reading the server's memory as it is along the way,
 * and after a full garbage collection once the first 100 are done and at the end.
 */
async function churn(opts: { collections: number; docs: number; maxOpen: number; reopenings: number }, modelsDir: string) {
  return withServer(
    opts.maxOpen,
    modelsDir,
    async (server) => {
      await createCollections(server, opts);
      const closedBefore = boundCloses(server);
      const samples: ChurnSample[] = [];
      const every = Math.max(FIRST_REOPENINGS, Math.round(opts.reopenings / 10));
      for (let i = 0; i < opts.reopenings; i++) {
        await post(server.base, `/v1/collections/bench-${i % opts.collections}/search`, { query: prose(i, 6), mode: 'hybrid', k: 10 });
        const done = i + 1;
        if (done !== FIRST_REOPENINGS && done % every !== 0 && done !== opts.reopenings) continue;
        const asIs = await serverMemory(server, 'as-is');
        const ends = done === FIRST_REOPENINGS || done === opts.reopenings;
        samples.push({ reopenings: done, asIs, ...(ends ? { afterGc: await serverMemory(server, 'after-gc') } : {}) });
      }
      return { samples, closed: boundCloses(server) - closedBefore };
    },
    true,
  );
}

async function churnMain(
  opts: { collections: number; docs: number; maxOpen: number; reopenings: number; maxGrowthMb: number },
  modelsDir: string,
) {
  if (opts.collections <= opts.maxOpen)
    fail(`--churn needs more collections (--collections ${opts.collections}) than --max-open (${opts.maxOpen})`);
  if (opts.reopenings < FIRST_REOPENINGS) fail(`--churn must be at least ${FIRST_REOPENINGS}`);
  const mb = (b: number) => (b / 2 ** 20).toFixed(1);
  const outsideHeap = (m: MemoryReading) => m.rss - m.heapTotal;
  const { samples, closed } = await churn(opts, modelsDir);
  console.log(
    `${opts.collections} collections × ${opts.docs} documents searched in turn (hybrid), collections.maxOpen ${opts.maxOpen}, ` +
      `tiny fixture models, server as a child process; ${closed} collections closed by the bound during the searches`,
  );
  console.log(
    formatTable([
      ['reopenings', 'RSS MB', 'JS heap MB', 'RSS outside the JS heap MB', 'after a full GC: RSS MB', 'outside the JS heap MB'],
      ...samples.map((s) => [
        s.reopenings,
        mb(s.asIs.rss),
        mb(s.asIs.heapTotal),
        mb(outsideHeap(s.asIs)),
        s.afterGc ? mb(s.afterGc.rss) : '',
        s.afterGc ? mb(outsideHeap(s.afterGc)) : '',
      ]),
    ]),
  );
  const first = samples[0]!;
  const last = samples[samples.length - 1]!;
  // Both measured from where the server settled after the first 100 (a full GC then). Two ways to keep memory: holding
  // it (it survives a full collection), or leaving it to a collection V8 has no reason to start (native memory it
  // cannot see: outside its heap, without one). The JS heap itself may grow by garbage until V8 collects it on its own
  // schedule; that is not growth the server keeps.
  const checks = [
    { what: 'RSS after a full GC', growth: last.afterGc!.rss - first.afterGc!.rss },
    { what: 'RSS outside the JS heap, no GC forced', growth: outsideHeap(last.asIs) - outsideHeap(first.afterGc!) },
  ];
  for (const c of checks)
    console.log(
      `${c.what}: grew ${mb(c.growth)} MB from ${FIRST_REOPENINGS} to ${last.reopenings} reopenings (limit ${opts.maxGrowthMb} MB)`,
    );
  const failed = checks.filter((c) => c.growth > opts.maxGrowthMb * 2 ** 20);
  if (failed.length > 0) fail(failed.map((c) => `${c.what} grew by ${mb(c.growth)} MB, more than ${opts.maxGrowthMb} MB`).join('; '));
}

runCli(async () => {
  const command = new Command()
    .name('bench:collections')
    .option('--collections <n>', 'collections to create and query', intOption('--collections'), 50)
    .option('--max-open <n>', 'collections.maxOpen for the bounded run', intOption('--max-open'), 4)
    .option('--docs <n>', 'documents (~120 words each) per collection', intOption('--docs'), 40)
    .option('--churn <n>', 'instead: search the collections in turn n times (reopenings), checking RSS growth', intOption('--churn'))
    .option('--max-growth-mb <n>', 'with --churn: most RSS growth allowed from 100 reopenings to the end', intOption('--max-growth-mb'), 20)
    .parse();
  const opts = command.opts<{ collections: number; maxOpen: number; docs: number; churn?: number; maxGrowthMb: number }>();
  const modelsDir = await ensureTinyFixtures();
  if (opts.churn !== undefined) {
    // The churn is measured at the server's own bound unless one is named.
    const maxOpen =
      command.getOptionValueSource('maxOpen') === 'default' ? loadConfig({ env: {}, cwd: os.tmpdir() }).collections.maxOpen : opts.maxOpen;
    await churnMain({ ...opts, maxOpen, reopenings: opts.churn }, modelsDir);
    return;
  }
  const mb = (b: number) => (b / 2 ** 20).toFixed(1);
  const rows: Array<Array<string | number>> = [
    ['collections.maxOpen', 'RSS start MB', 'after writes MB', 'after queries MB', 'fds start → end', 'open now / peak'],
  ];
  const results: Array<Awaited<ReturnType<typeof run>>> = [];
  for (const maxOpen of [opts.maxOpen, opts.collections]) {
    const r = await run({ ...opts, maxOpen }, modelsDir);
    results.push(r);
    rows.push([
      maxOpen,
      mb(r.before.rss),
      mb(r.written.rss),
      mb(r.queried.rss),
      `${r.before.fds} → ${r.queried.fds}`,
      `${r.open.count} / ${r.open.peak}`,
    ]);
  }
  console.log(`${opts.collections} collections × ${opts.docs} documents, tiny fixture models, server as a child process`);
  console.log(formatTable(rows));
  const growth = (r: Awaited<ReturnType<typeof run>>) => r.queried.rss - r.before.rss;
  console.log(`RSS growth bounded / unbounded: ${(growth(results[0]!) / growth(results[1]!)).toFixed(2)}`);
});
