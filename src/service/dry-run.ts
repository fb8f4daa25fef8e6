import {
  ingestDocuments,
  ingestPaths,
  type IngestEmbedder,
  type IngestSummary,
  type SourceDocument,
  type WriteSettings,
} from '../ingest/index.js';
import type { PassageStore } from '../store/index.js';
import { bulkRunOptions, type BulkIngestOptions } from './index-writer.js';

/**
 * Plans a bulk run without writing: it reads the files and the store and reports the outcomes the real run would
 * (the ingest pipeline's dry run). It needs no writer, so a plan can be made while another process (a server) holds
 * the collection's writer lock.
 */
export class DryRunPlanner {
  constructor(
    private readonly store: PassageStore,
    private readonly embedder: IngestEmbedder,
    private readonly settings: WriteSettings,
  ) {}

  ingestPaths(paths: string[], options: BulkIngestOptions): Promise<IngestSummary> {
    return ingestPaths(paths, this.options(options));
  }

  ingestDocuments(docs: Iterable<SourceDocument> | AsyncIterable<SourceDocument>, options: BulkIngestOptions): Promise<IngestSummary> {
    return ingestDocuments(docs, this.options(options));
  }

  private options(options: BulkIngestOptions) {
    return bulkRunOptions(this.settings, this.store, this.embedder, { ...options, dryRun: true });
  }
}
