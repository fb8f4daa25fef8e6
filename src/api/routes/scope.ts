import type { Request, Response } from 'express';
import { assertCollectionAllowed } from '../auth.js';
import { parseWith } from '../request.js';
import { collectionNameSchema } from '../schemas.js';

/**
 * The data routes are registered once per scope: unscoped under /v1 (the default collection) and under
 * /v1/collections/{name}. A key limited to some collections gets 403 for any other, the default one included.
 */
export const SCOPE_PREFIXES = ['/v1', '/v1/collections/:collection'] as const;

export function parseCollectionName(value: unknown): string {
  return parseWith(collectionNameSchema, value, 'collection');
}

/** The collection a scoped route serves, once the request's API key may use it (403 otherwise). */
export function scopedCollection(req: Request, res: Response, defaultCollection: string): string {
  const collection = req.params.collection === undefined ? defaultCollection : parseCollectionName(req.params.collection);
  assertCollectionAllowed(res, collection);
  return collection;
}
