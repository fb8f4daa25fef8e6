export {
  ingestPaths,
  ingestDocuments,
  deleteDocuments,
  effectiveChunkOptions,
  type CheckpointPolicy,
  type IngestOptions,
  type IngestEmbedder,
  type ValidationRules,
  type WriteSettings,
} from './pipeline.js';
export { chunkText, chunkDocument, tokenCounter, passageId, type CountTokens, type TokenizerLike, type TextChunk } from './chunker.js';
export { readSources, readJsonl, recordToDocument, parseHtml, isBeirFolder, countSourceDocuments } from './readers.js';
export { contentHash } from './content-hash.js';
export { createProgress, type IngestProgress, type ProgressMode } from './progress.js';
export {
  type ChunkOptions,
  type DocumentOutcome,
  type IngestError,
  type IngestSummary,
  type Passage,
  type SourceDocument,
  type SourceItem,
} from './types.js';
