/**
 * The playground's only way to the server: the public REST API, with the API key (if any) as a Bearer token.
 */
import { ApiError, parseRetryAfter } from './errors.js';
import { SseParser } from './sse.js';

const KEY_STORAGE = 'fid-rag.apiKey';
const COLLECTION_STORAGE = 'fid-rag.collection';

/** The key lives for the browser tab's session only: closing the tab forgets it. */
export const apiKeyStore = {
  /** @returns {string} */
  get() {
    return sessionStorage.getItem(KEY_STORAGE) ?? '';
  },
  /** @param {string} key */
  set(key) {
    if (key) sessionStorage.setItem(KEY_STORAGE, key);
    else sessionStorage.removeItem(KEY_STORAGE);
  },
};

/** The collection the playground talks to; '' is the server's default collection (the unscoped routes). */
export const collectionStore = {
  /** @returns {string} */
  get() {
    return sessionStorage.getItem(COLLECTION_STORAGE) ?? '';
  },
  /** @param {string} name */
  set(name) {
    if (name) sessionStorage.setItem(COLLECTION_STORAGE, name);
    else sessionStorage.removeItem(COLLECTION_STORAGE);
  },
};

/**
 * A data route in the chosen collection: `/v1/search` or `/v1/collections/{name}/search`.
 * @param {string} route e.g. '/search'
 */
function scoped(route) {
  const collection = collectionStore.get();
  return collection ? `/v1/collections/${encodeURIComponent(collection)}${route}` : `/v1${route}`;
}

/**
 * @param {Record<string, string>} extra
 * @returns {Record<string, string>}
 */
function headers(extra = {}) {
  const key = apiKeyStore.get();
  return key ? { ...extra, Authorization: `Bearer ${key}` } : extra;
}

/**
 * @param {Response} res a response that is not ok
 * @returns {Promise<ApiError>}
 */
async function errorFrom(res) {
  let body;
  try {
    body = await res.json();
  } catch {
    body = undefined;
  }
  const error = body && typeof body === 'object' && body.error && typeof body.error === 'object' ? body.error : {};
  return new ApiError(res.status, { message: res.statusText || `HTTP ${res.status}`, ...error }, parseRetryAfter(res.headers.get('Retry-After')));
}

/**
 * @param {string} path
 * @param {unknown} body
 * @param {AbortSignal} [signal]
 */
async function postJson(path, body, signal) {
  const res = await fetch(path, {
    method: 'POST',
    headers: headers({ 'Content-Type': 'application/json', Accept: 'application/json' }),
    body: JSON.stringify(body),
    signal,
  });
  if (!res.ok) throw await errorFrom(res);
  return res.json();
}

/**
 * @param {{query: string, k?: number, mode?: string}} request
 * @param {AbortSignal} [signal]
 */
export function search(request, signal) {
  return postJson(scoped('/search'), request, signal);
}

/**
 * Uploads files as multipart/form-data to the chosen collection's /documents/files; the body is one outcome per document.
 * @param {File[]} files
 * @param {AbortSignal} [signal]
 */
export async function uploadFiles(files, signal) {
  const form = new FormData();
  for (const file of files) form.append('files', file, file.name);
  const res = await fetch(scoped('/documents/files'), { method: 'POST', headers: headers({ Accept: 'application/json' }), body: form, signal });
  if (!res.ok) throw await errorFrom(res);
  return res.json();
}

/**
 * Asks with `stream: true` and reads the Server-Sent Events as they arrive.
 * @param {Record<string, unknown>} request the /v1/ask body without `stream`
 * @param {{onToken: (t: {id: number, text: string, index: number}) => void, signal?: AbortSignal}} options
 * @returns {Promise<any>} the final `answer` event's body
 */
export async function askStreaming(request, { onToken, signal }) {
  const res = await fetch(scoped('/ask'), {
    method: 'POST',
    headers: headers({ 'Content-Type': 'application/json', Accept: 'text/event-stream' }),
    body: JSON.stringify({ ...request, stream: true }),
    signal,
  });
  if (!res.ok) throw await errorFrom(res);
  if (!(res.headers.get('Content-Type') ?? '').includes('text/event-stream') || !res.body) return res.json();

  const parser = new SseParser();
  const decoder = new TextDecoder();
  const reader = res.body.getReader();
  let answer;
  /** @param {Array<{event: string, data: string}>} events */
  const handle = (events) => {
    for (const { event, data } of events) {
      const payload = JSON.parse(data);
      if (event === 'token') onToken(payload);
      else if (event === 'answer') answer = payload;
      else if (event === 'error') throw new ApiError(0, payload.error ?? {}, undefined);
    }
  };
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      handle(parser.push(decoder.decode(value, { stream: true })));
    }
    handle(parser.push(decoder.decode()));
    handle(parser.end());
  } catch (err) {
    // Stop the server's work on this answer too, not just our reading of it.
    await reader.cancel().catch(() => undefined);
    throw err;
  } finally {
    reader.releaseLock();
  }
  if (answer === undefined) throw new Error('the answer stream ended before the answer arrived');
  return answer;
}

/**
 * Index size from /v1/stats when the server has it, else readiness from /readyz. A 401 or 403 from /v1/stats is
 * reported as such: /readyz needs no key, so a green "Ready" there would hide that every call will be refused.
 * @returns {Promise<{kind: 'stats', body: any} | {kind: 'auth', status: number, message: string} | {kind: 'ready', status: number, body: any}>}
 */
export async function indexStatus() {
  try {
    const stats = await fetch(scoped('/stats'), { headers: headers({ Accept: 'application/json' }) });
    if (stats.status === 200) return { kind: 'stats', body: await stats.json() };
    if (stats.status === 401 || stats.status === 403) {
      const body = await stats.json().catch(() => ({}));
      return { kind: 'auth', status: stats.status, message: String(body?.error?.message ?? body?.message ?? '') };
    }
  } catch {
    // Fall through to /readyz, which every version of the server has.
  }
  const ready = await fetch('/readyz', { headers: { Accept: 'application/json' } });
  let body;
  try {
    body = await ready.json();
  } catch {
    body = {};
  }
  return { kind: 'ready', status: ready.status, body };
}

/**
 * The collections this key may use, and the default one.
 * @returns {Promise<{default: string, collections: Array<{name: string, embedModel: string}>}>}
 */
export async function listCollections() {
  const res = await fetch('/v1/collections', { headers: headers({ Accept: 'application/json' }) });
  if (!res.ok) throw await errorFrom(res);
  return res.json();
}
