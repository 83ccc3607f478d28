/**
 * Fine-tuning end to end on a few lab photos: the second phase trains the block after `from`, its
 * history is marked, a run interrupted in it resumes to the same result, and both exports carry
 * the tuned weights with graft's predictions.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFile, mkdir, mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { trainClassifier, type TrainOptions } from '../src/learner.js';
import { parseHeadSpec } from '../src/model/head-spec-parse.js';
import { loadClassifier, predictFiles } from '../src/model/saved-classifier.js';
import { evaluateFolder } from '../src/evaluate/evaluate-folder.js';
import { loadTfjsLayersModel } from '../src/backbone/weights/tfjs-layers.js';
import { sharedInceptionWeightsDir, sharedLabDataDir } from '../src/util/paths.js';
import { readHistory } from '../src/export/history-io.js';
import { decodeImage } from '../src/data/decode.js';
import { loadLayersModelFromDir, tf, useWasm } from './support/tfjs-reference.js';
import { GraftError } from '../src/util/errors.js';
import { saturatedCachedNote } from '../src/train/finetune/phase.js';

const PER_CLASS = { train: 6, validation: 3 };

async function makeDataset(): Promise<string> {
  const root = await mkdtemp(join(tmpdir(), 'graft-finetune-'));
  for (const split of ['train', 'validation'] as const) {
    for (const cls of ['cats', 'dogs']) {
      const from = join(sharedLabDataDir(), split, cls);
      const to = join(root, 'data', split, cls);
      await mkdir(to, { recursive: true });
      for (const f of (await readdir(from)).sort().slice(0, PER_CLASS[split])) await copyFile(join(from, f), join(to, f));
    }
  }
  return root;
}

const root = await makeDataset();
test.after(() => rm(root, { recursive: true, force: true }));

function options(out: string, extra: Partial<TrainOptions> = {}): TrainOptions {
  return {
    data: join(root, 'data'),
    out: join(root, out),
    // Written to the lab's settings (150x150, rescale, nearest).
    recipe: 'lab',
    weights: sharedInceptionWeightsDir('fp32'),
    head: parseHeadSpec('flatten,dense:8:relu,dropout:0.2,dense:1:sigmoid'),
    batchSize: 4,
    epochs: 1,
    seed: 3,
    mode: { kind: 'cached' },
    optimizer: { kind: 'rmsprop', learningRate: 1e-4 },
    // A rate high enough that two small epochs move the weights visibly.
    fineTune: { from: 'mixed6', epochs: 2, learningRate: 1e-4 },
    verbose: 2,
    log: () => {},
    ...extra,
  };
}

test('cached fine-tuning: history marks the phases, the block after mixed6 is tuned and exported, both exports give graft\'s predictions', async () => {
  const lines: string[] = [];
  const result = await trainClassifier(options('cached', { log: (l) => lines.push(l) }));
  assert.ok(lines.some((l) => /^Fine-tuning the layers after mixed6 up to mixed7: 2,140,032 trainable backbone weights/.test(l)), lines.join('\n'));
  const history = await readHistory(join(root, 'cached', 'history.json'));
  assert.deepEqual(history.phase, [1, 2, 2]);
  assert.deepEqual(history, result.history);

  // The ONNX export (what graft predict/evaluate run) reproduces the last epoch's validation.
  const model = await loadClassifier(join(root, 'cached'));
  try {
    const evaluation = await evaluateFolder(model, join(root, 'data'));
    assert.ok(Math.abs(evaluation.metrics.loss - history.val_loss[2]!) < 1e-4, `loss ${evaluation.metrics.loss} vs ${history.val_loss[2]}`);
    const files = evaluation.files.slice(0, 4);
    const ours = await predictFiles(model, files);
    // The TF.js export, in plain @tensorflow/tfjs, gives the same probabilities.
    await useWasm();
    const tfModel = await loadLayersModelFromDir(join(root, 'cached', 'model'));
    const pixels = await Promise.all(files.map((f) => decodeImage(f, { width: 150, height: 150 })));
    const input = new Float32Array(files.length * 150 * 150 * 3);
    pixels.forEach((p, i) => input.set(Float32Array.from(p, (v) => v / 255), i * p.length));
    const theirs = (await (tfModel.predict(tf.tensor4d(input, [files.length, 150, 150, 3])) as tf.Tensor).data()) as Float32Array;
    ours.forEach((p, i) => assert.ok(Math.abs(p.probabilities[1]! - theirs[i]!) < 1e-4, `${files[i]}: graft ${p.probabilities[1]} vs tfjs ${theirs[i]}`));
    tfModel.dispose();
  } finally {
    await model.dispose();
  }

  // mixed7's kernels and betas moved; everything up to mixed6 and every moving statistic did not.
  const exported = await loadTfjsLayersModel(join(root, 'cached', 'model'));
  const original = await loadTfjsLayersModel(sharedInceptionWeightsDir('fp32'));
  const tunedLayers = new Set(['conv2d_61', 'conv2d_62', 'conv2d_63', 'conv2d_64', 'conv2d_65', 'conv2d_66', 'conv2d_67', 'conv2d_68', 'conv2d_69', 'conv2d_70']
    .flatMap((c) => [c, c.replace('conv2d', 'batch_normalization')]));
  let changed = 0, same = 0;
  for (const [key, w] of original.weights) {
    const e = exported.weights.get(key)!;
    const equal = Buffer.from(e.data.buffer, e.data.byteOffset, e.data.byteLength).equals(Buffer.from(w.data.buffer, w.data.byteOffset, w.data.byteLength));
    const [layer, name] = key.split('/') as [string, string];
    if (tunedLayers.has(layer) && (name === 'kernel' || name === 'beta')) {
      assert.ok(!equal, `${key} was not tuned`);
      changed++;
    } else {
      assert.ok(equal, `${key} changed`);
      same++;
    }
  }
  assert.equal(changed, 20);
  assert.equal(same, 260);
});

test('a run interrupted in the fine-tuning phase resumes to the same history and weights, with Adam, its schedule and class weights too; a bad layer is refused before training', async () => {
  // The schedule runs again over the fine-tuning epochs from the fine-tuning rate (cosine over 2: 1e-4, then half).
  // Adam: its SIMD kernel updates head and segment, and both of its slots go through the checkpoints.
  const scheduled = { lrSchedule: { kind: 'cosine' }, classWeight: { cats: 3, dogs: 1 }, optimizer: { kind: 'adam', learningRate: 1e-4 } } as const;
  const straight = await trainClassifier(options('straight', scheduled));
  assert.deepEqual(straight.history.learning_rate, [1e-4, 1e-4, 5e-5]);
  const stop = new AbortController();
  await assert.rejects(
    trainClassifier(options('resumed', { ...scheduled, signal: stop.signal, onEpochEnd: (epoch) => { if (epoch === 1) stop.abort(); } })),
    /training interrupted in epoch 2/,
  );
  const resumed = await trainClassifier(options('resumed', { ...scheduled, resume: true }));
  assert.deepEqual(resumed.history, straight.history);
  const a = await loadTfjsLayersModel(join(root, 'straight', 'model'));
  const b = await loadTfjsLayersModel(join(root, 'resumed', 'model'));
  for (const key of ['conv2d_70/kernel', 'batch_normalization_70/beta', 'dense/kernel', 'dense_1/bias']) assert.deepEqual(b.weights.get(key)!.data, a.weights.get(key)!.data, key);
  // A fresh run over it is refused, naming the checkpoint; --overwrite clears both phases' checkpoints as it starts.
  await assert.rejects(trainClassifier(options('resumed', scheduled)), /holds the outputs of an earlier run \(.*checkpoint\/.*\): pass overwrite: true/);
  // Another fine-tuning setting is another run.
  await assert.rejects(trainClassifier(options('resumed', { ...scheduled, resume: true, fineTune: { from: 'mixed5', epochs: 2, learningRate: 1e-4 } })), /other settings \(fine-tune/);
  await assert.rejects(trainClassifier(options('bad-layer', { fineTune: { from: 'conv2d_70' } })), (e: unknown) => e instanceof GraftError && /does not split the network/.test(e.message));
  assert.ok(!(await readdir(root)).includes('bad-layer'));
});

test('faithful and views feeds fine-tune too (fresh augmentation below the cut, through the tuned block)', async () => {
  for (const mode of [{ kind: 'faithful' }, { kind: 'views', views: 2 }] as const) {
    const out = `feed-${mode.kind}`;
    const result = await trainClassifier(options(out, { mode, fineTune: { from: 'mixed6', epochs: 1, learningRate: 1e-4 } }));
    assert.deepEqual(result.history.phase, [1, 2]);
    assert.ok(result.history.loss.every(Number.isFinite));
    const model = await loadClassifier(join(root, out));
    try {
      const evaluation = await evaluateFolder(model, join(root, 'data'));
      assert.ok(Math.abs(evaluation.metrics.loss - result.history.val_loss[1]!) < 1e-4, `${mode.kind}: loss ${evaluation.metrics.loss} vs ${result.history.val_loss[1]}`);
    } finally {
      await model.dispose();
    }
  }
});

test('the fine-tuning phase draws new augmentations: its epochs continue the head phase\'s count instead of replaying them', async () => {
  // Both rates ~0 keep the model as it starts, and no dropout: a replayed epoch (same shuffle,
  // same augmented images) would give the head phase's training loss again, to the last digit.
  const still = 1e-12;
  const result = await trainClassifier(options('replay', {
    mode: { kind: 'faithful' },
    head: parseHeadSpec('flatten,dense:8:relu,dense:1:sigmoid'),
    optimizer: { kind: 'rmsprop', learningRate: still },
    fineTune: { from: 'mixed6', epochs: 1, learningRate: still },
  }));
  assert.deepEqual(result.history.phase, [1, 2]);
  const [head, tuned] = result.history.loss as [number, number];
  // The validation loss shows the model did not move; the training loss shows new images.
  assert.ok(Math.abs(result.history.val_loss[0]! - result.history.val_loss[1]!) < 1e-6, `val_loss ${result.history.val_loss}`);
  assert.ok(Math.abs(head - tuned) > 1e-4, `training loss ${head} in the head phase, ${tuned} fine-tuning: the same augmented images`);
});

test('a cached fine-tuning phase after a head that fits its training features gets a note pointing to --mode faithful; others get none', () => {
  const history = (accuracy: number[]) => ({ loss: accuracy.map(() => 0.1), accuracy, val_loss: accuracy.map(() => 0.2), val_accuracy: accuracy });
  const note = saturatedCachedNote({ kind: 'cached' }, history([0.9, 1]));
  assert.match(note ?? '', /accuracy 1\.0000.*--mode faithful/);
  assert.equal(saturatedCachedNote({ kind: 'cached' }, history([1, 0.98])), undefined, 'the last epoch decides');
  assert.equal(saturatedCachedNote({ kind: 'faithful' }, history([1])), undefined);
  assert.equal(saturatedCachedNote({ kind: 'views', views: 4 }, history([1])), undefined);
  assert.equal(saturatedCachedNote({ kind: 'cached' }, history([])), undefined);
});
