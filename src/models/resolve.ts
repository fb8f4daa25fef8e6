import { existsSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import cliProgress from 'cli-progress';
import { env } from '@xenova/transformers';
import { DomainError, type ErrorKind } from '../common/errors.js';
import { invokedCommand } from '../common/invocation.js';

/** How to get going without the real models, ending with the command the user ran (server, ingest or eval). */
function offlineHint(command: string): string {
  return (
    '  to run offline, name the reader the project trained itself and ships (real answers, BM25 retrieval):\n' +
    `    RAG_EMBED_MODEL=lexical-hash-512 RAG_READER_MODEL=fid-squad-mini ${command}\n` +
    '  (`npm start` with no model configured falls back to it by itself); or build the fixture models (random weights: ' +
    'the answers are meaningless, everything else works), then run your command again:\n' +
    '    npm run fixtures -- --size tiny --out models/fixtures --write-config rag.config.json\n' +
    `    ${command}\n` +
    '  (rag.config.json then names the fixture models for every command; delete it to go back to the real models)'
  );
}

/** What to do about models that could not be loaded; the hub advice depends on whether downloads were on. */
function modelFix(allowRemote: boolean): string {
  const hub = allowRemote
    ? 'hub downloads are on (RAG_ALLOW_REMOTE=true) but did not work: check that this machine can reach the hub, or set RAG_HUB_URL to a mirror'
    : 'or allow hub downloads with RAG_ALLOW_REMOTE=true on a machine with internet access';
  return (
    `  fix: put the model (config.json, tokenizer files, onnx/*.onnx) in one of those folders, or set RAG_MODELS_DIR to ` +
    `the folder that holds it; ${hub}; or choose another model with RAG_EMBED_MODEL / RAG_READER_MODEL.\n${offlineHint(invokedCommand())}`
  );
}

/** Thrown at start-up when a model can be found neither locally nor on the hub; the message says how to fix it. */
export class ModelNotFoundError extends DomainError {
  override name = 'ModelNotFoundError';
  readonly kind: ErrorKind = 'unprocessable';
  readonly code: string = 'model_not_found';
  override readonly field = 'embedModel';
  /** The model, why it failed and where it was looked for, without the advice. */
  readonly problem: string;
  constructor(
    readonly model: string,
    readonly triedPaths: string[],
    reason: string,
    readonly allowRemote: boolean,
  ) {
    const problem = `model "${model}" could not be loaded: ${reason}\n  tried local folders: ${triedPaths.join(', ') || '(none)'}`;
    super(`${problem}\n${modelFix(allowRemote)}`);
    this.problem = problem;
  }

  /** The full message names server folders; the client learns which model, the server log the rest. */
  override get clientMessage(): string {
    return `embedding model "${this.model}" is not available on this server`;
  }
}

/** Every model that could not be loaded, so one start-up attempt tells about all of them. */
export class ModelsNotFoundError extends DomainError {
  override name = 'ModelsNotFoundError';
  readonly kind: ErrorKind = 'internal';
  readonly code: string = 'internal_error';
  constructor(readonly failures: readonly ModelNotFoundError[]) {
    super(
      `${failures.length === 1 ? 'a model' : `${failures.length} models`} could not be loaded:\n` +
        failures.map((f) => f.problem).join('\n') +
        `\n${modelFix(failures.some((f) => f.allowRemote))}`,
    );
  }
}

export interface ModelLocationOptions {
  modelsDir: string;
  allowRemote: boolean;
  /** Hub endpoint (default huggingface.co). */
  hubUrl?: string;
  quantized: boolean;
  /** ONNX file names (without `onnx/` and `.onnx`) the model must provide, e.g. `model` or `encoder_model`. */
  onnxFiles: string[];
}

export interface ModelLocation {
  /** What the user asked for. */
  name: string;
  /** The id handed to transformers.js: a path relative to the models folder, or a hub repository id. */
  id: string;
  source: 'local' | 'hub';
  /** The folder holding the files, when local. */
  dir?: string;
  triedPaths: string[];
}

const looksLikePath = (name: string) => path.isAbsolute(name) || name.startsWith('.');
const looksLikeHubId = (name: string) => /^[\w.-]+\/[\w.-]+$/.test(name);

function onnxPath(dir: string, file: string, quantized: boolean): string {
  return path.join(dir, 'onnx', `${file}${quantized ? '_quantized' : ''}.onnx`);
}

function isDir(p: string): boolean {
  try {
    return statSync(p).isDirectory();
  } catch {
    return false;
  }
}

/**
 * Local folder first, then the hub. transformers.js's global `env` is set here once for both models, so local ids are
 * expressed relative to the models folder and everything else goes through its own download and cache.
 */
export function locateModel(name: string, opts: ModelLocationOptions): ModelLocation {
  const modelsDir = path.resolve(opts.modelsDir);
  configureTransformers(modelsDir, opts.allowRemote, opts.hubUrl);

  const candidates = looksLikePath(name)
    ? [path.resolve(name)]
    : [...new Set([path.join(modelsDir, name), path.join(modelsDir, path.basename(name))])];

  const problems: string[] = [];
  for (const dir of candidates) {
    if (!isDir(dir)) continue;
    const missing = ['config.json', 'tokenizer.json']
      .map((f) => path.join(dir, f))
      .concat(opts.onnxFiles.map((f) => onnxPath(dir, f, opts.quantized)))
      .filter((f) => !existsSync(f));
    if (missing.length === 0) {
      return { name, id: path.relative(modelsDir, dir), source: 'local', dir, triedPaths: candidates };
    }
    problems.push(`${dir} is missing ${missing.map((m) => path.relative(dir, m)).join(', ')}`);
  }

  if (opts.allowRemote && looksLikeHubId(name)) {
    return { name, id: name, source: 'hub', triedPaths: candidates };
  }
  const reason = [
    ...problems,
    opts.allowRemote
      ? looksLikeHubId(name)
        ? ''
        : `"${name}" is not a hub id (owner/name), so it can only be a local folder`
      : 'hub downloads are disabled (RAG_ALLOW_REMOTE=false)',
  ]
    .filter(Boolean)
    .join('; ');
  throw new ModelNotFoundError(name, candidates, reason || 'not found', opts.allowRemote);
}

let configuredFor: string | undefined;

function configureTransformers(modelsDir: string, allowRemote: boolean, hubUrl = 'https://huggingface.co/'): void {
  const key = `${modelsDir}|${allowRemote}|${hubUrl}`;
  if (configuredFor === key) return;
  env.remoteHost = hubUrl.endsWith('/') ? hubUrl : `${hubUrl}/`;
  env.localModelPath = modelsDir + path.sep;
  env.allowLocalModels = true;
  env.allowRemoteModels = allowRemote;
  // Keep hub downloads next to local models instead of inside node_modules, where `npm ci` would delete them.
  env.cacheDir = path.join(modelsDir, '.hub-cache') + path.sep;
  configuredFor = key;
}

/** Reads a JSON file of a located model, local or (through transformers.js's cache) from the hub; undefined if absent. */
export async function readModelJson(location: ModelLocation, file: string): Promise<Record<string, unknown> | undefined> {
  if (location.dir) {
    const p = path.join(location.dir, file);
    return existsSync(p) ? (JSON.parse(readFileSync(p, 'utf8')) as Record<string, unknown>) : undefined;
  }
  const { getModelJSON } = await import('@xenova/transformers/src/utils/hub.js');
  const json = await getModelJSON(location.id, file, false);
  return Object.keys(json).length > 0 ? json : undefined;
}

export async function readModelFile(
  location: ModelLocation,
  file: string,
  progress_callback?: (e: ProgressEvent) => void,
): Promise<Uint8Array> {
  if (location.dir) return new Uint8Array(readFileSync(path.join(location.dir, file)));
  const { getModelFile } = await import('@xenova/transformers/src/utils/hub.js');
  return getModelFile(location.id, file, true, progress_callback ? { progress_callback } : {});
}

interface ProgressEvent {
  status: string;
  name?: string;
  file?: string;
  loaded?: number;
  total?: number;
}

const formatBytes = (n: number) =>
  n >= 1e9 ? `${(n / 1e9).toFixed(2)} GB` : n >= 1e6 ? `${(n / 1e6).toFixed(1)} MB` : `${(n / 1e3).toFixed(0)} kB`;

/**
 * A transformers.js progress callback that draws one bar per file being downloaded from the hub (file, bytes, rate).
 * Only used for hub models: transformers.js reports local reads with the same events.
 */
export function downloadProgress(stream: NodeJS.WriteStream = process.stderr): (e: ProgressEvent) => void {
  let multibar: cliProgress.MultiBar | undefined;
  const bars = new Map<string, { bar: cliProgress.SingleBar; started: number }>();
  return (e) => {
    const key = `${e.name}/${e.file}`;
    if (e.status === 'download') {
      multibar ??= new cliProgress.MultiBar(
        {
          stream,
          format: '{file} |{bar}| {percentage}% {bytes} {rate}',
          hideCursor: true,
          clearOnComplete: false,
          noTTYOutput: true,
          notTTYSchedule: 5000,
        },
        cliProgress.Presets.shades_classic,
      );
      bars.set(key, { bar: multibar.create(100, 0, { file: key, bytes: '', rate: '' }), started: Date.now() });
    } else if (e.status === 'progress') {
      const entry = bars.get(key);
      if (!entry || !e.total) return;
      const loaded = e.loaded ?? 0;
      const seconds = Math.max((Date.now() - entry.started) / 1000, 1e-3);
      entry.bar.setTotal(e.total);
      entry.bar.update(loaded, {
        file: key,
        bytes: `${formatBytes(loaded)}/${formatBytes(e.total)}`,
        rate: `${formatBytes(loaded / seconds)}/s`,
      });
    } else if (e.status === 'done') {
      bars.get(key)?.bar.stop();
      bars.delete(key);
      if (bars.size === 0 && multibar) {
        multibar.stop();
        multibar = undefined;
      }
    }
  };
}

/** Tokenizers without a limit report model_max_length as a huge sentinel (about 1e30): such a value is no limit. */
const SANE_MAX_LENGTH = 100_000;

export function isSaneLength(n: number): boolean {
  return Number.isFinite(n) && n > 0 && n < SANE_MAX_LENGTH;
}

/** What an encoder can read: the smaller of its tokenizer's model_max_length and its position table, where sane. */
export function encoderInputLimit(tokenizer: unknown, maxPositions: unknown): number | undefined {
  const limits = [Number((tokenizer as { model_max_length?: number }).model_max_length), Number(maxPositions)].filter(isSaneLength);
  return limits.length > 0 ? Math.min(...limits) : undefined;
}
