import type Database from 'better-sqlite3';
import { InvalidFilterError } from './errors.js';
import { FilterSyntaxError, isoDateToMs, parseMetadataFilter, type FilterNode, type FilterScalar } from './filter.js';
import type { SearchFilter } from './types.js';

export interface SqlFragment {
  /** A boolean SQL expression over the passages table aliased as `p`; '1' when nothing is filtered. */
  where: string;
  params: Array<string | number>;
}

/** The SQL function dates are compared through, so SQL and the language's definition of a date cannot disagree. */
const ISO_MS_FUNCTION = 'rag_iso_ms';

/** Registers the functions compiled filters call; every connection that runs filters needs it once. */
export function registerFilterFunctions(db: Database.Database): void {
  db.function(ISO_MS_FUNCTION, { deterministic: true }, (value: unknown) =>
    typeof value === 'string' ? (isoDateToMs(value) ?? null) : null,
  );
}

/**
 * Path segments → an SQLite JSON path. Every character but [A-Za-z0-9_] is written as a \uXXXX escape inside a
 * quoted label (SQLite decodes those), so no key — quotes, backslashes, brackets, dots — can change the path's shape.
 */
export function jsonPath(segments: string[]): string {
  let path = '$';
  for (const segment of segments) {
    let label = '';
    for (let i = 0; i < segment.length; i++) {
      const ch = segment[i]!;
      label += /[A-Za-z0-9_]/.test(ch) ? ch : `\\u${segment.charCodeAt(i).toString(16).padStart(4, '0')}`;
    }
    path += `."${label}"`;
  }
  return path;
}

const CMP_SQL = { gt: '>', gte: '>=', lt: '<', lte: '<=' } as const;

/**
 * Each condition compiles to an expression that is exactly 0 or 1 (never NULL), so NOT and OR behave as in the
 * language's definition: a comparison on a missing or differently typed value is false, and its negation true.
 */
class SqlCompiler {
  readonly params: Array<string | number> = [];

  compile(node: FilterNode): string {
    switch (node.op) {
      case 'and':
      case 'or':
        return `(${node.children.map((c) => this.compile(c)).join(node.op === 'and' ? ' AND ' : ' OR ')})`;
      case 'not':
        return `(NOT ${this.compile(node.child)})`;
      case 'exists':
        return `(json_type(p.metadata, ${this.param(jsonPath(node.path))}) IS ${node.value ? 'NOT ' : ''}NULL)`;
      case 'eq':
        return this.equals(node.path, node.value);
      case 'in':
        return this.oneOf(node.path, node.values);
      case 'cmp': {
        const path = jsonPath(node.path);
        const op = CMP_SQL[node.cmp];
        if (node.kind === 'number') {
          const type = `json_type(p.metadata, ${this.param(path)})`;
          return `IFNULL(${type} IN ('integer', 'real') AND json_extract(p.metadata, ${this.param(path)}) ${op} ${this.param(node.value)}, 0)`;
        }
        const type = `json_type(p.metadata, ${this.param(path)})`;
        return `IFNULL(${type} = 'text' AND ${ISO_MS_FUNCTION}(json_extract(p.metadata, ${this.param(path)})) ${op} ${this.param(node.value)}, 0)`;
      }
    }
  }

  private param(value: string | number): string {
    this.params.push(value);
    return '?';
  }

  private equals(segments: string[], value: FilterScalar): string {
    const path = jsonPath(segments);
    if (typeof value === 'boolean') return `IFNULL(json_type(p.metadata, ${this.param(path)}) = ${this.param(String(value))}, 0)`;
    const types = typeof value === 'number' ? "IN ('integer', 'real')" : "= 'text'";
    return `IFNULL(json_type(p.metadata, ${this.param(path)}) ${types} AND json_extract(p.metadata, ${this.param(path)}) = ${this.param(value)}, 0)`;
  }

  /** Lists travel as one JSON parameter per type, so the SQL text does not grow with the list. */
  private oneOf(segments: string[], values: FilterScalar[]): string {
    const path = jsonPath(segments);
    const strings = values.filter((v): v is string => typeof v === 'string');
    const numbers = values.filter((v): v is number => typeof v === 'number');
    const booleans = [...new Set(values.filter((v): v is boolean => typeof v === 'boolean').map(String))];
    const alternatives: string[] = [];
    if (strings.length > 0) {
      alternatives.push(
        `(json_type(p.metadata, ${this.param(path)}) = 'text' AND json_extract(p.metadata, ${this.param(path)}) IN (SELECT value FROM json_each(${this.param(JSON.stringify(strings))})))`,
      );
    }
    if (numbers.length > 0) {
      alternatives.push(
        `(json_type(p.metadata, ${this.param(path)}) IN ('integer', 'real') AND json_extract(p.metadata, ${this.param(path)}) IN (SELECT value FROM json_each(${this.param(JSON.stringify(numbers))})))`,
      );
    }
    for (const b of booleans) alternatives.push(`json_type(p.metadata, ${this.param(path)}) = ${this.param(b)}`);
    if (alternatives.length === 0) return '0';
    return `IFNULL(${alternatives.join(' OR ')}, 0)`;
  }
}

/** The metadata part of a filter as a tree; a malformed one is an InvalidFilterError naming where. */
export function metadataFilterTree(metadata: unknown): FilterNode {
  try {
    return parseMetadataFilter(metadata);
  } catch (err) {
    if (err instanceof FilterSyntaxError) {
      const where = ['filter', 'metadata', ...err.path].join('.');
      throw new InvalidFilterError(`${where}: ${err.message}`, { cause: err });
    }
    throw err;
  }
}

/**
 * Filter → parameterised SQL. User values and keys only ever travel as bound parameters; the SQL text depends only on
 * the filter's shape. Values match type-strictly (the string "1" does not match the number 1 or true).
 */
export function filterToSql(filter: SearchFilter | undefined): SqlFragment {
  const clauses: string[] = [];
  const compiler = new SqlCompiler();
  if (filter?.docIds !== undefined) {
    if (!Array.isArray(filter.docIds) || filter.docIds.some((id) => typeof id !== 'string')) {
      throw new InvalidFilterError('filter.docIds must be an array of strings');
    }
    clauses.push('p.doc_id IN (SELECT value FROM json_each(?))');
    compiler.params.push(JSON.stringify(filter.docIds));
  }
  if (!isEmptyMetadata(filter?.metadata)) clauses.push(compiler.compile(metadataFilterTree(filter!.metadata)));
  return { where: clauses.length > 0 ? clauses.join(' AND ') : '1', params: compiler.params };
}

function isEmptyMetadata(metadata: unknown): boolean {
  return (
    metadata === undefined ||
    (metadata !== null && typeof metadata === 'object' && !Array.isArray(metadata) && Object.keys(metadata).length === 0)
  );
}

export function isEmptyFilter(filter: SearchFilter | undefined): boolean {
  return filter === undefined || (filter.docIds === undefined && isEmptyMetadata(filter.metadata));
}
