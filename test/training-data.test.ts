/**
 * The training data: the fact-lookup generator's guarantees, and FiD examples built through the real system (BM25 and
 * dense retrieval over a collection of the contexts) with the server's own input format and tokenizer.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseSquad } from '../src/eval/index.js';
import { loadReaderTokenizer, type ReaderTokenizer } from '../src/models/index.js';
import { openSystem, type RagService } from '../src/service/index.js';
import { factLookupAsSquad, generateFactLookup } from '../src/training/fact-lookup.js';
import { buildFidExamples, serviceExampleSource, type FidExample } from '../src/training/fid-examples.js';
import type { SearchMode } from '../src/retrieval/index.js';
import { fixtureConfig } from './helpers/config.js';
import { FIXTURES_DIR, T5_TINY } from './helpers/fixtures.js';

const words = (names: string[]) => new Set(names.flatMap((n) => n.split(' ')));

describe('the fact-lookup generator', () => {
  const train = generateFactLookup({ split: 'train', people: 400, questionsPerPerson: 2, seed: 1 });
  const test = generateFactLookup({ split: 'test', people: 400, questionsPerPerson: 2, seed: 1 });

  it('is deterministic', () => {
    expect(generateFactLookup({ split: 'train', people: 400, questionsPerPerson: 2, seed: 1 })).toEqual(train);
    expect(generateFactLookup({ split: 'train', people: 400, questionsPerPerson: 2, seed: 2 })).not.toEqual(train);
  });

  it('never uses a name of the training split at test time', () => {
    const seen = words(train.passages.map((p) => p.title));
    const unseen = [...words(test.passages.map((p) => p.title))].filter((w) => seen.has(w));
    expect(unseen).toEqual([]);
  });

  it('states each answer in the one passage about the person asked for, beside people sharing surnames', () => {
    for (const set of [train, test]) {
      const byId = new Map(set.passages.map((p) => [p.id, p]));
      const titles = set.passages.map((p) => p.title);
      expect(new Set(titles).size).toBe(titles.length);
      for (const q of set.questions) {
        const passage = byId.get(q.passageId)!;
        expect(q.question).toContain(passage.title);
        expect(passage.text).toMatch(new RegExp(`\\b${q.answer}\\b`));
      }
      const surnames = titles.map((t) => t.split(' ').at(-1));
      expect(new Set(surnames).size).toBeLessThan(0.8 * surnames.length);
    }
  });

  it('varies the phrasing: several statements and questions per attribute, pronouns for the name', () => {
    const shapes = new Map<string, Set<string>>();
    for (const q of train.questions) {
      const shape = q.question.replace(/[A-Z][a-z]+ [A-Z][a-z]+/, 'E');
      shapes.set(q.attribute, (shapes.get(q.attribute) ?? new Set()).add(shape));
    }
    expect(shapes.size).toBe(8);
    for (const [attribute, forms] of shapes) expect(forms.size, attribute).toBeGreaterThanOrEqual(3);
    expect(train.passages.some((p) => /\b(He|She) /.test(p.text))).toBe(true);
    expect(train.passages.some((p) => /\b(Mr|Ms) /.test(p.text))).toBe(true);
    expect(train.passages.every((p) => !/\ba [aeiou]/.test(p.text))).toBe(true);
  });

  it('converts to SQuAD with answer offsets into the context', () => {
    const squad = parseSquad(factLookupAsSquad(test), 'facts');
    expect(squad.questions).toHaveLength(test.questions.length);
    const raw = factLookupAsSquad(test) as {
      data: Array<{ paragraphs: Array<{ context: string; qas: Array<{ answers: Array<{ text: string; answer_start: number }> }> }> }>;
    };
    for (const paragraph of raw.data.flatMap((d) => d.paragraphs)) {
      for (const a of paragraph.qas.flatMap((q) => q.answers)) {
        expect(paragraph.context.slice(a.answer_start, a.answer_start + a.text.length)).toBe(a.text);
      }
    }
  });
});

describe('FiD examples built by the product’s retrieval and tokenizer', () => {
  const set = generateFactLookup({ split: 'test', people: 40, questionsPerPerson: 2, seed: 5 });
  const squad = parseSquad(factLookupAsSquad(set), 'facts');
  let service: RagService;
  let reader: ReaderTokenizer;

  beforeAll(async () => {
    const config = fixtureConfig({ server: { ingestCorpusOnStart: false } });
    service = await openSystem(config, {
      writable: true,
      verify: false,
      reader: false,
      loadEmbedder: 'lazy',
      prepareDefaultCollection: true,
    });
    await service.ingestDocuments(
      squad.paragraphs.map((p) => ({ id: p.id, title: p.title, text: p.context, metadata: {} })),
      { progress: false },
    );
    reader = await loadReaderTokenizer(T5_TINY, { modelsDir: FIXTURES_DIR, allowRemote: false, maxInputTokens: 512 });
  });

  afterAll(async () => {
    await service?.close();
  });

  async function build(k: number, mode: SearchMode) {
    const source = serviceExampleSource(service);
    const stats = { goldRetrieved: 0, examples: 0 };
    const examples: FidExample[] = [];
    const fidOptions = { k, mode, tokenizer: reader.tokenizer, config: reader.config };
    for await (const e of buildFidExamples(squad, source, fidOptions, stats)) examples.push(e);
    return { examples, stats };
  }

  it('tokenises every passage in the reader’s input format, closing EOS included', async () => {
    const { examples, stats } = await build(5, 'bm25');
    expect(stats.examples).toBe(squad.questions.length);
    for (const e of examples.slice(0, 20)) {
      expect(e.passages.length).toBeLessThanOrEqual(5);
      expect(e.target.at(-1)).toBe(reader.config.eos_token_id);
      expect(reader.tokenizer.decode(e.target, { skip_special_tokens: true })).toBe(e.answers[0]);
      for (const p of e.passages) {
        expect(p.input_ids.at(-1)).toBe(reader.config.eos_token_id);
        expect(reader.tokenizer.decode(p.input_ids, { skip_special_tokens: true })).toBe(
          `question: ${e.question} title: ${p.title} context: ${p.text}`,
        );
      }
    }
  });

  it('adds the gold passage in place of the last one when retrieval misses it', async () => {
    // The fixture embedder's weights are random, so dense retrieval with k = 2 misses most gold passages.
    const { examples, stats } = await build(2, 'dense');
    expect(stats.goldRetrieved).toBeLessThan(stats.examples);
    for (const e of examples) {
      expect(e.passages).toHaveLength(2);
      expect(e.passages.some((p) => p.gold)).toBe(true);
      const added = e.passages.findIndex((p) => p.rank === -1);
      if (added >= 0) expect(added).toBe(1);
    }
    expect(examples.filter((e) => e.passages.some((p) => p.rank === -1))).toHaveLength(stats.examples - stats.goldRetrieved);
  });
});
