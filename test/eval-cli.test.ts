/**
 * `npm run eval` as a new user runs it: `--json out/…` on a fresh clone (no out/ folder), a second evaluation that
 * reuses its collection, collection names without a doubled `beir-` prefix, and a BM25 evaluation of a built
 * collection that runs without the embedding model.
 */
import { execFile } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { BERT_TINY, FIXTURES_DIR, REPO_ROOT } from './helpers/fixtures.js';

const work = mkdtempSync(path.join(os.tmpdir(), 'eval-cli-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

/** A small BEIR dataset: twelve documents about distinct topics, four judged queries. */
function beirDataset(dir: string): void {
  const topics = [
    'volcano lava magma',
    'zebra migration savanna',
    'sourdough bread yeast',
    'chess opening gambit',
    'glacier ice melt',
    'violin string bow',
  ];
  mkdirSync(path.join(dir, 'qrels'), { recursive: true });
  const corpus = topics.flatMap((t, i) =>
    [0, 1].map((j) => ({ _id: `d${i}-${j}`, title: t.split(' ')[0], text: `Notes ${j} about ${t}. More about ${t}.` })),
  );
  writeFileSync(path.join(dir, 'corpus.jsonl'), corpus.map((d) => JSON.stringify(d)).join('\n') + '\n');
  const queries = topics.slice(0, 4).map((t, i) => ({ _id: `q${i}`, text: t.split(' ').slice(1).join(' ') }));
  writeFileSync(path.join(dir, 'queries.jsonl'), queries.map((q) => JSON.stringify(q)).join('\n') + '\n');
  writeFileSync(
    path.join(dir, 'qrels', 'test.tsv'),
    'query-id\tcorpus-id\tscore\n' + queries.map((q, i) => `${q._id}\td${i}-0\t1`).join('\n') + '\n',
  );
}

async function evalCli(args: string[], env: Record<string, string>): Promise<{ stdout: string; stderr: string }> {
  const inherited = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('RAG_')));
  return promisify(execFile)(path.join(REPO_ROOT, 'node_modules', '.bin', 'tsx'), [path.join(REPO_ROOT, 'scripts', 'eval.ts'), ...args], {
    cwd: work,
    env: { ...inherited, ...env },
  });
}

describe('npm run eval', () => {
  it('creates the --json folder, names the collection once, and reuses it on a second run', async () => {
    const dataset = path.join(work, 'beir-tiny');
    beirDataset(dataset);
    const models = path.join(work, 'models');
    cpSync(path.join(FIXTURES_DIR, BERT_TINY), path.join(models, BERT_TINY), { recursive: true });
    const indexes = path.join(work, 'indexes');
    const env = {
      RAG_MODELS_DIR: models,
      RAG_EMBED_MODEL: BERT_TINY,
      RAG_QUANTIZED: 'false',
      RAG_ALLOW_REMOTE: 'false',
      RAG_INDEXES_DIR: indexes,
      RAG_CONFIG: path.join(work, 'absent-ok.json'),
    };
    writeFileSync(env.RAG_CONFIG, '{}');

    const first = await evalCli(['--dataset', dataset, '--mode', 'bm25', '--k', '10', '--json', 'out/bm25.json'], env);
    const report = JSON.parse(readFileSync(path.join(work, 'out', 'bm25.json'), 'utf8'));
    expect(report).toMatchObject({ dataset: 'beir-tiny', mode: 'bm25', queries: 4, hnswRecallAt10: null, queryEmbeddingMs: null });
    expect(report.metrics['ndcg@10']).toBeGreaterThan(0.5);
    expect(first.stdout).toContain('wrote out/bm25.json');
    expect(readdirSync(indexes)).toEqual([`beir-tiny-${BERT_TINY}`]);

    // A second run reuses the collection: every document is unchanged, nothing is embedded again.
    const second = await evalCli(['--dataset', dataset, '--mode', 'bm25', '--k', '10', '--json', 'out/again/bm25.json'], env);
    expect(second.stdout).toContain('(reused)');
    const again = JSON.parse(readFileSync(path.join(work, 'out', 'again', 'bm25.json'), 'utf8'));
    expect(again.metrics).toEqual(report.metrics);

    // BM25 over the built collection needs no embedding model: it runs with the model folder gone.
    rmSync(models, { recursive: true });
    const offline = await evalCli(['--dataset', dataset, '--mode', 'bm25', '--k', '10', '--json', 'out/offline.json'], env);
    expect(offline.stdout).toContain('(reused)');
    expect(offline.stdout).toContain('bm25 needs no embedding model, so dense recall');
    expect(offline.stdout).not.toContain('query embedding');
    const withoutModel = JSON.parse(readFileSync(path.join(work, 'out', 'offline.json'), 'utf8'));
    expect(withoutModel).toMatchObject({ mode: 'bm25', hnswRecallAt10: null, queryEmbeddingMs: null });
    expect(withoutModel.metrics).toEqual(report.metrics);
    // Dense modes do need the model, and say so.
    const dense = evalCli(['--dataset', dataset, '--mode', 'dense'], env);
    await expect(dense).rejects.toMatchObject({ stderr: expect.stringContaining(`model "${BERT_TINY}" could not be loaded`) });
    // The advice ends with the command that was run, not the server's.
    await expect(dense).rejects.toMatchObject({
      stderr: expect.stringContaining(`\n    npm run eval -- --dataset ${dataset} --mode dense\n`),
    });
    expect(existsSync(path.join(indexes, `beir-beir-tiny-${BERT_TINY}`))).toBe(false);
  }, 300_000);
});
