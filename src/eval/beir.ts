import { createReadStream } from 'node:fs';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { DatasetFormatError } from './dataset-error.js';

/** One corpus record of a BEIR dataset (`corpus.jsonl`: `{_id, title, text, metadata}`). */
export interface BeirDocument {
  id: string;
  title: string;
  text: string;
  metadata: Record<string, unknown>;
}

export interface BeirDataset {
  corpus: BeirDocument[];
  /** Query id → query text, every query of `queries.jsonl` (also those without judgments). */
  queries: Map<string, string>;
  /** Query id → (document id → relevance grade). */
  qrels: Map<string, Map<string, number>>;
}

const QRELS_HEADER = ['query-id', 'corpus-id', 'score'];

async function* numberedLines(file: string): AsyncGenerator<{ line: string; lineNo: number }> {
  const lines = createInterface({ input: createReadStream(file, { encoding: 'utf8' }), crlfDelay: Infinity });
  let lineNo = 0;
  for await (const line of lines) {
    lineNo++;
    yield { line, lineNo };
  }
}

function parseJsonObject(line: string, file: string, lineNo: number): Record<string, unknown> {
  let value: unknown;
  try {
    value = JSON.parse(line);
  } catch (err) {
    throw new DatasetFormatError(file, lineNo, `invalid JSON (${(err as Error).message})`);
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new DatasetFormatError(file, lineNo, 'expected a JSON object');
  }
  return value as Record<string, unknown>;
}

function requireId(record: Record<string, unknown>, file: string, lineNo: number): string {
  const id = record['_id'];
  // Some BEIR exports write numeric ids; ids are compared as strings everywhere else.
  if (typeof id === 'number' && Number.isFinite(id)) return String(id);
  if (typeof id !== 'string' || id === '') throw new DatasetFormatError(file, lineNo, 'missing or empty "_id"');
  return id;
}

function optionalString(record: Record<string, unknown>, key: string, file: string, lineNo: number): string {
  const value = record[key];
  if (value === undefined || value === null) return '';
  if (typeof value !== 'string') throw new DatasetFormatError(file, lineNo, `"${key}" must be a string`);
  return value;
}

function optionalMetadata(record: Record<string, unknown>, file: string, lineNo: number): Record<string, unknown> {
  const value = record['metadata'];
  if (value === undefined || value === null) return {};
  if (typeof value !== 'object' || Array.isArray(value)) {
    throw new DatasetFormatError(file, lineNo, '"metadata" must be a JSON object');
  }
  return value as Record<string, unknown>;
}

/** Streams `corpus.jsonl` record by record, so large corpora need not fit in memory. Blank lines are ignored. */
export async function* readBeirCorpus(file: string): AsyncGenerator<BeirDocument> {
  const seen = new Set<string>();
  for await (const { line, lineNo } of numberedLines(file)) {
    if (line.trim() === '') continue;
    const record = parseJsonObject(line, file, lineNo);
    const id = requireId(record, file, lineNo);
    if (seen.has(id)) throw new DatasetFormatError(file, lineNo, `duplicate document id "${id}"`);
    seen.add(id);
    const text = record['text'];
    if (typeof text !== 'string') throw new DatasetFormatError(file, lineNo, `document "${id}" has no "text" string`);
    yield { id, title: optionalString(record, 'title', file, lineNo), text, metadata: optionalMetadata(record, file, lineNo) };
  }
}

/** Reads `queries.jsonl` into query id → text. */
export async function readBeirQueries(file: string): Promise<Map<string, string>> {
  const queries = new Map<string, string>();
  for await (const { line, lineNo } of numberedLines(file)) {
    if (line.trim() === '') continue;
    const record = parseJsonObject(line, file, lineNo);
    const id = requireId(record, file, lineNo);
    if (queries.has(id)) throw new DatasetFormatError(file, lineNo, `duplicate query id "${id}"`);
    const text = record['text'];
    if (typeof text !== 'string') throw new DatasetFormatError(file, lineNo, `query "${id}" has no "text" string`);
    queries.set(id, text);
  }
  return queries;
}

/**
 * Parses BEIR qrels text: `query-id<TAB>corpus-id<TAB>score` per line, integer scores. The first line is taken as a
 * header only if it is exactly `query-id corpus-id score` (tab-separated, any case) — BEIR writes one, some
 * exports do not — so a malformed first data line is still reported rather than silently skipped.
 * A pair judged twice with different grades is an error (trec_eval also rejects duplicates).
 */
export function parseQrels(content: string, file: string): Map<string, Map<string, number>> {
  const qrels = new Map<string, Map<string, number>>();
  const firstSeen = new Map<string, number>();
  const lines = content.split(/\r?\n/);
  lines.forEach((line, index) => {
    const lineNo = index + 1;
    if (line.trim() === '') return;
    const fields = line.split('\t').map((f) => f.trim());
    if (lineNo === 1 && fields.length === 3 && fields.every((f, i) => f.toLowerCase() === QRELS_HEADER[i])) return;
    const [queryId, docId, scoreText] = fields;
    if (fields.length !== 3 || !queryId || !docId || scoreText === undefined) {
      throw new DatasetFormatError(file, lineNo, `expected 3 tab-separated fields "query-id corpus-id score", got ${JSON.stringify(line)}`);
    }
    if (!/^[+-]?\d+$/.test(scoreText)) {
      throw new DatasetFormatError(file, lineNo, `score ${JSON.stringify(scoreText)} is not an integer`);
    }
    const score = Number.parseInt(scoreText, 10);
    let judgments = qrels.get(queryId);
    if (judgments === undefined) {
      judgments = new Map();
      qrels.set(queryId, judgments);
    }
    const previous = judgments.get(docId);
    const pairKey = `${queryId}\t${docId}`;
    if (previous !== undefined && previous !== score) {
      throw new DatasetFormatError(
        file,
        lineNo,
        `(${queryId}, ${docId}) judged ${score} but already judged ${previous} on line ${firstSeen.get(pairKey)}`,
      );
    }
    if (previous === undefined) firstSeen.set(pairKey, lineNo);
    judgments.set(docId, score);
  });
  return qrels;
}

/** Reads a qrels file (see `parseQrels`). */
export async function readQrels(file: string): Promise<Map<string, Map<string, number>>> {
  return parseQrels(await readFile(file, 'utf8'), file);
}

/**
 * Loads a BEIR dataset folder: `corpus.jsonl`, `queries.jsonl`, `qrels/<split>.tsv` (split defaults to `test`).
 * Queries are not filtered by the qrels; `evaluateRun` skips queries without judgments, as pytrec_eval does.
 */
export async function loadBeirDataset(dir: string, opts: { split?: string } = {}): Promise<BeirDataset> {
  const split = opts.split ?? 'test';
  const corpus: BeirDocument[] = [];
  for await (const doc of readBeirCorpus(path.join(dir, 'corpus.jsonl'))) corpus.push(doc);
  const queries = await readBeirQueries(path.join(dir, 'queries.jsonl'));
  const qrels = await readQrels(path.join(dir, 'qrels', `${split}.tsv`));
  return { corpus, queries, qrels };
}
