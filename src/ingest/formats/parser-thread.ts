import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import type { FileFormat, ParsedDocument } from './index.js';
import { UnreadableFileError } from './types.js';

type Reply = { id: number; parsed: ParsedDocument } | { id: number; error: { message: string; unreadable: boolean } };

/**
 * Parses files on a worker thread. Reading a large HTML or DOCX file is seconds of synchronous work (html-to-text,
 * mammoth's XML parsing) that would otherwise stall every other request of the server; on the worker it does not.
 * One thread, started on first use, requests served in order; a crashed worker fails its requests and is replaced.
 */
export class FileParserThread {
  private worker: Worker | undefined;
  private nextId = 0;
  private readonly pending = new Map<number, { resolve: (p: ParsedDocument) => void; reject: (e: Error) => void }>();

  parse(bytes: Uint8Array, name: string, format: FileFormat): Promise<ParsedDocument> {
    const worker = this.started();
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      worker.postMessage({ id, bytes, name, format });
    });
  }

  async close(): Promise<void> {
    const worker = this.worker;
    this.worker = undefined;
    await worker?.terminate();
  }

  private started(): Worker {
    if (this.worker) return this.worker;
    const here = fileURLToPath(import.meta.url);
    const script = new URL(`./parse-worker${path.extname(here)}`, import.meta.url).href;
    // Under tsx (npm start, tests) the worker registers the same TypeScript loader before loading its module.
    const loader = path.extname(here) === '.ts' ? "const { register } = await import('tsx/esm/api'); register();" : '';
    const worker = new Worker(`(async () => { ${loader} await import(${JSON.stringify(script)}); })();`, { eval: true });
    worker.unref();
    worker.on('message', (reply: Reply) => {
      const waiting = this.pending.get(reply.id);
      if (!waiting) return;
      this.pending.delete(reply.id);
      if ('parsed' in reply) waiting.resolve(reply.parsed);
      else waiting.reject(reply.error.unreadable ? new UnreadableFileError(reply.error.message) : new Error(reply.error.message));
    });
    const fail = (err: Error) => {
      if (this.worker === worker) this.worker = undefined;
      for (const { reject } of this.pending.values()) reject(err);
      this.pending.clear();
    };
    worker.on('error', fail);
    worker.on('exit', (code) => fail(new Error(`the file parser thread exited (code ${code})`)));
    this.worker = worker;
    return worker;
  }
}
