/**
 * Resident memory of the reader model, fp32 and int8, with the decoder rewritten at load (one merged-decoder session,
 * shared by the reader and transformers.js generate()) against the earlier layout (transformers.js's own session plus
 * the reader's patched copy). Each configuration runs in a fresh process; RSS is read after an answer and generate().
 */
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { Command } from 'commander';
import { Tensor } from '@xenova/transformers';
import { loadSeq2SeqModel, onnxFile } from '../src/models/index.js';
import { FidReader, fidDecoderRewrite } from '../src/reader/index.js';
import { formatTable, runCli } from './lib/cli.js';
import { ensureFullFixtures, T5_FULL } from './lib/full-fixtures.js';

const program = new Command()
  .name('bench:memory')
  .description('RSS of the reader model: one shared decoder session vs. two')
  .option('--models <dir>', 'models folder holding fixture-t5-full (default: built on first use)')
  .option('--model <name>', 'reader model folder name', T5_FULL)
  .option('--one <config>', 'internal: precision:layout to measure in this process');

runCli(async () => {
  const opts = program.parse().opts<{ models?: string; model: string; one?: string }>();
  const modelsDir = opts.models ? path.resolve(opts.models) : await ensureFullFixtures();
  if (opts.one) {
    const [precision, layout] = opts.one.split(':');
    const quantized = precision === 'int8';
    const base = { modelsDir, allowRemote: false, quantized, threads: { intraOp: 1, interOp: 1 } };
    const model = await loadSeq2SeqModel(opts.model, layout === 'shared' ? { ...base, decoderRewrite: fidDecoderRewrite() } : base);
    // The earlier layout: transformers.js's session stays as it is and the reader patches its own copy.
    const reader = await FidReader.create(model, { encoding: 'per-passage', crossCache: 'per-passage' });
    if (layout === 'shared' && reader.decoder.session !== model.decoder) throw new Error('decoder session not shared');
    const passages = [{ passageId: 'p', docId: 'd', title: 'T', text: 'Some passage text about rivers and towns.', retrievalScore: 1 }];
    await reader.answer('Which river?', passages, { maxNewTokens: 8, numBeams: 1, lengthPenalty: 1, noRepeatNgramSize: 0, fusion: 'fid' });
    const ids = model.tokenizer.encode('question: Which river? context: Some passage text.');
    await model.model.generate(new Tensor('int64', BigInt64Array.from(ids.map(BigInt)), [1, ids.length]), { max_new_tokens: 4 } as never);
    (globalThis as { gc?: () => void }).gc?.();
    const fileMb = (await model.readModelFile(onnxFile('decoder_model_merged', quantized))).byteLength / 1e6;
    console.log(JSON.stringify({ rssMb: process.memoryUsage().rss / 1024 / 1024, decoderFileMb: fileMb }));
    return;
  }
  const rows: Array<Array<string | number>> = [['precision', 'decoder sessions', 'RSS (MB)', 'decoder file (MB)']];
  const rss: Record<string, number> = {};
  for (const precision of ['fp32', 'int8']) {
    for (const layout of ['shared', 'separate']) {
      const args = [
        '--expose-gc',
        ...process.execArgv,
        process.argv[1]!,
        '--one',
        `${precision}:${layout}`,
        '--models',
        modelsDir,
        '--model',
        opts.model,
      ];
      const out = JSON.parse(execFileSync(process.execPath, args, { encoding: 'utf8' }).trim().split('\n').at(-1)!) as {
        rssMb: number;
        decoderFileMb: number;
      };
      rss[`${precision}:${layout}`] = out.rssMb;
      rows.push([
        precision,
        layout === 'shared' ? '1 (rewritten at load, shared with generate())' : '2 (transformers.js + reader copy)',
        out.rssMb.toFixed(0),
        out.decoderFileMb.toFixed(0),
      ]);
    }
  }
  console.log(formatTable(rows));
  for (const p of ['fp32', 'int8'])
    console.log(`${p}: one shared session saves ${(rss[`${p}:separate`]! - rss[`${p}:shared`]!).toFixed(0)} MB`);
});
