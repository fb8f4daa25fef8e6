import { isPlainObject } from '../common/plain-object.js';
import { yieldToEventLoop } from '../common/yield.js';
import { EmbeddingMismatchError, type DocumentWrite, type PassageStore } from '../store/index.js';
import { chunkDocumentAsync, tokenCounter, validateChunkOptions, type CountTokens, type TokenizerLike } from './chunker.js';
import { contentHash } from './content-hash.js';
import { locatePassages, titleWithSection } from './layout.js';
import { createProgress, type IngestProgress, type ProgressMode } from './progress.js';
import { countSourceDocuments, readSources, type ReadOptions } from './readers.js';
import type { OcrOptions } from './formats/index.js';
import type { ChunkOptions, DocumentOutcome, IngestError, IngestSummary, Passage, SourceDocument, SourceItem } from './types.js';

/** What cutting passages needs of the embedding model (the models stage's `Embedder` satisfies it). */
export interface TokenBudget {
  /** The model's input limit including special tokens; passages are kept within it. */
  readonly maxTokens?: number;
  readonly tokenizer: TokenizerLike;
}

/** The slice of the embedding service ingest needs (the models stage's `Embedder` satisfies it). */
export interface IngestEmbedder {
  readonly modelId: string;
  readonly dim: number;
  /**
   * The tokenizer and input limit. A model loaded on first use loads here, so the pipeline asks only when a document
   * has to be cut: a run that finds every document unchanged needs no model.
   */
  tokenization(): Promise<TokenBudget>;
  embedPassages(texts: string[]): Promise<Float32Array[]>;
}

/**
 * When the write path asks the store to bring its derived structures (the saved HNSW graph) up to date. Every
 * committed batch is durable either way; checkpoints only bound recovery work after a crash, and each rewrites the
 * whole graph, so a server taking small batches leaves them to its own policy across requests.
 */
export interface CheckpointPolicy {
  /** Within one run, after this many changed passages (Infinity: never mid-run). */
  everyPassages: number;
  /** When the run ends. */
  atEnd: boolean;
}

/** What makes a document unacceptable, beyond its shape. The same rules for every writer give the same outcomes. */
export interface ValidationRules {
  rejectEmptyText: boolean;
}

/** How documents are cut, embedded and committed: the same for every writer of a collection. */
export interface WriteSettings {
  chunk: ChunkOptions;
  /** Embed "title\ntext" instead of the bare passage (the stored text stays the original span). */
  embedTitle: boolean;
  /** Passages embedded and committed per transaction; Infinity: the whole run in one transaction. */
  batchPassages: number;
  checkpoint: CheckpointPolicy;
  rules: ValidationRules;
  /** How files are read (`ingest.ocr`); absent for writers that never read files: nothing is OCR'd. */
  read?: { ocr: OcrOptions };
}

export interface IngestOptions extends WriteSettings {
  store: PassageStore;
  embedder: IngestEmbedder;
  /** Progress bar on stderr: true, false, or 'auto' (only if stderr is a TTY). */
  progress: ProgressMode;
  /** Called as each bad input is skipped, e.g. to print it. */
  onError?: (error: IngestError) => void;
  /** Decide every document's outcome (added / updated / unchanged / error) without chunking, embedding or writing. */
  dryRun?: boolean;
}

interface PreparedDocument {
  doc: SourceDocument;
  hash: string;
  passages: Passage[];
  /** Index of its slot in `summary.outcomes`, filled in once the batch is committed. */
  slot: number;
}

function emptySummary(): IngestSummary {
  return {
    documentsSeen: 0,
    added: 0,
    updated: 0,
    unchanged: 0,
    deleted: 0,
    passagesAdded: 0,
    passagesRemoved: 0,
    errors: [],
    outcomes: [],
    unsupported: {},
    seconds: 0,
  };
}

function invalidDocument(doc: SourceDocument, rules: ValidationRules): string | undefined {
  if (typeof doc.id !== 'string' || doc.id.trim() === '') return 'document id must be a non-empty string';
  if (typeof doc.text !== 'string') return 'document text must be a string';
  if (typeof doc.title !== 'string') return 'document title must be a string';
  if (!isPlainObject(doc.metadata)) return 'document metadata must be a JSON object';
  if (rules.rejectEmptyText && doc.text.trim() === '') return 'text is empty: there is nothing to index';
  return undefined;
}

/** The budget actually used: never more than the embedding model can see after its special tokens. */
export function effectiveChunkOptions(model: TokenBudget, requested: ChunkOptions): ChunkOptions {
  const options: ChunkOptions = { ...requested };
  if (model.maxTokens !== undefined) {
    const special = model.tokenizer.encode('', null, { add_special_tokens: true }).length;
    const modelBudget = model.maxTokens - special;
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

/** How a run cuts documents, known once the model's tokenizer is. */
interface Cutting {
  chunk: ChunkOptions;
  signature: string;
  count: CountTokens;
}

/**
 * One ingest run: documents are validated and hashed, unchanged ones skipped, the rest chunked, embedded and written
 * in bounded batches (one transaction each), with checkpoints as the policy says. One outcome per input document.
 */
class IngestRun {
  readonly summary = emptySummary();
  private passagesEmbedded = 0;
  private readonly startedAt = performance.now();
  /** The signature of the options as requested, before the model's budget was applied. */
  private readonly requestedChunking: string;
  /** Resolved on the first document that needs the model (see `cut()`). */
  private cutting: Promise<Cutting> | undefined;
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
      throw new EmbeddingMismatchError(store.location, store.embedModel, store.dim, embedder.modelId, embedder.dim);
    }
    if (!(options.batchPassages >= 1) || !(options.checkpoint.everyPassages >= 1)) {
      throw new RangeError('batchPassages and checkpoint.everyPassages must be at least 1');
    }
    this.requestedChunking = chunkingSignature(options.chunk, options.embedTitle);
  }

  /** The effective chunking and a token counter; the first call loads a model that is loaded on first use. */
  private cut(): Promise<Cutting> {
    this.cutting ??= this.options.embedder.tokenization().then((model) => {
      const chunk = effectiveChunkOptions(model, this.options.chunk);
      return { chunk, signature: chunkingSignature(chunk, this.options.embedTitle), count: tokenCounter(model.tokenizer) };
    });
    return this.cutting;
  }

  /**
   * Whether a stored document is this one, cut as this run would cut it. Stored signatures always come from effective
   * options, and applying the model's budget to options already within it changes nothing: a stored signature equal
   * to the requested options' one therefore proves the document unchanged without consulting the model. Only when they
   * differ (other options, or requested options the budget would still change) does the effective signature decide.
   */
  private async unchanged(state: { contentHash: string; chunking: string }, hash: string): Promise<boolean> {
    if (state.contentHash !== hash) return false;
    if (state.chunking === this.requestedChunking) return true;
    return state.chunking === (await this.cut()).signature;
  }

  reportError(error: IngestError, id?: string): void {
    this.summary.errors.push(error);
    this.summary.outcomes.push({ id: id ?? error.path, status: 'error', reason: error.message });
    this.options.onError?.(error);
  }

  async add(doc: SourceDocument): Promise<void> {
    const problem = invalidDocument(doc, this.options.rules);
    if (problem) {
      const id = typeof doc.id === 'string' ? doc.id : undefined;
      this.reportError({ path: doc.origin?.path ?? `document ${String(doc.id)}`, line: doc.origin?.line, message: problem }, id);
      return;
    }
    this.summary.documentsSeen++;
    // A second version of a document in the same batch must see the first one stored, not race it.
    if (this.pendingIds.has(doc.id)) await this.flush();
    const hash = await contentHash(doc);
    const state = (await this.options.store.documentStates([doc.id])).get(doc.id);
    if (state && (await this.unchanged(state, hash))) {
      this.summary.unchanged++;
      this.summary.outcomes.push({ id: doc.id, status: 'unchanged', passages: state.passages });
      this.reportProgress();
      return;
    }
    if (this.options.dryRun) {
      // Cut as the real run would, so the plan counts the passages it would write and replace.
      const { count, chunk } = await this.cut();
      const passages = (await chunkDocumentAsync(doc, count, chunk)).length;
      this.summary.passagesAdded += passages;
      this.summary.passagesRemoved += state?.passages ?? 0;
      this.summary[state ? 'updated' : 'added']++;
      this.summary.outcomes.push({ id: doc.id, status: state ? 'updated' : 'added', passages });
      return;
    }
    const { count, chunk } = await this.cut();
    const passages = locatePassages(await chunkDocumentAsync(doc, count, chunk), doc.layout);
    const slot = this.summary.outcomes.push({ id: doc.id, status: 'error', reason: 'not written' }) - 1;
    this.pending.push({ doc, hash, passages, slot });
    this.pendingIds.add(doc.id);
    this.pendingPassages += passages.length;
    if (this.pendingPassages >= this.options.batchPassages) await this.flush();
  }

  async flush(): Promise<void> {
    if (this.pending.length === 0) return;
    const batch = this.pending;
    this.pending = [];
    this.pendingIds = new Set();
    this.pendingPassages = 0;

    const passages = batch.flatMap((p) => p.passages);
    const vectors = await this.embed(passages);
    // Every pending document was cut, so the effective chunking is known.
    const chunking = (await this.cut()).signature;
    let next = 0;
    const writes: DocumentWrite[] = batch.map(({ doc, hash, passages: docPassages }) => ({
      document: { id: doc.id, title: doc.title, contentHash: hash, chunking, metadata: doc.metadata },
      passages: docPassages.map((p) => ({
        id: p.id,
        chunkNo: p.chunkNo,
        title: p.title,
        text: p.text,
        metadata: p.metadata,
        charStart: p.charStart,
        charEnd: p.charEnd,
        ...(p.pageStart !== undefined ? { pageStart: p.pageStart, pageEnd: p.pageEnd } : {}),
        ...(p.section !== undefined ? { section: p.section } : {}),
        vector: vectors[next++]!,
      })),
    }));
    const outcome = await this.options.store.writeDocuments(writes);
    outcome.documents.forEach((written, i) => {
      this.summary.outcomes[batch[i]!.slot] = { id: written.id, status: written.status, passages: written.passages };
    });
    this.summary.added += outcome.inserted;
    this.summary.updated += outcome.replaced;
    this.summary.passagesAdded += outcome.passagesAdded;
    this.summary.passagesRemoved += outcome.passagesRemoved;
    this.sinceCheckpoint += outcome.passagesAdded + outcome.passagesRemoved;
    if (this.sinceCheckpoint >= this.options.checkpoint.everyPassages) {
      await this.options.store.checkpoint();
      this.sinceCheckpoint = 0;
    }
    this.reportProgress();
  }

  private async embed(passages: Passage[]): Promise<Float32Array[]> {
    const texts = passages.map((p) => {
      const title = titleWithSection(p.title, p.section);
      return this.options.embedTitle && title.trim() !== '' ? `${title}\n${p.text}` : p.text;
    });
    const vectors: Float32Array[] = [];
    const step = Number.isFinite(this.options.batchPassages) ? this.options.batchPassages : Math.max(1, texts.length);
    for (let i = 0; i < texts.length; i += step) {
      vectors.push(...(await this.options.embedder.embedPassages(texts.slice(i, i + step))));
      // Reported per embedding step, so one large document shows progress while it is embedded.
      this.passagesEmbedded += Math.min(step, texts.length - i);
      this.reportProgress();
      // onnxruntime resolves in a nextTick, so without a macrotask turn here no timer (the progress line) would run.
      await yieldToEventLoop();
    }
    if (vectors.length !== texts.length) throw new Error(`embedder returned ${vectors.length} vectors for ${texts.length} passages`);
    return vectors;
  }

  private reportProgress(): void {
    const done = this.summary.documentsSeen - this.pending.length;
    this.progress.update(done, this.passagesEmbedded);
  }

  async finish(): Promise<IngestSummary> {
    await this.flush();
    // A dry run wrote nothing, and must not even rewrite the graph file (it may run on a read-only collection).
    if (this.options.checkpoint.atEnd && !this.options.dryRun) await this.options.store.checkpoint();
    this.summary.seconds = (performance.now() - this.startedAt) / 1000;
    return this.summary;
  }
}

/** `source` makes the run's items once its progress exists, so readers can report to it (OCR pages). */
async function run(
  source: (progress: IngestProgress) => AsyncIterable<SourceItem>,
  options: IngestOptions,
  total: number | undefined,
): Promise<IngestSummary> {
  const progress = createProgress(options.progress);
  const ingest = new IngestRun(options, progress);
  progress.start(total ?? 0);
  try {
    for await (const item of source(progress)) {
      if (item.kind === 'error') ingest.reportError(item.error);
      else if (item.kind === 'unsupported')
        ingest.summary.unsupported[item.extension] = (ingest.summary.unsupported[item.extension] ?? 0) + 1;
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

/**
 * Ingests files and folders (.txt, .md, .html, .pdf, .docx, images, .jsonl, BEIR folders); bad inputs are reported
 * and skipped. Files are OCR'd as `options.read` says, each page shown by the progress.
 */
export async function ingestPaths(paths: string[], options: IngestOptions): Promise<IngestSummary> {
  const total = options.progress !== false ? await countSourceDocuments(paths) : undefined;
  const read = (progress: IngestProgress): ReadOptions | undefined =>
    options.read && { ocr: options.read.ocr, onOcrPage: (file, e) => progress.ocrPage(file, e.done, e.total) };
  return run((progress) => readSources(paths, read(progress)), options, total);
}

/** Ingests documents given in memory or streamed by the caller (eval corpora, a REST document API). */
export async function ingestDocuments(
  docs: Iterable<SourceDocument> | AsyncIterable<SourceDocument>,
  options: IngestOptions,
): Promise<IngestSummary> {
  const total = Array.isArray(docs) ? docs.length : undefined;
  return run(() => asItems(docs), options, total);
}

/** Removes documents (passages, BM25 rows, vectors) in one transaction; unknown ids are reported as errors. */
export async function deleteDocuments(ids: string[], store: PassageStore, checkpoint: CheckpointPolicy): Promise<IngestSummary> {
  const startedAt = performance.now();
  const outcome = await store.deleteDocuments(ids);
  if (checkpoint.atEnd || outcome.passagesRemoved >= checkpoint.everyPassages) await store.checkpoint();
  const summary = emptySummary();
  summary.deleted = outcome.deleted.length;
  summary.passagesRemoved = outcome.passagesRemoved;
  summary.errors = outcome.missing.map((id) => ({ path: id, message: 'no document with this id in the index' }));
  const missing = new Set(outcome.missing);
  summary.outcomes = [...new Set(ids)].map((id): DocumentOutcome =>
    missing.has(id) ? { id, status: 'error', reason: 'no document with this id in the index' } : { id, status: 'deleted' },
  );
  summary.seconds = (performance.now() - startedAt) / 1000;
  return summary;
}
