/**
 * The metadata filter language: a small MongoDB-like query over each passage's document metadata.
 *
 *   { "lang": "en" }                                  equality (type-strict: "1" ≠ 1 ≠ true)
 *   { "year": { "$gte": 2020, "$lt": 2024 } }         $eq $ne $gt $gte $lt $lte $in $nin $exists $not
 *   { "published": { "$gt": "2024-01-01" } }          ISO 8601 dates compare as instants
 *   { "$or": [ {…}, {…} ] }, { "$and": […] }, { "$not": {…} }
 *   { "source.kind": "pdf" }                          dotted keys address nested objects; `\.` is a literal dot and
 *                                                     `\\` a literal backslash inside a key
 *
 * The parser turns untrusted JSON into a typed tree or fails with the JSON path of the offending part, so the API can
 * answer 400 naming it. Engines compile the tree (SQLite: `filter-sql.ts`); nothing user-supplied reaches SQL text.
 */

import { DomainError, type ErrorKind } from '../common/errors.js';
import { isPlainObject } from '../common/plain-object.js';

export type FilterScalar = string | number | boolean;
export type CompareOp = 'gt' | 'gte' | 'lt' | 'lte';

export type FilterNode =
  | { op: 'and' | 'or'; children: FilterNode[] }
  | { op: 'not'; child: FilterNode }
  | { op: 'eq'; path: string[]; value: FilterScalar }
  | { op: 'in'; path: string[]; values: FilterScalar[] }
  /** `value` is a number, or for `kind: 'date'` the instant in epoch milliseconds. */
  | { op: 'cmp'; path: string[]; cmp: CompareOp; kind: 'number' | 'date'; value: number }
  | { op: 'exists'; path: string[]; value: boolean };

/** Structural bounds: they keep compiled SQL small and below SQLite's expression depth limit. */
export const FILTER_LIMITS = {
  maxDepth: 8,
  maxConditions: 100,
  maxInValues: 1000,
  maxKeyChars: 200,
  maxStringChars: 1000,
} as const;

/** A filter that cannot be evaluated; `path` is where in the filter object the problem is. */
export class FilterSyntaxError extends DomainError {
  override name = 'FilterSyntaxError';
  readonly kind: ErrorKind = 'invalid';
  readonly code: string = 'invalid_request';
  override readonly field = 'filter';
  constructor(
    readonly path: Array<string | number>,
    message: string,
  ) {
    super(message);
  }
}

const COMPARE_OPS: Record<string, CompareOp> = { $gt: 'gt', $gte: 'gte', $lt: 'lt', $lte: 'lte' };
const FIELD_OPERATORS = new Set(['$eq', '$ne', '$in', '$nin', '$exists', '$not', ...Object.keys(COMPARE_OPS)]);

/**
 * A dotted key → its path segments. `.` separates, `\.` and `\\` escape; any other backslash, an empty segment or a
 * NUL character (which SQLite's JSON paths cannot express) is refused.
 */
export function parseKeyPath(key: string): string[] | string {
  if (key.length > FILTER_LIMITS.maxKeyChars) return `key is longer than ${FILTER_LIMITS.maxKeyChars} characters`;
  if (key.includes('\u0000')) return 'key must not contain NUL characters';
  const segments: string[] = [];
  let current = '';
  for (let i = 0; i < key.length; i++) {
    const ch = key[i]!;
    if (ch === '\\') {
      const next = key[i + 1];
      if (next !== '.' && next !== '\\') {
        return 'a backslash in a key must be followed by "." (a literal dot) or "\\" (a literal backslash)';
      }
      current += next;
      i++;
    } else if (ch === '.') {
      segments.push(current);
      current = '';
    } else {
      current += ch;
    }
  }
  segments.push(current);
  if (segments.some((s) => s === '')) return 'key has an empty path segment (use "a.b" for nested keys, "a\\.b" for a literal dot)';
  return segments;
}

const ISO_DATE = /^(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?)?(Z|[+-](\d{2}):?(\d{2}))?$/;

/** An ISO 8601 date or date-time as epoch milliseconds (no zone = UTC); undefined when not one or not a real date. */
export function isoDateToMs(text: string): number | undefined {
  const m = ISO_DATE.exec(text);
  if (!m) return undefined;
  const [year, month, day, hour = 0, minute = 0, second = 0] = [m[1], m[2], m[3], m[4], m[5], m[6]].map((v) =>
    v === undefined ? undefined : Number(v),
  ) as number[];
  const ms = m[7] === undefined ? 0 : Number(m[7].slice(0, 3).padEnd(3, '0'));
  if (month! < 1 || month! > 12 || hour > 23 || minute > 59 || second > 59) return undefined;
  const utc = Date.UTC(year!, month! - 1, day!, hour, minute, second, ms);
  const check = new Date(utc);
  // Date.UTC rolls 2024-02-30 over into March; a real date survives the round trip.
  if (check.getUTCFullYear() !== year || check.getUTCMonth() !== month! - 1 || check.getUTCDate() !== day) return undefined;
  if (year! < 100) return undefined; // Date.UTC maps years 0-99 to 1900-1999
  let offset = 0;
  if (m[8] !== undefined && m[8] !== 'Z') {
    const oh = Number(m[9]);
    const om = Number(m[10]);
    if (oh > 23 || om > 59) return undefined;
    offset = (m[8].startsWith('-') ? -1 : 1) * (oh * 60 + om) * 60_000;
  }
  return utc - offset;
}

class Parser {
  private conditions = 0;

  parse(input: unknown, at: Array<string | number>, depth: number): FilterNode {
    if (!isPlainObject(input)) throw new FilterSyntaxError(at, 'must be a JSON object');
    if (depth > FILTER_LIMITS.maxDepth) throw new FilterSyntaxError(at, `nests deeper than ${FILTER_LIMITS.maxDepth} levels`);
    const children: FilterNode[] = [];
    for (const key of Object.keys(input)) {
      const value = input[key];
      const here = [...at, key];
      if (key === '$and' || key === '$or') {
        if (!Array.isArray(value) || value.length === 0) throw new FilterSyntaxError(here, 'must be a non-empty array of filters');
        const parts = value.map((v, i) => this.parse(v, [...here, i], depth + 1));
        children.push(parts.length === 1 ? parts[0]! : { op: key === '$and' ? 'and' : 'or', children: parts });
      } else if (key === '$not') {
        children.push({ op: 'not', child: this.parse(value, here, depth + 1) });
      } else if (key.startsWith('$')) {
        throw new FilterSyntaxError(here, `unknown operator "${key}" (logical operators: $and, $or, $not)`);
      } else {
        const path = parseKeyPath(key);
        if (typeof path === 'string') throw new FilterSyntaxError(here, path);
        children.push(this.field(path, value, here, depth));
      }
    }
    if (children.length === 0) throw new FilterSyntaxError(at, 'must have at least one condition');
    return children.length === 1 ? children[0]! : { op: 'and', children };
  }

  private count(at: Array<string | number>): void {
    if (++this.conditions > FILTER_LIMITS.maxConditions) {
      throw new FilterSyntaxError(at, `a filter may have at most ${FILTER_LIMITS.maxConditions} conditions`);
    }
  }

  private scalar(value: unknown, at: Array<string | number>): FilterScalar {
    if (typeof value === 'string') {
      if (value.length > FILTER_LIMITS.maxStringChars)
        throw new FilterSyntaxError(at, `is longer than ${FILTER_LIMITS.maxStringChars} characters`);
      return value;
    }
    if (typeof value === 'number' && Number.isFinite(value)) return value;
    if (typeof value === 'boolean') return value;
    throw new FilterSyntaxError(at, 'must be a string, a finite number or a boolean');
  }

  private field(path: string[], value: unknown, at: Array<string | number>, depth: number): FilterNode {
    if (!isPlainObject(value)) {
      this.count(at);
      if (Array.isArray(value))
        throw new FilterSyntaxError(at, 'must be a string, a finite number, a boolean or an operator object (use $in for a list)');
      if (value === null || typeof value === 'object')
        throw new FilterSyntaxError(at, 'must be a string, a finite number, a boolean or an operator object');
      return { op: 'eq', path, value: this.scalar(value, at) };
    }
    if (depth > FILTER_LIMITS.maxDepth) throw new FilterSyntaxError(at, `nests deeper than ${FILTER_LIMITS.maxDepth} levels`);
    const parts: FilterNode[] = [];
    for (const op of Object.keys(value)) {
      const operand = value[op];
      const here = [...at, op];
      if (!FIELD_OPERATORS.has(op)) {
        throw new FilterSyntaxError(here, `unknown operator "${op}" (field operators: ${[...FIELD_OPERATORS].join(', ')})`);
      }
      this.count(here);
      switch (op) {
        case '$eq':
          parts.push({ op: 'eq', path, value: this.scalar(operand, here) });
          break;
        case '$ne':
          parts.push({ op: 'not', child: { op: 'eq', path, value: this.scalar(operand, here) } });
          break;
        case '$in':
        case '$nin': {
          if (!Array.isArray(operand)) throw new FilterSyntaxError(here, 'must be an array of strings, numbers or booleans');
          if (operand.length > FILTER_LIMITS.maxInValues)
            throw new FilterSyntaxError(here, `may list at most ${FILTER_LIMITS.maxInValues} values`);
          const node: FilterNode = { op: 'in', path, values: operand.map((v, i) => this.scalar(v, [...here, i])) };
          parts.push(op === '$in' ? node : { op: 'not', child: node });
          break;
        }
        case '$exists':
          if (typeof operand !== 'boolean') throw new FilterSyntaxError(here, 'must be true or false');
          parts.push({ op: 'exists', path, value: operand });
          break;
        case '$not':
          if (!isPlainObject(operand)) throw new FilterSyntaxError(here, 'must be an operator object, e.g. {"$gt": 3}');
          parts.push({ op: 'not', child: this.field(path, operand, here, depth + 1) });
          break;
        default: {
          const cmp = COMPARE_OPS[op]!;
          if (typeof operand === 'number' && Number.isFinite(operand)) {
            parts.push({ op: 'cmp', path, cmp, kind: 'number', value: operand });
            break;
          }
          const ms = typeof operand === 'string' ? isoDateToMs(operand) : undefined;
          if (ms === undefined) {
            throw new FilterSyntaxError(
              here,
              'must be a finite number or an ISO 8601 date (YYYY-MM-DD, optionally THH:MM[:SS[.sss]] and Z or ±HH:MM)',
            );
          }
          parts.push({ op: 'cmp', path, cmp, kind: 'date', value: ms });
        }
      }
    }
    if (parts.length === 0) throw new FilterSyntaxError(at, 'operator object must have at least one operator');
    return parts.length === 1 ? parts[0]! : { op: 'and', children: parts };
  }
}

/** Validates a metadata filter and returns its tree; errors carry the path below `at`. */
export function parseMetadataFilter(input: unknown, at: Array<string | number> = []): FilterNode {
  return new Parser().parse(input, at, 1);
}
