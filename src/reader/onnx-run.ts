import ort from 'onnxruntime-node';

export type OrtSession = ort.InferenceSession;
export type OrtTensor = ort.Tensor;
export type OrtFeeds = Record<string, ort.Tensor>;
export type OrtResults = ort.InferenceSession.OnnxValueMapType;

/** Time spent inside onnxruntime during one reader call, so callers can see how much is JS overhead. */
export class OnnxClock {
  encoderMs = 0;
  decoderMs = 0;
  encoderRuns = 0;
  decoderRuns = 0;
  /** Decoder runs that only computed a passage's cross-attention cache (part of decoderRuns, not decoding steps). */
  crossCacheRuns = 0;

  get totalMs(): number {
    return this.encoderMs + this.decoderMs;
  }
}

export async function runEncoderSession(session: OrtSession, feeds: OrtFeeds, clock: OnnxClock): Promise<OrtResults> {
  const t0 = performance.now();
  const out = await session.run(feeds);
  clock.encoderMs += performance.now() - t0;
  clock.encoderRuns++;
  return out;
}

export async function runDecoderSession(
  session: OrtSession,
  feeds: OrtFeeds,
  fetches: string[] | undefined,
  clock: OnnxClock,
): Promise<Record<string, ort.Tensor>> {
  const t0 = performance.now();
  const out = (fetches ? await session.run(feeds, fetches) : await session.run(feeds)) as Record<string, ort.Tensor>;
  clock.decoderMs += performance.now() - t0;
  clock.decoderRuns++;
  return out;
}

export function int64Tensor(values: ArrayLike<number>, dims: readonly number[]): ort.Tensor {
  const data = new BigInt64Array(values.length);
  for (let i = 0; i < values.length; i++) data[i] = BigInt(values[i]!);
  return new ort.Tensor('int64', data, dims);
}

export function onesInt64Tensor(dims: readonly number[]): ort.Tensor {
  const size = dims.reduce((a, b) => a * b, 1);
  return new ort.Tensor('int64', new BigInt64Array(size).fill(1n), dims);
}

export function float32Tensor(data: Float32Array, dims: readonly number[]): ort.Tensor {
  return new ort.Tensor('float32', data, dims);
}

export function boolTensor(value: boolean): ort.Tensor {
  return new ort.Tensor('bool', new Uint8Array([value ? 1 : 0]), [1]);
}

export function float32Data(tensor: ort.Tensor | undefined, name: string): Float32Array {
  if (!tensor) throw new Error(`onnx output "${name}" is missing`);
  if (!(tensor.data instanceof Float32Array)) throw new Error(`onnx output "${name}" is ${tensor.type}, expected float32`);
  return tensor.data;
}

// onnxruntime-node runs synchronously inside a nextTick callback, so a chain of awaited runs never lets the event loop
// reach its I/O phase: sockets (and the abort signals they trigger) would wait until decoding ends. The reader yields a
// macrotask between decoder steps (the shared helper), which keeps the server responsive and makes aborts prompt.
export { yieldToEventLoop } from '../common/yield.js';

export class ReaderAbortError extends Error {
  override name = 'AbortError';
  constructor(reason?: unknown) {
    super('answer generation was aborted', reason === undefined ? undefined : { cause: reason });
  }
}

export function throwIfAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw new ReaderAbortError(signal.reason);
}
