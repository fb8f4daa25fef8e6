/**
 * Folder sync: the collection mirrors a folder (adds, updates, deletes what an earlier sync of that folder wrote and is
 * gone), never touches documents from elsewhere, and a dry run reports exactly what the real run then does. Plus the
 * CLI (`--sync`, `--dry-run`) and progress lines when stderr is not a terminal.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LineProgress, removedSince } from '../src/ingest/index.js';
import { openSystem, type RagService } from '../src/service/index.js';
import { fixtureConfig } from './helpers/config.js';
import { singleColumnPdf } from './helpers/documents.js';
import { runIngestCli } from './helpers/cli.js';

const TMP = mkdtempSync(path.join(os.tmpdir(), 'sync-'));
afterAll(() => rmSync(TMP, { recursive: true, force: true }));

function write(root: string, rel: string, content: string | Uint8Array): void {
  mkdirSync(path.dirname(path.join(root, rel)), { recursive: true });
  writeFileSync(path.join(root, rel), content);
}

/** A folder of files for a CLI run, and an empty indexes folder for it. */
function cliFolder(name: string, files: Record<string, string>): { folder: string; indexes: string } {
  const folder = path.join(TMP, name);
  for (const [rel, content] of Object.entries(files)) write(folder, rel, content);
  return { folder, indexes: mkdtempSync(path.join(TMP, 'cli-indexes-')) };
}

const ids = async (service: RagService, collection: string) =>
  (await service.listDocuments({ collection })).documents.map((d) => d.id).sort();

describe('syncFolder', () => {
  let service: RagService;
  const collection = 'synced';
  beforeAll(async () => {
    const config = fixtureConfig({ server: { ingestCorpusOnStart: false } });
    service = await openSystem(config, {
      writable: true,
      verify: false,
      reader: false,
      loadEmbedder: 'eager',
      prepareDefaultCollection: false,
    });
    await service.createCollection(collection);
  });
  afterAll(async () => {
    await service?.close();
  });

  it('adds, updates and deletes only what came from the folder; a dry run predicts the real run', async () => {
    const folder = path.join(TMP, 'papers');
    write(folder, 'intro.md', '# Intro\n\nThe first note about rivers.');
    write(folder, 'deep/report.pdf', await singleColumnPdf([['A report about lakes.'], ['Its second page.']]));
    write(folder, 'deep/photo.gif', 'gif bytes');
    const other = path.join(TMP, 'other');
    write(other, 'intro.md', '# Other\n\nSame file name, another folder.'.replace('intro', 'x'));
    write(other, 'keep.md', '# Keep\n\nFrom another folder.');

    const first = await service.syncFolder(folder, { collection, progress: false });
    expect(first).toMatchObject({ added: 2, updated: 0, deleted: 0, removed: [], unsupported: { '.gif': 1 } });
    // Documents from elsewhere: a plain ingest of another folder, and one written over the API.
    await service.ingestPaths([path.join(other, 'keep.md')], { collection, progress: false });
    await service.upsertDocuments([{ id: 'api-doc', text: 'Written over the REST API.' }], { collection });
    expect(await ids(service, collection)).toEqual(['api-doc', 'deep/report.pdf', 'intro.md', 'keep.md']);
    expect((await service.getDocument('intro.md', { collection }))!.metadata).toEqual({ format: 'markdown', sourceFolder: folder });

    // Change the folder: edit one file, remove one, add one.
    write(folder, 'intro.md', '# Intro\n\nThe first note about rivers, revised.');
    rmSync(path.join(folder, 'deep/report.pdf'));
    write(folder, 'new.txt', 'A new plain text note.');

    const plan = await service.syncFolder(folder, { collection, progress: false, dryRun: true });
    expect(plan.removed).toEqual(['deep/report.pdf']);
    // keep.md came from a plain ingest and is not in this folder: kept, and the plan says why. api-doc is no file.
    expect(plan.kept.map((k) => k.id)).toEqual(['keep.md']);
    expect(plan.kept[0]!.reason).toMatch(/plain ingest.*never deletes it/);
    const planned = plan.outcomes.map((o) => [o.id, o.status]).sort();
    expect(planned).toEqual([
      ['deep/report.pdf', 'deleted'],
      ['intro.md', 'updated'],
      ['new.txt', 'added'],
    ]);
    // Nothing was written.
    expect(await ids(service, collection)).toEqual(['api-doc', 'deep/report.pdf', 'intro.md', 'keep.md']);

    const real = await service.syncFolder(folder, { collection, progress: false });
    expect(real).toMatchObject({ added: 1, updated: 1, unchanged: 0, deleted: 1, removed: ['deep/report.pdf'] });
    // The plan counted passages as the real run then wrote and removed them.
    expect(real.passagesAdded).toBeGreaterThan(0);
    expect([plan.passagesAdded, plan.passagesRemoved]).toEqual([real.passagesAdded, real.passagesRemoved]);
    expect(await ids(service, collection)).toEqual(['api-doc', 'intro.md', 'keep.md', 'new.txt']);

    const again = await service.syncFolder(folder, { collection, progress: false });
    expect(again).toMatchObject({ added: 0, updated: 0, unchanged: 2, deleted: 0, removed: [] });
    expect((await service.verify({ collection })).ok).toBe(true);
  });

  it('refuses a missing folder and changes nothing', async () => {
    const before = await ids(service, collection);
    await expect(service.syncFolder(path.join(TMP, 'papers-gone'), { collection, progress: false })).rejects.toThrow(
      /cannot sync.*nothing was changed/,
    );
    expect(await ids(service, collection)).toEqual(before);
  });

  it('keeps documents under a path that could not be read', () => {
    const owned = new Set(['a.md', 'sub/b.md', 'sub/deeper/c.md', 'gone.md', 'subway.md']);
    expect(removedSince(owned, new Set(['a.md', 'sub']))).toEqual(['gone.md', 'subway.md']);
  });
});

describe('progress when stderr is not a terminal', () => {
  it('writes a line every interval while a run lasts, and a last one at the end', async () => {
    const out = new PassThrough();
    let text = '';
    out.on('data', (d: Buffer) => (text += d.toString()));
    const progress = new LineProgress(out, 20);
    progress.start(10);
    progress.update(3, 120);
    // However slow the machine, two interval lines arrive; then the final one.
    for (let waited = 0; text.split('\n').length < 3 && waited < 5000; waited += 10) await new Promise((r) => setTimeout(r, 10));
    progress.update(10, 400);
    progress.stop();
    const lines = text.trim().split('\n');
    expect(lines.length).toBeGreaterThanOrEqual(3);
    expect(lines[0]).toMatch(/^ingest: 3\/10 documents, 120 passages embedded \(\d+\.\d\/s\), \d+ s$/);
    expect(lines.at(-1)).toMatch(/^ingest: 10\/10 documents, 400 passages embedded/);
  });

  it('a run shorter than the interval writes nothing', () => {
    const out = new PassThrough();
    let text = '';
    out.on('data', (d: Buffer) => (text += d.toString()));
    const progress = new LineProgress(out, 5000);
    progress.start(1);
    progress.update(1, 1);
    progress.stop();
    expect(text).toBe('');
  });
});

describe('npm run ingest -- --sync', () => {
  it('prints the plan with --dry-run without writing, then syncs', async () => {
    const { folder, indexes } = cliFolder('cli-folder', { 'a.md': '# A\n\nAlpha.', 'b.txt': 'Beta.', 'c.xlsx': 'x' });

    const plan = await runIngestCli(['--sync', folder, '--collection', 'docs', '--dry-run'], indexes);
    expect(plan.code, plan.stderr).toBe(0);
    expect(plan.stdout).toContain('+ a.md\n+ b.txt\n');
    expect(plan.stdout).toMatch(/plan \(dry run, collection docs would be created\).*added 2.*unsupported files 1 \(\.xlsx 1\)/);

    const synced = await runIngestCli(['--sync', folder, '--collection', 'docs'], indexes);
    expect(synced.code, synced.stderr).toBe(0);
    expect(synced.stdout).toMatch(/sync .*: documents seen 2, added 2/);

    rmSync(path.join(folder, 'b.txt'));
    const plan2 = await runIngestCli(['--sync', folder, '--collection', 'docs', '--dry-run'], indexes);
    expect(plan2.stdout).toContain('- b.txt\n');
    expect(plan2.stdout).toMatch(/unchanged 1, deleted 1/);
  });
});

describe('npm run ingest exit status', () => {
  it('is 3 when some files could not be read (the rest written), 0 with --allow-file-errors', async () => {
    const { folder, indexes } = cliFolder('cli-broken', { 'good.md': '# Good\n\nReadable text.', 'broken.pdf': 'this is not a PDF' });

    const run = await runIngestCli([folder, '--collection', 'docs'], indexes);
    expect(run.code, run.stderr).toBe(3);
    expect(run.stderr).toMatch(/broken\.pdf/);
    expect(run.stderr).toMatch(/1 file\(s\) could not be read .*--allow-file-errors/);
    expect(run.stdout).toMatch(/collection docs: 1 documents/);

    const allowed = await runIngestCli([folder, '--collection', 'docs', '--allow-file-errors'], indexes);
    expect(allowed.code, allowed.stderr).toBe(0);
    expect(allowed.stderr).toMatch(/broken\.pdf/);
  });
});

describe('a dry run beside a server that holds the writer lock', () => {
  it('plans without the lock; the real run is refused with who holds it and what to do', async () => {
    const { folder, indexes } = cliFolder('cli-locked', { 'a.md': '# A\n\nAlpha.' });
    const first = await runIngestCli(['--sync', folder, '--collection', 'docs'], indexes);
    expect(first.code, first.stderr).toBe(0);
    write(folder, 'b.txt', 'Beta.');

    // This process holds the collection's writer, as an ingest does, or a server while it writes the collection.
    const holder = await openSystem(fixtureConfig({ indexesDir: indexes, server: { ingestCorpusOnStart: false } }), {
      writable: true,
      verify: false,
      reader: false,
      loadEmbedder: 'eager',
      prepareDefaultCollection: false,
    });
    try {
      expect((await holder.search({ collection: 'docs', query: 'alpha', k: 1, mode: 'bm25' })).results).toHaveLength(1);
      const plan = await runIngestCli(['--sync', folder, '--collection', 'docs', '--dry-run'], indexes);
      expect(plan.code, plan.stderr).toBe(0);
      expect(plan.stdout).toContain('+ b.txt\n');
      expect(plan.stdout).toMatch(/added 1, updated 0, unchanged 1/);

      const real = await runIngestCli(['--sync', folder, '--collection', 'docs'], indexes);
      expect(real.code).toBe(1);
      expect(real.stderr).toMatch(new RegExp(`held by process ${process.pid} on .*a --dry-run needs no lock`));
    } finally {
      await holder.close();
    }
  });
});

describe('a sync plan over files a plain ingest wrote', () => {
  it('says why they are listed as updated, and names the ones it will not delete', async () => {
    const { folder, indexes } = cliFolder('cli-adopt', { 'a.md': '# A\n\nAlpha.', 'c.md': '# C\n\nGamma.' });
    const plain = await runIngestCli([folder, '--collection', 'docs'], indexes);
    expect(plain.code, plain.stderr).toBe(0);
    rmSync(path.join(folder, 'c.md'));

    const plan = await runIngestCli(['--sync', folder, '--collection', 'docs', '--dry-run'], indexes);
    expect(plan.code, plan.stderr).toBe(0);
    expect(plan.stdout).toMatch(/^~ a\.md {2}\(not written by a sync of this folder .*later syncs delete it when its file goes\)$/m);
    expect(plan.stdout).toMatch(/^= c\.md {2}\(kept: written by a plain ingest, .*npm run ingest -- --delete <id>` does\)\)$/m);
  });
});
