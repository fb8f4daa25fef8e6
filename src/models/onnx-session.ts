/**
 * Every onnxruntime session of the service is created here, so thread counts are set deliberately (transformers.js
 * 2.17 creates its sessions with onnxruntime's defaults, which ran every model on one thread here) and unsupported files
 * fail at start-up with a message naming them.
 */
import ort from 'onnxruntime-node';
import { DomainError, type ErrorKind } from '../common/errors.js';
import { readModelFile, type ModelLocation } from './resolve.js';

/** The part of an onnxruntime session the embedder and the cross-encoder use. */
export interface SessionLike {
  inputNames: readonly string[];
  outputNames: readonly string[];
  run(feeds: Record<string, ort.Tensor>): Promise<Record<string, ort.Tensor>>;
}

export interface SessionThreads {
  /** Threads one operator may use (onnxruntime intraOpNumThreads). */
  intraOp: number;
  /** Threads for independent operators of one graph (only used in parallel execution mode). */
  interOp: number;
}

/** Highest ONNX IR version onnxruntime-node 1.14 (ONNX 1.13) loads. */
export const MAX_IR_VERSION = 8;

export class UnsupportedModelFileError extends DomainError {
  override name = 'UnsupportedModelFileError';
  readonly kind: ErrorKind = 'internal';
  readonly code: string = 'internal_error';
}

/**
 * The `ir_version` field of a serialised ModelProto, read without decoding the graph: the top-level fields are walked
 * and length-delimited ones (the graph) skipped. 0 when absent.
 */
export function onnxIrVersion(bytes: Uint8Array): number {
  let pos = 0;
  const varint = (): number => {
    let result = 0;
    let shift = 0;
    for (;;) {
      if (pos >= bytes.length) throw new UnsupportedModelFileError('truncated ONNX file');
      const b = bytes[pos++]!;
      result += (b & 0x7f) * 2 ** shift;
      if ((b & 0x80) === 0) return result;
      shift += 7;
    }
  };
  while (pos < bytes.length) {
    const tag = varint();
    const field = Math.floor(tag / 8);
    const wire = tag & 7;
    if (field === 1 && wire === 0) return varint();
    if (wire === 0) varint();
    else if (wire === 1) pos += 8;
    else if (wire === 2) pos += varint();
    else if (wire === 5) pos += 4;
    else throw new UnsupportedModelFileError(`not an ONNX model (wire type ${wire} at byte ${pos})`);
  }
  return 0;
}

/** Throws a start-up error naming the file and the fix when onnxruntime-node 1.14 cannot load its IR version. */
export function checkIrVersion(bytes: Uint8Array, file: string): void {
  const ir = onnxIrVersion(bytes);
  if (ir > MAX_IR_VERSION) {
    throw new UnsupportedModelFileError(
      `${file} is ONNX IR version ${ir}, but onnxruntime-node 1.14 (bundled with @xenova/transformers 2.17) loads IR ` +
        `version ${MAX_IR_VERSION} at most. Use an export made for transformers.js 2.x (IR ${MAX_IR_VERSION}, opset <= 17), ` +
        `or convert this file, e.g. in Python: m = onnx.load(path); m.ir_version = ${MAX_IR_VERSION}; onnx.save(m, path) ` +
        `(valid when the graph uses no IR ${MAX_IR_VERSION + 1} features).`,
    );
  }
}

export function sessionOptions(threads: SessionThreads): ort.InferenceSession.SessionOptions {
  return {
    intraOpNumThreads: threads.intraOp,
    interOpNumThreads: threads.interOp,
    executionMode: threads.interOp > 1 ? 'parallel' : 'sequential',
    graphOptimizationLevel: 'all',
  };
}

/** A session over model bytes, with the given threading; `file` names the source in errors. */
export async function createSession(bytes: Uint8Array, file: string, threads?: SessionThreads): Promise<ort.InferenceSession> {
  checkIrVersion(bytes, file);
  try {
    return await ort.InferenceSession.create(bytes, threads ? sessionOptions(threads) : {});
  } catch (err) {
    throw new UnsupportedModelFileError(`onnxruntime could not load ${file}: ${(err as Error).message}`);
  }
}

/** Path of a model's ONNX file in the transformers.js layout. */
export function onnxFile(stem: string, quantized: boolean): string {
  return `onnx/${stem}${quantized ? '_quantized' : ''}.onnx`;
}

/** Reads `onnx/<stem>[_quantized].onnx` of a located model (local, or through transformers.js's hub cache). */
export async function readOnnxFile(
  location: ModelLocation,
  stem: string,
  quantized: boolean,
  progress?: Parameters<typeof readModelFile>[2],
): Promise<{ bytes: Uint8Array; file: string }> {
  const file = onnxFile(stem, quantized);
  const bytes = await readModelFile(location, file, progress);
  return { bytes, file: `${location.dir ?? location.id}/${file}` };
}
