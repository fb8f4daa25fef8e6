/** Error advice names the command the user ran: the npm script that runs the file, with its arguments quoted. */
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { invokedCommand } from '../src/common/invocation.js';
import { REPO_ROOT } from './helpers/fixtures.js';

const argv = (script: string, ...args: string[]) => ['/usr/bin/node', path.join(REPO_ROOT, script), ...args];

describe('invokedCommand', () => {
  it('names the npm script that runs the file', () => {
    expect(invokedCommand(argv('src/main.ts'))).toBe('npm start');
    expect(invokedCommand(argv('scripts/ingest.ts', 'docs/', '--collection', 'notes'))).toBe('npm run ingest -- docs/ --collection notes');
    expect(invokedCommand(argv('scripts/eval-qa.ts', '--limit', '60'))).toBe('npm run eval:qa -- --limit 60');
  });

  it('quotes arguments a shell would split or expand', () => {
    expect(invokedCommand(argv('scripts/ingest.ts', 'my notes/', "it's", '$HOME'))).toBe(
      `npm run ingest -- 'my notes/' 'it'\\''s' '$HOME'`,
    );
  });

  it('falls back to node and the script for files no npm script runs', () => {
    expect(invokedCommand(argv('scripts/lib/cli.ts', '-x'))).toBe('node scripts/lib/cli.ts -x');
    expect(invokedCommand(['/usr/bin/node', '/elsewhere/tool.js'])).toBe('node /elsewhere/tool.js');
  });
});
