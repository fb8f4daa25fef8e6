import { parentPort } from 'node:worker_threads';
import { FileLimitError, parseFile, UnreadableFileError, type FileFormat, type ParseLimits } from './index.js';
import { packDocument } from './packed-layout.js';

/**
 * The worker side of `ParserThread`: one file or JSON body per message, answered first with `started` (the time
 * budget runs from then), then with the result or the reason.
 */
export type ParseMessage =
  | { kind: 'file'; bytes: Uint8Array; name: string; format: FileFormat; limits: ParseLimits | undefined }
  | { kind: 'json'; bytes: Uint8Array };
export type ParseRequest = ParseMessage & { id: number };

export interface ReplyError {
  kind: 'unreadable' | 'limit' | 'json' | 'utf8' | 'other';
  message: string;
  /** For `limit`: the HTTP status the limit calls for. */
  status?: 413 | 422;
}

export type ParseReply = { id: number; started: true } | { id: number; value: unknown } | { id: number; error: ReplyError };

class JsonReplyError extends Error {
  constructor(
    message: string,
    readonly kind: 'json' | 'utf8',
  ) {
    super(message);
  }
}

/**
 * Deepest nesting a parsed body may have: the structured clone that carries it back to the main thread recurses per
 * level and would overflow the stack on a hostile body nested 100,000 deep. No request schema nests near this.
 */
const MAX_DEPTH = 1000;

/** Insignificant whitespace of JSON (RFC 8259), which may precede the top-level value. */
const LEADING_WHITESPACE = /^[\x20\x09\x0a\x0d]*/;

function parseJsonBody(bytes: Uint8Array): unknown {
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    throw new JsonReplyError('request body is not valid UTF-8', 'utf8');
  }
  if (text.length === 0) return {};
  const first = text.charAt(LEADING_WHITESPACE.exec(text)![0].length);
  if (first !== '{' && first !== '[') throw new JsonReplyError('request body must be a JSON object or array', 'json');
  let value: unknown;
  try {
    value = JSON.parse(text) as unknown;
  } catch (err) {
    throw new JsonReplyError((err as Error).message, 'json');
  }
  if (nestingDepth(value) > MAX_DEPTH) throw new JsonReplyError(`request body nests deeper than ${MAX_DEPTH} levels`, 'json');
  return value;
}

/** Depth of arrays and objects, walked with an explicit stack (the value may be nested beyond the call stack). */
function nestingDepth(root: unknown): number {
  let deepest = 0;
  const stack: Array<[unknown, number]> = [[root, 0]];
  while (stack.length > 0) {
    const [value, depth] = stack.pop()!;
    if (value === null || typeof value !== 'object') continue;
    deepest = Math.max(deepest, depth + 1);
    if (deepest > MAX_DEPTH) return deepest;
    for (const child of Array.isArray(value) ? value : Object.values(value)) stack.push([child, depth + 1]);
  }
  return deepest;
}

function errorOf(err: unknown): ReplyError {
  const message = err instanceof Error ? err.message : String(err);
  if (err instanceof FileLimitError) return { kind: 'limit', message, status: err.status };
  if (err instanceof UnreadableFileError) return { kind: 'unreadable', message };
  if (err instanceof JsonReplyError) return { kind: err.kind, message };
  return { kind: 'other', message };
}

parentPort!.on('message', (request: ParseRequest) => {
  parentPort!.postMessage({ id: request.id, started: true } satisfies ParseReply);
  const work =
    request.kind === 'json'
      ? Promise.resolve().then(() => parseJsonBody(request.bytes))
      : parseFile(request.bytes, request.name, request.format, request.limits).then(packDocument);
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
