/**
 * The int8 backbone's QDQ graph on a tiny network: it loads in onnxruntime, its int8 kernels are
 * fused (QLinearConv in the optimised graph), its output stays close to fp32, and its weight and
 * bias scales are the per-channel ones asked for.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import onnxProto from 'onnx-proto';
import * as ort from 'onnxruntime-node';
import { kerasToOnnx } from '../src/backbone/onnx/convert.js';
import { calibrateRanges, type CalibrationSource } from '../src/backbone/calibrate.js';
import { createOrtExtractor } from '../src/backbone/engine.js';
import { calibrationTargets, decodeModel, int8Form, quantizePerChannel, quantizeQdq, uint8Params, withProbeOutputs } from '../src/backbone/onnx/quantize-qdq.js';
import { loadTfjsLayersModel } from '../src/backbone/weights/tfjs-layers.js';
import { Random } from '../src/util/random.js';
import { tinyLayers, tinyWeights, writeTinyModel } from './support/tiny-model.js';

const { onnx } = onnxProto;
const dir = writeTinyModel(tinyLayers(), tinyWeights(tinyLayers()));
test.after(() => rmSync(dir, { recursive: true, force: true }));
const { graph, weights } = await loadTfjsLayersModel(dir);
const fp32 = kerasToOnnx(graph, weights, { inputSize: [9, 9] });
const SHAPE: [number, number, number] = [9, 9, 3];
const per = 9 * 9 * 3;

function images(n: number, seed: number): Float32Array {
  const rnd = new Random(seed);
  return Float32Array.from({ length: n * per }, () => rnd.uniform(0, 1));
}
const calib = images(64, 1);
const source: CalibrationSource = { count: 64, read: async (s, n, into) => into.set(calib.subarray(s * per, (s + n) * per)) };

function floats(t: onnxProto.onnx.ITensorProto): Float32Array {
  const r = t.rawData!;
  return new Float32Array(r.buffer.slice(r.byteOffset, r.byteOffset + r.byteLength));
}

test("minmax calibration's in-graph reductions give each tensor's exact range over the images", async () => {
  const ranges = await calibrateRanges(fp32, SHAPE, source, { threads: 1, batchSize: 24 });
  // The reference: every target exposed as an output, scanned here over the same 64 images.
  const model = int8Form(fp32);
  const targets = calibrationTargets(model);
  const s = await ort.InferenceSession.create(withProbeOutputs(model, targets), { intraOpNumThreads: 1 });
  const expected: Record<string, [number, number]> = Object.fromEntries(targets.map((t) => [t, [Infinity, -Infinity]]));
  for (let at = 0; at < 64; at += 10) {
    const n = Math.min(10, 64 - at);
    const out = await s.run({ [s.inputNames[0]!]: new ort.Tensor('float32', calib.slice(at * per, (at + n) * per), [n, ...SHAPE]) }, targets);
    for (const t of targets) for (const v of out[t]!.data as Float32Array) expected[t] = [Math.min(expected[t]![0], v), Math.max(expected[t]![1], v)];
  }
  await s.release();
  assert.ok(targets.length >= 4);
  assert.deepEqual(ranges, expected);
  // The images past the first batch count: a range over 24 images alone differs.
  const first = await calibrateRanges(fp32, SHAPE, { count: 24, read: source.read }, { threads: 1 });
  assert.notDeepEqual(first, expected);
});

test('the QDQ graph loads, onnxruntime fuses its Convs into QLinearConv, and its output stays close to fp32', async () => {
  const ranges = await calibrateRanges(fp32, SHAPE, source, { threads: 1 });
  assert.deepEqual(Object.keys(ranges), calibrationTargets(int8Form(fp32)));
  const int8 = quantizeQdq(fp32, ranges);

  const out = mkdtempSync(join(tmpdir(), 'graft-int8-'));
  try {
    const file = join(out, 'optimized.onnx');
    const s = await ort.InferenceSession.create(int8, { graphOptimizationLevel: 'all', optimizedModelFilePath: file, intraOpNumThreads: 1, logSeverityLevel: 3 });
    await s.release();
    const ops = onnx.ModelProto.decode(readFileSync(file)).graph!.node!.map((n) => n.opType);
    assert.equal(ops.filter((o) => o === 'QLinearConv').length, 2, `both Convs run as QLinearConv (optimised graph: ${ops.join(' ')})`);
    assert.ok(!ops.includes('Conv') && !ops.includes('FusedConv'), 'no float Conv is left');
  } finally {
    rmSync(out, { recursive: true, force: true });
  }

  const a = await createOrtExtractor(fp32, SHAPE, [3], { threads: 1 });
  const b = await createOrtExtractor(int8, SHAPE, [3], { threads: 1 });
  const x = images(32, 2);
  const ya = await a.extract(x, 32);
  const yb = await b.extract(x, 32);
  await a.dispose();
  await b.dispose();
  let worst = 0, differs = false;
  for (let i = 0; i < ya.length; i++) {
    worst = Math.max(worst, Math.abs(ya[i]! - yb[i]!));
    if (ya[i] !== yb[i]) differs = true;
  }
  assert.ok(differs, 'the int8 graph computes in int8 (not bit-identical to fp32)');
  assert.ok(worst < 0.05, `softmax outputs within 0.05 of fp32 (worst ${worst})`);
});

test('weights are int8 with one symmetric scale per output channel, biases int32 at input scale x weight scale', async () => {
  const { q, scales } = quantizePerChannel(Float32Array.from([0.5, -1, 0.25, 0, 0, 0, 2, -0.5, 1]), 3);
  assert.deepEqual([...scales], [1 / 127, 1, 2 / 127].map(Math.fround));
  assert.deepEqual([...q], [64, -127, 32, 0, 0, 0, 127, -32, 64]);
  assert.deepEqual(uint8Params([0, 5.1]), { scale: 5.1 / 255, zeroPoint: 0 });
  assert.deepEqual(uint8Params([-1, 1]), { scale: 2 / 255, zeroPoint: 128 });

  const ranges = await calibrateRanges(fp32, SHAPE, source, { threads: 1 });
  const floatInits = new Map(decodeModel(fp32).graph!.initializer!.map((t) => [t.name!, t]));
  const qm = decodeModel(quantizeQdq(fp32, ranges));
  const inits = new Map(qm.graph!.initializer!.map((t) => [t.name!, t]));
  const producers = new Map(qm.graph!.node!.map((n) => [n.output![0]!, n]));
  const convs = qm.graph!.node!.filter((n) => n.opType === 'Conv');
  assert.equal(convs.length, 2);
  for (const conv of convs) {
    const [x, w, bias] = conv.input!.map((i) => producers.get(i)!);
    assert.deepEqual([x!.opType, w!.opType, bias!.opType], ['DequantizeLinear', 'DequantizeLinear', 'DequantizeLinear']);
    assert.equal(Number(w!.attribute!.find((a) => a.name === 'axis')!.i), 0, 'per output channel');
    const wq = inits.get(w!.input![0]!)!;
    assert.equal(wq.dataType, onnx.TensorProto.DataType.INT8);
    const floatW = floats(floatInits.get(w!.input![0]!.replace(/_quantized$/, ''))!);
    const co = Number(wq.dims![0]);
    const wScales = floats(inits.get(w!.input![1]!)!);
    assert.equal(wScales.length, co);
    const perOut = floatW.length / co;
    for (let c = 0; c < co; c++) {
      const m = Math.max(...floatW.subarray(c * perOut, (c + 1) * perOut).map(Math.abs));
      assert.equal(wScales[c], Math.fround(m / 127), `channel ${c}: max |w| / 127`);
    }
    assert.ok(new Int8Array(wq.rawData!.buffer, wq.rawData!.byteOffset, wq.rawData!.byteLength).every((v) => v >= -127 && v <= 127));
    assert.equal(inits.get(bias!.input![0]!)!.dataType, onnx.TensorProto.DataType.INT32);
    const xScale = floats(inits.get(x!.input![1]!)!)[0]!;
    const bScales = floats(inits.get(bias!.input![1]!)!);
    for (let c = 0; c < co; c++) assert.equal(bScales[c], Math.fround(xScale * wScales[c]!));
  }
  assert.throws(() => quantizeQdq(fp32, { ...ranges, no_such_tensor: [0, 1] }), /calibration names tensors this graph does not have \(no_such_tensor\)/);
});
