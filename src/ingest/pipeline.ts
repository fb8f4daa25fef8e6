import { EmbeddingMismatchError, type DocumentWrite, type IndexStore } from '../store/index.js';
import { chunkDocumentAsync, tokenCounter, validateChunkOptions, type CountTokens, type TokenizerLike } from './chunker.js';
import { contentHash } from './content-hash.js';
import { createProgress, type IngestProgress, type ProgressMode } from './progress.js';
import { countSourceDocuments, readSources } from './readers.js';
import {
  DEFAULT_CHUNK,
  type ChunkOptions,
  type IngestError,
  type IngestSummary,
  type Passage,
  type SourceDocument,
  type SourceItem,
} from './types.js';

/** The slice of the embedding service ingest needs (the models stage's `Embedder` satisfies it). */
export interface IngestEmbedder {
  readonly modelId: string;
  readonly dim: number;
  /** The model's input limit including special tokens; passages are kept within it. */
  readonly maxTokens?: number;
  readonly tokenizer: TokenizerLike;
  embedPassages(texts: string[]): Promise<Float32Array[]>;
}

export interface IngestOptions {
  store: IndexStore;
  embedder: IngestEmbedder;
  chunk?: Partial<ChunkOptions>;
  /** Embed "title\ntext" instead of the bare passage (the stored text stays the original span). Default true. */
  embedTitle?: boolean;
  /** Passages embedded and written per batch; bounds memory on large corpora. Default 256. */
  batchPassages?: number;
  /** Save the HNSW graph after this many new passages, and always at the end. Default 20 000. */
  checkpointEveryPassages?: number;
  /** Progress bar on stderr: true, false, or 'auto' (default: only if stderr is a TTY). */
  progress?: ProgressMode;
  /** Called as each bad input is skipped, e.g. to print it. */
  onError?: (error: IngestError) => void;
}

const DEFAULT_BATCH_PASSAGES = 256;
const DEFAULT_CHECKPOINT_EVERY = 20_000;

interface PreparedDocument {
  doc: SourceDocument;
  hash: string;
  passages: Passage[];
}

function emptySummary(): IngestSummary {
  return { documentsSeen: 0, added: 0, updated: 0, unchanged: 0, deleted: 0, passagesAdded: 0, passagesRemoved: 0, errors: [], seconds: 0 };
}

function isPlainObject(value: unknown): boolean {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}

function invalidDocument(doc: SourceDocument): string | undefined {
  if (typeof doc.id !== 'string' || doc.id.trim() === '') return 'document id must be a non-empty string';
  if (typeof doc.text !== 'string') return 'document text must be a string';
  if (typeof doc.title !== 'string') return 'document title must be a string';
  if (!isPlainObject(doc.metadata)) return 'document metadata must be a JSON object';
  return undefined;
}

/** The budget actually used: never more than the embedding model can see after its special tokens. */
export function effectiveChunkOptions(embedder: IngestEmbedder, requested: Partial<ChunkOptions> = {}): ChunkOptions {
  const options: ChunkOptions = { ...DEFAULT_CHUNK, ...requested };
  if (embedder.maxTokens !== undefined) {
    const special = embedder.tokenizer.encode('', null, { add_special_tokens: true }).length;
    const modelBudget = embedder.maxTokens - special;
    if (options.maxTokens > modelBudget) options.maxTokens = modelBudget;
    if (options.overlapTokens >= options.maxTokens) options.overlapTokens = Math.floor(options.maxTokens / 4);
  }
  validateChunkOptions(options);
  return options;
}

/** Everything that changes how a document is cut and embedded; a document ingested otherwise is re-processed. */
function chunkingSignature(chunk: ChunkOptions, embedTitle: boolean): string {
  return `v1;max=${chunk.maxTokens};overlap=${chunk.overlapTokens};title=${embedTitle ? 1 : 0}`;
}

/**
 * One ingest run: documents are hashed, unchanged ones skipped, the rest chunked, embedded and written in bounded
 * batches (one SQLite transaction each), with periodic HNSW checkpoints.
 */
class IngestRun {
  readonly summary = emptySummary();
  private readonly startedAt = performance.now();
  private readonly chunk: ChunkOptions;
  private readonly chunking: string;
  private readonly count: CountTokens;
  private readonly embedTitle: boolean;
  private readonly batchPassages: number;
  private readonly checkpointEvery: number;
  private pending: PreparedDocument[] = [];
  private pendingIds = new Set<string>();
  private pendingPassages = 0;
  private sinceCheckpoint = 0;

  constructor(
    private readonly options: IngestOptions,
    private readonly progress: IngestProgress,
  ) {
    const { store, embedder } = options;
    if (embedder.modelId !== store.embedModel || embedder.dim !== store.dim) {
      throw new EmbeddingMismatchError(store.dir, store.embedModel, store.dim, embedder.modelId, embedder.dim);
    }
    this.chunk = effectiveChunkOptions(embedder, options.chunk);
    this.embedTitle = options.embedTitle ?? true;
    this.chunking = chunkingSignature(this.chunk, this.embedTitle);
    this.count = tokenCounter(embedder.tokenizer);
    this.batchPassages = Math.max(1, options.batchPassages ?? DEFAULT_BATCH_PASSAGES);
    this.checkpointEvery = Math.max(1, options.checkpointEveryPassages ?? DEFAULT_CHECKPOINT_EVERY);
  }

  reportError(error: IngestError): void {
    this.summary.errors.push(error);
    this.options.onError?.(error);
  }

  async add(doc: SourceDocument): Promise<void> {
    const problem = invalidDocument(doc);
    if (problem) {
      this.reportError({ path: doc.origin?.path ?? `document ${String(doc.id)}`, line: doc.origin?.line, message: problem });
      return;
    }
    this.summary.documentsSeen++;
    // A second version of a document in the same batch must see the first one stored, not race it.
    if (this.pendingIds.has(doc.id)) await this.flush();
    const hash = contentHash(doc);
    const state = this.options.store.documentStates([doc.id]).get(doc.id);
    if (state && state.contentHash === hash && state.chunking === this.chunking) {
      this.summary.unchanged++;
      this.reportProgress();
      return;
    }
    const passages = await chunkDocumentAsync(doc, this.count, this.chunk);
    this.pending.push({ doc, hash, passages });
    this.pendingIds.add(doc.id);
    this.pendingPassages += passages.length;
    if (this.pendingPassages >= this.batchPassages) await this.flush();
  }

  async flush(): Promise<void> {
    if (this.pending.length === 0) return;
    const batch = this.pending;
    this.pending = [];
    this.pendingIds = new Set();
    this.pendingPassages = 0;

    const passages = batch.flatMap((p) => p.passages);
    const vectors = await this.embed(passages, this.summary.documentsSeen - batch.length);
    let next = 0;
    const writes: DocumentWrite[] = batch.map(({ doc, hash, passages: docPassages }) => ({
      document: { id: doc.id, title: doc.title, contentHash: hash, chunking: this.chunking, metadata: doc.metadata },
      passages: docPassages.map((p) => ({
        id: p.id,
        chunkNo: p.chunkNo,
        title: p.title,
        text: p.text,
        metadata: p.metadata,
        charStart: p.charStart,
        charEnd: p.charEnd,
        vector: vectors[next++]!,
      })),
    }));
    const outcome = this.options.store.writeDocuments(writes);
    this.summary.added += outcome.inserted;
    this.summary.updated += outcome.replaced;
    this.summary.passagesAdded += outcome.passagesAdded;
    this.summary.passagesRemoved += outcome.passagesRemoved;
    this.sinceCheckpoint += outcome.passagesAdded + outcome.passagesRemoved;
    if (this.sinceCheckpoint >= this.checkpointEvery) {
      this.options.store.checkpoint();
      this.sinceCheckpoint = 0;
    }
    this.reportProgress();
  }

  private async embed(passages: Passage[], documentsDone: number): Promise<Float32Array[]> {
    const texts = passages.map((p) => (this.embedTitle && p.title.trim() !== '' ? `${p.title}\n${p.text}` : p.text));
    const vectors: Float32Array[] = [];
    for (let i = 0; i < texts.length; i += this.batchPassages) {
      vectors.push(...(await this.options.embedder.embedPassages(texts.slice(i, i + this.batchPassages))));
      // One large document is many batches: show them move rather than a bar stuck until the document is written.
      // onnxruntime resolves in a nextTick, so without a macrotask turn here no timer (the progress line) would run.
      this.progress.update(documentsDone, this.summary.passagesAdded + vectors.length);
      await new Promise((resolve) => setImmediate(resolve));
    }
    if (vectors.length !== texts.length) throw new Error(`embedder returned ${vectors.length} vectors for ${texts.length} passages`);
    return vectors;
  }

  private reportProgress(): void {
    const done = this.summary.documentsSeen - this.pending.length;
    this.progress.update(done, this.summary.passagesAdded);
  }

  async finish(): Promise<IngestSummary> {
    await this.flush();
    this.options.store.checkpoint();
    this.summary.seconds = (performance.now() - this.startedAt) / 1000;
    return this.summary;
  }
}

async function run(items: AsyncIterable<SourceItem>, options: IngestOptions, total: number | undefined): Promise<IngestSummary> {
  const progress = createProgress(options.progress);
  const ingest = new IngestRun(options, progress);
  progress.start(total ?? 0);
  try {
    for await (const item of items) {
      if (item.kind === 'error') ingest.reportError(item.error);
      else await ingest.add(item.document);
    }
    return await ingest.finish();
  } finally {
    progress.stop();
  }
}

async function* asItems(docs: Iterable<SourceDocument> | AsyncIterable<SourceDocument>): AsyncGenerator<SourceItem> {
  for await (const document of docs) yield { kind: 'document', document };
}

/** Ingests files and folders (.txt, .md, .html, .jsonl, BEIR folders); bad inputs are reported and skipped. */
export async function ingestPaths(paths: string[], options: IngestOptions): Promise<IngestSummary> {
  const wantsProgress = options.progress === true || ((options.progress ?? 'auto') === 'auto' && process.stderr.isTTY === true);
  const total = wantsProgress ? await countSourceDocuments(paths) : undefined;
  return run(readSources(paths), options, total);
}

/** Ingests documents given in memory or streamed by the caller (eval corpora, a REST document API). */
export async function ingestDocuments(
  docs: Iterable<SourceDocument> | AsyncIterable<SourceDocument>,
  options: IngestOptions,
): Promise<IngestSummary> {
  const total = Array.isArray(docs) ? docs.length : undefined;
  return run(asItems(docs), options, total);
}

/** Removes documents from SQLite, FTS and HNSW, and saves the graph; unknown ids are reported as errors. */
export function deleteDocuments(ids: string[], store: IndexStore): IngestSummary {
  const startedAt = performance.now();
  const outcome = store.deleteDocuments(ids);
  store.checkpoint();
  const summary = emptySummary();
  summary.deleted = outcome.deleted.length;
  summary.passagesRemoved = outcome.passagesRemoved;
  summary.errors = outcome.missing.map((id) => ({ path: id, message: 'no document with this id in the index' }));
  summary.seconds = (performance.now() - startedAt) / 1000;
  return summary;
}
