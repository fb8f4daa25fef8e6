import {
  assertSyncFolder,
  folderDocuments,
  ownedDocuments,
  removedSince,
  unsyncedFileDocuments,
  type FolderWalk,
  type ReadOptions,
} from '../ingest/index.js';
import type { PassageStore } from '../store/index.js';
import type { IndexWriter } from './index-writer.js';
import type { BulkRunOptions, SyncSummary } from './types.js';

const ADOPTED =
  "not written by a sync of this folder (a plain ingest, the API or another folder's sync): it now records the folder, and later syncs delete it when its file goes";
const KEPT =
  'written by a plain ingest, not by a sync of this folder, and not in the folder: a sync never deletes it (`npm run ingest -- --delete <id>` does)';

/**
 * Makes a collection mirror a folder: its documents are added or updated, and documents an earlier sync of the same
 * folder wrote whose files are gone are deleted — nothing else is. A dry run reads every file and reports the same
 * outcomes and deletions without writing.
 */
export async function syncFolder(
  store: PassageStore,
  writer: Pick<IndexWriter, 'ingestDocuments'> & Partial<Pick<IndexWriter, 'deleteMany'>>,
  folder: string,
  options: BulkRunOptions,
  read: ReadOptions,
): Promise<SyncSummary> {
  await assertSyncFolder(folder);
  const owned = await ownedDocuments(store, folder);
  const walk: FolderWalk = { present: new Set(), errors: [], unsupported: {} };
  const summary = await writer.ingestDocuments(folderDocuments(folder, walk, options.onError, read), options);
  const removed = removedSince(owned, walk.present);
  summary.errors.push(...walk.errors);
  summary.outcomes.push(...walk.errors.map((e) => ({ id: e.path, status: 'error' as const, reason: e.message })));
  summary.unsupported = walk.unsupported;
  if (removed.length > 0 && !options.dryRun) {
    if (!writer.deleteMany) throw new Error('syncFolder: a run that deletes needs the collection writer');
    const deleted = await writer.deleteMany(removed);
    summary.deleted = deleted.deleted;
    summary.passagesRemoved += deleted.passagesRemoved;
  } else if (options.dryRun) {
    summary.deleted = removed.length;
    for (const state of (await store.documentStates(removed)).values()) summary.passagesRemoved += state.passages;
  }
  summary.outcomes.push(...removed.map((id) => ({ id, status: 'deleted' as const })));
  // Say why a document is listed when the reason is not its file: one a plain ingest wrote is "updated" because it
  // now records the folder, and from then on this sync owns it.
  for (const o of summary.outcomes) {
    if (o.status === 'updated' && !owned.has(o.id)) o.reason = ADOPTED;
  }
  const kept = (await unsyncedFileDocuments(store, walk.present)).map((id) => ({ id, reason: KEPT }));
  return { ...summary, removed, kept };
}
