/**
 * walkJson is the one walk behind the metadata checks (src/api/schemas.ts) and the parser thread's depth limit
 * (src/ingest/formats/json-text.ts): it must count depth as both expect, visit in document order with the right paths,
 * and survive values nested far past the call stack.
 */
import { describe, expect, it } from 'vitest';
import { walkJson, type JsonKey } from '../src/common/json-walk.js';

const nested = (levels: number, open: string, close: string) => JSON.parse(open.repeat(levels) + '1' + close.repeat(levels)) as unknown;

describe('walkJson', () => {
  it('counts the top-level array or object as one level; scalars add none', () => {
    for (const scalar of [1, 'x', null, true]) expect(walkJson(scalar, 0)).toBe(false);
    expect(walkJson({}, 0)).toBe(true);
    expect(walkJson({}, 1)).toBe(false);
    expect(walkJson({ a: { b: [1] } }, 3)).toBe(false);
    expect(walkJson({ a: { b: [1] } }, 2)).toBe(true);
    expect(walkJson({ a: { b: [] } }, 2)).toBe(true);
    expect(walkJson(nested(1000, '[', ']'), 1000)).toBe(false);
    expect(walkJson(nested(1001, '[', ']'), 1000)).toBe(true);
  });

  it('visits every value in document order, each with its key and path', () => {
    const seen: Array<[JsonKey | undefined, JsonKey[]]> = [];
    const deep = walkJson({ a: [10, { b: 'x' }], c: null }, 10, (node) => seen.push([node.key, node.path()]));
    expect(deep).toBe(false);
    expect(seen).toEqual([
      [undefined, []],
      ['a', ['a']],
      [0, ['a', 0]],
      [1, ['a', 1]],
      ['b', ['a', 1, 'b']],
      ['c', ['c']],
    ]);
  });

  it('stops at the first value nested too deep', () => {
    const keys: Array<JsonKey | undefined> = [];
    expect(walkJson({ a: { b: { c: 1 } }, z: 2 }, 2, (node) => keys.push(node.key))).toBe(true);
    expect(keys).toEqual([undefined, 'a', 'b']);
  });

  it('sees a "__proto__" key parsed as an own property', () => {
    const keys: Array<JsonKey | undefined> = [];
    walkJson(JSON.parse('{"__proto__": {"polluted": true}}'), 10, (node) => keys.push(node.key));
    expect(keys).toEqual([undefined, '__proto__', 'polluted']);
  });

  it('walks values nested 100,000 deep without overflowing the stack', () => {
    for (const value of [nested(100_000, '[', ']'), nested(100_000, '{"a":', '}')]) {
      expect(walkJson(value, 1000)).toBe(true);
      expect(walkJson(value, Infinity)).toBe(false);
    }
  });
});
