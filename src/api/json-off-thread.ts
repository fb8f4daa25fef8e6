import { parse as parseContentType } from 'content-type';
import express, { type Request, type RequestHandler } from 'express';
import { JsonTextError, type ParserThread } from '../ingest/index.js';

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

/**
 * Bodies up to this size are parsed inline by express.json (a few milliseconds); larger ones, chunked ones of unknown
 * size and compressed ones are decoded and parsed on the parser thread, whose answer arrives as a structured clone that costs
 * the event loop about a tenth of the parse.
 */
const INLINE_BYTES = 256 * 1024;

function isLargeUtf8Json(req: Request): boolean {
  if (!req.is('application/json')) return false;
  const header = req.headers['content-type'];
  // Other charsets (UTF-16/32) stay with express.json, which decodes them, and refuses the rest with a 415.
  const charset = header ? parseContentType(header).parameters.charset : undefined;
  if (charset !== undefined && !/^utf-?8$/i.test(charset)) return false;
  // A compressed body's declared length says nothing about the size of the JSON inside.
  const encoding = req.headers['content-encoding'];
  if (encoding !== undefined && encoding.toLowerCase() !== 'identity') return true;
  const length = req.headers['content-length'];
  return length === undefined || Number(length) > INLINE_BYTES;
}

/**
 * A JSON request body as express.json({ strict: true }) reads it, parsed on the parser thread: UTF-8 (a byte-order
 * mark dropped, invalid bytes refused), empty meaning `{}`, and only an object or array at the top; a refusal is a
 * JsonBodyError of body-parser's type.
 */
export async function parseJsonBody(thread: ParserThread, bytes: Uint8Array): Promise<unknown> {
  try {
    return (await thread.parseJson(bytes, { containerOnly: true })) ?? {};
  } catch (err) {
    if (!(err instanceof JsonTextError)) throw err;
    throw new JsonBodyError(err.message, err.reason === 'encoding' ? 'entity.invalid.utf8' : 'entity.parse.failed');
  }
}

/**
 * A JSON body parser whose large bodies are parsed off the event loop, to be followed by express.json (with the
 * same limit) for the rest: reading, size limit (413) and content encodings are body-parser's, and the parse follows
 * express.json({ strict: true }) with invalid UTF-8 refused, so both paths answer alike.
 */
export function jsonOffThread(limit: string, thread: ParserThread): RequestHandler[] {
  const readBytes = express.raw({ type: (req) => isLargeUtf8Json(req as Request), limit });
  const parse: RequestHandler = (req, _res, next) => {
    if (!Buffer.isBuffer(req.body)) {
      next();
      return;
    }
    parseJsonBody(thread, req.body).then((body) => {
      req.body = body;
      next();
    }, next);
  };
  return [readBytes, parse];
}
