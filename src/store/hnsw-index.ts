import { closeSync, existsSync, fstatSync, openSync, readSync } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import os from 'node:os';
import hnswlib from 'hnswlib-node';
import type { HnswParams, LabelScore } from './types.js';
import type { VectorIndex } from './vector-index.js';
import { IndexStoreError } from './errors.js';

const { HierarchicalNSW } = hnswlib;
type Hnsw = InstanceType<typeof HierarchicalNSW>;

const RANDOM_SEED = 100;
const MIN_CAPACITY = 1024;
/**
 * Idle native graph objects kept per dimension, about 2.6 MB each (hnswlib's lock table). Enough that collections
 * closing and opening in turn under the default `collections.maxOpen` never drop one to the garbage collector.
 */
const IDLE_GRAPHS_PER_DIM = 8;

/**
 * Native graph objects of closed graphs, for the next graph of the same dimension. hnswlib-node frees a graph only
 * in the destructor of its JS object, which V8 runs after a garbage collection it has no reason to start (it does
 * not see the native memory) and then only on a later turn of the event loop; and every object holds a 2.6 MB lock
 * table whatever its size. A server opening and closing collections in turn grew by that much per reopening, for
 * good. So a closed graph gives its memory back at once (replaced by a one-element graph) and its object is reused.
 */
class NativeGraphPool {
  private readonly idle = new Map<number, Hnsw[]>();

  take(dim: number): Hnsw | undefined {
    return this.idle.get(dim)?.pop();
  }

  fresh(dim: number): Hnsw {
    return new HierarchicalNSW('cosine', dim);
  }

  /** The graph's memory is freed now; beyond the bound the object is left to the garbage collector, emptied. */
  give(dim: number, index: Hnsw, params: HnswParams): void {
    try {
      index.initIndex(1, params.M, params.efConstruction, RANDOM_SEED, true);
    } catch {
      // Out of memory: the object is left without a graph, which its destructor handles.
      return;
    }
    const idle = this.idle.get(dim) ?? [];
    if (idle.length < IDLE_GRAPHS_PER_DIM) idle.push(index);
    this.idle.set(dim, idle);
  }
}

const pool = new NativeGraphPool();

/**
 * Where hnswlib may open a checked graph file: its descriptor, so a writer's checkpoint that unlinks the file
 * meanwhile cannot make the load fail (Linux). Elsewhere undefined, and the file is loaded into a new object.
 */
function pinnedPath(fd: number): string | undefined {
  const file = `/proc/self/fd/${fd}`;
  return existsSync(file) ? file : undefined;
}

/**
 * The in-memory HNSW graph plus the set of labels that are live in it. hnswlib cannot say whether a label is
 * marked deleted without copying its vector, so liveness is tracked here, next to every add and delete. `close()`
 * frees its native memory at once; a closed graph must not be used again.
 */
export class HnswIndex implements VectorIndex {
  private readonly live = new Set<number>();
  /** Labels present in the loaded file, deleted or not; only meaningful right after `load`. */
  private readonly fileLabels: Set<number>;
  private native: Hnsw | undefined;
  /** A save in progress on libuv's thread pool: the native object must outlive it. */
  private saving: Promise<void> | undefined;

  private constructor(
    index: Hnsw,
    readonly dim: number,
    private readonly params: HnswParams,
    fileLabels: number[],
  ) {
    this.native = index;
    this.fileLabels = new Set(fileLabels);
  }

  static create(dim: number, params: HnswParams, capacity = MIN_CAPACITY): HnswIndex {
    const index = pool.take(dim) ?? pool.fresh(dim);
    // allowReplaceDeleted: slots of deleted passages are reused, so updates do not grow the graph without bound.
    index.initIndex(Math.max(MIN_CAPACITY, capacity), params.M, params.efConstruction, RANDOM_SEED, true);
    index.setEf(params.efSearch);
    return new HnswIndex(index, dim, params, []);
  }

  /**
   * The file is checked against hnswlib's layout first (complete, this dimension, a sane capacity): hnswlib-node
   * deletes an object's graph before loading into it and leaves a dangling pointer when the load then fails, so a
   * reused object may only load a file that cannot fail (short of memory running out, which takes the process down
   * anyway). A file that fails the check is refused with its reason.
   */
  static load(file: string, dim: number, params: HnswParams): HnswIndex {
    const fd = openSync(file, 'r');
    let index: Hnsw;
    try {
      assertLoadableHnswFile(fd, file, dim);
      const pinned = pinnedPath(fd);
      const reused = pinned === undefined ? undefined : pool.take(dim);
      index = reused ?? pool.fresh(dim);
      index.readIndexSync(reused ? pinned! : file, true);
    } finally {
      closeSync(fd);
    }
    index.setEf(params.efSearch);
    return new HnswIndex(index, dim, params, index.getIdsList());
  }

  /** Frees the graph's native memory (after a save in progress); idempotent. */
  close(): void {
    const index = this.native;
    if (!index) return;
    this.native = undefined;
    this.live.clear();
    this.fileLabels.clear();
    const recycle = () => pool.give(this.dim, index, this.params);
    if (this.saving) void this.saving.then(recycle, recycle);
    else recycle();
  }

  private get index(): Hnsw {
    if (!this.native) throw new Error('HNSW graph used after close()');
    return this.native;
  }

  get size(): number {
    return this.live.size;
  }

  get capacity(): number {
    return this.index.getMaxElements();
  }

  liveLabels(): IterableIterator<number> {
    return this.live.values();
  }

  has(label: number): boolean {
    return this.live.has(label);
  }

  /** Labels the loaded file contains (live or deleted). */
  labelsFromFile(): IterableIterator<number> {
    return this.fileLabels.values();
  }

  inFile(label: number): boolean {
    return this.fileLabels.has(label);
  }

  /** Trusts the caller's bookkeeping that `label` is live in the loaded file. */
  adoptFromFile(label: number): void {
    this.live.add(label);
  }

  add(label: number, vector: Float32Array): void {
    if (this.live.has(label)) return;
    if (this.fileLabels.has(label)) {
      // Present in the file but deleted there: undelete instead of adding a second point with the same label.
      try {
        this.index.unmarkDelete(label);
        this.live.add(label);
        return;
      } catch {
        // Not deleted after all (the file is ahead of the bookkeeping): it is live.
        this.live.add(label);
        return;
      }
    }
    this.ensureCapacity(1);
    this.index.addPoint(Array.from(vector), label, true);
    this.live.add(label);
  }

  remove(label: number): void {
    if (this.live.delete(label)) {
      this.index.markDelete(label);
      return;
    }
    if (this.fileLabels.has(label)) this.markDeletedQuietly(label);
  }

  /** For labels of the loaded file that no passage owns any more: they may or may not be deleted already. */
  markDeletedQuietly(label: number): void {
    this.live.delete(label);
    try {
      this.index.markDelete(label);
    } catch {
      // Already deleted, or its slot was reused.
    }
  }

  search(vector: Float32Array, k: number, allow?: (label: number) => boolean, ef = this.params.efSearch): LabelScore[] {
    const n = Math.min(k, this.live.size, this.index.getMaxElements());
    if (n <= 0) return [];
    const wantedEf = Math.max(ef, n);
    if (this.index.getEf() !== wantedEf) this.index.setEf(wantedEf);
    const { neighbors, distances } = this.index.searchKnn(Array.from(vector), n, allow);
    // hnswlib's cosine space returns 1 - cos.
    return neighbors.map((label, i) => ({ label, score: 1 - distances[i]! }));
  }

  /** The stored vector, or undefined if the label is missing or deleted in the graph itself. */
  storedVector(label: number): Float32Array | undefined {
    try {
      return Float32Array.from(this.index.getPoint(label));
    } catch {
      return undefined;
    }
  }

  allGraphLabels(): number[] {
    return this.index.getIdsList();
  }

  /**
   * hnswlib's saveIndex never checks its output stream: on a full disk, a file size limit or an unwritable folder it
   * returns normally after writing a short file, or none. The file is therefore checked against its own layout before
   * anyone may commit it as a checkpoint.
   */
  /**
   * Saved on libuv's thread pool, so searches keep running meanwhile; they only read the graph. The caller must not
   * add or delete points until the promise settles.
   */
  async write(file: string): Promise<void> {
    const saving = this.index.writeIndex(file).then(() => undefined);
    this.saving = saving;
    try {
      await saving;
    } finally {
      if (this.saving === saving) this.saving = undefined;
    }
    await assertCompleteHnswFile(file);
  }

  /** Grows the graph once for a known batch instead of repeatedly during it. */
  reserve(extra: number): void {
    this.ensureCapacity(extra);
  }

  private ensureCapacity(extra: number): void {
    const max = this.index.getMaxElements();
    const needed = this.index.getCurrentCount() + extra;
    if (needed > max) this.index.resizeIndex(Math.max(needed, Math.ceil(max * 1.5)));
  }
}

export class IncompleteHnswFileError extends IndexStoreError {
  override name = 'IncompleteHnswFileError';
}

/** Bytes of hnswlib's file header: 6 size_t, int maxlevel, uint32 entry point, 3 size_t, double mult, size_t ef. */
const HNSW_HEADER_BYTES = 96;

/** Bytes read per step while walking the link lists: bounded memory and short synchronous stretches. */
const READ_CHUNK = 1 << 20;

/** A read the layout walk needs next: `length` bytes at `position` (fewer at the end of the file). */
interface ReadRequest {
  length: number;
  position: number;
}

/** What a load will also demand of a file, beyond a complete layout. */
interface LoadExpectations {
  dim: number;
}

/**
 * Walks an hnswlib index file as `loadIndex` does (header, level-0 block, then one length-prefixed link list per
 * element) and demands that it ends exactly at the file's end; reads only the header and the link-list region, asking
 * its driver for each read, so one walk serves the synchronous and the asynchronous check. With `load`, also what
 * `loadIndex` takes on trust: the vector size, link counts, entry point and a capacity that can be allocated.
 */
function* hnswFileLayout(file: string, size: number, load?: LoadExpectations): Generator<ReadRequest, void, Buffer> {
  const header = yield { length: HNSW_HEADER_BYTES, position: 0 };
  if (header.length < HNSW_HEADER_BYTES)
    throw new IncompleteHnswFileError(`HNSW file ${file} is truncated (${size} bytes, no complete header)`);
  const maxElements = Number(header.readBigUInt64LE(8));
  const count = Number(header.readBigUInt64LE(16));
  const bytesPerElement = Number(header.readBigUInt64LE(24));
  if (load) {
    const labelOffset = Number(header.readBigUInt64LE(32));
    const offsetData = Number(header.readBigUInt64LE(40));
    const entryPoint = header.readUInt32LE(52);
    const maxM = Number(header.readBigUInt64LE(56));
    const maxM0 = Number(header.readBigUInt64LE(64));
    const problem =
      labelOffset - offsetData !== load.dim * 4
        ? `holds ${(labelOffset - offsetData) / 4}-d vectors, expected ${load.dim}`
        : maxM < 1 || offsetData !== maxM0 * 4 + 4 || bytesPerElement !== labelOffset + 8
          ? 'has an inconsistent header'
          : maxElements < count || maxElements * bytesPerElement > os.totalmem()
            ? `declares a capacity of ${maxElements} elements`
            : count > 0 && entryPoint >= count
              ? `names entry point ${entryPoint} among ${count} elements`
              : undefined;
    if (problem) throw new IncompleteHnswFileError(`HNSW file ${file} ${problem}`);
  }
  const linksStart = HNSW_HEADER_BYTES + count * bytesPerElement;
  if (linksStart + 4 * count > size) {
    throw new IncompleteHnswFileError(
      `HNSW file ${file} is truncated: ${size} bytes, its ${count} elements need more than ${linksStart + 4 * count}`,
    );
  }
  // Each element's link list is a uint32 length followed by that many bytes; the walk reads the region a chunk at
  // a time, carrying the offset of the next length field across chunks.
  let next = linksStart;
  let walked = 0;
  while (walked < count) {
    if (next + 4 > size) throw new IncompleteHnswFileError(`HNSW file ${file} is truncated in the link lists (${size} bytes)`);
    const chunk = yield { length: Math.min(READ_CHUNK, size - next), position: next };
    if (chunk.length < 4) throw new IncompleteHnswFileError(`HNSW file ${file} ended while it was read`);
    let offset = 0;
    while (walked < count && offset + 4 <= chunk.length) {
      offset += 4 + chunk.readUInt32LE(offset);
      walked++;
    }
    next += offset;
  }
  if (next !== size) {
    throw new IncompleteHnswFileError(`HNSW file ${file} is ${size} bytes but its layout needs ${next}: truncated or corrupt`);
  }
}

async function readExactly(file: FileHandle, length: number, position: number): Promise<Buffer> {
  const buffer = Buffer.alloc(length);
  let done = 0;
  while (done < length) {
    const { bytesRead } = await file.read(buffer, done, length - done, position + done);
    if (bytesRead === 0) break;
    done += bytesRead;
  }
  return buffer.subarray(0, done);
}

function readExactlySync(fd: number, length: number, position: number): Buffer {
  const buffer = Buffer.alloc(length);
  let done = 0;
  while (done < length) {
    const bytesRead = readSync(fd, buffer, done, length - done, position + done);
    if (bytesRead === 0) break;
    done += bytesRead;
  }
  return buffer.subarray(0, done);
}

/** Demands a complete file (see hnswFileLayout); for checking a saved graph before it may be committed. */
export async function assertCompleteHnswFile(file: string): Promise<void> {
  let handle: FileHandle;
  try {
    handle = await open(file, 'r');
  } catch (err) {
    throw new IncompleteHnswFileError(`HNSW file ${file} was not written: ${(err as Error).message}`);
  }
  try {
    const walk = hnswFileLayout(file, (await handle.stat()).size);
    for (let step = walk.next(); !step.done;) step = walk.next(await readExactly(handle, step.value.length, step.value.position));
  } finally {
    await handle.close();
  }
}

/** Demands a file hnswlib can load as a graph of `dim`-d vectors, through an open descriptor (see HnswIndex.load). */
function assertLoadableHnswFile(fd: number, file: string, dim: number): void {
  const walk = hnswFileLayout(file, fstatSync(fd).size, { dim });
  for (let step = walk.next(); !step.done;) step = walk.next(readExactlySync(fd, step.value.length, step.value.position));
}
