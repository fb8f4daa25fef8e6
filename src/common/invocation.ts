import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const REPO_ROOT = fileURLToPath(new URL('../..', import.meta.url));

/** The package's npm scripts, read once: advice names the script a user typed, not the file it runs. */
let scripts: Record<string, string> | undefined;
function npmScripts(): Record<string, string> {
  if (!scripts) {
    try {
      const pkg = JSON.parse(readFileSync(path.join(REPO_ROOT, 'package.json'), 'utf8')) as { scripts?: Record<string, string> };
      scripts = pkg.scripts ?? {};
    } catch {
      scripts = {};
    }
  }
  return scripts;
}

/** Quotes an argument for a POSIX shell only when it needs it. */
function shellWord(arg: string): string {
  return /^[\w@%+=:,./-]+$/.test(arg) ? arg : `'${arg.replace(/'/g, `'\\''`)}'`;
}

/**
 * The command line the user ran, as they would type it again: `npm start`, `npm run ingest -- docs/ --collection
 * notes`, or `node <script> …` for a script no npm script runs. Error advice ends with it ("then run … again"), so
 * an ingest's advice names the ingest, not the server.
 */
export function invokedCommand(argv: readonly string[] = process.argv): string {
  const script = argv[1];
  const args = argv.slice(2).map(shellWord);
  if (script === undefined) return 'npm start';
  const relative = path.relative(REPO_ROOT, path.resolve(script)).split(path.sep).join('/');
  const name = Object.entries(npmScripts()).find(([, command]) => command.split(/\s+/).includes(relative))?.[0];
  if (name === undefined) return ['node', shellWord(relative.startsWith('..') ? script : relative), ...args].join(' ');
  const base = name === 'start' || name === 'test' ? `npm ${name}` : `npm run ${name}`;
  return args.length > 0 ? `${base} -- ${args.join(' ')}` : base;
}
