import { describe, expect, it } from 'vitest';
import { KIND_STATUS, toHttpError, HttpError } from '../src/api/errors.js';
import { DomainError, ERROR_KINDS, type ErrorKind } from '../src/common/errors.js';
import { FileLimitError } from '../src/ingest/index.js';
import { ModelNotFoundError } from '../src/models/index.js';
import {
  CollectionExistsError,
  CollectionNotFoundError,
  CollectionProtectedError,
  InvalidRerankError,
  QueueFullError,
  ReadOnlyIndexError,
  RerankerUnavailableError,
  ServiceError,
  WriteCancelledError,
  WriteQueueFullError,
} from '../src/service/index.js';
import {
  IndexLockedError,
  IndexStoreError,
  InvalidCollectionNameError,
  InvalidFilterError,
  StorageUnavailableError,
} from '../src/store/index.js';

const seen = (err: unknown) => {
  const h = toHttpError(err);
  return { status: h.status, body: JSON.parse(JSON.stringify(h.body())), headers: h.extra.headers ?? {} };
};

describe('the domain error model', () => {
  it('gives every kind a status', () => {
    for (const kind of ERROR_KINDS) expect(KIND_STATUS[kind], kind).toBeGreaterThanOrEqual(400);
    expect(Object.keys(KIND_STATUS).sort()).toEqual([...ERROR_KINDS].sort());
  });

  it('maps a refusal the API has never heard of by its kind', () => {
    class NewRefusal extends DomainError {
      readonly kind: ErrorKind = 'conflict';
      readonly code = 'new_refusal';
      override readonly field = 'thing';
      override readonly retryAfterSeconds = 7;
    }
    expect(seen(new NewRefusal('the thing is taken'))).toEqual({
      status: 409,
      body: { error: { code: 'new_refusal', message: 'the thing is taken', field: 'thing' } },
      headers: { 'Retry-After': '7' },
    });
    class Fault extends DomainError {
      readonly kind: ErrorKind = 'internal';
      readonly code = 'whatever';
    }
    expect(seen(new Fault('secret /srv/path'))).toEqual({
      status: 500,
      body: { error: { code: 'internal_error', message: 'internal error' } },
      headers: {},
    });
  });

  it('keeps what the client sees of each refusal', () => {
    const cases: Array<[unknown, number, string, string, string | undefined, Record<string, string>]> = [
      [
        new WriteQueueFullError(3),
        503,
        'write_queue_full',
        'too many document writes are waiting; retry later',
        undefined,
        { 'Retry-After': '3' },
      ],
      [new QueueFullError(4), 503, 'queue_full', 'the queue is full', undefined, { 'Retry-After': '4' }],
      [
        new WriteCancelledError(new Error('gone')),
        503,
        'write_cancelled',
        'the write was cancelled; the write was not applied, nothing was changed',
        undefined,
        {},
      ],
      [
        new WriteCancelledError(new HttpError(504, 'timeout', 'request not finished within 5 ms', { headers: { X: '1' } })),
        504,
        'timeout',
        'request not finished within 5 ms; the write was not applied, nothing was changed',
        undefined,
        { X: '1' },
      ],
      [new FileLimitError('too big', 413, 'files.0'), 413, 'payload_too_large', 'too big', 'files.0', {}],
      [new FileLimitError('too slow', 422), 422, 'unprocessable_file', 'too slow', undefined, {}],
      [new ReadOnlyIndexError('read-only'), 409, 'read_only', 'read-only', undefined, {}],
      [new RerankerUnavailableError('no reranker'), 503, 'rerank_unavailable', 'no reranker', undefined, {}],
      [new InvalidRerankError('topN'), 400, 'invalid_request', 'topN', 'rerank.topN', {}],
      [new InvalidFilterError('bad filter'), 400, 'invalid_request', 'bad filter', 'filter', {}],
      [new CollectionNotFoundError('x'), 404, 'collection_not_found', 'no collection named "x"', 'collection', {}],
      [new CollectionExistsError('x'), 409, 'collection_exists', 'a collection named "x" exists already', 'name', {}],
      [new CollectionProtectedError('default'), 409, 'collection_protected', 'default', 'name', {}],
      [new InvalidCollectionNameError('bad name'), 400, 'invalid_request', 'bad name', 'collection', {}],
      [new IndexLockedError('locked'), 503, 'collection_busy', 'locked', undefined, { 'Retry-After': '5' }],
      [
        new ModelNotFoundError('m', ['/srv/models'], 'missing', false),
        422,
        'model_not_found',
        'embedding model "m" is not available on this server',
        'embedModel',
        {},
      ],
      [
        new StorageUnavailableError('query', new Error('ECONNREFUSED')),
        503,
        'database_unavailable',
        new StorageUnavailableError('query', new Error('ECONNREFUSED')).message,
        undefined,
        { 'Retry-After': '2' },
      ],
      [new ServiceError('no reader'), 500, 'internal_error', 'internal error', undefined, {}],
      [new IndexStoreError('closed'), 500, 'internal_error', 'internal error', undefined, {}],
      [new Error('boom'), 500, 'internal_error', 'internal error', undefined, {}],
    ];
    for (const [err, status, code, message, field, headers] of cases) {
      expect(seen(err), (err as Error).name).toEqual({ status, body: { error: { code, message, ...(field ? { field } : {}) } }, headers });
    }
  });

  it('keeps one queue-full refusal: a write queue refusal is a queue refusal', () => {
    expect(new WriteQueueFullError(1)).toBeInstanceOf(QueueFullError);
    expect(new WriteQueueFullError(1)).toBeInstanceOf(DomainError);
  });
});
