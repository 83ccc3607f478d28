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
import { trainClassifier, type TrainOptions } from '../src/learner.js';

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
