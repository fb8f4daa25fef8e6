/**
 * The playground with real documents: files uploaded through the Upload tab (multipart to /v1/documents/files), then a
 * cited answer whose passages and sources show page numbers and heading paths. Saves a screenshot to test-output/.
 */
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Browser, Page } from 'playwright-core';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startServer } from '../src/main.js';
import { hasChromium, launchChromium } from './helpers/browser.js';
import { fixtureConfig } from './helpers/config.js';
import { docxFile, singleColumnPdf } from './helpers/documents.js';
import { REPO_ROOT } from './helpers/fixtures.js';

const SCREENSHOT_DIR = path.join(REPO_ROOT, 'test-output');

/** Lines of a page, wrapped as a PDF writer would. */
function lines(text: string, width = 80): string[] {
  const out: string[] = [];
  let line = '';
  for (const word of text.split(' ')) {
    if (line.length + word.length + 1 > width) {
      out.push(line);
      line = word;
    } else {
      line = line ? `${line} ${word}` : word;
    }
  }
  if (line) out.push(line);
  return out;
}

describe.skipIf(!hasChromium)('playground with uploaded documents', () => {
  let server: Awaited<ReturnType<typeof startServer>>;
  let browser: Browser;
  let page: Page;
  let base = '';
  const files = mkdtempSync(path.join(os.tmpdir(), 'rag-upload-files-'));

  beforeAll(async () => {
    const corpus = mkdtempSync(path.join(os.tmpdir(), 'rag-playground-docs-'));
    writeFileSync(path.join(corpus, 'welcome.md'), '# Welcome\n\nThis index holds reports uploaded in the playground.');
    const survey =
      'The survey team mapped the northern glacier during the spring season. Crews walked the moraine, set stakes and photographed the ice front from the ridge. Weather held for nine days, which let the team repeat every transect twice. ';
    const retreat =
      'The northern glacier retreated forty metres since the previous survey. Meltwater lakes formed at the terminus in early summer and drained by August. The retreat was fastest on the eastern lobe, where the ice is thinnest. ';
    const volcano =
      'The crater lake warmed by two degrees. Gas emissions stayed low and no eruption is expected this year. Seismic stations recorded only the usual background tremor. ';
    const report = await singleColumnPdf(
      [
        lines(`Survey. ${survey.repeat(3)}`),
        lines(`Glacier retreat. ${retreat.repeat(3)}`),
        lines(`Volcanic activity. ${volcano.repeat(3)}`),
      ],
      'Field report 2024',
    );
    writeFileSync(path.join(files, 'field-report-2024.pdf'), report);
    writeFileSync(
      path.join(files, 'station-manual.docx'),
      // No title heading (the title is the file name): the one passage starts under "Glacier instruments".
      await docxFile([
        { heading: 2, text: 'Glacier instruments' },
        { text: 'The glacier stakes are read every month; retreat is measured from the terminus marker.' },
      ]),
    );
    server = await startServer(fixtureConfig({ corpusDir: corpus }), pino({ level: 'silent' }));
    base = `http://127.0.0.1:${server.port}`;
    await server.ready;
    browser = await launchChromium();
    page = await browser.newPage({ viewport: { width: 1280, height: 1000 } });
    mkdirSync(SCREENSHOT_DIR, { recursive: true });
  });

  afterAll(async () => {
    await browser?.close();
    await server?.close();
  });

  it('uploads files from the Upload tab and lists each document with its outcome', async () => {
    await page.goto(`${base}/`);
    await page.waitForSelector('#index-status[data-state="ready"]');
    await page.click('#tab-upload');
    await page.setInputFiles('#upload-files', [path.join(files, 'field-report-2024.pdf'), path.join(files, 'station-manual.docx')]);
    await page.click('#upload-button');
    await page.waitForSelector('#upload-results li[data-id="station-manual.docx"]');
    const statuses = await page.$$eval('#upload-results li', (items) =>
      items.map((li) => [li.getAttribute('data-id'), li.getAttribute('data-status')]),
    );
    expect(statuses).toEqual([
      ['field-report-2024.pdf', 'added'],
      ['station-manual.docx', 'added'],
    ]);
    expect(await page.textContent('#upload-meta')).toBe('2 of 2 documents indexed');
  });

  it('a cited answer shows page numbers and heading paths for its passages and sources', async () => {
    await page.click('#tab-ask');
    await page.fill('#question', 'How far did the northern glacier retreat?');
    await page.fill('#ask-k', '4');
    await page.focus('#question');
    await page.keyboard.press('Enter');
    await page.waitForSelector('#answer[data-state="done"]');
    const facts = await page.$$eval('#passages .passage-facts', (ps) => ps.map((p) => p.textContent ?? ''));
    expect(
      facts.some((f) => /p\. \d/.test(f)),
      facts.join(' | '),
    ).toBe(true);
    // The manual's passage starts under a heading that is not its title, so that heading path is shown.
    expect(
      facts.some((f) => f.startsWith('Glacier instruments')),
      facts.join(' | '),
    ).toBe(true);
    const sources = (await page.textContent('#answer-sources')) ?? '';
    expect(sources).toMatch(/^Sources:/);
    expect(await page.isVisible('#answer-sources')).toBe(true);
    await page.screenshot({ path: path.join(SCREENSHOT_DIR, 'playground-pages.png'), fullPage: false });
  });
});
