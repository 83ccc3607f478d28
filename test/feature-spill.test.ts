/**
 * Features over the memory budget go to a store file in the run folder and train exactly as when
 * they fit; a resume reuses the store; a damaged or stale one is named and rebuilt.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdir, readFile, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { labSubset } from './support/images.js';
import { smallCachedRun } from './support/small-cached-run.js';
import { trainClassifier, type TrainOptions } from '../src/learner.js';
import { loadClassifier, predictEach, predictFiles } from '../src/model/saved-classifier.js';

const root = await labSubset('graft-spill-', { train: 6, validation: 3 });
test.after(() => rm(root, { recursive: true, force: true }));

const options = (out: string, extra: Partial<TrainOptions> = {}) => smallCachedRun(root, out, extra);

test('cached features over the budget are read from disk with the same history; a resume reuses them; damage and other settings are rebuilt', async () => {
  const fits = options('fits');
  const inMemory = await trainClassifier(fits);
  assert.ok(fits.lines.some((l) => /pooled in the backbone to \(None, 768\)/.test(l)), fits.lines.join('\n'));
  assert.equal(fits.lines.some((l) => /memory budget/.test(l)), false);
  await assert.rejects(stat(join(root, 'fits', 'features')), 'features that fit stay in memory');

  const spilled = options('spilled', { memoryBudget: 1000 });
  const onDisk = await trainClassifier(spilled);
  assert.deepEqual(onDisk.history, inMemory.history);
  assert.deepEqual(onDisk.metrics, inMemory.metrics);
  assert.ok(spilled.lines.some((l) => /The training features \(36 KiB\) do not fit in what is left of the memory budget \(1 KiB of 1 KiB\): they are kept on disk in .*spilled\/features\/training\.features/.test(l)), spilled.lines.join('\n'));
  assert.deepEqual((await readdir(join(root, 'spilled', 'features'))).sort(), ['training.features', 'validation.features']);

  // Killed after epoch 1 (here: stopped), resumed: the stores are reused, not computed again.
  await trainClassifier(options('resumed', { memoryBudget: 1000, epochs: 1 }));
  const resume = options('resumed', { memoryBudget: 1000, resume: true });
  const resumed = await trainClassifier(resume);
  assert.deepEqual(resumed.history, inMemory.history);
  assert.ok(resume.lines.some((l) => /Reusing the training features of 12 rows in .*resumed\/features\/training\.features/.test(l)), resume.lines.join('\n'));
  assert.ok(resume.lines.some((l) => /Reusing the validation features/.test(l)));

  // A flipped byte in the training store: detected by its checksum, named, rebuilt; same history.
  const file = join(root, 'resumed', 'features', 'training.features');
  const bytes = await readFile(file);
  bytes[bytes.length - 500]! ^= 0x10;
  await writeFile(file, bytes);
  const damaged = options('resumed', { memoryBudget: 1000, overwrite: true });
  assert.deepEqual((await trainClassifier(damaged)).history, inMemory.history);
  assert.ok(damaged.lines.some((l) => /training\.features cannot be used: it is damaged: rows 0 to 11 fail their checksum; computing it again/.test(l)), damaged.lines.join('\n'));
  assert.ok(damaged.lines.some((l) => /Reusing the validation features/.test(l)), 'the intact validation store is still reused');

  // Other settings (preprocessing): stale, named, rebuilt.
  const stale = options('resumed', { memoryBudget: 1000, overwrite: true, preprocess: 'inception', epochs: 1 });
  await trainClassifier(stale);
  assert.ok(stale.lines.some((l) => /training\.features cannot be used: it holds features of other settings \(preprocess rescale, now inception\); computing it again/.test(l)), stale.lines.join('\n'));

  // The disk runs out (/dev/full answers writes with ENOSPC) as an overwrite computes features:
  // the error says how much and where, and the earlier finished run is intact.
  const before = await readFile(join(root, 'spilled', 'history.json'), 'utf8');
  const model = await readFile(join(root, 'spilled', 'model.onnx'));
  await rm(join(root, 'spilled', 'features', 'training.features'));
  await symlink('/dev/full', join(root, 'spilled', 'features', 'training.features.partial'));
  await assert.rejects(trainClassifier(options('spilled', { memoryBudget: 1000, overwrite: true })), /the disk is full: the feature store .*spilled\/features\/training\.features needs \d+ KiB in .*spilled\/features/);
  assert.equal(await readFile(join(root, 'spilled', 'history.json'), 'utf8'), before);
  assert.deepEqual(await readFile(join(root, 'spilled', 'model.onnx')), model);
});

test('augmented views over the budget (float16 on disk) train as in memory; images and features share one budget', async () => {
  const mode = { kind: 'views', views: 2 } as const;
  const inMemory = await trainClassifier(options('views-fit', { mode, epochs: 1 }));
  // Room for the decoded images (18 of 100x100x3) and the validation features (6 x 768 floats), not the views.
  const budget = 18 * 100 * 100 * 3 + 6 * 768 * 4 + 1000;
  const spilled = options('views-spilled', { mode, epochs: 1, memoryBudget: budget });
  const onDisk = await trainClassifier(spilled);
  assert.deepEqual(onDisk.history, inMemory.history);
  assert.ok(spilled.lines.some((l) => /The training features \(36 KiB\) do not fit in what is left of the memory budget \(1 KiB of 547 KiB\)/.test(l)), spilled.lines.join('\n'));
  assert.equal(spilled.lines.some((l) => /validation features .* memory budget/.test(l)), false, 'the validation features fit');
  assert.deepEqual(await readdir(join(root, 'views-spilled', 'features')), ['training.features']);
});

test('predictEach hands over each prediction and each unreadable image in input order, with progress', async () => {
  const model = await loadClassifier(join(root, 'fits'));
  try {
    const cats = join(root, 'data', 'validation', 'cats');
    const [a, b] = (await readdir(cats)).sort().map((f) => join(cats, f));
    const junk = join(root, 'junk.jpg');
    await writeFile(junk, 'not a picture');
    const events: string[] = [];
    const progress: string[] = [];
    await predictEach(model, [a!, junk, b!, a!], (p) => void events.push(`ok ${p.file}`), {
      batchSize: 3,
      onBadImage: (file) => events.push(`bad ${file}`),
      onProgress: (done, total) => progress.push(`${done}/${total}`),
    });
    assert.deepEqual(events, [`ok ${a}`, `bad ${junk}`, `ok ${b}`, `ok ${a}`]);
    assert.deepEqual(progress, ['3/4', '4/4']);
    assert.deepEqual((await predictFiles(model, [a!, b!])).map((p) => p.file), [a, b]);
  } finally {
    await model.dispose();
  }
});
