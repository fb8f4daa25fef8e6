import path from 'node:path';
import { Command } from 'commander';
import { pino } from 'pino';
import { startServer } from '../src/main.js';
import { formatTable, intOption, runCli } from './lib/cli.js';
import { BERT_FULL, ensureFullFixtures, fullFixtureServerConfig, T5_FULL } from './lib/full-fixtures.js';
import { median } from './lib/stats.js';

const program = new Command()
  .name('bench:disconnect')
  .description('CPU a streamed /v1/ask still burns after its client disconnects, against a whole answer, on full-size fixtures')
  .option('--new-tokens <n>', 'tokens of the whole answer (EOS suppressed until then)', intOption('--new-tokens'), 64)
  .option('--beams <n>', 'beam width', intOption('--beams'), 4)
  .option('--trials <n>', 'answers measured each way', intOption('--trials'), 5)
  .option('--max-share <x>', 'exit 1 when the median CPU after a disconnect exceeds this share of a whole answer', '0.1')
  .option('--models <dir>', 'models folder holding fixture-bert-full and fixture-t5-full (default: built on first use)');

type Options = { newTokens: number; beams: number; trials: number; maxShare: string; models?: string };

const cpuMs = (since: NodeJS.CpuUsage) => {
  const d = process.cpuUsage(since);
  return (d.user + d.system) / 1000;
};

runCli(async () => {
  const opts = program.parse().opts<Options>();
  const modelsDir = opts.models ? path.resolve(opts.models) : await ensureFullFixtures();
  const config = fullFixtureServerConfig(modelsDir, 'bench-disconnect');
  const server = await startServer(config, pino({ level: 'silent' }));
  const service = await server.ready;
  const base = `http://127.0.0.1:${server.port}`;
  // Instrument, not replace: the real service answers; the wrapper forces the length and tells when it settles.
  let settled: Promise<unknown> = Promise.resolve();
  const ask = service.ask.bind(service);
  service.ask = (params, hooks) => {
    const run = ask({ ...params, minNewTokens: params.maxNewTokens }, hooks);
    settled = run.catch(() => undefined);
    return run;
  };
  const body = JSON.stringify({
    question: 'how do glaciers move?',
    k: 10,
    maxNewTokens: opts.newTokens,
    numBeams: opts.beams,
    stream: true,
  });
  const post = (signal?: AbortSignal) =>
    fetch(`${base}/v1/ask`, { method: 'POST', headers: { 'content-type': 'application/json' }, body, signal });

  const whole: number[] = [];
  const after: number[] = [];
  const settleMs: number[] = [];
  try {
    await (await post()).text(); // warm-up
    for (let t = 0; t < opts.trials; t++) {
      const start = process.cpuUsage();
      await (await post()).text();
      await settled;
      whole.push(cpuMs(start));

      const controller = new AbortController();
      const res = await post(controller.signal);
      const reader = res.body!.getReader();
      // The first token event: generation is under way when the client goes.
      for (let text = ''; !text.includes('event: token');)
        text += new TextDecoder().decode((await reader.read()).value ?? new Uint8Array());
      const gone = process.cpuUsage();
      const goneAt = performance.now();
      controller.abort();
      await settled;
      settleMs.push(performance.now() - goneAt);
      after.push(cpuMs(gone));
    }
  } finally {
    await server.close();
  }
  const share = median(after) / median(whole);
  console.log(
    `streamed /v1/ask, k=10, ${opts.newTokens} tokens, ${opts.beams} beams, ${opts.trials} trials each way, models ${BERT_FULL} + ${T5_FULL} (${config.quantized ? 'int8' : 'fp32'})`,
  );
  console.log(
    formatTable([
      ['measure', 'median', 'max'],
      ['CPU of a whole answer (ms)', median(whole).toFixed(0), Math.max(...whole).toFixed(0)],
      ['CPU after the disconnect (ms)', median(after).toFixed(0), Math.max(...after).toFixed(0)],
      ['disconnect to generation stopped (ms)', median(settleMs).toFixed(0), Math.max(...settleMs).toFixed(0)],
    ]),
  );
  console.log(`CPU after a disconnect / whole answer: ${share.toFixed(3)} (limit ${opts.maxShare})`);
  if (share > Number(opts.maxShare)) process.exitCode = 1;
});
