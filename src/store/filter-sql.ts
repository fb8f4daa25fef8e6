import { InvalidFilterError } from './errors.js';
import type { SearchFilter } from './types.js';

export interface SqlFragment {
  /** A boolean SQL expression over the passages table aliased as `p`; '1' when nothing is filtered. */
  where: string;
  params: Array<string | number>;
}

/** Top-level keys only: the key is quoted into a JSON path, and JSON paths have no escape for a double quote. */
function jsonPath(key: string): string {
  if (key === '' || /["\u0000-\u001f]/.test(key)) {
    throw new InvalidFilterError(`metadata filter key ${JSON.stringify(key)} is not allowed (empty, quote or control character)`);
  }
  return `$."${key}"`;
}

/**
 * Filter → parameterised SQL. User values and keys only ever travel as bound parameters; the SQL text is fixed per
 * filter shape. Values match type-strictly (the string "1" does not match the number 1 or true).
 */
export function filterToSql(filter: SearchFilter | undefined): SqlFragment {
  const clauses: string[] = [];
  const params: Array<string | number> = [];
  if (filter?.docIds !== undefined) {
    if (!Array.isArray(filter.docIds) || filter.docIds.some((id) => typeof id !== 'string')) {
      throw new InvalidFilterError('filter.docIds must be an array of strings');
    }
    clauses.push('p.doc_id IN (SELECT value FROM json_each(?))');
    params.push(JSON.stringify(filter.docIds));
  }
  for (const [key, value] of Object.entries(filter?.metadata ?? {})) {
    const path = jsonPath(key);
    if (typeof value === 'boolean') {
      clauses.push('json_type(p.metadata, ?) = ?');
      params.push(path, value ? 'true' : 'false');
    } else if (typeof value === 'number' && Number.isFinite(value)) {
      clauses.push("(json_type(p.metadata, ?) IN ('integer', 'real') AND json_extract(p.metadata, ?) = ?)");
      params.push(path, path, value);
    } else if (typeof value === 'string') {
      clauses.push("(json_type(p.metadata, ?) = 'text' AND json_extract(p.metadata, ?) = ?)");
      params.push(path, path, value);
    } else {
      throw new InvalidFilterError(`metadata filter value for ${JSON.stringify(key)} must be a string, finite number or boolean`);
    }
  }
  return { where: clauses.length > 0 ? clauses.join(' AND ') : '1', params };
}

export function isEmptyFilter(filter: SearchFilter | undefined): boolean {
  return filter === undefined || (filter.docIds === undefined && Object.keys(filter.metadata ?? {}).length === 0);
}
