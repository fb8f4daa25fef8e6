/**
 * The exporter (npm run reader:export) on Hugging Face-layout checkpoints, without PyTorch: the tiny fixture's own
 * weights written as a checkpoint (torch [out, in] layout, the `embed_tokens` copies HF files carry) must export to
 * graphs with exactly the fixture's weights and outputs; a tied checkpoint gets the transposed table and T5's rescale.
 */
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import ort from 'onnxruntime-node';
import { beforeAll, describe, expect, it } from 'vitest';
import { exportT5 } from '../src/fixtures/export-t5.js';
import { defaultSharedModelsDir, T5_SOURCE_MODEL } from '../src/fixtures/index.js';
import { decodeModel } from '../src/fixtures/onnx-builder.js';
import { readSafetensors } from '../src/fixtures/safetensors.js';
import { loadSeq2SeqModel } from '../src/models/index.js';
import { FIXTURES_DIR, T5_TINY } from './helpers/fixtures.js';
import { writeSafetensors, type SafetensorsDtype, type TensorToWrite } from './helpers/safetensors.js';

const TOKENIZER_DIR = path.join(defaultSharedModelsDir(), T5_SOURCE_MODEL);
const fixtureFile = (file: string) => path.join(FIXTURES_DIR, T5_TINY, file);
const config = JSON.parse(readFileSync(fixtureFile('config.json'), 'utf8')) as Record<string, number | boolean | string>;

/** name -> [dims, values] of a graph's float initializers. */
function initializers(file: string): Map<string, { dims: number[]; data: Float32Array }> {
  const out = new Map<string, { dims: number[]; data: Float32Array }>();
  for (const t of decodeModel(readFileSync(file)).graph!.initializer ?? []) {
    if (t.dataType !== 1 || !t.rawData) continue;
    const raw = new Uint8Array(t.rawData);
    out.set(t.name!, {
      dims: (t.dims ?? []).map(Number),
      data: new Float32Array(raw.buffer.slice(raw.byteOffset, raw.byteOffset + raw.byteLength)),
    });
  }
  return out;
}

function transpose(data: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(data.length);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[c * rows + r] = data[r * cols + c]!;
  return out;
}

/** The fixture's weights as a Hugging Face T5 checkpoint: Linear weights back in torch's [out, in] layout. */
function fixtureCheckpoint(dtype: SafetensorsDtype = 'F32'): Record<string, TensorToWrite> {
  const all = new Map([
    ...initializers(fixtureFile('onnx/encoder_model.onnx')),
    ...initializers(fixtureFile('onnx/decoder_model_merged.onnx')),
  ]);
  const tensors: Record<string, TensorToWrite> = {};
  for (const [name, t] of all) {
    const asIs = t.dims.length !== 2 || name === 'shared.weight' || name.endsWith('relative_attention_bias.weight');
    tensors[name] = asIs ? { ...t, dtype } : { dims: [t.dims[1]!, t.dims[0]!], data: transpose(t.data, t.dims[0]!, t.dims[1]!), dtype };
  }
  for (const copy of ['encoder.embed_tokens.weight', 'decoder.embed_tokens.weight']) tensors[copy] = tensors['shared.weight']!;
  return tensors;
}

function writeCheckpoint(cfg: Record<string, unknown>, tensors: Record<string, TensorToWrite>): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'rag-ckpt-'));
  writeFileSync(path.join(dir, 'config.json'), JSON.stringify(cfg));
  writeSafetensors(path.join(dir, 'model.safetensors'), tensors);
  return dir;
}

async function exported(checkpointDir: string): Promise<string> {
  const outDir = mkdtempSync(path.join(os.tmpdir(), 'rag-export-'));
  await exportT5({ checkpointDir, tokenizerDir: TOKENIZER_DIR, outDir });
  return outDir;
}

/** Logits of the merged decoder without a cache for one encoder memory. */
async function decoderLogits(file: string, memory: ort.Tensor, decoderIds: number[]): Promise<Float32Array> {
  const session = await ort.InferenceSession.create(file);
  const heads = Number(config.num_heads);
  const dKv = Number(config.d_kv);
  const feeds: Record<string, ort.Tensor> = {
    encoder_attention_mask: new ort.Tensor('int64', new BigInt64Array(memory.dims[1]!).fill(1n), [1, memory.dims[1]!]),
    input_ids: new ort.Tensor('int64', BigInt64Array.from(decoderIds.map(BigInt)), [1, decoderIds.length]),
    encoder_hidden_states: memory,
    use_cache_branch: new ort.Tensor('bool', [false], [1]),
  };
  for (const name of session.inputNames.filter((n) => n.startsWith('past_key_values'))) {
    feeds[name] = new ort.Tensor('float32', new Float32Array(0), [1, heads, 0, dKv]);
  }
  return (await session.run(feeds)).logits!.data as Float32Array;
}

async function encoderStates(file: string, ids: number[]): Promise<ort.Tensor> {
  const session = await ort.InferenceSession.create(file);
  const dims = [1, ids.length];
  const out = await session.run({
    input_ids: new ort.Tensor('int64', BigInt64Array.from(ids.map(BigInt)), dims),
    attention_mask: new ort.Tensor('int64', new BigInt64Array(ids.length).fill(1n), dims),
  });
  return out.last_hidden_state!;
}

const maxAbs = (a: Float32Array, b: Float32Array) => a.reduce((m, v, i) => Math.max(m, Math.abs(v - b[i]!)), 0);
const IDS = [822, 10, 363, 19, 8, 6945, 2625, 10, 9050, 5, 1];
const DECODER_IDS = [0, 9050, 5];

describe('reader:export of a Hugging Face-layout checkpoint', () => {
  let untiedDir = '';
  beforeAll(async () => {
    untiedDir = await exported(writeCheckpoint(config, fixtureCheckpoint()));
  });

  it('writes the hub layout, and the product loads it like any model', async () => {
    const model = await loadSeq2SeqModel(untiedDir, { modelsDir: os.tmpdir(), allowRemote: false, quantized: true });
    expect(model.quantized).toBe(true);
    expect(model.config.d_model).toBe(config.d_model);
    expect(model.tokenizer.encode('question: where')).toEqual([822, 10, 213, 1]);
  });

  it.each(['encoder_model', 'decoder_model_merged'])('%s has exactly the weights of the graph they came from', (stem) => {
    const original = initializers(fixtureFile(`onnx/${stem}.onnx`));
    const roundTrip = initializers(path.join(untiedDir, `onnx/${stem}.onnx`));
    expect([...roundTrip.keys()].sort()).toEqual([...original.keys()].sort());
    for (const [name, t] of original) {
      expect(Buffer.from(roundTrip.get(name)!.data.buffer).equals(Buffer.from(t.data.buffer)), name).toBe(true);
    }
  });

  it('computes the same encoder states and logits as the fixture', async () => {
    const [a, b] = [
      await encoderStates(fixtureFile('onnx/encoder_model.onnx'), IDS),
      await encoderStates(path.join(untiedDir, 'onnx/encoder_model.onnx'), IDS),
    ];
    expect(maxAbs(a.data as Float32Array, b.data as Float32Array)).toBe(0);
    const logits = await decoderLogits(path.join(untiedDir, 'onnx/decoder_model_merged.onnx'), b, DECODER_IDS);
    expect(maxAbs(logits, await decoderLogits(fixtureFile('onnx/decoder_model_merged.onnx'), a, DECODER_IDS))).toBe(0);
  });

  it('a tied checkpoint reads the embedding table as its head, after the d_model^-0.5 rescale', async () => {
    const tensors = fixtureCheckpoint();
    const shared = tensors['shared.weight']!;
    delete tensors['lm_head.weight'];
    const tiedDir = await exported(writeCheckpoint({ ...config, tie_word_embeddings: true }, tensors));
    // The same model untied, with the table as its head: logits differ exactly by the rescale.
    const headDir = await exported(writeCheckpoint(config, { ...tensors, 'lm_head.weight': shared }));
    const memory = await encoderStates(path.join(tiedDir, 'onnx/encoder_model.onnx'), IDS);
    const tied = await decoderLogits(path.join(tiedDir, 'onnx/decoder_model_merged.onnx'), memory, DECODER_IDS);
    const head = await decoderLogits(path.join(headDir, 'onnx/decoder_model_merged.onnx'), memory, DECODER_IDS);
    const scale = Number(config.d_model) ** -0.5;
    let worst = 0;
    head.forEach((v, i) => (worst = Math.max(worst, Math.abs(v * scale - tied[i]!) / (1e-3 + Math.abs(v * scale)))));
    expect(worst).toBeLessThan(1e-4);
  });

  it('reads float16 and bfloat16 checkpoints', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'rag-st-'));
    const values = Float32Array.of(1, -2, 0.5, 65504, 2 ** -24, 0.1);
    writeSafetensors(path.join(dir, 'a.safetensors'), {
      half: { dims: [2, 3], data: values, dtype: 'F16' },
      brain: { dims: [6], data: values, dtype: 'BF16' },
    });
    const read = await readSafetensors(path.join(dir, 'a.safetensors'));
    expect(read.get('half')!.dims).toEqual([2, 3]);
    expect([...read.get('half')!.data]).toEqual([1, -2, 0.5, 65504, 2 ** -24, 0.0999755859375]);
    // bfloat16 keeps the top 16 bits of a float32 (truncated here by the writer).
    expect([...read.get('brain')!.data].slice(0, 4)).toEqual([1, -2, 0.5, 65280]);
  });

  it('names a tensor of the wrong shape', async () => {
    const tensors = fixtureCheckpoint();
    const name = 'encoder.block.0.layer.1.DenseReluDense.wi_0.weight';
    const w = tensors[name]!;
    expect(w.dims[0]).not.toBe(w.dims[1]); // [d_ff, d_model]: the transpose has another shape
    tensors[name] = { dims: [w.dims[1]!, w.dims[0]!], data: w.data };
    await expect(exported(writeCheckpoint(config, tensors))).rejects.toThrow(`${name} has shape [${w.dims[1]}, ${w.dims[0]}]`);
  });
});
