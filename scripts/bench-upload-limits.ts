/**
 * What hostile uploads cost the server (issue 24): a DOCX and a PDF decompression bomb, a PDF of many pages, and a
 * heading-dense Markdown file, each uploaded to the real server running as a child process with its default upload
 * limits, measured from outside: the status, time to the reply, the child's peak RSS over its RSS before, its RSS two
 * seconds later, its CPU seconds from the upload until then, and the longest /healthz reply during the upload.
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Command } from 'commander';
import { formatTable, intOption, runCli } from './lib/cli.js';
import { BERT_TINY, ensureTinyFixtures, T5_TINY } from './lib/full-fixtures.js';
import { docxBomb, headingDenseMarkdown, minimalPdf, pdfBomb } from './lib/hostile-files.js';
import { rssBytes, startServerProcess, type ServerProcess } from './lib/server-process.js';
import { median } from './lib/stats.js';

const SCENARIOS = ['docx-bomb', 'pdf-bomb', 'pdf-pages', 'markdown'] as const;
type Scenario = (typeof SCENARIOS)[number];

const program = new Command()
  .name('bench:upload-limits')
  .description('status, time, memory and CPU of hostile uploads to the real server, and /healthz latency meanwhile')
  .option('--scenarios <list>', `comma-separated, of ${SCENARIOS.join(', ')}`, SCENARIOS.join(','))
  .option('--trials <n>', 'uploads per scenario', intOption('--trials'), 3)
  .option('--bomb-mib <n>', 'MiB the bombs inflate to', intOption('--bomb-mib'), 1024)
  .option('--pages <n>', 'pages of the long PDF', intOption('--pages'), 20_000)
  .option('--markdown-chars <n>', 'characters of the heading-dense Markdown file', intOption('--markdown-chars'), 2_000_000)
  .option('--settle-ms <n>', 'how long after the reply the RSS and CPU are read', intOption('--settle-ms'), 2000)
  .option('--max-pdf-pages <n>', 'documents.upload.maxPdfPages for the server (default: the config default)', intOption('--max-pdf-pages'))
  .option(
    '--request-timeout-ms <n>',
    'server.requestTimeoutMs for the server (default: the config default)',
    intOption('--request-timeout-ms'),
  );

type Options = {
  scenarios: string;
  trials: number;
  bombMib: number;
  pages: number;
  markdownChars: number;
  settleMs: number;
  maxPdfPages?: number;
  requestTimeoutMs?: number;
};

interface Trial {
  status: number;
  ms: number;
  peakRssMib: number;
  rssAfterMib: number;
  cpuSeconds: number;
  worstHealthzMs: number;
  /** A JSON body over 256 KiB (parsed on the parser thread too) sent 200 ms into the upload. */
  jsonMs: number;
}

/**
 * ~300 KiB of JSON, over the size from which the server parses JSON bodies off the event loop, refused by the schema
 * once parsed (a numeric id): its time is the parse and its wait for the parser thread, with no embedding in it.
 */
const JSON_BODY = JSON.stringify({ documents: [{ id: 7, text: 'x'.repeat(300_000) }] });

async function postJson(base: string): Promise<number> {
  const t = performance.now();
  const res = await fetch(`${base}/v1/documents`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON_BODY });
  await res.arrayBuffer();
  if (res.status !== 400) throw new Error(`POST /v1/documents with a numeric id: ${res.status}, not 400`);
  return performance.now() - t;
}

const MiB = 1024 * 1024;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Clock ticks per second of /proc/PID/stat's CPU times (USER_HZ, 100 on Linux). */
const CLOCK_TICKS = 100;

/** User + system CPU seconds of a process, from /proc (Linux). */
function cpuSeconds(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS;
}

function fileFor(scenario: Scenario, opts: Options): { name: string; bytes: Uint8Array; type: string } {
  switch (scenario) {
    case 'docx-bomb':
      return { name: 'bomb.docx', bytes: docxBomb(opts.bombMib * MiB), type: 'application/octet-stream' };
    case 'pdf-bomb':
      return { name: 'bomb.pdf', bytes: pdfBomb(opts.bombMib * MiB), type: 'application/pdf' };
    case 'pdf-pages':
      return { name: 'long.pdf', bytes: minimalPdf(opts.pages), type: 'application/pdf' };
    case 'markdown':
      return { name: 'handbook.md', bytes: Buffer.from(headingDenseMarkdown(opts.markdownChars)), type: 'text/markdown' };
  }
}

async function trial(server: ServerProcess, file: { name: string; bytes: Uint8Array; type: string }, settleMs: number): Promise<Trial> {
  const before = rssBytes(server.pid);
  let peak = before;
  const sampler = setInterval(() => {
    try {
      peak = Math.max(peak, rssBytes(server.pid));
    } catch {
      // The process has ended: the upload's own failure says so.
    }
  }, 10);
  let polling = true;
  let worstHealthzMs = 0;
  const poll = (async () => {
    while (polling) {
      const t = performance.now();
      try {
        await fetch(`${server.base}/healthz`).then((r) => r.arrayBuffer());
      } catch (err) {
        console.error(`/healthz failed: ${(err as Error).message}: ${String((err as Error).cause)}`);
      }
      worstHealthzMs = Math.max(worstHealthzMs, performance.now() - t);
      await sleep(20);
    }
  })();
  const cpu0 = cpuSeconds(server.pid);
  const t0 = performance.now();
  const form = new FormData();
  form.append('files', new Blob([file.bytes], { type: file.type }), file.name);
  const json = sleep(200).then(() => postJson(server.base));
  const res = await fetch(`${server.base}/v1/documents/files`, { method: 'POST', body: form, signal: AbortSignal.timeout(600_000) });
  await res.arrayBuffer();
  const ms = performance.now() - t0;
  const jsonMs = await json;
  polling = false;
  await poll;
  await sleep(settleMs);
  clearInterval(sampler);
  return {
    status: res.status,
    ms,
    peakRssMib: (peak - before) / MiB,
    rssAfterMib: (rssBytes(server.pid) - before) / MiB,
    cpuSeconds: cpuSeconds(server.pid) - cpu0,
    worstHealthzMs,
    jsonMs,
  };
}

runCli(async () => {
  const opts = program.parse().opts<Options>();
  const scenarios = opts.scenarios.split(',').map((s) => s.trim()) as Scenario[];
  for (const s of scenarios)
    if (!SCENARIOS.includes(s)) throw new Error(`--scenarios: unknown scenario "${s}" (one of ${SCENARIOS.join(', ')})`);
  // Built before the server starts: building a bomb holds this process for seconds, long enough for the server to
  // close an idle keep-alive connection that fetch would then reuse (a spurious ECONNRESET).
  const files = new Map(scenarios.map((scenario) => [scenario, fileFor(scenario, opts)]));
  const modelsDir = await ensureTinyFixtures();
  const work = mkdtempSync(path.join(os.tmpdir(), 'bench-upload-limits-'));
  const corpusDir = path.join(work, 'corpus');
  mkdirSync(corpusDir);
  writeFileSync(path.join(corpusDir, 'seed.md'), '# Seed\n\nA seed document about gardening.');
  const configFile = path.join(work, 'config.json');
  // Files up to 100 MiB so the bombs and the long PDF meet the parse limits rather than the size limit.
  const upload = { maxFileBytes: 100 * MiB, ...(opts.maxPdfPages ? { maxPdfPages: opts.maxPdfPages } : {}) };
  const serverSettings = { rateLimit: { max: 0 }, ...(opts.requestTimeoutMs ? { requestTimeoutMs: opts.requestTimeoutMs } : {}) };
  writeFileSync(configFile, JSON.stringify({ server: serverSettings, documents: { upload } }));
  const server = await startServerProcess({
    modelsDir,
    embedModel: BERT_TINY,
    readerModel: T5_TINY,
    indexesDir: path.join(work, 'indexes'),
    corpusDir,
    configFile,
    env: { RAG_AUTH_DISABLED: 'true' },
  });
  let stopping = false;
  // The server dying under an upload is a finding: show how it ended.
  void server.exited.then((ended) => {
    if (!stopping)
      console.error(`the server ended (${JSON.stringify(ended)}); its last output:\n${server.output().split('\n').slice(-15).join('\n')}`);
  });
  const rows: Array<Array<string | number>> = [
    [
      'upload',
      'file KiB',
      'statuses',
      'reply ms',
      'peak RSS +MiB',
      `RSS +MiB after ${opts.settleMs} ms`,
      'CPU s',
      'worst /healthz ms',
      'JSON 300 KiB ms',
    ],
  ];
  try {
    // The parser thread starts on first use: start it so its own memory is not counted against the first file.
    const warm = new FormData();
    warm.append('files', new Blob(['# Warm\n\nup'], { type: 'text/markdown' }), 'warm.md');
    await (await fetch(`${server.base}/v1/documents/files`, { method: 'POST', body: warm })).arrayBuffer();
    await sleep(1000);
    const jsonAlone: number[] = [];
    for (let t = 0; t < 5; t++) jsonAlone.push(await postJson(server.base));
    rows.push(['(JSON body alone)', '', '400', '', '', '', '', '', median(jsonAlone).toFixed(0)]);
    for (const scenario of scenarios) {
      const file = files.get(scenario)!;
      const trials: Trial[] = [];
      for (let t = 0; t < opts.trials; t++) {
        // A fresh name each time: the Markdown file is written, and a second upload of it would be `unchanged`.
        trials.push(await trial(server, { ...file, name: `${t}-${file.name}` }, opts.settleMs));
        console.error(`${scenario} trial ${t + 1}: ${JSON.stringify(trials.at(-1))}`);
      }
      const m = (pick: (t: Trial) => number, digits = 0) => median(trials.map(pick)).toFixed(digits);
      rows.push([
        scenario,
        Math.round(file.bytes.length / 1024),
        [...new Set(trials.map((t) => t.status))].join('/'),
        m((t) => t.ms),
        m((t) => t.peakRssMib),
        m((t) => t.rssAfterMib),
        m((t) => t.cpuSeconds, 1),
        m((t) => t.worstHealthzMs),
        m((t) => t.jsonMs),
      ]);
    }
  } finally {
    stopping = true;
    server.child.kill('SIGKILL');
    await server.exited;
    rmSync(work, { recursive: true, force: true });
  }
  console.log(
    `hostile uploads to the server with its default upload limits, median of ${opts.trials} trials (bombs inflate to ${opts.bombMib} MiB)`,
  );
  console.log(formatTable(rows));
});
