import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { readSources, type IngestError, type SourceDocument } from '../src/ingest/index.js';

const TMP = mkdtempSync(path.join(os.tmpdir(), 'ingest-readers-'));

afterAll(() => rmSync(TMP, { recursive: true, force: true }));

async function collect(paths: string[]): Promise<{ docs: SourceDocument[]; errors: IngestError[] }> {
  const docs: SourceDocument[] = [];
  const errors: IngestError[] = [];
  for await (const item of readSources(paths)) {
    if (item.kind === 'document') docs.push(item.document);
    else if (item.kind === 'error') errors.push(item.error);
  }
  return { docs, errors };
}

function tree(files: Record<string, string | Buffer>): string {
  const root = mkdtempSync(path.join(TMP, 'tree-'));
  for (const [rel, content] of Object.entries(files)) {
    const full = path.join(root, rel);
    mkdirSync(path.dirname(full), { recursive: true });
    writeFileSync(full, content);
  }
  return root;
}

const HTML = `<!doctype html><html><head><title>The  Title &amp; More</title>
<style>body { color: red }</style><script>var secret = "do not index";</script></head>
<body><h1>Main Heading</h1><p>First paragraph with a <a href="https://example.com/x">link</a>.</p>
<noscript>enable js</noscript><ul><li>item one</li><li>item two</li></ul></body></html>`;

describe('readSources', () => {
  it('reads .txt, .md and .html files with ids relative to the folder given', async () => {
    const root = tree({
      'notes.txt': 'Plain text.\nSecond line.',
      'guide/intro.md': '---\ntitle: "Front Title"\n---\n# Heading\n\nBody of the guide.',
      'guide/plain.md': 'Intro line\n\n## Second-level heading\n\nMore text.',
      'site/page.html': HTML,
      'image.gif': Buffer.from([0x47, 0x49, 0x46, 0x38, 0, 0, 0]),
      '.hidden/secret.txt': 'hidden',
    });
    const { docs, errors } = await collect([root]);
    expect(errors).toEqual([]);
    const byId = new Map(docs.map((d) => [d.id, d]));
    expect([...byId.keys()].sort()).toEqual(['guide/intro.md', 'guide/plain.md', 'notes.txt', 'site/page.html']);

    expect(byId.get('notes.txt')).toMatchObject({ title: 'notes', text: 'Plain text.\nSecond line.', metadata: { format: 'text' } });
    const intro = byId.get('guide/intro.md')!;
    expect(intro.title).toBe('Front Title');
    expect(intro.text).toBe('Heading\n\nBody of the guide.');
    expect(intro.layout).toEqual({ sections: [{ start: 0, path: ['Heading'] }] });
    expect(byId.get('guide/plain.md')!.title).toBe('Second-level heading');

    const page = byId.get('site/page.html')!;
    expect(page.title).toBe('The Title & More');
    expect(page.metadata).toEqual({ format: 'html' });
    expect(page.text).toContain('Main Heading');
    expect(page.text).toContain('First paragraph with a link.');
    expect(page.text).toContain('item two');
    for (const hidden of ['secret', 'color: red', 'https://example.com', 'enable js', 'The Title']) {
      expect(page.text).not.toContain(hidden);
    }
  });

  it('falls back to the first <h1> for an HTML title, then to the file name', async () => {
    const root = tree({
      'a.html': '<html><body><h1>Only <em>Heading</em></h1><p>x</p></body></html>',
      'b.htm': '<p>no title at all</p>',
    });
    const { docs } = await collect([root]);
    expect(docs.map((d) => [d.id, d.title])).toEqual([
      ['a.html', 'Only Heading'],
      ['b.htm', 'b'],
    ]);
  });

  it('uses the file name as id when a file is given directly', async () => {
    const root = tree({ 'deep/dir/file.md': '# T\n\ntext' });
    const { docs } = await collect([path.join(root, 'deep/dir/file.md')]);
    expect(docs.map((d) => d.id)).toEqual(['file.md']);
  });

  it('reads JSONL records, reporting bad lines with path and line number and continuing', async () => {
    const lines = [
      JSON.stringify({ id: 'a', title: 'A', text: 'alpha', metadata: { lang: 'en', year: 2020 } }),
      '{"id": "b", "text": "beta"', // truncated JSON
      '',
      JSON.stringify({ id: 'c', text: 42 }),
      JSON.stringify([1, 2]),
      JSON.stringify({ title: 'no id', text: 'x' }),
      JSON.stringify({ id: 'd', text: 'delta', metadata: 'not an object' }),
      JSON.stringify({ id: 7, text: 'numeric id' }),
      JSON.stringify({ id: 'e', text: 'epsilon' }),
    ];
    const root = tree({ 'records.jsonl': lines.join('\n') + '\n' });
    const file = path.join(root, 'records.jsonl');
    const { docs, errors } = await collect([root]);
    expect(docs.map((d) => d.id)).toEqual(['a', '7', 'e']);
    expect(docs[0]).toMatchObject({ title: 'A', text: 'alpha', metadata: { lang: 'en', year: 2020 }, origin: { path: file, line: 1 } });
    expect(docs[2]).toMatchObject({ title: '', metadata: {} });
    expect(errors.map((e) => [e.path, e.line])).toEqual([
      [file, 2],
      [file, 4],
      [file, 5],
      [file, 6],
      [file, 7],
    ]);
    expect(errors[0]!.message).toMatch(/invalid JSON/);
    expect(errors[1]!.message).toMatch(/"text"/);
    expect(errors[3]!.message).toMatch(/"id"/);
    expect(errors[4]!.message).toMatch(/"metadata"/);
  });

  it('reports a duplicate id inside one JSONL file and keeps the first record', async () => {
    const lines = [
      JSON.stringify({ id: 'a', text: 'first alpha' }),
      JSON.stringify({ id: 'b', text: 'beta' }),
      JSON.stringify({ id: 'a', text: 'second alpha' }),
      JSON.stringify({ _id: 'b', text: 'beta again, BEIR style' }),
      JSON.stringify({ id: 7, text: 'numeric' }),
      JSON.stringify({ id: '7', text: 'the same id as a string' }),
    ];
    const root = tree({ 'dups.jsonl': lines.join('\n') + '\n', 'other.jsonl': JSON.stringify({ id: 'a', text: 'another file' }) + '\n' });
    const file = path.join(root, 'dups.jsonl');
    const { docs, errors } = await collect([file]);
    expect(docs.map((d) => [d.id, d.text])).toEqual([
      ['a', 'first alpha'],
      ['b', 'beta'],
      ['7', 'numeric'],
    ]);
    expect(errors.map((e) => [e.path, e.line])).toEqual([
      [file, 3],
      [file, 4],
      [file, 6],
    ]);
    expect(errors[0]!.message).toBe('duplicate id "a" (first at line 1); this record is skipped');
    // Ids are unique per file: the same id in another file is an update, handled by the pipeline as before.
    expect((await collect([root])).docs.filter((d) => d.id === 'a')).toHaveLength(2);
  });

  it('reads a BEIR folder through corpus.jsonl (_id) and ignores queries and qrels', async () => {
    const root = tree({
      'beir/corpus.jsonl': [
        JSON.stringify({ _id: 'doc1', title: 'One', text: 'first', metadata: {} }),
        JSON.stringify({ _id: 'doc2', title: '', text: 'second' }),
      ].join('\n'),
      'beir/queries.jsonl': JSON.stringify({ _id: 'q1', text: 'a query' }),
      'beir/qrels/test.tsv': 'query-id\tcorpus-id\tscore\nq1\tdoc1\t1\n',
    });
    // Given directly and found while walking a parent folder.
    for (const input of [path.join(root, 'beir'), root]) {
      const { docs, errors } = await collect([input]);
      expect(errors).toEqual([]);
      expect(docs.map((d) => [d.id, d.title, d.text])).toEqual([
        ['doc1', 'One', 'first'],
        ['doc2', '', 'second'],
      ]);
    }
  });

  it('skips binary and non-UTF-8 files with an error naming the file', async () => {
    const root = tree({
      'good.txt': 'fine',
      'binary.txt': Buffer.from([0x48, 0x69, 0x00, 0x01, 0x02]),
      'latin1.md': Buffer.from([0x63, 0x61, 0x66, 0xe9]),
      'binary.jsonl': Buffer.from([0x7b, 0x00, 0x7d, 0x0a]),
    });
    const { docs, errors } = await collect([root]);
    expect(docs.map((d) => d.id)).toEqual(['good.txt']);
    const byFile = new Map(errors.map((e) => [path.basename(e.path), e.message]));
    expect(byFile.get('binary.txt')).toMatch(/binary/);
    expect(byFile.get('binary.jsonl')).toMatch(/binary/);
    expect(byFile.get('latin1.md')).toMatch(/UTF-8/);
  });

  it('reports missing paths, unsupported files and unreadable files, and continues', async () => {
    const root = tree({ 'ok.txt': 'fine', 'data.csv': 'a,b', 'locked.txt': 'secret' });
    const locked = path.join(root, 'locked.txt');
    chmodSync(locked, 0o000);
    const runningAsRoot = process.getuid?.() === 0;
    const { docs, errors } = await collect([
      path.join(root, 'missing.txt'),
      path.join(root, 'data.csv'),
      locked,
      path.join(root, 'ok.txt'),
    ]);
    expect(docs.map((d) => d.id)).toEqual(runningAsRoot ? ['locked.txt', 'ok.txt'] : ['ok.txt']);
    expect(errors[0]).toMatchObject({ path: path.join(root, 'missing.txt') });
    expect(errors[0]!.message).toMatch(/ENOENT/);
    expect(errors[1]).toMatchObject({ path: path.join(root, 'data.csv') });
    expect(errors[1]!.message).toMatch(/unsupported/);
    if (!runningAsRoot) expect(errors[2]).toMatchObject({ path: locked });
  });
});
