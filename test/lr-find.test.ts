/** The learning-rate range test (fastai's lr_find): rates, stopping, the valley suggestion and the plot. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFile, mkdir, mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { lrRangeTest, valleyIndex } from '../src/train/lr-range-test.js';
import { HeadTrainer } from '../src/train/head-trainer.js';
import { arrayBatchSource, type ArrayData } from '../src/train/fit.js';
import { initHead } from '../src/model/head.js';
import type { HeadSpec } from '../src/model/head-spec.js';
import { Random } from '../src/util/random.js';
import { findLearningRate } from '../src/lr-finder.js';
import { parseHeadSpec } from '../src/model/head-spec-parse.js';
import { sharedInceptionWeightsDir, sharedLabDataDir } from '../src/util/paths.js';

test("valley: two thirds of the way down the longest falling stretch (fastai's rule)", () => {
  // 10 flat points (skipped as the first tenth of 100), a fall over 30, a rise.
  const losses = [...new Array(10).fill(1), ...Array.from({ length: 30 }, (_, i) => 1 - i / 30), ...Array.from({ length: 20 }, (_, i) => i / 10)];
  const i = valleyIndex(losses, 100);
  assert.ok(i > 10 && i < 40, `index ${i} lies on the fall`);
  // The fall and the rise's first point (0) make a valley of 31 from index -1 (fastai's max_start); -1 + 10 + 5 = 14, after the skipped 10.
  assert.equal(i, 24);
});

const SPEC: HeadSpec = { layers: [{ kind: 'flatten' }, { kind: 'dense', units: 8, activation: 'relu' }, { kind: 'dense', units: 1, activation: 'sigmoid' }] };

function separable(count: number, seed: number): ArrayData {
  const rng = new Random(seed), d = 6;
  const features = new Float32Array(count * d), labels = new Float32Array(count);
  for (let i = 0; i < count; i++) {
    let dot = 0;
    for (let j = 0; j < d; j++) { const v = rng.uniform(-1, 1); features[i * d + j] = v; dot += v * (j - 2.5); }
    labels[i] = dot > 0 ? 1 : 0;
  }
  return { features, labels, count };
}

test('the rate grows exponentially over the steps, the run stops when the loss explodes, the suggestion lies in the range tried', async () => {
  const trainer = await HeadTrainer.create(SPEC, initHead(SPEC, [6], 1), { kind: 'sgd' }, { seed: 1, threads: 2, featureShape: [6] });
  try {
    const r = await lrRangeTest(trainer, arrayBatchSource(separable(64, 2), 8, { seed: 3 }), { startLr: 1e-4, endLr: 1e4, numIt: 80 });
    assert.equal(r.lrs[0], 1e-4);
    for (let i = 1; i < r.lrs.length; i++) assert.ok(Math.abs(r.lrs[i]! / r.lrs[i - 1]! - 10 ** (8 / 80)) < 1e-9);
    assert.equal(r.stopped, 'diverged', `SGD at rates up to 1e4 explodes (${r.lrs.length} steps)`);
    assert.ok(r.lrs.length < 80);
    assert.ok(r.suggestion >= r.lrs[0]! && r.suggestion <= r.lrs.at(-1)!, `suggestion ${r.suggestion}`);
    assert.ok(r.suggestion > 1e-3 && r.suggestion < 1e3, `a sensible rate: ${r.suggestion}`);
  } finally {
    await trainer.dispose();
  }
});

test('graft lr-find on a folder writes the plot and the json, the suggestion inside the range tried', async () => {
  const root = await mkdtemp(join(tmpdir(), 'graft-lrfind-'));
  try {
    for (const cls of ['cats', 'dogs']) {
      await mkdir(join(root, 'data', cls), { recursive: true });
      const from = join(sharedLabDataDir(), 'train', cls);
      for (const f of (await readdir(from)).sort().slice(0, 8)) await copyFile(join(from, f), join(root, 'data', cls, f));
    }
    const out = join(root, 'out');
    const r = await findLearningRate({ data: join(root, 'data'), out, weights: sharedInceptionWeightsDir('fp32'), inputSize: [75, 75], head: parseHeadSpec('gap,dense:8:relu'), batchSize: 4, numIt: 30, startLr: 1e-6, endLr: 1, verbose: 0 });
    const meta = await sharp(r.plotFile).metadata();
    assert.equal(meta.format, 'png');
    assert.equal(meta.width, 640);
    const json = JSON.parse(await readFile(r.jsonFile, 'utf8'));
    assert.equal(json.suggestion, r.suggestion);
    assert.ok(json.learning_rate.length >= 2 && json.learning_rate.length <= 30);
    assert.ok(r.suggestion >= json.learning_rate[0] && r.suggestion <= json.learning_rate.at(-1), `suggestion ${r.suggestion} in [${json.learning_rate[0]}, ${json.learning_rate.at(-1)}]`);
    // The plot marks it: red pixels on the figure.
    const { data, info } = await sharp(r.plotFile).raw().toBuffer({ resolveWithObject: true });
    let red = 0;
    for (let i = 0; i < data.length; i += info.channels) if (data[i]! > 180 && data[i + 1]! < 80 && data[i + 2]! < 80) red++;
    assert.ok(red > 20, `${red} red pixels`);
  } finally {
    await rm(root, { recursive: true, force: true });
  }
});
