/**
 * `tsx scripts/throwaway-postgres.ts start` starts a throwaway PostgreSQL server (temporary folder, loopback, non-root
 * user) and prints `URL DATA_DIR`; `tsx scripts/throwaway-postgres.ts stop DATA_DIR` stops it and removes the folder.
 * CI uses it so that the PostgreSQL tests run against a server that CI itself started and stops.
 */
import { startThrowawayPostgres, stopThrowawayPostgres } from './lib/throwaway-postgres.js';

const [command, dataDir] = process.argv.slice(2);
if (command === 'start') {
  const pg = await startThrowawayPostgres();
  console.log(`${pg.url} ${pg.dataDir}`);
} else if (command === 'stop' && dataDir) {
  stopThrowawayPostgres(dataDir);
} else {
  console.error('usage: throwaway-postgres.ts start | stop DATA_DIR');
  process.exit(2);
}
