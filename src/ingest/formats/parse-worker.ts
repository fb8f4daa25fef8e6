import { parentPort } from 'node:worker_threads';
import { parseFile, UnreadableFileError, type FileFormat } from './index.js';

/** The worker side of `FileParserThread`: parses one file per message, answers with the result or the reason. */
interface ParseRequest {
  id: number;
  bytes: Uint8Array;
  name: string;
  format: FileFormat;
}

parentPort!.on('message', (request: ParseRequest) => {
  parseFile(request.bytes, request.name, request.format).then(
    (parsed) => parentPort!.postMessage({ id: request.id, parsed }),
    (err: unknown) =>
      parentPort!.postMessage({
        id: request.id,
        error: { message: err instanceof Error ? err.message : String(err), unreadable: err instanceof UnreadableFileError },
      }),
  );
});
