/**
 * Keras functional graph + weights -> a serialized ONNX model, so that onnxruntime can run the
 * frozen backbone (and the whole trained classifier for export). The model takes and returns
 * NHWC tensors like Keras; inside, convolutions run NCHW (ONNX's layout) and tensors are
 * transposed back to NHWC before Flatten so that flattened features keep Keras's order.
 * BatchNormalization after a Conv2D is folded into the conv's weights.
 */
import onnxProto from 'onnx-proto';
import { GraftError } from '../../util/errors.js';
import type { KerasGraph, KerasLayer, WeightMap, WeightTensor } from '../keras-graph.js';
import { weightKey } from '../keras-graph.js';
import { inferShapes, windowParams, type GraphShapes } from '../layer-shapes.js';
import { GRAFT_VERSION } from '../../version.js';

const { onnx } = onnxProto;
const Attr = onnx.AttributeProto.AttributeType;
const FLOAT = onnx.TensorProto.DataType.FLOAT;

export interface KerasToOnnxOptions {
  /** Name of the graph input (default "input"). */
  inputName?: string;
  /** Name of the graph output (default "output"). */
  outputName?: string;
  /** ONNX opset (default 13). */
  opset?: number;
  /**
   * Fix the input's height and width in the graph ([h, w]); pads are then explicit. Without it
   * H and W are dynamic and 'same' windows use auto_pad SAME_UPPER (the same as TF's padding).
   */
  inputSize?: [number, number];
  /** Key/value strings stored in the model's metadata_props. */
  metadata?: Record<string, string>;
}

/** A converted tensor: its ONNX name and rank (4: NCHW image, 2: [N, features]). */
interface Value {
  name: string;
  rank: number;
}

export function attrInts(name: string, ints: number[]): onnxProto.onnx.IAttributeProto {
  return { name, type: Attr.INTS, ints };
}
export function attrInt(name: string, i: number): onnxProto.onnx.IAttributeProto {
  return { name, type: Attr.INT, i };
}
function attrString(name: string, s: string): onnxProto.onnx.IAttributeProto {
  return { name, type: Attr.STRING, s: new TextEncoder().encode(s) };
}

/** Builds the ONNX graph node by node. */
export class OnnxBuilder {
  readonly nodes: onnxProto.onnx.INodeProto[] = [];
  readonly initializers: onnxProto.onnx.ITensorProto[] = [];
  private used = new Set<string>();

  unique(base: string): string {
    let name = base;
    for (let i = 1; this.used.has(name); i++) name = `${base}_${i}`;
    this.used.add(name);
    return name;
  }

  constant(base: string, dims: number[], data: Float32Array): string {
    const name = this.unique(base);
    const raw = new Uint8Array(data.buffer, data.byteOffset, data.byteLength).slice();
    this.initializers.push({ name, dims, dataType: FLOAT, rawData: raw });
    return name;
  }

  node(opType: string, inputs: string[], outBase: string, attribute: onnxProto.onnx.IAttributeProto[] = []): string {
    const out = this.unique(outBase);
    this.nodes.push({ opType, input: inputs, output: [out], name: out, attribute });
    return out;
  }
}

function getWeight(weights: WeightMap, layer: KerasLayer, name: string): WeightTensor {
  const w = weights.get(weightKey(layer.name, name));
  if (!w) throw new GraftError(`layer ${layer.name} (${layer.className}) needs weight ${weightKey(layer.name, name)}, which is missing`);
  return w;
}

/** Per-channel scale a and shift b with BN(x) = a*x + b (inference mode). */
function bnAffine(layer: KerasLayer, weights: WeightMap): { a: Float32Array; b: Float32Array } {
  const c = layer.config;
  const mean = getWeight(weights, layer, 'moving_mean').data;
  const variance = getWeight(weights, layer, 'moving_variance').data;
  const gamma = c.scale !== false ? getWeight(weights, layer, 'gamma').data : null;
  const beta = c.center !== false ? getWeight(weights, layer, 'beta').data : null;
  const eps = typeof c.epsilon === 'number' ? c.epsilon : 1e-3;
  const n = mean.length;
  const a = new Float32Array(n);
  const b = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const s = (gamma ? gamma[i]! : 1) / Math.sqrt(variance[i]! + eps);
    a[i] = s;
    b[i] = (beta ? beta[i]! : 0) - mean[i]! * s;
  }
  return { a, b };
}

/** Keras HWIO kernel -> ONNX OIHW. */
function hwioToOihw(w: WeightTensor): Float32Array {
  const [kh, kw, ci, co] = w.shape as [number, number, number, number];
  const out = new Float32Array(w.data.length);
  const src = w.data;
  for (let y = 0; y < kh; y++)
    for (let x = 0; x < kw; x++)
      for (let i = 0; i < ci; i++) {
        const base = ((y * kw + x) * ci + i) * co;
        for (let o = 0; o < co; o++) out[((o * ci + i) * kh + y) * kw + x] = src[base + o]!;
      }
  return out;
}

/** TF 'same' pads [top, left, bottom, right] for a known input size. */
export function samePads(inH: number, inW: number, kernel: [number, number], strides: [number, number]): number[] {
  const total = (size: number, k: number, s: number): number => Math.max((Math.ceil(size / s) - 1) * s + k - size, 0);
  const th = total(inH, kernel[0], strides[0]);
  const tw = total(inW, kernel[1], strides[1]);
  return [Math.floor(th / 2), Math.floor(tw / 2), th - Math.floor(th / 2), tw - Math.floor(tw / 2)];
}

export function windowAttrs(layer: KerasLayer, inShape: number[] | undefined, withKernelShape: boolean): onnxProto.onnx.IAttributeProto[] {
  const { kernel, strides, padding } = windowParams(layer);
  const attrs = [attrInts('strides', strides)];
  if (withKernelShape) attrs.push(attrInts('kernel_shape', kernel));
  if (padding === 'same') {
    if (inShape) attrs.push(attrInts('pads', samePads(inShape[0]!, inShape[1]!, kernel, strides)));
    else attrs.push(attrString('auto_pad', 'SAME_UPPER'));
  }
  return attrs;
}

function applyActivation(b: OnnxBuilder, v: Value, activation: unknown, layer: KerasLayer): Value {
  const act = activation === undefined || activation === null ? 'linear' : String(activation);
  const base = layer.name;
  switch (act) {
    case 'linear':
      return v;
    case 'relu':
      return { name: b.node('Relu', [v.name], `${base}_relu`), rank: v.rank };
    case 'sigmoid':
      return { name: b.node('Sigmoid', [v.name], `${base}_sigmoid`), rank: v.rank };
    case 'tanh':
      return { name: b.node('Tanh', [v.name], `${base}_tanh`), rank: v.rank };
    case 'softmax':
      // Keras softmax is over the last (channel) axis, which is axis 1 in NCHW.
      return { name: b.node('Softmax', [v.name], `${base}_softmax`, [attrInt('axis', v.rank === 4 ? 1 : -1)]), rank: v.rank };
    default:
      throw new GraftError(`layer ${layer.name}: activation "${act}" is not supported by the ONNX converter`);
  }
}

/** Keras channel axis -> ONNX axis for a tensor of the given rank. */
function onnxAxis(kerasAxis: number, rank: number, layer: KerasLayer): number {
  const ax = kerasAxis < 0 ? rank + kerasAxis : kerasAxis;
  if (ax === rank - 1) return rank === 4 ? 1 : ax;
  if (rank === 4 && (ax === 1 || ax === 2)) return ax + 1; // H, W -> 2, 3 in NCHW
  throw new GraftError(`layer ${layer.name}: concatenation axis ${kerasAxis} is not supported`);
}

/** Serialized ONNX ModelProto computing `graph` with `weights` (NHWC float32 in and out). */
export function kerasToOnnx(graph: KerasGraph, weights: WeightMap, opts: KerasToOnnxOptions = {}): Uint8Array {
  const inputName = opts.inputName ?? 'input';
  const outputName = opts.outputName ?? 'output';
  const opset = opts.opset ?? 13;
  if (graph.inputs.length !== 1 || graph.outputs.length !== 1) {
    throw new GraftError(`model ${graph.name}: the ONNX converter supports one input and one output (found ${graph.inputs.length} and ${graph.outputs.length})`);
  }
  const inputLayer = graph.layers.find((l) => l.name === graph.inputs[0]);
  const batchShape = (inputLayer?.config.batch_input_shape ?? inputLayer?.config.batch_shape) as (number | null)[] | undefined;
  const channels = Number(batchShape?.[3] ?? 3);
  const shapes: GraphShapes | null = opts.inputSize ? inferShapes(graph, [opts.inputSize[0], opts.inputSize[1], channels]) : null;

  const consumers = new Map<string, number>();
  for (const l of graph.layers) for (const i of l.inbound) consumers.set(i, (consumers.get(i) ?? 0) + 1);

  const b = new OnnxBuilder();
  b.unique(inputName);
  b.unique(outputName);
  const values = new Map<string, Value>();
  /** BN layers folded into their conv: their output is the conv's output. */
  const folded = new Set<string>();

  for (const layer of graph.layers) {
    const c = layer.config;
    const ins = layer.inbound.map((n) => {
      const v = values.get(n);
      if (!v) throw new GraftError(`layer ${layer.name} reads ${n}, which is not defined before it`);
      return v;
    });
    const x = ins[0]!;
    const inShape = shapes?.inputs.get(layer.name)?.[0];
    let out: Value;
    switch (layer.className) {
      case 'InputLayer':
        out = { name: b.node('Transpose', [inputName], `${layer.name}_nchw`, [attrInts('perm', [0, 3, 1, 2])]), rank: 4 };
        break;
      case 'Conv2D': {
        if (c.data_format === 'channels_first') throw new GraftError(`layer ${layer.name}: channels_first convolutions are not supported`);
        const dil = c.dilation_rate;
        if (Array.isArray(dil) ? dil.some((d) => Number(d) !== 1) : dil !== undefined && Number(dil) !== 1) {
          throw new GraftError(`layer ${layer.name}: dilated convolutions are not supported`);
        }
        const kernel = getWeight(weights, layer, 'kernel');
        const [kh, kw, ci, co] = kernel.shape as [number, number, number, number];
        const w = hwioToOihw(kernel);
        const bias = new Float32Array(co);
        if (c.use_bias !== false) bias.set(getWeight(weights, layer, 'bias').data);
        // Fold a following BatchNormalization when this conv feeds only it and the conv is linear.
        const next = graph.layers.find((l) => l.inbound.length === 1 && l.inbound[0] === layer.name);
        const linear = c.activation === undefined || c.activation === 'linear';
        let bn: KerasLayer | undefined;
        if (next && next.className === 'BatchNormalization' && consumers.get(layer.name) === 1 && linear && !graph.outputs.includes(layer.name)) {
          bn = next;
          const { a, b: shift } = bnAffine(bn, weights);
          const per = ci * kh * kw;
          for (let o = 0; o < co; o++) {
            const s = a[o]!;
            for (let j = o * per; j < (o + 1) * per; j++) w[j]! *= s;
            bias[o] = bias[o]! * s + shift[o]!;
          }
        }
        const wName = b.constant(`${layer.name}_W`, [co, ci, kh, kw], w);
        const bName = b.constant(`${layer.name}_B`, [co], bias);
        const conv = b.node('Conv', [x.name, wName, bName], bn ? `${layer.name}_${bn.name}` : layer.name, [
          attrInts('dilations', [1, 1]),
          ...windowAttrs(layer, inShape, true),
        ]);
        out = applyActivation(b, { name: conv, rank: 4 }, c.activation, layer);
        if (bn) {
          folded.add(bn.name);
          values.set(bn.name, out);
        }
        break;
      }
      case 'BatchNormalization': {
        if (folded.has(layer.name)) continue;
        const axis = Number(Array.isArray(c.axis) ? c.axis[0] : c.axis ?? -1);
        if (axis !== -1 && axis !== x.rank - 1) {
          throw new GraftError(`layer ${layer.name}: BatchNormalization over axis ${axis} is not supported (only the channel axis)`);
        }
        const { a, b: shift } = bnAffine(layer, weights);
        const dims = x.rank === 4 ? [a.length, 1, 1] : [a.length];
        const mul = b.node('Mul', [x.name, b.constant(`${layer.name}_scale`, dims, a)], `${layer.name}_mul`);
        out = { name: b.node('Add', [mul, b.constant(`${layer.name}_shift`, dims, shift)], layer.name), rank: x.rank };
        break;
      }
      case 'Activation':
        out = applyActivation(b, x, c.activation, layer);
        break;
      case 'ReLU': {
        if (Number(c.negative_slope ?? 0) !== 0 || Number(c.threshold ?? 0) !== 0) {
          throw new GraftError(`layer ${layer.name}: ReLU with negative_slope/threshold is not supported by the ONNX converter`);
        }
        if (c.max_value !== undefined && c.max_value !== null) {
          const maxName = b.constant(`${layer.name}_max`, [], new Float32Array([Number(c.max_value)]));
          const zero = b.constant(`${layer.name}_min`, [], new Float32Array([0]));
          out = { name: b.node('Clip', [x.name, zero, maxName], layer.name), rank: x.rank };
        } else out = { name: b.node('Relu', [x.name], layer.name), rank: x.rank };
        break;
      }
      case 'MaxPooling2D':
        out = { name: b.node('MaxPool', [x.name], layer.name, windowAttrs(layer, inShape, true)), rank: 4 };
        break;
      case 'AveragePooling2D':
        // TF's 'same' average pooling divides by the number of real (unpadded) inputs.
        out = {
          name: b.node('AveragePool', [x.name], layer.name, [...windowAttrs(layer, inShape, true), attrInt('count_include_pad', 0)]),
          rank: 4,
        };
        break;
      case 'Concatenate': {
        const axis = onnxAxis(Number(c.axis ?? -1), x.rank, layer);
        out = { name: b.node('Concat', ins.map((v) => v.name), layer.name, [attrInt('axis', axis)]), rank: x.rank };
        break;
      }
      case 'Add': {
        let acc = x.name;
        for (let i = 1; i < ins.length; i++) acc = b.node('Add', [acc, ins[i]!.name], layer.name);
        out = { name: acc, rank: x.rank };
        break;
      }
      case 'Flatten': {
        // Keras flattens NHWC: transpose back before flattening.
        const src = x.rank === 4 ? b.node('Transpose', [x.name], `${layer.name}_nhwc`, [attrInts('perm', [0, 2, 3, 1])]) : x.name;
        out = { name: b.node('Flatten', [src], layer.name, [attrInt('axis', 1)]), rank: 2 };
        break;
      }
      case 'GlobalAveragePooling2D':
      case 'GlobalMaxPooling2D': {
        const op = layer.className === 'GlobalAveragePooling2D' ? 'GlobalAveragePool' : 'GlobalMaxPool';
        const pooled = b.node(op, [x.name], `${layer.name}_pool`);
        out = { name: b.node('Flatten', [pooled], layer.name, [attrInt('axis', 1)]), rank: 2 };
        break;
      }
      case 'Dense': {
        if (x.rank !== 2) throw new GraftError(`layer ${layer.name}: Dense on a ${x.rank}-D tensor is not supported (add a Flatten or pooling first)`);
        const kernel = getWeight(weights, layer, 'kernel');
        const [nIn, nOut] = kernel.shape as [number, number];
        const inputs = [x.name, b.constant(`${layer.name}_W`, [nIn, nOut], kernel.data)];
        if (c.use_bias !== false) inputs.push(b.constant(`${layer.name}_B`, [nOut], getWeight(weights, layer, 'bias').data));
        const gemm = b.node('Gemm', inputs, `${layer.name}_gemm`);
        out = applyActivation(b, { name: gemm, rank: 2 }, c.activation, layer);
        break;
      }
      case 'Dropout':
      case 'SpatialDropout2D':
      case 'GaussianNoise':
      case 'GaussianDropout':
        out = x; // identity at inference
        break;
      default:
        throw new GraftError(`layer ${layer.name}: Keras layer type ${layer.className} is not supported by the ONNX converter`);
    }
    values.set(layer.name, out);
  }

  const last = values.get(graph.outputs[0]!);
  if (!last) throw new GraftError(`model ${graph.name}: output layer ${graph.outputs[0]} not found`);
  if (last.rank === 4) b.nodes.push({ opType: 'Transpose', input: [last.name], output: [outputName], name: outputName, attribute: [attrInts('perm', [0, 2, 3, 1])] });
  else b.nodes.push({ opType: 'Identity', input: [last.name], output: [outputName], name: outputName });

  const dim = (d: number | string): onnxProto.onnx.TensorShapeProto.IDimension => (typeof d === 'number' ? { dimValue: d } : { dimParam: d });
  const inDims = [dim('N'), dim(opts.inputSize?.[0] ?? 'H'), dim(opts.inputSize?.[1] ?? 'W'), dim(channels)];
  let outDims: onnxProto.onnx.TensorShapeProto.IDimension[];
  if (shapes) outDims = [dim('N'), ...shapes.output.get(graph.outputs[0]!)!.map(dim)];
  else outDims = last.rank === 4 ? [dim('N'), dim('OH'), dim('OW'), dim('OC')] : [dim('N'), dim('F')];

  const model = onnx.ModelProto.create({
    // The oldest IR version that knows the opset, for the widest range of readers.
    irVersion: opset >= 21 ? 10 : opset >= 19 ? 9 : opset >= 15 ? 8 : 7,
    producerName: 'graft',
    producerVersion: GRAFT_VERSION,
    metadataProps: Object.entries(opts.metadata ?? {}).map(([key, value]) => ({ key, value })),
    opsetImport: [{ domain: '', version: opset }],
    graph: {
      name: graph.name,
      node: b.nodes,
      initializer: b.initializers,
      input: [{ name: inputName, type: { tensorType: { elemType: FLOAT, shape: { dim: inDims } } } }],
      output: [{ name: outputName, type: { tensorType: { elemType: FLOAT, shape: { dim: outDims } } } }],
    },
  });
  return onnx.ModelProto.encode(model).finish();
}
