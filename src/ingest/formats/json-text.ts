/**
 * JSON text as bytes → its value, the work the parser thread does for large JSON: strict UTF-8, within a nesting
 * depth the structured clone back to the main thread can carry. What a request body may be (its top-level value, an
 * empty body) is the API's to decide; see src/api/json-off-thread.ts.
 */
import { walkJson } from '../../common/json-walk.js';

/** Why JSON text could not be read: its bytes are not UTF-8 (`encoding`), or it is not JSON within the limits (`syntax`). */
export class JsonTextError extends Error {
  override name = 'JsonTextError';
  constructor(
    message: string,
    readonly reason: 'encoding' | 'syntax',
  ) {
    super(message);
  }
}

/**
 * Deepest nesting a parsed value may have: the structured clone that carries it back to the main thread recurses per
 * level and would overflow the stack on a hostile text nested 100,000 deep. No API request schema nests near this.
 */
const MAX_DEPTH = 1000;

/** Insignificant whitespace of JSON (RFC 8259), which may precede the top-level value. */
const LEADING_WHITESPACE = /^[\x20\x09\x0a\x0d]*/;

/**
 * UTF-8 JSON text (a byte-order mark dropped, invalid bytes refused) → its value; empty text is `undefined`. With
 * `containerOnly`, a text whose top-level value is not an object or array is refused before it is parsed.
 */
export function parseJsonText(bytes: Uint8Array, containerOnly: boolean): unknown {
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    throw new JsonTextError('JSON text is not valid UTF-8', 'encoding');
  }
  if (text.length === 0) return undefined;
  if (containerOnly) {
    const first = text.charAt(LEADING_WHITESPACE.exec(text)![0].length);
    if (first !== '{' && first !== '[') throw new JsonTextError('JSON text must be an object or array at the top', 'syntax');
  }
  let value: unknown;
  try {
    value = JSON.parse(text) as unknown;
  } catch (err) {
    throw new JsonTextError((err as Error).message, 'syntax');
  }
  if (walkJson(value, MAX_DEPTH)) throw new JsonTextError(`JSON text nests deeper than ${MAX_DEPTH} levels`, 'syntax');
  return value;
}
