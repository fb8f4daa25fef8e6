import { createHash } from 'node:crypto';
import type { SourceDocument } from './types.js';

/** JSON with object keys sorted, so metadata that differs only in key order hashes the same. */
function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>)
      .filter(([, v]) => v !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(',')}}`;
  }
  return JSON.stringify(value) ?? 'null';
}

/** Layout (pages, headings) counts when present; documents without one hash as they always did. */
export function contentHash(doc: Pick<SourceDocument, 'title' | 'text' | 'metadata' | 'layout'>): string {
  const parts: unknown[] = [doc.title, doc.text, doc.metadata];
  if (doc.layout) parts.push(doc.layout);
  return createHash('sha256').update(canonicalJson(parts)).digest('hex');
}
