import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import h5wasm from 'h5wasm/node';
import { loadKerasH5Weights, readKerasH5Layers, readKerasH5Origin, readKerasH5Topology } from '../src/backbone/weights/keras-h5.js';
import { saveKerasH5Weights } from '../src/backbone/weights/keras-h5-writer.js';
import { inceptionV3Graph } from '../src/backbone/architectures/inception-v3.js';
import type { KerasGraph, KerasLayer, WeightMap, WeightTensor } from '../src/backbone/keras-graph.js';
import { GraftError } from '../src/util/errors.js';
import { cutAt, readSharedTfjsWeights, sameBits, writeInceptionNotopH5, writeKerasH5, writeSharedInceptionH5, type FixtureLayer } from './support/keras-h5-fixture.js';
import { runGraft } from './support/cli.js';

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
    for (const w of l.weights) m.set(`${graphNames[i]}/${w.name}`, { shape: w.shape, data: w.data as Float32Array });
  });
  return m;
}

let dir: string;
before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'graft-h5-'));
});
after(() => rmSync(dir, { recursive: true, force: true }));

test('a Keras save_weights file loads exactly, by order and by name', async () => {
  const file = join(dir, 'tiny.h5');
  const fixture = tinyFixture();
  await writeKerasH5(file, fixture);
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
  await writeKerasH5(file, fixture, { underModelWeights: true });
  const graph = tinyGraph();
  assert.deepEqual(await loadKerasH5Weights(file, graph), expectedMap(fixture, ['conv2d_1', 'batch_normalization_1', 'dense_1']));
  await assert.rejects(loadKerasH5Weights(file, graph, { match: 'name' }), (err: unknown) => {
    assert.ok(err instanceof GraftError);
    assert.match(err.message, /renamed\.h5: has no weights for layer conv2d_1/);
    return true;
  });
});

test('real InceptionV3 weights through a Keras .h5 load bit-exactly into inceptionV3Graph cut at mixed7', async () => {
  const graph = inceptionV3Graph();
  const file = join(dir, 'inception_mixed7.h5');
  const tensors = await writeSharedInceptionH5(file);
  const cut = cutAt(graph, 'mixed7');
  for (const match of ['order', 'name'] as const) {
    const loaded = await loadKerasH5Weights(file, cut, { match });
    assert.equal(loaded.size, 280);
    assert.deepEqual([...loaded.keys()].sort(), [...tensors.keys()].sort());
    for (const [key, t] of tensors) {
      const got = loaded.get(key)!;
      assert.deepEqual(got.shape, t.shape, key);
      assert.ok(sameBits(got.data, t.data), `${key} differs`);
    }
  }
  // The full notop graph needs 94 weighted layers; this file has only 70 of them.
  await assert.rejects(loadKerasH5Weights(file, graph), /inception_mixed7\.h5: too few layers: the file has 140 layers with weights, the model needs 188/);
});

test('name lists split into name0, name1... (as Keras splits long lists) are joined', async () => {
  const file = join(dir, 'chunked.h5');
  const fixture = tinyFixture();
  await writeKerasH5(file, fixture, { attributeLimit: 40 });
  const attrs = await attributeTypes(file);
  assert.deepEqual(Object.keys(attrs['/']!).filter((n) => n.startsWith('layer_names')), ['layer_names0', 'layer_names1', 'layer_names2', 'layer_names3', 'layer_names4']);
  assert.ok(attrs['/batch_normalization_1']!.weight_names3, 'the BN layer\'s weight names are chunked too');
  assert.deepEqual(await loadKerasH5Weights(file, tinyGraph()), expectedMap(fixture, ['conv2d_1', 'batch_normalization_1', 'dense_1']));
});

// Files written by h5py itself (test/fixtures/keras2-h5py/make.py: Keras 2's saving code on h5py 3.7).
const H5PY_FILES = fileURLToPath(new URL('./fixtures/keras2-h5py/', import.meta.url));
const H5PY_VARIANTS = [
  { file: 'tiny-h5py3.h5', opts: {} },
  { file: 'tiny-h5py2.h5', opts: { h5py: 'h5py2' } },
  { file: 'tiny-chunked.h5', opts: { attributeLimit: 40 } },
] as const;

/** Every attribute of every group: its HDF5 type class, size (fixed-length), vlen, charset and shape. */
async function attributeTypes(file: string): Promise<Record<string, Record<string, unknown>>> {
  await h5wasm.ready;
  const f = new h5wasm.File(file, 'r');
  const out: Record<string, Record<string, unknown>> = {};
  const walk = (group: InstanceType<typeof h5wasm.Group>) => {
    const attrs: Record<string, unknown> = {};
    for (const [name, attr] of Object.entries(group.attrs)) {
      const m = attr.metadata as unknown as { type: number; size: number; vlen: boolean; cset?: number; shape: number[] | null };
      attrs[name] = { type: m.type, size: m.vlen ? 'variable' : m.size, cset: m.cset, shape: m.shape };
    }
    out[group.path] = attrs;
    for (const key of group.keys()) {
      const child = group.get(key);
      if (child instanceof h5wasm.Group) walk(child);
    }
  };
  try {
    walk(f);
  } finally {
    f.close();
  }
  return out;
}

test('Keras 2 files written by h5py itself (h5py 3, h5py 2 fixed-length names, chunked lists) load exactly', async () => {
  const expected = expectedMap(tinyFixture(), ['conv2d_1', 'batch_normalization_1', 'dense_1']);
  for (const { file } of H5PY_VARIANTS) {
    assert.deepEqual(await loadKerasH5Weights(join(H5PY_FILES, file), tinyGraph()), expected, file);
    assert.deepEqual(await readKerasH5Origin(join(H5PY_FILES, file)), { kerasVersion: '2.1.5', backend: 'tensorflow' }, file);
  }
  // What the bug was about: h5py's empty list is an empty float64 array.
  assert.deepEqual((await attributeTypes(join(H5PY_FILES, 'tiny-h5py3.h5')))['/input_1'], { weight_names: { type: 1, size: 8, cset: undefined, shape: [0] } });
});

test('the test fixture writes every attribute with the HDF5 type h5py gives it', async () => {
  for (const { file, opts } of H5PY_VARIANTS) {
    const ours = join(dir, `ours-${file}`);
    await writeKerasH5(ours, tinyFixture(), opts);
    assert.deepEqual(await attributeTypes(ours), await attributeTypes(join(H5PY_FILES, file)), file);
  }
});

test('an attribute of an unexpected type is refused, naming the file, the group and the attribute', async () => {
  await h5wasm.ready;
  const cases: [string, (f: InstanceType<typeof h5wasm.File>) => void, RegExp, (file: string) => Promise<unknown>][] = [
    [
      'numbers.h5',
      (f) => {
        const g = f.get('conv2d_1') as InstanceType<typeof h5wasm.Group>;
        g.delete_attribute('weight_names');
        g.create_attribute('weight_names', new Float64Array([1, 2]), [2], '<d');
      },
      /numbers\.h5: attribute weight_names of group \/conv2d_1 holds <d data with shape \[2\], not a list of names \(strings\) as Keras writes it/,
      (file) => loadKerasH5Weights(file, tinyGraph()),
    ],
    [
      'ints.h5',
      (f) => {
        f.delete_attribute('layer_names');
        f.create_attribute('layer_names', new Int32Array([7]), [1], '<i');
      },
      /ints\.h5: attribute layer_names of the root group holds <i data with shape \[1\], not a list of names/,
      (file) => loadKerasH5Weights(file, tinyGraph()),
    ],
    [
      'version.h5',
      (f) => {
        f.delete_attribute('keras_version');
        f.create_attribute('keras_version', 2.1, null, '<d');
      },
      /version\.h5: attribute keras_version of the root group holds <d data with a scalar, not one string as Keras writes it/,
      (file) => readKerasH5Origin(file),
    ],
  ];
  for (const [name, spoil, pattern, read] of cases) {
    const file = join(dir, name);
    await writeKerasH5(file, tinyFixture());
    const f = new h5wasm.File(file, 'a');
    spoil(f);
    f.close();
    await assert.rejects(read(file), (err: unknown) => {
      assert.ok(err instanceof GraftError, String(err));
      assert.match(err.message, pattern);
      assert.ok(err.message.startsWith(file) && !err.message.includes('\n'), err.message);
      return true;
    });
  }
});

test('readKerasH5Layers lists the file\'s layers and their weights in order', async () => {
  const file = join(dir, 'listing.h5');
  await writeKerasH5(file, tinyFixture());
  assert.deepEqual(await readKerasH5Layers(file), [
    { name: 'input_1', weights: [] },
    { name: 'conv2d_1', weights: ['kernel', 'bias'] },
    { name: 'batch_normalization_1', weights: ['gamma', 'beta', 'moving_mean', 'moving_variance'] },
    { name: 'flatten_1', weights: [] },
    { name: 'dense_1', weights: ['kernel', 'bias'] },
  ]);
});

test('readKerasH5Topology: the topology of a full saved model, none for a weights-only file', async () => {
  const weightsOnly = join(dir, 'weights-only.h5');
  await writeKerasH5(weightsOnly, tinyFixture());
  assert.equal(await readKerasH5Topology(weightsOnly), undefined);
  const full = join(dir, 'full-model.h5');
  const graph = tinyGraph();
  await writeKerasH5(full, tinyFixture(), { modelConfig: graph });
  const topology = await readKerasH5Topology(full);
  assert.deepEqual(topology?.layers.map((l) => [l.name, l.className, l.inbound]), graph.layers.map((l) => [l.name, l.className, l.inbound]));
  assert.deepEqual(topology?.outputs, ['dense_1']);
  assert.deepEqual(await loadKerasH5Weights(full, topology!, { match: 'name' }), expectedMap(tinyFixture(), ['conv2d_1', 'batch_normalization_1', 'dense_1']));
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
  const truncated = join(dir, 'truncated.h5');
  await writeKerasH5(truncated, tinyFixture());
  writeFileSync(truncated, readFileSync(truncated).subarray(0, 1200));
  await check(truncated, /cannot open the HDF5 file, it may be damaged or truncated \(.*truncated file/);
  const plain = join(dir, 'plain.h5');
  await writeKerasH5(plain, tinyFixture(), { layerNames: false });
  await check(plain, /with neither a layer_names attribute \(Keras 2\) nor a layers group \(Keras 3\)/);
  const wrongShape = join(dir, 'wrong-shape.h5');
  await writeKerasH5(wrongShape, tinyFixture(undefined, [3, 3, 2, 4]));
  await check(wrongShape, /layer conv2d_1 weight kernel: expected shape \[3,3,2,3\], found \[3,3,2,4\]/);
  const short = join(dir, 'short.h5');
  await writeKerasH5(short, tinyFixture().slice(0, 3));
  await check(short, /too few layers: the file has 2 layers with weights, the model needs 3/);
  const noBias = join(dir, 'no-bias.h5');
  const fixture = tinyFixture();
  fixture[1]!.weights.pop();
  await writeKerasH5(noBias, fixture);
  await check(noBias, /layer conv2d_1 has 1 weights \(kernel\), the model expects 2 \(kernel, bias\)/);
});

// saveKerasH5Weights: the writer, checked through the loader.

/** input 3x3x2 -> conv 1x1 (4 filters, bias) -> flatten -> dense 3. */
const tinyDense: KerasGraph = {
  name: 'tiny',
  inputs: ['input_1'],
  outputs: ['dense_1'],
  layers: [
    { name: 'input_1', className: 'InputLayer', config: { batch_input_shape: [null, 3, 3, 2] }, inbound: [] },
    { name: 'conv2d_1', className: 'Conv2D', config: { filters: 4, kernel_size: [1, 1], padding: 'valid' }, inbound: ['input_1'] },
    { name: 'flatten_1', className: 'Flatten', config: {}, inbound: ['conv2d_1'] },
    { name: 'dense_1', className: 'Dense', config: { units: 3 }, inbound: ['flatten_1'] },
  ],
};
const tinyWeights = (): WeightMap =>
  new Map([
    ['conv2d_1/kernel', { shape: [1, 1, 2, 4], data: Float32Array.from({ length: 8 }, (_, i) => i - 3.5) }],
    ['conv2d_1/bias', { shape: [4], data: Float32Array.from([0.5, -0.25, 1e-7, -0]) }],
    ['dense_1/kernel', { shape: [36, 3], data: Float32Array.from({ length: 108 }, (_, i) => Math.sin(i)) }],
    ['dense_1/bias', { shape: [3], data: Float32Array.from([1, 2, 3]) }],
  ]);

test('saveKerasH5Weights round-trips through loadKerasH5Weights exactly (by order and by name)', async () => {
  const file = join(dir, 'out', 'tiny.h5');
  const weights = tinyWeights();
  await saveKerasH5Weights(file, tinyDense, weights, [3, 3, 2]);
  for (const match of ['order', 'name'] as const) {
    const back = await loadKerasH5Weights(file, tinyDense, { match });
    assert.deepEqual([...back.keys()].sort(), [...weights.keys()].sort());
    for (const [k, t] of weights) {
      assert.deepEqual(back.get(k)!.shape, t.shape);
      assert.ok(sameBits(back.get(k)!.data, t.data), k);
    }
  }
  assert.deepEqual(readdirSync(join(dir, 'out')), ['tiny.h5']); // no temporary file left
});

test('real InceptionV3 weights (up to mixed2) survive save + load bit for bit', async () => {
  const { tensors } = readSharedTfjsWeights();
  const graph = cutAt(inceptionV3Graph(), 'mixed2');
  const file = join(dir, 'mixed2.h5');
  await saveKerasH5Weights(file, graph, tensors, [150, 150, 3]);
  const back = await loadKerasH5Weights(file, graph);
  assert.equal(back.size, 4 * 26); // 26 conv + BN pairs, 4 arrays each
  for (const [k, t] of back) assert.ok(sameBits(t.data, tensors.get(k)!.data), k);
});

test('missing weights or an unwritable place: GraftError, and no file', async () => {
  const file = join(dir, 'partial.h5');
  const weights = tinyWeights();
  weights.delete('dense_1/bias');
  await assert.rejects(saveKerasH5Weights(file, tinyDense, weights, [3, 3, 2]), /partial\.h5: layer dense_1 needs weight dense_1\/bias \[3\], which is missing/);
  assert.equal(existsSync(file), false);
  const blocker = join(dir, 'a-file');
  writeFileSync(blocker, 'x');
  await assert.rejects(saveKerasH5Weights(join(blocker, 'w.h5'), tinyDense, tinyWeights(), [3, 3, 2]), (err: unknown) => {
    assert.ok(err instanceof GraftError);
    assert.match(err.message, /^cannot write .*a-file\/w\.h5: /);
    return true;
  });
});

test('a file laid out and encoded like Keras\'s notop ImageNet .h5 (311 layers) loads with graft summary; a truncated copy fails in one line', async () => {
  const file = join(dir, 'inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5');
  await writeInceptionNotopH5(file);
  const layers = await readKerasH5Layers(file);
  assert.equal(layers.length, 311);
  assert.equal(layers.filter((l) => l.weights.length > 0).length, 188);
  const full = await loadKerasH5Weights(file, inceptionV3Graph());
  assert.equal([...full.values()].reduce((n, t) => n + t.data.length, 0), 21_802_784);

  // The frozen backbone up to mixed7 (the lab's cut), and the whole file (every weight read).
  for (const [cut, frozen] of [['mixed7', '8,975,264'], ['mixed10', '21,802,784']]) {
    const run = await runGraft('summary', '--weights', file, '--cut', cut!);
    assert.equal(run.code, 0, run.err);
    assert.match(run.out, new RegExp(`${cut} \\(Concatenate\\)`));
    assert.match(run.out, new RegExp(`Non-trainable params: ${frozen}$`, 'm'));
  }
  const truncated = join(dir, 'truncated_notop.h5');
  writeFileSync(truncated, readFileSync(file).subarray(0, Math.floor(statSync(file).size / 2)));
  const bad = await runGraft('summary', '--weights', truncated);
  assert.equal(bad.code, 1);
  assert.equal(bad.errLines.length, 1, bad.err);
  assert.match(bad.err, /^graft: error: .*truncated_notop\.h5: /);
});
