/**
 * Multi-megabyte inputs: chunking must cost time linear in the text and must hand the event loop back often enough
 * that a server chunking a large document keeps answering (issue: one 490 KB document blocked /healthz for 41 s).
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import { AutoTokenizer, env, type PreTrainedTokenizer } from '@xenova/transformers';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startServer } from '../src/main.js';
import { chunkText, chunkTextAsync, tokenCounter, type CountTokens } from '../src/ingest/index.js';
import { proseOfLength, startBlockProbe, writeWhileSearching } from '../scripts/lib/event-loop.js';
import { fixtureConfig } from './helpers/config.js';
import { REPO_ROOT } from './helpers/fixtures.js';
import { runIngestCli } from './helpers/cli.js';

const CORPUS = path.join(REPO_ROOT, 'corpus');
const OPTIONS = { maxTokens: 200, overlapTokens: 32 };

let count: CountTokens;

beforeAll(async () => {
  env.localModelPath = path.resolve(REPO_ROOT, '../shared/models');
  env.allowRemoteModels = false;
  const tokenizer: PreTrainedTokenizer = await AutoTokenizer.from_pretrained('bge-small-en-v1.5');
  count = tokenCounter(tokenizer);
});

/** CPU time of this process for `work`: what other processes on a shared machine do barely moves it. */
function cpuMs(work: () => void): number {
  const before = process.cpuUsage();
  work();
  const used = process.cpuUsage(before);
  return (used.user + used.system) / 1000;
}

/**
 * Time for the large text over time for the small one, per character. The small text is chunked ten times in a row
 * so both sides do the same amount of work, the blocks are interleaved, and the cheapest block of each kind counts.
 */
async function scalingRatio(small: string, large: string, rounds = 3): Promise<number> {
  const repeat = Math.round(large.length / small.length);
  let smallMs = Infinity;
  let largeMs = Infinity;
  chunkText(small, count, OPTIONS); // warm-up
  for (let round = 0; round < rounds; round++) {
    smallMs = Math.min(
      smallMs,
      cpuMs(() => {
        for (let i = 0; i < repeat; i++) chunkText(small, count, OPTIONS);
      }),
    );
    // The test runner talks to its workers over the event loop: give it a turn between the long blocks.
    await new Promise((resolve) => setImmediate(resolve));
    largeMs = Math.min(
      largeMs,
      cpuMs(() => chunkText(large, count, OPTIONS)),
    );
    await new Promise((resolve) => setImmediate(resolve));
  }
  return largeMs / smallMs;
}

describe('chunking large documents', () => {
  it('costs time linear in the text: 10x the text takes at most ~12x the time', async () => {
    // 10x the text at 1.2x the time per character is the ~12x allowed for 10x the text.
    expect(await scalingRatio(proseOfLength(CORPUS, 200_000), proseOfLength(CORPUS, 2_000_000))).toBeLessThanOrEqual(1.2);
  });

  it('is linear for text without sentence ends and for one giant word too', async () => {
    for (const unit of ['word ', 'x', '東京都']) {
      const small = unit.repeat(Math.ceil(30_000 / unit.length));
      const large = unit.repeat(Math.ceil(300_000 / unit.length));
      // Smaller texts than above, so CPU-time noise weighs more (1.26 seen at load average 30, 1.51 for 'x' in a CI
      // run beside the trainer's tests): 20x for 10x the text still separates linear from quadratic, which is 10x
      // the ratio (the old cut of a giant word re-counted the rest of it at every cut).
      expect(await scalingRatio(small, large, 5), JSON.stringify(unit)).toBeLessThanOrEqual(2);
    }
  });

  it('gives the same passages as chunking a short text did, sentence for sentence', () => {
    // Windowed segmentation must agree with segmenting the whole text where that is still fast (below 100k characters).
    const text = proseOfLength(CORPUS, 60_000);
    const sentenceStarts = new Set<number>();
    for (const { index, segment } of new Intl.Segmenter('en', { granularity: 'sentence' }).segment(text)) {
      const lead = segment.search(/\S/u);
      if (lead >= 0) sentenceStarts.add(index + lead);
    }
    const chunks = chunkText(text, count, { maxTokens: 200, overlapTokens: 0 });
    for (const c of chunks) expect(sentenceStarts.has(c.start), `passage at ${c.start} starts mid-sentence`).toBe(true);
  });

  it('async chunking never holds the event loop for more than ~50 ms on a 2 MB document', async () => {
    const text = proseOfLength(CORPUS, 2_000_000);
    const expected = chunkText(text, count, OPTIONS);
    const probe = startBlockProbe();
    const chunks = await chunkTextAsync(text, count, OPTIONS);
    const { maxBlockCpuMs } = probe.stop();
    expect(chunks).toEqual(expected);
    expect(maxBlockCpuMs).toBeLessThan(50);
  });

  it('async chunking stops when its signal is aborted', async () => {
    const controller = new AbortController();
    const pending = chunkTextAsync(proseOfLength(CORPUS, 1_000_000), count, OPTIONS, { signal: controller.signal });
    setTimeout(() => controller.abort(new Error('stop')), 20);
    await expect(pending).rejects.toThrow('stop');
  });
});

describe('a 2 MB document written through the API', () => {
  let server: Awaited<ReturnType<typeof startServer>> | undefined;
  afterAll(async () => {
    await server?.close();
  });

  it('keeps searches answered while it is chunked and embedded', async () => {
    const config = fixtureConfig({
      corpusDir: CORPUS,
      auth: { disabled: true },
      documents: { maxTextChars: 2_100_000 },
      server: { rateLimit: { windowMs: 60_000, max: 0 }, requestTimeoutMs: 600_000 },
    });
    server = await startServer(config, pino({ level: 'silent' }));
    await server.ready;
    const result = await writeWhileSearching(`http://127.0.0.1:${server.port}`, proseOfLength(CORPUS, 2_000_000));
    expect(result.status).toBe(200);
    expect(result.searchFailures).toBe(0);
    // Chunking, hashing and embedding yield to other requests; before the fix, chunking alone held the loop for
    // minutes. What is left in one piece is the store's commit of the whole batch (one transaction plus its HNSW
    // additions, atomic by design), a small share of the write.
    expect(result.searches).toBeGreaterThanOrEqual(20);
    expect(result.maxBlockCpuMs).toBeLessThan(result.writeMs / 4);
  }, 600_000);
});

describe('npm run ingest of a 5 MB text file', () => {
  it('finishes and shows its progress while it runs (stderr is not a terminal)', async () => {
    const work = mkdtempSync(path.join(os.tmpdir(), 'large-ingest-'));
    try {
      const file = path.join(work, 'large.txt');
      writeFileSync(file, proseOfLength(CORPUS, 5_000_000));
      const { code, stdout, stderr } = await runIngestCli([file, '--index', 'large'], path.join(work, 'indexes'));
      expect(code, stderr).toBe(0);
      // Off a terminal, progress is a line every few seconds (the run takes longer than one interval).
      expect(stderr).toMatch(/ingest: [01]\/1 documents, \d+ passages embedded/);
      const added = Number(/passages \+(\d+)\/-0/.exec(stdout)?.[1]);
      expect(added).toBeGreaterThan(1000);
    } finally {
      rmSync(work, { recursive: true, force: true });
    }
  }, 600_000);
});
