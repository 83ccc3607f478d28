import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { inceptionV3Graph } from '../src/backbone/architectures/inception-v3.js';
import { parseKerasTopology } from '../src/backbone/topology.js';
import { inferShapes, layerWeightSpecs, shapeSize } from '../src/backbone/layer-shapes.js';
import { sharedInceptionWeightsDir } from '../src/util/paths.js';

const modelJson = join(sharedInceptionWeightsDir('fp32'), 'model.json');
const SHAPE_KEYS = ['filters', 'kernel_size', 'strides', 'padding', 'use_bias', 'pool_size', 'axis', 'scale', 'center', 'epsilon', 'activation', 'data_format', 'dilation_rate'];

test('inceptionV3Graph matches the shared Keras topology layer for layer up to mixed7', () => {
  const shared = parseKerasTopology(JSON.parse(readFileSync(modelJson, 'utf8')).modelTopology, modelJson);
  const built = inceptionV3Graph();
  const upTo = built.layers.findIndex((l) => l.name === 'mixed7');
  const prefix = built.layers.slice(0, upTo + 1);
  // Same names in the same (Keras model) order: load_weights by order depends on it.
  assert.deepEqual(prefix.map((l) => l.name), shared.layers.map((l) => l.name));
  for (const [i, mine] of prefix.entries()) {
    const theirs = shared.layers[i]!;
    assert.equal(mine.className, theirs.className, mine.name);
    assert.deepEqual(mine.inbound, theirs.inbound, mine.name);
    for (const key of SHAPE_KEYS) assert.deepEqual(mine.config[key], theirs.config[key], `${mine.name}.${key}`);
  }
});

test('inceptionV3Graph: mixed10 is 8x8x2048 at 299x299, 21,802,784 parameters, Keras names beyond mixed7', () => {
  const graph = inceptionV3Graph({ inputShape: [299, 299, 3] });
  assert.deepEqual(graph.outputs, ['mixed10']);
  assert.deepEqual(graph.layers[0]!.config.batch_input_shape, [null, 299, 299, 3]);
  const shapes = inferShapes(graph, [299, 299, 3]);
  assert.deepEqual(shapes.output.get('mixed10'), [8, 8, 2048]);
  assert.deepEqual(shapes.output.get('mixed8'), [8, 8, 1280]);
  assert.deepEqual(shapes.output.get('mixed9_0'), [8, 8, 768]);
  assert.deepEqual(shapes.output.get('concatenate_2'), [8, 8, 768]);
  let params = 0;
  for (const layer of graph.layers) {
    for (const w of layerWeightSpecs(layer, shapes.inputs.get(layer.name)!)) params += shapeSize(w.shape);
  }
  assert.equal(params, 21_802_784);
  const count = (cls: string) => graph.layers.filter((l) => l.className === cls).length;
  assert.equal(count('Conv2D'), 94);
  assert.equal(count('BatchNormalization'), 94);
  assert.equal(graph.layers.length, 311);
  assert.equal(graph.layers[graph.layers.length - 1]!.name, 'mixed10');
  // Every layer comes after the layers it reads from.
  const seen = new Set<string>();
  for (const l of graph.layers) {
    for (const i of l.inbound) assert.ok(seen.has(i), `${l.name} reads ${i} before it is defined`);
    seen.add(l.name);
  }
});
