import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { saveKerasH5Weights } from '../src/backbone/weights/keras-h5-writer.js';
import { loadKerasH5Weights } from '../src/backbone/weights/keras-h5.js';
import { inceptionV3Graph } from '../src/backbone/architectures/inception-v3.js';
import type { KerasGraph, WeightMap } from '../src/backbone/keras-graph.js';
import { GraftError } from '../src/util/errors.js';
import { cutAt, readSharedTfjsWeights, sameBits } from './support/keras-h5-fixture.js';

let dir: string;
before(() => {
  dir = mkdtempSync(join(tmpdir(), 'graft-h5w-'));
});
after(() => rmSync(dir, { recursive: true, force: true }));

/** input 3x3x2 -> conv 1x1 (4 filters, bias) -> flatten -> dense 3. */
const tiny: KerasGraph = {
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
  await saveKerasH5Weights(file, tiny, weights, [3, 3, 2]);
  for (const match of ['order', 'name'] as const) {
    const back = await loadKerasH5Weights(file, tiny, { match });
    assert.deepEqual([...back.keys()].sort(), [...weights.keys()].sort());
    for (const [k, t] of weights) {
      assert.deepEqual(back.get(k)!.shape, t.shape);
      assert.ok(sameBits(back.get(k)!.data, t.data), k);
    }
  }
  assert.deepEqual(readdirSync(join(dir, 'out')), ['tiny.h5']); // no temporary file left
});

test('the real InceptionV3 mixed7 weights survive save + load bit for bit', async () => {
  const { tensors } = readSharedTfjsWeights();
  const graph = cutAt(inceptionV3Graph(), 'mixed7');
  const file = join(dir, 'mixed7.h5');
  await saveKerasH5Weights(file, graph, tensors, [150, 150, 3]);
  const back = await loadKerasH5Weights(file, graph);
  assert.equal(back.size, 280);
  for (const [k, t] of tensors) assert.ok(sameBits(back.get(k)!.data, t.data), k);
});

test('missing weights or an unwritable place: GraftError, and no file', async () => {
  const file = join(dir, 'partial.h5');
  const weights = tinyWeights();
  weights.delete('dense_1/bias');
  await assert.rejects(saveKerasH5Weights(file, tiny, weights, [3, 3, 2]), /partial\.h5: layer dense_1 needs weight dense_1\/bias \[3\], which is missing/);
  assert.equal(existsSync(file), false);
  const blocker = join(dir, 'a-file');
  writeFileSync(blocker, 'x');
  await assert.rejects(saveKerasH5Weights(join(blocker, 'w.h5'), tiny, tinyWeights(), [3, 3, 2]), (err: unknown) => {
    assert.ok(err instanceof GraftError);
    assert.match(err.message, /^cannot write .*a-file\/w\.h5: /);
    return true;
  });
});
