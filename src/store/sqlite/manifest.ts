import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { writeFileAtomic } from './atomic-file.js';
import { EmbeddingMismatchError, IndexStoreError } from '../errors.js';
import type { CollectionManifest } from '../engine.js';
import type { HnswParams } from '../types.js';

export const MANIFEST_FILE = 'manifest.json';
export const FORMAT_VERSION = 1;

export interface IndexManifest extends CollectionManifest {
  formatVersion: number;
}

export function readManifest(dir: string): IndexManifest | undefined {
  const file = path.join(dir, MANIFEST_FILE);
  if (!existsSync(file)) return undefined;
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(file, 'utf8'));
  } catch (err) {
    throw new IndexStoreError(`${file} is not valid JSON: ${(err as Error).message}`);
  }
  return validateManifest(parsed, file);
}

function validateManifest(value: unknown, file: string): IndexManifest {
  const m = value as Partial<IndexManifest> | null;
  const hnsw = m?.hnsw as Partial<HnswParams> | undefined;
  const valid =
    m !== null &&
    typeof m === 'object' &&
    typeof m.formatVersion === 'number' &&
    typeof m.embedModel === 'string' &&
    typeof m.dim === 'number' &&
    typeof hnsw?.M === 'number' &&
    typeof hnsw.efConstruction === 'number' &&
    typeof hnsw.efSearch === 'number' &&
    (m.chunk === undefined || (typeof m.chunk.maxTokens === 'number' && typeof m.chunk.overlapTokens === 'number'));
  if (!valid) throw new IndexStoreError(`${file} is not an index manifest (missing formatVersion, embedModel, dim or hnsw)`);
  if (m.formatVersion !== FORMAT_VERSION) {
    throw new IndexStoreError(
      `${file} has format version ${m.formatVersion}; this build reads version ${FORMAT_VERSION}. Re-ingest into a new index.`,
    );
  }
  return m as IndexManifest;
}

export function writeManifest(dir: string, manifest: IndexManifest): void {
  writeFileAtomic(path.join(dir, MANIFEST_FILE), JSON.stringify(manifest, null, 2) + '\n');
}

export function assertSameEmbedding(dir: string, manifest: IndexManifest, embedModel: string, dim: number): void {
  if (manifest.embedModel !== embedModel || manifest.dim !== dim) {
    throw new EmbeddingMismatchError(dir, manifest.embedModel, manifest.dim, embedModel, dim);
  }
}
