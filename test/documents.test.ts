/**
 * PDF, DOCX, Markdown and HTML documents: text in reading order, page ranges and heading paths per passage, unreadable
 * files reported with the reason and counted, unsupported files counted by extension. Files are generated with real
 * writer libraries (test/helpers/documents.ts).
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  ParserThread,
  chunkDocument,
  fileToDocument,
  ingestPaths,
  locatePassages,
  locateSpan,
  parseFile,
  parseMarkdown,
  titleWithSection,
  UnreadableFileError,
} from '../src/ingest/index.js';
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
    expect(
      order.every((i) => i >= 0),
      parsed.text,
    ).toBe(true);
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
    const md =
      '# Guide\n\nIntro.\n\n## Install\n\nSteps.\n\n```sh\n# a comment, not a heading\n```\n\nAfter code.\n\nLinux\n-----\n\nApt.\n\n# Usage\n\nRun.';
    const parsed = await parseFile(new TextEncoder().encode(md), 'guide.md', 'markdown');
    expect(parsed.text).toBe(
      'Guide\n\nIntro.\n\nInstall\n\nSteps.\n\n# a comment, not a heading\n\nAfter code.\n\nLinux\n\nApt.\n\nUsage\n\nRun.',
    );
    const at = (needle: string) =>
      locateSpan(parsed.layout, parsed.text.indexOf(needle), parsed.text.indexOf(needle) + needle.length).section;
    expect(at('Intro.')).toEqual(['Guide']);
    expect(at('After code.')).toEqual(['Guide', 'Install']);
    expect(at('Apt.')).toEqual(['Guide', 'Linux']);
    expect(at('Run.')).toEqual(['Usage']);
    // Every section starts at its heading's text in the text the passages are cut from.
    for (const { start, path } of parsed.layout!.sections!) expect(parsed.text.slice(start)).toMatch(new RegExp(`^${path.at(-1)}\n`));
  });

  it('a passage is labelled with the section it starts in, however many headings it runs on through', async () => {
    const md =
      '# Garden guide\n\nA guide to a small garden.\n\n## Tomatoes\n\nTomatoes want sun. Stake them early.\n\n## Compost\n\nTurn the heap every month. Keep it damp.';
    const doc = await fileToDocument(new TextEncoder().encode(md), 'garden.md', 'markdown', 'garden.md');
    const words = (text: string) => text.split(/\s+/).filter(Boolean).length;
    const passages = (maxTokens: number) => locatePassages(chunkDocument(doc, words, { maxTokens, overlapTokens: 0 }), doc.layout);

    // One passage over all three sections, most of its characters under "Compost": it starts under "Garden guide".
    const [whole, ...none] = passages(200);
    expect(none).toEqual([]);
    expect(whole!.text).toBe(
      'Garden guide\n\nA guide to a small garden.\n\nTomatoes\n\nTomatoes want sun. Stake them early.\n\nCompost\n\nTurn the heap every month. Keep it damp.',
    );
    expect(whole!.section).toEqual(['Garden guide']);
    expect(titleWithSection(doc.title, whole!.section)).toBe('Garden guide');

    // Smaller passages: each one's first character decides, also for the one that runs on into "Compost".
    const small = passages(8);
    expect(small.map((p) => [p.text, p.section])).toEqual([
      ['Garden guide\n\nA guide to a small garden.', ['Garden guide']],
      ['Tomatoes\n\nTomatoes want sun. Stake them early.\n\nCompost', ['Garden guide', 'Tomatoes']],
      ['Turn the heap every month. Keep it damp.', ['Garden guide', 'Compost']],
    ]);
    expect(titleWithSection(doc.title, small[1]!.section)).toBe('Garden guide › Tomatoes');

    // A span that starts in the blank lines before a heading starts in that heading's section (given its text).
    const blank = doc.text.indexOf('\n\nTomatoes');
    const end = doc.text.indexOf(' want');
    expect(locateSpan(doc.layout, blank, end, doc.text.slice(blank, end)).section).toEqual(['Garden guide', 'Tomatoes']);
    expect(locateSpan(doc.layout, blank, end).section).toEqual(['Garden guide']);
    expect(locateSpan(doc.layout, blank, blank + 2, '\n\n').section).toEqual(['Garden guide']);
    expect(locateSpan(doc.layout, blank, blank).section).toBeUndefined();
  });

  it('Markdown passages read like the same content in HTML: no heading markers, no inline markup, code verbatim', async () => {
    const md = [
      '# Garden guide',
      '',
      'Plant **early**, water *often*, run `soil-test` and read the [notes](https://example.com/notes "Notes").',
      '',
      '## Tomatoes ##',
      '',
      'Stake them ~~weekly~~ daily; see <https://example.com/t>.',
      '',
      '```sh',
      '# not a heading',
      '  keep *this* and `that`',
      '```',
      '',
      'Compost',
      '=======',
      '',
      'Turn the heap.',
    ].join('\n');
    const html = [
      '<h1>Garden guide</h1>',
      '<p>Plant <strong>early</strong>, water <em>often</em>, run <code>soil-test</code> and read the <a href="https://example.com/notes">notes</a>.</p>',
      '<h2>Tomatoes</h2>',
      '<p>Stake them <del>weekly</del> daily; see <a href="https://example.com/t">https://example.com/t</a>.</p>',
      '<pre><code># not a heading\n  keep *this* and `that`\n</code></pre>',
      '<h1>Compost</h1>',
      '<p>Turn the heap.</p>',
    ].join('\n');
    const fromMd = await parseFile(new TextEncoder().encode(md), 'garden.md', 'markdown');
    const fromHtml = await parseFile(new TextEncoder().encode(html), 'garden.html', 'html');
    expect(fromMd.text).toBe(fromHtml.text);
    expect(fromMd.layout).toEqual(fromHtml.layout);
    expect(fromMd.title).toBe('Garden guide');
  });

  it('Markdown lists, quotes and tables read as the HTML reader reads them; references, images, markup and escapes are resolved', async () => {
    const md = [
      'Intro before any heading, with snake_case_names, 2 * 3, ~60 and window.__xss = 1.',
      '',
      '## Usage of `rag` *now*',
      '',
      '- **k** (`retrieval.rrfK`, default 60)',
      '1. see [the docs][docs] or [docs]',
      '> quoted _text_ with \\*stars\\*',
      '',
      '| Mode | Good at |',
      '| --- | :-: |',
      '| `bm25` | rare \\| words |',
      '',
      '![diagram](d.png)',
      '',
      '* * *',
      '',
      'Inline <b>HTML</b> and <img src="x" alt="a_b_c"> stay as written.',
      '',
      '    indented *code*',
      '',
      '[docs]: https://example.com/docs',
    ].join('\n');
    const parsed = await parseFile(new TextEncoder().encode(md), 'usage.md', 'markdown');
    // What the HTML reader gives for the rendered Markdown: list markers as it writes them, a table row per line.
    expect(parsed.text).toBe(
      [
        'Intro before any heading, with snake_case_names, 2 * 3, ~60 and window.__xss = 1.',
        '',
        'Usage of rag now',
        '',
        ' * k (retrieval.rrfK, default 60)',
        '',
        ' 1. see the docs or docs',
        '',
        '> quoted text with *stars*',
        '',
        'Mode | Good at',
        'bm25 | rare | words',
        '',
        '-'.repeat(40),
        '',
        'Inline HTML and stay as written.',
        '',
        'indented *code*',
      ].join('\n'),
    );
    expect(parsed.title).toBe('Usage of rag now');
    expect(parsed.layout!.sections).toEqual([{ start: parsed.text.indexOf('Usage of rag now'), path: ['Usage of rag now'] }]);
    expect(locateSpan(parsed.layout, 0, 5).section).toBeUndefined();
  });

  it('Markdown costs time linear in the text, also for lines of unclosed links, brackets and delimiters', async () => {
    const hostile: Array<(n: number) => string> = [
      (n) => '[a](b'.repeat(n),
      (n) => '['.repeat(n) + '](x)'.repeat(n),
      (n) => '*a _b ~~c '.repeat(n),
      (n) => Array.from({ length: n }, (_, i) => '`'.repeat((i % 40) + 1) + 'x').join(''),
      (n) => '<http:a <a b'.repeat(n),
      (n) => '# ' + ' #'.repeat(n) + 'x',
      (n) => '## Heading\n\nText *with* **markup**, `code` and [a](link).\n\n'.repeat(n),
    ];
    const ms = (text: string) => {
      let best = Infinity;
      for (let i = 0; i < 5; i++) {
        const started = performance.now();
        parseMarkdown(text, 'x');
        best = Math.min(best, performance.now() - started);
      }
      return best;
    };
    for (const make of hostile) {
      ms(make(10_000));
      const small = ms(make(10_000));
      const large = ms(make(50_000));
      // 5x the text: linear work takes ~5x as long (measured 4-5x alone), quadratic ~25x; the margin is for a
      // loaded machine (the whole suite beside it), where GC pauses land unevenly on the two sizes.
      expect(large, `${make(2).slice(0, 40)}: ${small.toFixed(1)} ms, then ${large.toFixed(1)} ms`).toBeLessThan(Math.max(16 * small, 100));
    }
  });

  it('HTML headings give heading paths; markup in headings is text', async () => {
    const html =
      '<html><body><h1>Manual</h1><p>One.</p><h2>Setup <em>fast</em></h2><p>Two.</p><h3>Linux</h3><p>Three.</p><h2>Use</h2><p>Four.</p></body></html>';
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
    expect(await unreadable(Buffer.from('Grüße aus Köln', 'latin1'), 'latin1.txt', 'text')).toMatch(
      /not valid UTF-8 \(byte 0xfc at offset 2\)/,
    );
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
    write(
      'guide.docx',
      await docxFile([{ heading: 1, text: 'Install' }, { heading: 2, text: 'Linux' }, { text: sentences('apt', 3).join(' ') }]),
    );
    write('notes/readme.md', '# Notes\n\n## Part A\n\nSome notes on part A.');
    write('scan.pdf', await imageOnlyPdf());
    write('secret.pdf', await encryptedPdf());
    write('photo.gif', 'not really a gif');
    write('sheet.xlsx', 'x');
    write('more/other.xlsx', 'x');
    write('Makefile', 'all:');

    const store = await openTestStore(path.join(TMP, `index-${Date.now()}`), { embedModel: embedder.modelId, dim: embedder.dim });
    try {
      const summary = await ingestPaths([root], ingestOptions(store, embedder, { chunk: { maxTokens: 64, overlapTokens: 8 } }));
      expect(summary.added).toBe(3);
      expect(summary.unsupported).toEqual({ '.gif': 1, '.xlsx': 2, '(none)': 1 });
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

      // One passage each, starting at the top heading: labelled with the section it starts in.
      expect((await store.passagesOfDocument('guide.docx')).map((p) => p.section)).toEqual([['Install']]);
      expect((await store.passagesOfDocument('notes/readme.md')).map((p) => [p.text, p.section])).toEqual([
        ['Notes\n\nPart A\n\nSome notes on part A.', ['Notes']],
      ]);
      expect((await store.verify()).ok).toBe(true);
    } finally {
      await store.close();
    }
  });
});
