import { existsSync } from 'node:fs';
import path from 'node:path';
import { LazySlot } from '../common/lazy-slot.js';
import type { AppConfig } from '../config/index.js';
import { loadEmbedder, loadModels, loadReaderModel, type Embedder } from '../models/index.js';
import { FidReader, fidDecoderRewrite } from '../reader/index.js';
import { openStoreEngine, type EngineSpec } from '../store/index.js';
import { Collections } from './collections.js';
import { embedderDiagnostics } from './diagnostics.js';
import { CollectionExistsError } from './errors.js';
import type { ServiceLog } from './log.js';
import { RagService } from './rag-service.js';
import { RerankerSlot } from './reranking.js';

export interface SystemOptions {
  log?: ServiceLog;
  /** Open collections as their single writer (the server unless read-only, ingest and eval CLIs). */
  writable: boolean;
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

/** Sub-folder of `indexesDir` holding a PostgreSQL replica's local indexes (hidden from the embedded engine). */
export const REPLICA_DIR = '.replica';

/**
 * The composition root: opens the storage engine, the embedding model(s), the reader and the collections, for the
 * server, `ingest`, `eval`, `eval:qa` and the benchmarks alike.
 */
export async function openSystem(config: AppConfig, options: SystemOptions): Promise<RagService> {
  const { log } = options;
  // One slot per model: loaded on first use, and a failed load is retried by the next caller rather than remembered.
  const embedders = new Map<string, LazySlot<Promise<Embedder>>>();
  const slotFor = (model: string): LazySlot<Promise<Embedder>> => {
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
  const loaded: Embedder[] = [];
  // Loading takes seconds on a full-size model; each line says how long, so a silent start-up is never a mystery.
  const msSince = (started: number) => Math.round(performance.now() - started);
  const remember = (model: string, embedder: Embedder, started: number): Embedder => {
    loaded.push(embedder);
    log?.info(
      { model, dim: embedder.dim, pooling: embedder.pooling, source: embedder.location.source, ms: msSince(started) },
      'embedding model loaded',
    );
    return embedder;
  };
  const embedderFor = (model: string): Promise<Embedder> => slotFor(model).get();

  // Models loaded up front are loaded before anything is opened, and all of them are resolved before a failure is
  // reported, so a start-up without models names every missing one at once.
  const eager = options.loadEmbedder === 'eager';
  let reader: FidReader | undefined;
  if (options.reader) {
    const started = performance.now();
    log?.info(eager ? { embedModel: config.embedModel, readerModel: config.readerModel } : { readerModel: config.readerModel }, 'loading models');
    const readerModel = eager
      ? await loadModels(config, fidDecoderRewrite()).then(({ embedder, readerModel }) => {
          slotFor(config.embedModel).set(Promise.resolve(remember(config.embedModel, embedder, started)));
          return readerModel;
        })
      : await loadReaderModel(config, fidDecoderRewrite());
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
  const collections = new Collections({ engine, config, writable: options.writable, verify: options.verify, embedderFor, log });
  const service = new RagService(config, collections, reader, embedderDiagnostics(() => loaded), reranker);
  if (options.prepareDefaultCollection) {
    try {
      await prepareDefault(config, collections, log);
      // Opening it now verifies it (when asked) before the caller declares itself ready.
      await collections.use(config.indexName, async () => undefined);
    } catch (err) {
      await service.close();
      throw err;
    }
  }
  return service;
}

async function prepareDefault(config: AppConfig, collections: Collections, log: ServiceLog | undefined): Promise<void> {
  const name = config.indexName;
  if (await collections.describe(name)) return;
  // A short-lived writer creates it even for a read-only server, so that `npm run ingest` can update it later.
  // Replicas of the PostgreSQL deployment starting together race to create it: the loser uses the winner's.
  await collections.withWriter(name, {}, async ({ writer, store }) => {
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
  }).catch((err: unknown) => {
    if (!(err instanceof CollectionExistsError)) throw err;
  });
}
