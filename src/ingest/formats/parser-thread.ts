import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import type { FileFormat, ParsedDocument } from './index.js';
import { UnreadableFileError } from './types.js';
import type { ParseMessage, ParseReply, ReplyError } from './parse-worker.js';

/** Why a JSON body could not be parsed, in body-parser's terms (`type`), so the API maps it like its other parse errors. */
export class JsonBodyError extends Error {
  override name = 'JsonBodyError';
  readonly status = 400;
  constructor(
    message: string,
    readonly type: 'entity.parse.failed' | 'entity.invalid.utf8',
  ) {
    super(message);
  }
}

type Pending = { resolve: (value: unknown) => void; reject: (e: Error) => void };

/**
 * Parses on a worker thread what would otherwise stall every other request of the server: files (reading a large
 * HTML or DOCX file is seconds of synchronous work in html-to-text or mammoth's XML parsing) and large JSON request
 * bodies (decoding and JSON.parse of 10 MB hold a thread for about 100 ms). One thread, started on first use,
 * requests served in order; a crashed worker fails its requests and is replaced.
 */
export class ParserThread {
  private worker: Worker | undefined;
  private nextId = 0;
  private readonly pending = new Map<number, Pending>();

  parse(bytes: Uint8Array, name: string, format: FileFormat): Promise<ParsedDocument> {
    return this.request({ kind: 'file', bytes, name, format }) as Promise<ParsedDocument>;
  }

  /**
   * A JSON request body as express.json({ strict: true }) reads it: UTF-8 (a byte-order mark dropped, invalid bytes
   * refused), empty meaning `{}`, and only an object or array at the top.
   */
  parseJson(bytes: Uint8Array): Promise<unknown> {
    return this.request({ kind: 'json', bytes });
  }

  async close(): Promise<void> {
    const worker = this.worker;
    this.worker = undefined;
    await worker?.terminate();
  }

  private request(message: ParseMessage): Promise<unknown> {
    const worker = this.started();
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      worker.postMessage({ ...message, id });
    });
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
      const waiting = this.pending.get(reply.id);
      if (!waiting) return;
      this.pending.delete(reply.id);
      if ('value' in reply) waiting.resolve(reply.value);
      else waiting.reject(toError(reply.error));
    });
    const fail = (err: Error) => {
      if (this.worker === worker) this.worker = undefined;
      for (const { reject } of this.pending.values()) reject(err);
      this.pending.clear();
    };
    worker.on('error', fail);
    worker.on('exit', (code) => fail(new Error(`the parser thread exited (code ${code})`)));
    this.worker = worker;
    return worker;
  }
}

function toError(error: ReplyError): Error {
  switch (error.kind) {
    case 'unreadable':
      return new UnreadableFileError(error.message);
    case 'json':
      return new JsonBodyError(error.message, 'entity.parse.failed');
    case 'utf8':
      return new JsonBodyError(error.message, 'entity.invalid.utf8');
    default:
      return new Error(error.message);
  }
}
