/**
 * The metadata filter language: parser errors name the offending path; the SQL the store runs selects exactly the
 * passages a plain reference evaluator (written independently of the parser, straight from the language's definition)
 * selects, over random documents and random filters.
 */
import Database from 'better-sqlite3';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { filterToSql, jsonPath, registerFilterFunctions } from '../src/store/filter-sql.js';
import { FilterSyntaxError, isoDateToMs, parseKeyPath, parseMetadataFilter } from '../src/store/filter.js';
import { InvalidFilterError } from '../src/store/index.js';

// ------------------------------------------------------------------------------------------ reference evaluator

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };
const isObject = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v);

function splitKey(key: string): string[] {
  const out: string[] = [];
  let cur = '';
  for (let i = 0; i < key.length; i++) {
    if (key[i] === '\\') cur += key[++i];
    else if (key[i] === '.') {
      out.push(cur);
      cur = '';
    } else cur += key[i];
  }
  out.push(cur);
  return out;
}

function lookup(meta: unknown, key: string): unknown {
  let cur = meta;
  for (const seg of splitKey(key)) {
    if (!isObject(cur) || !Object.hasOwn(cur, seg)) return undefined;
    cur = cur[seg];
  }
  return cur;
}

const sameScalar = (a: unknown, b: unknown) => typeof a === typeof b && a === b;
const asDate = (v: unknown) => (typeof v === 'string' ? isoDateToMs(v) : undefined);

function compare(actual: unknown, op: string, operand: unknown): boolean {
  let a: number | undefined;
  let b: number;
  if (typeof operand === 'number') {
    if (typeof actual !== 'number') return false;
    a = actual;
    b = operand;
  } else {
    a = asDate(actual);
    b = asDate(operand)!;
    if (a === undefined) return false;
  }
  return op === '$gt' ? a > b : op === '$gte' ? a >= b : op === '$lt' ? a < b : a <= b;
}

function fieldMatches(actual: unknown, cond: unknown): boolean {
  if (!isObject(cond)) return sameScalar(actual, cond);
  return Object.entries(cond).every(([op, operand]) => {
    switch (op) {
      case '$eq':
        return sameScalar(actual, operand);
      case '$ne':
        return !sameScalar(actual, operand);
      case '$in':
        return (operand as unknown[]).some((v) => sameScalar(actual, v));
      case '$nin':
        return !(operand as unknown[]).some((v) => sameScalar(actual, v));
      case '$exists':
        return (actual !== undefined) === operand;
      case '$not':
        return !fieldMatches(actual, operand);
      default:
        return compare(actual, op, operand);
    }
  });
}

function matches(meta: unknown, filter: Record<string, unknown>): boolean {
  return Object.entries(filter).every(([key, cond]) => {
    if (key === '$and') return (cond as Array<Record<string, unknown>>).every((f) => matches(meta, f));
    if (key === '$or') return (cond as Array<Record<string, unknown>>).some((f) => matches(meta, f));
    if (key === '$not') return !matches(meta, cond as Record<string, unknown>);
    return fieldMatches(lookup(meta, key), cond);
  });
}

// ------------------------------------------------------------------------------------------ generators

const STORED_KEYS = ['a', 'b', 'n', 'c.d', 'x\\y', 'q"uote', 'é'];
const FILTER_KEYS = ['a', 'b', 'n', 'a.b', 'n.a', 'n.n.a', 'c\\.d', 'x\\\\y', 'q"uote', 'é', 'missing', 'a.a'];
const STRINGS = ['en', 'de', '', '1', '2024-01-05', '2024-01-05T10:00:00Z', '2024-01-05T11:00:00+01:00', '2023-12-31', '2024-02-30'];
const NUMBERS = [-3, -1, 0, 1, 2, 3, 0.5, 2.25, 1000, 2024];
const DATES = ['2024-01-01', '2024-01-05', '2024-01-05T10:00:00Z', '2023-12-31T23:59:59.999Z', '2024-01-05T09:30:00-00:30'];

const scalar = fc.oneof(fc.constantFrom(...STRINGS), fc.constantFrom(...NUMBERS), fc.boolean());
const storedValue: fc.Arbitrary<Json> = fc.letrec<{ value: Json }>((tie) => ({
  value: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    { arbitrary: scalar, weight: 6 },
    fc.constant(null),
    fc.array(scalar, { maxLength: 2 }),
    fc.dictionary(fc.constantFrom(...STORED_KEYS), tie('value'), { maxKeys: 3 }),
  ),
})).value;
const metadata = fc.dictionary(fc.constantFrom(...STORED_KEYS), storedValue, { minKeys: 2, maxKeys: 6 });

const operand = fc
  .oneof(
    scalar,
    fc.record({ $eq: scalar }),
    fc.record({ $ne: scalar }),
    fc.record({ $in: fc.array(scalar, { minLength: 0, maxLength: 4 }) }),
    fc.record({ $nin: fc.array(scalar, { maxLength: 3 }) }),
    fc.record({ $exists: fc.boolean() }),
    fc.record({ $gt: fc.constantFrom(...NUMBERS) }, { requiredKeys: [] }),
    fc.record({ $gte: fc.constantFrom(...NUMBERS), $lt: fc.constantFrom(...NUMBERS) }),
    fc.record({ $lte: fc.constantFrom(...DATES) }),
    fc.record({ $gt: fc.constantFrom(...DATES), $lte: fc.constantFrom(...DATES) }),
    fc.record({ $not: fc.record({ $gte: fc.constantFrom(...NUMBERS) }) }),
    fc.record({ $not: fc.record({ $in: fc.array(scalar, { maxLength: 2 }) }) }),
  )
  .filter((o) => !isObject(o) || Object.keys(o).length > 0);

const filterArb = fc
  .letrec<{ filter: Record<string, unknown> }>((tie) => ({
    filter: fc.oneof(
      { depthSize: 'small', withCrossShrink: true },
      { arbitrary: fc.dictionary(fc.constantFrom(...FILTER_KEYS), operand, { minKeys: 1, maxKeys: 2 }), weight: 3 },
      fc.record({ $and: fc.array(tie('filter'), { minLength: 1, maxLength: 3 }) }),
      fc.record({ $or: fc.array(tie('filter'), { minLength: 1, maxLength: 3 }) }),
      fc.record({ $not: tie('filter') }),
    ),
  }))
  .filter.filter((f) => !isObject(f) || Object.keys(f).length > 0);

function sqliteWith(docs: Array<Record<string, Json>>): Database.Database {
  const db = new Database(':memory:');
  registerFilterFunctions(db);
  db.exec('CREATE TABLE passages (label INTEGER PRIMARY KEY, doc_id TEXT NOT NULL, metadata TEXT NOT NULL)');
  const insert = db.prepare('INSERT INTO passages (label, doc_id, metadata) VALUES (?, ?, ?)');
  docs.forEach((m, i) => insert.run(i + 1, `d${i}`, JSON.stringify(m)));
  return db;
}

// ------------------------------------------------------------------------------------------ tests

describe('filter SQL against the reference evaluator', () => {
  it('selects exactly the passages the reference evaluator selects (random documents and filters)', () => {
    fc.assert(
      fc.property(fc.array(metadata, { minLength: 1, maxLength: 25 }), filterArb, (docs, filter) => {
        const db = sqliteWith(docs);
        try {
          const { where, params } = filterToSql({ metadata: filter });
          const got = (
            db
              .prepare(`SELECT label FROM passages p WHERE ${where} ORDER BY label`)
              .pluck()
              .all(...params) as number[]
          ).map((l) => l - 1);
          // What the store holds is the JSON round trip of the metadata.
          const stored = docs.map((d) => JSON.parse(JSON.stringify(d)) as unknown);
          const expected = stored.flatMap((m, i) => (matches(m, filter) ? [i] : []));
          expect(got, JSON.stringify({ filter, docs })).toEqual(expected);
        } finally {
          db.close();
        }
      }),
      { numRuns: 400, seed: 11 },
    );
  });

  it('every filter selects something for some documents and nothing for others (the generators are not vacuous)', () => {
    const samples = fc.sample(fc.tuple(fc.array(metadata, { minLength: 20, maxLength: 20 }), filterArb), { numRuns: 200, seed: 5 });
    let some = 0;
    let none = 0;
    for (const [docs, filter] of samples) {
      const hits = docs.filter((d) => matches(JSON.parse(JSON.stringify(d)), filter)).length;
      if (hits > 0 && hits < docs.length) some++;
      if (hits === 0) none++;
    }
    expect(some).toBeGreaterThan(30);
    expect(none).toBeLessThan(150);
  });

  it('nested keys, escaped dots and backslashes, quotes and non-ASCII keys address exactly their value', () => {
    const docs: Array<Record<string, Json>> = [
      { a: { b: 1 } },
      { 'a.b': 1 },
      { 'a\\': 1 },
      { 'a\\b': 1, 'q"': 'x', '😀': true, '[0]': 1, $: 1 },
    ];
    const db = sqliteWith(docs);
    const select = (metadata: Record<string, unknown>) => {
      const { where, params } = filterToSql({ metadata });
      return db
        .prepare(`SELECT label FROM passages p WHERE ${where}`)
        .pluck()
        .all(...params);
    };
    expect(select({ 'a.b': 1 })).toEqual([1]);
    expect(select({ 'a\\.b': 1 })).toEqual([2]);
    expect(select({ 'a\\\\': 1 })).toEqual([3]);
    expect(select({ 'a\\\\b': 1 })).toEqual([4]);
    expect(select({ 'q"': 'x' })).toEqual([4]);
    expect(select({ '😀': true })).toEqual([4]);
    expect(select({ '[0]': 1 })).toEqual([4]);
    db.close();
  });
});

describe('filter parser', () => {
  const errorAt = (filter: unknown): { path: string; message: string } => {
    try {
      parseMetadataFilter(filter);
    } catch (err) {
      if (err instanceof FilterSyntaxError) return { path: err.path.join('.'), message: err.message };
      throw err;
    }
    throw new Error(`accepted ${JSON.stringify(filter)}`);
  };

  it('names the offending part of a malformed filter', () => {
    expect(errorAt({ 'a\\': 1 }).path).toBe('a\\');
    expect(errorAt({ 'a\\': 1 }).message).toMatch(/backslash/);
    expect(errorAt({ 'a..b': 1 }).path).toBe('a..b');
    expect(errorAt({ '': 1 }).path).toBe('');
    expect(errorAt({ 'a\u0000': 1 }).message).toMatch(/NUL/);
    expect(errorAt({ year: { $gt: 'soon' } })).toEqual({ path: 'year.$gt', message: expect.stringMatching(/ISO 8601/) });
    expect(errorAt({ year: { $gt: '2024-02-30' } }).path).toBe('year.$gt');
    expect(errorAt({ $or: [{ a: 1 }, { b: { $regex: 'x' } }] }).path).toBe('$or.1.b.$regex');
    expect(errorAt({ $or: [] }).path).toBe('$or');
    expect(errorAt({ $nor: [] }).path).toBe('$nor');
    expect(errorAt({ a: { $in: 'x' } }).path).toBe('a.$in');
    expect(errorAt({ a: { $in: [1, null] } }).path).toBe('a.$in.1');
    expect(errorAt({ a: { $exists: 1 } }).path).toBe('a.$exists');
    expect(errorAt({ a: { $not: 3 } }).path).toBe('a.$not');
    expect(errorAt({ a: null }).path).toBe('a');
    expect(errorAt({ a: ['x'] }).message).toMatch(/\$in/);
    expect(errorAt({ a: {} }).path).toBe('a');
    expect(errorAt({ $not: { $not: { $not: { $not: { $not: { $not: { $not: { $not: { a: 1 } } } } } } } } }).message).toMatch(/deeper/);
    const many = Object.fromEntries(Array.from({ length: 101 }, (_, i) => [`k${i}`, i]));
    expect(errorAt(many).message).toMatch(/at most 100 conditions/);
  });

  it('key paths: dots separate, backslash escapes only a dot or a backslash', () => {
    expect(parseKeyPath('a.b.c')).toEqual(['a', 'b', 'c']);
    expect(parseKeyPath('a\\.b')).toEqual(['a.b']);
    expect(parseKeyPath('a\\\\.b')).toEqual(['a\\', 'b']);
    expect(typeof parseKeyPath('a\\b')).toBe('string');
    expect(typeof parseKeyPath('a.')).toBe('string');
  });

  it('ISO dates: zones, fractions and impossible dates', () => {
    expect(isoDateToMs('2024-01-05')).toBe(Date.UTC(2024, 0, 5));
    expect(isoDateToMs('2024-01-05T11:00:00+01:00')).toBe(Date.UTC(2024, 0, 5, 10));
    expect(isoDateToMs('2024-01-05T10:00:00.5Z')).toBe(Date.UTC(2024, 0, 5, 10, 0, 0, 500));
    for (const bad of ['2024-02-30', '2024-13-01', '2024-01-05T24:00', '05/01/2024', '2024-1-5', ''])
      expect(isoDateToMs(bad)).toBeUndefined();
  });

  it('the store refuses what the parser refuses, naming the path under filter.metadata', () => {
    expect(() => filterToSql({ metadata: { 'a\\': 1 } })).toThrow(InvalidFilterError);
    expect(() => filterToSql({ metadata: { 'a\\': 1 } })).toThrow(/^filter\.metadata\.a\\: /);
  });

  it('keys never reach the SQL text', () => {
    const { where, params } = filterToSql({ metadata: { "x') OR 1=1 --": 1, 'a"b\\\\': { $in: ["'", '"'] } } });
    expect(where).not.toMatch(/OR 1=1|a"b/);
    expect(params).toContain(jsonPath(["x') OR 1=1 --"]));
  });
});
