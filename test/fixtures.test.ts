import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import ort from 'onnxruntime-node';
import onnxProto from 'onnx-proto';
import type { onnx as OnnxTypes } from 'onnx-proto';
import { AutoModelForSeq2SeqLM, AutoTokenizer, env, pipeline, Tensor } from '@xenova/transformers';
import { beforeAll, describe, expect, it } from 'vitest';
import { decodeModel, encodeModel, GraphBuilder } from '../src/fixtures/onnx-builder.js';
import { relativePositionBucket } from '../src/fixtures/t5-position-bias.js';
import { BERT_TINY, CROSS_ENCODER_TINY, FIXTURES_DIR, REPO_ROOT, T5_TINY } from './helpers/fixtures.js';

const { onnx } = onnxProto;

env.localModelPath = FIXTURES_DIR;
env.allowRemoteModels = false;

interface BertConfig {
  hidden_size: number;
}

interface T5Config {
  vocab_size: number;
  d_model: number;
  d_kv: number;
  num_heads: number;
  num_layers: number;
  num_decoder_layers: number;
  decoder_start_token_id: number;
}

function readConfig<T>(model: string): T {
  return JSON.parse(readFileSync(join(FIXTURES_DIR, model, 'config.json'), 'utf8')) as T;
}

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let max = 0;
  for (let i = 0; i < a.length; i++) max = Math.max(max, Math.abs(a[i]! - b[i]!));
  return max;
}

function floats(t: { data: unknown }): Float32Array {
  return t.data as Float32Array;
}

// The float graphs' exact properties (fp32-exact: under int8, padding and cached decoding change activation scales; the
// int8 files are checked in 'int8 _quantized fixtures' and, with measured tolerances, in the model and reader tests).
describe('BERT fixture', () => {
  const config = readConfig<BertConfig>(BERT_TINY);

  it('loads through the transformers.js feature-extraction pipeline with shape [1, seq, hidden]', async () => {
    const extractor = await pipeline('feature-extraction', BERT_TINY, { quantized: false });
    const out = await extractor('where is the eiffel tower?');
    expect(out.dims).toHaveLength(3);
    expect(out.dims[0]).toBe(1);
    expect(out.dims[1]).toBeGreaterThan(4);
    expect(out.dims[2]).toBe(config.hidden_size);
    expect(floats(out).every(Number.isFinite)).toBe(true);
  });

  it('masked padding does not change the unmasked positions', async () => {
    const extractor = await pipeline('feature-extraction', BERT_TINY, { quantized: false });
    const short = 'a short text';
    const long = 'a considerably longer text that forces padding of the short one in the batch';
    const alone = await extractor(short);
    const batched = await extractor([short, long]);
    const [, shortLength, hidden] = alone.dims as [number, number, number];
    const [batch, paddedLength] = batched.dims as [number, number, number];
    expect(batch).toBe(2);
    expect(paddedLength).toBeGreaterThan(shortLength);
    const shortInBatch = floats(batched).subarray(0, shortLength * hidden);
    expect(maxAbsDiff(floats(alone), shortInBatch)).toBeLessThan(1e-4);
    // The two texts share their first tokens but differ later, so the outputs must actually depend on content.
    const longFirstTokens = floats(batched).subarray(paddedLength * hidden, (paddedLength + shortLength) * hidden);
    expect(maxAbsDiff(floats(alone), longFirstTokens)).toBeGreaterThan(1e-2);
  });
});

describe('T5 fixture', () => {
  const config = readConfig<T5Config>(T5_TINY);
  // transformers.js 2.x ships loose JS types.
  let tokenizer: any;
  let model: any;

  beforeAll(async () => {
    tokenizer = await AutoTokenizer.from_pretrained(T5_TINY);
    model = await AutoModelForSeq2SeqLM.from_pretrained(T5_TINY, { quantized: false });
  });

  function encode(text: string | string[]): { input_ids: Tensor; attention_mask: Tensor } {
    return tokenizer(text, { padding: true }) as { input_ids: Tensor; attention_mask: Tensor };
  }

  /** Logits [1, T, vocab] for a whole decoder prefix in one no-cache call. */
  async function logitsWithoutCache(inputs: { input_ids: Tensor; attention_mask: Tensor }, prefix: number[]): Promise<Tensor> {
    const decoderIds = new Tensor('int64', BigInt64Array.from(prefix.map(BigInt)), [1, prefix.length]);
    const out = await model.forward({ ...inputs, decoder_input_ids: decoderIds });
    return out.logits as Tensor;
  }

  function argmaxLastRow(logits: Tensor): number {
    const [, rows, vocab] = logits.dims as [number, number, number];
    const row = floats(logits).subarray((rows - 1) * vocab, rows * vocab);
    let best = 0;
    for (let v = 1; v < vocab; v++) if (row[v]! > row[best]!) best = v;
    return best;
  }

  it('generate() runs and matches greedy decoding without the cache', async () => {
    const inputs = encode('question: who wrote hamlet? context: hamlet is a tragedy by william shakespeare.');
    const generated = (await model.generate(inputs.input_ids, { max_new_tokens: 8 })) as number[][];
    expect(generated).toHaveLength(1);
    const sequence = generated[0]!.map(Number);
    expect(sequence[0]).toBe(config.decoder_start_token_id);
    expect(sequence.length).toBeGreaterThan(1);
    expect(sequence.length).toBeLessThanOrEqual(9);
    for (const id of sequence) expect(id >= 0 && id < config.vocab_size).toBe(true);

    // generate() uses the cached branch after the first step; recomputing every step without cache must agree.
    const greedy = [config.decoder_start_token_id];
    while (greedy.length < sequence.length) greedy.push(argmaxLastRow(await logitsWithoutCache(inputs, greedy)));
    expect(greedy).toEqual(sequence);
  });

  it('decoding step by step with past_key_values equals decoding the whole prefix at once', async () => {
    const inputs = encode('the quick brown fox jumps over the lazy dog near the river bank');
    const prefix = [config.decoder_start_token_id, 37, 1782, 19, 8, 3, 5];
    const whole = await logitsWithoutCache(inputs, prefix);
    const vocab = config.vocab_size;

    let past: unknown = null;
    let encoderOutputs: unknown = undefined;
    for (let t = 0; t < prefix.length; t++) {
      const step = await model.forward({
        ...inputs,
        decoder_input_ids: new Tensor('int64', BigInt64Array.of(BigInt(prefix[t]!)), [1, 1]),
        past_key_values: past,
        encoder_outputs: encoderOutputs,
      });
      expect(step.logits.dims).toEqual([1, 1, vocab]);
      const expected = floats(whole).subarray(t * vocab, (t + 1) * vocab);
      expect(maxAbsDiff(floats(step.logits), expected)).toBeLessThan(1e-4);
      past = step.past_key_values;
      encoderOutputs = step.encoder_outputs;
      const presentKey = (past as Record<string, Tensor>)['past_key_values.0.decoder.key']!;
      expect(presentKey.dims).toEqual([1, config.num_heads, t + 1, config.d_kv]);
    }
  });

  it('encoder padding and the encoder attention mask leave the unpadded example unchanged', async () => {
    const short = 'who painted the mona lisa?';
    const long = 'leonardo da vinci painted the mona lisa in florence during the italian renaissance period';
    const decoderIds = (batch: number): Tensor => new Tensor('int64', new BigInt64Array(batch), [batch, 1]);
    const alone = await model.forward({ ...encode(short), decoder_input_ids: decoderIds(1) });
    const batched = await model.forward({ ...encode([short, long]), decoder_input_ids: decoderIds(2) });
    const vocab = config.vocab_size;
    expect(batched.logits.dims).toEqual([2, 1, vocab]);
    expect(maxAbsDiff(floats(alone.logits), floats(batched.logits).subarray(0, vocab))).toBeLessThan(1e-4);
    expect(maxAbsDiff(floats(alone.logits), floats(batched.logits).subarray(vocab, 2 * vocab))).toBeGreaterThan(1e-2);
  });
});

describe('T5 merged decoder graph', () => {
  const config = readConfig<T5Config>(T5_TINY);
  const decoderPath = join(FIXTURES_DIR, T5_TINY, 'onnx', 'decoder_model_merged.onnx');

  function ifNode(model: OnnxTypes.ModelProto): OnnxTypes.INodeProto {
    const node = model.graph?.node?.find((n) => n.opType === 'If');
    expect(node).toBeDefined();
    return node!;
  }

  function branch(node: OnnxTypes.INodeProto, name: 'then_branch' | 'else_branch'): OnnxTypes.IGraphProto {
    const graph = node.attribute?.find((a) => a.name === name)?.g;
    expect(graph).toBeDefined();
    return graph!;
  }

  it('names attention Softmax nodes like a torch export, in both If branches', () => {
    const model = decodeModel(readFileSync(decoderPath));
    const node = ifNode(model);
    expect(node.input).toEqual(['use_cache_branch']);
    for (const side of ['then_branch', 'else_branch'] as const) {
      const nodes = new Map((branch(node, side).node ?? []).map((n) => [n.name ?? '', n]));
      for (let i = 0; i < config.num_decoder_layers; i++) {
        for (const name of [`/decoder/block.${i}/layer.1/EncDecAttention/Softmax`, `/decoder/block.${i}/layer.0/SelfAttention/Softmax`]) {
          const softmax = nodes.get(name);
          expect(softmax?.opType, `${side} ${name}`).toBe('Softmax');
          expect(Number(softmax?.attribute?.find((a) => a.name === 'axis')?.i)).toBe(-1);
        }
      }
    }
    const encoder = decodeModel(readFileSync(join(FIXTURES_DIR, T5_TINY, 'onnx', 'encoder_model.onnx')));
    const encoderNames = new Set((encoder.graph?.node ?? []).map((n) => n.name));
    for (let i = 0; i < config.num_layers; i++) expect(encoderNames.has(`/encoder/block.${i}/layer.0/SelfAttention/Softmax`)).toBe(true);
  });

  it('cross-attention Softmax outputs are [b, heads, dec_seq, enc_seq] probabilities that ignore masked keys', async () => {
    // Expose each branch's cross-attention probabilities as extra If/graph outputs, the way the reader patches exports.
    const model = decodeModel(readFileSync(decoderPath));
    const node = ifNode(model);
    const layers = config.num_decoder_layers;
    for (let i = 0; i < layers; i++) {
      for (const side of ['then_branch', 'else_branch'] as const) {
        const graph = branch(node, side);
        const softmax = graph.node!.find((n) => n.name === `/decoder/block.${i}/layer.1/EncDecAttention/Softmax`)!;
        graph.output!.push({ name: softmax.output![0]!, type: { tensorType: { elemType: onnx.TensorProto.DataType.FLOAT } } });
      }
      node.output!.push(`cross_attentions.${i}`);
      model.graph!.output!.push({ name: `cross_attentions.${i}`, type: { tensorType: { elemType: onnx.TensorProto.DataType.FLOAT } } });
    }
    const session = await ort.InferenceSession.create(onnx.ModelProto.encode(model).finish());

    const batch = 2;
    const encLength = 5;
    const decLength = 3;
    const { d_model: dModel, num_heads: heads, d_kv: dKv } = config;
    const states = new Float32Array(batch * encLength * dModel).map((_, i) => Math.sin(i));
    // The second example masks its last two encoder positions.
    const mask = BigInt64Array.from([1, 1, 1, 1, 1, 1, 1, 1, 0, 0].map(BigInt));
    const feeds: Record<string, ort.Tensor> = {
      encoder_attention_mask: new ort.Tensor('int64', mask, [batch, encLength]),
      input_ids: new ort.Tensor('int64', BigInt64Array.from([0, 5, 6, 0, 7, 8].map(BigInt)), [batch, decLength]),
      encoder_hidden_states: new ort.Tensor('float32', states, [batch, encLength, dModel]),
      use_cache_branch: new ort.Tensor('bool', [false], [1]),
    };
    for (let i = 0; i < layers; i++) {
      for (const part of ['decoder.key', 'decoder.value', 'encoder.key', 'encoder.value']) {
        feeds[`past_key_values.${i}.${part}`] = new ort.Tensor('float32', new Float32Array(0), [1, heads, 0, dKv]);
      }
    }
    const out = await session.run(feeds);
    for (let i = 0; i < layers; i++) {
      const probs = out[`cross_attentions.${i}`]!;
      expect(probs.dims).toEqual([batch, heads, decLength, encLength]);
      const data = probs.data as Float32Array;
      for (let row = 0; row < batch * heads * decLength; row++) {
        const values = data.subarray(row * encLength, (row + 1) * encLength);
        expect(values.reduce((a, b) => a + b, 0)).toBeCloseTo(1, 5);
        const example = Math.floor(row / (heads * decLength));
        if (example === 1) expect([values[3], values[4]]).toEqual([0, 0]);
        else expect(Math.min(...values)).toBeGreaterThan(0);
      }
    }
  });
});

/** Hugging Face's T5Attention._relative_position_bucket, ported with float32 rounding at each step. */
function referenceBucket(relative: number, bidirectional: boolean, numBuckets: number, maxDistance: number): number {
  let buckets = 0;
  let distance: number;
  if (bidirectional) {
    numBuckets = Math.floor(numBuckets / 2);
    if (relative > 0) buckets += numBuckets;
    distance = Math.abs(relative);
  } else {
    distance = -Math.min(relative, 0);
  }
  const maxExact = Math.floor(numBuckets / 2);
  if (distance < maxExact) return buckets + distance;
  const f = Math.fround;
  const scaled = f(f(f(Math.log(f(f(distance) / maxExact))) / f(Math.log(maxDistance / maxExact))) * (numBuckets - maxExact));
  return buckets + Math.min(maxExact + Math.trunc(scaled), numBuckets - 1);
}

describe('T5 relative position buckets', () => {
  it.each([
    { bidirectional: true, numBuckets: 32, maxDistance: 128 },
    { bidirectional: false, numBuckets: 32, maxDistance: 128 },
    { bidirectional: true, numBuckets: 16, maxDistance: 40 },
  ])('match transformers for %o', async (spec) => {
    const graph = new GraphBuilder('buckets');
    const relative = graph.addInput('relative', 'int64', ['n']);
    graph.scope('/buckets').op('Identity', [relativePositionBucket(graph.scope('/buckets'), relative, spec)], {}, 'bucket');
    graph.addOutput('bucket', 'int64', ['n']);
    const session = await ort.InferenceSession.create(encodeModel(graph, 'bucket test').bytes);

    const positions = Array.from({ length: 1001 }, (_, i) => i - 500);
    const out = await session.run({ relative: new ort.Tensor('int64', BigInt64Array.from(positions.map(BigInt)), [positions.length]) });
    const actual = Array.from(out.bucket!.data as BigInt64Array, Number);
    const expected = positions.map((p) => referenceBucket(p, spec.bidirectional, spec.numBuckets, spec.maxDistance));
    expect(actual).toEqual(expected);
    // Every bucket is reached except, when bidirectional, "future at distance 0" (bucket numBuckets/2), as in HF.
    expect(new Set(actual).size).toBe(spec.bidirectional ? spec.numBuckets - 1 : spec.numBuckets);
    expect(Math.max(...actual)).toBe(spec.numBuckets - 1);
  });
});

describe('int8 _quantized fixtures (dynamic quantization, as the hub exports)', () => {
  const config = readConfig<T5Config>(T5_TINY);
  const load = (model: string, file: string) => decodeModel(readFileSync(join(FIXTURES_DIR, model, 'onnx', file)));
  const allNodes = (g: OnnxTypes.IGraphProto): OnnxTypes.INodeProto[] =>
    (g.node ?? []).flatMap((n) => [n, ...(n.attribute ?? []).flatMap((a) => (a.g ? allNodes(a.g) : []))]);
  const producerOf = (nodes: OnnxTypes.INodeProto[], value: string) => nodes.find((n) => n.output?.includes(value));

  it('are opset 13, IR version 8, with every weight MatMul as DynamicQuantizeLinear → MatMulInteger → Cast → Mul', () => {
    for (const [model, file] of [
      [BERT_TINY, 'model_quantized.onnx'],
      [T5_TINY, 'encoder_model_quantized.onnx'],
      [T5_TINY, 'decoder_model_merged_quantized.onnx'],
      [CROSS_ENCODER_TINY, 'model_quantized.onnx'],
    ] as const) {
      const m = load(model, file);
      expect(Number(m.irVersion)).toBe(8);
      expect(m.opsetImport?.map((o) => [o.domain ?? '', Number(o.version)])).toEqual([['', 13]]);
      const nodes = allNodes(m.graph!);
      const initializers = new Map((m.graph!.initializer ?? []).map((t) => [t.name ?? '', t]));
      const integer = nodes.filter((n) => n.opType === 'MatMulInteger');
      expect(integer.length, file).toBeGreaterThan(0);
      for (const mm of integer) {
        const [a, w, aZero, wZero] = mm.input!;
        expect(producerOf(nodes, a!)?.opType).toBe('DynamicQuantizeLinear');
        expect(producerOf(nodes, aZero!)?.opType).toBe('DynamicQuantizeLinear');
        // int8 weights and per-column zero points live in the main graph (shared by both If branches).
        const weight = initializers.get(w!)!;
        expect(weight.dataType).toBe(onnx.TensorProto.DataType.INT8);
        expect(initializers.get(wZero!)!.dataType).toBe(onnx.TensorProto.DataType.INT8);
        expect(initializers.get(wZero!)!.dims!.map(Number)).toEqual([Number(weight.dims![1])]);
        const cast = nodes.find((n) => n.opType === 'Cast' && n.input?.[0] === mm.output![0]);
        expect(nodes.some((n) => n.opType === 'Mul' && n.input?.[0] === cast?.output?.[0])).toBe(true);
      }
      // Weight MatMuls are all quantized; only activation × activation MatMuls (QKᵀ, attention·V) stay float.
      for (const mm of nodes.filter((n) => n.opType === 'MatMul')) expect(initializers.has(mm.input![1]!)).toBe(false);
      expect(nodes.some((n) => n.opType === 'Softmax')).toBe(true);
      for (const t of initializers.values()) {
        if (t.dataType === onnx.TensorProto.DataType.FLOAT) expect((t.dims ?? []).length, t.name ?? '').toBeLessThan(2);
      }
      // Embedding Gathers read an int8 table and dequantize.
      const gathers = nodes.filter(
        (n) => n.opType === 'Gather' && initializers.get(n.input![0]!)?.dataType === onnx.TensorProto.DataType.INT8,
      );
      expect(gathers.length).toBeGreaterThan(0);
      for (const g of gathers) expect(nodes.some((n) => n.opType === 'DequantizeLinear' && n.input?.[0] === g.output![0])).toBe(true);
    }
  });

  it('keep the If name and node names in both branches, and the with-past encoder presents are empty constants', () => {
    const m = load(T5_TINY, 'decoder_model_merged_quantized.onnx');
    const ifs = m.graph!.node!.filter((n) => n.opType === 'If');
    expect(ifs.map((n) => n.name)).toEqual(['optimum::if']);
    const withPast = ifs[0]!.attribute!.find((a) => a.name === 'then_branch')!.g!;
    const noPast = ifs[0]!.attribute!.find((a) => a.name === 'else_branch')!.g!;
    for (const g of [withPast, noPast]) {
      const names = new Set(g.node!.map((n) => n.name));
      for (let i = 0; i < config.num_decoder_layers; i++)
        expect(names.has(`/decoder/block.${i}/layer.1/EncDecAttention/Softmax`)).toBe(true);
    }
    for (let i = 0; i < config.num_decoder_layers; i++) {
      for (const kv of ['key', 'value']) {
        const constant = producerOf(withPast.node!, `present.${i}.encoder.${kv}`);
        expect(constant?.opType).toBe('Constant');
        expect(constant!.attribute![0]!.t!.dims!.map(Number)).toEqual([0, config.num_heads, 1, config.d_kv]);
      }
    }
  });

  it('track the float model: same outputs up to int8 rounding', async () => {
    const run = async (file: string) => {
      const session = await ort.InferenceSession.create(join(FIXTURES_DIR, BERT_TINY, 'onnx', file));
      const ids = BigInt64Array.from([101n, 7592n, 2088n, 2003n, 1037n, 3231n, 102n]);
      const feeds = {
        input_ids: new ort.Tensor('int64', ids, [1, 7]),
        attention_mask: new ort.Tensor('int64', new BigInt64Array(7).fill(1n), [1, 7]),
        token_type_ids: new ort.Tensor('int64', new BigInt64Array(7), [1, 7]),
      };
      return floats((await session.run(feeds)).last_hidden_state!);
    };
    const [fp32, int8] = [await run('model.onnx'), await run('model_quantized.onnx')];
    const diff = maxAbsDiff(fp32, int8);
    // LayerNorm'd states are O(1): int8 moves them by a few tenths at most (measured 0.26 on an AVX2-only CPU, whose
    // u8×s8 kernel saturates pairwise int16 sums; less with AVX-512 VNNI), a broken quantizer by O(1).
    expect(diff).toBeGreaterThan(0);
    expect(diff).toBeLessThan(0.4);
  });
});

describe('npm run fixtures', () => {
  it("without the real models' configs says what it needs and where, instead of a bare ENOENT", () => {
    const empty = mkdtempSync(join(os.tmpdir(), 'no-shared-'));
    const run = spawnSync(
      process.execPath,
      ['--import', 'tsx', 'scripts/fixtures.ts', '--size', 'tiny', '--out', join(empty, 'out'), '--shared', empty],
      {
        cwd: REPO_ROOT,
        encoding: 'utf8',
      },
    );
    expect(run.status).toBe(2);
    expect(run.stderr).toContain(
      `needs the real models' configs and tokenizers (bge-small-en-v1.5, flan-t5-small, all-MiniLM-L6-v2) in ${empty}`,
    );
    expect(run.stderr).toMatch(/--shared DIR/);
  });
});
