import express from 'express';
import { assertCollectionAllowed, mayUseCollection } from '../auth.js';
import type { RouteContext } from '../context.js';
import { HttpError } from '../errors.js';
import { parseBody, ready } from '../request.js';
import { createCollectionRequestSchema } from '../schemas.js';
import { parseCollectionName, SCOPE_PREFIXES, scopedCollection } from './scope.js';

/** A collection's statistics (in both scopes), and listing, creating and deleting collections. */
export function collectionsRouter({ state, options, read, write, limit, json }: RouteContext): express.Router {
  const router = express.Router();

  for (const prefix of SCOPE_PREFIXES) {
    router.get(`${prefix}/stats`, read, limit, async (req, res) => {
      const collection = scopedCollection(req, res, options.defaultCollection);
      res.json(await ready(state).stats({ collection }));
    });
  }

  router.get('/v1/collections', read, limit, async (_req, res) => {
    const backend = ready(state);
    const all = await backend.listCollections();
    const { open, peak, max } = backend.openCollections;
    res.json({
      default: options.defaultCollection,
      collections: all.filter((c) => mayUseCollection(res, c.name)),
      open: { count: open, peak, max },
    });
  });

  router.post('/v1/collections', write, limit, json, async (req, res) => {
    const { name, embedModel, chunk } = parseBody(createCollectionRequestSchema, req);
    assertCollectionAllowed(res, name);
    const created = await ready(state).createCollection(name, { embedModel, chunk });
    req.log.info({ collection: name, embedModel: created.embedModel }, 'collection created');
    res.status(201).json(created);
  });

  router.delete('/v1/collections/:collection', write, limit, async (req, res) => {
    const name = parseCollectionName(req.params.collection);
    assertCollectionAllowed(res, name);
    if (!(await ready(state).deleteCollection(name))) {
      throw new HttpError(404, 'collection_not_found', `no collection named "${name}"`, { field: 'name' });
    }
    req.log.info({ collection: name }, 'collection deleted');
    res.json({ name, deleted: true });
  });
  return router;
}
