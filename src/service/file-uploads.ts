import { LazySlot } from '../common/lazy-slot.js';
import type { AppConfig } from '../config/index.js';
import {
  FileLimitError,
  fileToDocument,
  ParserThread,
  UnreadableFileError,
  type FileParseOptions,
  type OcrOptions,
} from '../ingest/index.js';
import type { Metadata } from '../store/index.js';
import type { DocumentInput, DocumentWriteStatus } from './index-writer.js';
import type { UploadedDocumentFile } from './types.js';

/**
 * Uploaded files → documents, through the same readers as the CLI, parsed off the event loop (a large HTML or DOCX
 * file takes seconds of synchronous work). The parser thread starts with the first upload; its worker is replaced
 * when an upload's parse is stopped.
 */
export class UploadParser {
  private readonly parser = new LazySlot(() => new ParserThread());

  constructor(
    private readonly limits: AppConfig['documents']['upload'],
    private readonly ocr: OcrOptions,
  ) {}

  /**
   * Each file is read into a document whose id is its name; one that cannot be read becomes an `error` outcome with
   * the reason. A file over the parse limits (a zip bomb, too many pages, past its time budget) throws a FileLimitError
   * naming it. An aborted `signal` stops the parse at once (its worker is stopped) and rejects with the signal's reason.
   */
  async read(files: UploadedDocumentFile[], metadata: Metadata, signal?: AbortSignal): Promise<Array<DocumentWriteStatus | DocumentInput>> {
    const { maxParseMs, maxPdfPages, maxPdfInflatedBytes, maxDocxInflatedBytes, maxDocxEntries, maxOcrPages } = this.limits;
    const limits: FileParseOptions = { maxParseMs, maxPdfPages, maxPdfInflatedBytes, maxDocxInflatedBytes, maxDocxEntries, maxOcrPages };
    const read = { ocr: this.ocr };
    const parser = this.parser.get();
    const outcomes: Array<DocumentWriteStatus | DocumentInput> = [];
    for (const [index, file] of files.entries()) {
      signal?.throwIfAborted();
      try {
        const doc = await fileToDocument(file.bytes, file.name, file.format, file.name, metadata, (b, n, f) =>
          parser.parse(b, n, f, limits, signal, read),
        );
        outcomes.push({
          id: doc.id,
          title: doc.title,
          text: doc.text,
          metadata: doc.metadata,
          ...(doc.layout ? { layout: doc.layout } : {}),
        });
      } catch (err) {
        if (err instanceof FileLimitError) {
          throw new FileLimitError(`files.${index} (${JSON.stringify(file.name)}): ${err.message}`, err.status, `files.${index}`);
        }
        if (!(err instanceof UnreadableFileError)) throw err;
        outcomes.push({ id: file.name, status: 'error', error: err.message });
      }
    }
    return outcomes;
  }

  /** Stops the parser thread, if an upload started it. */
  async close(): Promise<void> {
    await this.parser.current?.close();
  }
}
