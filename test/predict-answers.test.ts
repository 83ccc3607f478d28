/** Answers a program can use: top-k, a threshold below which the answer is 'unknown', and test-time augmentation. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { mirrorImages, predictFiles, type LoadedClassifier, type Prediction } from '../src/model/saved-classifier.js';
import { answer, checkAnswerOptions } from '../src/model/answers.js';
import { LAB_HEAD } from '../src/model/head-spec.js';

test('mirrorImages flips each image left to right, pixels whole', () => {
  // Two 2x3 images, pixel value = 100*image + 10*row + column, the same in the 3 channels.
  const px = (b: number, y: number, x: number) => 100 * b + 10 * y + x;
  const input = new Float32Array(2 * 2 * 3 * 3);
  for (let b = 0; b < 2; b++) for (let y = 0; y < 2; y++) for (let x = 0; x < 3; x++) for (let c = 0; c < 3; c++) input[((b * 2 + y) * 3 + x) * 3 + c] = px(b, y, x) + c / 10;
  mirrorImages(input, 2, 2, 3);
  for (let b = 0; b < 2; b++) for (let y = 0; y < 2; y++) for (let x = 0; x < 3; x++) for (let c = 0; c < 3; c++) {
    assert.ok(Math.abs(input[((b * 2 + y) * 3 + x) * 3 + c]! - (px(b, y, 2 - x) + c / 10)) < 1e-4);
  }
});

test('top-k lists the most probable classes; below the threshold the answer is unknown', () => {
  const p: Prediction = { file: 'a.jpg', classIndex: 2, className: 'c', probability: 0.5, probabilities: [0.2, 0.3, 0.5] };
  assert.deepEqual(answer(p, ['a', 'b', 'c'], { topK: 2 }), { file: 'a.jpg', class: 'c', probability: 0.5, top: [{ class: 'c', probability: 0.5 }, { class: 'b', probability: 0.3 }] });
  assert.deepEqual(answer(p, ['a', 'b', 'c'], { threshold: 0.6 }), { file: 'a.jpg', class: 'unknown', probability: 0.5, bestClass: 'c' });
  assert.equal(answer(p, ['a', 'b', 'c'], { threshold: 0.5 }).class, 'c');
  assert.equal(answer(p, ['a', 'b', 'c'], { topK: 9 }).top!.length, 3);
  assert.throws(() => checkAnswerOptions({ topK: 0 }), /top-k/);
  assert.throws(() => checkAnswerOptions({ threshold: 2 }), /threshold/);
});

test("tta: each image's probabilities are the mean of the image's and its mirror's", async () => {
  const dir = await mkdtemp(join(tmpdir(), 'graft-tta-'));
  try {
    // A left-right gradient and its mirror; a stand-in network whose answer depends on which side is bright.
    const w = 8, h = 4;
    const ramp = Buffer.alloc(w * h * 3);
    for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) ramp.fill(x * 30, (y * w + x) * 3, (y * w + x + 1) * 3);
    const file = join(dir, 'ramp.png');
    await sharp(ramp, { raw: { width: w, height: h, channels: 3 } }).png().toFile(file);
    const calls: number[] = [];
    const model: LoadedClassifier = {
      info: { format: 'graft-classifier', version: 1, classes: ['left', 'right'], classMode: 'binary', inputSize: [h, w], preprocess: 'rescale', interpolation: 'nearest', cut: 'mixed7', head: LAB_HEAD, backbone: 'x', trainingMode: 'cached' },
      source: 'stand-in',
      run: async (input, n) => {
        calls.push(n);
        const out = new Float32Array(n);
        // p = 0.5 + 0.4 * (mean of the left half - mean of the right half), in [0.1, 0.9].
        for (let b = 0; b < n; b++) {
          let left = 0, right = 0;
          for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) for (let c = 0; c < 3; c++) {
            const v = input[((b * h + y) * w + x) * 3 + c]!;
            if (x < w / 2) left += v; else right += v;
          }
          out[b] = 0.5 + (0.4 * (left - right)) / ((w / 2) * h * 3);
        }
        return out;
      },
      dispose: async () => {},
    };
    const [plain] = await predictFiles(model, [file]);
    const [tta] = await predictFiles(model, [file, file], { tta: true });
    assert.ok(plain!.probabilities[1]! < 0.5, `the bright right side gives p(right) = ${plain!.probabilities[1]} < 0.5`);
    const mirroredP = 1 - plain!.probabilities[1]!; // the stand-in is antisymmetric around 0.5
    assert.ok(Math.abs(tta!.probabilities[1]! - (plain!.probabilities[1]! + mirroredP) / 2) < 1e-6);
    assert.ok(Math.abs(tta!.probabilities[1]! - 0.5) < 1e-6);
    assert.deepEqual(calls, [1, 2, 2], 'tta runs the network twice per batch');
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
