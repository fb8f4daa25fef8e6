/**
 * The trainer's reference outputs (scripts/train writes reference.json beside the weights: teacher-forced logits for a
 * few validation questions) and the same logits from an exported model folder's ONNX graphs, run as the server runs
 * them: each passage encoded alone, the states concatenated into one memory.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import ort from 'onnxruntime-node';

export interface ReferenceCase {
  id: string;
  encoder_input_ids: number[][];
  decoder_input_ids: number[];
  vocab_ids: number[];
  logits: number[][];
  argmax: number[];
}

export function readReference(checkpointDir: string): { cases: ReferenceCase[] } {
  return JSON.parse(readFileSync(path.join(checkpointDir, 'reference.json'), 'utf8')) as { cases: ReferenceCase[] };
}

/** The exported graphs' logits at the reference's positions and vocabulary ids. */
export async function exportedLogits(modelDir: string, quantized: boolean, c: ReferenceCase): Promise<number[][]> {
  const config = JSON.parse(readFileSync(path.join(modelDir, 'config.json'), 'utf8')) as {
    num_heads: number;
    d_kv: number;
    d_model: number;
  };
  const suffix = quantized ? '_quantized' : '';
  const encoder = await ort.InferenceSession.create(path.join(modelDir, `onnx/encoder_model${suffix}.onnx`));
  const decoder = await ort.InferenceSession.create(path.join(modelDir, `onnx/decoder_model_merged${suffix}.onnx`));
  // FiD: each passage encoded alone, the states concatenated into one memory.
  const states: number[] = [];
  for (const ids of c.encoder_input_ids) {
    const dims = [1, ids.length];
    const out = await encoder.run({
      input_ids: new ort.Tensor('int64', BigInt64Array.from(ids.map(BigInt)), dims),
      attention_mask: new ort.Tensor('int64', new BigInt64Array(ids.length).fill(1n), dims),
    });
    states.push(...(out.last_hidden_state!.data as Float32Array));
  }
  const length = states.length / config.d_model;
  const feeds: Record<string, ort.Tensor> = {
    encoder_attention_mask: new ort.Tensor('int64', new BigInt64Array(length).fill(1n), [1, length]),
    input_ids: new ort.Tensor('int64', BigInt64Array.from(c.decoder_input_ids.map(BigInt)), [1, c.decoder_input_ids.length]),
    encoder_hidden_states: new ort.Tensor('float32', Float32Array.from(states), [1, length, config.d_model]),
    use_cache_branch: new ort.Tensor('bool', [false], [1]),
  };
  for (const name of decoder.inputNames.filter((n) => n.startsWith('past_key_values'))) {
    feeds[name] = new ort.Tensor('float32', new Float32Array(0), [1, config.num_heads, 0, config.d_kv]);
  }
  const logits = (await decoder.run(feeds)).logits!;
  const vocab = logits.dims[2]!;
  const data = logits.data as Float32Array;
  return c.decoder_input_ids.map((_, t) => c.vocab_ids.map((v) => data[t * vocab + v]!));
}
