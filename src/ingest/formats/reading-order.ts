/**
 * Reading order of positioned text, from the PDF text layer's runs or OCR's words alike: runs → lines → columns →
 * paragraphs. Coordinates are in points with y growing upwards (PDF's convention); `size` is the font size.
 */

/** One run of text (a PDF text item, an OCR'd word), in page coordinates (y grows upwards). */
export interface Run {
  text: string;
  x0: number;
  x1: number;
  y: number;
  size: number;
}

/** Runs on one baseline that belong together (one column's line). */
export interface Line {
  text: string;
  x0: number;
  x1: number;
  y: number;
  size: number;
}

const median = (values: number[]): number => {
  if (values.length === 0) return 0;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[sorted.length >> 1]!;
};

/**
 * Runs → lines: runs whose baselines are within half a font size are on one line; on a line, a horizontal gap wider
 * than a font size separates two lines of different columns. Words separated by a visible gap get a space.
 */
export function buildLines(runs: Run[]): Line[] {
  const sorted = [...runs].sort((a, b) => b.y - a.y || a.x0 - b.x0);
  const rows: Run[][] = [];
  for (const run of sorted) {
    const row = rows[rows.length - 1];
    if (row && Math.abs(row[0]!.y - run.y) <= Math.max(row[0]!.size, run.size) * 0.5) row.push(run);
    else rows.push([run]);
  }
  const lines: Line[] = [];
  for (const row of rows) {
    row.sort((a, b) => a.x0 - b.x0);
    let line: Line | undefined;
    for (const run of row) {
      const gap = line ? run.x0 - line.x1 : 0;
      if (line && gap <= Math.max(line.size, run.size)) {
        const needsSpace = gap > 0.15 * run.size && !/\s$/.test(line.text) && !/^\s/.test(run.text);
        line.text += (needsSpace ? ' ' : '') + run.text;
        line.x1 = Math.max(line.x1, run.x1);
      } else {
        if (line) lines.push(line);
        line = { ...run };
      }
    }
    if (line) lines.push(line);
  }
  return lines.filter((l) => l.text.trim() !== '');
}

/**
 * A column gutter: an x range at least `minWidth` wide that lines on both sides leave empty, with lines side by side
 * at the same height (otherwise it is just an indent). Lines crossing it (a title over both columns) are full-width.
 */
function findGutter(lines: Line[]): [number, number] | undefined {
  if (lines.length < 4) return undefined;
  const minX = Math.min(...lines.map((l) => l.x0));
  const maxX = Math.max(...lines.map((l) => l.x1));
  const width = Math.ceil(maxX - minX);
  if (width < 20) return undefined;
  const size = median(lines.map((l) => l.size));
  // Coverage per point of x, by a difference array: linear in lines + width.
  const diff = new Int32Array(width + 2);
  for (const l of lines) {
    diff[Math.max(0, Math.floor(l.x0 - minX))]! += 1;
    diff[Math.min(width + 1, Math.ceil(l.x1 - minX))]! -= 1;
  }
  const allowed = Math.max(0, Math.floor(lines.length * 0.2));
  let best: [number, number] | undefined;
  let covered = 0;
  let runStart = -1;
  for (let x = 0; x <= width; x++) {
    covered += diff[x]!;
    const open = covered <= allowed && x > 0 && x < width;
    if (open && runStart === -1) runStart = x;
    if ((!open || x === width) && runStart !== -1) {
      const end = open ? x + 1 : x;
      if (end - runStart >= Math.max(size, 6) && (!best || end - runStart > best[1] - best[0])) best = [runStart + minX, end + minX];
      runStart = -1;
    }
  }
  if (!best) return undefined;
  // The few lines allowed into the range may poke into it from one side (a column's longest lines): the gutter is
  // what they leave, so they stay in their column rather than reading as full-width. A line across it still spans it.
  let [g0, g1] = best;
  for (const l of lines) if (l.x0 < g0 && l.x1 > g0 && l.x1 < g1) g0 = l.x1;
  for (const l of lines) if (l.x1 > g1 && l.x0 < g1 && l.x0 > g0) g1 = l.x0;
  if (g1 - g0 < Math.max(size, 6)) return undefined;
  const left = lines.filter((l) => l.x1 <= g0);
  const right = lines.filter((l) => l.x0 >= g1);
  if (left.length < 2 || right.length < 2) return undefined;
  const sideBySide = left.filter((l) => right.some((r) => Math.abs(r.y - l.y) < Math.max(l.size, r.size) * 2)).length;
  return sideBySide >= 2 ? [g0, g1] : undefined;
}

/**
 * Reading order: top to bottom, except that where the page has columns, each column is read to its end before the
 * next; a full-width line (a title, a figure caption) ends the column block above it. Applied recursively, so a
 * column may itself have columns.
 */
export function readingOrder(lines: Line[], depth = 0): Line[] {
  const byHeight = [...lines].sort((a, b) => b.y - a.y || a.x0 - b.x0);
  const gutter = depth < 3 ? findGutter(lines) : undefined;
  if (!gutter) return byHeight;
  const [g0, g1] = gutter;
  const out: Line[] = [];
  let left: Line[] = [];
  let right: Line[] = [];
  const flush = () => {
    out.push(...readingOrder(left, depth + 1), ...readingOrder(right, depth + 1));
    left = [];
    right = [];
  };
  for (const line of byHeight) {
    if (line.x1 <= g0) left.push(line);
    else if (line.x0 >= g1) right.push(line);
    else {
      flush();
      out.push(line);
    }
  }
  flush();
  return out;
}

/**
 * Whether `next` continues a word hyphenated at the end of `text` ("docu-" + "ment" → "document"): a letter before the
 * hyphen and a lower-case letter after it, so "Fusion-" before "In" keeps its hyphen.
 */
function isHyphenatedBreak(text: string, next: string): boolean {
  return /\p{L}-$/u.test(text) && /^\p{Ll}/u.test(next);
}

/**
 * Lines in reading order → text: a line break between lines, a blank line where the vertical gap says a new
 * paragraph starts, and a word hyphenated at a line end joined again ("docu-" + "ment" → "document").
 */
export function linesToText(lines: Line[]): string {
  let text = '';
  let previous: Line | undefined;
  for (const line of lines) {
    const content = line.text.replace(/\s+/g, ' ').trim();
    if (previous) {
      if (isHyphenatedBreak(text, content)) {
        text = text.slice(0, -1);
      } else {
        const gap = previous.y - line.y;
        const newParagraph = gap > previous.size * 1.9 || gap < 0;
        text += newParagraph ? '\n\n' : '\n';
      }
    }
    text += content;
    previous = line;
  }
  return text;
}
