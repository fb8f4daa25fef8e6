import { open, type FileHandle } from 'node:fs/promises';
import hnswlib from 'hnswlib-node';
import type { HnswParams, LabelScore } from './types.js';
import type { VectorIndex } from './vector-index.js';

const { HierarchicalNSW } = hnswlib;
type Hnsw = InstanceType<typeof HierarchicalNSW>;

const RANDOM_SEED = 100;
const MIN_CAPACITY = 1024;

/**
 * The in-memory HNSW graph plus the set of labels that are live in it. hnswlib cannot say whether a label is
 * marked deleted without copying its vector, so liveness is tracked here, next to every add and delete.
 */
export class HnswIndex implements VectorIndex {
  private readonly live = new Set<number>();
  /** Labels present in the loaded file, deleted or not; only meaningful right after `load`. */
  private readonly fileLabels: Set<number>;

  private constructor(
    private readonly index: Hnsw,
    readonly dim: number,
    /** Beam width of searches that do not name their own. */
    private readonly efSearch: number,
    fileLabels: number[],
  ) {
    this.fileLabels = new Set(fileLabels);
  }

  static create(dim: number, params: HnswParams, capacity = MIN_CAPACITY): HnswIndex {
    const index = new HierarchicalNSW('cosine', dim);
    // allowReplaceDeleted: slots of deleted passages are reused, so updates do not grow the graph without bound.
    index.initIndex(Math.max(MIN_CAPACITY, capacity), params.M, params.efConstruction, RANDOM_SEED, true);
    index.setEf(params.efSearch);
    return new HnswIndex(index, dim, params.efSearch, []);
  }

  static load(file: string, dim: number, params: HnswParams): HnswIndex {
    const index = new HierarchicalNSW('cosine', dim);
    index.readIndexSync(file, true);
    if (index.getNumDimensions() !== dim) {
      throw new Error(`HNSW file ${file} holds ${index.getNumDimensions()}-d vectors, expected ${dim}`);
    }
    index.setEf(params.efSearch);
    return new HnswIndex(index, dim, params.efSearch, index.getIdsList());
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

  search(vector: Float32Array, k: number, allow?: (label: number) => boolean, ef = this.efSearch): LabelScore[] {
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
    await this.index.writeIndex(file);
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

export class IncompleteHnswFileError extends Error {
  override name = 'IncompleteHnswFileError';
}

/** Bytes of hnswlib's file header: 6 size_t, int maxlevel, uint32 entry point, 3 size_t, double mult, size_t ef. */
const HNSW_HEADER_BYTES = 96;

/** Bytes read per step while walking the link lists: bounded memory and short synchronous stretches. */
const READ_CHUNK = 1 << 20;

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

/**
 * Walks an hnswlib index file as `loadIndex` does (header, level-0 block, then one length-prefixed link list per
 * element) and demands that it ends exactly at the file's end; reads only the header and the link-list region.
 */
export async function assertCompleteHnswFile(file: string): Promise<void> {
  let handle: FileHandle;
  try {
    handle = await open(file, 'r');
  } catch (err) {
    throw new IncompleteHnswFileError(`HNSW file ${file} was not written: ${(err as Error).message}`);
  }
  try {
    const size = (await handle.stat()).size;
    const header = await readExactly(handle, HNSW_HEADER_BYTES, 0);
    if (header.length < HNSW_HEADER_BYTES) throw new IncompleteHnswFileError(`HNSW file ${file} is truncated (${size} bytes, no complete header)`);
    const count = Number(header.readBigUInt64LE(16));
    const bytesPerElement = Number(header.readBigUInt64LE(24));
    const linksStart = HNSW_HEADER_BYTES + count * bytesPerElement;
    if (linksStart + 4 * count > size) {
      throw new IncompleteHnswFileError(`HNSW file ${file} is truncated: ${size} bytes, its ${count} elements need more than ${linksStart + 4 * count}`);
    }
    // Each element's link list is a uint32 length followed by that many bytes; the walk reads the region a chunk at
    // a time, carrying the offset of the next length field across chunks.
    let next = linksStart;
    let walked = 0;
    while (walked < count) {
      if (next + 4 > size) throw new IncompleteHnswFileError(`HNSW file ${file} is truncated in the link lists (${size} bytes)`);
      const chunk = await readExactly(handle, Math.min(READ_CHUNK, size - next), next);
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
  } finally {
    await handle.close();
  }
}
