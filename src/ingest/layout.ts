import type { Passage, TextLayout } from './types.js';

/**
 * Where a passage sits in its document: the pages its characters come from and the heading path it starts under.
 * Readers describe a document's layout as character spans of its text; the chunker knows nothing about it, and this
 * module maps each passage's span onto those spans.
 */
export interface PassageLocation {
  pageStart?: number;
  pageEnd?: number;
  section?: string[];
  /** For text read by OCR: the lowest confidence (0–100) of the OCR'd pages the passage spans. */
  ocrConfidence?: number;
}

/** Index of the last entry whose start is <= pos (entries sorted by start); -1 if none. */
function lastStartingAtOrBefore(starts: ReadonlyArray<{ start: number }>, pos: number): number {
  let lo = 0;
  let hi = starts.length - 1;
  let found = -1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    if (starts[mid]!.start <= pos) {
      found = mid;
      lo = mid + 1;
    } else {
      hi = mid - 1;
    }
  }
  return found;
}

/** Indexes of the first and last page entries of [start, end): separators between pages count towards no page. */
function pageRange(pages: NonNullable<TextLayout['pages']>, start: number, end: number): [number, number] | undefined {
  if (pages.length === 0 || end <= start) return undefined;
  let first = lastStartingAtOrBefore(pages, start);
  // A passage starting in the gap before a page starts on that page.
  if (first === -1 || pages[first]!.end <= start) first = Math.min(first + 1, pages.length - 1);
  const last = Math.max(first, lastStartingAtOrBefore(pages, end - 1));
  return [first, last];
}

/** The lowest OCR confidence of page entries first..last: a passage is as trustworthy as its worst page. */
function lowestConfidence(pages: NonNullable<TextLayout['pages']>, first: number, last: number): number | undefined {
  let lowest: number | undefined;
  for (let i = first; i <= last; i++) {
    const c = pages[i]!.ocrConfidence;
    if (c !== undefined && (lowest === undefined || c < lowest)) lowest = c;
  }
  return lowest;
}

/**
 * The heading path in force at the span's first character. A passage is labelled with the section it starts in, even
 * when it runs on under later headings, because that is where its text as shown begins: one over "Garden guide",
 * "Tomatoes" and "Compost" opens in "Garden guide", and naming whichever section holds most of its characters made
 * the label depend on the chunk size. Leading whitespace of the span's text (when given) is skipped first, so a span
 * that starts in the blank lines before a heading is in that heading's section. Undefined before the first heading.
 */
function sectionOf(sections: NonNullable<TextLayout['sections']>, start: number, spanText: string | undefined): string[] | undefined {
  const lead = spanText === undefined ? 0 : spanText.length - spanText.trimStart().length;
  const first = lead < (spanText?.length ?? 0) ? start + lead : start;
  const i = lastStartingAtOrBefore(sections, first);
  const path = i >= 0 ? sections[i]!.path : undefined;
  return path !== undefined && path.length > 0 ? path : undefined;
}

/**
 * Pages and heading path of the document span [start, end). `spanText`, when given, is the text of that span
 * (`text.slice(start, end)`); it lets a span that starts with whitespace be placed by its first visible character.
 */
export function locateSpan(layout: TextLayout | undefined, start: number, end: number, spanText?: string): PassageLocation {
  if (!layout) return {};
  const location: PassageLocation = {};
  const range = layout.pages && pageRange(layout.pages, start, end);
  if (range) {
    const [first, last] = range;
    location.pageStart = layout.pages![first]!.page;
    location.pageEnd = layout.pages![last]!.page;
    const confidence = lowestConfidence(layout.pages!, first, last);
    if (confidence !== undefined) location.ocrConfidence = confidence;
  }
  const section = layout.sections && end > start ? sectionOf(layout.sections, start, spanText) : undefined;
  if (section) location.section = section;
  return location;
}

/**
 * Adds page ranges and heading paths to a document's passages (a no-op for documents without a layout). A passage of
 * OCR'd pages gets `ocrConfidence` in its metadata, where search hits show it and metadata filters can select on it.
 */
export function locatePassages(passages: Passage[], layout: TextLayout | undefined): Passage[] {
  if (!layout) return passages;
  return passages.map((p) => {
    const { ocrConfidence, ...location } = locateSpan(layout, p.charStart, p.charEnd, p.text);
    const located = { ...p, ...location };
    return ocrConfidence === undefined ? located : { ...located, metadata: { ...p.metadata, ocrConfidence } };
  });
}

/** "Install › Linux" */
export const SECTION_SEPARATOR = ' › ';

/** A passage's title as the reader and the embedder see it: the document title, then its heading path. */
export function titleWithSection(title: string, section: readonly string[] | undefined): string {
  // The title is often the first heading itself ("Guide" › "Guide" › "Install"): say it once.
  const rest = section && section[0] === title ? section.slice(1) : (section ?? []);
  if (rest.length === 0) return title;
  const path = rest.join(SECTION_SEPARATOR);
  return title.trim() === '' ? path : `${title}${SECTION_SEPARATOR}${path}`;
}

/** Builds a document's text and its section spans from headings met in reading order. */
export class SectionTracker {
  readonly sections: NonNullable<TextLayout['sections']> = [];
  private readonly stack: Array<{ level: number; title: string }> = [];

  /** A heading of `level` (1 = top) starting at `offset` in the text. */
  heading(level: number, title: string, offset: number): void {
    while (this.stack.length > 0 && this.stack[this.stack.length - 1]!.level >= level) this.stack.pop();
    const clean = title.replace(/\s+/g, ' ').trim();
    if (clean === '') return;
    this.stack.push({ level, title: clean });
    const path = this.stack.map((h) => h.title);
    const last = this.sections[this.sections.length - 1];
    // Two headings at one offset (nothing between them): the later, deeper one describes the text that follows.
    if (last && last.start === offset) this.sections.pop();
    this.sections.push({ start: offset, path });
  }
}
