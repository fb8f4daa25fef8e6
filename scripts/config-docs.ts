/**
 * Writes docs/configuration.md from the zod config schema (src/config/config.ts): every setting's path, its
 * environment variable (from ENV_KEYS, the mapping loadConfig uses), its default and its `.describe()` text.
 * `npm run docs:config` rewrites the page; `--check` exits 1 when the page is stale. test/config-docs.test.ts fails
 * when the committed page differs from what this renders.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { z } from 'zod';
import { configSchema, ENV_KEYS, RENAMED_KEYS } from '../src/config/config.js';

export const CONFIG_DOCS_PATH = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'docs', 'configuration.md');

interface Row {
  key: string;
  env?: string;
  type: string;
  default: string;
  description: string;
}

interface Section {
  key: string;
  description: string;
  rows: Row[];
}

type AnySchema = z.ZodType & { _zod: { def: Record<string, unknown> & { type: string } } };

/** Strips default/prefault/optional/pipe wrappers, keeping the outermost description and the default. */
function unwrap(schema: AnySchema): { inner: AnySchema; description?: string; hasDefault: boolean; defaultValue?: unknown } {
  let s = schema;
  let description: string | undefined;
  let hasDefault = false;
  let defaultValue: unknown;
  for (;;) {
    description ??= s.description;
    const def = s._zod.def;
    if ((def.type === 'default' || def.type === 'prefault') && !hasDefault) {
      hasDefault = true;
      defaultValue = def.defaultValue;
      s = def.innerType as AnySchema;
    } else if (def.type === 'default' || def.type === 'prefault' || def.type === 'optional' || def.type === 'nullable') {
      s = def.innerType as AnySchema;
    } else if (def.type === 'pipe') {
      s = def.in as AnySchema;
    } else {
      return { inner: s, description, hasDefault, defaultValue };
    }
  }
}

function typeName(schema: AnySchema): string {
  const { inner } = unwrap(schema);
  const def = inner._zod.def;
  switch (def.type) {
    case 'enum':
      return Object.values(def.entries as Record<string, string>)
        .map((v) => `\`${v}\``)
        .join(' | ');
    case 'number':
      return (inner as unknown as { isInt?: boolean }).isInt ? 'integer' : 'number';
    case 'array':
      return `array of ${typeName(def.element as AnySchema)}`;
    case 'union':
      return (def.options as AnySchema[]).map(typeName).join(' or ');
    default:
      return def.type;
  }
}

function formatDefault(hasDefault: boolean, value: unknown): string {
  if (!hasDefault || value === undefined) return 'unset';
  const json = `\`${JSON.stringify(value)}\``;
  const MiB = 1024 * 1024;
  if (typeof value === 'number' && value >= MiB && value % MiB === 0) return `${json} (${value / MiB} MiB)`;
  return json;
}

const cell = (text: string) => text.replace(/\|/g, '\\|').replace(/\n/g, ' ');

function collect(): Section[] {
  const envFor = new Map(ENV_KEYS.filter((e) => e.aliasOf === undefined).map((e) => [e.key, e.env]));
  const sections: Section[] = [];
  const missing: string[] = [];
  const walk = (shape: Record<string, AnySchema>, prefix: string, section: Section) => {
    for (const [name, field] of Object.entries(shape)) {
      const key = prefix === '' ? name : `${prefix}.${name}`;
      const { inner, description, hasDefault, defaultValue } = unwrap(field);
      if (!description) missing.push(key);
      if (inner._zod.def.type === 'object') {
        const child: Section = { key, description: description ?? '', rows: [] };
        sections.push(child);
        walk(inner._zod.def.shape as Record<string, AnySchema>, key, child);
        continue;
      }
      section.rows.push({
        key,
        env: envFor.get(key),
        type: typeName(field),
        default: formatDefault(hasDefault, defaultValue),
        description: description ?? '',
      });
    }
  };
  const top: Section = { key: '', description: 'Models, folders, where the API listens, logging.', rows: [] };
  sections.push(top);
  walk(configSchema.shape as unknown as Record<string, AnySchema>, '', top);
  if (missing.length > 0) throw new Error(`config settings without a description (.describe()): ${missing.join(', ')}`);
  for (const { key } of ENV_KEYS) {
    if (!sections.some((s) => s.rows.some((r) => r.key === key))) throw new Error(`ENV_KEYS names ${key}, which is not a setting`);
  }
  return sections.filter((s) => s.rows.length > 0);
}

export function renderConfigDocs(): string {
  const out: string[] = [
    '# Configuration',
    '',
    '<!-- Generated from the zod schema in src/config/config.ts by `npm run docs:config`; do not edit by hand. -->',
    '',
    'Settings come from defaults, then a JSON config file (`rag.config.json` in the working directory, or the file named',
    'by `RAG_CONFIG`), then environment variables, which win. Invalid values stop start-up with a message naming the',
    'setting; booleans and numbers in environment variables are parsed strictly (`true`/`false`, `1`/`0`, `yes`/`no`;',
    'whole numbers), so a typo is an error rather than a default. Relative folders are resolved against the directory the',
    'service was started in.',
    '',
    'Example `rag.config.json`:',
    '',
    '```json',
    '{ "embedModel": "Xenova/all-MiniLM-L6-v2", "hnsw": { "efSearch": 128 }, "reader": { "numBeams": 4 } }',
    '```',
    '',
    'Environment variables:',
    '',
    ...ENV_KEYS.map((e) => `- \`${e.env}\` → \`${e.key}\`${e.aliasOf ? ` (the older name of \`${e.aliasOf}\`, still read)` : ''}`),
    '',
    `Settings renamed since, still read under their older names in the config file: ${Object.entries(RENAMED_KEYS)
      .map(([older, current]) => `\`${older}\` (now \`${current}\`)`)
      .join(', ')}.`,
    '',
  ];
  for (const section of collect()) {
    out.push(section.key === '' ? '## Top level' : `## \`${section.key}\``, '', section.description, '');
    out.push('| setting | env | type | default | meaning |', '|---|---|---|---|---|');
    for (const r of section.rows) {
      out.push(`| \`${r.key}\` | ${r.env ? `\`${r.env}\`` : ''} | ${cell(r.type)} | ${cell(r.default)} | ${cell(r.description)} |`);
    }
    out.push('');
  }
  return out.join('\n');
}

const isMain = process.argv[1] !== undefined && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url);
if (isMain) {
  const text = renderConfigDocs();
  if (process.argv.includes('--check')) {
    let current = '';
    try {
      current = readFileSync(CONFIG_DOCS_PATH, 'utf8');
    } catch {
      // missing counts as stale
    }
    if (current !== text) {
      console.error('docs/configuration.md is stale: run npm run docs:config');
      process.exit(1);
    }
    console.log('docs/configuration.md is up to date');
  } else {
    writeFileSync(CONFIG_DOCS_PATH, text);
    console.log(`wrote ${path.relative(process.cwd(), CONFIG_DOCS_PATH)}`);
  }
}
