/**
 * PostgreSQL for tests. With `RAG_TEST_DATABASE_URL` (set by `.ci/run`, which starts a throwaway server) every call
 * creates a fresh database on that server; otherwise the first call starts a throwaway server for this test file.
 * When no PostgreSQL is installed the PostgreSQL tests skip locally, but under CI=true that is a failure.
 */
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { findPostgresBinDir, startThrowawayPostgres, type ThrowawayPostgres } from '../../scripts/lib/throwaway-postgres.js';

const sharedUrl = process.env.RAG_TEST_DATABASE_URL;

/** Whether PostgreSQL tests can run; under CI a missing server is an error rather than a reason to skip. */
export function postgresAvailable(): boolean {
  if (sharedUrl || findPostgresBinDir()) return true;
  if (process.env.CI === 'true') {
    throw new Error('CI=true but PostgreSQL is not installed and RAG_TEST_DATABASE_URL is not set: the PostgreSQL tests cannot run');
  }
  return false;
}

let ownServer: Promise<ThrowawayPostgres> | undefined;

/** A throwaway server of this test file's own (for tests that stop and start PostgreSQL). */
export function ownPostgres(): Promise<ThrowawayPostgres> {
  return startThrowawayPostgres();
}

async function serverUrl(): Promise<{ url: string; urlFor: (db: string) => string }> {
  if (sharedUrl) {
    const base = new URL(sharedUrl);
    return {
      url: sharedUrl,
      urlFor: (db) => {
        const u = new URL(base);
        u.pathname = `/${db}`;
        return u.toString();
      },
    };
  }
  ownServer ??= startThrowawayPostgres();
  return ownServer;
}

/** A new, empty database; returns its URL. */
export async function freshDatabase(): Promise<string> {
  const server = await serverUrl();
  const name = `rag_test_${randomBytes(6).toString('hex')}`;
  const client = new pg.Client({ connectionString: server.url });
  await client.connect();
  try {
    await client.query(`CREATE DATABASE ${name}`);
  } finally {
    await client.end();
  }
  return server.urlFor(name);
}

/** Stops this file's own server, if one was started (call from afterAll). */
export async function stopTestPostgres(): Promise<void> {
  if (!ownServer) return;
  const server = await ownServer;
  ownServer = undefined;
  server.stop();
}
