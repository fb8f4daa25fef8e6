export interface HttpReply {
  status: number;
  headers: Headers;
  /** The parsed body, or undefined when it is not JSON. */
  json: any;
  text: string;
}

export interface RequestOptions {
  /** Sent as is when a string or Buffer (to test malformed bodies), else as JSON. */
  body?: unknown;
  /** API key, sent as a Bearer token. */
  key?: string;
  headers?: Record<string, string>;
  /** Abort the request after this long (default 30 s), so a hung server fails the test instead of stalling it. */
  timeoutMs?: number;
}

/** One HTTP request to a test server, with the reply's body read both as text and (when it parses) as JSON. */
export async function request(base: string, method: string, route: string, options: RequestOptions = {}): Promise<HttpReply> {
  const headers: Record<string, string> = {};
  if (options.body !== undefined) headers['content-type'] = 'application/json';
  if (options.key !== undefined) headers.authorization = `Bearer ${options.key}`;
  Object.assign(headers, options.headers);
  const raw = options.body;
  const body = raw === undefined ? undefined : typeof raw === 'string' || Buffer.isBuffer(raw) ? raw : JSON.stringify(raw);
  const res = await fetch(base + route, { method, headers, body, signal: AbortSignal.timeout(options.timeoutMs ?? 30_000) });
  return readReply(res);
}

/** A fetch response's body read both as text and (when it parses) as JSON. */
export async function readReply(res: Response): Promise<HttpReply> {
  const text = await res.text();
  let json: any;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: res.status, headers: res.headers, json, text };
}
