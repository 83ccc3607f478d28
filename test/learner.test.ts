/**
 * End to end on a small real dataset (a few lab photos): train, checkpoint, resume, evaluate,
 * export, and load the exports back in onnxruntime and in plain @tensorflow/tfjs.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFile, cp, mkdir, mkdtemp, readFile, readdir, rm, symlink, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { trainClassifier, type TrainOptions } from '../src/learner.js';
import { parseHeadSpec } from '../src/model/head-spec-parse.js';
import { loadClassifier, predictFiles, predictImages } from '../src/model/saved-classifier.js';
import { evaluateFolder } from '../src/evaluate/evaluate-folder.js';
import { loadTfjsLayersModel } from '../src/backbone/weights/tfjs-layers.js';
import { sharedInceptionWeightsDir, sharedLabDataDir } from '../src/util/paths.js';
import { readHistory } from '../src/export/history-io.js';
import { decodeImage } from '../src/data/decode.js';
import { inspectDataset } from '../src/data/inspect.js';
import { loadLayersModelFromDir, tf, useWasm } from './support/tfjs-reference.js';

const PER_CLASS = { train: 8, validation: 4 };

/**
 * A lab-layout folder with the first few photos of each class, plus a junk file posing as a JPEG
 * and, in each split, one photo as WebP (a format flow_from_directory leaves out).
 */
async function makeDataset(): Promise<string> {
  const root = await mkdtemp(join(tmpdir(), 'graft-learner-'));
  for (const split of ['train', 'validation'] as const) {
    for (const cls of ['cats', 'dogs']) {
      const from = join(sharedLabDataDir(), split, cls);
      const to = join(root, 'data', split, cls);
      await mkdir(to, { recursive: true });
      const files = (await readdir(from)).sort().slice(0, PER_CLASS[split]);
      for (const f of files) await copyFile(join(from, f), join(to, f));
    }
  }
  await writeFile(join(root, 'data', 'train', 'cats', 'zz-not-an-image.jpg'), '<html>this is a web page</html>');
  for (const split of ['train', 'validation']) {
    const photo = join(root, 'data', split, 'dogs', (await readdir(join(root, 'data', split, 'dogs'))).sort()[0]!);
    await sharp(photo).webp().toFile(join(root, 'data', split, 'dogs', 'as-webp.webp'));
  }
  return root;
}

function options(root: string, out: string, extra: Partial<TrainOptions> = {}): TrainOptions {
  return {
    data: join(root, 'data'),
    out: join(root, out),
    // These tests were written to the lab's settings (150x150, faithful, augmented).
    recipe: 'lab',
    weights: sharedInceptionWeightsDir('fp32'),
    head: parseHeadSpec('flatten,dense:8:relu,dropout:0.2,dense:1:sigmoid'),
    batchSize: 4,
    epochs: 2,
    seed: 7,
    optimizer: { kind: 'rmsprop', learningRate: 1e-4 },
    verbose: 2,
    log: () => {},
    ...extra,
  };
}

const root = await makeDataset();
test.after(() => rm(root, { recursive: true, force: true }));

test('faithful training writes history, plots, metrics, checkpoint and a model that reloads with the same predictions', async () => {
  const lines: string[] = [];
  const result = await trainClassifier(options(root, 'run', { log: (l) => lines.push(l) }));
  const out = join(root, 'run');

  // The junk file was skipped with a warning naming it; training went on.
  assert.ok(lines.some((l) => l.includes('zz-not-an-image.jpg')), 'a warning names the bad file');
  assert.ok(lines.some((l) => /^warning: 1 image in .*train ignored \(1 \.webp\)/.test(l)), 'a warning counts the WebP photo left out');
  assert.ok(lines.some((l) => /^Epoch 2\/2 - \d+s - loss: [\d.]+ - accuracy: [\d.]+ - val_loss: [\d.]+ - val_accuracy: [\d.]+/.test(l)));

  const history = await readHistory(join(out, 'history.json'));
  for (const key of ['loss', 'accuracy', 'val_loss', 'val_accuracy'] as const) {
    assert.equal(history[key].length, 2);
    assert.ok(history[key].every(Number.isFinite));
  }
  assert.deepEqual(history, result.history);
  for (const f of ['accuracy.png', 'loss.png']) {
    const meta = await sharp(join(out, f)).metadata();
    assert.equal(meta.format, 'png');
  }
  const metrics = JSON.parse(await readFile(join(out, 'metrics.json'), 'utf8'));
  assert.equal(metrics.count, 2 * PER_CLASS.validation);
  assert.ok(Math.abs(metrics.accuracy - history.val_accuracy[1]!) < 1e-9, 'metrics.json agrees with the last epoch');
  assert.ok(existsSync(join(out, 'report.txt')));
  assert.ok(existsSync(join(out, 'checkpoint', 'checkpoint.json')));

  // The exported classifier, run by onnxruntime, reproduces the final validation metrics.
  const model = await loadClassifier(out);
  try {
    assert.deepEqual(model.info.classes, ['cats', 'dogs']);
    const evaluation = await evaluateFolder(model, join(root, 'data'));
    assert.equal(evaluation.metrics.count, 2 * PER_CLASS.validation);
    assert.equal(evaluation.warnings.length, 1);
    assert.match(evaluation.warnings[0]!, /1 image in .*validation ignored \(1 \.webp\)/);
    // New photos of one class only: labels still follow the model's classes.
    const onlyDogs = join(root, 'only-dogs');
    await mkdir(onlyDogs, { recursive: true });
    await cp(join(root, 'data', 'validation', 'dogs'), join(onlyDogs, 'dogs'), { recursive: true });
    const dogs = await evaluateFolder(model, onlyDogs);
    assert.equal(dogs.metrics.count, PER_CLASS.validation);
    assert.deepEqual(dogs.metrics.confusion[0], [0, 0]);
    assert.equal(dogs.metrics.confusion[1]!.reduce((a, b) => a + b, 0), PER_CLASS.validation);
    assert.ok(dogs.warnings.some((w) => /lacks classes of the model: cats/.test(w)));
    assert.ok(Math.abs(evaluation.metrics.loss - history.val_loss[1]!) < 1e-4, `loss ${evaluation.metrics.loss} vs ${history.val_loss[1]}`);
    assert.equal(evaluation.metrics.accuracy, history.val_accuracy[1]);

    // Plain @tensorflow/tfjs loads model/ as a browser would and gives graft's predictions.
    const files = evaluation.files.slice(0, 4);
    const ours = await predictFiles(model, files);
    // The same images from memory (an upload, say) give the same predictions; bad bytes are named.
    const bad: string[] = [];
    const fromMemory = await predictImages(
      model,
      [...(await Promise.all(files.map(async (f, i) => ({ name: `upload-${i}`, bytes: new Uint8Array(await readFile(f)) })))), { name: 'junk-upload', bytes: new TextEncoder().encode('<html>') }],
      { onBadImage: (name, reason) => bad.push(`${name}: ${reason}`) },
    );
    assert.deepEqual(fromMemory.map((p) => p.probabilities), ours.map((p) => p.probabilities));
    assert.deepEqual(fromMemory.map((p) => p.file), files.map((_, i) => `upload-${i}`));
    assert.deepEqual(bad, ['junk-upload: an HTML page, not an image (a saved web page?)']);
    // Batches of 3 (decoded while the one before runs), bad images among them: the same results,
    // and the bad ones reported in input order.
    const junk = (name: string) => ({ name, bytes: new TextEncoder().encode(`not a picture: ${name}`) });
    const mixed = [junk('first'), ...files.slice(0, 2), junk('middle'), ...files.slice(2), junk('last')];
    const order: string[] = [];
    const small = await predictImages(model, mixed, { batchSize: 3, onBadImage: (name) => order.push(name) });
    assert.deepEqual(order, ['first', 'middle', 'last']);
    assert.deepEqual(small.map((p) => p.probabilities), ours.map((p) => p.probabilities));
    // Without onBadImage the first bad image in input order throws, whichever batch it is in.
    await assert.rejects(predictImages(model, [...files.slice(0, 3), junk('late'), files[3]!, junk('later')], { batchSize: 2 }), /late: a text file, not an image/);
    await useWasm();
    const tfModel = await loadLayersModelFromDir(join(out, 'model'));
    // What a browser app reads from the model to prepare its input (the README's recipe).
    const meta = (tfModel.getUserDefinedMetadata() as { graft: { classes: string[]; inputSize: [number, number]; preprocess: string } }).graft;
    assert.deepEqual(meta.classes, ['cats', 'dogs']);
    assert.deepEqual(meta.inputSize, [150, 150]);
    assert.equal(meta.preprocess, 'rescale');
    // No local path ships with the model: the weights are named by file.
    assert.equal((meta as unknown as { backbone: string }).backbone, 'inceptionv3_imagenet_mixed7_fp32/model.json');
    const [h, w] = meta.inputSize;
    // The same pixels graft decodes: this compares the two runtimes, not two decoders.
    const pixels = await Promise.all(files.map((f) => decodeImage(f, { width: w, height: h })));
    const input = new Float32Array(files.length * h * w * 3);
    pixels.forEach((p, i) => input.set(Float32Array.from(p, (v) => v / 255), i * p.length));
    const theirs = (await (tfModel.predict(tf.tensor4d(input, [files.length, h, w, 3])) as tf.Tensor).data()) as Float32Array;
    ours.forEach((p, i) => assert.ok(Math.abs(p.probabilities[1]! - theirs[i]!) < 1e-4, `${files[i]}: graft ${p.probabilities[1]} vs tfjs ${theirs[i]}`));
    tfModel.dispose();
  } finally {
    await model.dispose();
  }
  // model/model.json named directly is its folder (converted in memory: it gives the same predictions).
  const fromJson = await loadClassifier(join(out, 'model', 'model.json'));
  try {
    assert.equal(fromJson.source, join(out, 'model'));
    const again = await evaluateFolder(fromJson, join(root, 'data'));
    assert.ok(Math.abs(again.metrics.loss - history.val_loss[1]!) < 1e-4);
    await assert.rejects(predictFiles(fromJson, again.files.slice(0, 1), { batchSize: 0 }), /predictFiles: batchSize must be a positive integer, got 0/);
  } finally {
    await fromJson.dispose();
  }
  await assert.rejects(predictFiles(fromJson, [join(root, 'data', 'validation', 'cats', (await readdir(join(root, 'data', 'validation', 'cats'))).sort()[0]!)]), /the classifier .*model was disposed: load it again/);
  // A torn model.onnx: the error names it.
  const torn = join(root, 'torn');
  await mkdir(torn, { recursive: true });
  await writeFile(join(torn, 'model.onnx'), (await readFile(join(out, 'model.onnx'))).subarray(0, 200_000));
  await assert.rejects(loadClassifier(join(torn, 'model.onnx')), /torn\/model\.onnx/);
  // A file that only parses as an empty protobuf is not mistaken for a model without metadata.
  await assert.rejects(loadClassifier(join(out, 'report.txt')), /report\.txt: not an ONNX model/);
  await writeFile(join(root, 'empty.onnx'), '');
  await assert.rejects(loadClassifier(join(root, 'empty.onnx')), /empty\.onnx: not an ONNX model \(no graph in it\)/);

  // The frozen backbone left training bit-identical to the weights it was loaded from.
  const exported = await loadTfjsLayersModel(join(out, 'model'));
  const original = await loadTfjsLayersModel(sharedInceptionWeightsDir('fp32'));
  let compared = 0;
  for (const [key, w] of original.weights) {
    const e = exported.weights.get(key);
    assert.ok(e, `exported model lacks ${key}`);
    assert.ok(Buffer.from(e.data.buffer, e.data.byteOffset, e.data.byteLength).equals(Buffer.from(w.data.buffer, w.data.byteOffset, w.data.byteLength)), `${key} changed`);
    compared++;
  }
  assert.equal(compared, 280);
});

test('a run stopped after epoch 1 and resumed ends exactly where an uninterrupted run ends', async () => {
  const straight = await trainClassifier(options(root, 'straight', { mode: { kind: 'faithful' } }));
  await trainClassifier(options(root, 'resumed', { epochs: 1 }));
  const lines: string[] = [];
  const resumed = await trainClassifier(options(root, 'resumed', { resume: true, log: (l) => lines.push(l) }));
  assert.ok(lines.some((l) => l.startsWith('Resuming from the checkpoint of epoch 1/2')));
  assert.deepEqual(resumed.history, straight.history);
  const a = await loadTfjsLayersModel(join(root, 'straight', 'model'));
  const b = await loadTfjsLayersModel(join(root, 'resumed', 'model'));
  for (const key of ['dense/kernel', 'dense/bias', 'dense_1/kernel', 'dense_1/bias']) {
    assert.deepEqual(b.weights.get(key)!.data, a.weights.get(key)!.data, key);
  }

  // An interrupt before the first epoch stops at the next stage, leaving the run folder as it was.
  const before = await readFile(join(root, 'resumed', 'checkpoint', 'checkpoint.json'), 'utf8');
  const early = new AbortController();
  early.abort();
  await assert.rejects(
    trainClassifier(options(root, 'resumed', { resume: true, signal: early.signal, onEpochEnd: () => assert.fail('no epoch should run') })),
    /interrupted while loading the backbone, before training started; nothing in .*resumed was changed/,
  );
  assert.equal(await readFile(join(root, 'resumed', 'checkpoint', 'checkpoint.json'), 'utf8'), before);

  // A resume must be the same run: other settings or data are refused before any work, each named.
  const refused = (extra: Partial<TrainOptions>) => trainClassifier(options(root, 'resumed', { resume: true, onEpochEnd: () => assert.fail('no epoch should run'), ...extra }));
  await assert.rejects(refused({ preprocess: 'inception' }), /cannot resume the run in .*resumed with other settings \(preprocess rescale, now inception\): resume with the settings it was started with, or pass overwrite: true/);
  await assert.rejects(refused({ mode: { kind: 'cached' } }), /other settings \(mode faithful, now cached; augmentation .*\)/);
  await assert.rejects(refused({ epochs: 1 }), /resumed has 2 epochs done, more than the 1 asked for: resume with epochs: 2 or more/);
  // The same readable images in a moved folder, the unreadable file gone: the same run.
  const moved = join(root, 'moved');
  await cp(join(root, 'data'), moved, { recursive: true });
  await rm(join(moved, 'train', 'cats', 'zz-not-an-image.jpg'));
  const again = await trainClassifier(options(root, 'resumed', { resume: true, data: moved }));
  assert.deepEqual(again.history, straight.history);
  // One image fewer is other data: refused once the images are read, before any feature.
  // The refusal names the file that went.
  const gone = (await readdir(join(moved, 'train', 'cats'))).sort()[0]!;
  await rm(join(moved, 'train', 'cats', gone));
  await assert.rejects(
    refused({ data: moved }),
    new RegExp(`other settings \\(training images 16 images, digest \\w+, now 15 images, digest \\w+ \\(gone: cats/${gone.replace(/\./g, '\\.')}\\)\\): resume with the settings`),
  );
  assert.equal(await readFile(join(root, 'resumed', 'checkpoint', 'checkpoint.json'), 'utf8'), before);
});

test('cached and views feeds train too, with a GlobalAveragePooling head on three classes', async () => {
  // Three classes: cats, dogs and "both" (a copy of some of each), to exercise softmax.
  const three = join(root, 'three');
  for (const split of ['train', 'validation']) {
    for (const cls of ['cats', 'dogs']) {
      await mkdir(join(three, split, cls), { recursive: true });
      await mkdir(join(three, split, 'mixed'), { recursive: true });
      const files = (await readdir(join(root, 'data', split, cls))).filter((f) => f.endsWith('.jpg') && !f.startsWith('zz'));
      for (const [i, f] of files.entries()) await copyFile(join(root, 'data', split, cls, f), join(three, split, i % 2 ? cls : 'mixed', f));
    }
  }
  for (const mode of [{ kind: 'cached' } as const, { kind: 'views', views: 2 } as const]) {
    const result = await trainClassifier({
      ...options(root, `three-${mode.kind}`),
      data: three,
      head: parseHeadSpec('gap,dense:16:relu'),
      mode,
      optimizer: { kind: 'adam', learningRate: 1e-3 },
    });
    assert.deepEqual(result.classes, ['cats', 'dogs', 'mixed']);
    assert.equal(result.metrics.numClasses, 3);
    assert.equal(result.history.loss.length, 2);
    const model = await loadClassifier(result.onnxFile);
    try {
      const preds = await predictFiles(model, [join(three, 'validation', 'cats', (await readdir(join(three, 'validation', 'cats')))[0]!)]);
      assert.equal(preds[0]!.probabilities.length, 3);
      assert.ok(Math.abs(preds[0]!.probabilities.reduce((a, b) => a + b, 0) - 1) < 1e-5);
    } finally {
      await model.dispose();
    }
  }
});

test("orientation 'exif': phone photos are turned upright for training, and the saved model does the same in prediction", async () => {
  // Every image as a PNG (lossless), half of each class stored sideways with an EXIF tag that turns it upright.
  const phone = join(root, 'phone');
  const upright: string[] = [];
  const tagged: string[] = [];
  for (const split of ['train', 'validation']) {
    for (const cls of ['cats', 'dogs']) {
      await mkdir(join(phone, split, cls), { recursive: true });
      const files = (await readdir(join(root, 'data', split, cls))).filter((f) => f.endsWith('.jpg') && !f.startsWith('zz'));
      for (const [i, f] of files.entries()) {
        const from = join(root, 'data', split, cls, f);
        const to = join(phone, split, cls, f.replace(/\.jpg$/, '.png'));
        if (i % 2 === 0) {
          await sharp(from).png().toFile(to);
          continue;
        }
        // Stored rotated 90 degrees anticlockwise; EXIF orientation 6 says "turn 90 clockwise to show".
        await sharp(from).rotate(-90).png().withMetadata({ orientation: 6 }).toFile(to);
        if (split === 'validation') {
          tagged.push(to);
          upright.push(join(root, `upright-${cls}-${i}.png`));
          await sharp(from).png().toFile(upright.at(-1)!);
        }
      }
    }
  }
  const report = await inspectDataset(phone);
  assert.equal(report.rotated, 12);
  assert.ok(report.warnings.some((w) => w.startsWith('12 images carry an EXIF rotation (as phone photos do)') && w.endsWith("orientation: 'exif' turns them upright in training and prediction alike")), report.warnings.join(' | '));

  const result = await trainClassifier({ ...options(root, 'phone-run'), data: phone, mode: { kind: 'cached' }, epochs: 1, head: parseHeadSpec('gap,dense:8:relu'), orientation: 'exif' });
  // Resuming it without the setting would decode the rest of the run otherwise: refused.
  await assert.rejects(
    trainClassifier({ ...options(root, 'phone-run'), data: phone, mode: { kind: 'cached' }, epochs: 2, head: parseHeadSpec('gap,dense:8:relu'), resume: true }),
    /other settings \(orientation exif, now ignore\)/,
  );
  const model = await loadClassifier(result.out);
  try {
    assert.equal(model.info.orientation, 'exif');
    const json = JSON.parse(await readFile(join(result.modelDir, 'model.json'), 'utf8'));
    assert.equal(json.userDefinedMetadata.graft.orientation, 'exif');
    // The sideways files are classified exactly as their upright twins.
    const a = await predictFiles(model, tagged);
    const b = await predictFiles(model, upright);
    assert.deepEqual(a.map((p) => p.probabilities), b.map((p) => p.probabilities));
  } finally {
    await model.dispose();
  }
  // Keras's way (the default) saves nothing, and sees the stored pixels: other probabilities.
  const plain = await trainClassifier({ ...options(root, 'phone-plain'), data: phone, mode: { kind: 'cached' }, epochs: 1, head: parseHeadSpec('gap,dense:8:relu') });
  const keras = await loadClassifier(plain.out);
  try {
    assert.equal(keras.info.orientation, undefined);
    const a = await predictFiles(keras, tagged);
    const b = await predictFiles(keras, upright);
    assert.notDeepEqual(a.map((p) => p.probabilities), b.map((p) => p.probabilities));
  } finally {
    await keras.dispose();
  }
});

test('a class whose every file is unreadable: refused when it leaves one class, a warning when others remain', async () => {
  const odd = join(root, 'odd');
  await mkdir(join(odd, 'broken'), { recursive: true });
  await cp(join(root, 'data', 'train', 'cats'), join(odd, 'cats'), { recursive: true });
  await rm(join(odd, 'cats', 'zz-not-an-image.jpg'));
  for (const i of [1, 2, 3, 4]) await writeFile(join(odd, 'broken', `b${i}.jpg`), i === 1 ? '' : 'not a picture');
  const run = (extra: Partial<TrainOptions>) => trainClassifier(options(root, 'odd-run', { data: odd, validationSplit: 0.25, overwrite: true, mode: { kind: 'cached' }, epochs: 1, ...extra }));
  await assert.rejects(run({}), /training needs readable images of at least 2 classes; in .*odd only cats has any \(none of broken could be read\)/);

  await cp(join(root, 'data', 'train', 'dogs'), join(odd, 'dogs'), { recursive: true });
  const lines: string[] = [];
  const result = await run({ log: (l) => lines.push(l), head: parseHeadSpec('gap,dense:4:relu') });
  assert.deepEqual(result.classes, ['broken', 'cats', 'dogs']);
  assert.ok(lines.includes('warning: no readable training images of broken: the model keeps an output for that class but cannot learn it'), lines.join('\n'));
  // Its validation image (the split takes 1 of 4) is unreadable too: validation cannot measure it.
  assert.ok(lines.includes('warning: no readable validation images of broken: validation does not measure that class'), lines.join('\n'));

  // More steps than the images make is refused before decoding, with the most that works.
  await assert.rejects(run({ stepsPerEpoch: 50 }), /50 steps per epoch is more than the 4 batches of 4 that 15 training images make: pass stepsPerEpoch: 4 or fewer/);

  // Validation from two places at once is refused in words about what was given.
  await assert.rejects(run({ validationData: join(root, 'data', 'validation') }), /validationData and validationSplit both give validation data: use one of them/);
  await assert.rejects(
    run({ data: join(root, 'data'), validationSplit: undefined, validationData: join(root, 'data', 'validation') }),
    /data already has a validation folder \(.*validation\): drop validationData, or point data at its training folder/,
  );
  // No validation data at all: a train/ + test/ folder is told how to validate on its test set.
  const trainTest = join(root, 'train-test');
  await cp(join(root, 'data', 'train'), join(trainTest, 'train'), { recursive: true });
  await mkdir(join(trainTest, 'test'));
  await assert.rejects(
    run({ data: trainTest, validationSplit: undefined }),
    /no validation data for .*train-test: .* \(.*train-test\/test is kept unseen as a test set; validationData: '.*train-test\/test' validates on it\)$/,
  );
});

test('a head ending in a linear Dense is warned about: the output layer comes after it', async () => {
  const lines: string[] = [];
  const stop = new AbortController();
  stop.abort();
  await assert.rejects(trainClassifier(options(root, 'linear-end', { head: parseHeadSpec('gap,dense:2'), signal: stop.signal, log: (l) => lines.push(l) })), /interrupted/);
  assert.ok(
    lines.includes('warning: the head ends with dense:2 (linear), so the output layer dense:1:sigmoid is added after it; to make it the output layer, write dense:1:sigmoid'),
    lines.join('\n'),
  );
  // Stopped before writing anything: no empty output folder is left behind.
  assert.ok(!existsSync(join(root, 'linear-end')));
});

test('batches larger than 64 images train (the head trainer is sized to the batch)', async () => {
  const big = join(root, 'big');
  for (const cls of ['cats', 'dogs']) {
    const from = join(sharedLabDataDir(), 'train', cls);
    await mkdir(join(big, 'train', cls), { recursive: true });
    for (const f of (await readdir(from)).sort().slice(0, 36)) await copyFile(join(from, f), join(big, 'train', cls, f));
  }
  await cp(join(root, 'data', 'validation'), join(big, 'validation'), { recursive: true });
  const result = await trainClassifier(options(root, 'big-batch', { data: big, batchSize: 72, epochs: 1, mode: { kind: 'cached' }, head: parseHeadSpec('gap,dense:8:relu') }));
  assert.equal(result.history.loss.length, 1);
  assert.ok(Number.isFinite(result.history.loss[0]));
});

test("a folder with an earlier run's outputs is refused; --overwrite clears graft's files only, as training starts", async () => {
  const out = join(root, 'reused');
  await cp(join(root, 'straight'), out, { recursive: true });
  await writeFile(join(out, 'notes.md'), 'the user keeps notes here');
  await writeFile(join(out, 'checkpoint', 'README'), 'also the user\'s');
  const quick = { epochs: 1, mode: { kind: 'cached' } as const, head: parseHeadSpec('gap,dense:8:relu') };
  await assert.rejects(
    trainClassifier(options(root, 'reused', quick)),
    /reused holds the outputs of an earlier run \(history\.json, accuracy\.png, loss\.png, metrics\.json, report\.txt, model\.onnx, checkpoint\/, model\/\): pass overwrite: true to replace them, resume: true with more epochs to train that run further, or choose another output folder \(out\)/,
  );
  // Nor may a run write into its own images, through a link or not.
  await assert.rejects(
    trainClassifier({ ...options(root, 'unused', quick), out: join(root, 'data', 'train', 'run') }),
    /the output folder .*data\/train\/run is inside the training images folder .*data\/train: choose an output folder \(out\) outside it/,
  );
  await symlink(join(root, 'data'), join(root, 'data-link'));
  await assert.rejects(trainClassifier({ ...options(root, 'unused', quick), out: join(root, 'data-link', 'validation', 'run') }), /is inside the validation images folder/);
  // Resuming and overwriting at once is a contradiction, not a guess.
  await assert.rejects(trainClassifier(options(root, 'reused', { ...quick, resume: true, overwrite: true })), /resume and overwrite cannot go together/);
  // The earlier run's model as the new run's weights would be removed under it.
  await assert.rejects(
    trainClassifier(options(root, 'reused', { ...quick, overwrite: true, weights: join(out, 'model') })),
    /weights .*reused\/model is part of the earlier run that overwrite: true would remove/,
  );
  // An export cut short left its staging folder: graft's debris, cleared too.
  await mkdir(join(out, '.model.1234.abcdef01.tmp'));
  await writeFile(join(out, '.model.1234.abcdef01.tmp', 'model.json'), '{}');
  let seen: string[] = [];
  await trainClassifier(options(root, 'reused', { ...quick, overwrite: true, onEpochEnd: async () => void (seen = await readdir(out)) }));
  // During training only this run's files are there, and the user's own, untouched.
  // (history.json comes with the model and metrics, at the end: one set; graft-run.json records graft's files.)
  assert.deepEqual(seen.sort(), ['.graft.lock', 'checkpoint', 'graft-run.json', 'notes.md']);
  assert.equal(await readFile(join(out, 'notes.md'), 'utf8'), 'the user keeps notes here');
  assert.equal(await readFile(join(out, 'checkpoint', 'README'), 'utf8'), 'also the user\'s');
  // A model/ folder with files graft did not write is refused before any work (the export replaces that folder).
  const foreign = join(root, 'foreign');
  await mkdir(join(foreign, 'model'), { recursive: true });
  await writeFile(join(foreign, 'model', 'mine.txt'), 'x');
  await assert.rejects(trainClassifier(options(root, 'foreign', quick)), /foreign holds files graft did not write where it writes its own \(model\/mine\.txt; there is no graft-run\.json recording a run of graft's\)/);
});

test('trainClassifier refuses options of the wrong type or range at once, naming them', async () => {
  const wrong: [Partial<TrainOptions>, RegExp][] = [
    [{ epochs: 0 }, /trainClassifier: epochs must be a whole number from 1, got 0/],
    [{ epochs: 1.5 }, /epochs must be a whole number from 1, got 1\.5/],
    [{ batchSize: -4 }, /batchSize must be a whole number from 1/],
    [{ mode: 'cached' as never }, /mode must be \{ kind: 'faithful' \}.*got "cached"/],
    [{ mode: { kind: 'views', views: 0 } }, /mode must be .*got \{"kind":"views","views":0\}/],
    [{ inputSize: '150' as never }, /inputSize must be \[height, width\], got "150"/],
    [{ validationSplit: 20 }, /validationSplit must be a fraction between 0 and 1, got 20/],
    [{ preprocess: 'imagenet' as never }, /preprocess must be one of rescale, inception, got "imagenet"/],
    [{ earlyStopping: { patience: -1 } }, /trainClassifier: early stopping's patience must be a whole number of epochs from 0, got -1/],
    [{ earlyStopping: { monitor: 'auc' as never } }, /trainClassifier: early stopping cannot monitor 'auc'/],
  ];
  for (const [extra, message] of wrong) await assert.rejects(trainClassifier(options(root, 'never-written', extra)), message);
  // A head far bigger than memory is refused once the backbone's output size is known, before decoding.
  await assert.rejects(
    trainClassifier(options(root, 'never-written', { head: parseHeadSpec('flatten,dense:1000000:relu') })),
    /the head has 37,634,000,001 weights: with the optimiser's state that is \d+\.\d GB, more than this machine's \d+\.\d GB of memory; use fewer units or a gap head/,
  );
  assert.ok(!existsSync(join(root, 'never-written')));
});

test("a shuffled validation split holds out other images than Keras's first ones, recorded in the checkpoint", async () => {
  const quick = { data: join(root, 'data', 'train'), validationSplit: 0.5, epochs: 1, mode: { kind: 'cached' } as const, head: parseHeadSpec('gap,dense:4:relu') };
  const heldOut = async (out: string) => {
    const meta = JSON.parse(await readFile(join(root, out, 'checkpoint', 'checkpoint.json'), 'utf8')) as { setup: Record<string, { files: string[] }> };
    return meta.setup['validation images']!.files;
  };
  await trainClassifier(options(root, 'split-keras', quick));
  await trainClassifier(options(root, 'split-shuffled', { ...quick, splitOrder: 'shuffled' }));
  const keras = await heldOut('split-keras'), shuffled = await heldOut('split-shuffled');
  // Keras: the first half of each class in sorted order.
  const cats = (await readdir(join(root, 'data', 'train', 'cats'))).filter((f) => f.endsWith('.jpg') && !f.startsWith('zz')).sort();
  assert.deepEqual(keras.filter((f) => f.startsWith('cats/')), cats.slice(0, 4).map((f) => `cats/${f}`));
  assert.equal(shuffled.length, keras.length);
  assert.notDeepEqual(shuffled, keras);
});

test("early stopping with restoreBestWeights: the evaluation and the exported model are the best epoch's; a resume must keep the setting", async () => {
  const quick = { mode: { kind: 'cached' } as const, head: parseHeadSpec('gap,dense:4:relu') };
  // No later epoch can beat the first by 100: stopped after epoch 2 (patience 1), epoch 1's weights kept.
  const earlyStopping = { monitor: 'val_loss', patience: 1, minDelta: 100, restoreBestWeights: true } as const;
  const lines: string[] = [];
  const stopped = await trainClassifier(options(root, 'es', { ...quick, epochs: 5, earlyStopping, log: (l) => lines.push(l) }));
  assert.equal(stopped.history.val_loss.length, 2);
  assert.deepEqual(stopped.end, { stoppedEpoch: 1, restoredEpoch: 0 });
  assert.ok(lines.includes('Epoch 2: early stopping') && lines.includes('Restoring model weights from the end of the best epoch: 1.'), lines.join('\n'));
  assert.equal(stopped.metrics.accuracy, stopped.history.val_accuracy[0]);
  assert.deepEqual(await readHistory(join(root, 'es', 'history.json')), stopped.history, 'history.json keeps every epoch run, as Keras');
  // The same run cut to one epoch, without early stopping, exports the same weights.
  await trainClassifier(options(root, 'one-epoch', { ...quick, epochs: 1 }));
  const a = await loadTfjsLayersModel(join(root, 'es', 'model'));
  const b = await loadTfjsLayersModel(join(root, 'one-epoch', 'model'));
  for (const key of ['dense/kernel', 'dense/bias', 'dense_1/kernel', 'dense_1/bias']) assert.deepEqual(a.weights.get(key)!.data, b.weights.get(key)!.data, key);
  // Resuming the stopped run trains nothing more and exports the same model again.
  const again = await trainClassifier(options(root, 'es', { ...quick, epochs: 5, earlyStopping, resume: true }));
  assert.deepEqual(again.history, stopped.history);
  assert.deepEqual(again.end, stopped.end);
  // Early stopping is part of the run: resuming with other settings, or none, is refused.
  await assert.rejects(
    trainClassifier(options(root, 'one-epoch', { ...quick, epochs: 2, earlyStopping, resume: true })),
    /other settings \(early stopping off, now \{"monitor":"val_loss","patience":1,"minDelta":100,"restoreBestWeights":true\}\)/,
  );
  await assert.rejects(trainClassifier(options(root, 'es', { ...quick, epochs: 5, resume: true })), /other settings \(early stopping \{.*\}, now off\)/);
});
