import pg from 'pg';
import { StorageUnavailableError } from '../errors.js';

// int8 (change ids, counts) as JS numbers: change ids stay far below 2^53 in any real deployment.
pg.types.setTypeParser(pg.types.builtins.INT8, (v) => Number(v));

/** SQLSTATE classes and socket errors that mean "the server is not reachable right now", not "the query is wrong". */
export function isUnavailable(err: unknown): boolean {
  const e = err as { code?: unknown; message?: unknown };
  const code = typeof e?.code === 'string' ? e.code : '';
  if (/^(08|57P0[1-3]|53300)/.test(code)) return true;
  if (['ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'ETIMEDOUT', 'ENOTFOUND', 'EHOSTUNREACH', 'EAI_AGAIN'].includes(code)) return true;
  const message = typeof e?.message === 'string' ? e.message : '';
  return /Connection terminated|connection timeout|Client has encountered a connection error|not queryable/i.test(message);
}

/** Deadlocks and serialization failures: the transaction did nothing and may simply run again. */
export function isRetryable(err: unknown): boolean {
  const code = (err as { code?: unknown })?.code;
  return code === '40P01' || code === '40001';
}

export interface PoolOptions {
  url: string;
  max: number;
  connectTimeoutMs: number;
}

export function createPool(options: PoolOptions): pg.Pool {
  const pool = new pg.Pool({
    connectionString: options.url,
    max: options.max,
    connectionTimeoutMillis: options.connectTimeoutMs,
    idleTimeoutMillis: 30_000,
    application_name: 'fid-rag',
  });
  // An idle client losing its connection (PostgreSQL restarted) must not crash the process; the pool replaces it.
  pool.on('error', () => undefined);
  return pool;
}

/** The URL without password, for messages and `location`. */
export function redactedUrl(url: string): string {
  try {
    const u = new URL(url);
    u.password = '';
    return u.toString();
  } catch {
    return 'postgres://(invalid url)';
  }
}

/** Runs `body` in one transaction; retries deadlocks, maps an unreachable server to StorageUnavailableError. */
export async function inTransaction<T>(
  pool: pg.Pool,
  what: string,
  body: (client: pg.PoolClient) => Promise<T>,
  begin = 'BEGIN',
): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    let client: pg.PoolClient;
    try {
      client = await pool.connect();
    } catch (err) {
      throw new StorageUnavailableError(what, err);
    }
    let broken: Error | undefined;
    // A checked-out client has no error listener; a connection lost between two statements would otherwise be an
    // uncaught exception. The failure still reaches us through the next query.
    const onError = (err: Error) => {
      broken = err;
    };
    client.on('error', onError);
    try {
      await client.query(begin);
      const result = await body(client);
      await client.query('COMMIT');
      return result;
    } catch (err) {
      try {
        await client.query('ROLLBACK');
      } catch (rollbackErr) {
        broken = rollbackErr as Error;
      }
      if (isRetryable(err) && attempt < 5) continue;
      if (isUnavailable(err)) {
        broken ??= err as Error;
        throw new StorageUnavailableError(what, err);
      }
      throw err;
    } finally {
      client.removeListener('error', onError);
      client.release(broken);
    }
  }
}

/** One query outside a transaction, with the same error mapping. */
export async function query<R extends pg.QueryResultRow>(
  pool: pg.Pool,
  what: string,
  sql: string,
  params: unknown[] = [],
): Promise<pg.QueryResult<R>> {
  try {
    return await pool.query<R>(sql, params);
  } catch (err) {
    if (isUnavailable(err)) throw new StorageUnavailableError(what, err);
    throw err;
  }
}
