import { test, before, after, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { planWeights, resolveWeights } from '../src/backbone/weights/resolve.js';
import { runGraft } from './support/cli.js';
import { IMAGENET_WEIGHTS_FILE } from '../src/backbone/weights/imagenet.js';
import { loadTfjsLayersModel } from '../src/backbone/weights/tfjs-layers.js';
import type { KerasGraph, WeightTensor } from '../src/backbone/keras-graph.js';
import { sharedInceptionWeightsDir } from '../src/util/paths.js';
import { GraftError } from '../src/util/errors.js';
import { cutAt, sameBits, writeKerasH5, writeSharedInceptionH5 } from './support/keras-h5-fixture.js';
import { inceptionV3Graph } from '../src/backbone/architectures/inception-v3.js';

const ENV = ['GRAFT_WEIGHTS_DIR', 'GRAFT_SHARED', 'GRAFT_IMAGENET_URL'] as const;
const saved = Object.fromEntries(ENV.map((k) => [k, process.env[k]]));
const shared = sharedInceptionWeightsDir('fp32');
let dir: string;
let h5: string;
let tensors: Map<string, WeightTensor>;

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'graft-resolve-'));
  h5 = join(dir, 'inception_mixed7.h5');
  tensors = await writeSharedInceptionH5(h5);
});
afterEach(() => {
  for (const k of ENV) {
    if (saved[k] === undefined) delete process.env[k];
    else process.env[k] = saved[k];
  }
});
after(() => rmSync(dir, { recursive: true, force: true }));

test('planWeights: paths by kind, and the documented order for "imagenet"', () => {
  delete process.env.GRAFT_WEIGHTS_DIR;
  const emptyCache = join(dir, 'no-cache');
  assert.deepEqual(planWeights('/x/weights.H5'), { kind: 'h5', path: '/x/weights.H5' });
  assert.deepEqual(planWeights('/x/w.hdf5'), { kind: 'h5', path: '/x/w.hdf5' });
  assert.deepEqual(planWeights(shared), { kind: 'tfjs', path: shared });
  assert.deepEqual(planWeights(join(shared, 'model.json')), { kind: 'tfjs', path: join(shared, 'model.json') });
  // 3. the shared folder when nothing else is set or cached
  assert.deepEqual(planWeights('imagenet', { cacheDir: emptyCache }), { kind: 'tfjs', path: shared });
  assert.deepEqual(planWeights(undefined, { cacheDir: emptyCache }), { kind: 'tfjs', path: shared });
  // 2. a cached .h5 wins over the shared folder
  const cache = join(dir, 'cache');
  mkdirSync(cache, { recursive: true });
  writeFileSync(join(cache, IMAGENET_WEIGHTS_FILE), 'x');
  assert.deepEqual(planWeights('imagenet', { cacheDir: cache }), { kind: 'h5', path: join(cache, IMAGENET_WEIGHTS_FILE) });
  // 1. GRAFT_WEIGHTS_DIR wins over everything
  process.env.GRAFT_WEIGHTS_DIR = h5;
  assert.deepEqual(planWeights('imagenet', { cacheDir: cache }), { kind: 'h5', path: h5 });
  delete process.env.GRAFT_WEIGHTS_DIR;
  // 4. nothing local: download into the cache
  process.env.GRAFT_SHARED = join(dir, 'no-shared');
  assert.deepEqual(planWeights('imagenet', { cacheDir: emptyCache }), { kind: 'download', path: join(emptyCache, IMAGENET_WEIGHTS_FILE) });
});

test('planWeights: unusable values are one-line GraftErrors naming the path', () => {
  const noModel = join(dir, 'empty-folder');
  mkdirSync(noModel, { recursive: true });
  assert.throws(() => planWeights(noModel), (e: unknown) => e instanceof GraftError && /empty-folder: no model\.json in this folder/.test(e.message));
  assert.throws(() => planWeights(join(dir, 'nope')), /nope: no such weights file or folder/);
  const txt = join(dir, 'weights.txt');
  writeFileSync(txt, 'hello');
  assert.throws(() => planWeights(txt), /weights\.txt: unsupported weights format/);
  assert.deepEqual(planWeights('/m/lab.keras'), { kind: 'keras', path: '/m/lab.keras' }); // read when loaded (keras3.test.ts)
  process.env.GRAFT_WEIGHTS_DIR = join(dir, 'gone');
  assert.throws(() => planWeights('imagenet'), /^GraftError: GRAFT_WEIGHTS_DIR: .*gone: no such weights file or folder/);
});

test('resolveWeights: a Keras .h5 and the TF.js folder give the same weights, bit for bit', async () => {
  const fromH5 = await resolveWeights(h5, { cut: 'mixed7' });
  const fromTfjs = await loadTfjsLayersModel(shared);
  assert.equal(fromH5.source, h5);
  assert.deepEqual(fromH5.graph.layers.map((l) => l.name), fromTfjs.graph.layers.map((l) => l.name));
  assert.equal(fromH5.weights.size, tensors.size);
  for (const [key, t] of fromTfjs.weights) assert.ok(sameBits(fromH5.weights.get(key)!.data, t.data), key);
  // Without a cut, a weights-only file holding input_1..mixed7 is recognised as such.
  const uncut = await resolveWeights(h5);
  assert.deepEqual(uncut.graph.outputs, ['mixed7']);
  assert.equal(uncut.graph.layers.length, 229);
  assert.equal(uncut.weights.size, 280);
  // Cut inside a block: not a prefix of the layer order, so layers pair by name.
  const inner = await resolveWeights(h5, { cut: 'activation_40' });
  assert.ok(sameBits(inner.weights.get('conv2d_40/kernel')!.data, tensors.get('conv2d_40/kernel')!.data));
  await assert.rejects(resolveWeights(h5, { cut: 'mixed11' }), /has no layer named "mixed11"/);
});

test('resolveWeights: a full saved Keras model .h5 brings its own topology', async () => {
  const file = join(dir, 'lab-model.h5');
  const graph = { ...cutAt(inceptionV3Graph(), 'mixed0'), name: 'lab' };
  const layers = graph.layers.map((l) => ({
    name: l.name,
    weights: [...tensors.keys()].filter((k) => k.startsWith(`${l.name}/`)).map((k) => ({ name: k.slice(l.name.length + 1), ...tensors.get(k)! })),
  }));
  await writeKerasH5(file, layers, { modelConfig: graph });
  const loaded = await resolveWeights(file);
  assert.equal(loaded.graph.name, 'lab');
  assert.deepEqual(loaded.graph.outputs, ['mixed0']);
  assert.equal(loaded.weights.size, 12 * 4);
  assert.ok(sameBits(loaded.weights.get('conv2d_12/kernel')!.data, tensors.get('conv2d_12/kernel')!.data));
  await assert.rejects(resolveWeights(file, { cut: 'mixed7' }), /lab-model\.h5: the model lab has no layer named "mixed7" \(block outputs: mixed0\)/);
});

test('resolveWeights("imagenet"): the cached .h5 without network; offline with nothing local says what to do', async () => {
  delete process.env.GRAFT_WEIGHTS_DIR;
  const cache = join(dir, 'cache-real');
  mkdirSync(cache, { recursive: true });
  copyFileSync(h5, join(cache, IMAGENET_WEIGHTS_FILE));
  process.env.GRAFT_IMAGENET_URL = 'http://127.0.0.1:1/never-used.h5';
  const loaded = await resolveWeights('imagenet', { cut: 'mixed7', download: { cacheDir: cache } });
  assert.equal(loaded.source, join(cache, IMAGENET_WEIGHTS_FILE));
  assert.equal(loaded.weights.size, 280);

  const closed = createServer();
  await new Promise<void>((r) => closed.listen(0, '127.0.0.1', r));
  const port = (closed.address() as AddressInfo).port;
  await new Promise((r) => closed.close(r));
  process.env.GRAFT_SHARED = join(dir, 'no-shared');
  process.env.GRAFT_IMAGENET_URL = `http://127.0.0.1:${port}/w.h5`;
  await assert.rejects(
    resolveWeights('imagenet', { download: { cacheDir: join(dir, 'empty-cache'), retries: 0, progressBar: false } }),
    new RegExp(`ECONNREFUSED.*weights: '/path/to/${IMAGENET_WEIGHTS_FILE}'.*GRAFT_WEIGHTS_DIR`),
  );
});

test('CLI: graft weights <file.h5> --load says what the file is and what it holds', async () => {
  {
    const graph: KerasGraph = {
      name: 'small',
      inputs: ['input_1'],
      outputs: ['dense_1'],
      layers: [
        { name: 'input_1', className: 'InputLayer', config: { batch_input_shape: [null, 2, 2, 1] }, inbound: [] },
        { name: 'flatten_1', className: 'Flatten', config: {}, inbound: ['input_1'] },
        { name: 'dense_1', className: 'Dense', config: { units: 3 }, inbound: ['flatten_1'] },
      ],
    };
    const file = join(dir, 'small.h5');
    await writeKerasH5(
      file,
      [
        { name: 'input_1', weights: [] },
        { name: 'flatten_1', weights: [] },
        { name: 'dense_1', weights: [{ name: 'kernel', shape: [4, 3], data: new Float32Array(12) }, { name: 'bias', shape: [3], data: new Float32Array(3) }] },
      ],
      { modelConfig: graph },
    );
    const ok = await runGraft('weights', file, '--load');
    assert.equal(ok.code, 0, ok.err);
    assert.match(ok.out, new RegExp(`small\\.h5: Keras HDF5 weights ${file.replace(/[.]/g, '\\.')}`));
    assert.match(ok.out, /small\.h5: 3 layers up to dense_1, 2 weight arrays, 15 parameters/);

    const bad = await runGraft('weights', join(dir, 'nope'));
    assert.equal(bad.code, 1);
    assert.match(bad.err, /^graft: error: .*nope: no such weights file or folder/);
  }
});
