/**
 * Builds the fixture models: `npm run fixtures -- --size tiny|full --out DIR [--shared DIR] [--seed N] [--write-config FILE]`.
 */
import { existsSync, writeFileSync } from 'node:fs';
import { basename, join, resolve } from 'node:path';
import { Command, InvalidArgumentError, Option } from 'commander';
import {
  buildFixtures,
  DEFAULT_FIXTURE_SEED,
  defaultSharedModelsDir,
  FIXTURE_SOURCE_MODELS,
  type FixtureSize,
} from '../src/fixtures/index.js';

interface CliOptions {
  size: FixtureSize;
  out: string;
  shared: string;
  seed: number;
  writeConfig?: string;
  force?: boolean;
}

/**
 * The settings that serve the fixtures, as a config file: `npm start`, `npm run ingest`, `eval` and `eval:qa` all read
 * `rag.config.json`, so one file makes every command use the same models and collection with nothing exported.
 */
function fixtureConfig(result: { bertDir: string; t5Dir: string; crossEncoderDir: string }, outDir: string): Record<string, unknown> {
  return {
    modelsDir: outDir,
    embedModel: basename(result.bertDir),
    readerModel: basename(result.t5Dir),
    rerankModel: basename(result.crossEncoderDir),
    quantized: false,
    // Its own collection, so fixture vectors never mix with a real model's in indexes/default.
    defaultCollection: 'fixtures',
  };
}

function parseSeed(value: string): number {
  const seed = Number(value);
  if (!Number.isInteger(seed) || seed < 0 || seed > 0xffffffff) throw new InvalidArgumentError('seed must be an integer in [0, 2^32)');
  return seed;
}

function formatMegabytes(bytes: number): string {
  return `${(bytes / 1e6).toFixed(1)} MB`;
}

async function main(): Promise<void> {
  const program = new Command()
    .name('fixtures')
    .description('Build fixture ONNX models (random deterministic weights, real architectures and tokenizers)')
    .addOption(new Option('--size <size>', 'model size').choices(['tiny', 'full']).makeOptionMandatory())
    .requiredOption('--out <dir>', 'output folder (receives fixture-bert-<size>/, fixture-t5-<size>/ and fixture-cross-encoder-<size>/)')
    .option('--shared <dir>', 'folder with the real model configs and tokenizers', defaultSharedModelsDir())
    .option('--seed <n>', 'weight seed', parseSeed, DEFAULT_FIXTURE_SEED)
    .option('--write-config <file>', 'also write a config file (e.g. rag.config.json) that serves these fixtures to every command')
    .option('--force', 'with --write-config: replace an existing file')
    .parse();
  const opts = program.opts<CliOptions>();
  // The fixtures reuse the real models' configs and tokenizers, so without them there is nothing to build from.
  const missing = FIXTURE_SOURCE_MODELS.filter((m) => !existsSync(join(resolve(opts.shared), m, 'config.json')));
  if (missing.length > 0) {
    console.error(
      `npm run fixtures needs the real models' configs and tokenizers (${missing.join(', ')}) in ${resolve(opts.shared)}: ` +
        'the ../shared/models folder beside the checkout, or a folder named with --shared DIR',
    );
    process.exitCode = 2;
    return;
  }
  const configFile = opts.writeConfig === undefined ? undefined : resolve(opts.writeConfig);
  if (configFile && existsSync(configFile) && !opts.force) {
    console.error(`${opts.writeConfig} exists: it was left as it is (--force replaces it)`);
    process.exitCode = 2;
    return;
  }

  const started = performance.now();
  const result = await buildFixtures({
    size: opts.size,
    outDir: resolve(opts.out),
    sharedModelsDir: resolve(opts.shared),
    seed: opts.seed,
  });
  const seconds = (performance.now() - started) / 1000;

  for (const [file, count] of Object.entries(result.params)) {
    const bytes = result.fileBytes[file] ?? 0;
    console.log(`${file}: ${count.toLocaleString('en-US')} parameters, ${formatMegabytes(bytes)}`);
  }
  console.log(
    `built ${opts.size} fixtures in ${seconds.toFixed(1)} s:\n  ${result.bertDir}\n  ${result.t5Dir}\n  ${result.crossEncoderDir}`,
  );
  if (configFile) {
    writeFileSync(configFile, `${JSON.stringify(fixtureConfig(result, resolve(opts.out)), null, 2)}\n`);
    console.log(`wrote ${opts.writeConfig}: npm start, npm run ingest, eval and eval:qa now use these fixtures (collection "fixtures")`);
  }
}

main().catch((err: unknown) => {
  console.error(err instanceof Error ? err.message : err);
  process.exitCode = 1;
});
