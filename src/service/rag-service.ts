import { existsSync, readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import type { AppConfig } from '../config/index.js';
import { indexDir } from '../config/index.js';
import { loadEmbedder, loadReaderModel, type Embedder } from '../models/index.js';
import { IndexLockedError, IndexStore, readManifest, type Metadata } from '../store/index.js';
import { effectiveChunkOptions, ingestDocuments, ingestPaths, type IngestSummary, type SourceDocument } from '../ingest/index.js';
import { Retriever, type SearchFilter, type SearchHit, type SearchMode } from '../retrieval/index.js';
import { FidReader, fidDecoderRewrite, type AnswerResult, type FusionMode } from '../reader/index.js';
import { IndexInconsistentError, ReadOnlyIndexError } from './errors.js';
import { IndexWriter, type DeleteResult, type DocumentInput, type DocumentWriteStatus } from './index-writer.js';

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
  /** `attention`: the passage's share of the cross-attention; `score`: that share renormalised over the cited passages. */
  citations: Array<{ passageId: string; docId: string; title: string; score: number; attention: number }>;
  passages: Array<{ passageId: string; docId: string; title: string; text: string; retrievalScore: number; attention: number }>;
  tokenAttention: AnswerResult['tokenAttention'];
  attribution: AnswerResult['attribution'];
  fusion: FusionMode;
  model: string;
  /** Generated tokens, EOS included. */
  tokens: number;
  /** `embedMs` + `searchMs` (inside `retrieveMs`) and `onnxMs` are for metrics and benchmarks, not for API clients. */
  timings: { retrieveMs: number; embedMs: number; searchMs: number; encodeMs: number; decodeMs: number; totalMs: number; onnxMs: number };
}

export interface DocumentView {
  id: string;
  title: string;
  metadata: Metadata;
  passages: Array<{ passageId: string; text: string }>;
}

export interface ServiceStats {
  index: string;
  documents: number;
  passages: number;
  /** Bytes of every file in the index folder (SQLite with its WAL, HNSW graph, manifest). */
  indexBytes: number;
  hnsw: { live: number; pending: number };
  models: { embed: string; reader: string };
  writable: boolean;
}

export interface OpenOptions {
  /** Open the index as its single writer (the server, evals that ingest). Default false. */
  writable?: boolean;
  /** Refuse an index whose stores disagree beyond crash recovery. Default false. */
  verify?: boolean;
}

export interface AskHooks {
  signal?: AbortSignal;
  onToken?: (token: { id: number; text: string; index: number }) => void;
}

export interface ServiceLog {
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
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
    /** Present when the index was opened writable: the document API goes through it. */
    readonly writer: IndexWriter | undefined,
  ) {}

  /**
   * A writable open makes this process the index's single writer (the server, evals that ingest their dataset); a
   * read-only open sees other processes' ingests as they commit. A new index gets the bundled corpus either way.
   */
  static async open(config: AppConfig, log?: ServiceLog, options: OpenOptions = {}): Promise<RagService> {
    const embedder = await loadEmbedder(config);
    log?.info({ model: config.embedModel, dim: embedder.dim, pooling: embedder.pooling, source: embedder.location.source }, 'embedding model loaded');
    const readerModel = await loadReaderModel(config, fidDecoderRewrite());
    const reader = await FidReader.create(readerModel, { encoding: config.reader.encoding, crossCache: config.reader.crossCache });
    log?.info({ model: config.readerModel, attribution: reader.attributionMethod, source: readerModel.location.source }, 'reader model loaded');

    const dir = indexDir(config);
    const storeOptions = { embedModel: config.embedModel, dim: embedder.dim, hnsw: config.hnsw };
    const isNew = !readManifest(dir);
    const openStore = (readonly: boolean) => {
      try {
        return IndexStore.open(dir, { ...storeOptions, readonly });
      } catch (err) {
        if (err instanceof IndexLockedError) {
          throw new IndexLockedError(
            `${err.message}. The server writes its index itself (document API), so it must be the only writer: stop ` +
              'the other writer (for example a running `npm run ingest`) and start again, or set server.readOnly to ' +
              'true to serve searches beside it.',
          );
        }
        throw err;
      }
    };

    let store: IndexStore;
    if (options.writable) {
      store = openStore(false);
    } else {
      if (isNew) {
        // A short-lived writer creates the index, so that the reader can open it and `npm run ingest` can update it.
        const creator = openStore(false);
        try {
          await ingestBundledCorpus(config, creator, embedder, log);
        } finally {
          creator.close();
        }
      }
      store = openStore(true);
    }
    try {
      if (options.writable && isNew) await ingestBundledCorpus(config, store, embedder, log);
      if (options.verify) verifyIndex(store, log);
    } catch (err) {
      store.close();
      throw err;
    }
    const writer = options.writable
      ? new IndexWriter(store, embedder, {
          chunk: effectiveChunkOptions(embedder, config.chunk),
          embedBatchSize: config.documents.embedBatchSize,
          maxQueued: config.documents.maxQueuedWrites,
          checkpointEveryPassages: config.documents.checkpointEveryPassages,
          checkpointIdleMs: config.documents.checkpointIdleMs,
          log,
        })
      : undefined;
    return new RagService(config, embedder, store, new Retriever(store, embedder, config.retrieval), reader, writer);
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

  /** Batch upsert through the ingest pipeline; resolves once the batch is committed (durable) and searchable. */
  upsertDocuments(docs: DocumentInput[], options: { signal?: AbortSignal } = {}): Promise<DocumentWriteStatus[]> {
    return this.requireWriter().upsert(docs, options.signal);
  }

  deleteDocument(id: string, options: { signal?: AbortSignal } = {}): Promise<DeleteResult> {
    return this.requireWriter().delete(id, options.signal);
  }

  getDocument(id: string): DocumentView | undefined {
    this.store.refresh();
    const doc = this.store.getDocument(id);
    if (!doc) return undefined;
    const passages = this.store.passagesOfDocument(id).map((p) => ({ passageId: p.id, text: p.text }));
    return { id: doc.id, title: doc.title, metadata: doc.metadata, passages };
  }

  stats(): ServiceStats {
    this.store.refresh();
    const s = this.store.stats();
    return {
      index: this.config.indexName,
      documents: s.documents,
      passages: s.passages,
      indexBytes: folderBytes(this.store.dir),
      hnsw: { live: s.hnswLive, pending: s.pending },
      models: { embed: this.config.embedModel, reader: this.config.readerModel },
      writable: this.writer !== undefined,
    };
  }

  /** Write requests waiting or being applied. */
  get pendingWrites(): number {
    return this.writer?.depth ?? 0;
  }

  /** Resolves when every accepted write has been applied or refused. */
  async drainWrites(): Promise<void> {
    await this.writer?.drain();
  }

  private requireWriter(): IndexWriter {
    if (!this.writer) {
      throw new ReadOnlyIndexError(
        `this server opened index "${this.config.indexName}" read-only (server.readOnly); change documents with ` +
          '`npm run ingest`, or run the server with server.readOnly false',
      );
    }
    return this.writer;
  }

  async ask(params: AskParams, hooks: AskHooks = {}): Promise<AskOutcome> {
    const started = performance.now();
    const rc = this.config.reader;
    const k = params.k ?? rc.defaultK;
    const fusion = params.fusion ?? 'fid';
    const { hits, timings } = await this.retriever.search(params.question, { k, mode: params.mode ?? 'hybrid', filter: params.filter });
    const retrieveMs = performance.now() - started;
    hooks.signal?.throwIfAborted();

    const passages = hits.map((h) => ({ passageId: h.passageId, docId: h.docId, title: h.title, text: h.text, retrievalScore: h.score }));
    if (passages.length === 0) {
      // Nothing matched (empty index, or a filter that excludes everything): no evidence, so no answer to cite.
      return {
        answer: '',
        citations: [],
        passages: [],
        tokenAttention: [],
        attribution: this.reader.attributionMethod,
        fusion,
        model: this.config.readerModel,
        tokens: 0,
        timings: { retrieveMs, embedMs: timings.embedMs, searchMs: timings.searchMs, encodeMs: 0, decodeMs: 0, totalMs: performance.now() - started, onnxMs: 0 },
      };
    }
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

    const cited = citationsFrom(passages, result.passageScores, rc.citationShare);
    return {
      answer: result.answer,
      citations: cited,
      passages: passages.map((p, i) => ({ ...p, attention: result.passageScores[i] ?? 0 })),
      tokenAttention: result.tokenAttention,
      attribution: result.attribution,
      fusion,
      model: this.config.readerModel,
      tokens: result.tokenIds.length,
      timings: {
        retrieveMs,
        embedMs: timings.embedMs,
        searchMs: timings.searchMs,
        encodeMs: result.timings.encodeMs,
        decodeMs: result.timings.decodeMs,
        totalMs: performance.now() - started,
        onnxMs: result.timings.onnxMs,
      },
    };
  }

  /** Saves the HNSW graph if it changed and releases the index; call drainWrites() first to finish accepted writes. */
  close(): void {
    this.writer?.close();
    this.store.close();
  }
}

async function ingestBundledCorpus(config: AppConfig, store: IndexStore, embedder: Embedder, log: ServiceLog | undefined): Promise<void> {
  if (!config.server.ingestCorpusOnStart || !existsSync(config.corpusDir)) return;
  const summary = await ingestPaths([config.corpusDir], { store, embedder, chunk: config.chunk, progress: false });
  log?.info({ index: store.dir, corpus: config.corpusDir, ...summaryCounts(summary) }, 'bundled corpus ingested into new index');
}

/**
 * Passages committed after the last graph save are legitimately missing from the saved file: opening re-added them
 * from their stored vectors, so they do not count as problems. What verify() still reports cannot be repaired here.
 */
function verifyIndex(store: IndexStore, log: ServiceLog | undefined): void {
  const started = performance.now();
  const report = store.verify();
  if (!report.ok) throw new IndexInconsistentError(store.dir, report.problems);
  const recovered = report.stats.pending;
  log?.info({ index: store.dir, passages: report.stats.passages, recoveredPassages: recovered, ms: Math.round(performance.now() - started) }, 'index verified');
  // Persist a crash recovery now rather than at the next checkpoint, so a second crash does not redo it.
  if (recovered > 0 && !store.readonly) store.checkpoint();
}

function folderBytes(dir: string): number {
  let total = 0;
  for (const name of readdirSync(dir)) {
    try {
      const stat = statSync(path.join(dir, name));
      if (stat.isFile()) total += stat.size;
    } catch {
      // A checkpoint may remove an old graph file between listing and stat.
    }
  }
  return total;
}

function summaryCounts(s: IngestSummary) {
  return { documents: s.documentsSeen, added: s.added, passages: s.passagesAdded, errors: s.errors.length };
}

/**
 * Passages holding at least `minShare` of the answer's cross-attention, strongest first — and always the strongest one,
 * so an answer spread thinly over many passages still names its main source. Scores are renormalised to sum to 1 over
 * the cited passages; `attention` keeps the share over all passages.
 */
export function citationsFrom(
  passages: ReadonlyArray<{ passageId: string; docId: string; title: string }>,
  shares: readonly number[],
  minShare: number,
): AskOutcome['citations'] {
  const ranked = passages
    .map((p, i) => ({ passageId: p.passageId, docId: p.docId, title: p.title, attention: shares[i] ?? 0 }))
    .sort((a, b) => b.attention - a.attention);
  const cited = ranked.filter((c, i) => i === 0 || c.attention >= minShare);
  const total = cited.reduce((sum, c) => sum + c.attention, 0);
  return cited.map((c) => ({ ...c, score: total > 0 ? c.attention / total : 1 / cited.length }));
}
