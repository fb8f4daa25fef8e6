import { existsSync } from 'node:fs';
import type { AppConfig } from '../config/index.js';
import { indexDir } from '../config/index.js';
import { loadEmbedder, loadReaderModel, type Embedder } from '../models/index.js';
import { IndexStore, readManifest } from '../store/index.js';
import { ingestDocuments, ingestPaths, type IngestSummary, type SourceDocument } from '../ingest/index.js';
import { Retriever, type SearchFilter, type SearchHit, type SearchMode } from '../retrieval/index.js';
import { FidReader, type AnswerResult, type FusionMode } from '../reader/index.js';

export interface SearchParams {
  query: string;
  k?: number;
  mode?: SearchMode;
  filter?: SearchFilter;
}

export interface AskParams {
  question: string;
  k?: number;
  mode?: SearchMode;
  filter?: SearchFilter;
  fusion?: FusionMode;
  maxNewTokens?: number;
  numBeams?: number;
  /** Not exposed over HTTP: benchmarks force a fixed answer length with it. */
  minNewTokens?: number;
}

export interface AskOutcome {
  answer: string;
  citations: Array<{ passageId: string; docId: string; title: string; score: number }>;
  passages: Array<{ passageId: string; docId: string; title: string; text: string; retrievalScore: number; attention: number }>;
  tokenAttention: AnswerResult['tokenAttention'];
  attribution: AnswerResult['attribution'];
  fusion: FusionMode;
  model: string;
  timings: { retrieveMs: number; encodeMs: number; decodeMs: number; totalMs: number; onnxMs: number };
}

export interface AskHooks {
  signal?: AbortSignal;
  onToken?: (token: { id: number; text: string; index: number }) => void;
}

export interface ServiceLog {
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
}

/**
 * The composition root: one embedder, one index, one retriever, one reader. The REST API and the evaluation CLIs
 * both go through here, so an eval measures exactly what a client of /v1/ask gets.
 */
export class RagService {
  private constructor(
    readonly config: AppConfig,
    readonly embedder: Embedder,
    readonly store: IndexStore,
    readonly retriever: Retriever,
    readonly reader: FidReader,
  ) {}

  /**
   * `writable` opens the index as its single writer (evals that ingest their dataset); the server opens it read-only
   * and sees other processes' ingests as they commit.
   */
  static async open(config: AppConfig, log?: ServiceLog, options: { writable?: boolean } = {}): Promise<RagService> {
    const embedder = await loadEmbedder(config);
    log?.info({ model: config.embedModel, dim: embedder.dim, pooling: embedder.pooling, source: embedder.location.source }, 'embedding model loaded');
    const readerModel = await loadReaderModel(config);
    const reader = await FidReader.create(readerModel);
    log?.info({ model: config.readerModel, attribution: reader.attributionMethod, source: readerModel.location.source }, 'reader model loaded');

    const dir = indexDir(config);
    const storeOptions = { embedModel: config.embedModel, dim: embedder.dim, hnsw: config.hnsw };
    if (!readManifest(dir)) {
      // A new index is created (and given the bundled corpus) by a short-lived writer, so that the server itself
      // can stay a reader and `npm run ingest` can update the index while it runs.
      const writer = IndexStore.open(dir, storeOptions);
      try {
        if (config.server.ingestCorpusOnStart && existsSync(config.corpusDir)) {
          const summary = await ingestPaths([config.corpusDir], { store: writer, embedder, chunk: config.chunk, progress: false });
          log?.info({ index: dir, corpus: config.corpusDir, ...summaryCounts(summary) }, 'bundled corpus ingested into new index');
        }
      } finally {
        writer.close();
      }
    }
    const store = IndexStore.open(dir, { ...storeOptions, readonly: !options.writable });
    const service = new RagService(config, embedder, store, new Retriever(store, embedder, config.retrieval), reader);
    return service;
  }

  ingest(paths: string[], progress: boolean | 'auto' = false): Promise<IngestSummary> {
    return ingestPaths(paths, { store: this.store, embedder: this.embedder, chunk: this.config.chunk, progress });
  }

  ingestDocuments(docs: Iterable<SourceDocument> | AsyncIterable<SourceDocument>, progress: boolean | 'auto' = false): Promise<IngestSummary> {
    return ingestDocuments(docs, { store: this.store, embedder: this.embedder, chunk: this.config.chunk, progress });
  }

  async search(params: SearchParams) {
    const started = performance.now();
    const k = params.k ?? this.config.retrieval.defaultK;
    const { hits, timings } = await this.retriever.search(params.query, { k, mode: params.mode ?? 'hybrid', filter: params.filter });
    return {
      results: hits.map((h: SearchHit) => ({ passageId: h.passageId, docId: h.docId, title: h.title, text: h.text, score: h.score })),
      timings: { embedMs: timings.embedMs, searchMs: timings.searchMs, totalMs: performance.now() - started },
    };
  }

  async ask(params: AskParams, hooks: AskHooks = {}): Promise<AskOutcome> {
    const started = performance.now();
    const rc = this.config.reader;
    const k = params.k ?? rc.defaultK;
    const fusion = params.fusion ?? 'fid';
    const { hits } = await this.retriever.search(params.question, { k, mode: params.mode ?? 'hybrid', filter: params.filter });
    const retrieveMs = performance.now() - started;
    hooks.signal?.throwIfAborted();

    const passages = hits.map((h) => ({ passageId: h.passageId, docId: h.docId, title: h.title, text: h.text, retrievalScore: h.score }));
    const result: AnswerResult = await this.reader.answer(params.question, passages, {
      fusion,
      maxNewTokens: params.maxNewTokens ?? rc.maxNewTokens,
      numBeams: params.numBeams ?? rc.numBeams,
      minNewTokens: params.minNewTokens,
      lengthPenalty: rc.lengthPenalty,
      noRepeatNgramSize: rc.noRepeatNgramSize,
      signal: hooks.signal,
      onToken: hooks.onToken,
    });

    const cited = passages
      .map((p, i) => ({ passageId: p.passageId, docId: p.docId, title: p.title, score: result.passageScores[i] ?? 0 }))
      .filter((c) => c.score >= rc.citationShare)
      .sort((a, b) => b.score - a.score);
    return {
      answer: result.answer,
      citations: cited,
      passages: passages.map((p, i) => ({ ...p, attention: result.passageScores[i] ?? 0 })),
      tokenAttention: result.tokenAttention,
      attribution: result.attribution,
      fusion,
      model: this.config.readerModel,
      timings: {
        retrieveMs,
        encodeMs: result.timings.encodeMs,
        decodeMs: result.timings.decodeMs,
        totalMs: performance.now() - started,
        onnxMs: result.timings.onnxMs,
      },
    };
  }

  close(): void {
    this.store.close();
  }
}

function summaryCounts(s: IngestSummary) {
  return { documents: s.documentsSeen, added: s.added, passages: s.passagesAdded, errors: s.errors.length };
}
