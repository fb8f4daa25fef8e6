import { parentPort } from 'node:worker_threads';
import { JsonTextError, parseJsonText } from './json-text.js';
import { packDocument } from './packed-layout.js';
import { parseFile } from './parse-file.js';
import type { ParseReply, ParseRequest, ReplyError } from './parse-protocol.js';
import { FileLimitError, UnreadableFileError, type FileReadOptions, type OcrOptions } from './types.js';

/**
 * The worker side of `ParserThread` (parse-protocol.ts): one file or JSON text per message, answered first with
 * `started` (the time budget runs from then), then with the result or the reason. It loads only the parsers, never
 * the module that spawns it.
 */

function errorOf(err: unknown): ReplyError {
  const message = err instanceof Error ? err.message : String(err);
  if (err instanceof FileLimitError) return { kind: 'limit', message, status: err.status };
  if (err instanceof UnreadableFileError) return { kind: 'unreadable', message };
  if (err instanceof JsonTextError) return { kind: err.reason, message };
  return { kind: 'other', message };
}

/** OCR as the request asks, each page reported as it is done. */
function readOptions(id: number, ocr: OcrOptions): FileReadOptions {
  return { ocr, onOcrPage: (progress) => parentPort!.postMessage({ id, progress } satisfies ParseReply) };
}

parentPort!.on('message', (request: ParseRequest) => {
  parentPort!.postMessage({ id: request.id, started: true } satisfies ParseReply);
  const work =
    request.kind === 'json'
      ? Promise.resolve().then(() => parseJsonText(request.bytes, request.containerOnly))
      : parseFile(request.bytes, request.name, request.format, request.limits, request.ocr && readOptions(request.id, request.ocr)).then(
          packDocument,
        );
  work.then(
    (value) => {
      try {
        parentPort!.postMessage({ id: request.id, value });
      } catch (err) {
        // A value the structured clone cannot carry: the request fails, the thread lives on.
        parentPort!.postMessage({ id: request.id, error: errorOf(err) });
      }
    },
    (err: unknown) => parentPort!.postMessage({ id: request.id, error: errorOf(err) }),
  );
});
