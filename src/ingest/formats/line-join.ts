/**
 * Whether `next` continues a word hyphenated at the end of `text` ("docu-" + "ment" → "document"): a letter before the
 * hyphen and a lower-case letter after it, so "Fusion-" before "In" keeps its hyphen. Shared by the PDF text layer and
 * OCR, so both join lines alike.
 */
export function isHyphenatedBreak(text: string, next: string): boolean {
  return /\p{L}-$/u.test(text) && /^\p{Ll}/u.test(next);
}
