/**
 * PDF, DOCX, Markdown and HTML documents: text in reading order, page ranges and heading paths per passage, unreadable
 * files reported with the reason and counted, unsupported files counted by extension. Files are generated with real
 * writer libraries (test/helpers/documents.ts).
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ParserThread, ingestPaths, locateSpan, parseFile, titleWithSection, UnreadableFileError } from '../src/ingest/index.js';
import { Embedder } from '../src/models/index.js';
import type { PassageRecord } from '../src/store/index.js';
import { docxFile, encryptedPdf, imageOnlyPdf, sentences, singleColumnPdf, twoColumnPdf } from './helpers/documents.js';
import { BERT_TINY, FIXTURES_DIR } from './helpers/fixtures.js';
import { ingestOptions, openTestStore } from './helpers/store.js';

const TMP = mkdtempSync(path.join(os.tmpdir(), 'documents-'));
afterAll(() => rmSync(TMP, { recursive: true, force: true }));

async function unreadable(bytes: Uint8Array, name: string, format: 'pdf' | 'docx' | 'text'): Promise<string> {
  try {
    await parseFile(bytes, name, format);
  } catch (err) {
    expect(err).toBeInstanceOf(UnreadableFileError);
    return (err as Error).message;
  }
  throw new Error(`${name} was read`);
}

describe('PDF', () => {
  it('reads text per page with page spans, joins words hyphenated at line ends, and takes the title from the metadata', async () => {
    const bytes = await singleColumnPdf(
      [
        ['Fusion-in-decoder readers encode every pas-', 'sage separately.', 'Then they decode over all of them.'],
        ['The second page talks about cross-attention.'],
        [],
        ['Page four closes the report.'],
      ],
      'Reader report',
    );
    const parsed = await parseFile(bytes, 'report.pdf', 'pdf');
    expect(parsed.title).toBe('Reader report');
    expect(parsed.metadata).toEqual({ pages: 4 });
    expect(parsed.text).toContain('encode every passage separately.');
    // A hyphen inside a compound at a line's end before a capital letter stays.
    expect(parsed.text).toContain('Fusion-in-decoder');
    const pages = parsed.layout!.pages!;
    expect(pages.map((p) => p.page)).toEqual([1, 2, 4]);
    for (const p of pages) expect(parsed.text.slice(p.start, p.end)).not.toMatch(/^\s|\s$/);
    expect(parsed.text.slice(pages[1]!.start, pages[1]!.end)).toBe('The second page talks about cross-attention.');
    expect(parsed.text.slice(pages[2]!.start, pages[2]!.end)).toBe('Page four closes the report.');
  });

  it('reads two columns column by column, with a full-width heading first, although the file draws them interleaved', async () => {
    const left = ['Left column opens the story', 'and continues on the left', 'until the left side ends.'];
    const right = ['Right column picks it up', 'and carries on at the right', 'to the very end.'];
    const footer = 'A footer line that runs across the whole width of the page, under both columns of text.';
    const parsed = await parseFile(await twoColumnPdf('Two Column Heading', left, right, footer), 'columns.pdf', 'pdf');
    const order = ['Two Column Heading', ...left, ...right, footer].map((line) => parsed.text.indexOf(line));
    expect(order.every((i) => i >= 0), parsed.text).toBe(true);
    expect([...order].sort((a, b) => a - b)).toEqual(order);
  });

  it('refuses encrypted, image-only and damaged PDFs with the reason', async () => {
    expect(await unreadable(await encryptedPdf(), 'secret.pdf', 'pdf')).toMatch(/encrypted/);
    expect(await unreadable(await imageOnlyPdf(3), 'scan.pdf', 'pdf')).toMatch(/no text layer in 3 page\(s\).*image-only/);
    const valid = await singleColumnPdf([['Some text.']]);
    expect(await unreadable(valid.subarray(0, valid.length / 3), 'cut.pdf', 'pdf')).toMatch(/not a readable PDF/);
    expect(await unreadable(new TextEncoder().encode('just text pretending'), 'fake.pdf', 'pdf')).toMatch(/not a readable PDF/);
  });
});

describe('sections', () => {
  it('DOCX headings (via mammoth and the HTML path) give heading paths', async () => {
    const bytes = await docxFile([
      { heading: 1, text: 'Install' },
      { text: 'Download the package.' },
      { heading: 2, text: 'Linux' },
      { text: 'Use the apt repository.' },
      { heading: 3, text: 'Debian' },
      { text: 'Debian needs the backports.' },
      { heading: 2, text: 'macOS' },
      { text: 'Use Homebrew.' },
      { heading: 1, text: 'Usage' },
      { text: 'Start the server.' },
    ]);
    const parsed = await parseFile(bytes, 'guide.docx', 'docx');
    expect(parsed.title).toBe('Install');
    const at = (needle: string) =>
      locateSpan(parsed.layout, parsed.text.indexOf(needle), parsed.text.indexOf(needle) + needle.length).section;
    expect(at('Download the package.')).toEqual(['Install']);
    expect(at('Use the apt repository.')).toEqual(['Install', 'Linux']);
    expect(at('Debian needs the backports.')).toEqual(['Install', 'Linux', 'Debian']);
    expect(at('Use Homebrew.')).toEqual(['Install', 'macOS']);
    expect(at('Start the server.')).toEqual(['Usage']);
    expect(await unreadable(new TextEncoder().encode('not a zip'), 'broken.docx', 'docx')).toMatch(/not a readable DOCX/);
  });

  it('Markdown ATX and setext headings give heading paths; "#" lines in fenced code do not', async () => {
    const md = '# Guide\n\nIntro.\n\n## Install\n\nSteps.\n\n```sh\n# a comment, not a heading\n```\n\nAfter code.\n\nLinux\n-----\n\nApt.\n\n# Usage\n\nRun.';
    const parsed = await parseFile(new TextEncoder().encode(md), 'guide.md', 'markdown');
    const at = (needle: string) => locateSpan(parsed.layout, md.indexOf(needle), md.indexOf(needle) + needle.length).section;
    expect(at('Intro.')).toEqual(['Guide']);
    expect(at('After code.')).toEqual(['Guide', 'Install']);
    expect(at('Apt.')).toEqual(['Guide', 'Linux']);
    expect(at('Run.')).toEqual(['Usage']);
  });

  it('HTML headings give heading paths; markup in headings is text', async () => {
    const html = '<html><body><h1>Manual</h1><p>One.</p><h2>Setup <em>fast</em></h2><p>Two.</p><h3>Linux</h3><p>Three.</p><h2>Use</h2><p>Four.</p></body></html>';
    const parsed = await parseFile(new TextEncoder().encode(html), 'manual.html', 'html');
    expect(parsed.text).not.toMatch(/[\u0002-\u0005]/);
    const at = (needle: string) =>
      locateSpan(parsed.layout, parsed.text.indexOf(needle), parsed.text.indexOf(needle) + needle.length).section;
    expect(at('One.')).toEqual(['Manual']);
    expect(at('Two.')).toEqual(['Manual', 'Setup fast']);
    expect(at('Three.')).toEqual(['Manual', 'Setup fast', 'Linux']);
    expect(at('Four.')).toEqual(['Manual', 'Use']);
    expect(titleWithSection('Manual', ['Setup fast', 'Linux'])).toBe('Manual › Setup fast › Linux');
    expect(titleWithSection('Manual', ['Manual', 'Setup fast'])).toBe('Manual › Setup fast');
    expect(titleWithSection('Manual', ['Manual'])).toBe('Manual');
    expect(titleWithSection('', ['Setup'])).toBe('Setup');
  });
});

describe('parsing on a worker thread (uploads)', () => {
  it('gives the same result as parsing in-process, keeps the event loop free, and reports unreadable files', async () => {
    const blocks = Array.from({ length: 1200 }, (_, i) => [
      { heading: 2 as const, text: `Part ${i}` },
      { text: `Paragraph ${i} of a long manual.` },
    ]).flat();
    const bytes = await docxFile(blocks);
    const thread = new ParserThread();
    try {
      let last = performance.now();
      let maxGap = 0;
      const ticker = setInterval(() => {
        const now = performance.now();
        maxGap = Math.max(maxGap, now - last);
        last = now;
      }, 5);
      const started = performance.now();
      const threaded = await thread.parse(bytes, 'manual.docx', 'docx');
      const ms = performance.now() - started;
      clearInterval(ticker);
      // Seconds of mammoth's synchronous work happened elsewhere: this thread kept ticking.
      expect(maxGap, `parse took ${ms.toFixed(0)} ms`).toBeLessThan(1000);
      expect(threaded).toEqual(await parseFile(bytes, 'manual.docx', 'docx'));
      await expect(thread.parse(await encryptedPdf(), 'secret.pdf', 'pdf')).rejects.toThrow(UnreadableFileError);
      expect((await thread.parse(new TextEncoder().encode('# A\n\nb'), 'a.md', 'markdown')).title).toBe('A');
    } finally {
      await thread.close();
    }
  });
});

describe('text encodings', () => {
  it('decodes UTF-16 with a byte-order mark (both byte orders) and UTF-8 with one', async () => {
    const text = 'Grüße — UTF-16 text ✓';
    const le = Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from(text, 'utf16le')]);
    const be = Buffer.from(le.subarray(2)).swap16();
    expect((await parseFile(le, 'le.txt', 'text')).text).toBe(text);
    expect((await parseFile(Buffer.concat([Buffer.from([0xfe, 0xff]), be]), 'be.txt', 'text')).text).toBe(text);
    expect((await parseFile(Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from(text)]), 'bom.md', 'markdown')).text).toBe(text);
  });

  it('other encodings get a message saying what the bytes are', async () => {
    expect(await unreadable(Buffer.from('Grüße aus Köln', 'latin1'), 'latin1.txt', 'text')).toMatch(/not valid UTF-8 \(byte 0xfc at offset 2\)/);
    expect(await unreadable(Buffer.from('no byte order mark', 'utf16le'), 'utf16.txt', 'text')).toMatch(/UTF-16 without a byte-order mark/);
  });
});

describe('ingesting a folder of documents', () => {
  let embedder: Embedder;
  beforeAll(async () => {
    embedder = await Embedder.load(BERT_TINY, { modelsDir: FIXTURES_DIR, allowRemote: false, quantized: false, batchSize: 16 });
  });

  it('passages carry page ranges and heading paths; unreadable files are errors, unsupported ones counted by extension', async () => {
    const root = mkdtempSync(path.join(TMP, 'folder-'));
    const write = (rel: string, bytes: Uint8Array | string) => {
      mkdirSync(path.dirname(path.join(root, rel)), { recursive: true });
      writeFileSync(path.join(root, rel), bytes);
    };
    const pageLines = (topic: string) => sentences(topic, 30).flatMap((s) => [s.slice(0, 40), s.slice(40)]);
    write('long.pdf', await singleColumnPdf([pageLines('rivers'), pageLines('lakes'), pageLines('glaciers')], 'Water'));
    write('guide.docx', await docxFile([{ heading: 1, text: 'Install' }, { heading: 2, text: 'Linux' }, { text: sentences('apt', 3).join(' ') }]));
    write('notes/readme.md', '# Notes\n\n## Part A\n\nSome notes on part A.');
    write('scan.pdf', await imageOnlyPdf());
    write('secret.pdf', await encryptedPdf());
    write('photo.png', 'not really a png');
    write('sheet.xlsx', 'x');
    write('more/other.xlsx', 'x');
    write('Makefile', 'all:');

    const store = await openTestStore(path.join(TMP, `index-${Date.now()}`), { embedModel: embedder.modelId, dim: embedder.dim });
    try {
      const summary = await ingestPaths([root], ingestOptions(store, embedder, { chunk: { maxTokens: 64, overlapTokens: 8 } }));
      expect(summary.added).toBe(3);
      expect(summary.unsupported).toEqual({ '.png': 1, '.xlsx': 2, '(none)': 1 });
      expect(summary.errors.map((e) => [path.basename(e.path), e.message])).toEqual([
        ['scan.pdf', expect.stringMatching(/image-only/)],
        ['secret.pdf', expect.stringMatching(/encrypted/)],
      ]);
      expect(await store.getDocument('scan.pdf')).toBeUndefined();

      const pdfPassages: PassageRecord[] = await store.passagesOfDocument('long.pdf');
      expect(pdfPassages.length).toBeGreaterThan(3);
      expect((await store.getDocument('long.pdf'))!.metadata).toEqual({ format: 'pdf', pages: 3 });
      for (const p of pdfPassages) {
        expect(p.pageStart).toBeGreaterThanOrEqual(1);
        expect(p.pageEnd).toBeGreaterThanOrEqual(p.pageStart!);
        expect(p.pageEnd).toBeLessThanOrEqual(3);
        const topics = ['rivers', 'lakes', 'glaciers'].filter((t) => p.text.includes(t));
        // A passage's pages are exactly the pages whose topic it mentions.
        expect(topics).toEqual(['rivers', 'lakes', 'glaciers'].slice(p.pageStart! - 1, p.pageEnd!));
      }
      expect(new Set(pdfPassages.map((p) => p.pageStart))).toEqual(new Set([1, 2, 3]));
      expect(pdfPassages.some((p) => p.pageEnd! > p.pageStart!)).toBe(true);

      expect((await store.passagesOfDocument('guide.docx')).map((p) => p.section)).toEqual([['Install', 'Linux']]);
      expect((await store.passagesOfDocument('notes/readme.md')).map((p) => p.section)).toEqual([['Notes', 'Part A']]);
      expect((await store.verify()).ok).toBe(true);
    } finally {
      await store.close();
    }
  });
});
