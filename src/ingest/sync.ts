import { stat } from 'node:fs/promises';
import path from 'node:path';
import { readSources } from './readers.js';
import type { IngestError, SourceDocument, SourceItem } from './types.js';

/**
 * Folder sync: a collection mirrors a folder. Every document read from the folder records the folder in its metadata
 * under this key, and only documents that carry it are ever deleted by a sync of that folder — documents ingested from
 * elsewhere (another folder, the REST API) are never touched.
 */
export const SOURCE_FOLDER_KEY = 'sourceFolder';

/** What a sync needs to know about the collection: the documents a folder owns, with their change-detection state. */
export interface SyncStore {
  listDocuments(options: {
    metadata?: Record<string, string>;
    after?: string;
    limit?: number;
  }): Promise<{ documents: Array<{ id: string; contentHash: string; chunking: string }>; next?: string }>;
}

export interface OwnedDocument {
  contentHash: string;
  chunking: string;
}

export interface SyncPlan {
  folder: string;
  add: string[];
  update: string[];
  unchanged: string[];
  /** Owned documents whose files are gone. */
  remove: string[];
  /** Files that could not be read: their documents (if any) are kept as they are. */
  unreadable: IngestError[];
  unsupported: Record<string, number>;
}

/** The folder as it is recorded: absolute and normalised, so `docs` and `./docs/` are the same folder. */
export function folderKey(folder: string): string {
  return path.resolve(folder);
}

/** Refuses a folder that is missing or not a folder: syncing it would delete every document it owns. */
export async function assertSyncFolder(folder: string): Promise<void> {
  let info;
  try {
    info = await stat(folder);
  } catch (err) {
    throw new Error(`cannot sync ${folder}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}; nothing was changed`);
  }
  if (!info.isDirectory()) throw new Error(`cannot sync ${folder}: not a folder; nothing was changed`);
}

export async function ownedDocuments(store: SyncStore, folder: string): Promise<Map<string, OwnedDocument>> {
  const owned = new Map<string, OwnedDocument>();
  let after: string | undefined;
  do {
    const page = await store.listDocuments({ metadata: { [SOURCE_FOLDER_KEY]: folderKey(folder) }, after, limit: 1000 });
    for (const d of page.documents) owned.set(d.id, { contentHash: d.contentHash, chunking: d.chunking });
    after = page.next;
  } while (after !== undefined);
  return owned;
}

/**
 * The folder's documents, each recording the folder; ids of everything found (documents, and files that could not be
 * read, whose id is their path as for any file) are collected into `present` as the walk goes.
 */
export async function* folderSources(folder: string, present: Set<string>): AsyncGenerator<SourceItem> {
  const key = folderKey(folder);
  for await (const item of readSources([folder])) {
    if (item.kind === 'document') {
      present.add(item.document.id);
      const document: SourceDocument = { ...item.document, metadata: { ...item.document.metadata, [SOURCE_FOLDER_KEY]: key } };
      yield { kind: 'document', document };
    } else {
      if (item.kind === 'error') present.add(path.relative(folder, item.error.path).split(path.sep).join('/'));
      yield item;
    }
  }
}

/**
 * What a sync would do, without writing: reads every file as the sync would and compares it with the collection.
 * `isUnchanged` is the write path's own test (content hash and chunking), so the plan matches what the run reports.
 */
export async function planSync(
  folder: string,
  store: SyncStore,
  isUnchanged: (doc: SourceDocument, state: OwnedDocument) => boolean,
  existing: (ids: string[]) => Promise<Map<string, OwnedDocument>>,
): Promise<SyncPlan> {
  await assertSyncFolder(folder);
  const owned = await ownedDocuments(store, folder);
  const present = new Set<string>();
  const plan: SyncPlan = { folder: folderKey(folder), add: [], update: [], unchanged: [], remove: [], unreadable: [], unsupported: {} };
  for await (const item of folderSources(folder, present)) {
    if (item.kind === 'error') plan.unreadable.push(item.error);
    else if (item.kind === 'unsupported') plan.unsupported[item.extension] = (plan.unsupported[item.extension] ?? 0) + 1;
    else {
      const doc = item.document;
      const state = owned.get(doc.id) ?? (await existing([doc.id])).get(doc.id);
      if (!state) plan.add.push(doc.id);
      else if (isUnchanged(doc, state)) plan.unchanged.push(doc.id);
      else plan.update.push(doc.id);
    }
  }
  plan.remove = removedSince(owned, present);
  return plan;
}

/** Owned documents whose files are gone, once the folder has been walked (and `present` filled). */
export function removedSince(owned: Map<string, OwnedDocument>, present: Set<string>): string[] {
  return [...owned.keys()].filter((id) => !present.has(id)).sort();
}
