/**
 * Cached fine-tuning runs each image once through the backbone, to the fine-tuned layer: those
 * features go through the feature store (memory budget, spill to disk, reuse, damage rebuilt) and
 * the head phase's features at the cut are derived from them; a run whose features spilled trains
 * exactly as one whose features fit.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { labSubset } from './support/images.js';
import { smallCachedRun } from './support/small-cached-run.js';
import { loadBackbone, type FeaturePooling } from '../src/backbone/backbone.js';
import { createOrtExtractor } from '../src/backbone/engine.js';
import { decodeImage } from '../src/data/decode.js';
import { belowExtractor } from '../src/train/finetune/layer-features.js';
import { frozenSegmentForward } from '../src/train/finetune/segment-onnx.js';
import { trainableSegment } from '../src/train/finetune/segment.js';
import { sharedInceptionWeightsDir } from '../src/util/paths.js';
import { trainClassifier, type TrainOptions } from '../src/learner.js';
import { parseHeadSpec } from '../src/model/head-spec-parse.js';

const root = await labSubset('graft-finetune-cached-', { train: 6, validation: 3 });
test.after(() => rm(root, { recursive: true, force: true }));

const options = (out: string, extra: Partial<TrainOptions> = {}) => smallCachedRun(root, out, { epochs: 1, fineTune: { from: 'mixed6', epochs: 2, learningRate: 1e-4 }, ...extra });

test('cached fine-tuning: features at the layer once per image, through the store; spilled or not, the same history; damage rebuilt', async () => {
  const fits = options('fits');
  const inMemory = await trainClassifier(fits);
  assert.deepEqual(inMemory.history.phase, [1, 2, 2]);
  // One pass over the images (to mixed6), none at the cut for the head phase nor again for the second.
  const computed = fits.lines.filter((l) => /computed once/.test(l)).map((l) => l.replace(/ \(.*/, ''));
  assert.deepEqual(computed, ['Validation features of 6 images at mixed6 computed once', 'Training features of 12 images at mixed6 computed once'], fits.lines.join('\n'));
  assert.ok(fits.lines.some((l) => /^Training features at mixed7 derived from those at mixed6/.test(l)), fits.lines.join('\n'));

  const spilled = options('spilled', { memoryBudget: 1000 });
  const onDisk = await trainClassifier(spilled);
  assert.deepEqual(onDisk.history, inMemory.history);
  assert.deepEqual(onDisk.metrics, inMemory.metrics);
  assert.deepEqual((await readdir(join(root, 'spilled', 'features'))).sort(), ['training-mixed6.features', 'training.features', 'validation-mixed6.features', 'validation.features']);

  // A flipped byte in the features at mixed6: named, rebuilt, the same history; the intact ones reused.
  const file = join(root, 'spilled', 'features', 'training-mixed6.features');
  const bytes = await readFile(file);
  bytes[bytes.length - 500]! ^= 0x10;
  await writeFile(file, bytes);
  const again = options('spilled', { memoryBudget: 1000, overwrite: true });
  assert.deepEqual((await trainClassifier(again)).history, inMemory.history);
  assert.ok(again.lines.some((l) => /training-mixed6\.features cannot be used: it is damaged/.test(l)), again.lines.join('\n'));
  assert.ok(again.lines.some((l) => /Reusing the validation-mixed6 features of 6 rows/.test(l)), again.lines.join('\n'));
  assert.ok(again.lines.some((l) => /Reusing the validation features of 6 rows/.test(l)), again.lines.join('\n'));
});

test('features at the cut derived from those at mixed6 equal the backbone\'s own, globally and grid pooled', async () => {
  const dir = join(root, 'data', 'train', 'cats');
  const files = (await readdir(dir)).sort().slice(0, 2).map((f) => join(dir, f));
  const input = new Float32Array(files.length * 150 * 150 * 3);
  for (const [i, f] of files.entries()) input.set(Float32Array.from(await decodeImage(f, { width: 150, height: 150 }), (v) => v / 255), i * 150 * 150 * 3);
  const pools: FeaturePooling[] = ['avg', { kind: 'avgpool', pool: 3, stride: 2 }, { kind: 'maxpool', pool: 3, stride: 2 }];
  for (const pool of pools) {
    const backbone = await loadBackbone({ weights: sharedInceptionWeightsDir('fp32'), inputSize: [150, 150], pool, threads: 2 });
    const segment = trainableSegment(backbone.graph, 'mixed6', backbone.inputShape);
    const below = await belowExtractor(backbone, segment);
    const above = await createOrtExtractor(frozenSegmentForward(segment, backbone.weights, pool), segment.inputShape as [number, number, number], backbone.featureShape);
    try {
      const direct = await backbone.extractor.extract(input, files.length);
      const derived = await above.extract(await below.extract(input, files.length), files.length);
      assert.equal(derived.length, direct.length, `${JSON.stringify(pool)}: length`);
      const scale = direct.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
      const worst = derived.reduce((m, v, i) => Math.max(m, Math.abs(v - direct[i]!)), 0);
      assert.ok(scale > 0.1 && worst <= 1e-4 * scale, `${JSON.stringify(pool)}: worst difference ${worst} (scale ${scale})`);
    } finally {
      await above.dispose();
      await below.dispose();
      await backbone.dispose();
    }
  }
});

test('a grid-pooling head (the default recipe\'s kind) fine-tunes on the same once-per-image features, spilled or not', async () => {
  const grid = { inputSize: [150, 150] as [number, number], head: parseHeadSpec('avgpool:3:2,flatten,dense:8:relu,dropout:0.2') };
  const fits = options('grid', grid);
  const inMemory = await trainClassifier(fits);
  assert.deepEqual(inMemory.history.phase, [1, 2, 2]);
  const computed = fits.lines.filter((l) => /computed once/.test(l)).map((l) => l.replace(/ \(.*/, ''));
  assert.deepEqual(computed, ['Validation features of 6 images at mixed6 computed once', 'Training features of 12 images at mixed6 computed once'], fits.lines.join('\n'));
  assert.ok(fits.lines.some((l) => /pooled in the backbone to \(None, 3, 3, 768\)/.test(l)), fits.lines.join('\n'));
  const spilled = options('grid-spilled', { ...grid, memoryBudget: 1000 });
  const onDisk = await trainClassifier(spilled);
  assert.deepEqual(onDisk.history, inMemory.history);
  assert.deepEqual((await readdir(join(root, 'grid-spilled', 'features'))).sort(), ['training-mixed6.features', 'training.features', 'validation-mixed6.features', 'validation.features']);
});

test('views fine-tuning keeps its views and validation features at the layer within the memory budget: spilled, the same history', async () => {
  const views = { mode: { kind: 'views', views: 2 } as const, fineTune: { from: 'mixed6', epochs: 1, learningRate: 1e-4 } };
  const inMemory = await trainClassifier(options('views', views));
  assert.deepEqual(inMemory.history.phase, [1, 2]);
  assert.deepEqual(await readdir(join(root, 'views')).then((names) => names.includes('features')), false);
  const spilled = options('views-spilled', { ...views, memoryBudget: 1000 });
  const onDisk = await trainClassifier(spilled);
  assert.deepEqual(onDisk.history, inMemory.history);
  assert.deepEqual(onDisk.metrics, inMemory.metrics);
  assert.deepEqual((await readdir(join(root, 'views-spilled', 'features'))).sort(), ['training-mixed6.features', 'training.features', 'validation-mixed6.features', 'validation.features']);
  assert.ok(spilled.lines.some((l) => /The training-mixed6 features .* are kept on disk/.test(l)), spilled.lines.join('\n'));
});
