import { SectionTracker } from '../layout.js';
import type { ParsedFile } from './types.js';

const ATX = /^ {0,3}(#{1,6})(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$/;
const SETEXT = /^ {0,3}(=+|-+)[ \t]*$/;
const FENCE = /^ {0,3}(`{3,}|~{3,})/;

/**
 * Markdown is indexed as written (its markup is mostly readable text). Headings — ATX (`## Linux`) and setext
 * (underlined) — give the section path; headings inside fenced code are code, not headings. The title is the front
 * matter's `title:`, else the first heading, else the file name.
 */
export function parseMarkdown(raw: string, fallbackTitle: string): ParsedFile {
  let text = raw;
  let title: string | undefined;
  const front = /^---\r?\n([\s\S]*?)\r?\n---\r?\n?/.exec(raw);
  if (front) {
    text = raw.slice(front[0].length);
    const t = /^title:\s*(.+)$/m.exec(front[1]!);
    if (t) title = t[1]!.trim().replace(/^(['"])(.*)\1$/, '$2');
  }
  const tracker = new SectionTracker();
  let fence: string | undefined;
  let offset = 0;
  let previous: { start: number; line: string; blank: boolean } | undefined;
  for (const line of text.split('\n')) {
    const start = offset;
    offset += line.length + 1;
    const bare = line.replace(/\r$/, '');
    const fenceMatch = FENCE.exec(bare);
    if (fence !== undefined) {
      if (fenceMatch && fenceMatch[1]![0] === fence[0] && fenceMatch[1]!.length >= fence.length) fence = undefined;
      previous = undefined;
      continue;
    }
    if (fenceMatch) {
      fence = fenceMatch[1]!;
      previous = undefined;
      continue;
    }
    const atx = ATX.exec(bare);
    if (atx) {
      const heading = (atx[2] ?? '').trim();
      tracker.heading(atx[1]!.length, heading, start);
      title ??= heading || undefined;
      previous = undefined;
      continue;
    }
    const setext = SETEXT.exec(bare);
    if (setext && previous && !previous.blank && !/^ {0,3}([-*_])[ \t]*(\1[ \t]*){2,}$/.test(previous.line)) {
      const heading = previous.line.trim();
      tracker.heading(setext[1]![0] === '=' ? 1 : 2, heading, previous.start);
      title ??= heading || undefined;
      previous = undefined;
      continue;
    }
    previous = { start, line: bare, blank: bare.trim() === '' };
  }
  return { title: title ?? fallbackTitle, text, layout: tracker.sections.length > 0 ? { sections: tracker.sections } : undefined };
}
