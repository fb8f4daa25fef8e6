/**
 * The answer's span in its cited passage, end to end on the committed fact-lookup reader (test/models, a reader that
 * really answers by copying a span): through POST /v1/ask (plain and streamed), the chat route, and the playground in
 * Chromium. Retrieval and corpus as in trained-reader.test.ts: BM25, k = 10, people the reader never saw in training.
 */
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { startServer } from '../src/main.js';
import { normaliseForMatch } from '../src/service/answer-span.js';
import { generateFactLookup } from '../src/training/fact-lookup.js';
import { hasChromium, launchChromium } from './helpers/browser.js';
import { REPO_ROOT } from './helpers/fixtures.js';
import { startFactLookupServer } from './helpers/fact-lookup-server.js';
import { readReply, request } from './helpers/http.js';

const SET = generateFactLookup({ split: 'test', people: 120, questionsPerPerson: 2, seed: 2024 });
/** Enough questions for the share to mean something, few enough to keep the file quick. */
const QUESTIONS = SET.questions.slice(0, 40);
const K = 10;
/**
 * The reader's answers are copied spans (exact match 0.967 on the 120 questions of trained-reader.test.ts), so nearly
 * every top citation must hold its answer: measured 39 of these 40 (the miss: an answer its passage does not contain).
 */
const MIN_SPAN_SHARE = 0.9;
const SCREENSHOT_DIR = path.join(REPO_ROOT, 'test-output');

interface Span {
  start: number;
  end: number;
}
interface AskBody {
  answer: string;
  citations: Array<{ passageId: string; docId: string; title: string; answerSpan?: Span }>;
  passages: Array<{ passageId: string; text: string }>;
}

let server: Awaited<ReturnType<typeof startServer>>;
let base = '';

const ask = async (question: string): Promise<AskBody> => {
  const res = await request(base, 'POST', '/v1/ask', { body: { question, k: K, mode: 'bm25' } });
  expect(res.status).toBe(200);
  return res.json as AskBody;
};

/** The text a citation's span quotes from the returned passage. */
function spanText(body: AskBody, citation: AskBody['citations'][number]): string | undefined {
  const passage = body.passages.find((p) => p.passageId === citation.passageId);
  expect(passage, citation.passageId).toBeDefined();
  return citation.answerSpan ? passage!.text.slice(citation.answerSpan.start, citation.answerSpan.end) : undefined;
}

beforeAll(async () => {
  ({ server, base } = await startFactLookupServer(SET.passages));
});

afterAll(async () => {
  await server?.close();
});

describe('answerSpan through the API on the fact-lookup reader', () => {
  const bodies: AskBody[] = [];
  beforeAll(async () => {
    for (const q of QUESTIONS) bodies.push(await ask(q.question));
  });

  it('every span slices its passage text to the answer (normalised)', () => {
    let spans = 0;
    for (const body of bodies) {
      for (const c of body.citations) {
        const quoted = spanText(body, c);
        if (quoted === undefined) continue;
        spans++;
        expect(normaliseForMatch(quoted), `${c.passageId}: ${JSON.stringify(quoted)} for ${JSON.stringify(body.answer)}`).toBe(
          normaliseForMatch(body.answer),
        );
      }
    }
    expect(spans).toBeGreaterThan(0);
  });

  it(`the top citation holds a span for at least ${MIN_SPAN_SHARE} of the questions`, () => {
    const withSpan = bodies.filter((b) => b.citations[0]?.answerSpan !== undefined);
    const misses = bodies
      .filter((b) => b.citations[0]?.answerSpan === undefined)
      .map((b) => `${JSON.stringify(b.answer)} (cited ${b.citations[0]?.passageId})`);
    expect(withSpan.length / bodies.length, misses.join('\n')).toBeGreaterThanOrEqual(MIN_SPAN_SHARE);
  });

  it('the streamed answer event and the chat route carry the same spans', async () => {
    const question = QUESTIONS[0]!.question;
    const plain = bodies[0]!;
    expect(plain.citations[0]?.answerSpan).toBeDefined();

    const streamed = await fetch(`${base}/v1/ask`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ question, k: K, mode: 'bm25', stream: true }),
    });
    const events = (await readReply(streamed)).text.split('\n\n').filter((b) => b.startsWith('event: answer\n'));
    expect(events).toHaveLength(1);
    const final = JSON.parse(events[0]!.slice(events[0]!.indexOf('data: ') + 6)) as AskBody;
    expect(final.citations).toEqual(plain.citations);

    const chat = await request(base, 'POST', '/v1/chat/completions', {
      body: { model: 'fid-rag', messages: [{ role: 'user', content: question }], rag: { k: K, mode: 'bm25' } },
    });
    expect(chat.status).toBe(200);
    const citations = chat.json.citations as Array<{ passageId: string; text: string; answerSpan?: Span }>;
    expect(citations.map((c) => [c.passageId, c.answerSpan])).toEqual(plain.citations.map((c) => [c.passageId, c.answerSpan]));
    const top = citations[0]!;
    const content = chat.json.choices[0].message.content as string;
    expect(normaliseForMatch(top.text.slice(top.answerSpan!.start, top.answerSpan!.end))).toBe(normaliseForMatch(content));
  });
});

describe.skipIf(!hasChromium)('the playground quotes the answer in its source', () => {
  let browser: Browser;
  let page: Page;
  const pageErrors: string[] = [];

  beforeAll(async () => {
    browser = await launchChromium();
    page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    page.on('pageerror', (err) => pageErrors.push(err.message));
    mkdirSync(SCREENSHOT_DIR, { recursive: true });
  });

  afterAll(async () => {
    await browser?.close();
  });

  it('marks the answer in the quote and in the cited passage, also while attention is shown', async () => {
    const question = QUESTIONS[1]!.question;
    const direct = await ask(question);
    const top = direct.citations[0]!;
    expect(top.answerSpan, 'the fact-lookup reader copied this answer').toBeDefined();

    await page.goto(`${base}/`);
    await page.waitForSelector('#index-status[data-state="ready"]');
    await page.fill('#question', question);
    await page.selectOption('#ask-mode', 'bm25');
    await page.fill('#ask-k', String(K));
    await page.click('#ask-button');
    await page.waitForSelector('#answer[data-state="done"]');

    const answer = (await page.textContent('#answer-text')) ?? '';
    expect(answer).toBe(direct.answer);
    expect(await page.getAttribute('#answer-quote', 'data-passage-id')).toBe(top.passageId);
    const quoteMark = page.locator('#answer-quote mark.answer-span');
    expect(await quoteMark.count()).toBe(1);
    expect(normaliseForMatch((await quoteMark.textContent()) ?? '')).toBe(normaliseForMatch(answer));
    expect(await page.locator('#answer-quote blockquote').textContent()).toContain(spanText(direct, top));
    const caption = await page.textContent('#answer-quote figcaption');
    expect(caption).toContain(top.title);
    expect(caption).toContain(top.docId);

    const passageMark = page.locator(`#passages .passage[data-passage-id="${top.passageId}"] .passage-text mark.answer-span`);
    expect(await passageMark.count()).toBe(1);
    expect(await passageMark.textContent()).toBe(spanText(direct, top));

    // Attention shading re-renders the passage text: the span's mark stays, with the same text, around the shading.
    await page.locator('#answer-text .tok').first().hover();
    await page.waitForSelector('#passages .passage.attended');
    expect(await passageMark.count()).toBe(1);
    expect(await passageMark.textContent()).toBe(spanText(direct, top));
    const passageText = await page.locator(`#passages .passage[data-passage-id="${top.passageId}"] .passage-text`).textContent();
    expect(passageText).toBe(direct.passages.find((p) => p.passageId === top.passageId)!.text);
    await page.screenshot({ path: path.join(SCREENSHOT_DIR, 'playground-answer-span.png'), fullPage: true });
    expect(pageErrors).toEqual([]);
  });
});
