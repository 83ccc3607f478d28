import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseKerasTopology } from '../src/backbone/topology.js';
import { inferShapes, layerWeightSpecs, shapeSize } from '../src/backbone/layer-shapes.js';
import { sharedInceptionWeightsDir } from '../src/util/paths.js';

const modelJson = join(sharedInceptionWeightsDir('fp32'), 'model.json');

test('the shared InceptionV3 topology: mixed7 is 7x7x768 at 150x150, 17x17x768 at 299, 8,975,264 parameters', () => {
  const graph = parseKerasTopology(JSON.parse(readFileSync(modelJson, 'utf8')).modelTopology, modelJson);
  assert.equal(graph.layers.length, 229);
  assert.deepEqual(graph.outputs, ['mixed7']);
  const s150 = inferShapes(graph, [150, 150, 3]);
  assert.deepEqual(s150.output.get('mixed7'), [7, 7, 768]);
  assert.deepEqual(s150.output.get('mixed0'), [16, 16, 256]);
  assert.deepEqual(inferShapes(graph, [299, 299, 3]).output.get('mixed7'), [17, 17, 768]);
  let params = 0;
  for (const layer of graph.layers) {
    for (const w of layerWeightSpecs(layer, s150.inputs.get(layer.name)!)) params += shapeSize(w.shape);
  }
  assert.equal(params, 8_975_264);
});

test('a too-small input is reported with the layer name', () => {
  const graph = parseKerasTopology(JSON.parse(readFileSync(modelJson, 'utf8')).modelTopology, modelJson);
  assert.throws(() => inferShapes(graph, [40, 40, 3]), /too small/);
});
