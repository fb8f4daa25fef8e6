/**
 * OpenAI-compatible surface: `POST /v1/chat/completions` (non-streamed and `stream: true`) and `GET /v1/models`, so the
 * `openai` SDKs, chat UIs and agent frameworks can talk to the service as they are. The last user message is the
 * question; earlier user turns may be folded into the retrieval query (chat.retrievalTurns). Citations travel in the
 * top-level `citations` extension field (in the last chunk when streaming), optionally also as `[n]` markers in the
 * content. Errors on these routes use OpenAI's shape: `{"error": {"message", "type", "param", "code"}}`.
 */
import { randomBytes } from 'node:crypto';
import express, { type ErrorRequestHandler, type Request, type Response } from 'express';
import type { AskOutcome, AskParams } from '../../service/index.js';
import { chatRequestSchema, type ChatRequest } from '../chat-schemas.js';
import type { RouteContext } from '../context.js';
import { mayUseCollection, principalOf } from '../auth.js';
import { HttpError, toHttpError } from '../errors.js';
import { EventStream, parseWith, ready, requestSignal, requireJson, runQueued } from '../request.js';
import { yieldToEventLoop } from '../../common/yield.js';

/**
 * Each collection is one model, `fid-rag/<collection>`; the bare collection name is accepted too, and `fid-rag` alone
 * is the default collection, so an example works whatever the default collection is called.
 */
export const MODEL_ID_PREFIX = 'fid-rag/';
const DEFAULT_MODEL_ALIAS = 'fid-rag';

export function modelIdFor(collection: string): string {
  return MODEL_ID_PREFIX + collection;
}

/** The chat routes, with auth (read scope) and the rate limit of every other /v1 route. */
export function chatRouter({ state, options, queue, inFlight, metrics, read, limit, json }: RouteContext): express.Router {
  const router = express.Router();
  const schema = chatRequestSchema(options.limits);

  // A key limited to some collections sees only those models, and gets a 403 for any other, as on the data routes.
  const models = async (res: Response) =>
    (await ready(state).listCollections())
      .filter((c) => mayUseCollection(res, c.name))
      .map((c) => ({
        id: modelIdFor(c.name),
        object: 'model' as const,
        created: Math.floor(Date.parse(c.createdAt) / 1000) || 0,
        owned_by: 'fid-rag',
        collection: c.name,
      }));
  const resolveModel = async (requested: string, res: Response) => {
    const collection =
      requested === DEFAULT_MODEL_ALIAS
        ? options.defaultCollection
        : requested.startsWith(MODEL_ID_PREFIX)
          ? requested.slice(MODEL_ID_PREFIX.length)
          : requested;
    if (!mayUseCollection(res, collection)) {
      throw new HttpError(403, 'forbidden', `API key "${principalOf(res)?.name}" may not use the model "${requested}"`, { field: 'model' });
    }
    const model = (await models(res)).find((m) => m.collection === collection);
    if (!model) {
      throw new HttpError(404, 'model_not_found', `the model "${requested}" does not exist; GET /v1/models lists the models`, {
        field: 'model',
      });
    }
    return model;
  };

  router.get('/v1/models', read, limit, async (_req, res) => {
    res.json({ object: 'list', data: await models(res) });
  });

  // Model ids hold a "/", which clients send as is or percent-encoded.
  router.get(/^\/v1\/models\/(.+)$/, read, limit, async (req, res) => {
    res.json(await resolveModel(decodeURIComponent(String((req.params as Record<string, string>)[0])), res));
  });

  router.post('/v1/chat/completions', read, limit, json, async (req, res) => {
    const body = parseChatBody(schema, req);
    const model = await resolveModel(body.model, res);
    const backend = ready(state);
    const params = { ...askParams(body, options.chatRetrievalTurns, options.limits.maxQueryChars), collection: model.collection };
    const markers = body.rag?.citationMarkers ?? false;
    const id = `chatcmpl-${randomBytes(12).toString('base64url')}`;
    const created = Math.floor(Date.now() / 1000);
    const base = { id, created, model: model.id };
    const { signal, done } = requestSignal(
      res,
      inFlight,
      options.requestTimeoutMs,
      `answer not finished within ${options.requestTimeoutMs} ms`,
    );
    const ask = async (onToken?: (t: { text: string }) => void) => {
      const outcome = await backend.ask(params, { signal, onToken });
      metrics.observeAnswer(outcome);
      return outcome;
    };

    try {
      if (!body.stream) {
        const outcome = await runQueued(queue, () => ask(), signal);
        const citations = chatCitations(outcome);
        res.json({
          ...base,
          object: 'chat.completion',
          choices: [
            {
              index: 0,
              message: {
                role: 'assistant',
                content: outcome.answer + (markers ? markerText(outcome.answer, citations) : ''),
                refusal: null,
              },
              logprobs: null,
              finish_reason: outcome.finishReason,
            },
          ],
          usage: usage(outcome),
          citations,
        });
        return;
      }

      const events = new EventStream(res);
      const chunk = (choices: unknown[], extra: Record<string, unknown> = {}) =>
        events.send({ ...base, object: 'chat.completion.chunk', choices, ...extra });
      const delta = (content: string) => chunk([{ index: 0, delta: { content }, logprobs: null, finish_reason: null }]);
      // Admission is decided before the stream starts (a full queue refuses at once), so it is still a plain 503 in
      // OpenAI's shape; tokens produced before the stream opens are held back until it does.
      let opened = false;
      const early: string[] = [];
      const pending = runQueued(
        queue,
        () =>
          ask((t) => {
            if (t.text === '') return;
            if (opened) delta(t.text);
            else early.push(t.text);
          }),
        signal,
      );
      const refused = await Promise.race([
        pending.then(
          () => undefined,
          (err: unknown) => ({ err }),
        ),
        yieldToEventLoop().then(() => undefined),
      ]);
      if (refused && refused.err instanceof HttpError && refused.err.status === 503) throw refused.err;
      events.open();
      chunk([{ index: 0, delta: { role: 'assistant', content: '' }, logprobs: null, finish_reason: null }]);
      opened = true;
      for (const text of early.splice(0)) delta(text);
      try {
        const outcome = await pending;
        const citations = chatCitations(outcome);
        if (markers && citations.length > 0) delta(markerText(outcome.answer, citations));
        chunk([{ index: 0, delta: {}, logprobs: null, finish_reason: outcome.finishReason }], { citations });
        if (body.stream_options?.include_usage) chunk([], { usage: usage(outcome) });
        events.sendText('[DONE]');
      } catch (err) {
        const httpError = toHttpError(err);
        if (httpError.code === 'internal_error') req.log.error({ err }, 'chat completion failed');
        events.send(openAiErrorBody(httpError));
      }
      events.end();
    } finally {
      done();
    }
  });

  router.use(openAiErrorHandler());
  return router;
}

function parseChatBody(schema: ReturnType<typeof chatRequestSchema>, req: Request): ChatRequest {
  requireJson(req);
  refuseUnsupported(req.body);
  return parseWith(schema, req.body);
}

/** What OpenAI clients may send that this model cannot do gets a 400 naming the parameter, before generic validation. */
function refuseUnsupported(body: unknown): void {
  if (body === null || typeof body !== 'object' || Array.isArray(body)) return;
  const b = body as Record<string, unknown>;
  const bad = (field: string, message: string) => new HttpError(400, 'unsupported_parameter', message, { field });
  if (typeof b.n === 'number' && b.n !== 1) throw bad('n', `n=${b.n} is not supported: this model returns one choice per request`);
  for (const field of ['tools', 'tool_choice', 'functions', 'function_call', 'parallel_tool_calls']) {
    if (b[field] !== undefined && b[field] !== null)
      throw bad(field, `${field}: tool and function calling are not supported by this model`);
  }
  if (Array.isArray(b.messages)) {
    b.messages.forEach((m: unknown, i) => {
      const content = (m as { content?: unknown } | null)?.content;
      if (!Array.isArray(content)) return;
      content.forEach((part: unknown, j) => {
        const type = (part as { type?: unknown } | null)?.type;
        if (type !== 'text')
          throw bad(
            `messages.${i}.content.${j}`,
            `content parts of type "${String(type)}" (images, audio, files) are not supported; send text`,
          );
      });
    });
  }
}

function messageText(content: ChatRequest['messages'][number]['content']): string {
  if (content === null || content === undefined) return '';
  return typeof content === 'string' ? content : content.map((p) => p.text).join('\n');
}

/**
 * The reader reads the last user message; retrieval searches with the last `retrievalTurns` user messages joined, so a
 * follow-up question keeps the subject of the one before it.
 */
export function askParams(body: ChatRequest, retrievalTurns: number, maxQueryChars: number): AskParams {
  const last = body.messages[body.messages.length - 1]!;
  if (last.role !== 'user') {
    throw new HttpError(400, 'invalid_request', `messages.${body.messages.length - 1}: the last message must be the user's question`, {
      field: `messages.${body.messages.length - 1}.role`,
    });
  }
  const question = messageText(last.content).trim();
  if (question === '')
    throw new HttpError(400, 'invalid_request', 'the last user message is empty', {
      field: `messages.${body.messages.length - 1}.content`,
    });
  // The user turns retrieval reads, each bounded like a /v1/ask question.
  const turns = body.messages
    .flatMap((m, i) => (m.role === 'user' ? [{ i, text: messageText(m.content).trim() }] : []))
    .filter((t) => t.text !== '');
  const read = turns.slice(-retrievalTurns);
  for (const t of read) {
    if (t.text.length > maxQueryChars) {
      throw new HttpError(400, 'invalid_request', `messages.${t.i}.content: longer than ${maxQueryChars} characters`, {
        field: `messages.${t.i}.content`,
      });
    }
  }
  const retrievalQuery = read.map((t) => t.text).join('\n');
  const rag = body.rag ?? {};
  return {
    question,
    retrievalQuery,
    k: rag.k,
    mode: rag.mode,
    filter: rag.filter,
    fusion: rag.fusion,
    rerank: rag.rerank,
    maxNewTokens: body.max_completion_tokens ?? body.max_tokens ?? undefined,
    temperature: body.temperature ?? undefined,
    topP: body.top_p ?? undefined,
    topK: body.top_k ?? undefined,
    seed: body.seed ?? undefined,
  };
}

function chatCitations(outcome: AskOutcome) {
  const text = new Map(outcome.passages.map((p) => [p.passageId, p.text]));
  return outcome.citations.map((c, i) => ({ index: i + 1, ...c, text: text.get(c.passageId) ?? '' }));
}

function markerText(answer: string, citations: ReadonlyArray<{ index: number }>): string {
  if (citations.length === 0) return '';
  return (answer === '' ? '' : ' ') + citations.map((c) => `[${c.index}]`).join('');
}

function usage(outcome: AskOutcome) {
  return { prompt_tokens: outcome.promptTokens, completion_tokens: outcome.tokens, total_tokens: outcome.promptTokens + outcome.tokens };
}

/** OpenAI's error `type` for a status; clients (the SDKs) pick their error class by status, the type is informative. */
function errorType(status: number): string {
  if (status === 401) return 'authentication_error';
  if (status === 403) return 'permission_error';
  if (status === 429) return 'rate_limit_error';
  if (status >= 500) return 'server_error';
  return 'invalid_request_error';
}

/** Our error codes as OpenAI's where it has one. */
const OPENAI_CODES: Record<string, string> = {
  unauthorized: 'invalid_api_key',
  rate_limited: 'rate_limit_exceeded',
};

/** `messages.1.content.0` → `messages[1].content[0]`, as OpenAI names parameters. */
function openAiParam(field: string | undefined): string | null {
  if (field === undefined || field === '(body)') return null;
  return field.replace(/\.(\d+)(?=\.|$)/g, '[$1]');
}

export function openAiErrorBody(err: HttpError) {
  return {
    error: {
      message: err.message,
      type: errorType(err.status),
      param: openAiParam(err.extra.field),
      code: OPENAI_CODES[err.code] ?? err.code,
    },
  };
}

function openAiErrorHandler(): ErrorRequestHandler {
  return (err: unknown, req, res, _next) => {
    const httpError = toHttpError(err);
    if (httpError.code === 'internal_error') req.log.error({ err }, 'request failed');
    if (res.headersSent) {
      res.end();
      return;
    }
    for (const [k, v] of Object.entries(httpError.extra.headers ?? {})) res.setHeader(k, v);
    res.status(httpError.status).json(openAiErrorBody(httpError));
  };
}
