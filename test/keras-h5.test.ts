import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import h5wasm from 'h5wasm/node';
import { loadKerasH5Weights } from '../src/backbone/weights/keras-h5.js';
import { inceptionV3Graph } from '../src/backbone/architectures/inception-v3.js';
import type { KerasGraph, KerasLayer, WeightTensor } from '../src/backbone/keras-graph.js';
import { GraftError } from '../src/util/errors.js';
import { sharedInceptionWeightsDir } from '../src/util/paths.js';

interface FixtureLayer {
  name: string;
  weights: { name: string; shape: number[]; data: Float32Array }[];
}

/** Writes `layers` the way Keras 2 save_weights does (optionally under model_weights, as model.save does). */
function writeKerasH5(file: string, layers: FixtureLayer[], opts: { underModelWeights?: boolean; layerNames?: boolean } = {}): void {
  const f = new h5wasm.File(file, 'w');
  const root = opts.underModelWeights ? f.create_group('model_weights') : f;
  const fixed = (names: string[]) => `S${Math.max(1, ...names.map((n) => n.length))}`;
  const names = layers.map((l) => l.name);
  if (opts.layerNames !== false) root.create_attribute('layer_names', names, [names.length], fixed(names));
  for (const layer of layers) {
    const group = root.create_group(layer.name);
    const weightNames = layer.weights.map((w) => `${layer.name}/${w.name}:0`);
    group.create_attribute('weight_names', weightNames, [weightNames.length], fixed(weightNames));
    for (const w of layer.weights) {
      let sub = group.get(layer.name) as InstanceType<typeof h5wasm.Group> | null;
      if (!sub) sub = group.create_group(layer.name);
      sub.create_dataset({ name: `${w.name}:0`, data: w.data, shape: w.shape, dtype: '<f' });
    }
  }
  f.close();
}

const seq = (n: number, start: number) => Float32Array.from({ length: n }, (_, i) => start + i * 0.25);

/** input 4x4x2 -> conv 3x3 valid, 3 filters, bias -> BN -> flatten -> dense 2. */
function tinyGraph(names = { conv: 'conv2d_1', bn: 'batch_normalization_1', dense: 'dense_1' }): KerasGraph {
  const layers: KerasLayer[] = [
    { name: 'input_1', className: 'InputLayer', config: { batch_input_shape: [null, 4, 4, 2] }, inbound: [] },
    { name: names.conv, className: 'Conv2D', config: { filters: 3, kernel_size: [3, 3], strides: [1, 1], padding: 'valid', use_bias: true }, inbound: ['input_1'] },
    { name: names.bn, className: 'BatchNormalization', config: { axis: 3, epsilon: 0.001, center: true, scale: true }, inbound: [names.conv] },
    { name: 'flatten_1', className: 'Flatten', config: {}, inbound: [names.bn] },
    { name: names.dense, className: 'Dense', config: { units: 2 }, inbound: ['flatten_1'] },
  ];
  return { name: 'tiny', layers, inputs: ['input_1'], outputs: [names.dense] };
}

function tinyFixture(names = { conv: 'conv2d_1', bn: 'batch_normalization_1', dense: 'dense_1' }, kernelShape = [3, 3, 2, 3]): FixtureLayer[] {
  const kSize = kernelShape.reduce((a, b) => a * b, 1);
  return [
    { name: 'input_1', weights: [] },
    { name: names.conv, weights: [{ name: 'kernel', shape: kernelShape, data: seq(kSize, -3) }, { name: 'bias', shape: [3], data: seq(3, 1) }] },
    {
      name: names.bn,
      weights: ['gamma', 'beta', 'moving_mean', 'moving_variance'].map((n, i) => ({ name: n, shape: [3], data: seq(3, 10 * i) })),
    },
    { name: 'flatten_1', weights: [] },
    { name: names.dense, weights: [{ name: 'kernel', shape: [12, 2], data: seq(24, 5) }, { name: 'bias', shape: [2], data: seq(2, -1) }] },
  ];
}

function expectedMap(fixture: FixtureLayer[], graphNames: string[]): Map<string, WeightTensor> {
  const m = new Map<string, WeightTensor>();
  fixture.filter((l) => l.weights.length > 0).forEach((l, i) => {
    for (const w of l.weights) m.set(`${graphNames[i]}/${w.name}`, { shape: w.shape, data: w.data });
  });
  return m;
}

let dir: string;
before(async () => {
  await h5wasm.ready;
  dir = mkdtempSync(join(tmpdir(), 'graft-h5-'));
});
after(() => rmSync(dir, { recursive: true, force: true }));

test('a Keras save_weights file loads exactly, by order and by name', async () => {
  const file = join(dir, 'tiny.h5');
  const fixture = tinyFixture();
  writeKerasH5(file, fixture);
  const graph = tinyGraph();
  const expected = expectedMap(fixture, ['conv2d_1', 'batch_normalization_1', 'dense_1']);
  assert.equal(expected.size, 8);
  assert.deepEqual(await loadKerasH5Weights(file, graph), expected);
  assert.deepEqual(await loadKerasH5Weights(file, graph, { match: 'name' }), expected);
});

test('by order, a file with other layer names (and under model_weights) maps onto the graph names', async () => {
  const file = join(dir, 'renamed.h5');
  const fileNames = { conv: 'conv2d_95', bn: 'batch_normalization_95', dense: 'dense_7' };
  const fixture = tinyFixture(fileNames);
  writeKerasH5(file, fixture, { underModelWeights: true });
  const graph = tinyGraph();
  assert.deepEqual(await loadKerasH5Weights(file, graph), expectedMap(fixture, ['conv2d_1', 'batch_normalization_1', 'dense_1']));
  await assert.rejects(loadKerasH5Weights(file, graph, { match: 'name' }), (err: unknown) => {
    assert.ok(err instanceof GraftError);
    assert.match(err.message, /renamed\.h5: has no weights for layer conv2d_1/);
    return true;
  });
});

/** The first `n` bytes-worth of weights of the shared TF.js model, read straight from model.json + shards. */
function readSharedTfjs(): { graph: KerasGraph; tensors: Map<string, WeightTensor>; order: string[] } {
  const folder = sharedInceptionWeightsDir('fp32');
  const model = JSON.parse(readFileSync(join(folder, 'model.json'), 'utf8'));
  const tensors = new Map<string, WeightTensor>();
  const order: string[] = [];
  for (const group of model.weightsManifest as { paths: string[]; weights: { name: string; shape: number[]; dtype: string }[] }[]) {
    const bytes = Buffer.concat(group.paths.map((p) => readFileSync(join(folder, p))));
    let offset = 0;
    for (const w of group.weights) {
      assert.equal(w.dtype, 'float32');
      const n = w.shape.reduce((a, b) => a * b, 1);
      const data = new Float32Array(n);
      Buffer.from(data.buffer).set(bytes.subarray(offset, offset + 4 * n));
      offset += 4 * n;
      tensors.set(w.name, { shape: w.shape, data });
      order.push(w.name);
    }
  }
  return { graph: inceptionV3Graph(), tensors, order };
}

/** The graph's layers up to `last` (the cut is a prefix of Keras's layer order). */
function cutAt(graph: KerasGraph, last: string): KerasGraph {
  const end = graph.layers.findIndex((l) => l.name === last);
  return { ...graph, layers: graph.layers.slice(0, end + 1), outputs: [last] };
}

test('real InceptionV3 weights through a Keras .h5 load bit-exactly into inceptionV3Graph cut at mixed7', async () => {
  const { graph, tensors, order } = readSharedTfjs();
  // Keras layer_names lists every layer, weights or not, in model order.
  const layers: FixtureLayer[] = graph.layers.slice(0, graph.layers.findIndex((l) => l.name === 'mixed7') + 1).map((l) => ({
    name: l.name,
    weights: order.filter((k) => k.startsWith(`${l.name}/`)).map((k) => ({ name: k.slice(l.name.length + 1), ...tensors.get(k)! })),
  }));
  const file = join(dir, 'inception_mixed7.h5');
  writeKerasH5(file, layers);
  const cut = cutAt(graph, 'mixed7');
  for (const match of ['order', 'name'] as const) {
    const loaded = await loadKerasH5Weights(file, cut, { match });
    assert.equal(loaded.size, 280);
    assert.deepEqual([...loaded.keys()].sort(), [...tensors.keys()].sort());
    for (const [key, t] of tensors) {
      const got = loaded.get(key)!;
      assert.deepEqual(got.shape, t.shape, key);
      assert.ok(Buffer.from(got.data.buffer, got.data.byteOffset, got.data.byteLength).equals(Buffer.from(t.data.buffer)), `${key} differs`);
    }
  }
  // The full notop graph needs 94 weighted layers; this file has only 70 of them.
  await assert.rejects(loadKerasH5Weights(file, graph), /inception_mixed7\.h5: too few layers: the file has 140 layers with weights, the model needs 188/);
});

test('bad inputs give one-line GraftErrors naming the file', async () => {
  const graph = tinyGraph();
  const check = async (file: string, pattern: RegExp) => {
    await assert.rejects(loadKerasH5Weights(file, graph), (err: unknown) => {
      assert.ok(err instanceof GraftError, `not a GraftError: ${err}`);
      assert.match(err.message, pattern);
      assert.ok(err.message.includes(file), err.message);
      assert.ok(!err.message.includes('\n'));
      return true;
    });
  };
  await check(join(dir, 'missing.h5'), /no such file/);
  await check(dir, /is a folder/);
  const text = join(dir, 'notes.h5');
  writeFileSync(text, 'these are not weights\n'.repeat(100));
  await check(text, /not an HDF5 file/);
  const plain = join(dir, 'plain.h5');
  writeKerasH5(plain, tinyFixture(), { layerNames: false });
  await check(plain, /without a layer_names attribute/);
  const wrongShape = join(dir, 'wrong-shape.h5');
  writeKerasH5(wrongShape, tinyFixture(undefined, [3, 3, 2, 4]));
  await check(wrongShape, /layer conv2d_1 weight kernel: expected shape \[3,3,2,3\], found \[3,3,2,4\]/);
  const short = join(dir, 'short.h5');
  writeKerasH5(short, tinyFixture().slice(0, 3));
  await check(short, /too few layers: the file has 2 layers with weights, the model needs 3/);
  const noBias = join(dir, 'no-bias.h5');
  const fixture = tinyFixture();
  fixture[1]!.weights.pop();
  writeKerasH5(noBias, fixture);
  await check(noBias, /layer conv2d_1 has 1 weights \(kernel\), the model expects 2 \(kernel, bias\)/);
});
