import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { z } from 'zod';

/**
 * Every setting of the service in one typed object. Precedence: environment variables > config file > defaults,
 * so a deployment can keep a checked-in config file and still override single values per machine.
 */
const configSchema = z.object({
  modelsDir: z.string().default('./models'),
  embedModel: z.string().default('Xenova/bge-small-en-v1.5'),
  readerModel: z.string().default('Xenova/flan-t5-small'),
  quantized: z.boolean().default(true),
  allowRemote: z.boolean().default(true),
  /** Hub endpoint for downloads; a company mirror can stand in for huggingface.co. */
  hubUrl: z.string().url().default('https://huggingface.co/'),
  /** Overrides for embedding models that neither the known-model table nor their own files describe. */
  embedding: z
    .object({
      pooling: z.enum(['mean', 'cls']).optional(),
      queryPrefix: z.string().optional(),
      passagePrefix: z.string().optional(),
      maxTokens: z.number().int().positive().optional(),
      batchSize: z.number().int().positive().default(32),
    })
    .default({ batchSize: 32 }),
  port: z.number().int().min(0).max(65535).default(8080),
  host: z.string().default('0.0.0.0'),
  indexesDir: z.string().default('./indexes'),
  indexName: z.string().regex(/^[A-Za-z0-9._-]+$/).default('default'),
  corpusDir: z.string().default('./corpus'),
  hnsw: z
    .object({
      M: z.number().int().min(2).default(16),
      efConstruction: z.number().int().min(1).default(200),
      efSearch: z.number().int().min(1).default(200),
    })
    .default({ M: 16, efConstruction: 200, efSearch: 200 }),
  chunk: z
    .object({
      maxTokens: z.number().int().min(16).default(200),
      overlapTokens: z.number().int().min(0).default(32),
    })
    .default({ maxTokens: 200, overlapTokens: 32 }),
  retrieval: z
    .object({
      defaultK: z.number().int().positive().default(10),
      maxK: z.number().int().positive().default(100),
      rrfK: z.number().positive().default(60),
      denseWeight: z.number().min(0).default(1),
      bm25Weight: z.number().min(0).default(1),
    })
    .default({ defaultK: 10, maxK: 100, rrfK: 60, denseWeight: 1, bm25Weight: 1 }),
  reader: z
    .object({
      maxInputTokens: z.number().int().positive().optional(),
      defaultK: z.number().int().positive().default(10),
      maxK: z.number().int().positive().default(50),
      maxNewTokens: z.number().int().positive().default(32),
      maxNewTokensLimit: z.number().int().positive().default(256),
      numBeams: z.number().int().positive().default(1),
      maxBeams: z.number().int().positive().default(8),
      lengthPenalty: z.number().default(1),
      noRepeatNgramSize: z.number().int().min(0).default(0),
      citationShare: z.number().min(0).max(1).default(0.15),
    })
    .default({
      defaultK: 10,
      maxK: 50,
      maxNewTokens: 32,
      maxNewTokensLimit: 256,
      numBeams: 1,
      maxBeams: 8,
      lengthPenalty: 1,
      noRepeatNgramSize: 0,
      citationShare: 0.15,
    }),
  server: z
    .object({
      bodyLimit: z.string().default('1mb'),
      maxQueryChars: z.number().int().positive().default(2000),
      generationConcurrency: z.number().int().positive().default(1),
      generationQueueLength: z.number().int().min(0).default(16),
      requestTimeoutMs: z.number().int().positive().default(60_000),
      ingestCorpusOnStart: z.boolean().default(true),
    })
    .default({
      bodyLimit: '1mb',
      maxQueryChars: 2000,
      generationConcurrency: 1,
      generationQueueLength: 16,
      requestTimeoutMs: 60_000,
      ingestCorpusOnStart: true,
    }),
  logLevel: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
});

export type AppConfig = z.infer<typeof configSchema>;
export type ConfigInput = z.input<typeof configSchema>;

export class ConfigError extends Error {
  override name = 'ConfigError';
}

/** Environment variable → config path. Booleans and numbers are parsed strictly so a typo is an error, not a default. */
const ENV_KEYS: Array<{ env: string; key: string; type: 'string' | 'boolean' | 'int' }> = [
  { env: 'RAG_MODELS_DIR', key: 'modelsDir', type: 'string' },
  { env: 'RAG_EMBED_MODEL', key: 'embedModel', type: 'string' },
  { env: 'RAG_READER_MODEL', key: 'readerModel', type: 'string' },
  { env: 'RAG_QUANTIZED', key: 'quantized', type: 'boolean' },
  { env: 'RAG_ALLOW_REMOTE', key: 'allowRemote', type: 'boolean' },
  { env: 'RAG_HUB_URL', key: 'hubUrl', type: 'string' },
  { env: 'PORT', key: 'port', type: 'int' },
  { env: 'HOST', key: 'host', type: 'string' },
  { env: 'RAG_INDEXES_DIR', key: 'indexesDir', type: 'string' },
  { env: 'RAG_INDEX', key: 'indexName', type: 'string' },
  { env: 'RAG_CORPUS_DIR', key: 'corpusDir', type: 'string' },
  { env: 'RAG_LOG_LEVEL', key: 'logLevel', type: 'string' },
];

function parseEnvValue(name: string, raw: string, type: 'string' | 'boolean' | 'int'): string | boolean | number {
  if (type === 'string') return raw;
  if (type === 'boolean') {
    const v = raw.trim().toLowerCase();
    if (['true', '1', 'yes'].includes(v)) return true;
    if (['false', '0', 'no'].includes(v)) return false;
    throw new ConfigError(`${name}=${raw} is not a boolean (use true or false)`);
  }
  if (!/^\d+$/.test(raw.trim())) throw new ConfigError(`${name}=${raw} is not a whole number`);
  return Number(raw);
}

function readConfigFile(file: string): Record<string, unknown> {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError(`cannot read config file ${file}: ${(err as Error).message}`);
  }
  try {
    const parsed: unknown = JSON.parse(text);
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
      throw new Error('top level must be a JSON object');
    }
    return parsed as Record<string, unknown>;
  } catch (err) {
    throw new ConfigError(`config file ${file} is not valid JSON: ${(err as Error).message}`);
  }
}

export interface LoadConfigOptions {
  env?: NodeJS.ProcessEnv;
  /** Explicit config file; otherwise RAG_CONFIG, otherwise `rag.config.json` in `cwd` if it exists. */
  file?: string;
  cwd?: string;
  /** Programmatic overrides (tests, scripts), applied last. */
  overrides?: ConfigInput;
}

export function loadConfig(options: LoadConfigOptions = {}): AppConfig {
  const env = options.env ?? process.env;
  const cwd = options.cwd ?? process.cwd();
  const explicit = options.file ?? env.RAG_CONFIG;
  const file = explicit ?? (existsSync(path.join(cwd, 'rag.config.json')) ? path.join(cwd, 'rag.config.json') : undefined);
  const raw: Record<string, unknown> = file ? readConfigFile(path.resolve(cwd, file)) : {};

  for (const { env: name, key, type } of ENV_KEYS) {
    const value = env[name];
    if (value !== undefined && value !== '') raw[key] = parseEnvValue(name, value, type);
  }
  Object.assign(raw, options.overrides ?? {});

  const result = configSchema.safeParse(raw);
  if (!result.success) {
    const issues = result.error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`).join('; ');
    throw new ConfigError(`invalid configuration${file ? ` (${file})` : ''}: ${issues}`);
  }
  const config = result.data;
  // Relative folders are relative to where the service was started, resolved once so later chdir cannot move them.
  config.modelsDir = path.resolve(cwd, config.modelsDir);
  config.indexesDir = path.resolve(cwd, config.indexesDir);
  config.corpusDir = path.resolve(cwd, config.corpusDir);
  return config;
}

export function indexDir(config: AppConfig, name = config.indexName): string {
  return path.join(config.indexesDir, name);
}
