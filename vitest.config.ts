import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // Fixture models are built once per run, before any test file starts.
    globalSetup: ['test/global-setup.ts'],
    // onnxruntime-node and better-sqlite3 are native addons: child processes isolate them more safely than threads.
    pool: 'forks',
    poolOptions: { forks: { maxForks: 2, minForks: 1 } },
    testTimeout: 120_000,
    hookTimeout: 300_000,
  },
});
