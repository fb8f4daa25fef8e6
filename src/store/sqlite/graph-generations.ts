import { readdirSync, renameSync, unlinkSync } from 'node:fs';
import path from 'node:path';
import { IndexStoreError } from '../errors.js';
import { HnswIndex } from '../hnsw-index.js';
import type { TimeSlice } from '../../common/time-slice.js';
import type { FaultPoint, HnswParams, LabelScore } from '../types.js';
import { dot } from '../vectors.js';
import { fsyncDir, fsyncFileAsync } from './atomic-file.js';
import { type PassageTables, type TableChanges } from './passage-tables.js';
import { readMeta } from './schema.js';

const HNSW_FILE = /^hnsw-(\d+)\.bin(\.tmp.*)?$/;
const hnswFileName = (generation: number) => `hnsw-${generation}.bin`;

/**
 * The crash/generation protocol between SQLite (the source of truth) and the saved HNSW graph (a derived,
 * periodically saved acceleration structure).
 *
 * SQLite rows and vectors are written in one transaction per batch with `in_hnsw = 0`. A checkpoint writes the whole
 * graph to `hnsw-<g+1>.bin.tmp`, fsyncs, renames it to `hnsw-<g+1>.bin`, and only then commits
 * `hnsw_generation = g+1` together with `in_hnsw = 1` for the labels it contains; the old file is removed last.
 * Whatever point a crash hits, SQLite names a generation whose file is complete, every `in_hnsw = 1` passage is live
 * in that file, and labels in the file that no passage owns are stale deletions. Loading reconciles: stale labels are
 * marked deleted, `in_hnsw = 0` passages are added from their stored vectors (no re-embedding), and the next
 * checkpoint persists the result.
 */
export class GraphGenerations {
  private graph!: HnswIndex;
  /** Labels in the in-memory graph whose SQLite rows still say `in_hnsw = 0`. */
  private unpersisted = new Set<number>();
  /** Labels of a write in progress: in the graph already, not committed yet, hidden from searches. */
  private readonly staged = new Set<number>();
  private dirty = false;
  private generation = 0;
  private dataVersion = 0;
  private rebuilt = false;

  constructor(
    private readonly dir: string,
    private readonly tables: PassageTables,
    private readonly dim: number,
    /** Creation-time M/efConstruction from the manifest, with this open's efSearch. */
    private readonly params: HnswParams,
    private readonly readonly: boolean,
    private readonly fault: (point: FaultPoint) => void,
  ) {
    this.load();
  }

  get index(): HnswIndex {
    return this.graph;
  }

  get currentGeneration(): number {
    return this.generation;
  }

  get rebuiltFromVectors(): boolean {
    return this.rebuilt;
  }

  get isDirty(): boolean {
    return this.dirty;
  }

  /**
   * Loads the graph of the current generation and reconciles it with SQLite, inside one read transaction so the
   * rows, flags and generation come from a single snapshot. A reader can lose a race with a writer's checkpoint (the
   * snapshot's file is replaced and deleted just before being opened); it then simply retries on a newer snapshot.
   */
  private load(): void {
    const maxAttempts = this.readonly ? 3 : 1;
    for (let attempt = 1; ; attempt++) {
      const loaded = this.tables.db.transaction(() => this.loadFromSnapshot(attempt === maxAttempts))();
      if (loaded) return;
    }
  }

  private loadFromSnapshot(lastAttempt: boolean): boolean {
    const db = this.tables.db;
    const generation = Number(readMeta(db, 'hnsw_generation') ?? 0);
    const file = path.join(this.dir, hnswFileName(generation));
    let graph: HnswIndex | undefined;
    let rebuilt = false;
    if (generation > 0) {
      try {
        graph = HnswIndex.load(file, this.dim, this.params);
      } catch {
        if (!lastAttempt) return false;
        // Missing or unreadable: every vector is also in SQLite, so the graph can be rebuilt from there.
        rebuilt = true;
      }
    }
    const rows = db.prepare('SELECT label, in_hnsw FROM passages').raw().all() as Array<[number, number]>;
    const fromFile = graph !== undefined;
    graph ??= HnswIndex.create(this.dim, this.params, rows.length);
    let reconciled: { pending: number[]; staleLabels: number };
    try {
      reconciled = this.reconcile(graph, fromFile, rows);
    } catch (err) {
      graph.close();
      throw err;
    }
    // A reload (read-only opens following a writer) frees the graph it replaces at once.
    this.graph?.close();
    this.graph = graph;
    this.generation = generation;
    this.rebuilt = rebuilt;
    this.unpersisted = new Set(reconciled.pending);
    this.dirty = reconciled.pending.length > 0 || rebuilt || reconciled.staleLabels > 0;
    this.dataVersion = this.readDataVersion();
    return true;
  }

  /** Brings a loaded (or new) graph in line with the passages table: stale labels deleted, pending ones added. */
  private reconcile(graph: HnswIndex, fromFile: boolean, rows: Array<[number, number]>): { pending: number[]; staleLabels: number } {
    const owned = new Set<number>();
    const pending: number[] = [];
    for (const [label, inHnsw] of rows) {
      owned.add(label);
      if (fromFile && inHnsw === 1 && graph.inFile(label)) graph.adoptFromFile(label);
      else pending.push(label);
    }
    let staleLabels = 0;
    if (fromFile) {
      for (const label of graph.labelsFromFile()) {
        if (!owned.has(label)) {
          graph.markDeletedQuietly(label);
          staleLabels++;
        }
      }
    }
    this.addFromStoredVectors(graph, pending);
    return { pending, staleLabels };
  }

  private addFromStoredVectors(graph: HnswIndex, labels: number[]): void {
    if (labels.length === 0) return;
    graph.reserve(labels.length);
    for (const [label, vector] of this.tables.storedVectors(labels)) graph.add(label, vector);
  }

  private readDataVersion(): number {
    return Number(this.tables.db.pragma('data_version', { simple: true }));
  }

  /**
   * For read-only opens: picks up what other processes committed since the last call (new generation, added or
   * deleted passages). Cheap when nothing changed (one pragma).
   */
  refreshIfChanged(): void {
    if (!this.readonly) return;
    const version = this.readDataVersion();
    if (version === this.dataVersion) return;
    const db = this.tables.db;
    const generation = Number(readMeta(db, 'hnsw_generation') ?? 0);
    if (generation !== this.generation) {
      this.load();
      return;
    }
    db.transaction(() => {
      const owned = new Set((db.prepare('SELECT label FROM passages').raw().all() as Array<[number]>).map((r) => r[0]));
      for (const label of [...this.graph.liveLabels()]) if (!owned.has(label)) this.graph.remove(label);
      this.addFromStoredVectors(
        this.graph,
        [...owned].filter((label) => !this.graph.has(label)),
      );
      this.dataVersion = this.readDataVersion();
    })();
  }

  /** Follows a committed table change in the in-memory graph; the file follows at the next checkpoint. */
  /**
   * Inserts a write's new vectors into the graph before its transaction commits, a time slice at a time. Until
   * `publish` they are hidden from searches, so the graph never answers with a passage the tables do not show yet.
   */
  async stage(added: Map<number, Float32Array>, slice: TimeSlice): Promise<void> {
    this.graph.reserve(added.size);
    for (const [label, vector] of added) {
      this.staged.add(label);
      this.graph.add(label, vector);
      if (slice.due) await slice.next();
    }
  }

  /** Right after the commit, in the same turn: removed passages leave the graph and staged ones become searchable. */
  publish(changes: TableChanges): void {
    for (const label of changes.removed) {
      this.graph.remove(label);
      this.unpersisted.delete(label);
    }
    for (const label of changes.added.keys()) {
      this.staged.delete(label);
      this.unpersisted.add(label);
    }
    if (changes.added.size > 0 || changes.removed.length > 0) this.dirty = true;
  }

  /** A staged write was rolled back: its vectors leave the graph (their labels are never handed out again). */
  discard(added: Map<number, Float32Array>): void {
    for (const label of added.keys()) {
      if (!this.staged.delete(label)) continue;
      this.graph.remove(label);
    }
  }

  /** Passages live in the graph and committed (staged ones excluded). */
  get searchableSize(): number {
    return this.graph.size - this.staged.size;
  }

  search(vector: Float32Array, k: number, allow: ((label: number) => boolean) | undefined, ef: number | undefined): LabelScore[] {
    if (this.staged.size === 0) return this.graph.search(vector, k, allow, ef);
    const staged = this.staged;
    const visible = allow ? (label: number) => !staged.has(label) && allow(label) : (label: number) => !staged.has(label);
    return this.graph.search(vector, Math.min(k, this.searchableSize), visible, ef);
  }

  /**
   * Saves the graph if it changed: temp file, fsync, rename to the next generation's name, then one SQLite
   * transaction switches the generation and flags the saved labels. Returns whether a file was written. The save runs
   * off the event loop and the transaction in time slices; the caller keeps writes out until it settles.
   */
  async checkpoint(slice: TimeSlice): Promise<boolean> {
    if (!this.dirty) return false;
    const next = this.generation + 1;
    const file = path.join(this.dir, hnswFileName(next));
    const tmp = `${file}.tmp`;
    try {
      await this.graph.write(tmp);
      await fsyncFileAsync(tmp);
    } catch (err) {
      // Nothing was committed: the previous generation stays current and the new passages stay pending in SQLite.
      // The partial file goes at once, since a full disk is the usual cause.
      try {
        unlinkSync(tmp);
      } catch {
        // Never created.
      }
      throw new IndexStoreError(
        `could not save the HNSW graph of index ${this.dir} (disk full, file size limit or read-only folder?): ` +
          `${(err as Error).message}. Nothing is lost: the stored passages are re-added on the next open.`,
        { cause: err },
      );
    }
    this.fault('before-hnsw-rename');
    renameSync(tmp, file);
    fsyncDir(this.dir);
    this.fault('after-hnsw-rename');

    await this.tables.switchGeneration([...this.unpersisted], next, slice);
    this.fault('after-generation-commit');

    const previous = this.generation;
    this.generation = next;
    this.unpersisted.clear();
    this.dirty = false;
    if (previous > 0) {
      try {
        unlinkSync(path.join(this.dir, hnswFileName(previous)));
      } catch {
        // Already gone; a leftover would be removed on the next open anyway.
      }
    }
    return true;
  }

  /** Frees the graph's memory now (after a save in progress); the store is closed. */
  close(): void {
    this.graph.close();
  }

  /** Writers only: graph files of other generations and temp files of interrupted checkpoints. */
  removeStrayFiles(): void {
    for (const name of readdirSync(this.dir)) {
      const match = HNSW_FILE.exec(name);
      if (!match) continue;
      const isCurrent = Number(match[1]) === this.generation && match[2] === undefined;
      if (!isCurrent) unlinkSync(path.join(this.dir, name));
    }
  }

  /**
   * Graph ↔ stored vectors (each passage live with its own vector, nothing else live), and that the saved file of the
   * current generation holds every `in_hnsw = 1` passage.
   */
  verify(): string[] {
    const problems: string[] = [];
    const owned = new Map(this.tables.allVectors());
    for (const [label, vector] of owned) {
      const inGraph = this.graph.has(label) ? this.graph.storedVector(label) : undefined;
      if (!inGraph) problems.push(`passage label ${label} is not searchable in the HNSW graph`);
      else if (Math.abs(dot(inGraph, vector) - 1) > 1e-3) problems.push(`HNSW vector of label ${label} differs from the stored one`);
    }
    for (const label of this.graph.allGraphLabels()) {
      if (!owned.has(label) && this.graph.storedVector(label) !== undefined) {
        problems.push(`HNSW label ${label} is searchable but has no passage`);
      }
    }
    problems.push(...this.verifySavedFile());
    return problems;
  }

  private verifySavedFile(): string[] {
    const problems: string[] = [];
    const saved = this.tables.prepare('SELECT label FROM passages WHERE in_hnsw = 1').pluck().all() as number[];
    if (this.generation === 0) {
      if (saved.length > 0) problems.push(`${saved.length} passages are flagged in_hnsw but no HNSW file was ever saved`);
      return problems;
    }
    const file = path.join(this.dir, hnswFileName(this.generation));
    let fileGraph: HnswIndex;
    try {
      fileGraph = HnswIndex.load(file, this.dim, this.params);
    } catch (err) {
      return [`HNSW file ${file} of generation ${this.generation} cannot be read: ${(err as Error).message}`];
    }
    let missing: number[];
    try {
      missing = saved.filter((label) => fileGraph.storedVector(label) === undefined);
    } finally {
      fileGraph.close();
    }
    if (missing.length > 0) problems.push(`${missing.length} passages flagged in_hnsw are not live in ${hnswFileName(this.generation)}`);
    if (!this.readonly) {
      const pending = this.tables.prepare('SELECT label FROM passages WHERE in_hnsw = 0').pluck().all() as number[];
      const untracked = pending.filter((label) => !this.unpersisted.has(label));
      if (untracked.length > 0) problems.push(`${untracked.length} pending passages are not scheduled for the next checkpoint`);
    }
    return problems;
  }
}
