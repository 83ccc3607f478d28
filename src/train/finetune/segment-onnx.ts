/**
 * The trainable segment as two ONNX graphs built in memory, so that onnxruntime runs fine-tuning's
 * hot paths natively:
 *  - forward: x (NHWC, the segment's input) and the trainable weights (graph inputs, Keras layout)
 *    -> y (NHWC), plus what backward needs: each ReLU's output (its mask), each conv's input and
 *    each max pool's argmax indices. BatchNormalization is folded inside the graph, from the live
 *    weights: W' = W * s per output channel, b' = beta - mean * s (s = 1 / sqrt(var + eps)).
 *  - backward: dL/dy, those saved tensors and the kernels -> dL/d(every trainable weight).
 *    ReLU: dY * (Y > 0); conv data: ConvTranspose with W'; conv weights: per kernel tap, a strided
 *    slice of the padded input times dZ (one GEMM per tap), then * s; beta: dZ summed over N, H, W;
 *    3x3 stride-1 'same' average pool (padding not counted, as TF): a sum pool of dY / count; max
 *    pool: dY scattered (added) at the forward's argmax; concatenation: a split; fan-out: a sum.
 * Inside, tensors are NCHW (ONNX's convolution layout), as in the backbone's converter.
 */
import onnxProto from 'onnx-proto';
import { GraftError } from '../../util/errors.js';
import type { KerasLayer, WeightMap } from '../../backbone/keras-graph.js';
import { weightKey } from '../../backbone/keras-graph.js';
import { windowParams } from '../../backbone/layer-shapes.js';
import { attrInt, attrInts, OnnxBuilder, samePads } from '../../backbone/onnx/convert.js';
import { GRAFT_VERSION } from '../../version.js';
import type { Segment } from './segment.js';

const { onnx } = onnxProto;
const FLOAT = onnx.TensorProto.DataType.FLOAT;
const INT64 = onnx.TensorProto.DataType.INT64;
const Attr = onnx.AttributeProto.AttributeType;
export const SEGMENT_OPSET = 17;

/** A tensor the forward graph outputs for the backward graph. */
export interface SavedTensor {
  name: string;
  type: 'float32' | 'int64';
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

/** Builds the forward and backward graphs of `segment` with the frozen statistics in `weights`. */
export function buildSegmentGraphs(segment: Segment, weights: WeightMap): SegmentGraphs {
  const folds = convFolds(segment, weights);
  const foldedBn = new Map<string, ConvFold>();
  for (const f of folds.values()) if (f.bn) foldedBn.set(f.bn.name, f);
  const paramIndex = new Map(segment.trainable.map((t, i) => [t.key, i]));
  const paramInputs = segment.trainable.map((_, i) => `param_${i}`);
  const param = (layer: string, name: string): string => {
    const i = paramIndex.get(weightKey(layer, name));
    if (i === undefined) throw new GraftError(`fine-tuning: ${weightKey(layer, name)} is not a trainable weight of the segment`);
    return paramInputs[i]!;
  };
  const shapeOf = (name: string) => segment.shapes.get(name)!;
  const inShapeOf = (layer: KerasLayer) => segment.inputShapes.get(layer.name)![0]!;

  // ---- forward ----
  const f = new OnnxBuilder();
  for (const n of ['x', 'y', ...paramInputs]) f.unique(n);
  const values = new Map<string, string>([[segment.from, f.node('Transpose', ['x'], 'x_nchw', [attrInts('perm', [0, 3, 1, 2])])]]);
  const saved: SavedTensor[] = [];
  const savedNames = new Set<string>();
  const save = (name: string, type: SavedTensor['type'] = 'float32') => {
    if (savedNames.has(name)) return;
    savedNames.add(name);
    saved.push({ name, type });
  };
  /** Per ReLU-carrying layer: its output's name (the mask). Per max pool: its indices. */
  const reluOut = new Map<string, string>();
  const poolIndices = new Map<string, string>();
  const scaleConst = (b: OnnxBuilder, fold: ConvFold, dims: number[]) => b.constant(`${fold.conv.name}_s`, dims, fold.scale);
  /** W' (OIHW) from the live HWIO kernel input, with the BN scale folded. */
  const foldedKernel = (b: OnnxBuilder, fold: ConvFold): string => {
    const co = fold.scale.length;
    const oihw = b.node('Transpose', [param(fold.conv.name, 'kernel')], `${fold.conv.name}_oihw`, [attrInts('perm', [3, 2, 0, 1])]);
    return fold.bn ? b.node('Mul', [oihw, scaleConst(b, fold, [co, 1, 1, 1])], `${fold.conv.name}_wfold`) : oihw;
  };

  for (const layer of segment.layers) {
    const c = layer.config;
    const x = values.get(layer.inbound[0]!);
    if (x === undefined) throw new GraftError(`layer ${layer.name} reads ${layer.inbound[0]}, which is not defined before it`);
    let out: string;
    switch (layer.className) {
      case 'Conv2D': {
        const fold = folds.get(layer.name)!;
        const co = fold.scale.length;
        const inputs = [x, foldedKernel(f, fold)];
        // b' = beta - mean*s (+ bias*s): a constant shift plus the live beta and bias.
        const terms: string[] = [];
        if (fold.bn) {
          const mean = weightOf(weights, fold.bn, 'moving_mean');
          const shift = new Float32Array(co);
          for (let o = 0; o < co; o++) shift[o] = -mean[o]! * fold.scale[o]!;
          terms.push(f.constant(`${layer.name}_shift`, [co], shift));
          if (fold.bn.config.center !== false) terms.push(param(fold.bn.name, 'beta'));
        }
        if (c.use_bias !== false) terms.push(fold.bn ? f.node('Mul', [param(layer.name, 'bias'), scaleConst(f, fold, [co])], `${layer.name}_bfold`) : param(layer.name, 'bias'));
        if (terms.length > 0) inputs.push(terms.length === 1 ? terms[0]! : terms.slice(1).reduce((acc, t) => f.node('Add', [acc, t], `${layer.name}_bias`), terms[0]!));
        out = f.node('Conv', inputs, fold.bn ? fold.bn.name : layer.name, [
          attrInts('kernel_shape', windowParams(layer).kernel),
          attrInts('strides', windowParams(layer).strides),
          attrInts('pads', padsOf(layer, inShapeOf(layer))),
          attrInts('dilations', [1, 1]),
        ]);
        if (layer.inbound[0] !== segment.from) save(x);
        if ((c.activation ?? 'linear') === 'relu') {
          out = f.node('Relu', [out], `${layer.name}_relu`);
          reluOut.set(layer.name, out);
          save(out);
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
          save(out);
        } else throw new GraftError(`fine-tuning: activation ${act} (layer ${layer.name}) cannot be trained by graft`);
        break;
      }
      case 'MaxPooling2D': {
        const { kernel, strides } = windowParams(layer);
        out = f.unique(layer.name);
        const idx = f.unique(`${layer.name}_argmax`);
        f.nodes.push({
          opType: 'MaxPool',
          input: [x],
          output: [out, idx],
          name: out,
          attribute: [attrInts('kernel_shape', kernel), attrInts('strides', strides), attrInts('pads', padsOf(layer, inShapeOf(layer)))],
        });
        poolIndices.set(layer.name, idx);
        save(idx, 'int64');
        break;
      }
      case 'AveragePooling2D': {
        const { kernel, strides, padding } = windowParams(layer);
        const sumPoolable = padding === 'same' && strides[0] === 1 && strides[1] === 1 && kernel[0] % 2 === 1 && kernel[1] % 2 === 1;
        if (!sumPoolable) throw new GraftError(`fine-tuning: average pooling ${layer.name} (${kernel.join('x')}, strides ${strides.join('x')}, ${padding}) cannot be trained through by graft (only stride 1, 'same', odd sizes)`);
        out = f.node('AveragePool', [x], layer.name, [attrInts('kernel_shape', kernel), attrInts('strides', strides), attrInts('pads', padsOf(layer, inShapeOf(layer))), attrInt('count_include_pad', 0)]);
        break;
      }
      case 'Concatenate': {
        const axis = Number(c.axis ?? -1);
        if (axis !== -1 && axis !== 3) throw new GraftError(`fine-tuning: concatenation ${layer.name} over axis ${axis} is not supported`);
        out = f.node('Concat', layer.inbound.map((n) => values.get(n)!), layer.name, [attrInt('axis', 1)]);
        break;
      }
      default:
        throw new GraftError(`fine-tuning: layer ${layer.name} (${layer.className}) cannot be trained by graft`);
    }
    values.set(layer.name, out);
  }
  f.nodes.push({ opType: 'Transpose', input: [values.get(segment.to)!], output: ['y'], name: 'y', attribute: [attrInts('perm', [0, 2, 3, 1])] });

  const paramInfos = segment.trainable.map((t, i) => valueInfo(paramInputs[i]!, t.shape));
  const xInfo = valueInfo('x', ['N', ...segment.inputShape]);
  // Saved tensors' shapes are left to onnxruntime (each is an intermediate it knows).
  const savedInfo = (s: SavedTensor) => ({ name: s.name, type: { tensorType: { elemType: s.type === 'int64' ? INT64 : FLOAT } } });
  const forward = modelBytes('segment_forward', f, [xInfo, ...paramInfos], [valueInfo('y', ['N', ...segment.outputShape]), ...saved.map(savedInfo)]);

  // ---- backward ----
  const b = new OnnxBuilder();
  for (const n of ['x', 'dy', ...paramInputs, ...saved.map((s) => s.name)]) b.unique(n);
  const grads = new Map<string, string[]>([[segment.to, [b.node('Transpose', ['dy'], 'dy_nchw', [attrInts('perm', [0, 3, 1, 2])])]]]);
  const addGrad = (target: string, g: string) => {
    if (target !== segment.from) grads.set(target, [...(grads.get(target) ?? []), g]);
  };
  const gradOutputs = segment.trainable.map((_, i) => `grad_${i}`);
  for (const n of gradOutputs) b.unique(n);
  const usedParams = new Set<number>();
  let needsInput = false;
  let xNchw: string | null = null;
  const inputOf = (layer: KerasLayer): string => {
    const name = layer.inbound[0]!;
    if (name !== segment.from) return values.get(name)!;
    needsInput = true;
    xNchw ??= b.node('Transpose', ['x'], 'x_nchw', [attrInts('perm', [0, 3, 1, 2])]);
    return xNchw;
  };
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
        const [ci, co] = [inShape[2]!, outShape[2]!];
        const [oh, ow] = [outShape[0]!, outShape[1]!];
        const pads = padsOf(layer, inShape);
        const axesNHW = int64Const(b, 'axes_nhw', [0, 2, 3]);
        if (fold.bn || c.use_bias !== false) {
          const sum = b.node('ReduceSum', [g, axesNHW], `${layer.name}_dsum_nhw`, [attrInt('keepdims', 0)]);
          if (fold.bn && fold.bn.config.center !== false) emitGrad(fold.bn.name, 'beta', sum);
          if (c.use_bias !== false) emitGrad(layer.name, 'bias', fold.bn ? b.node('Mul', [sum, scaleConst(b, fold, [co])], `${layer.name}_dbias`) : sum);
        }
        // dW'[ky,kx,i,o] = sum over n,y,x of Xpad[n,i,y*s+ky,x*s+kx] * dZ[n,o,y,x]: one GEMM per tap.
        let xp = inputOf(layer);
        if (pads.some((p) => p !== 0)) xp = b.node('Pad', [xp, int64Const(b, `${layer.name}_pads`, [0, 0, pads[0]!, pads[1]!, 0, 0, pads[2]!, pads[3]!])], `${layer.name}_xpad`);
        const xt = b.node('Transpose', [xp], `${layer.name}_xt`, [attrInts('perm', [1, 0, 2, 3])]);
        const dzt = b.node('Reshape', [b.node('Transpose', [g], `${layer.name}_dz_nhwc`, [attrInts('perm', [0, 2, 3, 1])]), int64Const(b, 'shape', [-1, co])], `${layer.name}_dz_rows`);
        const toRows = int64Const(b, 'shape', [ci, -1]);
        const taps: string[] = [];
        const [hp, wp] = [inShape[0]! + pads[0]! + pads[2]!, inShape[1]! + pads[1]! + pads[3]!];
        for (let ky = 0; ky < kernel[0]; ky++) {
          for (let kx = 0; kx < kernel[1]; kx++) {
            const whole = kernel[0] === 1 && kernel[1] === 1 && strides[0] === 1 && strides[1] === 1 && hp === oh && wp === ow;
            const tap = whole
              ? xt
              : b.node('Slice', [
                  xt,
                  int64Const(b, 'starts', [ky, kx]),
                  int64Const(b, 'ends', [ky + strides[0] * (oh - 1) + 1, kx + strides[1] * (ow - 1) + 1]),
                  int64Const(b, 'axes', [2, 3]),
                  int64Const(b, 'steps', [strides[0], strides[1]]),
                ], `${layer.name}_tap`);
            taps.push(b.node('MatMul', [b.node('Reshape', [tap, toRows], `${layer.name}_tap_rows`), dzt], `${layer.name}_dw_tap`));
          }
        }
        const stacked = taps.length === 1 ? taps[0]! : b.node('Concat', taps, `${layer.name}_dw_taps`, [attrInt('axis', 0)]);
        let dw = b.node('Reshape', [stacked, int64Const(b, 'shape', [kernel[0], kernel[1], ci, co])], `${layer.name}_dw_hwio`);
        if (fold.bn) dw = b.node('Mul', [dw, scaleConst(b, fold, [co])], `${layer.name}_dkernel`);
        emitGrad(layer.name, 'kernel', dw);
        if (layer.inbound[0] !== segment.from) {
          usedParams.add(paramIndex.get(weightKey(layer.name, 'kernel'))!);
          // Rows/columns the forward's stride skipped at the end come back as output_padding.
          const outPad = [0, 1].map((a) => inShape[a]! - ((outShape[a]! - 1) * strides[a]! + kernel[a]! - pads[a]! - pads[a + 2]!));
          const dx = b.node('ConvTranspose', [g, foldedKernel(b, fold)], `${layer.name}_dx`, [
            attrInts('kernel_shape', kernel),
            attrInts('strides', strides),
            attrInts('pads', pads),
            attrInts('output_padding', outPad),
            attrInts('dilations', [1, 1]),
          ]);
          addGrad(layer.inbound[0]!, dx);
        }
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
        const scattered = b.node('ScatterElements', [zeros, b.node('Reshape', [poolIndices.get(layer.name)!, flat], `${layer.name}_idx_flat`), b.node('Reshape', [g, flat], `${layer.name}_dy_flat`)], `${layer.name}_scatter`, [attrInt('axis', 0), strAttr('reduction', 'add')]);
        addGrad(layer.inbound[0]!, b.node('Reshape', [scattered, shape], `${layer.name}_dx`));
        break;
      }
      case 'AveragePooling2D': {
        if (layer.inbound[0] === segment.from) break;
        const { kernel } = windowParams(layer);
        const [h, w] = inShapeOf(layer) as [number, number, number];
        // Stride 1, 'same': dX = sum over the windows covering x of dY / count(window).
        const ry = (kernel[0] - 1) / 2, rx = (kernel[1] - 1) / 2;
        const inv = new Float32Array(h * w);
        for (let y = 0; y < h; y++) {
          for (let x = 0; x < w; x++) {
            const cy = Math.min(h - 1, y + ry) - Math.max(0, y - ry) + 1, cx = Math.min(w - 1, x + rx) - Math.max(0, x - rx) + 1;
            inv[y * w + x] = 1 / (cy * cx);
          }
        }
        const scaled = b.node('Mul', [g, b.constant(`${layer.name}_invcount`, [1, 1, h, w], inv)], `${layer.name}_dy_scaled`);
        const avg = b.node('AveragePool', [scaled], `${layer.name}_dsumpool`, [attrInts('kernel_shape', kernel), attrInts('strides', [1, 1]), attrInts('pads', [ry, rx, ry, rx]), attrInt('count_include_pad', 1)]);
        addGrad(layer.inbound[0]!, b.node('Mul', [avg, scalar(b, `${layer.name}_area`, kernel[0] * kernel[1])], `${layer.name}_dx`));
        break;
      }
      case 'Concatenate': {
        const sizes = layer.inbound.map((n) => shapeOf(n)[2]!);
        const outs = layer.inbound.map((n) => b.unique(`${layer.name}_d_${n}`));
        b.nodes.push({ opType: 'Split', input: [g, int64Const(b, `${layer.name}_sizes`, sizes)], output: outs, name: outs[0]!, attribute: [attrInt('axis', 1)] });
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
