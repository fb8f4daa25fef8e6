import { randomBytes } from 'node:crypto';
import { convert, type FormatCallback, type HtmlToTextOptions } from 'html-to-text';
import { SectionTracker } from '../layout.js';
import type { ParsedFile } from './types.js';

const HEADINGS = ['h1', 'h2', 'h3', 'h4', 'h5', 'h6'];

/**
 * html-to-text gives no offsets, so headings are bracketed with markers carrying a per-call random nonce (which no
 * document can contain by chance), found again in the output, and removed.
 */
function headingFormatter(open: string, close: string): FormatCallback {
  return (elem, walk, builder, formatOptions) => {
    builder.openBlock({ leadingLineBreaks: formatOptions.leadingLineBreaks ?? 2 });
    builder.addLiteral(`${open}${String(formatOptions.level)}\u0003`);
    walk(elem.children, builder);
    builder.addLiteral(close);
    builder.closeBlock({ trailingLineBreaks: formatOptions.trailingLineBreaks ?? 1 });
  };
}

/**
 * A table row as one line, its cells separated by " | ": a passage keeps which value sits in which row (html-to-text's
 * own table layout pads columns with runs of spaces, and its block layout loses the rows).
 */
const rowFormatter: FormatCallback = (elem, walk, builder) => {
  builder.openBlock({ leadingLineBreaks: 1 });
  let first = true;
  for (const cell of elem.children ?? []) {
    if (cell.type !== 'tag' || (cell.name !== 'td' && cell.name !== 'th')) continue;
    if (!first) builder.addLiteral(' | ');
    walk(cell.children, builder);
    first = false;
  }
  builder.closeBlock({ trailingLineBreaks: 1 });
};

function options(open?: string, close?: string): HtmlToTextOptions {
  return {
    wordwrap: false,
    formatters: { ragRow: rowFormatter, ...(open && close ? { ragHeading: headingFormatter(open, close) } : {}) },
    selectors: [
      { selector: 'table', format: 'block' },
      { selector: 'tr', format: 'ragRow' },
      { selector: 'a', options: { ignoreHref: true } },
      { selector: 'img', format: 'skip' },
      { selector: 'script', format: 'skip' },
      { selector: 'style', format: 'skip' },
      { selector: 'noscript', format: 'skip' },
      { selector: 'svg', format: 'skip' },
      { selector: 'template', format: 'skip' },
      ...HEADINGS.map((h, i) =>
        open ? { selector: h, format: 'ragHeading', options: { level: i + 1 } } : { selector: h, options: { uppercase: false } },
      ),
    ],
  };
}

const PLAIN = options();

function fragmentToText(fragment: string): string {
  return convert(fragment, PLAIN).replace(/\s+/g, ' ').trim();
}

/** Removes the heading markers, recording each heading's level, text and offset in the cleaned text. */
function extractHeadings(marked: string, open: string, close: string): { text: string; tracker: SectionTracker } {
  const tracker = new SectionTracker();
  let text = '';
  let pos = 0;
  for (;;) {
    const at = marked.indexOf(open, pos);
    if (at === -1) break;
    text += marked.slice(pos, at);
    const levelEnd = marked.indexOf('\u0003', at + open.length);
    const end = marked.indexOf(close, levelEnd);
    if (levelEnd === -1 || end === -1) break;
    const level = Number(marked.slice(at + open.length, levelEnd));
    const inner = marked.slice(levelEnd + 1, end);
    // Nested markers cannot occur (headings do not nest), but never let one leak into the text.
    const heading = inner.split(open).join('').split(close).join('');
    tracker.heading(level, heading, text.length);
    text += heading;
    pos = end + close.length;
  }
  text += marked.slice(pos);
  return { text, tracker };
}

/**
 * HTML: visible text without scripts and styles; headings give the section path. Title from <title>, else the first
 * <h1>, else the fallback (the file name).
 */
export function parseHtml(raw: string, fallbackTitle: string): ParsedFile {
  const titleTag = /<title[^>]*>([\s\S]*?)<\/title>/i.exec(raw)?.[1];
  const h1 = /<h1[^>]*>([\s\S]*?)<\/h1>/i.exec(raw)?.[1];
  const title = [titleTag, h1].map((t) => (t === undefined ? '' : fragmentToText(t))).find((t) => t !== '');
  const nonce = randomBytes(8).toString('hex');
  const open = `\u0002${nonce}:`;
  const close = `\u0004${nonce}\u0005`;
  // Block spacing from nested elements can stack up; one blank line between blocks is enough.
  const marked = convert(raw, options(open, close)).replace(/\n{3,}/g, '\n\n');
  const { text: untrimmed, tracker } = extractHeadings(marked, open, close);
  const lead = untrimmed.length - untrimmed.trimStart().length;
  const text = untrimmed.trim();
  const sections = tracker.sections
    .map((s) => ({ start: Math.max(0, s.start - lead), path: s.path }))
    .filter((s) => s.start <= text.length);
  return { title: title ?? fallbackTitle, text, layout: sections.length > 0 ? { sections } : undefined };
}
