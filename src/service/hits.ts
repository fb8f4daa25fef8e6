import { passageLocation } from '../retrieval/index.js';
import type { RetrievedHit, RetrieveResult } from './reranking.js';
import type { PassageLocation } from './types.js';

/** A retrieved passage as the service returns it, its retrieval score under `scoreKey` (search: `score`). */
export type HitView<K extends string> = { passageId: string; docId: string; title: string; text: string } & Record<K, number> & {
    rerankScore?: number;
  } & PassageLocation;

/** The one mapping of retrieval hits to results, for search results and answer passages alike. */
export function hitView<K extends string>(hit: RetrievedHit, scoreKey: K): HitView<K> {
  return {
    passageId: hit.passageId,
    docId: hit.docId,
    title: hit.title,
    text: hit.text,
    [scoreKey]: hit.score,
    ...(hit.rerankScore !== undefined && { rerankScore: hit.rerankScore }),
    ...passageLocation(hit),
  } as HitView<K>;
}

/** Retrieval's own timings, `rerankMs` only when the hits were reranked. */
export function retrievalTimings(timings: RetrieveResult['timings']): { embedMs: number; searchMs: number; rerankMs?: number } {
  return {
    embedMs: timings.embedMs,
    searchMs: timings.searchMs,
    ...(timings.rerankMs !== undefined && { rerankMs: timings.rerankMs }),
  };
}
