import path from 'node:path';
import { AutoTokenizer, env, type PreTrainedTokenizer } from '@xenova/transformers';
import { beforeAll, describe, expect, it } from 'vitest';
import { chunkDocument, chunkText, tokenCounter, type CountTokens, type TextChunk } from '../src/ingest/index.js';
import { REPO_ROOT } from './helpers/fixtures.js';

// Real tokenizers (no weights needed): WordPiece from bge-small, SentencePiece from flan-t5.
const SHARED_MODELS = path.resolve(REPO_ROOT, '../shared/models');

let bert: PreTrainedTokenizer;
let t5: PreTrainedTokenizer;
let countBert: CountTokens;

beforeAll(async () => {
  env.localModelPath = SHARED_MODELS;
  env.allowRemoteModels = false;
  bert = await AutoTokenizer.from_pretrained('bge-small-en-v1.5');
  t5 = await AutoTokenizer.from_pretrained('flan-t5-small');
  countBert = tokenCounter(bert);
});

const SENTENCES = [
  'The Amazon rainforest covers much of the Amazon basin of South America.',
  'This basin encompasses seven million square kilometres, of which five and a half million are covered by the rainforest.',
  'The region includes territory belonging to nine nations and 3,344 formally acknowledged indigenous territories.',
  'The majority of the forest is contained within Brazil, with 60% of the rainforest, followed by Peru with 13%.',
  'Deforestation is the conversion of forested areas to non-forested areas.',
  'The main sources of deforestation in the Amazon are human settlement and development of the land.',
];

function corpusText(paragraphs: number): string {
  const out: string[] = [];
  for (let p = 0; p < paragraphs; p++) {
    const rotated = SENTENCES.slice(p % SENTENCES.length).concat(SENTENCES.slice(0, p % SENTENCES.length));
    out.push(`Paragraph ${p}. ${rotated.join(' ')}`);
  }
  return out.join('\n\n');
}

/** Every non-whitespace character of the text lies in some chunk, chunks advance monotonically. */
function expectCoverage(text: string, chunks: TextChunk[]): void {
  const covered = new Uint8Array(text.length);
  let lastStart = -1;
  let lastEnd = -1;
  for (const c of chunks) {
    expect(c.text).toBe(text.slice(c.start, c.end));
    expect(c.start).toBeGreaterThan(lastStart);
    expect(c.end).toBeGreaterThan(lastEnd);
    lastStart = c.start;
    lastEnd = c.end;
    covered.fill(1, c.start, c.end);
  }
  for (let i = 0; i < text.length; i++) {
    if (!/\s/.test(text[i]!)) expect(covered[i], `character ${i} (${JSON.stringify(text[i])}) not covered`).toBe(1);
  }
}

describe('chunkText', () => {
  it('covers the text in order with exact spans and respects the token budget', () => {
    const text = corpusText(12);
    const chunks = chunkText(text, countBert, { maxTokens: 64, overlapTokens: 0 });
    expect(chunks.length).toBeGreaterThan(5);
    expectCoverage(text, chunks);
    for (const c of chunks) {
      expect(c.tokens).toBe(countBert(c.text));
      expect(c.tokens).toBeLessThanOrEqual(64);
    }
    // Without overlap, chunks do not share characters.
    for (let i = 1; i < chunks.length; i++) expect(chunks[i]!.start).toBeGreaterThanOrEqual(chunks[i - 1]!.end);
  });

  it('cuts at sentence boundaries when sentences fit the budget', () => {
    const text = corpusText(6);
    const chunks = chunkText(text, countBert, { maxTokens: 80, overlapTokens: 0 });
    for (const c of chunks) {
      // Each chunk ends with the end of a sentence (all our sentences end with a period).
      expect(c.text.trimEnd().endsWith('.')).toBe(true);
      const before = text.slice(0, c.start).trimEnd();
      expect(before === '' || before.endsWith('.')).toBe(true);
    }
  });

  it('repeats up to overlapTokens of the previous passage at the start of the next', () => {
    const text = corpusText(10);
    const overlap = 24;
    const chunks = chunkText(text, countBert, { maxTokens: 72, overlapTokens: overlap });
    expectCoverage(text, chunks);
    let overlapping = 0;
    for (let i = 1; i < chunks.length; i++) {
      const prev = chunks[i - 1]!;
      const cur = chunks[i]!;
      expect(cur.tokens).toBeLessThanOrEqual(72);
      if (cur.start < prev.end) {
        overlapping++;
        const shared = text.slice(cur.start, prev.end);
        expect(countBert(shared)).toBeLessThanOrEqual(overlap);
        expect(countBert(shared)).toBeGreaterThan(0);
      }
    }
    // With sentences of ~15-25 tokens and a 24-token overlap, most boundaries share text.
    expect(overlapping).toBeGreaterThan(chunks.length / 2);
  });

  it('splits a sentence longer than the budget at word boundaries, mapped back to character spans', () => {
    const longSentence = Array.from({ length: 120 }, (_, i) => `word${i} alpha beta`).join(' ') + '.';
    const text = `Short intro sentence. ${longSentence} Short outro.`;
    const chunks = chunkText(text, countBert, { maxTokens: 40, overlapTokens: 8 });
    expectCoverage(text, chunks);
    for (const c of chunks) {
      expect(c.tokens).toBeLessThanOrEqual(40);
      // Cut between words: a chunk never starts or ends inside a word.
      expect(c.start === 0 || /\s/.test(text[c.start - 1]!)).toBe(true);
      expect(c.end === text.length || /\s/.test(text[c.end]!)).toBe(true);
    }
  });

  it('splits a single token run longer than the budget (no spaces) inside the word', () => {
    const blob = 'x7Qz'.repeat(200);
    const text = `Before. ${blob} After.`;
    const chunks = chunkText(text, countBert, { maxTokens: 32, overlapTokens: 4 });
    expectCoverage(text, chunks);
    for (const c of chunks) expect(c.tokens).toBeLessThanOrEqual(32);
    expect(chunks.length).toBeGreaterThan(Math.floor(countBert(blob) / 32));
  });

  it('never cuts inside a surrogate pair', () => {
    const text = '😀'.repeat(300);
    const chunks = chunkText(text, countBert, { maxTokens: 20, overlapTokens: 0 });
    expectCoverage(text, chunks);
    for (const c of chunks) {
      expect(c.text.isWellFormed()).toBe(true);
      expect(c.tokens).toBeLessThanOrEqual(20);
    }
  });

  it('works with a SentencePiece tokenizer too', () => {
    const count = tokenCounter(t5);
    const text = corpusText(8);
    const chunks = chunkText(text, count, { maxTokens: 50, overlapTokens: 10 });
    expectCoverage(text, chunks);
    for (const c of chunks) expect(c.tokens).toBeLessThanOrEqual(50);
  });

  it('returns no passages for empty or whitespace-only text and one for a short text', () => {
    expect(chunkText('', countBert, { maxTokens: 50, overlapTokens: 10 })).toEqual([]);
    expect(chunkText(' \n\t ', countBert, { maxTokens: 50, overlapTokens: 10 })).toEqual([]);
    const one = chunkText('  Just one sentence.  ', countBert, { maxTokens: 50, overlapTokens: 10 });
    expect(one).toHaveLength(1);
    expect(one[0]!.text).toBe('Just one sentence.');
    expect(one[0]!.start).toBe(2);
  });

  it('rejects an overlap that does not leave room for new text', () => {
    expect(() => chunkText('a b c', countBert, { maxTokens: 10, overlapTokens: 10 })).toThrow(RangeError);
    expect(() => chunkText('a b c', countBert, { maxTokens: 0, overlapTokens: 0 })).toThrow(RangeError);
  });
});

describe('chunkDocument', () => {
  it('gives stable ids, chunk numbers, title, metadata and offsets', () => {
    const doc = { id: 'docs/rainforest.md', title: 'Rainforest', text: corpusText(5), metadata: { lang: 'en' } };
    const a = chunkDocument(doc, countBert, { maxTokens: 60, overlapTokens: 12 });
    const b = chunkDocument({ ...doc }, countBert, { maxTokens: 60, overlapTokens: 12 });
    expect(a).toEqual(b);
    expect(a.length).toBeGreaterThan(2);
    a.forEach((p, i) => {
      expect(p.id).toBe(`docs/rainforest.md#${i}`);
      expect(p.chunkNo).toBe(i);
      expect(p.docId).toBe(doc.id);
      expect(p.title).toBe('Rainforest');
      expect(p.metadata).toEqual({ lang: 'en' });
      expect(doc.text.slice(p.charStart, p.charEnd)).toBe(p.text);
    });
  });
});
