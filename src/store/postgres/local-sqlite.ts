/**
 * TEMPORARY bridge until the embedded engine's own `PassageStore` lands (storage issue, stage 2): presents an
 * `IndexStore` folder as a `PassageStore`, so the replica code is written against the interface it will keep.
 */
import type { CollectionManifest, DocumentPage, ListDocumentsOptions, PassageStore } from '../engine.js';
import { IndexStore } from '../index-store.js';
import type { HnswParams, SearchFilter } from '../types.js';

export interface LocalOpenOptions {
  embedModel: string;
  dim: number;
  hnsw: HnswParams;
  exactFilterThreshold: number;
}

export function openLocalIndex(name: string, dir: string, options: LocalOpenOptions): PassageStore {
  const store = IndexStore.open(dir, { embedModel: options.embedModel, dim: options.dim, hnsw: options.hnsw, exactFilterThreshold: options.exactFilterThreshold });
  const manifest: CollectionManifest = { ...store.manifest };
  return {
    name,
    location: dir,
    manifest,
    embedModel: store.embedModel,
    dim: store.dim,
    readonly: false,
    writeDocuments: async (writes) => store.writeDocuments(writes),
    deleteDocuments: async (ids) => store.deleteDocuments(ids),
    checkpoint: async () => store.checkpoint(),
    documentStates: async (ids) => store.documentStates(ids),
    listDocuments: async (_options?: ListDocumentsOptions): Promise<DocumentPage> => {
      throw new Error('listDocuments arrives with the embedded engine of the storage issue');
    },
    getDocument: async (id) => {
      const doc = store.getDocument(id);
      return doc && { ...doc, chunking: store.documentStates([id]).get(id)?.chunking ?? '' };
    },
    passagesOfDocument: async (id) => store.passagesOfDocument(id),
    passagesByLabels: async (labels) => store.passagesByLabels(labels),
    bm25Search: async (terms, k, options) =>
      store.bm25Search(terms.map((t) => `"${t.replaceAll('"', '""')}"`).join(' OR '), k, options),
    denseSearch: async (vector, k, options) => store.denseSearch(vector, k, options),
    exactSearch: async (vector, k, filter?: SearchFilter) => store.exactSearch(vector, k, filter),
    stats: async () => store.stats(),
    verify: async () => store.verify(),
    close: async () => store.close(),
  };
}
