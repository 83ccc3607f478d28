/**
 * Keras 3 weight formats: `.weights.h5` (save_weights) and `.keras` archives (model.save), written
 * here in Keras 3's layout from the shared ImageNet weights and read back through --weights.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { zipSync, strToU8 } from 'fflate';
import { inceptionV3Graph } from '../src/backbone/architectures/inception-v3.js';
import type { KerasGraph, WeightTensor } from '../src/backbone/keras-graph.js';
import { kerasSnakeCase, keras3LayerPaths } from '../src/backbone/weights/keras3-h5.js';
import { resolveWeights } from '../src/backbone/weights/resolve.js';
import { GraftError } from '../src/util/errors.js';
import { cutAt, keras3Config, readSharedTfjsWeights, sameBits, writeKeras3H5 } from './support/keras-h5-fixture.js';

let dir: string;
before(() => {
  dir = mkdtempSync(join(tmpdir(), 'graft-keras3-'));
});
after(() => rmSync(dir, { recursive: true, force: true }));

const shared = readSharedTfjsWeights();
const mixed7 = cutAt(inceptionV3Graph(), 'mixed7');

function assertSameWeights(loaded: Map<string, WeightTensor>, expected: Map<string, WeightTensor>): void {
  assert.equal(loaded.size, expected.size);
  for (const [key, t] of expected) {
    const got = loaded.get(key);
    assert.ok(got, `missing ${key}`);
    assert.deepEqual(got.shape, t.shape, key);
    assert.ok(sameBits(got.data, t.data), `${key} differs`);
  }
}

test("Keras 3 group names: snake_case of the class, counted per class in layer order", () => {
  assert.deepEqual(
    ['Conv2D', 'BatchNormalization', 'InputLayer', 'MaxPooling2D', 'AveragePooling2D', 'GlobalAveragePooling2D', 'Dense'].map(kerasSnakeCase),
    ['conv2d', 'batch_normalization', 'input_layer', 'max_pooling2d', 'average_pooling2d', 'global_average_pooling2d', 'dense'],
  );
  const paths = keras3LayerPaths(mixed7);
  assert.equal(paths.get('conv2d_1'), 'conv2d'); // Keras 2 named InceptionV3's first conv conv2d_1
  assert.equal(paths.get('conv2d_2'), 'conv2d_1');
  assert.equal(paths.get('batch_normalization_1'), 'batch_normalization');
  assert.equal(paths.get('mixed0'), 'concatenate');
  assert.equal(paths.get('mixed7'), 'concatenate_7');
});

test('a Keras 3 .weights.h5 of InceptionV3 loads bit for bit, in both layouts Keras 3 writes', async () => {
  const old = join(dir, 'keras30.weights.h5');
  await writeKeras3H5(old, mixed7, shared.tensors, shared.order);
  for (const cut of ['mixed7', undefined]) {
    // Without a cut, the deepest block the file holds is found (mixed7).
    const loaded = await resolveWeights(old, { cut });
    assert.deepEqual(loaded.graph.layers.map((l) => l.name), mixed7.layers.map((l) => l.name));
    assertSameWeights(loaded.weights, shared.tensors);
  }
  const cut = await resolveWeights(old, { cut: 'mixed2' });
  assert.equal(cut.graph.outputs[0], 'mixed2');
  assert.ok(cut.weights.size < shared.tensors.size);

  // Newer releases name each layer on its group and skip weightless ones: names decide, so even
  // groups numbered in another order land on the right layers.
  const named = join(dir, 'named.weights.h5');
  await writeKeras3H5(named, { ...mixed7, layers: [...mixed7.layers].reverse() }, shared.tensors, shared.order, { names: true, skipEmpty: true });
  assertSameWeights((await resolveWeights(named, { cut: 'mixed7' })).weights, shared.tensors);
});

test('a Keras 3 .keras archive (the lab model: backbone + head) gives its backbone, cut at mixed7', async () => {
  const head: KerasGraph['layers'] = [
    { name: 'flatten', className: 'Flatten', config: {}, inbound: ['mixed7'] },
    { name: 'dense', className: 'Dense', config: { units: 2, activation: 'relu', use_bias: true }, inbound: ['flatten'] },
  ];
  // The lab builds InceptionV3(input_shape=(150, 150, 3)), so the Flatten has a fixed size.
  const input = { ...mixed7.layers[0]!, config: { ...mixed7.layers[0]!.config, batch_input_shape: [null, 150, 150, 3] } };
  const lab: KerasGraph = { ...mixed7, name: 'lab', layers: [input, ...mixed7.layers.slice(1), ...head], outputs: ['dense'] };
  const tensors = new Map(shared.tensors);
  tensors.set('dense/kernel', { shape: [7 * 7 * 768, 2], data: new Float32Array(7 * 7 * 768 * 2).fill(0.5) });
  tensors.set('dense/bias', { shape: [2], data: new Float32Array(2) });
  const h5 = join(dir, 'model.weights.h5');
  await writeKeras3H5(h5, lab, tensors, [...shared.order, 'dense/kernel', 'dense/bias']);
  const archive = join(dir, 'lab.keras');
  writeFileSync(archive, zipSync({
    'metadata.json': strToU8(JSON.stringify({ keras_version: '3.6.0', date_saved: '2026-11-29@00:00:00' })),
    'config.json': strToU8(JSON.stringify(keras3Config(lab))),
    'model.weights.h5': readFileSync(h5),
  }, { level: 0 }));

  const loaded = await resolveWeights(archive, { cut: 'mixed7' });
  assert.equal(loaded.source, archive);
  assert.deepEqual(loaded.graph.layers.map((l) => `${l.className}:${l.name}`), mixed7.layers.map((l) => `${l.className}:${l.name}`));
  assertSameWeights(loaded.weights, shared.tensors);
  // The whole model, head included, when no cut is asked for.
  const whole = await resolveWeights(archive);
  assert.equal(whole.graph.outputs[0], 'dense');
  assert.ok(sameBits(whole.weights.get('dense/kernel')!.data, tensors.get('dense/kernel')!.data));
});

test('broken Keras 3 files: one-line GraftErrors naming the file and what is wrong', async () => {
  const expectError = async (file: string, pattern: RegExp, cut?: string) => {
    await assert.rejects(resolveWeights(file, { cut }), (err: unknown) => {
      assert.ok(err instanceof GraftError, `not a GraftError: ${err}`);
      assert.ok(err.message.includes(file), err.message);
      assert.match(err.message, pattern);
      assert.ok(!err.message.includes('\n'));
      return true;
    });
  };
  const notZip = join(dir, 'text.keras');
  writeFileSync(notZip, 'not a zip');
  await expectError(notZip, /not a Keras \.keras archive/);
  const noWeights = join(dir, 'config-only.keras');
  writeFileSync(noWeights, zipSync({ 'config.json': strToU8(JSON.stringify(keras3Config(mixed7))) }));
  await expectError(noWeights, /needs config\.json and model\.weights\.h5; this one lacks model\.weights\.h5/);

  // The modern tutorial's model nests InceptionV3 as one layer: refused with what to do instead.
  const nested = keras3Config(mixed7) as { config: { layers: unknown[] } };
  const outer = {
    class_name: 'Functional',
    config: {
      name: 'tutorial',
      layers: [
        { class_name: 'InputLayer', name: 'input_layer_1', config: { name: 'input_layer_1', batch_shape: [null, 150, 150, 3] }, inbound_nodes: [] },
        { ...nested, name: 'inception_v3', inbound_nodes: [{ args: [{ class_name: '__keras_tensor__', config: { keras_history: ['input_layer_1', 0, 0] } }], kwargs: {} }] },
      ],
      input_layers: [['input_layer_1', 0, 0]],
      output_layers: [['inception_v3', 0, 0]],
    },
  };
  const tutorial = join(dir, 'tutorial.keras');
  writeFileSync(tutorial, zipSync({ 'config.json': strToU8(JSON.stringify(outer)), 'model.weights.h5': new Uint8Array(8) }));
  await expectError(tutorial, /layer inception_v3 is a whole Functional model nested inside this one .*base_model\.save/);

  // A file holding the network only up to mixed2 cannot give mixed7; the message names the group.
  const short = join(dir, 'short.weights.h5');
  await writeKeras3H5(short, cutAt(inceptionV3Graph(), 'mixed2'), shared.tensors, shared.order);
  await expectError(short, /short\.weights\.h5: has no weights for layers\/conv2d_\d+ \(layer conv2d_\d+\)/, 'mixed7');
  // Inside an archive, errors name the archive rather than a staged copy.
  const archive = join(dir, 'short.keras');
  writeFileSync(archive, zipSync({ 'config.json': strToU8(JSON.stringify(keras3Config(mixed7))), 'model.weights.h5': readFileSync(short) }));
  await expectError(archive, /short\.keras \(model\.weights\.h5\): has no weights for layers\/conv2d_\d+/, 'mixed7');
});
