/**
 * Load benchmark: the real server as a child process on loopback, driven by autocannon.
 *   npx tsx scripts/bench-load.ts                      # tiny fixture models, steps 1,4,16,64, 120 s soak
 *   npx tsx scripts/bench-load.ts --size full          # full-size fixtures (real model dimensions)
 * Steps /v1/search and /v1/ask through rising concurrency (each bounded in requests and in time), then soaks a
 * mixed load while sampling the server's RSS. The only errors allowed are the designed refusals, 429 (rate limit)
 * and 503 (queue full); any other status, a connection error or a timeout makes the exit code 1, as does RSS growth
 * past the limit after warm-up.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import autocannon from 'autocannon';
import { Command, InvalidArgumentError, Option } from 'commander';
import { findRepoRoot } from '../src/fixtures/index.js';
import { startServerProcess, rssBytes, type ServerProcess } from './lib/server-process.js';
import { CORPUS_QUESTIONS } from './lib/questions.js';
import { formatTable, runCli } from './lib/cli.js';
import { BERT_FULL, BERT_TINY, ensureFullFixtures, ensureTinyFixtures, T5_FULL, T5_TINY } from './lib/full-fixtures.js';

const QUERIES = CORPUS_QUESTIONS;

interface Options {
  size: 'tiny' | 'full';
  concurrency: number[];
  searchRequests: number;
  askRequests: number;
  stepSeconds: number;
  askTokens: number;
  soakSeconds: number;
  warmupSeconds: number;
  soakConnections: number;
  rssLimit: number;
  rateLimit: number;
  models?: string;
  corpus?: string;
}

interface StepResult {
  name: string;
  connections: number;
  sent: number;
  ok: number;
  refused429: number;
  refused503: number;
  otherStatus: Map<number, number>;
  connectionErrors: number;
  timeouts: number;
  seconds: number;
  /** Latencies of 2xx responses, ms. */
  latencies: number[];
}

const positiveInt =
  (name: string) =>
  (value: string): number => {
    const n = Number(value);
    if (!Number.isInteger(n) || n < 0) throw new InvalidArgumentError(`${name} must be a whole number >= 0`);
    return n;
  };

function intList(value: string): number[] {
  const list = value.split(',').map((v) => Number(v.trim()));
  if (list.length === 0 || list.some((n) => !Number.isInteger(n) || n < 1))
    throw new InvalidArgumentError('expected a comma-separated list of positive integers');
  return list;
}

function ratio(value: string): number {
  const n = Number(value);
  if (!Number.isFinite(n) || n <= 1) throw new InvalidArgumentError('expected a number > 1');
  return n;
}

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[rank]!;
}

function searchRequest(i: number): autocannon.Request {
  return {
    method: 'POST',
    path: '/v1/search',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ query: QUERIES[i % QUERIES.length], k: 10, mode: 'hybrid' }),
  };
}

function askRequest(i: number, maxNewTokens: number): autocannon.Request {
  return {
    method: 'POST',
    path: '/v1/ask',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ question: QUERIES[i % QUERIES.length], k: 5, maxNewTokens }),
  };
}

/** One autocannon run, stopped at `maxRequests` responses or `maxSeconds`, whichever comes first. */
async function drive(
  name: string,
  base: string,
  connections: number,
  requests: autocannon.Request[],
  limits: { maxRequests?: number; maxSeconds: number },
  onSecond?: () => void,
): Promise<StepResult> {
  const result: StepResult = {
    name,
    connections,
    sent: 0,
    ok: 0,
    refused429: 0,
    refused503: 0,
    otherStatus: new Map(),
    connectionErrors: 0,
    timeouts: 0,
    seconds: 0,
    latencies: [],
  };
  const started = performance.now();
  const instance = autocannon({
    url: base,
    connections,
    // Every request, and only as many as asked; a duration far beyond the time limit lets our timer decide.
    ...(limits.maxRequests !== undefined ? { amount: limits.maxRequests } : { duration: limits.maxSeconds + 60 }),
    timeout: 120,
    requests,
  }) as unknown as autocannon.Instance & PromiseLike<autocannon.Result>;
  // autocannon ends an amount-bounded run on its next 1 s tick; the last response marks the real end of the work.
  let lastResponseAt = started;
  instance.on('response', (_client, status, _bytes, ms) => {
    lastResponseAt = performance.now();
    if (status >= 200 && status < 300) {
      result.ok++;
      result.latencies.push(ms);
    } else if (status === 429) result.refused429++;
    else if (status === 503) result.refused503++;
    else result.otherStatus.set(status, (result.otherStatus.get(status) ?? 0) + 1);
  });
  const timer = setTimeout(() => instance.stop(), limits.maxSeconds * 1000);
  const ticker = onSecond ? setInterval(onSecond, 1000) : undefined;
  try {
    const summary = await instance;
    result.sent = summary.requests.sent;
    result.connectionErrors = summary.errors - summary.timeouts;
    result.timeouts = summary.timeouts;
  } finally {
    clearTimeout(timer);
    if (ticker) clearInterval(ticker);
  }
  result.seconds = Math.max(1e-3, (lastResponseAt - started) / 1000);
  result.latencies.sort((a, b) => a - b);
  return result;
}

function unexpected(step: StepResult): number {
  return [...step.otherStatus.values()].reduce((a, b) => a + b, 0) + step.connectionErrors + step.timeouts;
}

function stepRow(step: StepResult): Array<string | number> {
  const done = step.ok + step.refused429 + step.refused503 + [...step.otherStatus.values()].reduce((a, b) => a + b, 0);
  const other = [...step.otherStatus].map(([status, n]) => `${n}×${status}`);
  if (step.connectionErrors) other.push(`${step.connectionErrors} conn`);
  if (step.timeouts) other.push(`${step.timeouts} timeout`);
  return [
    step.name,
    step.connections,
    done,
    step.ok,
    step.refused429,
    step.refused503,
    other.length ? other.join(' ') : 0,
    (step.ok / step.seconds).toFixed(1),
    ms(percentile(step.latencies, 50)),
    ms(percentile(step.latencies, 95)),
    ms(percentile(step.latencies, 99)),
    step.seconds.toFixed(1),
  ];
}

const MB = 1024 * 1024;

const ms = (value: number) => (Number.isNaN(value) ? '-' : value.toFixed(0));

runCli(async () => {
  const opts = new Command()
    .name('bench:load')
    .description('Throughput, latency and error counts of /v1/search and /v1/ask under rising concurrency, then an RSS soak')
    .addOption(new Option('--size <size>', 'fixture model size').choices(['tiny', 'full']).default('tiny'))
    .option('--concurrency <list>', 'connections per step', intList, [1, 4, 16, 64])
    .option('--search-requests <n>', 'max requests per /v1/search step (at least 20 per connection)', positiveInt('--search-requests'), 400)
    .option('--ask-requests <n>', 'max requests per /v1/ask step (at least 2 per connection)', positiveInt('--ask-requests'), 60)
    .option('--step-seconds <n>', 'max seconds per step', positiveInt('--step-seconds'), 30)
    .option('--ask-tokens <n>', 'maxNewTokens per answer', positiveInt('--ask-tokens'), 8)
    .option('--soak-seconds <n>', 'seconds of mixed load for the RSS soak (0 skips it)', positiveInt('--soak-seconds'), 120)
    .option(
      '--warmup-seconds <n>',
      'soak seconds before the start RSS is taken (allocators and caches settle)',
      positiveInt('--warmup-seconds'),
      20,
    )
    .option(
      '--soak-connections <n>',
      'connections during the soak, a quarter of them asking, the rest searching',
      positiveInt('--soak-connections'),
      8,
    )
    .option('--rss-limit <ratio>', 'fail when end RSS / start RSS (after warm-up) exceeds this', ratio, 1.2)
    .option('--rate-limit <n>', 'server.rateLimit.max per minute (0 = off, so the steps measure capacity)', positiveInt('--rate-limit'), 0)
    .option('--models <dir>', 'models folder with the fixture model folders (default: built on first use)')
    .option('--corpus <dir>', 'corpus the server ingests into its fresh index (default: the bundled ./corpus)')
    .parse()
    .opts<Options>();

  const repoRoot = findRepoRoot(process.cwd());
  const full = opts.size === 'full';
  const modelsDir = opts.models ? path.resolve(opts.models) : full ? await ensureFullFixtures() : await ensureTinyFixtures();
  const work = mkdtempSync(path.join(os.tmpdir(), 'bench-load-'));
  const configFile = path.join(work, 'rag.config.json');
  writeFileSync(configFile, JSON.stringify({ server: { rateLimit: { max: opts.rateLimit } }, logLevel: 'warn' }));

  console.error(`starting server (${opts.size} fixtures) ...`);
  const server: ServerProcess = await startServerProcess({
    modelsDir,
    embedModel: full ? BERT_FULL : BERT_TINY,
    readerModel: full ? T5_FULL : T5_TINY,
    indexesDir: path.join(work, 'indexes'),
    corpusDir: opts.corpus ? path.resolve(opts.corpus) : path.join(repoRoot, 'corpus'),
    configFile,
    env: { RAG_AUTH_DISABLED: 'true' },
    readyTimeoutMs: full ? 600_000 : 120_000,
  });
  const stats = JSON.parse(await (await fetch(`${server.base}/v1/stats`)).text()) as { documents: number; passages: number };
  console.error(`server pid ${server.pid} at ${server.base}: ${stats.documents} documents, ${stats.passages} passages`);

  let failed = false;
  try {
    const steps: StepResult[] = [];
    const searchRequests = QUERIES.map((_, i) => searchRequest(i));
    const askRequests = QUERIES.map((_, i) => askRequest(i, opts.askTokens));
    for (const [route, requests, perStep, perConnection] of [
      ['/v1/search', searchRequests, opts.searchRequests, 20],
      ['/v1/ask', askRequests, opts.askRequests, 2],
    ] as const) {
      for (const c of opts.concurrency) {
        const maxRequests = Math.max(perStep, perConnection * c);
        console.error(`${route} at ${c} connection(s): up to ${maxRequests} requests / ${opts.stepSeconds} s ...`);
        steps.push(await drive(route, server.base, c, [...requests], { maxRequests, maxSeconds: opts.stepSeconds }));
      }
    }

    let soak: { steps: StepResult[]; samples: Array<{ t: number; rss: number }> } | undefined;
    if (opts.soakSeconds > 0) {
      // Searches and answers at once, on separate connections so each keeps its own latency figures.
      const askConnections = Math.max(1, Math.round(opts.soakConnections / 4));
      const searchConnections = Math.max(1, opts.soakConnections - askConnections);
      const samples: Array<{ t: number; rss: number }> = [];
      const t0 = performance.now();
      const sample = () => samples.push({ t: (performance.now() - t0) / 1000, rss: rssBytes(server.pid) });
      sample();
      console.error(
        `soak: ${searchConnections} search + ${askConnections} ask connection(s) for ${opts.soakSeconds} s (warm-up ${opts.warmupSeconds} s) ...`,
      );
      const soakSteps = await Promise.all([
        drive('soak /v1/search', server.base, searchConnections, [...searchRequests], { maxSeconds: opts.soakSeconds }, sample),
        drive('soak /v1/ask', server.base, askConnections, [...askRequests], { maxSeconds: opts.soakSeconds }),
      ]);
      sample();
      soak = { steps: soakSteps, samples };
    }

    console.log(
      `\nbench:load — ${opts.size} fixtures, ${stats.documents} documents / ${stats.passages} passages, server pid ${server.pid}`,
    );
    console.log('latencies in ms over 2xx responses; "other" = any status but 2xx/429/503, connection errors, timeouts\n');
    const header = ['step', 'conns', 'done', '2xx', '429', '503', 'other', 'ok req/s', 'p50', 'p95', 'p99', 'secs'];
    console.log(formatTable([header, ...[...steps, ...(soak?.steps ?? [])].map(stepRow)]));

    // Designed refusals may take a whole step (a low --rate-limit), but a step in which nothing completed is broken.
    const bad = [...steps, ...(soak?.steps ?? [])].filter((s) => unexpected(s) > 0 || s.ok + s.refused429 + s.refused503 === 0);
    for (const s of bad) {
      console.error(`FAIL: ${s.name} at ${s.connections} connections: ${unexpected(s)} unexpected errors, ${s.ok} successes`);
      failed = true;
    }

    if (soak) {
      const afterWarmup = soak.samples.filter((s) => s.t >= opts.warmupSeconds);
      if (afterWarmup.length < 2) {
        console.error(`FAIL: the soak is too short for a ${opts.warmupSeconds} s warm-up`);
        failed = true;
      } else {
        const start = afterWarmup[0]!;
        const end = afterWarmup[afterWarmup.length - 1]!;
        const peak = Math.max(...afterWarmup.map((s) => s.rss));
        const growth = end.rss / start.rss;
        const slope = slopeMbPerMinute(afterWarmup);
        const requests = soak.steps.reduce((n, st) => n + st.ok + st.refused429 + st.refused503, 0);
        console.log(
          `\nserver RSS: ${(soak.samples[0]!.rss / MB).toFixed(1)} MB before the soak; after ${opts.warmupSeconds} s warm-up ` +
            `${(start.rss / MB).toFixed(1)} MB (t=${start.t.toFixed(0)} s); end ${(end.rss / MB).toFixed(1)} MB (t=${end.t.toFixed(0)} s); ` +
            `peak ${(peak / MB).toFixed(1)} MB`,
        );
        console.log(
          `RSS end/start ${growth.toFixed(3)} (limit ${opts.rssLimit}); trend ${slope.toFixed(2)} MB/min; ` +
            `${((end.rss - start.rss) / Math.max(1, requests) / 1024).toFixed(2)} KB per request over ${requests} requests`,
        );
        if (growth > opts.rssLimit) {
          console.error(`FAIL: server RSS grew ${growth.toFixed(3)}× after warm-up (limit ${opts.rssLimit}×)`);
          failed = true;
        }
      }
    }
  } finally {
    server.child.kill('SIGTERM');
    const ended = await server.exited;
    if (ended.code !== 0) {
      console.error(`FAIL: server exited with ${ended.code ?? ended.signal} on SIGTERM\n${server.output().slice(-2000)}`);
      failed = true;
    }
    rmSync(work, { recursive: true, force: true });
  }
  if (failed) process.exitCode = 1;
});

/** Least-squares slope of RSS over time. */
function slopeMbPerMinute(samples: Array<{ t: number; rss: number }>): number {
  const n = samples.length;
  const mt = samples.reduce((a, s) => a + s.t, 0) / n;
  const mr = samples.reduce((a, s) => a + s.rss, 0) / n;
  let num = 0;
  let den = 0;
  for (const s of samples) {
    num += (s.t - mt) * (s.rss - mr);
    den += (s.t - mt) ** 2;
  }
  return den === 0 ? 0 : (num / den / MB) * 60;
}
