/**
 * Trained reader weights -> a model folder in the hub layout (docs/training.md): the fp32 and int8 ONNX graphs from
 * the project's builder and quantizer, config.json, generation_config.json and the tokenizer files.
 */
import path from 'node:path';
import { Command } from 'commander';
import { defaultSharedModelsDir, T5_SOURCE_MODEL } from '../src/fixtures/index.js';
import { exportT5 } from '../src/fixtures/export-t5.js';
import { formatTable, runCli } from './lib/cli.js';

const program = new Command()
  .name('reader:export')
  .description('export a trained T5 checkpoint (config.json + model.safetensors, Hugging Face names) as a reader model folder')
  .requiredOption('--checkpoint <dir>', 'folder with config.json and model.safetensors (what scripts/train writes to <out>/model)')
  .requiredOption('--out <dir>', 'model folder to write, e.g. models/my-reader (then RAG_READER_MODEL=my-reader)')
  .option(
    '--tokenizer <dir>',
    'folder with the tokenizer files the model was trained with',
    path.join(defaultSharedModelsDir(), T5_SOURCE_MODEL),
  );

runCli(async () => {
  const opts = program.parse().opts<{ checkpoint: string; out: string; tokenizer: string }>();
  const started = performance.now();
  const result = await exportT5({ checkpointDir: opts.checkpoint, tokenizerDir: opts.tokenizer, outDir: opts.out });
  console.log(formatTable([['file', 'MB'], ...Object.entries(result.files).map(([f, b]) => [f, (b / 1e6).toFixed(1)])]));
  console.log(
    `${(result.parameters / 1e6).toFixed(2)}M parameters -> ${opts.out} in ${((performance.now() - started) / 1000).toFixed(1)} s`,
  );
});
