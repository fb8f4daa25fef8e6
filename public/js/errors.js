/**
 * What went wrong with an API call, in words a user can act on. Kept free of DOM and fetch so it can be tested
 * in Node as well as used by the page.
 */

/** An error answer of the REST API (`{error: {code, message, field?}}`), or an error event of the answer stream. */
export class ApiError extends Error {
  /**
   * @param {number} status HTTP status; 0 when the error arrived as an `error` event inside a 200 stream
   * @param {{code?: string, message?: string, field?: string}} error
   * @param {number | undefined} retryAfterSeconds from the Retry-After header
   */
  constructor(status, error, retryAfterSeconds) {
    super(error.message ?? `HTTP ${status}`);
    this.name = 'ApiError';
    this.status = status;
    this.code = error.code ?? 'unknown';
    this.field = error.field;
    this.retryAfterSeconds = retryAfterSeconds;
  }
}

/**
 * Retry-After is either delay-seconds or an HTTP date.
 * @param {string | null | undefined} header
 * @param {number} [now] milliseconds since the epoch
 * @returns {number | undefined} whole seconds to wait, never negative
 */
export function parseRetryAfter(header, now = Date.now()) {
  if (header == null) return undefined;
  const text = header.trim();
  if (/^\d+$/.test(text)) return Number(text);
  const at = Date.parse(text);
  if (Number.isNaN(at)) return undefined;
  return Math.max(0, Math.ceil((at - now) / 1000));
}

/**
 * @param {number | undefined} seconds
 * @returns {string}
 */
function retryHint(seconds) {
  if (seconds === undefined) return 'Retry later.';
  return `Retry in ${seconds} second${seconds === 1 ? '' : 's'}.`;
}

/**
 * The validation message already names the field ("k: Too big ..."); the sentence names it once.
 * @param {string} message
 * @param {string | undefined} field
 */
function withoutFieldPrefix(message, field) {
  return field && message.startsWith(`${field}: `) ? message.slice(field.length + 2) : message;
}

/**
 * @param {unknown} err anything a fetch of the API may throw
 * @returns {string} one plain sentence or two
 */
export function describeError(err) {
  if (!(err instanceof ApiError)) {
    if (err instanceof Error && err.name === 'AbortError') return 'Stopped.';
    const detail = err instanceof Error ? err.message : String(err);
    return `Could not reach the server (${detail}).`;
  }
  const message = err.message;
  switch (err.status) {
    case 0:
      return `The answer failed while it was being generated (${err.code}): ${message}`;
    case 400: {
      const field = err.field && err.field !== '(body)' ? err.field : undefined;
      return field
        ? `Invalid request: field "${field}" — ${withoutFieldPrefix(message, field)}`
        : `Invalid request: ${message}`;
    }
    case 401:
      return `Wrong or missing API key (401). Enter a valid key in the API key field. Server said: ${message}`;
    case 403:
      return `This API key may not do that (403): ${message}`;
    case 404:
      return `Not found (404): ${message}`;
    case 413:
      return `The request is too large (413): ${message}`;
    case 415:
      return `The server did not accept the request format (415): ${message}`;
    case 429:
      return `Too many requests (429). ${retryHint(err.retryAfterSeconds)}`;
    case 503:
      return `Service unavailable (503, ${err.code}): ${message.replace(/[.\s]+$/, '')}. ${retryHint(err.retryAfterSeconds)}`;
    case 504:
      return `The server gave up waiting (504, ${err.code}): ${message}`;
    default:
      return `Request failed (${err.status}, ${err.code}): ${message}`;
  }
}
