import { createHash } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';

/** Prints a message for the user (no stack trace) and exits non-zero: for errors the user can fix. */
export function fail(message: string, code = 1): never {
  console.error(`error: ${message}`);
  process.exit(code);
}

/** Runs a CLI's main function, turning any thrown error into one clear line. */
export function runCli(main: () => Promise<void>): void {
  main().catch((err: unknown) => fail(err instanceof Error ? err.message : String(err)));
}

/** A plain left-aligned text table. */
export function formatTable(rows: Array<Array<string | number>>): string {
  const cells = rows.map((r) => r.map(String));
  const widths = cells[0]!.map((_, c) => Math.max(...cells.map((r) => (r[c] ?? '').length)));
  return cells
    .map((r) =>
      r
        .map((cell, c) => cell.padEnd(widths[c]!))
        .join('  ')
        .trimEnd(),
    )
    .join('\n');
}

export const intOption =
  (name: string) =>
  (value: string): number => {
    const n = Number(value);
    if (!Number.isInteger(n) || n < 1) fail(`${name} must be a positive whole number, got "${value}"`);
    return n;
  };

/**
 * A collection name derived from a dataset and a model, so evals of different models never share a collection. A
 * dataset whose name already starts with the prefix (`beir-msmarco-mini`) does not get it twice; a name too long for a
 * collection keeps its start and gets a hash of the whole, so two long names stay distinct.
 */
export function evalIndexName(prefix: string, dataset: string, model: string): string {
  const base = dataset.toLowerCase().startsWith(`${prefix}-`) ? dataset : `${prefix}-${dataset}`;
  const name = `${base}-${model}`.toLowerCase().replace(/[^a-z0-9_-]+/g, '_');
  if (name.length <= 64) return name;
  return `${name.slice(0, 55)}-${createHash('sha256').update(name).digest('hex').slice(0, 8)}`;
}

/** Writes a JSON report, creating the folders on its path (`--json out/run.json` on a fresh clone). */
export function writeJsonReport(file: string, report: unknown): void {
  mkdirSync(path.dirname(path.resolve(file)), { recursive: true });
  writeFileSync(file, JSON.stringify(report, null, 2) + '\n');
  console.log(`wrote ${file}`);
}
