import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { JsonTextError } from './json-text.js';
import type { FileFormat, ParsedDocument } from './parse-file.js';
import type { ParseMessage, ParseReply, ReplyError } from './parse-protocol.js';
import { FileLimitError, UnreadableFileError, type FileReadOptions, type OcrPageEvent, type ParseLimits } from './types.js';
import { unpackDocument, type PackedDocument } from './packed-layout.js';

/** An uploaded file's limits: what it may inflate to and how many pages it may have, and how long it may parse. */
export interface FileParseOptions extends ParseLimits {
  /** Milliseconds one file may parse once the worker has started on it; then the worker is stopped. */
  maxParseMs: number;
}

interface Job {
  message: ParseMessage;
  /** Started when the worker begins the job (time in the queue does not count). */
  budgetMs: number | undefined;
  signal: AbortSignal | undefined;
  onProgress: ((event: OcrPageEvent) => void) | undefined;
  resolve(value: unknown): void;
  reject(err: unknown): void;
}

interface Running {
  id: number;
  job: Job;
  worker: Worker;
  timer?: NodeJS.Timeout;
}

/**
 * One worker thread and its queue. The worker gets one job at a time, so that stopping it (a job past its time
 * budget, a request that timed out or whose client left) fails that job only: the jobs still queued go to a fresh
 * worker. A worker that crashes likewise fails only the job it was on.
 */
class Lane {
  private worker: Worker | undefined;
  private running: Running | undefined;
  private readonly queue: Job[] = [];
  private nextId = 0;

  run(
    message: ParseMessage,
    budgetMs: number | undefined,
    signal: AbortSignal | undefined,
    onProgress?: (event: OcrPageEvent) => void,
  ): Promise<unknown> {
    if (signal?.aborted) return Promise.reject(signal.reason);
    return new Promise((resolve, reject) => {
      const job: Job = { message, budgetMs, signal, onProgress, resolve, reject };
      const onAbort = () => {
        const queued = this.queue.indexOf(job);
        if (queued !== -1) {
          this.queue.splice(queued, 1);
          reject(signal!.reason);
        } else if (this.running?.job === job) {
          this.stop(signal!.reason);
        }
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      job.resolve = (value) => {
        signal?.removeEventListener('abort', onAbort);
        resolve(value);
      };
      job.reject = (err) => {
        signal?.removeEventListener('abort', onAbort);
        reject(err);
      };
      this.queue.push(job);
      this.pump();
    });
  }

  /** Fails what is queued or running and stops the worker; a later job starts a new one. */
  async close(): Promise<void> {
    const reason = new Error('the parser thread is closed');
    for (const job of this.queue.splice(0)) job.reject(reason);
    const worker = this.worker;
    this.worker = undefined;
    if (this.running) this.finish(this.running, (job) => job.reject(reason));
    await worker?.terminate();
  }

  private pump(): void {
    if (this.running) return;
    const job = this.queue.shift();
    if (!job) return;
    const worker = this.started();
    const id = this.nextId++;
    this.running = { id, job, worker };
    worker.postMessage({ ...job.message, id });
  }

  /** The running job ends (settled by `settle`), and the next one starts. */
  private finish(running: Running, settle: (job: Job) => void): void {
    if (this.running !== running) return;
    clearTimeout(running.timer);
    this.running = undefined;
    settle(running.job);
    this.pump();
  }

  /** Stops the worker in the middle of the running job, which fails with `reason`; the next job gets a new worker. */
  private stop(reason: unknown): void {
    const running = this.running;
    if (!running) return;
    this.retire(running.worker);
    this.finish(running, (job) => job.reject(reason));
  }

  /** terminate() interrupts even synchronous work in the worker (pdf.js inside a page) and frees its heap. */
  private retire(worker: Worker): void {
    if (this.worker === worker) this.worker = undefined;
    void worker.terminate();
  }

  private started(): Worker {
    if (this.worker) return this.worker;
    const here = fileURLToPath(import.meta.url);
    const script = new URL(`./parse-worker${path.extname(here)}`, import.meta.url).href;
    // Under tsx (npm start, tests) the worker registers the same TypeScript loader before loading its module.
    const loader = path.extname(here) === '.ts' ? "const { register } = await import('tsx/esm/api'); register();" : '';
    const worker = new Worker(`(async () => { ${loader} await import(${JSON.stringify(script)}); })();`, { eval: true });
    worker.unref();
    worker.on('message', (reply: ParseReply) => {
      const running = this.running;
      if (!running || running.worker !== worker || running.id !== reply.id) return;
      if ('started' in reply) {
        const budgetMs = running.job.budgetMs;
        if (budgetMs !== undefined) {
          running.timer = setTimeout(
            () =>
              this.stop(new FileLimitError(`parsing took longer than ${budgetMs} ms (documents.upload.maxParseMs) and was stopped`, 422)),
            budgetMs,
          );
        }
        return;
      }
      if ('progress' in reply) {
        running.job.onProgress?.(reply.progress);
        return;
      }
      // A file refused for its size may have left the worker's heap grown by what it inflated before the cap: a
      // fresh worker gives that memory back at once.
      if ('error' in reply && reply.error.kind === 'limit') this.retire(worker);
      this.finish(running, (job) => ('value' in reply ? job.resolve(reply.value) : job.reject(toError(reply.error))));
    });
    const fail = (err: Error) => {
      if (this.worker === worker) this.worker = undefined;
      const running = this.running;
      if (running?.worker === worker) this.finish(running, (job) => job.reject(err));
    };
    worker.on('error', fail);
    worker.on('exit', (code) => fail(new Error(`the parser thread exited (code ${code})`)));
    this.worker = worker;
    return worker;
  }
}

/**
 * Parses on worker threads what would otherwise stall every other request of the server: files (reading a large
 * HTML or DOCX file is seconds of synchronous work in html-to-text or mammoth's XML parsing) and large JSON request
 * bodies (decoding and JSON.parse of 10 MB hold a thread for about 100 ms). Files and JSON bodies each have their
 * own thread and queue, started on first use, so a PDF of minutes never holds up a JSON body; each queue is served
 * in order. An uploaded file's parse stops at its time budget or when its signal aborts.
 */
export class ParserThread {
  private readonly files = new Lane();
  private readonly json = new Lane();

  /**
   * One file; with `options` (uploads) it is read within their limits and stopped after `maxParseMs`, without them
   * it is trusted (the operator's own files). `signal` cancels it queued or running; it rejects with the reason.
   * `read` brings OCR, its pages reported to `read.onOcrPage` as the worker finishes them.
   */
  parse(
    bytes: Uint8Array,
    name: string,
    format: FileFormat,
    options?: FileParseOptions,
    signal?: AbortSignal,
    read?: FileReadOptions,
  ): Promise<ParsedDocument> {
    const limits: ParseLimits | undefined = options && {
      maxPdfPages: options.maxPdfPages,
      maxPdfInflatedBytes: options.maxPdfInflatedBytes,
      maxDocxInflatedBytes: options.maxDocxInflatedBytes,
      maxDocxEntries: options.maxDocxEntries,
      maxOcrPages: options.maxOcrPages,
    };
    const message: ParseMessage = { kind: 'file', bytes, name, format, limits, ocr: read?.ocr };
    const packed = this.files.run(message, options?.maxParseMs, signal, read?.onOcrPage) as Promise<PackedDocument>;
    return packed.then(unpackDocument);
  }

  /**
   * UTF-8 JSON text → its value, as parseJsonText (json-text.ts) reads it: `undefined` for empty text, a JsonTextError
   * for text that is not UTF-8 or not JSON (or, with `containerOnly`, whose top level is not an object or array).
   */
  parseJson(bytes: Uint8Array, options: { containerOnly?: boolean } = {}): Promise<unknown> {
    return this.json.run({ kind: 'json', bytes, containerOnly: options.containerOnly ?? false }, undefined, undefined);
  }

  async close(): Promise<void> {
    await Promise.all([this.files.close(), this.json.close()]);
  }
}

function toError(error: ReplyError): Error {
  switch (error.kind) {
    case 'unreadable':
      return new UnreadableFileError(error.message);
    case 'limit':
      return new FileLimitError(error.message, error.status ?? 413);
    case 'encoding':
    case 'syntax':
      return new JsonTextError(error.message, error.kind);
    default:
      return new Error(error.message);
  }
}
