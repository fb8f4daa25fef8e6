/**
 * Rewrites the merged decoder graph once at load so each decoding step gets what the reader needs from onnxruntime:
 *
 * - Cross-attention. Exports do not output it, but torch-exported T5 graphs name the node computing it
 *   `/decoder/block.{i}/layer.1/EncDecAttention/Softmax`. In a merged decoder those nodes live in both branches of the
 *   `If` on use_cache_branch: each branch gets the Softmax values as extra outputs (same order in both), and the `If`
 *   node and the main graph get matching outputs `cross_attentions.{layer}` [batch, heads, positions, memory].
 *   A `cross_attention_mean` output [batch, positions, memory] averages them over heads and layers in the graph, so
 *   per step only one small tensor crosses into JS.
 * - `logits_logsumexp` [batch, positions, 1] and TopK outputs (k fed per run), so JS never scans the vocabulary: greedy
 *   and beam search only need the few largest logits and the normaliser, and the full logits need not be copied out.
 * - A `beam_origins` input: Gather nodes reorder the self-attention cache by beam origin inside the run, instead of
 *   JS copying every cache tensor between steps.
 * - An output order that makes cheap fetches possible (see `orderOutputs`).
 */
import onnxProto from 'onnx-proto';
import type { onnx as OnnxTypes } from 'onnx-proto';
import ort from 'onnxruntime-node';
import type { DecoderRewrite, Seq2SeqConfig } from '../models/index.js';

const { onnx } = onnxProto;

const SOFTMAX_SUFFIX = '/EncDecAttention/Softmax';

/** Added graph input [rows] (int64): row i of this run continues row beam_origins[i] of the self-attention cache. */
export const BEAM_ORIGINS_INPUT = 'beam_origins';

/** Added graph input [1] (int64): how many of the largest logits per position the TopK outputs list. */
export const TOP_K_INPUT = 'top_k';

export const DECODER_OUTPUT = {
  logits: 'logits',
  logSumExp: 'logits_logsumexp',
  topValues: 'logits_top_values',
  topIndices: 'logits_top_indices',
  crossAttentionMean: 'cross_attention_mean',
  crossAttentionLayer: (layer: number) => `cross_attentions.${layer}`,
} as const;

/** Names of the outputs the rewrite added; absent ones could not be added. */
export interface DecoderGraphOutputs {
  logSumExp?: string;
  /** [batch, positions, top_k] largest logits, descending, and their token ids (int64); needs the TOP_K_INPUT feed. */
  topValues?: string;
  topIndices?: string;
  crossAttentionMean?: string;
  /** In layer order; not fetched while decoding, but available for checks. */
  crossAttentionLayers: string[];
}

export interface PreparedDecoderGraph {
  /** The rewritten model, to load into a new InferenceSession. */
  bytes: Uint8Array;
  outputs: DecoderGraphOutputs;
  /** Whether the graph takes BEAM_ORIGINS_INPUT and reorders the self-attention cache itself. */
  reordersCache: boolean;
  /** Why cross-attention is not exposed, when it is not. */
  reason?: string;
}

interface SoftmaxValue {
  layer: number;
  value: string;
}

/** Finds `…/EncDecAttention/Softmax` nodes of one graph (not its subgraphs), ordered by decoder layer. */
function softmaxValues(graph: OnnxTypes.IGraphProto): SoftmaxValue[] {
  const nodes = (graph.node ?? []).filter((n) => n.opType === 'Softmax' && (n.name ?? '').endsWith(SOFTMAX_SUFFIX));
  const found = nodes.map((n, order) => {
    const block = /block\.(\d+)\//.exec(n.name ?? '');
    return { layer: block ? Number(block[1]) : order, value: n.output?.[0] ?? '' };
  });
  return found.sort((a, b) => a.layer - b.layer);
}

function isCompleteLayerSet(values: SoftmaxValue[], layers: number): boolean {
  return values.length === layers && values.every((v, i) => v.layer === i && v.value !== '');
}

function floatOutput(name: string): OnnxTypes.IValueInfoProto {
  return { name, type: { tensorType: { elemType: onnx.TensorProto.DataType.FLOAT } } };
}

function branch(node: OnnxTypes.INodeProto, name: string): OnnxTypes.IGraphProto | undefined {
  return (node.attribute ?? []).find((a) => a.name === name)?.g ?? undefined;
}

/**
 * Throws if the bytes are not an ONNX model.
 *
 * @param layers number of decoder layers; every layer's Softmax must be found, or no cross-attention is exposed.
 */
export function prepareDecoderGraph(modelBytes: Uint8Array, layers: number, exposeAttention: boolean): PreparedDecoderGraph {
  const model = onnx.ModelProto.decode(modelBytes);
  const graph = model.graph;
  if (!graph) throw new Error('the decoder model has no graph');
  graph.node ??= [];
  graph.input ??= [];
  graph.output ??= [];
  const opset = defaultOpset(model);
  const outputs: DecoderGraphOutputs = { crossAttentionLayers: [] };

  if (graph.output.some((o) => o.name === DECODER_OUTPUT.logits) && !hasValue(graph, DECODER_OUTPUT.logSumExp)) {
    graph.node.push(reduceNode(graph, opset, 'ReduceLogSumExp', DECODER_OUTPUT.logits, DECODER_OUTPUT.logSumExp, -1, true));
    graph.output.push(floatOutput(DECODER_OUTPUT.logSumExp));
    outputs.logSumExp = DECODER_OUTPUT.logSumExp;
    // TopK with `largest`/`sorted` attributes and k as an input exists since opset 11.
    if (opset >= 11 && !hasValue(graph, DECODER_OUTPUT.topValues)) {
      addTopK(graph);
      outputs.topValues = DECODER_OUTPUT.topValues;
      outputs.topIndices = DECODER_OUTPUT.topIndices;
    }
  }

  const reordersCache = addBeamReorder(graph);
  const outcome = exposeAttention ? exposeCrossAttention(graph, layers) : { ok: false as const, reason: 'not requested' };
  if (outcome.ok) {
    const headMeans = outcome.outputNames.map((name, layer) => {
      const headMean = `/reader_patch/cross_attention_head_mean.${layer}`;
      graph.node!.push(reduceNode(graph, opset, 'ReduceMean', name, headMean, 1, false));
      return headMean;
    });
    graph.node.push({
      opType: 'Mean',
      name: '/reader_patch/cross_attention_layer_mean',
      input: headMeans,
      output: [DECODER_OUTPUT.crossAttentionMean],
    });
    graph.output.push(floatOutput(DECODER_OUTPUT.crossAttentionMean));
    outputs.crossAttentionMean = DECODER_OUTPUT.crossAttentionMean;
    outputs.crossAttentionLayers = outcome.outputNames;
  }
  graph.output = orderOutputs(graph.output);
  return {
    bytes: onnx.ModelProto.encode(model).finish(),
    outputs,
    reordersCache,
    ...(outcome.ok ? {} : { reason: outcome.reason }),
  };
}

function addTopK(graph: OnnxTypes.IGraphProto): void {
  const int = onnx.AttributeProto.AttributeType.INT;
  graph.node!.push({
    opType: 'TopK',
    name: '/reader_patch/logits_top_k',
    input: [DECODER_OUTPUT.logits, TOP_K_INPUT],
    output: [DECODER_OUTPUT.topValues, DECODER_OUTPUT.topIndices],
    attribute: [
      { name: 'axis', type: int, i: -1 },
      { name: 'largest', type: int, i: 1 },
      { name: 'sorted', type: int, i: 1 },
    ],
  });
  graph.input!.push({
    name: TOP_K_INPUT,
    type: { tensorType: { elemType: onnx.TensorProto.DataType.INT64, shape: { dim: [{ dimValue: 1 }] } } },
  });
  graph.output!.push(floatOutput(DECODER_OUTPUT.topValues));
  graph.output!.push({ name: DECODER_OUTPUT.topIndices, type: { tensorType: { elemType: onnx.TensorProto.DataType.INT64 } } });
}

const PAST_SELF_ATTENTION = /^past_key_values\.\d+\.decoder\.(key|value)$/;

/** Feeds every self-attention cache input through Gather(beam_origins) and makes all its consumers read that. */
function addBeamReorder(graph: OnnxTypes.IGraphProto): boolean {
  graph.input ??= [];
  if (graph.input.some((i) => i.name === BEAM_ORIGINS_INPUT)) return false;
  const pasts = graph.input.map((i) => i.name ?? '').filter((n) => PAST_SELF_ATTENTION.test(n));
  if (pasts.length === 0) return false;
  const renamed = new Map(pasts.map((n) => [n, `/reader_patch/reordered/${n}`]));
  renameUses(graph, renamed, false);
  const gathers = pasts.map((n) => ({
    opType: 'Gather',
    name: `/reader_patch/reorder/${n}`,
    input: [n, BEAM_ORIGINS_INPUT],
    output: [renamed.get(n)!],
    attribute: [{ name: 'axis', type: onnx.AttributeProto.AttributeType.INT, i: 0 }],
  }));
  graph.node = [...gathers, ...(graph.node ?? [])];
  graph.input.push({
    name: BEAM_ORIGINS_INPUT,
    type: { tensorType: { elemType: onnx.TensorProto.DataType.INT64, shape: { dim: [{ dimParam: 'beam_rows' }] } } },
  });
  return true;
}

/** Renames values read by nodes, in the graph and (as outer-scope references) in its subgraphs. */
function renameUses(graph: OnnxTypes.IGraphProto, renamed: ReadonlyMap<string, string>, isSubgraph: boolean): void {
  for (const node of graph.node ?? []) {
    node.input = (node.input ?? []).map((n) => renamed.get(n) ?? n);
    for (const a of node.attribute ?? []) {
      if (a.g) renameUses(a.g, renamed, true);
      for (const g of a.graphs ?? []) renameUses(g, renamed, true);
    }
  }
  // A subgraph may pass an outer value straight through as an output.
  if (isSubgraph) for (const o of graph.output ?? []) o.name = renamed.get(o.name ?? '') ?? o.name;
}

function defaultOpset(model: OnnxTypes.IModelProto): number {
  const entry = (model.opsetImport ?? []).find((o) => !o.domain || o.domain === 'ai.onnx');
  return Number(entry?.version ?? 0);
}

function hasValue(graph: OnnxTypes.IGraphProto, name: string): boolean {
  return (graph.node ?? []).some((n) => n.output?.includes(name)) || (graph.output ?? []).some((o) => o.name === name);
}

/** A Reduce* node over one axis; opset 18 moved `axes` from an attribute to an input. */
function reduceNode(
  graph: OnnxTypes.IGraphProto,
  opset: number,
  opType: 'ReduceMean' | 'ReduceLogSumExp',
  input: string,
  output: string,
  axis: number,
  keepDims: boolean,
): OnnxTypes.INodeProto {
  const keepdims = { name: 'keepdims', type: onnx.AttributeProto.AttributeType.INT, i: keepDims ? 1 : 0 };
  const name = `/reader_patch/${output}`;
  if (opset < 18) {
    const axes = { name: 'axes', type: onnx.AttributeProto.AttributeType.INTS, ints: [axis] };
    return { opType, name, input: [input], output: [output], attribute: [axes, keepdims] };
  }
  const axesName = `${name}/axes`;
  graph.initializer ??= [];
  graph.initializer.push({ name: axesName, dims: [1], dataType: onnx.TensorProto.DataType.INT64, int64Data: [axis] });
  return { opType, name, input: [input, axesName], output: [output], attribute: [keepdims] };
}

/**
 * onnxruntime-node 1.14 labels the outputs of a run with `fetches` positionally by the session's output order, so only
 * fetch lists that are a prefix of that order come back correctly named. This order puts what every decoding step needs
 * first, then the cross-attention presents (needed once), then what only checks and re-scoring need (full logits,
 * per-layer attention), so decoding steps copy out just the small outputs.
 */
const OUTPUT_GROUPS: Array<(name: string) => boolean> = [
  (n) => n === DECODER_OUTPUT.logSumExp || n === DECODER_OUTPUT.topValues || n === DECODER_OUTPUT.topIndices,
  (n) => n === DECODER_OUTPUT.crossAttentionMean,
  (n) => /^present\.\d+\.decoder\./.test(n),
  (n) => /^present\.\d+\.encoder\./.test(n),
  (n) => n === DECODER_OUTPUT.logits,
  (n) => n.startsWith('cross_attentions.'),
];

function outputRank(name: string): number {
  const group = OUTPUT_GROUPS.findIndex((inGroup) => inGroup(name));
  return group === -1 ? OUTPUT_GROUPS.length : group;
}

function orderOutputs(outputs: OnnxTypes.IValueInfoProto[]): OnnxTypes.IValueInfoProto[] {
  return outputs
    .map((o, i) => ({ o, i, rank: outputRank(o.name ?? '') }))
    .sort((a, b) => a.rank - b.rank || a.i - b.i)
    .map((x) => x.o);
}

type ExposeOutcome = { ok: true; outputNames: string[] } | { ok: false; reason: string };

/** Adds `cross_attentions.{layer}` outputs to the graph (in place). */
function exposeCrossAttention(graph: OnnxTypes.IGraphProto, layers: number): ExposeOutcome {
  const outputNames = Array.from({ length: layers }, (_, i) => DECODER_OUTPUT.crossAttentionLayer(i));
  graph.output ??= [];
  const taken = new Set(graph.output.map((o) => o.name));
  if (outputNames.some((n) => taken.has(n))) {
    return { ok: false, reason: `the decoder already has outputs named ${outputNames[0]}…` };
  }

  const direct = softmaxValues(graph);
  if (direct.length > 0) {
    if (!isCompleteLayerSet(direct, layers)) {
      return { ok: false, reason: `found ${direct.length} cross-attention Softmax nodes for ${layers} layers` };
    }
    graph.node ??= [];
    for (const { layer, value } of direct) {
      const name = DECODER_OUTPUT.crossAttentionLayer(layer);
      graph.node.push({ opType: 'Identity', name: `/reader_patch/${name}`, input: [value], output: [name] });
      graph.output.push(floatOutput(name));
    }
    return { ok: true, outputNames };
  }

  for (const node of graph.node ?? []) {
    if (node.opType !== 'If') continue;
    const thenGraph = branch(node, 'then_branch');
    const elseGraph = branch(node, 'else_branch');
    if (!thenGraph || !elseGraph) continue;
    const withPast = softmaxValues(thenGraph);
    const withoutPast = softmaxValues(elseGraph);
    if (withPast.length === 0 && withoutPast.length === 0) continue;
    if (!isCompleteLayerSet(withPast, layers) || !isCompleteLayerSet(withoutPast, layers)) {
      return {
        ok: false,
        reason: `If branches hold ${withPast.length} and ${withoutPast.length} cross-attention Softmax nodes for ${layers} layers`,
      };
    }
    thenGraph.output ??= [];
    elseGraph.output ??= [];
    node.output ??= [];
    for (let layer = 0; layer < layers; layer++) {
      thenGraph.output.push(floatOutput(withPast[layer]!.value));
      elseGraph.output.push(floatOutput(withoutPast[layer]!.value));
      node.output.push(outputNames[layer]!);
      graph.output.push(floatOutput(outputNames[layer]!));
    }
    return { ok: true, outputNames };
  }
  return { ok: false, reason: `no node named …${SOFTMAX_SUFFIX} in the decoder graph or its If branches` };
}

/** What the load-time rewrite of a model's decoder did (Seq2SeqModel.decoderRewrite of a model loaded for the reader). */
export interface DecoderPatchInfo extends Omit<PreparedDecoderGraph, 'bytes'> {
  kind: 'fid-reader-decoder-patch';
  exposeAttention: boolean;
}

export function isDecoderPatchInfo(info: unknown): info is DecoderPatchInfo {
  return typeof info === 'object' && info !== null && (info as { kind?: unknown }).kind === 'fid-reader-decoder-patch';
}

/**
 * The reader's decoder rewrite, applied when the model loads so the model has one decoder session that both the
 * reader and transformers.js `generate()` use. Added inputs get neutral values for generate(): identity beam origins
 * (no reordering) and k = 1 for TopK.
 */
export function fidDecoderRewrite(exposeAttention = true): DecoderRewrite<DecoderPatchInfo> {
  return {
    rewrite(bytes: Uint8Array, config: Seq2SeqConfig) {
      const { bytes: rewritten, ...rest } = prepareDecoderGraph(bytes, config.num_decoder_layers, exposeAttention);
      return { bytes: rewritten, info: { ...rest, kind: 'fid-reader-decoder-patch', exposeAttention } };
    },
    addedInputs(info) {
      return [...(info.reordersCache ? [BEAM_ORIGINS_INPUT] : []), ...(info.outputs.topValues ? [TOP_K_INPUT] : [])];
    },
    neutralFeeds(info, feeds) {
      const added: Record<string, ort.Tensor> = {};
      const rows = feeds.input_ids?.dims[0] ?? 1;
      if (info.reordersCache) {
        added[BEAM_ORIGINS_INPUT] = new ort.Tensor(
          'int64',
          BigInt64Array.from({ length: rows }, (_, i) => BigInt(i)),
          [rows],
        );
      }
      if (info.outputs.topValues) added[TOP_K_INPUT] = new ort.Tensor('int64', BigInt64Array.of(1n), [1]);
      return added;
    },
  };
}
