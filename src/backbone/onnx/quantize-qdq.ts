/**
 * Static int8 quantisation of a converted ONNX graph in QDQ form, as onnxruntime's quantize_static
 * writes it: QuantizeLinear -> DequantizeLinear pairs on activations (uint8, one scale a tensor,
 * calibrated) and DequantizeLinear on int8 weights (symmetric, one scale per output channel) and
 * int32 biases. onnxruntime's graph optimiser fuses DQ -> Conv -> (Relu) -> Q into QLinearConv
 * (int8 kernels, VNNI where the CPU has it), DQ -> Concat -> Q into QLinearConcat, and drops the
 * pairs around max pools; everything else keeps running in float on the dequantised values.
 *
 * Which tensors are quantised (calibrationTargets): every Conv input, every Relu output (a Conv's
 * output, so the Conv can leave in uint8), pools' inputs and outputs, and the inputs of a Concat
 * whose output is quantised. The graph's last Concat (the features) stays float.
 */
import onnxProto from 'onnx-proto';
import { GraftError } from '../../util/errors.js';
import { poolAfterPointwiseConv, readersOf } from './pool-after-conv.js';

const { onnx } = onnxProto;
const T = onnx.TensorProto.DataType;
type Model = onnxProto.onnx.ModelProto;
type Node = onnxProto.onnx.INodeProto;
type Tensor = onnxProto.onnx.ITensorProto;

/** A tensor's calibrated range: [min, max] of its values over the calibration images. */
export type Range = [number, number];
/** Calibrated ranges by ONNX tensor name. */
export type Ranges = Record<string, Range>;

export function decodeModel(bytes: Uint8Array): Model {
  return onnx.ModelProto.decode(bytes);
}

/** The float graph calibration measures and quantizeQdq quantises: `bytes` with its pool branches reordered (pool-after-conv.ts). */
export function int8Form(bytes: Uint8Array): Model {
  return poolAfterPointwiseConv(decodeModel(bytes));
}

const POOLS = new Set(['MaxPool', 'AveragePool']);

/** The activation tensors the QDQ graph quantises, in graph order. */
export function calibrationTargets(model: Model): string[] {
  const nodes = model.graph!.node!;
  const targets = new Set<string>();
  const readers = readersOf(nodes);
  /** The Relu that alone reads a pool's output (pool-after-conv.ts makes such pools). */
  const reluAfter = (pool: Node): Node | undefined => {
    const r = readers.get(pool.output![0]!);
    return r?.length === 1 && r[0]!.opType === 'Relu' ? r[0] : undefined;
  };
  for (const n of nodes) {
    if (n.opType === 'Conv') targets.add(n.input![0]!);
    if (n.opType === 'Relu') targets.add(n.output![0]!);
  }
  // Pools next to quantised tensors run on them too; Concats whose output is quantised take
  // quantised inputs (QLinearConcat). Repeated until nothing changes: pools may feed concats.
  for (let changed = true; changed; ) {
    changed = false;
    const add = (name: string): void => {
      if (!targets.has(name)) {
        targets.add(name);
        changed = true;
      }
    };
    for (const n of nodes) {
      const relu = POOLS.has(n.opType!) ? reluAfter(n) : undefined;
      if (relu) {
        // Pool -> Relu -> (quantised): only the pool's input is quantised; onnxruntime drops the
        // Relu into the output's QuantizeLinear (zero point 0 clips at 0) and fuses the pool to uint8.
        if (targets.has(relu.output![0]!)) add(n.input![0]!);
        continue;
      }
      if (POOLS.has(n.opType!) && (targets.has(n.input![0]!) || targets.has(n.output![0]!))) {
        add(n.input![0]!);
        add(n.output![0]!);
      }
      if (n.opType === 'Concat' && targets.has(n.output![0]!)) for (const i of n.input!) add(i);
    }
  }
  // Only tensors some node makes (not the graph's input or initializers).
  const made = new Set(nodes.flatMap((n) => n.output ?? []));
  const order = nodes.flatMap((n) => n.output ?? []);
  return order.filter((name) => made.has(name) && targets.has(name));
}

/**
 * `model` with `names` as extra graph outputs (float), so one run returns the activations that
 * calibration measures.
 */
export function withProbeOutputs(model: Model, names: string[]): Uint8Array {
  const probe = onnx.ModelProto.decode(onnx.ModelProto.encode(model).finish());
  for (const name of names) probe.graph!.output!.push(onnx.ValueInfoProto.create({ name, type: { tensorType: { elemType: T.FLOAT } } }));
  return onnx.ModelProto.encode(probe).finish();
}

/** The outputs withRangeOutputs adds for tensor `name`: its minimum and its maximum. */
export const rangeOutputNames = (name: string): [string, string] => [`${name}/graft_min`, `${name}/graft_max`];

/**
 * `model` with each of `names` reduced, in the graph, to its minimum and maximum over all its
 * values (scalar outputs, named by rangeOutputNames): what 'minmax' calibration needs, without
 * every activation copied out of onnxruntime and scanned in JS.
 */
export function withRangeOutputs(model: Model, names: string[]): Uint8Array {
  const probe = onnx.ModelProto.decode(onnx.ModelProto.encode(model).finish());
  const keepdims = { name: 'keepdims', type: onnx.AttributeProto.AttributeType.INT, i: 0 };
  for (const name of names) {
    rangeOutputNames(name).forEach((out, i) => {
      probe.graph!.node!.push(onnx.NodeProto.create({ opType: i === 0 ? 'ReduceMin' : 'ReduceMax', input: [name], output: [out], attribute: [keepdims] }));
      probe.graph!.output!.push(onnx.ValueInfoProto.create({ name: out, type: { tensorType: { elemType: T.FLOAT, shape: { dim: [] } } } }));
    });
  }
  return onnx.ModelProto.encode(probe).finish();
}

/** uint8 scale and zero point covering [min, max] (widened to hold 0, as ONNX requires). */
export function uint8Params([min, max]: Range): { scale: number; zeroPoint: number } {
  const lo = Math.min(0, min);
  const hi = Math.max(0, max);
  const scale = hi > lo ? (hi - lo) / 255 : 1;
  const zeroPoint = Math.min(255, Math.max(0, Math.round(-lo / scale)));
  return { scale, zeroPoint };
}

/** Symmetric int8 per-output-channel quantisation of an [out, ...] weight: values and one scale per channel. */
export function quantizePerChannel(w: Float32Array, channels: number): { q: Int8Array; scales: Float32Array } {
  const per = w.length / channels;
  const q = new Int8Array(w.length);
  const scales = new Float32Array(channels);
  for (let c = 0; c < channels; c++) {
    let m = 0;
    for (let j = c * per; j < (c + 1) * per; j++) m = Math.max(m, Math.abs(w[j]!));
    const s = m > 0 ? m / 127 : 1;
    scales[c] = s;
    for (let j = c * per; j < (c + 1) * per; j++) q[j] = Math.max(-127, Math.min(127, Math.round(w[j]! / s)));
  }
  return { q, scales };
}

function floatData(t: Tensor): Float32Array {
  if (t.dataType !== T.FLOAT) throw new GraftError(`int8 quantisation: initializer ${t.name} is not float32`);
  if (t.rawData && t.rawData.length > 0) {
    const raw = t.rawData;
    return new Float32Array(raw.buffer.slice(raw.byteOffset, raw.byteOffset + raw.byteLength));
  }
  return Float32Array.from(t.floatData ?? []);
}

function raw(a: Float32Array | Int8Array | Uint8Array | Int32Array): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength).slice();
}

export interface QdqOptions {
  /** Metadata entries to add (or replace) in the quantised model. */
  metadata?: Record<string, string>;
}

/**
 * The QDQ int8 form of `modelBytes` (a float graph from kerasToOnnx), quantising the activations
 * named in `ranges` and the weights of every Conv whose input is among them.
 */
export function quantizeQdq(modelBytes: Uint8Array, ranges: Ranges, opts: QdqOptions = {}): Uint8Array {
  const model = int8Form(modelBytes);
  const graph = model.graph!;
  const nodes = graph.node!;
  const inits = new Map(graph.initializer!.map((t) => [t.name!, t]));
  const added: Tensor[] = [];
  const taken = new Set([...nodes.flatMap((n) => [...(n.output ?? []), n.name ?? '']), ...inits.keys(), ...graph.input!.map((i) => i.name!)]);
  const fresh = (base: string): string => {
    let name = base;
    for (let i = 1; taken.has(name); i++) name = `${base}_${i}`;
    taken.add(name);
    return name;
  };
  const scalarParams = new Map<string, { scale: string; zeroPoint: string; value: number }>();
  const activationParams = (tensor: string): { scale: string; zeroPoint: string; value: number } => {
    let p = scalarParams.get(tensor);
    if (!p) {
      // A max pool's output shares its input's parameters: the max of quantised values is exact,
      // and onnxruntime then runs the pool on uint8 (it drops the Q/DQ pair only when they match).
      const pool = nodes.find((n) => n.opType === 'MaxPool' && n.output![0] === tensor && ranges[n.input![0]!]);
      if (pool) p = activationParams(pool.input![0]!);
      else {
        const range = ranges[tensor];
        if (!range) throw new GraftError(`int8 quantisation: no calibrated range for ${tensor}`);
        const { scale, zeroPoint } = uint8Params(range);
        const scaleName = fresh(`${tensor}_scale`);
        const zpName = fresh(`${tensor}_zero_point`);
        added.push({ name: scaleName, dims: [], dataType: T.FLOAT, rawData: raw(new Float32Array([scale])) });
        added.push({ name: zpName, dims: [], dataType: T.UINT8, rawData: raw(new Uint8Array([zeroPoint])) });
        p = { scale: scaleName, zeroPoint: zpName, value: Math.fround(scale) };
      }
      scalarParams.set(tensor, p);
    }
    return p;
  };

  const out: Node[] = [];
  const dequantised = new Map<string, string>(); // tensor -> its DQ output
  const produced = new Set(nodes.flatMap((n) => n.output ?? []));
  const unknown = Object.keys(ranges).filter((name) => !produced.has(name) && !graph.input!.some((i) => i.name === name));
  if (unknown.length > 0) throw new GraftError(`int8 quantisation: the calibration names tensors this graph does not have (${unknown.slice(0, 3).join(', ')}${unknown.length > 3 ? ', ...' : ''})`);
  const quantiseAfter = (tensor: string): void => {
    const p = activationParams(tensor);
    const q = fresh(`${tensor}_quantized`);
    const dq = fresh(`${tensor}_dequantized`);
    out.push({ opType: 'QuantizeLinear', input: [tensor, p.scale, p.zeroPoint], output: [q], name: q });
    out.push({ opType: 'DequantizeLinear', input: [q, p.scale, p.zeroPoint], output: [dq], name: dq });
    dequantised.set(tensor, dq);
  };
  // The graph input itself may be quantised (a Conv right on it).
  for (const input of graph.input!) if (ranges[input.name!] && !produced.has(input.name!)) quantiseAfter(input.name!);

  for (const node of nodes) {
    const inputs = node.input!.map((i) => dequantised.get(i) ?? i);
    if (node.opType === 'Conv' && dequantised.has(node.input![0]!)) {
      const xScale = activationParams(node.input![0]!).value;
      const w = inits.get(node.input![1]!);
      if (!w) throw new GraftError(`int8 quantisation: Conv ${node.name}'s weights are not an initializer`);
      const co = Number(w.dims![0]);
      const { q, scales } = quantizePerChannel(floatData(w), co);
      const wq = fresh(`${w.name}_quantized`);
      const ws = fresh(`${w.name}_scale`);
      const wz = fresh(`${w.name}_zero_point`);
      added.push({ name: wq, dims: w.dims, dataType: T.INT8, rawData: raw(q) });
      added.push({ name: ws, dims: [co], dataType: T.FLOAT, rawData: raw(scales) });
      added.push({ name: wz, dims: [co], dataType: T.INT8, rawData: raw(new Int8Array(co)) });
      const wdq = fresh(`${w.name}_dequantized`);
      out.push({ opType: 'DequantizeLinear', input: [wq, ws, wz], output: [wdq], name: wdq, attribute: [{ name: 'axis', type: onnx.AttributeProto.AttributeType.INT, i: 0 }] });
      inputs[1] = wdq;
      inits.delete(w.name!);
      const bName = node.input![2];
      const b = bName ? inits.get(bName) : undefined;
      if (b) {
        // Bias in int32 at scale x_scale * w_scale[c], as QLinearConv adds it to the int32 accumulator.
        const bias = floatData(b);
        const bScales = new Float32Array(co);
        const bq = new Int32Array(co);
        for (let c = 0; c < co; c++) {
          bScales[c] = xScale * scales[c]!;
          bq[c] = Math.round(bias[c]! / bScales[c]!);
        }
        const bqName = fresh(`${b.name}_quantized`);
        const bsName = fresh(`${b.name}_scale`);
        const bzName = fresh(`${b.name}_zero_point`);
        added.push({ name: bqName, dims: [co], dataType: T.INT32, rawData: raw(bq) });
        added.push({ name: bsName, dims: [co], dataType: T.FLOAT, rawData: raw(bScales) });
        added.push({ name: bzName, dims: [co], dataType: T.INT32, rawData: raw(new Int32Array(co)) });
        const bdq = fresh(`${b.name}_dequantized`);
        out.push({ opType: 'DequantizeLinear', input: [bqName, bsName, bzName], output: [bdq], name: bdq, attribute: [{ name: 'axis', type: onnx.AttributeProto.AttributeType.INT, i: 0 }] });
        inputs[2] = bdq;
        inits.delete(b.name!);
      }
    }
    out.push({ ...node, input: inputs });
    for (const o of node.output ?? []) if (ranges[o]) quantiseAfter(o);
  }

  graph.node = out.map((n) => onnx.NodeProto.create(n));
  graph.initializer = [...inits.values(), ...added].map((t) => onnx.TensorProto.create(t));
  if (opts.metadata) {
    const props = (model.metadataProps ?? []).filter((p) => !(p.key! in opts.metadata!));
    model.metadataProps = [...props, ...Object.entries(opts.metadata).map(([key, value]) => onnx.StringStringEntryProto.create({ key, value }))];
  }
  return onnx.ModelProto.encode(model).finish();
}
