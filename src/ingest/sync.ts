import { stat } from 'node:fs/promises';
import path from 'node:path';
import { readSources, type ReadOptions } from './readers.js';
import type { IngestError, SourceDocument, SourceItem } from './types.js';

/**
 * Folder sync: a collection mirrors a folder. Every document read from the folder records the folder in its metadata
 * under this key, and only documents that carry it are ever deleted by a sync of that folder — documents ingested from
 * elsewhere (another folder, the REST API, a plain `npm run ingest`) are never touched.
 */
export const SOURCE_FOLDER_KEY = 'sourceFolder';

/** The slice of a collection a sync reads: its documents, filtered by metadata, one page at a time. */
export interface SyncLister {
  listDocuments(options: { metadata?: Record<string, unknown>; after?: string; limit?: number }): Promise<{
    documents: Array<{ id: string }>;
    next?: string;
  }>;
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
    // eslint-disable-next-line preserve-caught-error -- the message carries the cause; attaching it would change what is logged
    throw new Error(`cannot sync ${folder}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}; nothing was changed`);
  }
  if (!info.isDirectory()) throw new Error(`cannot sync ${folder}: not a folder; nothing was changed`);
}

/** Every id of the documents whose metadata matches, page by page. */
async function idsWhere(store: SyncLister, metadata: Record<string, unknown>): Promise<string[]> {
  const ids: string[] = [];
  let after: string | undefined;
  do {
    const page = await store.listDocuments({ metadata, after, limit: 1000 });
    for (const d of page.documents) ids.push(d.id);
    after = page.next;
  } while (after !== undefined);
  return ids;
}

/** Ids of the documents a folder's syncs wrote. */
export async function ownedDocuments(store: SyncLister, folder: string): Promise<Set<string>> {
  return new Set(await idsWhere(store, { [SOURCE_FOLDER_KEY]: folderKey(folder) }));
}

/**
 * Documents read from files (they carry `format`) that no sync wrote (no `sourceFolder`) and that this walk did not
 * find: a plain `npm run ingest` wrote them, so a sync keeps them even when their file is gone. A plan names them,
 * so a user who expected the sync to remove them learns why it does not.
 */
export async function unsyncedFileDocuments(store: SyncLister, present: ReadonlySet<string>): Promise<string[]> {
  const unsynced = await idsWhere(store, { format: { $exists: true }, [SOURCE_FOLDER_KEY]: { $exists: false } });
  return unsynced.filter((id) => !present.has(id));
}

export interface FolderWalk {
  /** Ids of every document found, and the paths of files and folders that could not be read. */
  present: Set<string>;
  errors: IngestError[];
  unsupported: Record<string, number>;
}

/**
 * The folder's documents, each recording the folder. What is not a document is recorded in `walk` as the walk goes:
 * an unreadable file or folder keeps its documents (its path counts as present), an unsupported file is counted.
 */
export async function* folderDocuments(
  folder: string,
  walk: FolderWalk,
  onError?: (e: IngestError) => void,
  read?: ReadOptions,
): AsyncGenerator<SourceDocument> {
  const key = folderKey(folder);
  for await (const item of readSources([folder], read) as AsyncGenerator<SourceItem>) {
    if (item.kind === 'document') {
      walk.present.add(item.document.id);
      yield { ...item.document, metadata: { ...item.document.metadata, [SOURCE_FOLDER_KEY]: key } };
    } else if (item.kind === 'error') {
      walk.present.add(path.relative(folder, item.error.path).split(path.sep).join('/'));
      walk.errors.push(item.error);
      onError?.(item.error);
    } else {
      walk.unsupported[item.extension] = (walk.unsupported[item.extension] ?? 0) + 1;
    }
  }
}

/**
 * Owned documents whose files are gone. A document under a path that could not be read (a file, or a whole folder
 * that could not be listed) is kept: it may well still be there.
 */
export function removedSince(owned: Set<string>, present: Set<string>): string[] {
  const underPresent = (id: string) => {
    for (let i = id.indexOf('/'); i !== -1; i = id.indexOf('/', i + 1)) if (present.has(id.slice(0, i))) return true;
    return false;
  };
  return [...owned].filter((id) => !present.has(id) && !underPresent(id)).sort();
}
