import express from 'express';
import type { z } from 'zod';
import type { DocumentWriteStatus } from '../../service/index.js';
import { FilterSyntaxError, parseMetadataFilter, type Metadata, type MetadataFilter } from '../../store/index.js';
import type { RouteContext } from '../context.js';
import { HttpError } from '../errors.js';
import { parseBody, parseWith, ready, requestSignal } from '../request.js';
import { documentIdSchema, listDocumentsQuerySchema, metadataSchema, upsertDocumentsRequestSchema } from '../schemas.js';
import { readMultipart } from '../uploads.js';
import { SCOPE_PREFIXES, scopedCollection } from './scope.js';

/** The documents of a collection: batch upsert as JSON, file upload, listing, one document, delete. */
export function documentsRouter({ state, options, inFlight, metrics, read, write, limit, documentsJson }: RouteContext): express.Router {
  const router = express.Router();
  const upsertSchema = upsertDocumentsRequestSchema(options.documentLimits);
  const idSchema = documentIdSchema(options.documentLimits);
  const uploadMetadataSchema = metadataSchema(options.documentLimits);
  const listSchema = listDocumentsQuerySchema(options.documentLimits);
  const { requestTimeoutMs } = options;

  for (const prefix of SCOPE_PREFIXES) {
    router.post(`${prefix}/documents`, write, limit, ...documentsJson, async (req, res) => {
      const collection = scopedCollection(req, res, options.defaultCollection);
      const { documents } = parseBody(upsertSchema, req);
      const backend = ready(state);
      const { signal, done } = requestSignal(
        res,
        inFlight,
        requestTimeoutMs,
        `write not started or embedded within ${requestTimeoutMs} ms`,
      );
      const started = performance.now();
      try {
        const results = await backend.upsertDocuments(documents, { signal, collection });
        metrics.observeStage('write', performance.now() - started);
        req.log.info({ collection, documents: documents.length, ...countStatuses(results) }, 'documents written');
        res.json({ documents: results });
      } finally {
        done();
      }
    });

    router.post(`${prefix}/documents/files`, write, limit, async (req, res) => {
      const collection = scopedCollection(req, res, options.defaultCollection);
      const backend = ready(state);
      const { signal, done } = requestSignal(res, inFlight, requestTimeoutMs, `upload not read or written within ${requestTimeoutMs} ms`);
      const started = performance.now();
      try {
        const upload = await readMultipart(req, options.uploadLimits);
        const metadata = parseUploadMetadata(uploadMetadataSchema, upload.fields.get('metadata'));
        const seen = new Map<string, number>();
        for (const file of upload.files) {
          const field = `files.${file.index}`;
          parseWith(idSchema, file.name, field, (issue) => `the file name is the document id and it ${issue ?? 'is invalid'}`);
          if (seen.has(file.name))
            throw new HttpError(
              400,
              'invalid_request',
              `${field}: "${file.name}" is also files.${seen.get(file.name)}; file names are document ids`,
              { field },
            );
          seen.set(file.name, file.index);
        }
        const results = await backend.upsertFiles(upload.files, metadata, { signal, collection });
        metrics.observeStage('write', performance.now() - started);
        req.log.info(
          {
            collection,
            files: upload.files.length,
            bytes: upload.files.reduce((n, f) => n + f.bytes.length, 0),
            ...countStatuses(results),
          },
          'files written',
        );
        res.json({ documents: results });
      } finally {
        done();
      }
    });

    router.get(`${prefix}/documents`, read, limit, async (req, res) => {
      const collection = scopedCollection(req, res, options.defaultCollection);
      const { filter, prefix: idPrefix, after, limit: pageSize } = parseWith(listSchema, req.query);
      const metadata = filter === undefined ? undefined : parseListFilter(filter);
      res.json(await ready(state).listDocuments({ collection, metadata, idPrefix, after, limit: pageSize }));
    });

    router.get(`${prefix}/documents/:id`, read, limit, async (req, res) => {
      const collection = scopedCollection(req, res, options.defaultCollection);
      const id = parseWith(idSchema, req.params.id, 'id');
      const doc = await ready(state).getDocument(id, { collection });
      if (!doc) throw new HttpError(404, 'document_not_found', 'no document with this id', { field: 'id' });
      res.json(doc);
    });

    router.delete(`${prefix}/documents/:id`, write, limit, async (req, res) => {
      const collection = scopedCollection(req, res, options.defaultCollection);
      const id = parseWith(idSchema, req.params.id, 'id');
      const backend = ready(state);
      const { signal, done } = requestSignal(res, inFlight, requestTimeoutMs, `delete not started within ${requestTimeoutMs} ms`);
      try {
        const result = await backend.deleteDocument(id, { signal, collection });
        if (!result.deleted) throw new HttpError(404, 'document_not_found', 'no document with this id', { field: 'id' });
        req.log.info({ collection, passagesRemoved: result.passagesRemoved }, 'document deleted');
        res.json({ id, deleted: true, passagesRemoved: result.passagesRemoved });
      } finally {
        done();
      }
    });
  }
  return router;
}

/** The `filter` query parameter: JSON in the filter language; a malformed one is a 400 naming its path. */
function parseListFilter(raw: string): MetadataFilter {
  let value: unknown;
  try {
    value = JSON.parse(raw);
  } catch {
    throw new HttpError(400, 'invalid_request', 'filter: not valid JSON', { field: 'filter' });
  }
  try {
    if (value === null || typeof value !== 'object' || Array.isArray(value)) throw new FilterSyntaxError([], 'must be a JSON object');
    if (Object.keys(value).length > 0) parseMetadataFilter(value);
  } catch (err) {
    if (!(err instanceof FilterSyntaxError)) throw err;
    const field = ['filter', ...err.path].join('.');
    throw new HttpError(400, 'invalid_request', `${field}: ${err.message}`, { field });
  }
  return value as MetadataFilter;
}

/** The optional `metadata` form field of an upload: a JSON object within the document metadata limits. */
function parseUploadMetadata(schema: z.ZodType<Record<string, unknown>>, raw: string | undefined): Metadata {
  if (raw === undefined || raw.trim() === '') return {};
  let value: unknown;
  try {
    value = JSON.parse(raw);
  } catch {
    throw new HttpError(400, 'invalid_request', 'metadata: not valid JSON', { field: 'metadata' });
  }
  return parseWith(schema, value, 'metadata');
}

function countStatuses(results: DocumentWriteStatus[]): Record<string, number> {
  const counts: Record<string, number> = { added: 0, updated: 0, unchanged: 0, error: 0 };
  for (const r of results) counts[r.status] = (counts[r.status] ?? 0) + 1;
  return counts;
}
