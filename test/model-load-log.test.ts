/**
 * A full-size start spends seconds loading models: the log says which it is loading and, for each, how long it took,
 * so a start-up is never silent.
 */
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { openSystem } from '../src/service/index.js';
import { fixtureConfig } from './helpers/config.js';
import { BERT_TINY, T5_TINY } from './helpers/fixtures.js';

describe('model loading', () => {
  it('logs each model before and after it loads, with the milliseconds it took', async () => {
    const lines: Array<Record<string, unknown>> = [];
    const sink = new Writable({
      write(chunk: Buffer, _encoding, done) {
        for (const line of chunk.toString().split('\n').filter(Boolean)) lines.push(JSON.parse(line) as Record<string, unknown>);
        done();
      },
    });
    const config = fixtureConfig({ server: { ingestCorpusOnStart: false } });
    const service = await openSystem(config, {
      log: pino({ level: 'info' }, sink),
      writable: true,
      verify: false,
      reader: true,
      loadEmbedder: 'eager',
      prepareDefaultCollection: false,
    });
    await service.close();
    const messages = lines.map((l) => l.msg);
    const loading = messages.indexOf('loading models');
    expect(loading, JSON.stringify(messages)).toBeGreaterThanOrEqual(0);
    expect(lines[loading]).toMatchObject({ embedModel: BERT_TINY, readerModel: T5_TINY });
    for (const [msg, model] of [
      ['embedding model loaded', BERT_TINY],
      ['reader model loaded', T5_TINY],
    ] as const) {
      const i = messages.indexOf(msg);
      expect(i, msg).toBeGreaterThan(loading);
      expect(lines[i]!.model).toBe(model);
      expect(lines[i]!.ms).toBeTypeOf('number');
      expect(lines[i]!.ms as number).toBeGreaterThanOrEqual(0);
    }
  });
});
