/**
 * What an uploaded file may cost to read (issue 24): a DOCX or PDF decompression bomb is a 413 naming the file with the
 * server's memory as it was; a PDF of thousands of pages is refused by its page budget or stopped by its time budget;
 * a request that times out or whose client leaves stops its parse (the worker really stops) and gets its 504 when the
 * timeout fires, while parses queued behind it are still served; and a 2 MB Markdown upload leaves the event loop
 * free. The hostile files are built by scripts/lib/hostile-files.ts, which `npm run bench:upload-limits` uses too.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { deflateSync } from 'node:zlib';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FileLimitError, ParserThread, parseFile, type FileParseOptions } from '../src/ingest/formats/index.js';
import { startServer } from '../src/main.js';
import { startBlockProbe } from '../scripts/lib/event-loop.js';
import { docxBomb, flate, headingDenseMarkdown, minimalPdf, pageText, pdfBomb } from '../scripts/lib/hostile-files.js';
import { fixtureConfig } from './helpers/config.js';
import { docxFile, singleColumnPdf } from './helpers/documents.js';
import { readReply } from './helpers/http.js';

const MiB = 1024 * 1024;
const LIMITS: FileParseOptions = {
  maxParseMs: 1500,
  maxPdfPages: 50,
  maxPdfInflatedBytes: 4 * MiB,
  maxDocxInflatedBytes: 2 * MiB,
  maxDocxEntries: 100,
  maxOcrPages: 8,
};

// ---------------------------------------------------------------------------------------------- measuring

/** Resident set size of this process. */
const rss = () => process.memoryUsage.rss();

/** Peak RSS while `work` runs, sampled every 10 ms (the server runs in this process; its parser thread too). */
async function peakRssDuring<T>(work: () => Promise<T>): Promise<{ result: T; before: number; peak: number; after: number }> {
  const before = rss();
  let peak = before;
  const sampler = setInterval(() => (peak = Math.max(peak, rss())), 10);
  try {
    const result = await work();
    return { result, before, peak: Math.max(peak, rss()), after: rss() };
  } finally {
    clearInterval(sampler);
  }
}

/** CPU seconds this process (all its threads) uses during the next `ms`. */
async function cpuSecondsOver(ms: number): Promise<number> {
  const before = process.cpuUsage();
  await new Promise((resolve) => setTimeout(resolve, ms));
  const used = process.cpuUsage(before);
  return (used.user + used.system) / 1e6;
}

// ---------------------------------------------------------------------------------------------- servers

type Server = Awaited<ReturnType<typeof startServer>>;

async function serverWith(upload: Partial<FileParseOptions>, requestTimeoutMs: number): Promise<{ server: Server; base: string }> {
  const corpus = mkdtempSync(path.join(os.tmpdir(), 'parse-limits-corpus-'));
  writeFileSync(path.join(corpus, 'seed.md'), '# Seed\n\nA seed document about gardening.');
  const config = fixtureConfig({
    corpusDir: corpus,
    auth: { disabled: true },
    server: { rateLimit: { max: 0 }, requestTimeoutMs },
    documents: { checkpointIdleMs: 200, upload: { maxFileBytes: 20 * MiB, maxRequestBytes: 40 * MiB, ...upload } },
  });
  const server = await startServer(config, pino({ level: 'silent' }));
  await server.ready;
  return { server, base: `http://127.0.0.1:${server.port}` };
}

type Part = { name: string; bytes: Uint8Array | string; type?: string };

async function upload(base: string, parts: Part[], signal?: AbortSignal) {
  const form = new FormData();
  for (const p of parts) form.append('files', new Blob([p.bytes], { type: p.type ?? 'application/octet-stream' }), p.name);
  return readReply(
    await fetch(`${base}/v1/documents/files`, { method: 'POST', body: form, signal: signal ?? AbortSignal.timeout(60_000) }),
  );
}

// ---------------------------------------------------------------------------------------------- tests

describe('file parse limits on the upload route', () => {
  let limited: { server: Server; base: string };
  beforeAll(async () => {
    limited = await serverWith(LIMITS, 60_000);
    // The parser thread starts on first use; start it so its own memory is not counted against a bomb.
    expect((await upload(limited.base, [{ name: 'warm.md', bytes: '# Warm\n\nup' }])).status).toBe(200);
  });
  afterAll(async () => {
    await limited?.server.close();
  });

  it('a DOCX zip bomb is a 413 naming the file, nothing is written and memory stays where it was', async () => {
    for (const [name, bytes] of [
      ['bomb.docx', docxBomb(32 * MiB)],
      // The central directory may lie: the cap holds while inflating.
      ['liar.docx', docxBomb(32 * MiB, 1000)],
    ] as const) {
      expect(bytes.length).toBeLessThan(200_000);
      const {
        result: reply,
        before,
        peak,
      } = await peakRssDuring(() =>
        upload(limited.base, [
          { name: 'ok.md', bytes: '# Fine\n\ntext' },
          { name, bytes },
        ]),
      );
      expect(reply.status, reply.text).toBe(413);
      expect(reply.json.error.message).toContain(`files.1 ("${name}")`);
      expect(reply.json.error).toMatchObject({ code: 'payload_too_large', field: 'files.1' });
      expect(reply.json.error.message).toMatch(/maxDocxInflatedBytes/);
      expect(peak - before, `RSS ${Math.round(before / MiB)} → peak ${Math.round(peak / MiB)} MiB`).toBeLessThan(96 * MiB);
      // The request failed whole: the good file beside the bomb was not written either.
      expect((await fetch(`${limited.base}/v1/documents/ok.md`)).status).toBe(404);
    }
    const crowded = await upload(limited.base, [{ name: 'crowded.docx', bytes: docxBomb(10, undefined, 200) }]);
    expect(crowded.status).toBe(413);
    expect(crowded.json.error.message).toMatch(/crowded\.docx.*entries/);
    // An ordinary DOCX within the limits is read as before.
    const fine = await upload(limited.base, [
      { name: 'fine.docx', bytes: await docxFile([{ heading: 1, text: 'Setup' }, { text: 'Install the moraine toolkit.' }]) },
    ]);
    expect(fine.json.documents, fine.text).toEqual([{ id: 'fine.docx', status: 'added', passages: 1 }]);
  });

  it('a PDF whose compressed stream inflates past the cap is a 413 naming it; images do not count', async () => {
    const bomb = pdfBomb(32 * MiB);
    expect(bomb.length).toBeLessThan(200_000);
    const { result: reply, before, peak } = await peakRssDuring(() => upload(limited.base, [{ name: 'bomb.pdf', bytes: bomb }]));
    expect(reply.status, reply.text).toBe(413);
    expect(reply.json.error.message).toMatch(/files\.0 \("bomb\.pdf"\).*maxPdfInflatedBytes/);
    expect(peak - before, `RSS ${Math.round(before / MiB)} → peak ${Math.round(peak / MiB)} MiB`).toBeLessThan(96 * MiB);
    // A large image inflates past the cap, but text extraction never decodes it; pdf-lib's compressed output is fine.
    const image = {
      dict: ' /Type /XObject /Subtype /Image /Width 2048 /Height 2048 /ColorSpace /DeviceRGB /BitsPerComponent 8 /Filter /FlateDecode',
      data: deflateSync(Buffer.alloc(6 * MiB)),
    };
    const withImage = minimalPdf(2, (n) => flate(pageText(n)), [image]);
    const pdfLib = await singleColumnPdf([['Volcanoes erupt.'], ['Glaciers carve valleys.']], 'Landforms');
    const fine = await upload(limited.base, [
      { name: 'image.pdf', bytes: withImage },
      { name: 'lib.pdf', bytes: pdfLib },
    ]);
    expect(fine.json.documents, fine.text).toEqual([
      { id: 'image.pdf', status: 'added', passages: 1 },
      { id: 'lib.pdf', status: 'added', passages: 1 },
    ]);
  });

  it('a PDF over the page budget is a 413 naming it, answered before any page is read', async () => {
    const started = performance.now();
    const reply = await upload(limited.base, [{ name: 'long.pdf', bytes: minimalPdf(5000) }]);
    expect(reply.status, reply.text).toBe(413);
    expect(reply.json.error.message).toMatch(/files\.0 \("long\.pdf"\).*5000 pages.*at most 50/);
    expect(performance.now() - started).toBeLessThan(3000);
  });

  it('a 2 MB Markdown upload never holds the event loop for more than ~50 ms', async () => {
    const file: Part = { name: 'handbook.md', bytes: headingDenseMarkdown(2_000_000), type: 'text/markdown' };
    // The parse itself runs on the parser thread and takes seconds (markdown-it and the HTML reader): this test is
    // about the event loop, so the file gets the product's default parse budget rather than the 1.5 s above.
    const roomy = await serverWith({ ...LIMITS, maxParseMs: 30_000 }, 60_000);
    const first = await upload(roomy.base, [file]);
    expect(first.json.documents, first.text.slice(0, 300)).toEqual([{ id: 'handbook.md', status: 'added', passages: expect.any(Number) }]);
    // The same file again: parsed, hashed and found unchanged, all of it upload-route work (no chunking or writing).
    let polling = true;
    let slowestHealthz = 0;
    const poller = (async () => {
      while (polling) {
        const started = performance.now();
        await (await fetch(`${roomy.base}/healthz`)).text();
        slowestHealthz = Math.max(slowestHealthz, performance.now() - started);
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
    })();
    // Main thread only: the parser thread's CPU is not the event loop's.
    const probe = startBlockProbe({ mainThreadOnly: true });
    const again = await upload(roomy.base, [file]);
    const longestMs = probe.stop().maxBlockCpuMs;
    polling = false;
    await poller;
    expect(again.json.documents).toEqual([{ id: 'handbook.md', status: 'unchanged', passages: expect.any(Number) }]);
    await roomy.server.close();
    expect(
      longestMs,
      `longest main-thread block ${longestMs.toFixed(0)} ms; slowest /healthz ${slowestHealthz.toFixed(0)} ms`,
    ).toBeLessThan(50);
  }, 120_000);
});

describe('cancelling a parse', () => {
  let slow: { server: Server; base: string };
  // 20,000 pages: minutes of pdf.js, far past this server's 3 s request timeout.
  const longPdf = minimalPdf(20_000);
  beforeAll(async () => {
    slow = await serverWith({ maxPdfPages: 1_000_000, maxParseMs: 600_000 }, 3000);
    expect((await upload(slow.base, [{ name: 'warm.md', bytes: '# Warm\n\nup' }])).status).toBe(200);
  });
  afterAll(async () => {
    await slow?.server.close();
  });

  it('a request that times out gets its 504 when the timeout fires and its parse stops; queued parses are served', async () => {
    expect(longPdf.length).toBeLessThan(4 * MiB);
    const started = performance.now();
    const timedOut = upload(slow.base, [{ name: 'long.pdf', bytes: longPdf }]);
    // Sent while the PDF parses: it waits in the parser's queue and must still be served (by a new worker).
    await new Promise((resolve) => setTimeout(resolve, 2000));
    const queued = upload(slow.base, [{ name: 'after.md', bytes: '# After\n\nA note about eskers.' }]);
    const reply = await timedOut;
    const ms = performance.now() - started;
    expect(reply.status, reply.text).toBe(504);
    expect(ms).toBeLessThan(5000);
    const next = await queued;
    expect(next.json.documents, next.text).toEqual([{ id: 'after.md', status: 'added', passages: 1 }]);
    // The worker was stopped, not left parsing: the process is close to idle.
    expect(await cpuSecondsOver(1500)).toBeLessThan(0.6);
    expect((await fetch(`${slow.base}/v1/documents/long.pdf`)).status).toBe(404);
  });

  it('a client that goes away stops its parse', async () => {
    const controller = new AbortController();
    const gone = upload(slow.base, [{ name: 'long.pdf', bytes: longPdf }], controller.signal).catch((err: Error) => err);
    await new Promise((resolve) => setTimeout(resolve, 700));
    controller.abort();
    expect(await gone).toBeInstanceOf(Error);
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(await cpuSecondsOver(1500)).toBeLessThan(0.6);
    const next = await upload(slow.base, [{ name: 'later.md', bytes: '# Later\n\nA note about drumlins.' }]);
    expect(next.json.documents, next.text).toEqual([{ id: 'later.md', status: 'added', passages: 1 }]);
  });
});

describe('ParserThread budgets', () => {
  it('stops a parse at its time budget with a 422-kind error and serves the next one on a fresh worker', async () => {
    const thread = new ParserThread();
    try {
      const long = thread.parse(minimalPdf(20_000), 'long.pdf', 'pdf', { ...LIMITS, maxPdfPages: 1_000_000, maxParseMs: 1000 });
      const next = thread.parse(new TextEncoder().encode('# Next\n\ntext'), 'next.md', 'markdown', LIMITS);
      const err = await long.catch((e: unknown) => e);
      expect(err).toBeInstanceOf(FileLimitError);
      expect((err as FileLimitError).status).toBe(422);
      expect((err as Error).message).toMatch(/longer than 1000 ms/);
      expect((await next).title).toBe('Next');
    } finally {
      await thread.close();
    }
  });

  it('an aborted signal rejects with its reason at once, queued or running', async () => {
    const thread = new ParserThread();
    try {
      const controller = new AbortController();
      const running = thread.parse(
        minimalPdf(20_000),
        'long.pdf',
        'pdf',
        { ...LIMITS, maxPdfPages: 1_000_000, maxParseMs: 600_000 },
        controller.signal,
      );
      const queued = thread.parse(new TextEncoder().encode('# Queued'), 'queued.md', 'markdown', LIMITS, controller.signal);
      const other = thread.parse(new TextEncoder().encode('# Other'), 'other.md', 'markdown', LIMITS);
      await new Promise((resolve) => setTimeout(resolve, 500));
      const reason = new Error('client went away');
      const aborted = performance.now();
      controller.abort(reason);
      await expect(running).rejects.toBe(reason);
      await expect(queued).rejects.toBe(reason);
      expect(performance.now() - aborted).toBeLessThan(100);
      expect((await other).title).toBe('Other');
    } finally {
      await thread.close();
    }
  });
});

describe('parse limits without a server', () => {
  it('count every layer of a chain of FlateDecode filters, find every stream, and refuse a PDF /DL over the cap before inflating', async () => {
    const inner = deflateSync(Buffer.alloc(16 * MiB, 0x20), { level: 9 });
    const chained = minimalPdf(1, (n) => ({ dict: ' /Filter [/FlateDecode /FlateDecode]', data: deflateSync(deflateSync(pageText(n))) }), [
      { dict: ' /Filter [/FlateDecode /FlateDecode]', data: deflateSync(inner) },
    ]);
    await expect(parseFile(chained, 'chained.pdf', 'pdf', LIMITS)).rejects.toThrow(/maxPdfInflatedBytes/);
    // Bytes in one stream that look like its end and an open string cannot hide the next object's bomb.
    const decoy = { dict: '', data: Buffer.from('q Q endstream endobj ( an unterminated string') };
    const hidden = minimalPdf(1, (n) => flate(Buffer.concat([pageText(n), Buffer.alloc(16 * MiB, 0x20)])), [decoy]);
    await expect(parseFile(hidden, 'hidden.pdf', 'pdf', LIMITS)).rejects.toThrow(/maxPdfInflatedBytes/);
    const declared = minimalPdf(1, (n) => ({ ...flate(pageText(n)), dict: ` /Filter /FlateDecode /DL ${64 * MiB}` }));
    await expect(parseFile(declared, 'declared.pdf', 'pdf', LIMITS)).rejects.toThrow(FileLimitError);
    // Within the limits the same kinds of file read as before; without limits (the operator's own files) nothing is capped.
    const fine = minimalPdf(3, (n) => flate(pageText(n)));
    expect((await parseFile(fine, 'fine.pdf', 'pdf', LIMITS)).text).toBe(
      'Page 1 is about moraines\n\nPage 2 is about moraines\n\nPage 3 is about moraines',
    );
    expect((await parseFile(docxBomb(3 * MiB), 'trusted.docx', 'docx')).text).toBe('Bomb text');
  });
});
