import { isUtf8 } from 'node:buffer';
import type { IncomingMessage } from 'node:http';
import express, { type RequestHandler } from 'express';

/**
 * The JSON parser decodes bytes that are not UTF-8 into U+FFFD without a word, which would store text the client
 * never sent; a body declared (or defaulting to) UTF-8 must be valid UTF-8. Other charsets the parser accepts
 * (UTF-16/32) are decoded strictly by their own decoders.
 */
function requireUtf8(_req: IncomingMessage, _res: unknown, body: Buffer, encoding: string): void {
  if (/^utf-?8$/i.test(encoding) && !isUtf8(body)) {
    throw Object.assign(new Error('request body is not valid UTF-8'), { status: 400, type: 'entity.invalid.utf8' });
  }
}

/** The one JSON body parser of every route: strict (object or array at the top), UTF-8 checked, within `limit`. */
export function jsonBody(limit: string): RequestHandler {
  return express.json({ limit, strict: true, verify: requireUtf8 });
}
