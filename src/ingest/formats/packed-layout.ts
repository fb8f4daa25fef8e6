import type { TextLayout } from '../types.js';
import type { ParsedDocument } from './parse-file.js';

/**
 * A layout as it crosses from the parser thread to the main thread. As objects, a long document's layout (23,000
 * headings for 2 MB of Markdown: an object, an array and several strings each) took the main thread 35 ms to
 * deserialize in one piece; as typed arrays and one list of strings it takes a few. Heading paths are sent as
 * deltas: how many headings a path keeps of the one before it, and the headings it adds.
 */
export interface PackedLayout {
  /** `ocrConfidence` only when some page was OCR'd; NaN for the pages that were not. */
  pages?: { page: Float64Array; start: Float64Array; end: Float64Array; ocrConfidence?: Float64Array };
  sections?: { start: Float64Array; kept: Uint32Array; added: Uint32Array; headings: string[] };
}

export type PackedDocument = Omit<ParsedDocument, 'layout'> & { packedLayout?: PackedLayout };

function packSections(sections: NonNullable<TextLayout['sections']>): NonNullable<PackedLayout['sections']> {
  const start = new Float64Array(sections.length);
  const kept = new Uint32Array(sections.length);
  const added = new Uint32Array(sections.length);
  const headings: string[] = [];
  let previous: readonly string[] = [];
  sections.forEach((section, i) => {
    let keep = 0;
    while (keep < previous.length && keep < section.path.length && previous[keep] === section.path[keep]) keep++;
    start[i] = section.start;
    kept[i] = keep;
    added[i] = section.path.length - keep;
    for (let j = keep; j < section.path.length; j++) headings.push(section.path[j]!);
    previous = section.path;
  });
  return { start, kept, added, headings };
}

function unpackSections(packed: NonNullable<PackedLayout['sections']>): NonNullable<TextLayout['sections']> {
  const sections: NonNullable<TextLayout['sections']> = [];
  let previous: string[] = [];
  let next = 0;
  for (let i = 0; i < packed.start.length; i++) {
    const path = previous.slice(0, packed.kept[i]);
    for (let j = 0; j < packed.added[i]!; j++) path.push(packed.headings[next++]!);
    sections.push({ start: packed.start[i]!, path });
    previous = path;
  }
  return sections;
}

export function packDocument(doc: ParsedDocument): PackedDocument {
  const { layout, ...rest } = doc;
  if (!layout) return rest;
  const packed: PackedLayout = {};
  if (layout.pages) {
    packed.pages = {
      page: Float64Array.from(layout.pages, (p) => p.page),
      start: Float64Array.from(layout.pages, (p) => p.start),
      end: Float64Array.from(layout.pages, (p) => p.end),
    };
    if (layout.pages.some((p) => p.ocrConfidence !== undefined)) {
      packed.pages.ocrConfidence = Float64Array.from(layout.pages, (p) => p.ocrConfidence ?? NaN);
    }
  }
  if (layout.sections) packed.sections = packSections(layout.sections);
  return { ...rest, packedLayout: packed };
}

/** The document exactly as the reader made it (same layout entries, same key order). */
export function unpackDocument(packed: PackedDocument): ParsedDocument {
  const { packedLayout, ...rest } = packed;
  if (!packedLayout) return rest;
  const layout: TextLayout = {};
  const pages = packedLayout.pages;
  if (pages) {
    layout.pages = Array.from(pages.page, (page, i) => {
      const confidence = pages.ocrConfidence?.[i];
      const span = { page, start: pages.start[i]!, end: pages.end[i]! };
      return confidence === undefined || Number.isNaN(confidence) ? span : { ...span, ocrConfidence: confidence };
    });
  }
  if (packedLayout.sections) layout.sections = unpackSections(packedLayout.sections);
  return { ...rest, layout };
}
