import { describe, expect, it } from 'vitest';
import { citationsFrom } from '../src/service/citations.js';

const passages = ['a', 'b', 'c', 'd'].map((id) => ({ passageId: `${id}#0`, docId: id, title: id.toUpperCase(), text: `Passage ${id}.` }));

describe('citations from cross-attention shares', () => {
  it('cites the passages at or above the share, strongest first, with scores renormalised to sum to 1', () => {
    const cited = citationsFrom(passages, [0.1, 0.5, 0.3, 0.1], 0.25, 'answer');
    expect(cited.map((c) => c.docId)).toEqual(['b', 'c']);
    // 0.5 / (0.5 + 0.3) = 0.625 and 0.3 / 0.8 = 0.375.
    expect(cited[0]!.score).toBeCloseTo(0.625, 12);
    expect(cited[1]!.score).toBeCloseTo(0.375, 12);
    expect(cited.map((c) => c.attention)).toEqual([0.5, 0.3]);
  });

  it('always cites the strongest passage, even when attention is spread below the share', () => {
    const cited = citationsFrom(passages, [0.24, 0.26, 0.25, 0.25], 0.5, 'answer');
    expect(cited).toHaveLength(1);
    expect(cited[0]).toMatchObject({ docId: 'b', score: 1, attention: 0.26 });
  });

  it('gives a citation an answer span only when its passage contains the answer', () => {
    const cited = citationsFrom(passages, [0.1, 0.5, 0.3, 0.1], 0.25, 'passage C');
    expect(cited.map((c) => [c.docId, c.answerSpan])).toEqual([
      ['b', undefined],
      ['c', { start: 0, end: 9 }],
    ]);
  });

  it('cites nothing when there are no passages', () => {
    expect(citationsFrom([], [], 0.15, 'answer')).toEqual([]);
  });
});
