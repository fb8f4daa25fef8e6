/**
 * docs/configuration.md is generated from the config schema (scripts/config-docs.ts): it fails here when a setting,
 * default, description or environment variable changed without `npm run docs:config`. The README and docs pages'
 * relative links must point at files that exist.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { CONFIG_DOCS_PATH, renderConfigDocs } from '../scripts/config-docs.js';
import { ENV_KEYS } from '../src/config/config.js';
import { REPO_ROOT } from './helpers/fixtures.js';

describe('docs/configuration.md', () => {
  it('is what npm run docs:config generates from the schema (run it after changing src/config/config.ts)', () => {
    expect(readFileSync(CONFIG_DOCS_PATH, 'utf8')).toBe(renderConfigDocs());
  });

  it('lists every environment variable next to its setting', () => {
    const text = renderConfigDocs();
    for (const { env, key, aliasOf } of ENV_KEYS) {
      expect(text).toContain(aliasOf ? `- \`${env}\` → \`${key}\` (the older name of \`${aliasOf}\`` : `| \`${key}\` | \`${env}\` |`);
    }
  });
});

describe('README and docs links', () => {
  const files = [
    'README.md',
    ...readdirSync(path.join(REPO_ROOT, 'docs'))
      .filter((f) => f.endsWith('.md'))
      .map((f) => `docs/${f}`),
  ];
  it.each(files)('%s: relative links resolve to files that exist', (file) => {
    const text = readFileSync(path.join(REPO_ROOT, file), 'utf8').replace(/```[\s\S]*?```/g, '');
    const broken: string[] = [];
    for (const [, target] of text.matchAll(/\]\(([^)\s]+)\)/g)) {
      if (/^[a-z]+:/i.test(target!) || target!.startsWith('#')) continue;
      const file_ = target!.split('#')[0]!;
      if (!existsSync(path.resolve(REPO_ROOT, path.dirname(file), decodeURI(file_)))) broken.push(target!);
    }
    expect(broken).toEqual([]);
  });
});
