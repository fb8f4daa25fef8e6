/**
 * Training examples for a fusion-in-decoder reader, built the way the server reads: the passages of a question are the
 * product's own retrieval results over a collection of the dataset's paragraphs, and every passage is tokenised into
 * its encoder input by the reader's own `buildFidPlan`, so the trainer never re-implements the input format.
 */
import type { PreTrainedTokenizer } from '@xenova/transformers';
import type { SquadDataset } from '../eval/index.js';
import { isGoldPassage } from '../eval/index.js';
import type { Seq2SeqConfig } from '../models/index.js';
import { buildFidPlan, PieceTokenizer, type ReaderPassage } from '../reader/index.js';
import type { SearchMode } from '../retrieval/index.js';
import type { RagService } from '../service/index.js';

/** One passage of an example: the text the reader would see and its encoder input ids (closing EOS included). */
export interface ExamplePassage {
  id: string;
  docId: string;
  title: string;
  text: string;
  /** The passage comes from the question's own paragraph and contains a reference answer. */
  gold: boolean;
  /** Rank in the retrieval results (0-based), or -1 for a gold passage added because retrieval missed it. */
  rank: number;
  input_ids: number[];
}

export interface FidExample {
  id: string;
  question: string;
  answers: string[];
  /** Token ids of the first answer, closing EOS included: the decoder's teacher-forcing target. */
  target: number[];
  passages: ExamplePassage[];
}

/** Written beside a JSONL file of examples: what the trainer needs to know about the ids. */
export interface ExamplesMeta {
  format: 'fid-examples-1';
  readerModel: string;
  /** tokenizer.json of the reader model, for decoding answers during validation. */
  tokenizer: string;
  pad_token_id: number;
  eos_token_id: number;
  decoder_start_token_id: number;
  max_input_tokens: number;
  k: number;
  retrievalMode: SearchMode;
  examples: number;
  goldRetrieved: number;
}

/** What the builder needs from the system: retrieval, and a paragraph's stored passages for a missed gold one. */
export interface ExampleSource {
  search(query: string, k: number, mode: SearchMode): Promise<ReaderPassage[]>;
  passagesOfParagraph(paragraphId: string): Promise<ReaderPassage[]>;
}

/** The system's retrieval and stored passages as an example source (what `train:data` builds from). */
export function serviceExampleSource(service: Pick<RagService, 'search' | 'getDocument'>): ExampleSource {
  return {
    search: async (query, k, mode) => (await service.search({ query, k, mode })).results.map((r) => ({ ...r, retrievalScore: r.score })),
    passagesOfParagraph: async (id) => {
      const doc = await service.getDocument(id);
      return (doc?.passages ?? []).map((p) => ({ passageId: p.passageId, docId: id, title: doc!.title, text: p.text, retrievalScore: 0 }));
    },
  };
}

export interface BuildExamplesOptions {
  k: number;
  mode: SearchMode;
  tokenizer: PreTrainedTokenizer;
  config: Seq2SeqConfig;
}

/**
 * Examples in the dataset's question order; unanswerable questions are skipped (the reader is trained to copy). The
 * gold passage replaces the lowest-ranked result when retrieval did not find it, so every example can be answered.
 */
export async function* buildFidExamples(
  squad: SquadDataset,
  source: ExampleSource,
  opts: BuildExamplesOptions,
  stats: { goldRetrieved: number; examples: number } = { goldRetrieved: 0, examples: 0 },
): AsyncGenerator<FidExample> {
  const pieces = new PieceTokenizer(opts.tokenizer);
  const limits = { maxInputTokens: opts.config.maxInputTokens, eosTokenId: opts.config.eos_token_id };
  for (const q of squad.questions) {
    if (q.isImpossible || q.answers.length === 0) continue;
    const hits = await source.search(q.question, opts.k, opts.mode);
    const isGold = (p: ReaderPassage) => isGoldPassage(p, q.paragraphId, q.answers);
    let ranked = hits.map((p, rank) => ({ passage: p, rank }));
    if (ranked.some((r) => isGold(r.passage))) stats.goldRetrieved++;
    else {
      const gold = (await source.passagesOfParagraph(q.paragraphId)).find(isGold);
      if (!gold) continue; // the answer was cut across two passages: no passage can teach it
      ranked = [...ranked.slice(0, Math.max(0, opts.k - 1)), { passage: gold, rank: -1 }];
    }
    const plan = buildFidPlan(
      pieces,
      q.question,
      ranked.map((r) => r.passage),
      limits,
    );
    stats.examples++;
    yield {
      id: q.id,
      question: q.question,
      answers: q.answers,
      target: opts.tokenizer.encode(q.answers[0]!),
      passages: ranked.map((r, i) => ({
        id: r.passage.passageId,
        docId: r.passage.docId,
        title: r.passage.title,
        text: r.passage.text,
        gold: isGold(r.passage),
        rank: r.rank,
        input_ids: plan.sequences[i]!,
      })),
    };
  }
}
