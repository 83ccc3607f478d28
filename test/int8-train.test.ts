/**
 * --backbone-precision int8 end to end on a few lab photos: the run calibrates, records the
 * precision (settings, model metadata, a QDQ model.onnx), refuses a resume with the other
 * precision, and predict runs the int8 graph whichever export it is given.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFile, mkdir, mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import onnxProto from 'onnx-proto';
import { trainClassifier, type TrainOptions } from '../src/learner.js';
import { parseHeadSpec } from '../src/model/head-spec-parse.js';
import { loadClassifier } from '../src/model/saved-classifier.js';
import { kerasToOnnx } from '../src/backbone/onnx/convert.js';
import { createOrtExtractor } from '../src/backbone/engine.js';
import { loadTfjsLayersModel } from '../src/backbone/weights/tfjs-layers.js';
import { sharedInceptionWeightsDir, sharedLabDataDir } from '../src/util/paths.js';
import { loadImages } from './support/images.js';

const root = await mkdtemp(join(tmpdir(), 'graft-int8-train-'));
test.after(() => rm(root, { recursive: true, force: true }));
for (const split of ['train', 'validation'] as const) {
  for (const cls of ['cats', 'dogs']) {
    const from = join(sharedLabDataDir(), split, cls);
    await mkdir(join(root, 'data', split, cls), { recursive: true });
    for (const f of (await readdir(from)).sort().slice(0, 4)) await copyFile(join(from, f), join(root, 'data', split, cls, f));
  }
}

const options = (extra: Partial<TrainOptions> = {}): TrainOptions => ({
  data: join(root, 'data'),
  out: join(root, 'run'),
  recipe: 'lab',
  mode: { kind: 'cached' },
  weights: sharedInceptionWeightsDir('fp32'),
  head: parseHeadSpec('flatten,dense:8:relu,dense:1:sigmoid'),
  batchSize: 4,
  epochs: 1,
  seed: 3,
  log: () => {},
  ...extra,
});

test('an int8 run calibrates, records its precision, refuses a resume in fp32, and predict follows the int8 model', async () => {
  const lines: string[] = [];
  await trainClassifier(options({ backbonePrecision: 'int8', log: (l) => lines.push(l) }));
  assert.ok(lines.includes('Calibrating the int8 backbone on 8 training images'), lines.join('\n'));
  const run = join(root, 'run');

  const modelJson = JSON.parse(await readFile(join(run, 'model', 'model.json'), 'utf8'));
  const info = modelJson.userDefinedMetadata.graft;
  assert.equal(info.backbonePrecision, 'int8');
  assert.ok(Object.keys(info.int8Calibration).length > 50, 'the calibrated ranges are saved with the model');
  assert.ok(modelJson.weightsManifest[0].weights.every((w: { dtype: string }) => w.dtype === 'float32'), 'the TF.js weights stay float32');
  const onnx = onnxProto.onnx.ModelProto.decode(await readFile(join(run, 'model.onnx')));
  assert.equal(JSON.parse(onnx.metadataProps!.find((p) => p.key === 'graft')!.value!).backbonePrecision, 'int8');
  assert.ok(onnx.graph!.node!.filter((n) => n.opType === 'QuantizeLinear').length > 50, 'model.onnx is the QDQ graph');

  await assert.rejects(
    trainClassifier(options({ resume: true, epochs: 2 })),
    /cannot resume the run in .*run with other settings \(backbone precision int8, now fp32\)/,
  );

  // predict: the run folder (model.onnx) and the TF.js folder alone (quantised again from the
  // recorded ranges) give the same probabilities, unlike the same weights in fp32.
  const photos = (await readdir(join(root, 'data', 'validation', 'cats'))).map((f) => join(root, 'data', 'validation', 'cats', f));
  const x = await loadImages(photos, 150, 150);
  const fromRun = await loadClassifier(run);
  const fromTfjs = await loadClassifier(join(run, 'model'));
  const a = await fromRun.run(x, photos.length);
  const b = await fromTfjs.run(x, photos.length);
  await fromRun.dispose();
  await fromTfjs.dispose();
  const { graph, weights } = await loadTfjsLayersModel(join(run, 'model'));
  const fp32 = await createOrtExtractor(kerasToOnnx(graph, weights, { inputSize: [150, 150] }), [150, 150, 3], [1]);
  const c = await fp32.extract(x, photos.length);
  await fp32.dispose();
  assert.deepEqual([...b], [...a]);
  assert.notDeepEqual([...c], [...a], 'the fp32 graph gives other probabilities');
  for (let i = 0; i < a.length; i++) assert.ok(Math.abs(a[i]! - c[i]!) < 0.1, `int8 close to fp32: ${a[i]} vs ${c[i]}`);
});
