/**
 * Measuring how long the event loop is held, and the scenario the server must survive: a multi-megabyte document
 * written through the API while searches keep arriving. Shared by `npm run bench:chunk` and the regression tests.
 */
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { CORPUS_QUESTIONS } from './questions.js';

export interface BlockReport {
  /** Longest time a timer due every millisecond had to wait (wall clock: includes time the OS gave to others). */
  maxBlockMs: number;
  /** Most CPU time this process used between two consecutive timer turns: the longest stretch of work that held the loop. */
  maxBlockCpuMs: number;
}

export interface BlockProbeOptions {
  /**
   * Count only the main thread's CPU in `maxBlockCpuMs`. process.cpuUsage() adds worker threads' CPU (a busy parser
   * thread beside an idle event loop would look like a block), so on Linux the main thread's own run time is read from
   * schedstat; elsewhere the process-wide figure stands in (an upper bound).
   */
  mainThreadOnly?: boolean;
}

const MAIN_THREAD_SCHEDSTAT = `/proc/self/task/${process.pid}/schedstat`;

/** CPU milliseconds this process has used so far (all its threads). */
function processCpuMs(): number {
  const { user, system } = process.cpuUsage();
  return (user + system) / 1000;
}

/** A clock of CPU milliseconds: the process's, or with `mainThreadOnly` its main thread's where schedstat can be read. */
function cpuClock(mainThreadOnly: boolean): () => number {
  if (!mainThreadOnly) return processCpuMs;
  try {
    readFileSync(MAIN_THREAD_SCHEDSTAT, 'utf8');
  } catch {
    return processCpuMs;
  }
  // The first field is the thread's time on a CPU, in nanoseconds.
  return () => Number(readFileSync(MAIN_THREAD_SCHEDSTAT, 'utf8').split(' ')[0]) / 1e6;
}

/**
 * Watches the event loop from now until `stop()`. The wall-clock figure is what a client would feel; the CPU figure
 * does not count time the OS spent running other processes, so it stays meaningful on a loaded, shared machine.
 */
export function startBlockProbe(options: BlockProbeOptions = {}): { stop(): BlockReport } {
  const histogram = monitorEventLoopDelay({ resolution: 1 });
  histogram.enable();
  const cpuMs = cpuClock(options.mainThreadOnly ?? false);
  let maxBlockCpuMs = 0;
  let last = cpuMs();
  let timer: NodeJS.Timeout;
  const tick = () => {
    const now = cpuMs();
    maxBlockCpuMs = Math.max(maxBlockCpuMs, now - last);
    last = now;
    timer = setTimeout(tick, 1);
  };
  timer = setTimeout(tick, 1);
  return {
    stop() {
      clearTimeout(timer);
      tick();
      clearTimeout(timer);
      histogram.disable();
      return { maxBlockMs: histogram.max / 1e6, maxBlockCpuMs };
    },
  };
}

/** Prose of about `chars` characters: the bundled corpus's markdown, repeated with a counter so no two copies match. */
export function proseOfLength(corpusDir: string, chars: number): string {
  const files = readdirSync(corpusDir)
    .filter((f) => f.endsWith('.md'))
    .sort();
  const source = files.map((f) => readFileSync(path.join(corpusDir, f), 'utf8')).join('\n\n');
  const parts: string[] = [];
  let length = 0;
  for (let copy = 0; length < chars; copy++) {
    const part = `Copy ${copy}.\n\n${source}\n\n`;
    parts.push(part);
    length += part.length;
  }
  return parts.join('').slice(0, chars);
}

export interface WriteUnderLoad {
  /** Status of the document write. */
  status: number;
  writeMs: number;
  /** Longest event-loop block in this process while the write ran (see BlockReport). */
  maxBlockMs: number;
  maxBlockCpuMs: number;
  searches: number;
  searchFailures: number;
  /** Slowest search answered while the write ran. */
  maxSearchMs: number;
}

/**
 * POSTs one document of `text` to a server running in this process while a client keeps searching, and reports the
 * longest event-loop block seen meanwhile. The probe runs in the server's own process, so it sees every block.
 */
export async function writeWhileSearching(base: string, text: string, headers: Record<string, string> = {}): Promise<WriteUnderLoad> {
  const json = { 'content-type': 'application/json', ...headers };
  let writing = true;
  let searches = 0;
  let searchFailures = 0;
  let maxSearchMs = 0;
  const searchLoop = (async () => {
    for (let i = 0; writing; i++) {
      const started = performance.now();
      const res = await fetch(`${base}/v1/search`, {
        method: 'POST',
        headers: json,
        body: JSON.stringify({ query: CORPUS_QUESTIONS[i % CORPUS_QUESTIONS.length], k: 5, mode: i % 2 === 0 ? 'hybrid' : 'bm25' }),
      });
      await res.arrayBuffer();
      if (!writing) break;
      searches++;
      if (res.status !== 200) searchFailures++;
      maxSearchMs = Math.max(maxSearchMs, performance.now() - started);
    }
  })();
  const probe = startBlockProbe();
  const started = performance.now();
  const res = await fetch(`${base}/v1/documents`, {
    method: 'POST',
    headers: json,
    body: JSON.stringify({ documents: [{ id: `large-${Date.now()}`, title: 'A large document', text }] }),
  });
  await res.arrayBuffer();
  const writeMs = performance.now() - started;
  const { maxBlockMs, maxBlockCpuMs } = probe.stop();
  writing = false;
  await searchLoop;
  return { status: res.status, writeMs, maxBlockMs, maxBlockCpuMs, searches, searchFailures, maxSearchMs };
}
