/**
 * The trainable segment as two ONNX graphs built in memory, so that onnxruntime runs fine-tuning's
 * hot paths natively:
 *  - forward: x (NHWC, the segment's input) and the trainable weights (graph inputs, Keras layout)
 *    -> y (NHWC), plus what backward needs: each ReLU's output (its mask), each convolution's
 *    input and each max pool's argmax indices. BatchNormalization is folded inside the
 *    graph, from the live weights: W' = W * s per output channel, b' = beta - mean * s
 *    (s = 1 / sqrt(var + eps)).
 *  - backward: dL/dy, those saved tensors and the kernels -> dL/d(every trainable weight).
 *    ReLU: dY * (Y > 0); conv weights: im2col columnsᵀ·dZ (one GEMM), then * s; conv data at
 *    stride 1: dZ's own columns (its 'full' correlation) times W' flipped in space and transposed
 *    (one Gather, one GEMM); strided: dZ·W'ᵀ (one GEMM) folded back onto the input (col2im: the
 *    taps' shifted sum); beta: dZ summed over N, H, W;
 *    stride-1 'same' average pool (padding not counted, as TF): a sum pool of dY / count; max
 *    pool: dY scattered (added) at the forward's argmax; concatenation: a split; fan-out: a sum.
 * Why convolutions as GEMMs, NHWC throughout: the kernels are graph inputs (they change every
 * step), so onnxruntime cannot pre-pack them into its blocked (NCHWc) layout, and its plain Conv
 * runs one small GEMM per image (49 columns at mixed7 on 150x150); as one GEMM over the whole batch
 * (rows N*H*W) on im2col columns (Keras's HWIO kernel is already the [kh*kw*ci, co] matrix), the
 * segment's forward measured ~2x faster and needs no layout transposes (only max pooling runs NCHW).
 */
import onnxProto from 'onnx-proto';
import { GraftError } from '../../util/errors.js';
import type { KerasLayer, WeightMap } from '../../backbone/keras-graph.js';
import { weightKey } from '../../backbone/keras-graph.js';
import { windowParams } from '../../backbone/layer-shapes.js';
import { attrInt, attrInts, OnnxBuilder, samePads } from '../../backbone/onnx/convert.js';
import { GRAFT_VERSION } from '../../version.js';
import type { FeaturePooling } from '../../backbone/backbone.js';
import { gridShape } from '../../model/grid-pool.js';
import type { Segment } from './segment.js';
import { poolAfterAffine } from './segment-pool-order.js';

const { onnx } = onnxProto;
const FLOAT = onnx.TensorProto.DataType.FLOAT;
const INT64 = onnx.TensorProto.DataType.INT64;
const Attr = onnx.AttributeProto.AttributeType;
export const SEGMENT_OPSET = 17;

/** A tensor the forward graph outputs for the backward graph. */
export interface SavedTensor {
  name: string;
  type: 'float32' | 'int64';
  /** Its shape for one example (without the batch dimension). */
  shape: number[];
}

export interface SegmentGraphs {
  forward: Uint8Array;
  backward: Uint8Array;
  /** Forward outputs after 'y', fed to backward under the same names. */
  saved: SavedTensor[];
  /** Graph input names of the trainable weights (both graphs), in segment.trainable order. */
  paramInputs: string[];
  /** Which trainable weights backward reads (kernels of convs whose input gradient is needed). */
  backwardParams: number[];
  /** Whether backward reads the segment input 'x' (a conv reads it directly). */
  backwardNeedsInput: boolean;
  /** Backward's outputs, in segment.trainable order. */
  gradOutputs: string[];
}

interface ConvFold {
  conv: KerasLayer;
  bn: KerasLayer | null;
  /** Per output channel scale of the folded BN (1 without BN). */
  scale: Float32Array;
}

function int64Const(b: OnnxBuilder, base: string, values: number[]): string {
  const name = b.unique(base);
  b.initializers.push({ name, dims: [values.length], dataType: INT64, int64Data: values });
  return name;
}

function scalar(b: OnnxBuilder, base: string, v: number): string {
  return b.constant(base, [], new Float32Array([v]));
}

function floatAttr(name: string, f: number): onnxProto.onnx.IAttributeProto {
  return { name, type: Attr.FLOAT, f };
}
function strAttr(name: string, s: string): onnxProto.onnx.IAttributeProto {
  return { name, type: Attr.STRING, s: new TextEncoder().encode(s) };
}

function weightOf(weights: WeightMap, layer: KerasLayer, name: string): Float32Array {
  const w = weights.get(weightKey(layer.name, name));
  if (!w) throw new GraftError(`layer ${layer.name} needs weight ${weightKey(layer.name, name)}, which is missing`);
  return w.data;
}

/** Conv2D layers with the BatchNormalization folded into each (the converter's rule). */
function convFolds(segment: Segment, weights: WeightMap): Map<string, ConvFold> {
  const consumers = new Map<string, KerasLayer[]>();
  for (const l of segment.layers) for (const i of l.inbound) consumers.set(i, [...(consumers.get(i) ?? []), l]);
  const folds = new Map<string, ConvFold>();
  for (const l of segment.layers) {
    if (l.className !== 'Conv2D') continue;
    const c = l.config;
    if (c.data_format === 'channels_first') throw new GraftError(`layer ${l.name}: channels_first convolutions are not supported`);
    const dil = c.dilation_rate;
    if (Array.isArray(dil) ? dil.some((d) => Number(d) !== 1) : dil !== undefined && Number(dil) !== 1) throw new GraftError(`layer ${l.name}: dilated convolutions cannot be fine-tuned`);
    const act = c.activation ?? 'linear';
    if (act !== 'linear' && act !== 'relu') throw new GraftError(`layer ${l.name}: activation ${String(act)} cannot be fine-tuned`);
    const next = consumers.get(l.name) ?? [];
    const co = Number(c.filters);
    let bn: KerasLayer | null = null;
    const scale = new Float32Array(co).fill(1);
    if (next.length === 1 && next[0]!.className === 'BatchNormalization' && act === 'linear' && l.name !== segment.to) {
      bn = next[0]!;
      const variance = weightOf(weights, bn, 'moving_variance');
      const eps = typeof bn.config.epsilon === 'number' ? bn.config.epsilon : 1e-3;
      for (let o = 0; o < co; o++) scale[o] = 1 / Math.sqrt(variance[o]! + eps);
    }
    folds.set(l.name, { conv: l, bn, scale });
  }
  for (const l of segment.layers) {
    if (l.className === 'BatchNormalization' && ![...folds.values()].some((f) => f.bn === l)) {
      throw new GraftError(`fine-tuning: BatchNormalization ${l.name} does not follow a convolution, which graft cannot train`);
    }
  }
  return folds;
}

function modelBytes(name: string, b: OnnxBuilder, inputs: onnxProto.onnx.IValueInfoProto[], outputs: onnxProto.onnx.IValueInfoProto[]): Uint8Array {
  const model = onnx.ModelProto.create({
    irVersion: 8,
    producerName: 'graft',
    producerVersion: GRAFT_VERSION,
    opsetImport: [{ domain: '', version: SEGMENT_OPSET }],
    graph: { name, node: b.nodes, initializer: b.initializers, input: inputs, output: outputs },
  });
  return onnx.ModelProto.encode(model).finish();
}

function valueInfo(name: string, dims: (number | string)[], elemType = FLOAT): onnxProto.onnx.IValueInfoProto {
  return { name, type: { tensorType: { elemType, shape: { dim: dims.map((d) => (typeof d === 'number' ? { dimValue: d } : { dimParam: d })) } } } };
}

/** [top, left, bottom, right] pads of a window layer on its input. */
function padsOf(layer: KerasLayer, inShape: number[]): number[] {
  const { kernel, strides, padding } = windowParams(layer);
  return padding === 'same' ? samePads(inShape[0]!, inShape[1]!, kernel, strides) : [0, 0, 0, 0];
}

/**
 * The segment's forward alone with `weights` as constants (onnxruntime pre-packs them): the frozen
 * network from `from` to the cut, for features at the cut derived from features at `from`; with
 * `pool`, the cut's output pooled in the graph as the backbone's `pool` option pools it (globally,
 * or a head's grid pooling).
 */
export function frozenSegmentForward(segment: Segment, weights: WeightMap, pool: FeaturePooling | null): Uint8Array {
  return buildGraphs(segment, weights, { pool }) as Uint8Array;
}

/** Builds the forward and backward graphs of `segment` with the frozen statistics in `weights`. */
export function buildSegmentGraphs(segment: Segment, weights: WeightMap): SegmentGraphs {
  return buildGraphs(segment, weights, null) as SegmentGraphs;
}

function buildGraphs(original: Segment, weights: WeightMap, frozen: { pool: FeaturePooling | null } | null): SegmentGraphs | Uint8Array {
  const segment = poolAfterAffine(original);
  const folds = convFolds(segment, weights);
  const paramIndex = new Map(segment.trainable.map((t, i) => [t.key, i]));
  const paramInputs = segment.trainable.map((_, i) => `param_${i}`);
  const param = (layer: string, name: string): string => {
    const i = paramIndex.get(weightKey(layer, name));
    if (i === undefined) throw new GraftError(`fine-tuning: ${weightKey(layer, name)} is not a trainable weight of the segment`);
    return paramInputs[i]!;
  };
  const shapeOf = (name: string) => segment.shapes.get(name)!;
  const inShapeOf = (layer: KerasLayer) => segment.inputShapes.get(layer.name)![0]!;
  /** A conv as one GEMM on columns: the input itself for an unpadded stride-1 1x1 kernel. */
  const isDirect = (layer: KerasLayer) => {
    const { kernel, strides } = windowParams(layer);
    return kernel[0] === 1 && kernel[1] === 1 && strides[0] === 1 && strides[1] === 1 && padsOf(layer, inShapeOf(layer)).every((p) => p === 0);
  };
  const scaleConst = (b: OnnxBuilder, fold: ConvFold) => b.constant(`${fold.conv.name}_s`, [fold.scale.length], fold.scale);
  /** W' as the [kh*kw*ci, co] matrix: Keras's HWIO kernel reshaped, the BN scale folded per column. */
  const foldedMatrix = (b: OnnxBuilder, fold: ConvFold): string => {
    const co = fold.scale.length;
    const m = b.node('Reshape', [param(fold.conv.name, 'kernel'), int64Const(b, 'shape', [-1, co])], `${fold.conv.name}_wmat`);
    return fold.bn ? b.node('Mul', [m, scaleConst(b, fold)], `${fold.conv.name}_wfold`) : m;
  };

  // ---- forward ----
  const f = new OnnxBuilder();
  for (const n of ['x', 'y', ...paramInputs]) f.unique(n);
  const values = new Map<string, string>([[segment.from, 'x']]);
  const saved: SavedTensor[] = [];
  const savedNames = new Set<string>();
  const save = (name: string, shape: number[], type: SavedTensor['type'] = 'float32') => {
    if (name === 'x' || savedNames.has(name)) return;
    savedNames.add(name);
    saved.push({ name, type, shape });
  };
  /** Per ReLU-carrying layer: its output's name (the mask). Per max pool: its indices. Per conv: its input. */
  const reluOut = new Map<string, string>();
  const poolIndices = new Map<string, string>();
  const convInputs = new Map<string, string>();

  for (const layer of segment.layers) {
    const c = layer.config;
    const x = values.get(layer.inbound[0]!);
    if (x === undefined) throw new GraftError(`layer ${layer.name} reads ${layer.inbound[0]}, which is not defined before it`);
    let out: string;
    switch (layer.className) {
      case 'Conv2D': {
        const fold = folds.get(layer.name)!;
        const co = fold.scale.length;
        const { kernel, strides } = windowParams(layer);
        const inShape = inShapeOf(layer), outShape = shapeOf(layer.name);
        const [oh, ow] = [outShape[0]!, outShape[1]!];
        // Backward rebuilds the columns from the saved input: measured faster than saving them
        // (kh*kw times the input, copied out of onnxruntime every step).
        const cols = isDirect(layer) ? x : im2col(f, x, layer, inShape, [oh, ow]);
        convInputs.set(layer.name, x);
        save(x, inShape);
        out = f.node('MatMul', [cols, foldedMatrix(f, fold)], `${layer.name}_z`);
        // b' = beta - mean*s (+ bias*s): a constant shift plus the live beta and bias.
        const terms: string[] = [];
        if (fold.bn) {
          const mean = weightOf(weights, fold.bn, 'moving_mean');
          const shift = new Float32Array(co);
          for (let o = 0; o < co; o++) shift[o] = -mean[o]! * fold.scale[o]!;
          terms.push(f.constant(`${layer.name}_shift`, [co], shift));
          if (fold.bn.config.center !== false) terms.push(param(fold.bn.name, 'beta'));
        }
        if (c.use_bias !== false) terms.push(fold.bn ? f.node('Mul', [param(layer.name, 'bias'), scaleConst(f, fold)], `${layer.name}_bfold`) : param(layer.name, 'bias'));
        if (terms.length > 0) {
          const bias = terms.slice(1).reduce((acc, t) => f.node('Add', [acc, t], `${layer.name}_bias`), terms[0]!);
          out = f.node('Add', [out, bias], fold.bn ? fold.bn.name : layer.name);
        }
        if ((c.activation ?? 'linear') === 'relu') {
          out = f.node('Relu', [out], `${layer.name}_relu`);
          reluOut.set(layer.name, out);
          save(out, outShape);
        }
        if (fold.bn) values.set(fold.bn.name, out);
        break;
      }
      case 'BatchNormalization':
        continue; // folded into its conv, whose output is already this layer's
      case 'Activation':
      case 'ReLU': {
        const act = layer.className === 'ReLU' ? 'relu' : String(c.activation ?? 'linear');
        if (layer.className === 'ReLU' && (c.max_value != null || Number(c.negative_slope ?? 0) !== 0 || Number(c.threshold ?? 0) !== 0)) {
          throw new GraftError(`fine-tuning: ReLU ${layer.name} with max_value, negative_slope or threshold cannot be trained by graft`);
        }
        if (act === 'linear') out = x;
        else if (act === 'relu') {
          out = f.node('Relu', [x], layer.name);
          reluOut.set(layer.name, out);
          save(out, shapeOf(layer.name));
        } else throw new GraftError(`fine-tuning: activation ${act} (layer ${layer.name}) cannot be trained by graft`);
        break;
      }
      case 'MaxPooling2D': {
        // ONNX pools are NCHW: transposed in and out; the argmax indices are NCHW positions.
        const { kernel, strides } = windowParams(layer);
        const pooled = f.unique(`${layer.name}_nchw`);
        const idx = f.unique(`${layer.name}_argmax`);
        f.nodes.push({
          opType: 'MaxPool',
          input: [f.node('Transpose', [x], `${layer.name}_in_nchw`, [attrInts('perm', [0, 3, 1, 2])])],
          output: [pooled, idx],
          name: pooled,
          attribute: [attrInts('kernel_shape', kernel), attrInts('strides', strides), attrInts('pads', padsOf(layer, inShapeOf(layer)))],
        });
        out = f.node('Transpose', [pooled], layer.name, [attrInts('perm', [0, 2, 3, 1])]);
        poolIndices.set(layer.name, idx);
        const [ph, pw, pc] = shapeOf(layer.name) as [number, number, number];
        save(idx, [pc, ph, pw], 'int64');
        break;
      }
      case 'AveragePooling2D': {
        const { kernel, strides, padding } = windowParams(layer);
        const sumPoolable = padding === 'same' && strides[0] === 1 && strides[1] === 1 && kernel[0] % 2 === 1 && kernel[1] % 2 === 1;
        if (!sumPoolable) throw new GraftError(`fine-tuning: average pooling ${layer.name} (${kernel.join('x')}, strides ${strides.join('x')}, ${padding}) cannot be trained through by graft (only stride 1, 'same', odd sizes)`);
        const [h, w] = inShapeOf(layer) as [number, number, number];
        out = f.node('Mul', [sumPool(f, x, kernel, h, w, layer.name), f.constant(`${layer.name}_invcount`, [1, h, w, 1], inverseCounts(kernel, h, w))], layer.name);
        break;
      }
      case 'Concatenate': {
        const axis = Number(c.axis ?? -1);
        if (axis !== -1 && axis !== 3) throw new GraftError(`fine-tuning: concatenation ${layer.name} over axis ${axis} is not supported`);
        out = f.node('Concat', layer.inbound.map((n) => values.get(n)!), layer.name, [attrInt('axis', 3)]);
        break;
      }
      default:
        throw new GraftError(`fine-tuning: layer ${layer.name} (${layer.className}) cannot be trained by graft`);
    }
    values.set(layer.name, out);
  }
  if (frozen) {
    const top = values.get(segment.to)!;
    const channels = segment.outputShape.at(-1)!;
    const pool = frozen.pool;
    if (pool === 'avg' || pool === 'max') {
      f.nodes.push({ opType: pool === 'avg' ? 'ReduceMean' : 'ReduceMax', input: [top], output: ['y'], name: 'y', attribute: [attrInts('axes', [1, 2]), attrInt('keepdims', 0)] });
    } else if (pool) {
      // A head's grid pooling (padding 'valid'): ONNX pools are NCHW, the segment's values NHWC.
      const nchw = f.node('Transpose', [top], 'y_in_nchw', [attrInts('perm', [0, 3, 1, 2])]);
      const window = [attrInts('kernel_shape', [pool.pool, pool.pool]), attrInts('strides', [pool.stride, pool.stride])];
      const pooled = f.node(pool.kind === 'avgpool' ? 'AveragePool' : 'MaxPool', [nchw], 'y_pooled', window);
      f.nodes.push({ opType: 'Transpose', input: [pooled], output: ['y'], name: 'y', attribute: [attrInts('perm', [0, 2, 3, 1])] });
    } else {
      f.nodes.push({ opType: 'Identity', input: [top], output: ['y'], name: 'y' });
    }
    segment.trainable.forEach((t, i) => {
      const data = weights.get(t.key)!.data;
      f.initializers.push({ name: paramInputs[i]!, dims: t.shape, dataType: FLOAT, rawData: new Uint8Array(data.buffer, data.byteOffset, data.byteLength).slice() });
    });
    const outShape = pool === 'avg' || pool === 'max' ? [channels] : pool ? gridShape(pool, segment.outputShape) : segment.outputShape;
    return modelBytes('segment_frozen', f, [valueInfo('x', ['N', ...segment.inputShape])], [valueInfo('y', ['N', ...outShape])]);
  }
  f.nodes.push({ opType: 'Identity', input: [values.get(segment.to)!], output: ['y'], name: 'y' });

  const paramInfos = segment.trainable.map((t, i) => valueInfo(paramInputs[i]!, t.shape));
  const xInfo = valueInfo('x', ['N', ...segment.inputShape]);
  const savedInfo = (s: SavedTensor) => valueInfo(s.name, ['N', ...s.shape], s.type === 'int64' ? INT64 : FLOAT);
  const forward = modelBytes('segment_forward', f, [xInfo, ...paramInfos], [valueInfo('y', ['N', ...segment.outputShape]), ...saved.map(savedInfo)]);

  // ---- backward ----
  const b = new OnnxBuilder();
  for (const n of ['x', 'dy', ...paramInputs, ...saved.map((s) => s.name)]) b.unique(n);
  const grads = new Map<string, string[]>([[segment.to, ['dy']]]);
  const addGrad = (target: string, g: string) => {
    if (target !== segment.from) grads.set(target, [...(grads.get(target) ?? []), g]);
  };
  const gradOutputs = segment.trainable.map((_, i) => `grad_${i}`);
  for (const n of gradOutputs) b.unique(n);
  const usedParams = new Set<number>();
  let needsInput = false;
  const zero = scalar(b, 'zero', 0);
  const emitGrad = (layer: string, name: string, value: string) => {
    const i = paramIndex.get(weightKey(layer, name))!;
    b.nodes.push({ opType: 'Identity', input: [value], output: [gradOutputs[i]!], name: gradOutputs[i]! });
  };
  const reluBackward = (y: string, g: string, base: string) => b.node('Where', [b.node('Greater', [y, zero], `${base}_on`), g, zero], `${base}_drelu`);

  for (const layer of [...segment.layers].reverse()) {
    if (layer.className === 'BatchNormalization') continue; // its gradient is its conv's output gradient
    const parts = grads.get(layer.className === 'Conv2D' && folds.get(layer.name)!.bn ? folds.get(layer.name)!.bn!.name : layer.name);
    if (!parts || parts.length === 0) throw new GraftError(`fine-tuning: layer ${layer.name} does not lead to the cut ${segment.to}`);
    let g = parts.length === 1 ? parts[0]! : b.node('Sum', parts, `${layer.name}_dsum`);
    const c = layer.config;
    switch (layer.className) {
      case 'Activation':
      case 'ReLU':
        if (reluOut.has(layer.name)) g = reluBackward(reluOut.get(layer.name)!, g, layer.name);
        addGrad(layer.inbound[0]!, g);
        break;
      case 'Conv2D': {
        const fold = folds.get(layer.name)!;
        if (reluOut.has(layer.name)) g = reluBackward(reluOut.get(layer.name)!, g, layer.name);
        const { kernel, strides } = windowParams(layer);
        const inShape = inShapeOf(layer), outShape = shapeOf(layer.name);
        const [h, w, ci] = inShape as [number, number, number];
        const [oh, ow, co] = outShape as [number, number, number];
        const taps = kernel[0] * kernel[1];
        if (fold.bn || c.use_bias !== false) {
          const sum = b.node('ReduceSum', [g, int64Const(b, 'axes_nhw', [0, 1, 2])], `${layer.name}_dsum_nhw`, [attrInt('keepdims', 0)]);
          if (fold.bn && fold.bn.config.center !== false) emitGrad(fold.bn.name, 'beta', sum);
          if (c.use_bias !== false) emitGrad(layer.name, 'bias', fold.bn ? b.node('Mul', [sum, scaleConst(b, fold)], `${layer.name}_dbias`) : sum);
        }
        const dz = b.node('Reshape', [g, int64Const(b, 'shape', [-1, co])], `${layer.name}_dz_rows`);
        // dW' = columnsᵀ · dZ, one GEMM over the batch's N*OH*OW rows.
        const input = convInputs.get(layer.name)!;
        if (input === 'x') needsInput = true;
        let cols = isDirect(layer) ? input : im2col(b, input, layer, inShape, [oh, ow]);
        cols = b.node('Reshape', [cols, int64Const(b, 'shape', [-1, taps * ci])], `${layer.name}_col_rows`);
        let dw = b.node('Reshape', [b.node('Gemm', [cols, dz], `${layer.name}_dw_mat`, [attrInt('transA', 1)]), int64Const(b, 'shape', [kernel[0], kernel[1], ci, co])], `${layer.name}_dw_hwio`);
        if (fold.bn) dw = b.node('Mul', [dw, scaleConst(b, fold)], `${layer.name}_dkernel`);
        emitGrad(layer.name, 'kernel', dw);
        if (layer.inbound[0] === segment.from) break;
        usedParams.add(paramIndex.get(weightKey(layer.name, 'kernel'))!);
        if (isDirect(layer)) {
          const dcols = b.node('Gemm', [dz, foldedMatrix(b, fold)], `${layer.name}_dcols`, [attrInt('transB', 1)]);
          addGrad(layer.inbound[0]!, b.node('Reshape', [dcols, int64Const(b, 'shape', [-1, h, w, ci])], `${layer.name}_dx`));
          break;
        }
        const pads = padsOf(layer, inShape);
        if (strides[0] === 1 && strides[1] === 1) {
          // Stride 1: dX is dY's 'full' correlation with the kernel flipped in space and
          // transposed (ci <-> co): one Gather of dY's columns and one GEMM, no col2im.
          const fullPads = [kernel[0] - 1 - pads[0]!, kernel[1] - 1 - pads[1]!, kernel[0] - 1 - pads[2]!, kernel[1] - 1 - pads[3]!];
          const dcols = gatherColumns(b, g, outShape, kernel, strides, fullPads, [h, w], `${layer.name}_d`);
          addGrad(layer.inbound[0]!, b.node('MatMul', [dcols, flippedMatrix(b, foldedMatrix(b, fold), kernel, ci, co, layer.name)], `${layer.name}_dx`));
          break;
        }
        // Strided: dColumns = dZ · W'ᵀ, then each tap's slice added back where the forward read it.
        const dcols = b.node('Gemm', [dz, foldedMatrix(b, fold)], `${layer.name}_dcols`, [attrInt('transB', 1)]);
        const [hp, wp] = [h + pads[0]! + pads[2]! + strides[0] - 1, w + pads[1]! + pads[3]! + strides[1] - 1];
        const pieces = Array.from({ length: taps }, () => b.unique(`${layer.name}_dtap`));
        b.nodes.push({ opType: 'Split', input: [b.node('Reshape', [dcols, int64Const(b, 'shape', [-1, oh, ow, taps * ci])], `${layer.name}_dcols4`), int64Const(b, `${layer.name}_tapsizes`, pieces.map(() => ci))], output: pieces, name: pieces[0]!, attribute: [attrInt('axis', 3)] });
        const placed: string[] = [];
        for (let ky = 0; ky < kernel[0]; ky++) {
          for (let kx = 0; kx < kernel[1]; kx++) {
            let p = pieces[ky * kernel[1] + kx]!;
            if (strides[0] > 1 || strides[1] > 1) {
              // Strided: zeros between the rows and columns the forward read.
              const six = b.node('Reshape', [p, int64Const(b, 'shape', [-1, oh, 1, ow, 1, ci])], `${layer.name}_dtap6`);
              const spread = b.node('Pad', [six, int64Const(b, `${layer.name}_stride_pads`, [0, 0, 0, 0, 0, 0, 0, 0, strides[0] - 1, 0, strides[1] - 1, 0])], `${layer.name}_dtap_spread`);
              p = b.node('Reshape', [spread, int64Const(b, 'shape', [-1, oh * strides[0], ow * strides[1], ci])], `${layer.name}_dtap_strided`);
            }
            const pads8 = [0, ky, kx, 0, 0, hp - ky - oh * strides[0], wp - kx - ow * strides[1], 0];
            placed.push(b.node('Pad', [p, int64Const(b, `${layer.name}_tap_pads`, pads8)], `${layer.name}_dtap_placed`));
          }
        }
        const whole = placed.length === 1 ? placed[0]! : b.node('Sum', placed, `${layer.name}_dxpad`);
        addGrad(layer.inbound[0]!, b.node('Slice', [whole, int64Const(b, 'starts', [pads[0]!, pads[1]!]), int64Const(b, 'ends', [pads[0]! + h, pads[1]! + w]), int64Const(b, 'axes', [1, 2])], `${layer.name}_dx`));
        break;
      }
      case 'MaxPooling2D': {
        if (layer.inbound[0] === segment.from) break;
        const [h, w, ch] = inShapeOf(layer) as [number, number, number];
        const flat = int64Const(b, 'flat', [-1]);
        const n = b.node('Slice', [b.node('Shape', [g], `${layer.name}_dshape`), int64Const(b, 'zero', [0]), int64Const(b, 'one', [1])], `${layer.name}_n`);
        const shape = b.node('Concat', [n, int64Const(b, `${layer.name}_chw`, [ch, h, w])], `${layer.name}_inshape`, [attrInt('axis', 0)]);
        const count = b.node('ReduceProd', [shape], `${layer.name}_count`, [attrInt('keepdims', 1)]);
        const zeros = b.node('ConstantOfShape', [count], `${layer.name}_zeros`, [{ name: 'value', type: Attr.TENSOR, t: { dims: [1], dataType: FLOAT, floatData: [0] } }]);
        const gNchw = b.node('Transpose', [g], `${layer.name}_dy_nchw`, [attrInts('perm', [0, 3, 1, 2])]);
        const scattered = b.node('ScatterElements', [zeros, b.node('Reshape', [poolIndices.get(layer.name)!, flat], `${layer.name}_idx_flat`), b.node('Reshape', [gNchw, flat], `${layer.name}_dy_flat`)], `${layer.name}_scatter`, [attrInt('axis', 0), strAttr('reduction', 'add')]);
        addGrad(layer.inbound[0]!, b.node('Transpose', [b.node('Reshape', [scattered, shape], `${layer.name}_dx_nchw`)], `${layer.name}_dx`, [attrInts('perm', [0, 2, 3, 1])]));
        break;
      }
      case 'AveragePooling2D': {
        if (layer.inbound[0] === segment.from) break;
        const { kernel } = windowParams(layer);
        const [h, w] = inShapeOf(layer) as [number, number, number];
        // Stride 1, 'same': dX = sum over the windows covering x of dY / count(window).
        const scaled = b.node('Mul', [g, b.constant(`${layer.name}_invcount`, [1, h, w, 1], inverseCounts(kernel, h, w))], `${layer.name}_dy_scaled`);
        addGrad(layer.inbound[0]!, sumPool(b, scaled, kernel, h, w, `${layer.name}_d`));
        break;
      }
      case 'Concatenate': {
        const sizes = layer.inbound.map((n) => shapeOf(n)[2]!);
        const outs = layer.inbound.map((n) => b.unique(`${layer.name}_d_${n}`));
        b.nodes.push({ opType: 'Split', input: [g, int64Const(b, `${layer.name}_sizes`, sizes)], output: outs, name: outs[0]!, attribute: [attrInt('axis', 3)] });
        layer.inbound.forEach((n, i) => addGrad(n, outs[i]!));
        break;
      }
      default:
        throw new GraftError(`fine-tuning: layer ${layer.name} (${layer.className}) cannot be trained by graft`);
    }
  }
  const backwardParams = [...usedParams].sort((p, q) => p - q);
  const bInputs = [
    valueInfo('dy', ['N', ...segment.outputShape]),
    ...(needsInput ? [xInfo] : []),
    ...backwardParams.map((i) => paramInfos[i]!),
    ...saved.map(savedInfo),
  ];
  const backward = modelBytes('segment_backward', b, bInputs, segment.trainable.map((t, i) => valueInfo(gradOutputs[i]!, t.shape)));
  return { forward, backward, saved, paramInputs, backwardParams, backwardNeedsInput: needsInput, gradOutputs };
}

/**
 * im2col of an NHWC tensor for a convolution: the padded input's pixels flattened to rows, and one
 * Gather picking, for every output position, the rows its kernel taps read (tap-major, HWIO order),
 * so that Keras's kernel reshaped to [kh*kw*ci, co] is the GEMM's right matrix. One copy of the
 * columns: measured faster than a strided Slice per tap concatenated (two copies, kh*kw + 1 ops).
 */
function im2col(b: OnnxBuilder, x: string, layer: KerasLayer, inShape: number[], out: number[]): string {
  const { kernel, strides } = windowParams(layer);
  return gatherColumns(b, x, inShape, kernel, strides, padsOf(layer, inShape), out, layer.name);
}

/** Columns of `x` ([N, h, w, c]) for a kh x kw window at `strides` with [top, left, bottom, right] zero `pads`: [N, oh, ow, kh*kw*c]. */
function gatherColumns(b: OnnxBuilder, x: string, [h, w, c]: number[], kernel: [number, number], strides: [number, number], pads: number[], [oh, ow]: number[], base: string): string {
  const [hp, wp] = [h! + pads[0]! + pads[2]!, w! + pads[1]! + pads[3]!];
  const xp = pads.some((p) => p !== 0) ? b.node('Pad', [x, int64Const(b, `${base}_pads`, [0, pads[0]!, pads[1]!, 0, 0, pads[2]!, pads[3]!, 0])], `${base}_xpad`) : x;
  const pixels = b.node('Reshape', [xp, int64Const(b, 'shape', [-1, hp * wp, c!])], `${base}_pixels`);
  const taps = kernel[0] * kernel[1];
  const rows: number[] = [];
  for (let oy = 0; oy < oh!; oy++) {
    for (let ox = 0; ox < ow!; ox++) {
      for (let ky = 0; ky < kernel[0]; ky++) for (let kx = 0; kx < kernel[1]; kx++) rows.push((oy * strides[0] + ky) * wp + ox * strides[1] + kx);
    }
  }
  const index = b.unique(`${base}_taps`);
  b.initializers.push({ name: index, dims: [oh! * ow!, taps], dataType: INT64, int64Data: rows });
  const cols = b.node('Gather', [pixels, index], `${base}_gather`, [attrInt('axis', 1)]);
  return b.node('Reshape', [cols, int64Const(b, 'shape', [-1, oh!, ow!, taps * c!])], `${base}_cols`);
}

/** [kh*kw*co, ci]: the [kh*kw*ci, co] kernel matrix `w` with its taps in reverse order and each tap transposed. */
function flippedMatrix(b: OnnxBuilder, w: string, kernel: [number, number], ci: number, co: number, base: string): string {
  const hwio = b.node('Reshape', [w, int64Const(b, 'shape', [kernel[0], kernel[1], ci, co])], `${base}_whwio`);
  const big = -(2 ** 31);
  const reversed = b.node('Slice', [hwio, int64Const(b, 'starts', [-1, -1]), int64Const(b, 'ends', [big, big]), int64Const(b, 'axes', [0, 1]), int64Const(b, 'steps', [-1, -1])], `${base}_wflip`);
  const hwoi = b.node('Transpose', [reversed], `${base}_whwoi`, [attrInts('perm', [0, 1, 3, 2])]);
  return b.node('Reshape', [hwoi, int64Const(b, 'shape', [kernel[0] * kernel[1] * co, ci])], `${base}_wflip_mat`);
}

/** Sum over each odd kh x kw window, stride 1, zero 'same' padding, of an NHWC tensor: separable, as shifted slices. */
function sumPool(b: OnnxBuilder, t: string, kernel: [number, number], h: number, w: number, base: string): string {
  const ry = (kernel[0] - 1) / 2, rx = (kernel[1] - 1) / 2;
  const padded = b.node('Pad', [t, int64Const(b, `${base}_pool_pads`, [0, ry, rx, 0, 0, ry, rx, 0])], `${base}_pool_pad`);
  const along = (src: string, axis: number, k: number, size: number): string => {
    const shifted = Array.from({ length: k }, (_, d) => b.node('Slice', [src, int64Const(b, 'starts', [d]), int64Const(b, 'ends', [d + size]), int64Const(b, 'axes', [axis])], `${base}_pool_shift`));
    return shifted.length === 1 ? shifted[0]! : b.node('Sum', shifted, `${base}_pool_sum`);
  };
  return along(along(padded, 1, kernel[0], h), 2, kernel[1], w);
}

/** 1 / (cells of an odd kh x kw 'same' window inside an h x w map), per position: TF's average pooling divisor. */
function inverseCounts(kernel: [number, number], h: number, w: number): Float32Array {
  const ry = (kernel[0] - 1) / 2, rx = (kernel[1] - 1) / 2;
  const inv = new Float32Array(h * w);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const cy = Math.min(h - 1, y + ry) - Math.max(0, y - ry) + 1, cx = Math.min(w - 1, x + rx) - Math.max(0, x - rx) + 1;
      inv[y * w + x] = 1 / (cy * cx);
    }
  }
  return inv;
}
