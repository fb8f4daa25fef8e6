import express from 'express';
import type { RouteContext } from '../context.js';
import { parseBody, ready, requestSignal } from '../request.js';
import { searchRequestSchema } from '../schemas.js';
import { SCOPE_PREFIXES, scopedCollection } from './scope.js';

/** POST /v1/search and /v1/collections/{name}/search. */
export function searchRouter({ state, options, inFlight, metrics, read, limit, json }: RouteContext): express.Router {
  const router = express.Router();
  const schema = searchRequestSchema(options.limits);
  for (const prefix of SCOPE_PREFIXES) {
    router.post(`${prefix}/search`, read, limit, json, async (req, res) => {
      const collection = scopedCollection(req, res, options.defaultCollection);
      const params = parseBody(schema, req);
      const backend = ready(state);
      // Only reranking looks at the signal: it stops scoring when the client leaves or the request times out. The
      // deadline answers the 504 when the time is up whether the search heeds the signal or not.
      const { signal, done, withinDeadline } = requestSignal(
        res,
        inFlight,
        options.requestTimeoutMs,
        `search not finished within ${options.requestTimeoutMs} ms`,
      );
      const result = await withinDeadline(backend.search({ ...params, collection }, { signal })).finally(done);
      // BM25 embeds nothing; every other mode embeds the query.
      if (result.timings.embedMs > 0) metrics.observeStage('embed', result.timings.embedMs);
      metrics.observeStage('search', result.timings.searchMs);
      if (result.timings.rerankMs !== undefined) metrics.observeStage('rerank', result.timings.rerankMs);
      res.json(result);
    });
  }
  return router;
}
