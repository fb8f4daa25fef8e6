import MarkdownIt from 'markdown-it';
import { parseHtml } from './html.js';
import type { ParsedFile } from './types.js';

/**
 * CommonMark with tables and strikethrough, raw HTML passed through (the HTML reader then keeps only its text and
 * drops scripts), and no typographic rewriting: passages keep the author's characters.
 */
const markdown = new MarkdownIt('default', { html: true, linkify: false, typographer: false });

const FRONT_MATTER = /^---\r?\n([\s\S]*?)\r?\n---\r?\n?/;

/**
 * Markdown is rendered to HTML and read by the HTML reader, so a Markdown passage reads like the same content
 * written in HTML (no `#` markers, emphasis, link syntax or escapes; code verbatim) and both have the same section
 * paths. The title is the front matter's `title:`, else the first heading (of any level), else the file name.
 */
export function parseMarkdown(raw: string, fallbackTitle: string): ParsedFile {
  let body = raw;
  let title: string | undefined;
  const front = FRONT_MATTER.exec(raw);
  if (front) {
    body = raw.slice(front[0].length);
    const t = /^title:\s*(.+)$/m.exec(front[1]!);
    if (t) title = t[1]!.trim().replace(/^(['"])(.*)\1$/, '$2');
  }
  const parsed = parseHtml(markdown.render(body), fallbackTitle);
  const firstHeading = parsed.layout?.sections?.[0]?.path.at(-1);
  return { ...parsed, title: title ?? firstHeading ?? fallbackTitle };
}
