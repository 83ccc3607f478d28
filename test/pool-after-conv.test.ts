/**
 * The int8 graph's pool-branch rewrite (AveragePool -> 1x1 Conv becomes Conv -> AveragePool) on a
 * tiny inception-like block: the float graph computes the same, and onnxruntime then runs the
 * branch as QLinearConv -> QLinearAveragePool in uint8, the Relu folded away.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import onnxProto from 'onnx-proto';
import * as ort from 'onnxruntime-node';
import { calibrateRanges } from '../src/backbone/calibrate.js';
import { createOrtExtractor } from '../src/backbone/engine.js';
import { kerasToOnnx } from '../src/backbone/onnx/convert.js';
import { poolAfterPointwiseConv } from '../src/backbone/onnx/pool-after-conv.js';
import { decodeModel, quantizeQdq } from '../src/backbone/onnx/quantize-qdq.js';
import { loadTfjsLayersModel } from '../src/backbone/weights/tfjs-layers.js';
import { Random } from '../src/util/random.js';
import { tinyWeights, writeTinyModel, type TinyLayer } from './support/tiny-model.js';

const { onnx } = onnxProto;

function conv(name: string, inbound: string, cin: number, filters: number, k: number): TinyLayer {
  return {
    name,
    className: 'Conv2D',
    config: { name, filters, kernel_size: [k, k], strides: [1, 1], padding: 'same', use_bias: false, activation: 'linear', data_format: 'channels_last', dilation_rate: [1, 1] },
    inbound: [inbound],
    weights: [['kernel', [k, k, cin, filters]]],
  };
}
function bnRelu(n: number, inbound: string, ch: number): TinyLayer[] {
  return [
    { name: `batch_normalization_${n}`, className: 'BatchNormalization', config: { name: `batch_normalization_${n}`, axis: -1, epsilon: 0.001, center: true, scale: false }, inbound: [inbound], weights: [['beta', [ch]], ['moving_mean', [ch]], ['moving_variance', [ch]]] },
    { name: `activation_${n}`, className: 'Activation', config: { name: `activation_${n}`, activation: 'relu' }, inbound: [`batch_normalization_${n}`] },
  ];
}

/** Stem conv (8 channels), then a block: a 1x1 branch and a pool branch (3x3 'same' average pool, 1x1 conv to 3), concatenated. */
const layers: TinyLayer[] = [
  { name: 'input_1', className: 'InputLayer', config: { name: 'input_1', batch_input_shape: [null, 9, 9, 3], dtype: 'float32' }, inbound: [] },
  conv('conv2d_1', 'input_1', 3, 8, 3),
  ...bnRelu(1, 'conv2d_1', 8),
  conv('conv2d_2', 'activation_1', 8, 4, 1),
  ...bnRelu(2, 'conv2d_2', 4),
  { name: 'average_pooling2d_1', className: 'AveragePooling2D', config: { name: 'average_pooling2d_1', pool_size: [3, 3], strides: [1, 1], padding: 'same', data_format: 'channels_last' }, inbound: ['activation_1'] },
  conv('conv2d_3', 'average_pooling2d_1', 8, 3, 1),
  ...bnRelu(3, 'conv2d_3', 3),
  { name: 'mixed0', className: 'Concatenate', config: { name: 'mixed0', axis: -1 }, inbound: ['activation_2', 'activation_3'] },
];
const dir = writeTinyModel(layers, tinyWeights(layers, 7));
test.after(() => rmSync(dir, { recursive: true, force: true }));
const { graph, weights } = await loadTfjsLayersModel(dir);
const SHAPE: [number, number, number] = [9, 9, 3];
const OUT = [9, 9, 7];
const fp32 = kerasToOnnx(graph, weights, { inputSize: [9, 9] });
const per = 9 * 9 * 3;
const rnd = new Random(3);
const x = Float32Array.from({ length: 16 * per }, () => rnd.uniform(0, 1));

async function run(bytes: Uint8Array, input: Float32Array, n: number): Promise<Float32Array> {
  const ex = await createOrtExtractor(bytes, SHAPE, OUT, { threads: 1 });
  try {
    return await ex.extract(input, n);
  } finally {
    await ex.dispose();
  }
}

test('the pool branch is reordered to Conv -> AveragePool and computes the same in float', async () => {
  const before = decodeModel(fp32).graph!.node!.map((n) => n.opType);
  const rewritten = poolAfterPointwiseConv(decodeModel(fp32));
  const nodes = rewritten.graph!.node!;
  const pool = nodes.find((n) => n.opType === 'AveragePool')!;
  const producer = nodes.find((n) => n.output![0] === pool.input![0])!;
  assert.equal(producer.opType, 'Conv', 'the pool reads the 1x1 conv');
  assert.equal(nodes.find((n) => n.input!.includes(pool.output![0]!))!.opType, 'Relu', 'the relu reads the pool');
  assert.ok(nodes.indexOf(producer) < nodes.indexOf(pool));
  assert.deepEqual([...nodes.map((n) => n.opType)].sort(), [...before].sort(), 'the same nodes, reordered');

  const a = await run(fp32, x, 16);
  const b = await run(onnx.ModelProto.encode(rewritten).finish(), x, 16);
  let worst = 0, scale = 0;
  for (let i = 0; i < a.length; i++) {
    worst = Math.max(worst, Math.abs(a[i]! - b[i]!));
    scale = Math.max(scale, Math.abs(a[i]!));
  }
  assert.ok(scale > 0.1, 'the block computes something');
  assert.ok(worst <= 1e-5 * scale, `same output (worst difference ${worst}, scale ${scale})`);
});

test('int8: onnxruntime runs the pool branch as QLinearConv -> QLinearAveragePool on the conv\'s channels', async () => {
  const calib = Float32Array.from({ length: 64 * per }, () => rnd.uniform(0, 1));
  const ranges = await calibrateRanges(fp32, SHAPE, { count: 64, read: async (s, n, into) => into.set(calib.subarray(s * per, (s + n) * per)) }, { threads: 1 });
  const int8 = quantizeQdq(fp32, ranges);
  // Ranges from before the reorder (they name the pool's old output) are refused, not misapplied.
  const pooled = decodeModel(fp32).graph!.node!.find((n) => n.opType === 'AveragePool')!.output![0]!;
  assert.throws(() => quantizeQdq(fp32, { ...ranges, [pooled]: [0, 1] }), new RegExp(`graph does not have \\(${pooled}\\)`));
  const out = mkdtempSync(join(tmpdir(), 'graft-pool-'));
  try {
    const file = join(out, 'optimized.onnx');
    const s = await ort.InferenceSession.create(int8, { graphOptimizationLevel: 'all', optimizedModelFilePath: file, intraOpNumThreads: 1, logSeverityLevel: 3 });
    await s.release();
    const nodes = onnx.ModelProto.decode(readFileSync(file)).graph!.node!;
    const ops = nodes.map((n) => n.opType);
    const pool = nodes.find((n) => n.opType === 'QLinearAveragePool');
    assert.ok(pool, `the pool runs in uint8 (optimised graph: ${ops.join(' ')})`);
    assert.equal(nodes.find((n) => n.output!.includes(pool.input![0]!))?.opType, 'QLinearConv', 'it pools the conv\'s uint8 output');
    assert.ok(!ops.includes('AveragePool') && !ops.includes('Relu') && !ops.includes('Conv'), `nothing of the block runs in float (${ops.join(' ')})`);
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
  const a = await run(fp32, x, 16);
  const b = await run(int8, x, 16);
  let worst = 0, scale = 0;
  for (let i = 0; i < a.length; i++) {
    worst = Math.max(worst, Math.abs(a[i]! - b[i]!));
    scale = Math.max(scale, Math.abs(a[i]!));
  }
  assert.ok(worst < 0.05 * scale, `int8 within 5% of the float range (worst ${worst}, scale ${scale})`);
});
