import express from 'express';
import type { AskHooks } from '../../service/index.js';
import { publicAnswer } from '../answer-view.js';
import type { RouteContext } from '../context.js';
import { toHttpError } from '../errors.js';
import { EventStream, parseBody, ready, requestSignal, runQueued } from '../request.js';
import { askRequestSchema } from '../schemas.js';
import { SCOPE_PREFIXES, scopedCollection } from './scope.js';

/**
 * POST /v1/ask and /v1/collections/{name}/ask: an answer, as one JSON body or (`stream`, or `Accept:
 * text/event-stream`) as `token` events and a last `answer` or `error` event.
 */
export function askRouter({ state, options, queue, inFlight, metrics, read, limit, json }: RouteContext): express.Router {
  const router = express.Router();
  const schema = askRequestSchema(options.limits);
  for (const prefix of SCOPE_PREFIXES) {
    router.post(`${prefix}/ask`, read, limit, json, async (req, res) => {
      const collection = scopedCollection(req, res, options.defaultCollection);
      const { stream, ...params } = parseBody(schema, req);
      const backend = ready(state);
      const wantsStream = stream ?? (req.get('accept') ?? '').includes('text/event-stream');
      const { signal, done } = requestSignal(
        res,
        inFlight,
        options.requestTimeoutMs,
        `answer not finished within ${options.requestTimeoutMs} ms`,
      );
      const ask = async (hooks: AskHooks) => {
        const outcome = await backend.ask({ ...params, collection }, hooks);
        metrics.observeAnswer(outcome);
        return outcome;
      };

      try {
        if (!wantsStream) {
          const outcome = await runQueued(queue, () => ask({ signal }), signal);
          res.json(publicAnswer(outcome));
          return;
        }
        // Admission is decided before the event stream starts, so a full queue is still a plain 503.
        const events = new EventStream(res);
        const pending = runQueued(queue, () => ask({ signal, onToken: (t) => events.send(t, 'token') }), signal);
        events.open();
        try {
          events.send(publicAnswer(await pending), 'answer');
        } catch (err) {
          const httpError = toHttpError(err);
          if (httpError.code === 'internal_error') req.log.error({ err }, 'answer failed');
          events.send(httpError.body(), 'error');
        }
        events.end();
      } finally {
        done();
      }
    });
  }
  return router;
}
