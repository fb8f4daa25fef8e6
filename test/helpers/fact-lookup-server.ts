/**
 * The server on the committed fact-lookup reader (int8, auth off, nothing ingested on start) with a generated
 * fact-lookup set's passages ingested: the corpus of the tests that need a reader that really answers.
 */
import { pino } from 'pino';
import { FACT_LOOKUP_READER } from '../../src/fixtures/trained-readers.js';
import { startServer } from '../../src/main.js';
import type { RagService } from '../../src/service/index.js';
import { fixtureConfig } from './config.js';

export async function startFactLookupServer(passages: ReadonlyArray<{ id: string; title: string; text: string }>): Promise<{
  server: Awaited<ReturnType<typeof startServer>>;
  base: string;
  service: RagService;
}> {
  const config = fixtureConfig({
    readerModel: FACT_LOOKUP_READER,
    quantized: true,
    auth: { disabled: true },
    server: { ingestCorpusOnStart: false },
  });
  const server = await startServer(config, pino({ level: 'silent' }));
  const service = await server.ready;
  await service.ingestDocuments(
    passages.map((p) => ({ id: p.id, title: p.title, text: p.text, metadata: {} })),
    { progress: false },
  );
  return { server, base: `http://127.0.0.1:${server.port}`, service };
}
