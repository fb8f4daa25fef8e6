import type { FileFormat } from './parse-file.js';
import type { OcrOptions, OcrPageEvent, ParseLimits } from './types.js';

/**
 * The messages between `ParserThread` and its worker (parse-worker.ts): one file or JSON text per message, answered
 * first with `started` (the time budget runs from then), then with `progress` per OCR'd page, then with the result or
 * the reason.
 */
export type ParseMessage =
  | { kind: 'file'; bytes: Uint8Array; name: string; format: FileFormat; limits: ParseLimits | undefined; ocr: OcrOptions | undefined }
  | { kind: 'json'; bytes: Uint8Array; containerOnly: boolean };
export type ParseRequest = ParseMessage & { id: number };

export interface ReplyError {
  kind: 'unreadable' | 'limit' | 'encoding' | 'syntax' | 'other';
  message: string;
  /** For `limit`: the HTTP status the limit calls for. */
  status?: 413 | 422;
}

export type ParseReply =
  | { id: number; started: true }
  | { id: number; progress: OcrPageEvent }
  | { id: number; value: unknown }
  | { id: number; error: ReplyError };
