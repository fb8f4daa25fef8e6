import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import fc from 'fast-check';
import type { Browser, Page } from 'playwright-core';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { attentionMatrix, highlightSegments, normalizeToken, tokenWeights } from '../public/js/attention.js';
import { ApiError, describeError, parseRetryAfter } from '../public/js/errors.js';
import { SseParser } from '../public/js/sse.js';
import { startServer } from '../src/main.js';
import { CHROMIUM_PATH, hasChromium, launchChromium } from './helpers/browser.js';
import { fixtureConfig } from './helpers/config.js';
import { CROSS_ENCODER_TINY, REPO_ROOT } from './helpers/fixtures.js';

// ------------------------------------------------------------------------------------ page logic, no browser needed

describe('playground SSE parser', () => {
  const stream =
    'event: token\ndata: {"id":1,"text":" the","index":0}\n\n' +
    ': a comment line\r\n' +
    'event: token\r\ndata: {"id":2,"text":"\\n","index":1}\r\n\r\n' +
    'event: answer\ndata: {"answer":"x",\ndata: "n":2}\n\n';
  const expected = [
    { event: 'token', data: '{"id":1,"text":" the","index":0}' },
    { event: 'token', data: '{"id":2,"text":"\\n","index":1}' },
    { event: 'answer', data: '{"answer":"x",\n"n":2}' },
  ];

  it('yields the same events however the stream is split into chunks', () => {
    for (let a = 0; a <= stream.length; a++) {
      for (const b of [a, a + 1, a + 7, stream.length]) {
        const parser = new SseParser();
        const events = [
          ...parser.push(stream.slice(0, a)),
          ...parser.push(stream.slice(a, b)),
          ...parser.push(stream.slice(b)),
          ...parser.end(),
        ];
        expect(events, `split at ${a},${b}`).toEqual(expected);
      }
    }
  });

  it('keeps a CR at a chunk end until it knows whether LF follows', () => {
    const parser = new SseParser();
    expect(parser.push('data: 1\r')).toEqual([]);
    expect(parser.push('\n\r')).toEqual([]);
    expect(parser.push('\n')).toEqual([{ event: 'message', data: '1' }]);
  });

  it('flushes a last event that lacks its blank line, and ignores events without data', () => {
    const parser = new SseParser();
    expect(parser.push('event: ping\n\nevent: answer\ndata: {}')).toEqual([]);
    expect(parser.end()).toEqual([{ event: 'answer', data: '{}' }]);
  });
});

describe('playground error messages', () => {
  it('names a wrong or missing API key on 401', () => {
    expect(describeError(new ApiError(401, { code: 'unauthorized', message: 'missing bearer token' }, undefined))).toMatch(
      /wrong or missing API key/i,
    );
  });

  it('gives the retry time of 429 and 503 from Retry-After', () => {
    expect(describeError(new ApiError(429, { code: 'rate_limited', message: 'slow down' }, 7))).toMatch(/Retry in 7 seconds/);
    const busy = describeError(new ApiError(503, { code: 'queue_full', message: 'too many answers; retry later' }, 1));
    expect(busy).toMatch(/queue_full/);
    expect(busy).toMatch(/Retry in 1 second\./);
    expect(describeError(new ApiError(503, { code: 'not_ready', message: 'service is starting' }, undefined))).toMatch(/Retry later/);
  });

  it('names the rejected field of a 400 once', () => {
    const text = describeError(
      new ApiError(400, { code: 'invalid_request', message: 'k: Too big: expected number to be <=50', field: 'k' }, undefined),
    );
    expect(text).toBe('Invalid request: field "k" — Too big: expected number to be <=50');
  });

  it('tells stream errors, network failures and aborts apart', () => {
    expect(describeError(new ApiError(0, { code: 'timeout', message: 'answer not finished' }, undefined))).toMatch(
      /while it was being generated \(timeout\)/,
    );
    expect(describeError(new TypeError('Failed to fetch'))).toMatch(/Could not reach the server/);
    expect(describeError(Object.assign(new Error('aborted'), { name: 'AbortError' }))).toBe('Stopped.');
  });

  it('reads Retry-After as seconds or as an HTTP date', () => {
    const now = Date.parse('2025-01-01T00:00:00Z');
    expect(parseRetryAfter('120', now)).toBe(120);
    expect(parseRetryAfter(' 0 ', now)).toBe(0);
    expect(parseRetryAfter('Wed, 01 Jan 2025 00:00:30 GMT', now)).toBe(30);
    expect(parseRetryAfter('Tue, 31 Dec 2024 23:00:00 GMT', now)).toBe(0);
    expect(parseRetryAfter('soon', now)).toBeUndefined();
    expect(parseRetryAfter(null, now)).toBeUndefined();
  });
});

describe('playground attention highlighting', () => {
  it('matches tokens case-insensitively without the SentencePiece word-start mark', () => {
    expect(normalizeToken('\u2581Zebra')).toBe('zebra');
    const weights = tokenWeights([
      { token: '\u2581Zebras', weight: 0.2 },
      { token: 'the', weight: 0.05 },
      { token: '\u2581the', weight: 0.05 },
      { token: '\u2581', weight: 0.3 },
    ]);
    expect([...weights.entries()]).toEqual([
      ['zebras', 0.2],
      ['the', 0.1],
    ]);
    const segments = highlightSegments('The zebras cross. Zebras!', weights);
    expect(segments.filter((s) => s.weight !== undefined).map((s) => [s.text, s.weight])).toEqual([
      ['The', 0.1],
      ['zebras', 0.2],
      ['Zebras', 0.2],
    ]);
  });

  it('marks word pieces of three or more letters inside words, shorter pieces only as whole words', () => {
    const weights = tokenWeights([
      { token: 'bac', weight: 0.3 },
      { token: 'i', weight: 0.2 },
      { token: '.', weight: 0.1 },
    ]);
    const marked = highlightSegments('lactobacilli in i.', weights).filter((s) => s.weight !== undefined);
    expect(marked.map((s) => s.text)).toEqual(['bac', 'i', '.']);
  });

  it('never changes the text: the segments concatenate back to it', () => {
    const word = fc.stringMatching(/^[a-zA-Z\u00e9\u2581]{1,6}$/);
    fc.assert(
      fc.property(
        fc.array(fc.oneof(word, fc.constantFrom(' ', '. ', '\n', ', ', '<b>', '&amp;')), { maxLength: 30 }),
        fc.array(fc.record({ token: word, weight: fc.double({ min: 0, max: 1, noNaN: true }) }), { maxLength: 8 }),
        (parts, tokens) => {
          const text = parts.join('');
          const segments = highlightSegments(text, tokenWeights(tokens));
          expect(segments.map((s) => s.text).join('')).toBe(text);
          for (const s of segments) if (s.weight !== undefined) expect(s.text.length).toBeGreaterThan(0);
        },
      ),
    );
  });

  it('builds the answer-token × passage matrix, zero where a passage was not among the top ones', () => {
    const matrix = attentionMatrix(
      [
        {
          passages: [
            { passageIndex: 1, weight: 0.7 },
            { passageIndex: 0, weight: 0.3 },
          ],
        },
        { passages: [{ passageIndex: 2, weight: 0.9 }] },
      ],
      3,
    );
    expect(matrix).toEqual([
      [0.3, 0.7, 0],
      [0, 0, 0.9],
    ]);
  });
});

// --------------------------------------------------------------------------------------------- the page in Chromium

if (!hasChromium) {
  console.warn(`[playground.test] ${CHROMIUM_PATH} is missing: the browser tests are skipped (install Debian's chromium to run them).`);
}
// CI installs chromium (.ci/run); there a missing browser is a failure, not a skip.
it.runIf(process.env.CI === 'true')('chromium is installed in CI', () => {
  expect(hasChromium, `${CHROMIUM_PATH} missing in CI`).toBe(true);
});

const DOCS: Record<string, string> = {
  'zebras.md':
    '# Zebra migration\n\nEvery year zebras migrate across the Serengeti following the rains. The zebra herds travel with wildebeest.',
  'volcanoes.md': '# Volcanoes\n\nA volcano erupts when magma rises through the crust. Basalt lava flows are runny; andesite is sticky.',
  'bread.md': '# Sourdough bread\n\nSourdough is leavened by a starter of wild yeast and lactobacilli. The dough ferments overnight.',
  'chess.md': "# Chess openings\n\nThe Sicilian Defence answers 1.e4 with c5. The Queen's Gambit offers a pawn for central control.",
  'markup.md':
    // Code spans: Markdown's raw HTML is HTML (the reader keeps its text only), code is text, shown as written.
    '# `<b>Markup</b>` & tags\n\nThis note quotes `<img src="x" onerror="window.__xss = 1">` and `<script>window.__xss = 2</script>` as plain text.',
};

const QUESTION = 'When do zebras migrate?';
/** The attention marks in passage text; a `mark.answer-span` around the answer's span is not one of them. */
const ATTENTION_MARK = 'mark:not(.answer-span)';
const ASK = { k: 3, maxNewTokens: 6 };
const SCREENSHOT_DIR = path.join(REPO_ROOT, 'test-output');

interface AskBody {
  answer: string;
  citations: Array<{ passageId: string }>;
  passages: Array<{ passageId: string; text: string; attention: number }>;
  tokenAttention: Array<{
    token: string;
    passages: Array<{ passageIndex: number; weight: number; topTokens: Array<{ token: string; weight: number }> }>;
  }>;
}

describe.skipIf(!hasChromium)('playground page in Chromium', () => {
  let server: Awaited<ReturnType<typeof startServer>>;
  let browser: Browser;
  let page: Page;
  let base = '';
  let defaultCollection = '';
  const pageErrors: string[] = [];

  /** The same question asked directly, not streamed: greedy decoding is deterministic, so the page must match it. */
  async function askDirectly(question: string): Promise<AskBody> {
    const res = await fetch(`${base}/v1/ask`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ question, ...ASK }),
    });
    expect(res.status).toBe(200);
    return (await res.json()) as AskBody;
  }

  async function askInPage(question: string, k: string, maxNewTokens: string) {
    await page.click('#tab-ask');
    await page.fill('#question', question);
    await page.fill('#ask-k', k);
    await page.locator('#ask-form details.more summary').click();
    await page.fill('#ask-max-tokens', maxNewTokens);
    await page.locator('#ask-form details.more summary').click();
    await page.focus('#question');
    await page.keyboard.press('Enter');
  }

  async function alertText(): Promise<string> {
    await page.waitForSelector('[role="alert"][data-visible="true"]');
    return (await page.locator('[role="alert"]').textContent()) ?? '';
  }

  beforeAll(async () => {
    const corpus = mkdtempSync(path.join(os.tmpdir(), 'rag-playground-'));
    for (const [name, text] of Object.entries(DOCS)) writeFileSync(path.join(corpus, name), text);
    const config = fixtureConfig({ corpusDir: corpus, rerankModel: CROSS_ENCODER_TINY });
    defaultCollection = config.defaultCollection;
    server = await startServer(config, pino({ level: 'silent' }));
    base = `http://127.0.0.1:${server.port}`;
    await server.ready;
    browser = await launchChromium();
    page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    page.on('pageerror', (err) => pageErrors.push(err.message));
    page.on('console', (msg) => {
      // Chromium logs every non-2xx fetch; the error tests cause those on purpose.
      if (msg.type() === 'error' && !msg.text().startsWith('Failed to load resource')) pageErrors.push(msg.text());
    });
    mkdirSync(SCREENSHOT_DIR, { recursive: true });
  });

  afterAll(async () => {
    await browser?.close();
    await server?.close();
  });

  it('is served at / and shows the index status in the header', async () => {
    const res = await page.goto(`${base}/`);
    expect(res?.status()).toBe(200);
    await page.waitForSelector('#index-status[data-state="ready"]');
    expect(await page.textContent('#index-status')).toContain(defaultCollection);
    expect(await page.getAttribute('#tab-ask', 'aria-selected')).toBe('true');
  });

  it('streams the answer into one focusable span per token, with per-stage timings', async () => {
    const direct = await askDirectly(QUESTION);
    const response = page.waitForResponse((r) => r.url().endsWith('/v1/ask'));
    await askInPage(QUESTION, String(ASK.k), String(ASK.maxNewTokens));
    expect((await response).headers()['content-type']).toMatch(/text\/event-stream/);
    await page.waitForSelector('#answer[data-state="done"]');

    const spans = page.locator('#answer-text .tok');
    const texts = await spans.allTextContents();
    expect(texts.length).toBeGreaterThan(0);
    expect(texts.join('')).toBe(direct.answer);
    for (let i = 0; i < texts.length; i++) {
      expect(await spans.nth(i).getAttribute('data-index')).toBe(String(i));
      expect(await spans.nth(i).getAttribute('tabindex')).toBe(i === 0 ? '0' : '-1');
    }
    const stages = await page
      .locator('#timings .timing')
      .evaluateAll((items) =>
        items.map((item) => [item.getAttribute('data-stage'), Number(item.querySelector('dd')?.getAttribute('data-ms'))]),
      );
    expect(stages.map(([stage]) => stage)).toEqual(['retrieve', 'encode', 'decode', 'total']);
    for (const [, ms] of stages) expect(ms).toBeGreaterThanOrEqual(0);
  });

  it('shows each passage with a cross-attention bar; the shares add up to 100%', async () => {
    const direct = await askDirectly(QUESTION);
    const passages = page.locator('#passages .passage');
    expect(await passages.count()).toBe(direct.passages.length);
    const shares = (await page.locator('#passages .share').evaluateAll((els) => els.map((e) => e.getAttribute('data-share')))).map(Number);
    expect(Math.abs(shares.reduce((s, x) => s + x, 0) - 100)).toBeLessThanOrEqual(0.5);
    const labels = (await page.locator('#passages .share-text').allTextContents()).map((t) => Number.parseFloat(t));
    expect(Math.abs(labels.reduce((s, x) => s + x, 0) - 100)).toBeLessThanOrEqual(0.5);
    const widths = await page
      .locator('#passages .share-fill')
      .evaluateAll((els) => els.map((e) => (e as unknown as { style: { width: string } }).style.width));
    widths.forEach((w, i) => expect(Number.parseFloat(w)).toBeCloseTo(shares[i]!, 1));
    direct.passages.forEach((p, i) => expect(shares[i]).toBeCloseTo(p.attention * 100, 1));

    const citedIds = await page
      .locator('#passages .passage[data-cited="true"]')
      .evaluateAll((els) => els.map((e) => e.getAttribute('data-passage-id')));
    expect(citedIds.sort()).toEqual(direct.citations.map((c) => c.passageId).sort());
    expect(await page.locator('#passages .badge').count()).toBe(direct.citations.length);
  });

  it('summarises the answer in a token × passage heatmap', async () => {
    const direct = await askDirectly(QUESTION);
    const cells = page.locator('#heatmap .hm-cell');
    expect(await cells.count()).toBe(direct.tokenAttention.length * direct.passages.length);
    const matrix = attentionMatrix(direct.tokenAttention, direct.passages.length);
    const weights = await cells.evaluateAll((els) =>
      els.map((e) => [
        Number(e.getAttribute('data-token-index')),
        Number(e.getAttribute('data-passage-index')),
        Number(e.getAttribute('data-weight')),
      ]),
    );
    for (const [t, p, w] of weights) expect(w).toBeCloseTo(matrix[t!]![p!]!, 3);
  });

  /** Per passage index, the texts the page should mark while answer token `t` is active. */
  function expectedMarks(body: AskBody, t: number): Record<number, string[]> {
    const marks: Record<number, string[]> = {};
    for (const p of body.tokenAttention[t]?.passages ?? []) {
      const text = body.passages[p.passageIndex]?.text ?? '';
      const marked = highlightSegments(text, tokenWeights(p.topTokens)).filter((s) => s.weight !== undefined);
      if (marked.length > 0) marks[p.passageIndex] = marked.map((s) => s.text);
    }
    return marks;
  }

  async function marksOnPage(): Promise<Record<number, string[]>> {
    // The callback runs in the page: the selector goes in as its argument.
    const rows = await page
      .locator('#passages .passage')
      .evaluateAll(
        (els, selector) =>
          els.map(
            (e) =>
              [
                Number(e.getAttribute('data-index')),
                Array.from(e.querySelectorAll(selector)).map((m) => (m as { textContent: string }).textContent),
              ] as const,
          ),
        ATTENTION_MARK,
      );
    return Object.fromEntries(rows.filter(([, marks]) => marks.length > 0));
  }

  it('hovering an answer token marks the passage words it attended to, shaded by weight', async () => {
    const direct = await askDirectly(QUESTION);
    const spanCount = await page.locator('#answer-text .tok').count();
    // Random fixture weights decide what is attended; hover the first token whose attended words occur in the text.
    const t = Array.from({ length: spanCount }, (_, i) => i).find((i) => Object.keys(expectedMarks(direct, i)).length > 0);
    expect(t, 'no answer token attended to a word of its passages').toBeDefined();
    const entry = direct.tokenAttention[t!]!;
    await page.locator(`#answer-text .tok[data-index="${t}"]`).hover();

    expect(await marksOnPage()).toEqual(expectedMarks(direct, t!));
    const attended = await page
      .locator('#passages .passage.attended')
      .evaluateAll((els) => els.map((e) => Number(e.getAttribute('data-index'))));
    expect(attended.sort()).toEqual(entry.passages.map((p) => p.passageIndex).sort());
    expect(await page.textContent('#token-detail')).toMatch(/attended most to/);
    expect(await page.locator('#heatmap .hm-cell.active').count()).toBe(direct.passages.length);

    const maxWeight = Math.max(...entry.passages.flatMap((p) => p.topTokens.map((tok) => tok.weight)));
    const marks = await page.locator(`#passages ${ATTENTION_MARK}`).evaluateAll((els) =>
      els.map((e) => ({
        weight: Number(e.getAttribute('data-weight')),
        background: (e as unknown as { style: { backgroundColor: string } }).style.backgroundColor,
      })),
    );
    for (const m of marks) {
      const alpha = Number(/rgba\([^)]*,\s*([\d.]+)\)/.exec(m.background)?.[1]);
      expect(alpha).toBeCloseTo(Math.min(1, m.weight / maxWeight) * 0.9, 2);
    }

    await page.hover('#passages-heading');
    expect(await page.locator(`#passages ${ATTENTION_MARK}`).count()).toBe(0);
    expect(await page.locator('#passages .passage.attended').count()).toBe(0);
  });

  it('the keyboard does the same: focus a token, arrows move to the next one', async () => {
    const direct = await askDirectly(QUESTION);
    const tokens = page.locator('#answer-text .tok');
    await tokens.first().focus();
    expect(await page.locator('#answer-text .tok.active').getAttribute('data-index')).toBe('0');
    expect(await page.textContent('#token-detail')).toMatch(/attended most to/);
    expect(await marksOnPage()).toEqual(expectedMarks(direct, 0));
    if ((await tokens.count()) > 1) {
      await page.keyboard.press('ArrowRight');
      expect(await page.evaluate('document.activeElement && document.activeElement.getAttribute("data-index")')).toBe('1');
      expect(await tokens.nth(1).getAttribute('tabindex')).toBe('0');
      expect(await tokens.first().getAttribute('tabindex')).toBe('-1');
      expect(await page.locator('#answer-text .tok.active').getAttribute('data-index')).toBe('1');
      expect(await marksOnPage()).toEqual(expectedMarks(direct, 1));
    }
    await page.locator('#answer-text .tok.active').hover();
    await page.screenshot({ path: path.join(SCREENSHOT_DIR, 'playground.png'), fullPage: true });
    await page.locator('#question').focus();
    expect(await page.locator(`#passages ${ATTENTION_MARK}`).count()).toBe(0);
  });

  it('shows a 400 plainly, naming the field the server rejected', async () => {
    await askInPage(QUESTION, '500', '4');
    expect(await alertText()).toMatch(/Invalid request: field "k"/);
    expect(await page.getAttribute('#answer', 'data-state')).toBe('stopped');

    await askInPage('    ', '2', '4');
    // Not waitForFunction: Playwright evaluates its predicate with eval(), which the page's CSP (no 'unsafe-eval') blocks.
    await page.locator('[role="alert"]', { hasText: 'question' }).waitFor();
    expect(await alertText()).toMatch(/field "question"/);
  });

  it('shows "wrong or missing API key" for a 401 and answers once the right key is saved', async () => {
    const key = 'playground-test-key';
    const corpus = mkdtempSync(path.join(os.tmpdir(), 'rag-playground-auth-'));
    for (const [name, text] of Object.entries(DOCS)) writeFileSync(path.join(corpus, name), text);
    const secured = await startServer(
      fixtureConfig({
        corpusDir: corpus,
        auth: { disabled: false, keys: [{ name: 'ui', sha256: createHash('sha256').update(key).digest('hex'), scopes: ['read'] }] },
      }),
      pino({ level: 'silent' }),
    );
    const authPage = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    try {
      await secured.ready;
      await authPage.goto(`http://127.0.0.1:${secured.port}/`);
      // /readyz needs no key; the status line must not say "Ready" while every call would be refused.
      await authPage.waitForSelector('#index-status[data-state="auth"]');
      expect(await authPage.textContent('#index-status')).toMatch(/needs an API key/);
      await authPage.fill('#api-key', 'not-the-key');
      await authPage.click('#key-save');
      await authPage.fill('#question', QUESTION);
      await authPage.focus('#question');
      await authPage.keyboard.press('Enter');
      await authPage.waitForSelector('[role="alert"][data-visible="true"]');
      expect(await authPage.locator('[role="alert"]').textContent()).toMatch(/wrong or missing API key/i);

      await authPage.fill('#api-key', key);
      await authPage.click('#key-save');
      await authPage.waitForSelector('#index-status[data-state="ready"]');
      await authPage.focus('#question');
      await authPage.keyboard.press('Enter');
      await authPage.locator('#answer[data-state="done"]').waitFor();
      expect(await authPage.getAttribute('[role="alert"]', 'data-visible')).not.toBe('true');
    } finally {
      await authPage.close();
      await secured.close();
    }
  });

  it('search tab: keyboard-switchable, lists results with scores', async () => {
    await page.focus('#tab-ask');
    await page.keyboard.press('ArrowRight');
    expect(await page.getAttribute('#tab-search', 'aria-selected')).toBe('true');
    expect(await page.getAttribute('#tab-ask', 'aria-selected')).toBe('false');
    expect(await page.isVisible('#panel-search')).toBe(true);
    expect(await page.isVisible('#panel-ask')).toBe(false);
    expect(await page.locator('[role="alert"]').textContent()).toBe('');

    const request = { query: 'zebra migration Serengeti', mode: 'hybrid', k: 3 };
    const direct = (await (
      await fetch(`${base}/v1/search`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(request) })
    ).json()) as { results: Array<{ passageId: string; score: number }> };
    expect(direct.results).toHaveLength(3);

    await page.fill('#query', request.query);
    await page.selectOption('#search-mode', request.mode);
    await page.fill('#search-k', String(request.k));
    await page.press('#query', 'Enter');
    await page.waitForSelector('#results[data-state="done"]');
    const shown = await page.locator('#results .result').evaluateAll((els) =>
      els.map((e) => ({
        passageId: e.getAttribute('data-passage-id'),
        score: Number(e.querySelector('.result-score')?.getAttribute('data-score')),
      })),
    );
    expect(shown).toEqual(direct.results.map((r) => ({ passageId: r.passageId, score: r.score })));
    for (let i = 1; i < shown.length; i++) expect(shown[i]!.score).toBeLessThanOrEqual(shown[i - 1]!.score);

    await page.selectOption('#search-mode', 'bm25');
    await page.press('#query', 'Enter');
    await page.waitForSelector('#results[data-state="done"] .result');
    expect(await page.locator('#results .result').first().getAttribute('data-passage-id')).toMatch(/^zebras\.md#/);
    await page.screenshot({ path: path.join(SCREENSHOT_DIR, 'playground-search.png'), fullPage: true });
    expect(await page.textContent('#search-meta')).toMatch(/\d+ results? · embed .* · search .* · total /);
  });

  it('search tab: the rerank toggle keeps the best k of top N by cross-encoder score', async () => {
    const request = { query: 'zebra migration Serengeti', mode: 'hybrid', k: 2, rerank: { topN: 4 } };
    const direct = (await (
      await fetch(`${base}/v1/search`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(request) })
    ).json()) as { results: Array<{ passageId: string; rerankScore: number }> };
    // The checkbox sits on one line with its own label, the top-N field under them; each control has its own name.
    const form = page.locator('#search-form');
    expect(await form.getByLabel('Rerank top N', { exact: true }).getAttribute('id')).toBe('search-rerank');
    expect(await form.getByRole('spinbutton', { name: 'Top N passages to rerank' }).getAttribute('id')).toBe('search-rerank-topn');
    const [box, text, topN] = await Promise.all(
      ['#search-rerank', 'label[for="search-rerank"]', '#search-rerank-topn'].map((s) => page.locator(s).boundingBox()),
    );
    const middle = box!.y + box!.height / 2;
    expect(middle, 'checkbox level with its label').toBeGreaterThan(text!.y);
    expect(middle, 'checkbox level with its label').toBeLessThan(text!.y + text!.height);
    expect(text!.x, 'label right of its checkbox').toBeGreaterThanOrEqual(box!.x + box!.width);
    expect(text!.x - (box!.x + box!.width), 'label next to its checkbox').toBeLessThan(16);
    expect(topN!.y, 'top-N field under the toggle').toBeGreaterThanOrEqual(text!.y + text!.height - 1);
    expect(Math.abs(topN!.x - box!.x), 'top-N field aligned with the toggle').toBeLessThan(4);
    await page.click('label[for="search-rerank"]');
    expect(await page.isChecked('#search-rerank')).toBe(true);
    await page.uncheck('#search-rerank');
    expect(await page.isDisabled('#search-rerank-topn')).toBe(true);
    await page.check('#search-rerank');
    expect(await page.isDisabled('#search-rerank-topn')).toBe(false);
    await page.fill('#search-rerank-topn', '4');
    await page.fill('#query', request.query);
    await page.selectOption('#search-mode', request.mode);
    await page.fill('#search-k', String(request.k));
    await page.press('#query', 'Enter');
    await page.waitForSelector('#results[data-state="done"] .rerank-score');
    const shown = await page.locator('#results .result').evaluateAll((els) =>
      els.map((e) => ({
        passageId: e.getAttribute('data-passage-id'),
        rerankScore: Number(e.querySelector('.rerank-score')?.getAttribute('data-rerank-score')),
      })),
    );
    expect(shown).toEqual(direct.results.map((r) => ({ passageId: r.passageId, rerankScore: r.rerankScore })));
    expect(await page.textContent('#search-meta')).toMatch(/ · rerank .* · total /);
    await page.uncheck('#search-rerank');
  });

  it('shows markup from documents as text, never as elements', async () => {
    await page.fill('#query', 'plain text quotes markup tags');
    await page.selectOption('#search-mode', 'bm25');
    await page.press('#query', 'Enter');
    await page.waitForSelector('#results[data-state="done"] .result[data-passage-id^="markup.md#"]');
    const result = page.locator('#results .result[data-passage-id^="markup.md#"]');
    expect(await result.locator('.passage-text').textContent()).toContain('<img src="x" onerror="window.__xss = 1">');
    expect(await result.locator('.passage-title').textContent()).toContain('<b>Markup</b>');
    expect(await page.locator('#results img, #results script, #results b').count()).toBe(0);
    expect(await page.evaluate('window.__xss')).toBeUndefined();
  });

  it('the collection picker lists collections and scopes search to the chosen one', async () => {
    const post = (route: string, body: unknown) =>
      fetch(`${base}${route}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
    expect((await post('/v1/collections', { name: 'picked' })).status).toBe(201);
    const write = await post('/v1/collections/picked/documents', {
      documents: [{ id: 'okapi.md', text: 'The okapistripes belong to a giraffe relative.' }],
    });
    expect(write.status).toBe(200);
    await page.reload();
    await page.waitForSelector('#collection option[value="picked"]', { state: 'attached' });
    expect(await page.locator('#collection option').allTextContents()).toEqual([`${defaultCollection} (default)`, 'picked']);

    await page.click('#tab-search');
    await page.selectOption('#search-mode', 'bm25');
    await page.fill('#query', 'okapistripes');
    const unscoped = page.waitForResponse((r) => r.url().endsWith('/v1/search'));
    await page.press('#query', 'Enter');
    expect((await (await unscoped).json()).results).toEqual([]);
    await expect.poll(() => page.textContent('#search-meta')).toMatch(/^0 results/);
    expect(await page.locator('#results .result').count()).toBe(0);

    await page.selectOption('#collection', 'picked');
    await expect.poll(() => page.textContent('#index-status')).toMatch(/picked · 1 documents/);
    const scopedRequest = page.waitForRequest((r) => r.url().endsWith('/v1/collections/picked/search'));
    await page.press('#query', 'Enter');
    await scopedRequest;
    await page.waitForSelector('#results[data-state="done"] .result');
    expect(await page.locator('#results .result').first().getAttribute('data-passage-id')).toBe('okapi.md#0');

    // Back to the default collection for the tests that follow.
    await page.selectOption('#collection', '');
    await expect.poll(() => page.textContent('#index-status')).toContain(defaultCollection);
  });

  it('keeps the API key for the session and sends it as a Bearer token', async () => {
    await page.fill('#api-key', 'test-key-123');
    await page.click('#key-save');
    expect(await page.textContent('#key-state')).toMatch(/key set/);
    await page.reload();
    expect(await page.inputValue('#api-key')).toBe('test-key-123');

    await page.click('#tab-search');
    await page.fill('#query', 'volcano');
    const withKey = page.waitForRequest((r) => r.url().endsWith('/v1/search'));
    await page.click('#search-button');
    expect((await withKey).headers()['authorization']).toBe('Bearer test-key-123');
    await page.waitForSelector('#results[data-state="done"]');

    await page.click('#key-clear');
    const withoutKey = page.waitForRequest((r) => r.url().endsWith('/v1/search'));
    await page.click('#search-button');
    expect((await withoutKey).headers()['authorization']).toBeUndefined();
    await page.waitForSelector('#results[data-state="done"]');
  });

  it('fits a 375 px wide screen without sideways scrolling', async () => {
    await page.setViewportSize({ width: 375, height: 812 });
    await askInPage(QUESTION, String(ASK.k), String(ASK.maxNewTokens));
    await page.waitForSelector('#answer[data-state="done"]');
    await page.locator('#answer-text .tok').first().hover();
    expect(await page.evaluate('document.documentElement.scrollWidth')).toBeLessThanOrEqual(375);
    await page.screenshot({ path: path.join(SCREENSHOT_DIR, 'playground-375.png'), fullPage: true });
    await page.setViewportSize({ width: 1280, height: 900 });
  });

  it('raised no script errors', () => {
    expect(pageErrors).toEqual([]);
  });
});
