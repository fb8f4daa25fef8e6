export { ingestPaths, ingestDocuments, deleteDocuments, effectiveChunkOptions, type IngestOptions, type IngestEmbedder } from './pipeline.js';
export {
  chunkText,
  chunkTextAsync,
  chunkDocument,
  chunkDocumentAsync,
  tokenCounter,
  passageId,
  type ChunkAsyncOptions,
  type CountTokens,
  type TokenizerLike,
  type TextChunk,
} from './chunker.js';
export { readSources, readJsonl, recordToDocument, parseHtml, isBeirFolder, countSourceDocuments } from './readers.js';
export { contentHash } from './content-hash.js';
export { createProgress, type IngestProgress, type ProgressMode } from './progress.js';
export {
  DEFAULT_CHUNK,
  type ChunkOptions,
  type IngestError,
  type IngestSummary,
  type Passage,
  type SourceDocument,
  type SourceItem,
} from './types.js';
