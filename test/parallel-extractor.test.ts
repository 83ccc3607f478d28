/**
 * The data-parallel feature extractor (sessions on worker threads, engine.ts): the same features
 * as one session on the calling thread, from ordinary and shared inputs, at any request size; a
 * network that onnxruntime cannot load is a clear error; disposing it ends its workers.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { createOrtExtractor } from '../src/backbone/engine.js';
import { kerasToOnnx } from '../src/backbone/onnx/convert.js';
import { loadTfjsLayersModel } from '../src/backbone/weights/tfjs-layers.js';
import { Random } from '../src/util/random.js';
import { tinyLayers, tinyWeights, writeTinyModel } from './support/tiny-model.js';

const dir = writeTinyModel(tinyLayers(), tinyWeights(tinyLayers()));
test.after(() => rmSync(dir, { recursive: true, force: true }));
const { graph, weights } = await loadTfjsLayersModel(dir);
const onnx = kerasToOnnx(graph, weights);
const SHAPE: [number, number, number] = [9, 9, 3];
const per = 9 * 9 * 3;

test('worker sessions give the calling-thread session\'s features, whatever the request size and input buffer', async () => {
  const rnd = new Random(5);
  const images = Float32Array.from({ length: 23 * per }, () => rnd.uniform(0, 1));
  const one = await createOrtExtractor(onnx, SHAPE, [3], { threads: 1, workers: 1, batchSize: 4 });
  const two = await createOrtExtractor(onnx, SHAPE, [3], { threads: 2, workers: 2, batchSize: 4 });
  const three = await createOrtExtractor(onnx, SHAPE, [3], { threads: 3, workers: 3, batchSize: 4 });
  try {
    const expected = await one.extract(images, 23);
    assert.ok(expected.some((v) => v !== 0));
    for (const n of [1, 2, 5, 20, 23]) {
      assert.deepEqual(await two.extract(images, n), expected.subarray(0, n * 3), `${n} images on 2 workers`);
      assert.deepEqual(await three.extract(images, n), expected.subarray(0, n * 3), `${n} images on 3 workers`);
    }
    // An input on a SharedArrayBuffer at an offset (as augmentation workers write batches) is read in place.
    const shared = new Float32Array(new SharedArrayBuffer((23 * per + 7) * 4), 7 * 4, 23 * per);
    shared.set(images);
    const fromShared = await two.extract(shared, 23);
    assert.ok(!(fromShared.buffer instanceof SharedArrayBuffer), 'the result is an ordinary array (onnxruntime can take it)');
    assert.deepEqual(fromShared, expected);
    // Requests made together are served one after another, each with its own result.
    const [a, b] = await Promise.all([two.extract(images.subarray(5 * per), 3), two.extract(images, 4)]);
    assert.deepEqual(a, expected.subarray(15, 24));
    assert.deepEqual(b, expected.subarray(0, 12));
  } finally {
    await one.dispose();
    await two.dispose();
    await three.dispose();
  }
  await assert.rejects(two.extract(images, 1), /was disposed/);
});

test('a network onnxruntime cannot load is a clear error from the workers', async () => {
  await assert.rejects(createOrtExtractor(Uint8Array.from([1, 2, 3, 4]), SHAPE, [3], { threads: 2, workers: 2, label: 'the test network' }), /onnxruntime could not load the test network/);
});
