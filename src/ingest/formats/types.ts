import type { TextLayout } from '../types.js';

/** What a format reader makes of one file: its text, a title, and where pages and headings are. */
export interface ParsedFile {
  title: string;
  text: string;
  layout?: TextLayout;
  /** Format facts worth filtering on (e.g. `pages`), merged into the document's metadata. */
  metadata?: Record<string, string | number>;
}

/** A file that cannot be read, with the reason in words a user can act on. */
export class UnreadableFileError extends Error {
  override name = 'UnreadableFileError';
}
