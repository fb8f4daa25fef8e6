import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ingestDocuments, ingestPaths, tokenCounter, type IngestEmbedder, type IngestError } from '../src/ingest/index.js';
import { Embedder } from '../src/models/index.js';
import type { PassageStore } from '../src/store/index.js';
import { BERT_TINY, FIXTURES_DIR } from './helpers/fixtures.js';
import { runIngestCli } from './helpers/cli.js';
import { ingestOptions, openTestStore } from './helpers/store.js';

let embedder: Embedder;
const TMP = mkdtempSync(path.join(os.tmpdir(), 'ingest-pipeline-'));

beforeAll(async () => {
  embedder = await Embedder.load(BERT_TINY, { modelsDir: FIXTURES_DIR, allowRemote: false, quantized: false, batchSize: 16 });
});

afterAll(() => rmSync(TMP, { recursive: true, force: true }));

function tempDir(prefix: string): string {
  return mkdtempSync(path.join(TMP, prefix));
}

function corpusTree(): string {
  const root = tempDir('ingest-pipeline-corpus-');
  const files: Record<string, string | Buffer> = {
    'a.md': '# Alpha\n\nAlpha text about rivers. Another sentence about lakes.',
    'nested/b.html': '<html><head><title>Beta</title><script>x()</script></head><body><p>Beta page text.</p></body></html>',
    'nested/c.txt': 'Gamma plain text.',
    'records.jsonl': [
      JSON.stringify({ id: 'r1', title: 'R1', text: 'first record', metadata: { src: 'jsonl' } }),
      'not json',
      JSON.stringify({ id: 'r2', title: 'R2', text: 'second record' }),
    ].join('\n'),
    'blob.txt': Buffer.from([1, 2, 0, 3]),
  };
  for (const [rel, content] of Object.entries(files)) {
    mkdirSync(path.dirname(path.join(root, rel)), { recursive: true });
    writeFileSync(path.join(root, rel), content);
  }
  return root;
}

function openStore(): Promise<PassageStore> {
  return openTestStore(path.join(tempDir('ingest-pipeline-index-'), 'index'), { embedModel: embedder.modelId, dim: embedder.dim });
}

describe('ingestPaths', () => {
  it('ingests a tree, reports bad inputs with path and line, and is a no-op when repeated', async () => {
    const root = corpusTree();
    const store = await openStore();
    try {
      const reported: IngestError[] = [];
      const summary = await ingestPaths([root], ingestOptions(store, embedder, { onError: (e) => reported.push(e) }));
      expect(summary).toMatchObject({ documentsSeen: 5, added: 5, updated: 0, unchanged: 0 });
      expect(summary.errors).toEqual(reported);
      expect(summary.errors).toEqual([
        { path: path.join(root, 'blob.txt'), message: expect.stringMatching(/binary/) },
        { path: path.join(root, 'records.jsonl'), line: 2, message: expect.stringMatching(/invalid JSON/) },
      ]);
      for (const id of ['a.md', 'nested/b.html', 'nested/c.txt', 'r1', 'r2']) expect(await store.getDocument(id), id).toBeDefined();
      expect((await store.getDocument('nested/b.html'))!.title).toBe('Beta');
      expect((await store.passagesOfDocument('r1'))[0]!.metadata).toEqual({ src: 'jsonl' });
      expect(summary.seconds).toBeGreaterThan(0);

      const again = await ingestPaths([root], ingestOptions(store, embedder));
      expect(again).toMatchObject({ documentsSeen: 5, added: 0, unchanged: 5, passagesAdded: 0 });
      expect((await store.verify()).ok).toBe(true);
    } finally {
      await store.close();
    }
  });

  it('embeds and writes in bounded batches and checkpoints periodically', async () => {
    const store = await openStore();
    const batches: number[] = [];
    // The real embedder, observed: records how many texts each call carries.
    const observed: IngestEmbedder = {
      modelId: embedder.modelId,
      dim: embedder.dim,
      tokenization: () => embedder.tokenization(),
      embedPassages: (texts) => {
        batches.push(texts.length);
        return embedder.embedPassages(texts);
      },
    };
    try {
      const docs = Array.from({ length: 40 }, (_, i) => ({ id: `d${i}`, title: '', text: `Short document number ${i}.`, metadata: {} }));
      const summary = await ingestDocuments(
        docs,
        ingestOptions(store, observed, { batchPassages: 6, checkpoint: { everyPassages: 12, atEnd: true } }),
      );
      expect(summary.passagesAdded).toBe(40);
      expect(Math.max(...batches)).toBeLessThanOrEqual(6);
      expect(batches.reduce((a, b) => a + b, 0)).toBe(40);
      // 40 passages, a checkpoint after every 12 or more, plus the final one.
      expect((await store.stats()).generation).toBeGreaterThanOrEqual(4);
      expect((await store.stats()).pending).toBe(0);
    } finally {
      await store.close();
    }
  });

  /** The tiny embedder with a 32-token input limit, far below the configured chunking. */
  const loadShortEmbedder = () =>
    Embedder.load(BERT_TINY, { modelsDir: FIXTURES_DIR, allowRemote: false, quantized: false, batchSize: 16, maxTokens: 32 });

  it('keeps passages within what the embedding model can take', async () => {
    const short = await loadShortEmbedder();
    const store = await openStore();
    try {
      const text = Array.from({ length: 30 }, (_, i) => `Sentence ${i} is here with several words.`).join(' ');
      await ingestDocuments(
        [{ id: 'long', title: '', text, metadata: {} }],
        ingestOptions(store, short, { chunk: { maxTokens: 200, overlapTokens: 32 } }),
      );
      const count = tokenCounter(short.tokenizer);
      const passages = await store.passagesOfDocument('long');
      expect(passages.length).toBeGreaterThan(5);
      // 32 minus [CLS] and [SEP].
      for (const p of passages) expect(count(p.text)).toBeLessThanOrEqual(30);
    } finally {
      await store.close();
    }
  });

  it('finds unchanged documents without the model when the options are already within its budget, with it otherwise', async () => {
    const short = await loadShortEmbedder();
    const store = await openStore();
    const asked: string[] = [];
    // The same model, recording each time the pipeline needs it loaded (a lazily loaded model would load there).
    const observed: IngestEmbedder = {
      modelId: short.modelId,
      dim: short.dim,
      tokenization: () => (asked.push('tokenization'), short.tokenization()),
      embedPassages: (texts) => (asked.push('embed'), short.embedPassages(texts)),
    };
    const docs = () =>
      Array.from({ length: 3 }, (_, i) => ({
        id: `d${i}`,
        title: '',
        text: `Sentence ${i} is here with several words. `.repeat(8),
        metadata: {},
      }));
    const run = (chunk: { maxTokens: number; overlapTokens: number }) => ingestDocuments(docs(), ingestOptions(store, observed, { chunk }));
    try {
      expect((await run({ maxTokens: 200, overlapTokens: 32 })).added).toBe(3);
      expect(asked).toContain('tokenization');
      // Requested options beyond the budget: only the model can tell they cut the same way, so it is asked, once.
      asked.length = 0;
      expect(await run({ maxTokens: 200, overlapTokens: 32 })).toMatchObject({ unchanged: 3, updated: 0 });
      expect(asked).toEqual(['tokenization']);
      // The effective options (what a collection's manifest records): no model needed at all.
      asked.length = 0;
      expect(await run({ maxTokens: 30, overlapTokens: 7 })).toMatchObject({ unchanged: 3, updated: 0 });
      expect(asked).toEqual([]);
      // Other options are a change, which needs the model to cut and embed.
      expect(await run({ maxTokens: 20, overlapTokens: 4 })).toMatchObject({ unchanged: 0, updated: 3 });
      expect(asked).toEqual(['tokenization', 'embed']);
    } finally {
      await store.close();
    }
  });
});

describe('scripts/ingest.ts', () => {
  it('ingests, reports errors on stderr with file and line (exit 3), deletes, and exits 1 when nothing was ingested', async () => {
    const root = corpusTree();
    const indexes = tempDir('ingest-cli-');

    const first = await runIngestCli([root, '--index', 'cli', '--chunk-tokens', '64', '--overlap', '8'], indexes);
    // Two files could not be read: exit status 3, the other documents written.
    expect(first.code, first.stderr).toBe(3);
    expect(first.stdout).toMatch(/documents seen 5, added 5/);
    expect(first.stderr).toContain(`${path.join(root, 'records.jsonl')}:2: invalid JSON`);
    expect(first.stderr).toContain(`${path.join(root, 'blob.txt')}: binary`);

    const removed = await runIngestCli(['--index', 'cli', '--delete', 'r1', 'nested/c.txt'], indexes);
    expect(removed.code, removed.stderr).toBe(0);
    expect(removed.stdout).toMatch(/deleted 2/);
    expect(removed.stdout).toMatch(/3 documents/);

    const nothing = await runIngestCli([path.join(root, 'missing-folder'), '--index', 'cli'], indexes);
    expect(nothing.code).toBe(1);
    expect(nothing.stderr).toMatch(/missing-folder/);
  });
});
