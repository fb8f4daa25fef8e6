import { existsSync } from 'node:fs';
import path from 'node:path';
import { FIXTURE_BUILDER_SOURCE_DIR, defaultSharedModelsDir, findRepoRoot, T5_SOURCE_MODEL } from '../fixtures/index.js';
import { ensureExportedCheckpoint } from '../fixtures/trained-readers.js';

/**
 * The reader the project trained itself on SQuAD (docs/training.md) and ships in `readers/`: what an offline start
 * without configured models serves, and a model name (`RAG_READER_MODEL=fid-squad-mini`) like any other.
 */
export const BUNDLED_READER = 'fid-squad-mini';

/** The committed checkpoint (config.json + fp16 model.safetensors). */
export function bundledReaderCheckpoint(): string {
  return path.join(findRepoRoot(FIXTURE_BUILDER_SOURCE_DIR), 'readers', BUNDLED_READER);
}

export class BundledReaderUnavailableError extends Error {
  override name = 'BundledReaderUnavailableError';
}

/**
 * Exports the bundled checkpoint as a model folder `<modelsDir>/fid-squad-mini` (fp32 and int8 graphs, about 1.5 s),
 * unless the folder is current. The tokenizer is flan-t5's, read from the shared models folder the repository sits
 * beside, as every model the project builds.
 */
export async function ensureBundledReader(modelsDir: string): Promise<{ dir: string; built: boolean }> {
  const checkpoint = bundledReaderCheckpoint();
  const tokenizerDir = path.join(defaultSharedModelsDir(), T5_SOURCE_MODEL);
  for (const [what, file] of [
    ['checkpoint', path.join(checkpoint, 'model.safetensors')],
    ['tokenizer', path.join(tokenizerDir, 'tokenizer.json')],
  ] as const) {
    if (!existsSync(file))
      throw new BundledReaderUnavailableError(`the bundled reader ${BUNDLED_READER} cannot be prepared: its ${what} ${file} is missing`);
  }
  return ensureExportedCheckpoint(checkpoint, path.join(modelsDir, BUNDLED_READER), tokenizerDir);
}
