export {
  ingestPaths,
  ingestDocuments,
  deleteDocuments,
  effectiveChunkOptions,
  type CheckpointPolicy,
  type IngestOptions,
  type IngestEmbedder,
  type TokenBudget,
  type ValidationRules,
  type WriteSettings,
} from './pipeline.js';
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
export { readSources, readJsonl, recordToDocument, readDocumentFile, isBeirFolder, countSourceDocuments } from './readers.js';
export {
  parseFile,
  fileToDocument,
  JsonTextError,
  ParserThread,
  parseHtml,
  parseMarkdown,
  decodeText,
  fileFormat,
  extensionOf,
  FILE_FORMATS,
  MEDIA_TYPES,
  UnreadableFileError,
  FileLimitError,
  type FileFormat,
  type FileParseOptions,
  type ParsedDocument,
} from './formats/index.js';
export { locatePassages, locateSpan, titleWithSection, SECTION_SEPARATOR, type PassageLocation } from './layout.js';
export { contentHash } from './content-hash.js';
export { createProgress, LineProgress, type IngestProgress, type ProgressMode } from './progress.js';
export {
  type ChunkOptions,
  type DocumentOutcome,
  type IngestError,
  type IngestSummary,
  type Passage,
  type SourceDocument,
  type SourceItem,
  type TextLayout,
} from './types.js';
export {
  SOURCE_FOLDER_KEY,
  assertSyncFolder,
  folderDocuments,
  folderKey,
  ownedDocuments,
  removedSince,
  unsyncedFileDocuments,
  type FolderWalk,
  type SyncLister,
} from './sync.js';
