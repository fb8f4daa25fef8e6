/**
 * The content hash decides whether ingest re-embeds a document, so its value must not change with how it is computed:
 * hashed piece by piece (to keep a server responsive), it must equal the SHA-256 of the whole canonical JSON, which is
 * what every existing index stores.
 */
import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { contentHash } from '../src/ingest/index.js';

const reference = (parts: unknown[]) => createHash('sha256').update(JSON.stringify(parts)).digest('hex');

/** 300k characters with a surrogate pair, a lone surrogate or an escape straddling every 2^17 boundary and elsewhere. */
function trickyText(seed: string): string {
  const filler = `${seed} "quoted" back\\slash tab\t newline\n ctrl\u0001 sep\u2028 é 字 `;
  const text = filler
    .repeat(Math.ceil(300_000 / filler.length))
    .slice(0, 300_000)
    .split('');
  for (const at of [131_071, 131_072, 262_143, 262_144, 5, 299_990]) {
    text[at] = seed.length % 2 === 0 ? '\ud83d' : '\udc00';
    text[at + 1] = seed.length % 2 === 0 ? '\ude00' : '"';
  }
  return text.join('');
}

describe('content hash', () => {
  it('equals the SHA-256 of the whole canonical JSON, whatever falls on a piece boundary', async () => {
    for (const text of [
      '',
      'short text',
      trickyText('even'),
      trickyText('odd'),
      '\ud83d'.repeat(140_000),
      `x${'\ud83d\ude00'.repeat(70_000)}`,
    ]) {
      const metadata = { b: [1, { z: true, a: null }], a: 'é' };
      expect(await contentHash({ title: 'A "title"', text, metadata })).toBe(
        reference(['A "title"', text, { a: 'é', b: [1, { a: null, z: true }] }]),
      );
      const layout = { pages: [{ page: 1, start: 0, end: 10 }], sections: [{ start: 0, path: ['Intro'] }] };
      expect(await contentHash({ title: '', text, metadata: {}, layout })).toBe(
        reference(['', text, {}, { pages: [{ end: 10, page: 1, start: 0 }], sections: [{ path: ['Intro'], start: 0 }] }]),
      );
    }
  });

  it('returns to the event loop while it hashes a multi-megabyte text', async () => {
    const text = 'All work and no play makes a long document. '.repeat(120_000);
    let turns = 0;
    let hashing = true;
    const count = (): void => {
      if (!hashing) return;
      turns++;
      setImmediate(count);
    };
    setImmediate(count);
    const hash = await contentHash({ title: 't', text, metadata: {} });
    hashing = false;
    expect(hash).toBe(reference(['t', text, {}]));
    expect(turns).toBeGreaterThan(1);
  });
});
