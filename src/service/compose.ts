import { existsSync } from 'node:fs';
import path from 'node:path';
import { LazySlot } from '../common/lazy-slot.js';
import type { AppConfig } from '../config/index.js';
import {
  BUNDLED_READER,
  LEXICAL_EMBED_MODEL,
  loadEmbedder,
  loadModels,
  loadReaderModel,
  ModelNotFoundError,
  ModelsNotFoundError,
  type EmbeddingModel,
  type Seq2SeqModel,
} from '../models/index.js';
import { FidReader, fidDecoderRewrite, type DecoderPatchInfo } from '../reader/index.js';
import { openStoreEngine, type EngineSpec } from '../store/index.js';
import { Collections } from './collections.js';
import { embedderDiagnostics } from './diagnostics.js';
import { CollectionExistsError } from './errors.js';
import type { ServiceLog } from './log.js';
import { RagService } from './rag-service.js';
import { RerankerSlot } from './reranking.js';
import type { OfflineStart } from './types.js';

export interface SystemOptions {
  log?: ServiceLog;
  /** Open collections as their single writer (the server unless read-only, ingest and eval CLIs). */
  writable: boolean;
  /**
   * The server: collections open read-only and take their writer lock on the first write, giving it back after
   * `collections.writerIdleMs` without writes, so `npm run ingest` can write beside it. The CLIs hold it throughout.
   */
  writerOnDemand?: boolean;
  /** Check each collection's structures against each other when it opens, and refuse an inconsistent one. */
  verify: boolean;
  /** Load the reader model (server, eval:qa); search-only tools do without. */
  reader: boolean;
  /**
   * `eager`: the configured embedding model is loaded (with the reader, when asked) before anything opens, so a
   * missing model stops the start at once, and with every missing model named (the server). `lazy`: each
   * collection's model loads on the first operation that needs it (query embeddings, cutting and embedding new or
   * changed documents), so BM25 searches, deletes and re-ingests of unchanged documents run without it (CLIs).
   */
  loadEmbedder: 'eager' | 'lazy';
  /**
   * Make sure the default collection exists (created with the configured model and chunking, and the bundled
   * corpus ingested into it when `server.ingestCorpusOnStart`), and open it before returning.
   */
  prepareDefaultCollection: boolean;
  /**
   * The server: when the reader or embedding model cannot be loaded and `offline.bundledReader` allows it, serve the
   * bundled reader with BM25 over the offline collection instead of failing. The CLIs evaluate and write what is
   * configured, so they fail instead.
   */
  offlineFallback?: boolean;
}

/** Where the configured deployment keeps its collections. */
export function engineSpecFor(config: AppConfig): EngineSpec {
  const db = config.database;
  if (db.url === undefined) return { kind: 'sqlite', indexesDir: config.indexesDir };
  // PostgreSQL deployment: the replica's derived local indexes live in a folder of their own, so an embedded index
  // under indexesDir is never mistaken for one (and rebuilt over).
  return {
    kind: 'postgres',
    url: db.url,
    localDir: path.join(config.indexesDir, REPLICA_DIR),
    poolMax: db.poolMax,
    connectTimeoutMs: db.connectTimeoutMs,
    pollIntervalMs: db.pollIntervalMs,
    applyBatchChanges: db.applyBatchChanges,
  };
}

/**
 * What a serving process opens (the HTTP server, the MCP server on stdio): the reader and the embedding model loaded
 * at once, collections written on demand so the CLIs can write beside it, the bundled reader when the models are
 * missing, and the default collection prepared.
 */
export function servingOptions(config: AppConfig, wiring: { log: ServiceLog; writable: boolean }): SystemOptions {
  return {
    ...wiring,
    writerOnDemand: true,
    verify: config.server.verifyIndexOnStart,
    reader: true,
    loadEmbedder: 'eager',
    prepareDefaultCollection: true,
    offlineFallback: true,
  };
}

/** Sub-folder of `indexesDir` holding a PostgreSQL replica's local indexes (hidden from the embedded engine). */
export const REPLICA_DIR = '.replica';

/**
 * The composition root: opens the storage engine, the embedding model(s), the reader and the collections, for the
 * server, `ingest`, `eval`, `eval:qa` and the benchmarks alike.
 */
export async function openSystem(config: AppConfig, options: SystemOptions): Promise<RagService> {
  const { log } = options;
  // One slot per model: loaded on first use, and a failed load is retried by the next caller rather than remembered.
  const embedders = new Map<string, LazySlot<Promise<EmbeddingModel>>>();
  const slotFor = (model: string): LazySlot<Promise<EmbeddingModel>> => {
    let slot = embedders.get(model);
    if (!slot) {
      slot = new LazySlot(() => {
        const started = performance.now();
        log?.info({ model }, 'loading embedding model');
        return loadEmbedder({ ...config, embedModel: model }).then((embedder) => remember(model, embedder, started));
      });
      embedders.set(model, slot);
    }
    return slot;
  };
  const loaded: EmbeddingModel[] = [];
  // Loading takes seconds on a full-size model; each line says how long, so a silent start-up is never a mystery.
  const msSince = (started: number) => Math.round(performance.now() - started);
  const remember = (model: string, embedder: EmbeddingModel, started: number): EmbeddingModel => {
    loaded.push(embedder);
    log?.info({ model, dim: embedder.dim, source: embedder.source, ms: msSince(started) }, 'embedding model loaded');
    return embedder;
  };
  const embedderFor = (model: string): Promise<EmbeddingModel> => slotFor(model).get();

  // Models loaded up front are loaded before anything is opened, and all of them are resolved before a failure is
  // reported, so a start-up without models names every missing one at once.
  const eager = options.loadEmbedder === 'eager';
  let reader: FidReader | undefined;
  let offline: OfflineStart | undefined;
  if (options.reader) {
    const started = performance.now();
    const load = (cfg: AppConfig): Promise<Seq2SeqModel<DecoderPatchInfo>> => {
      log?.info(eager ? { embedModel: cfg.embedModel, readerModel: cfg.readerModel } : { readerModel: cfg.readerModel }, 'loading models');
      return eager
        ? loadModels(cfg, fidDecoderRewrite()).then(({ embedder, readerModel }) => {
            slotFor(cfg.embedModel).set(Promise.resolve(remember(cfg.embedModel, embedder, started)));
            return readerModel;
          })
        : loadReaderModel(cfg, fidDecoderRewrite());
    };
    let readerModel: Seq2SeqModel<DecoderPatchInfo>;
    try {
      readerModel = await load(config);
    } catch (err) {
      const missing = err instanceof ModelsNotFoundError || err instanceof ModelNotFoundError;
      if (!options.offlineFallback || !config.offline.bundledReader || !missing) throw err;
      offline = offlineStart(config, err);
      const { embedModel, readerModel: fallback, collection, reason } = offline;
      log?.warn({ embedModel, readerModel: fallback, collection, reason }, offline.message);
      config = offline.config;
      readerModel = await load(config);
    }
    reader = await FidReader.create(readerModel, { logger: log, encoding: config.reader.encoding, crossCache: config.reader.crossCache });
    log?.info(
      { model: config.readerModel, attribution: reader.attributionMethod, source: readerModel.location.source, ms: msSince(started) },
      'reader model loaded',
    );
  } else if (eager) {
    await embedderFor(config.embedModel);
  }

  const reranker = RerankerSlot.fromConfig(config);
  if (config.rerank.loadOnStart) {
    const started = performance.now();
    await reranker.get();
    log?.info({ model: config.rerankModel, ms: msSince(started) }, 'rerank model loaded');
  }

  const engine = await openStoreEngine(engineSpecFor(config), log);
  const collections = new Collections({
    engine,
    config,
    writable: options.writable,
    writerOnDemand: options.writerOnDemand ?? false,
    verify: options.verify,
    embedderFor,
    log,
  });
  const service = new RagService(
    config,
    collections,
    reader,
    embedderDiagnostics(() => loaded),
    reranker,
    offline,
  );
  if (options.prepareDefaultCollection) {
    try {
      await prepareDefault(config, collections, log);
      // Opening it now verifies it (when asked) before the caller declares itself ready.
      await collections.use(config.defaultCollection, async () => undefined);
    } catch (err) {
      await service.close();
      throw err;
    }
  }
  return service;
}

function offlineStart(config: AppConfig, cause: ModelsNotFoundError | ModelNotFoundError): OfflineStart {
  const failures = cause instanceof ModelsNotFoundError ? cause.failures : [cause];
  const collection = config.offline.collection;
  const served: AppConfig = {
    ...config,
    embedModel: LEXICAL_EMBED_MODEL,
    readerModel: BUNDLED_READER,
    defaultCollection: collection,
    retrieval: { ...config.retrieval, defaultMode: 'bm25' },
    reader: { ...config.reader, defaultK: config.offline.readerK },
  };
  return {
    config: served,
    embedModel: LEXICAL_EMBED_MODEL,
    readerModel: BUNDLED_READER,
    collection,
    reason: failures.map((f) => f.problem).join('; '),
    message:
      `offline start: the default models (${config.embedModel}, ${config.readerModel}) could not be loaded, so this server ` +
      `runs the bundled reader ${BUNDLED_READER} (trained by the project on SQuAD; small: expect rough answers) with BM25 retrieval, over the collection ` +
      `"${collection}". To use the hub models, start once with internet access (they download into models/.hub-cache/), ` +
      `or put them in ${config.modelsDir} (docs/models.md), or set RAG_EMBED_MODEL and RAG_READER_MODEL: a configured ` +
      `model is never replaced.`,
  };
}

async function prepareDefault(config: AppConfig, collections: Collections, log: ServiceLog | undefined): Promise<void> {
  const name = config.defaultCollection;
  if (await collections.describe(name)) return;
  // A short-lived writer creates it even for a read-only server, so that `npm run ingest` can update it later.
  // Replicas of the PostgreSQL deployment starting together race to create it: the loser uses the winner's.
  await collections
    .withWriter(name, {}, async ({ writer, store }) => {
      if (!config.server.ingestCorpusOnStart || !existsSync(config.corpusDir)) return;
      const summary = await writer!.ingestPaths([config.corpusDir], { progress: false });
      log?.info(
        {
          index: store.location,
          corpus: config.corpusDir,
          documents: summary.documentsSeen,
          added: summary.added,
          passages: summary.passagesAdded,
          errors: summary.errors.length,
        },
        'bundled corpus ingested into new index',
      );
    })
    .catch((err: unknown) => {
      if (!(err instanceof CollectionExistsError)) throw err;
    });
}
