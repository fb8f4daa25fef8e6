/**
 * Creates an API key: prints the key once (only its hash is ever stored) and the config entry that admits it.
 *   npm run keys -- --name ci-bot --scopes read
 *   npm run keys -- --name admin --scopes read,write
 *   npm run keys -- --name team-a --scopes read,write --collections team-a
 * A write-only key is allowed (least privilege for an ingestion job that never reads), but it is rarely what someone
 * asking for a "writer" key wants: it cannot search, ask, or read back what it wrote. So it is made only with a warning
 * that says exactly that.
 */
import { Command, InvalidArgumentError } from 'commander';
import { generateApiKey, hashApiKey } from '../src/api/index.js';
import { API_SCOPES, type ApiKeyConfig, type ApiScope } from '../src/config/index.js';
import { COLLECTION_NAME } from '../src/store/index.js';

function keyName(value: string): string {
  if (!/^[A-Za-z0-9._@-]{1,64}$/.test(value)) throw new InvalidArgumentError('use 1-64 letters, digits, ".", "_", "@" or "-"');
  return value;
}

function scopes(value: string): ApiScope[] {
  const list = [
    ...new Set(
      value
        .split(',')
        .map((s) => s.trim())
        .filter(Boolean),
    ),
  ];
  const unknown = list.filter((s) => !(API_SCOPES as readonly string[]).includes(s));
  if (list.length === 0 || unknown.length > 0) {
    throw new InvalidArgumentError(
      `scopes are a comma-separated list of ${API_SCOPES.join(', ')}${unknown.length ? `; unknown: ${unknown.join(', ')}` : ''}`,
    );
  }
  return list as ApiScope[];
}

function collectionList(value: string): string[] {
  const list = value.split(',').map((s) => s.trim());
  const bad = list.filter((name) => !COLLECTION_NAME.test(name));
  if (bad.length > 0) throw new InvalidArgumentError(`not collection names (1-64 of a-z, 0-9, "_", "-"): ${bad.join(', ')}`);
  return list;
}

const program = new Command()
  .name('keys')
  .description('Generate an API key and the auth.keys entry (name, sha256, scopes) that admits it.')
  .requiredOption('--name <name>', 'who the key is for; shown in logs and used for rate limits', keyName)
  .option('--scopes <list>', `comma-separated: ${API_SCOPES.join(', ')}`, scopes, ['read'] as ApiScope[])
  .option('--collections <list>', 'comma-separated collection names the key is limited to (default: all)', collectionList)
  .showHelpAfterError();

program.parse();
const opts = program.opts<{ name: string; scopes: ApiScope[]; collections?: string[] }>();

if (opts.scopes.includes('write') && !opts.scopes.includes('read')) {
  console.error(
    'warning: this key has the "write" scope only. It can add and delete documents but gets 403 on search, ask, ' +
      'GET /v1/documents/{id}, /v1/stats and the playground. For a writer that also reads (the usual case) use ' +
      '--scopes read,write.\n',
  );
}

const key = generateApiKey();
const entry: ApiKeyConfig = {
  name: opts.name,
  sha256: hashApiKey(key),
  scopes: opts.scopes,
  ...(opts.collections ? { collections: opts.collections } : {}),
};

console.log(`API key for "${opts.name}" (shown only now; store it in a secret manager):\n\n  ${key}\n`);
console.log('Add this entry to auth.keys in rag.config.json (or to the JSON array in RAG_API_KEYS):\n');
console.log(`  ${JSON.stringify(entry)}\n`);
console.log(`Clients send it as:  Authorization: Bearer ${key.slice(0, 8)}…`);
