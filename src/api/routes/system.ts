import express from 'express';
import type { RouteContext } from '../context.js';
import { buildOpenApiDocument } from '../openapi.js';

/** Liveness, readiness, the OpenAPI document and the Prometheus metrics. */
export function systemRouter({ state, options, metrics, read }: RouteContext): express.Router {
  const router = express.Router();
  const openApi = buildOpenApiDocument(options.limits, options.documentLimits);

  router.get('/healthz', (_req, res) => {
    res.json({ status: 'ok' });
  });

  router.get('/readyz', async (_req, res) => {
    // PostgreSQL deployment: the default collection's replication progress, so a load balancer or operator sees lag.
    const replication =
      state.status === 'ready'
        ? await state.backend?.stats({}).then(
            (s) => s.replication,
            () => undefined,
          )
        : undefined;
    res
      .status(state.status === 'ready' ? 200 : 503)
      .json({ status: state.status, ...state.detail, ...(replication ? { replication } : {}) });
  });

  router.get('/openapi.json', (_req, res) => {
    res.json(openApi);
  });

  router.get('/metrics', ...(options.protectMetrics ? [read] : []), async (_req, res) => {
    const { contentType, body } = await metrics.render();
    res.type(contentType).send(body);
  });
  return router;
}
