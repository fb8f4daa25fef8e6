import path from 'node:path';
import { loadConfig, type AppConfig, type ConfigInput } from '../../src/config/index.js';
import { openSystem, type RagService } from '../../src/service/index.js';
import { ensureFullFixtures } from './full-fixtures.js';

/**
 * What the ingest benchmarks write with: the embedding model (fp32, local only) in `models` or the full-size fixtures,
 * collections under `work`, opened through the same composition root as the ingest CLI, so the readers, the embedder
 * settings, the write path and the checkpoint policy are the CLI's.
 */
export async function openIngestBench(
  work: string,
  models: { models?: string; model: string },
  overrides: ConfigInput = {},
): Promise<{ config: AppConfig; service: RagService }> {
  const config = loadConfig({
    env: {},
    overrides: {
      modelsDir: models.models ? path.resolve(models.models) : await ensureFullFixtures(),
      embedModel: models.model,
      quantized: false,
      allowRemote: false,
      indexesDir: path.join(work, 'indexes'),
      logLevel: 'silent',
      ...overrides,
    },
  });
  const service = await openSystem(config, {
    writable: true,
    verify: false,
    reader: false,
    loadEmbedder: 'eager',
    prepareDefaultCollection: false,
  });
  return { config, service };
}
