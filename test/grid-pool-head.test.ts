/**
 * Grid-pooling heads (`avgpool:POOL:STRIDE,flatten,...`, Keras's AveragePooling2D / MaxPooling2D
 * with padding 'valid'): parsed, sized, trained pooled in the backbone or in the head alike,
 * differentiated for Grad-CAM, and exported so that TF.js and ONNX predict as graft does.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFile, mkdir, mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import type { KerasGraph, WeightMap } from '../src/backbone/keras-graph.js';
import { kerasToOnnx } from '../src/backbone/onnx/convert.js';
import { createOrtExtractor } from '../src/backbone/engine.js';
import { inferShapes } from '../src/backbone/layer-shapes.js';
import { loadBackbone } from '../src/backbone/backbone.js';
import { buildClassifierGraph, headLayerNames } from '../src/model/classifier-graph.js';
import { gridPoolBackward, gridPoolForward, gridShape } from '../src/model/grid-pool.js';
import { backbonePooling, denseShapes, headInputSize, headToWeightMap, initHead } from '../src/model/head.js';
import { classScoreGradient, headForward } from '../src/model/head-gradient.js';
import { formatHeadSpec, parseHeadSpec } from '../src/model/head-spec-parse.js';
import type { GridPoolSpec } from '../src/model/head-spec.js';
import { writeTfjsLayersModel } from '../src/export/tfjs-layers.js';
import { HeadTrainer } from '../src/train/head-trainer.js';
import { arrayBatchSource, fit, type ArrayData } from '../src/train/fit.js';
import { GraftError } from '../src/util/errors.js';
import { sharedInceptionWeightsDir, sharedLabDataDir } from '../src/util/paths.js';
import { trainClassifier } from '../src/learner.js';
import { loadClassifier, predictFiles } from '../src/model/saved-classifier.js';
import { loadExplainer } from '../src/model/grad-cam.js';
import { Random } from '../src/util/random.js';
import { loadLayersModelFromDir, useWasm } from './support/tfjs-reference.js';

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.equal(a.length, b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

function randomArray(rng: Random, n: number, limit = 1): Float32Array {
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = rng.uniform(-limit, limit);
  return a;
}

test('grid pooling heads parse, print back, and size their first Dense layer as Keras does', () => {
  const spec = parseHeadSpec('avgpool:7:5,flatten,dense:256:relu,dropout:0.2');
  assert.deepEqual(spec.layers.slice(0, 2), [{ kind: 'avgpool', pool: 7, stride: 5 }, { kind: 'flatten' }]);
  assert.equal(formatHeadSpec(spec), 'avgpool:7:5,flatten,dense:256:relu,dropout:0.2');
  assert.deepEqual(parseHeadSpec('maxpool:3,flatten,dense:2:softmax').layers[0], { kind: 'maxpool', pool: 3, stride: 3 });
  // mixed7 at 299 is 17x17: windows 0-6, 5-11, 10-16 make 3x3.
  assert.deepEqual(gridShape({ kind: 'avgpool', pool: 7, stride: 5 }, [17, 17, 768]), [3, 3, 768]);
  assert.equal(headInputSize(spec, [17, 17, 768]), 3 * 3 * 768);
  assert.deepEqual(denseShapes(spec, [17, 17, 768])[0], { inputSize: 6912, units: 256 });
  assert.deepEqual(backbonePooling(spec), { kind: 'avgpool', pool: 7, stride: 5 });
  for (const bad of ['avgpool:7:5,dense:4', 'gap,avgpool:3,flatten', 'avgpool:0,flatten,dense:2', 'avgpool,flatten', 'dense:3,flatten', 'flatten,flatten']) {
    assert.throws(() => parseHeadSpec(bad), GraftError, bad);
  }
  assert.throws(() => headInputSize(spec, [5, 5, 768]), /at least 7x7/);
  assert.deepEqual(headLayerNames(spec, new Set(['average_pooling2d'])).slice(0, 2), ['average_pooling2d_1', 'flatten']);
});

test('grid pooling forward is the windows\' mean or maximum; backward matches finite differences', () => {
  // A 5x5 one-channel map 0..24, pools of 3 with stride 2: windows 0-2 and 2-4 each way.
  const map = Float32Array.from({ length: 25 }, (_, i) => i);
  const avg = new Float32Array(4), max = new Float32Array(4);
  gridPoolForward({ kind: 'avgpool', pool: 3, stride: 2 }, [5, 5, 1], map, 1, avg);
  gridPoolForward({ kind: 'maxpool', pool: 3, stride: 2 }, [5, 5, 1], map, 1, max);
  assert.deepEqual([...avg], [6, 8, 16, 18]);
  assert.deepEqual([...max], [12, 14, 22, 24]);

  const rng = new Random(11);
  const shape = [5, 5, 3];
  for (const kind of ['avgpool', 'maxpool'] as const) {
    const spec = parseHeadSpec(`${kind}:3:2,flatten,dense:6:relu,dense:3:softmax`);
    const params = initHead(spec, shape, 3);
    params.dense.forEach((d) => d.bias.set(randomArray(rng, d.bias.length, 0.3)));
    const features = randomArray(rng, 75);
    const { gradient, pass } = classScoreGradient(spec, params, features, shape, 2);
    assert.equal(gradient.length, 75);
    assert.ok(Math.abs(pass.probabilities.reduce((a, b) => a + b, 0) - 1) < 1e-6);
    const eps = 1e-3;
    for (const i of [0, 7, 20, 37, 52, 74]) {
      const up = features.slice(), down = features.slice();
      up[i]! += eps;
      down[i]! -= eps;
      const numeric = (headForward(spec, params, up, shape).logits[2]! - headForward(spec, params, down, shape).logits[2]!) / (2 * eps);
      assert.ok(Math.abs(numeric - gradient[i]!) < 2e-3, `${kind} feature ${i}: analytic ${gradient[i]} vs numeric ${numeric}`);
    }
  }
  // Backward spreads a cell's gradient evenly over its window, overlaps adding up.
  const g = new Float32Array(25);
  gridPoolBackward({ kind: 'avgpool', pool: 3, stride: 2 }, [5, 5, 1], map, Float32Array.of(9, 0, 0, 0), 1, g);
  assert.equal(g[0], 1);
  assert.equal(g[12], 1);
  assert.equal(g[13], 0);
});

test('a grid head fed features pooled by the backbone trains as one pooling them itself (within 1e-5)', async () => {
  const shape = [5, 5, 8];
  const grid: GridPoolSpec = { kind: 'avgpool', pool: 3, stride: 2 };
  const spec = parseHeadSpec('avgpool:3:2,flatten,dense:12:relu,dropout:0.2,dense:3:softmax');
  const rng = new Random(3);
  const sample = (count: number): ArrayData => {
    const features = new Float32Array(count * 200), labels = new Float32Array(count * 3);
    for (let i = 0; i < count; i++) {
      const cls = i % 3;
      labels[i * 3 + cls] = 1;
      for (let j = 0; j < 200; j++) features[i * 200 + j] = rng.normal() + (Math.floor(j / 8) % 5 === cls ? 1 : 0);
    }
    return { features, labels, count };
  };
  const pool = (d: ArrayData): ArrayData => {
    const out = new Float32Array(d.count * 32);
    gridPoolForward(grid, shape, d.features, d.count, out);
    return { ...d, features: out };
  };
  const train = sample(48), val = sample(15);
  const run = async (pooledFeatures: boolean) => {
    const trainer = await HeadTrainer.create(spec, initHead(spec, shape, 4), { kind: 'adam', learningRate: 1e-2 }, { seed: 4, threads: 2, featureShape: shape, pooledFeatures });
    try {
      const t = pooledFeatures ? pool(train) : train, v = pooledFeatures ? pool(val) : val;
      const history = await fit(trainer, arrayBatchSource(t, 8, { seed: 2 }), v, { epochs: 3, verbose: 0 });
      return { history, probabilities: await trainer.predict(v.features, v.count), fingerprint: JSON.stringify(trainer.describe()) };
    } finally {
      await trainer.dispose();
    }
  };
  const inHead = await run(false), inGraph = await run(true);
  for (const key of ['loss', 'accuracy', 'val_loss', 'val_accuracy'] as const) {
    inHead.history[key].forEach((x, e) => assert.ok(Math.abs(x - inGraph.history[key][e]!) < 1e-5, `${key} epoch ${e + 1}: ${x} vs ${inGraph.history[key][e]}`));
  }
  assert.ok(inHead.history.val_accuracy.at(-1)! > 0.5, 'the head learns the classes');
  assert.ok(maxAbsDiff(inHead.probabilities, inGraph.probabilities) < 1e-5);
  assert.equal(inGraph.fingerprint, inHead.fingerprint);
});

test('the backbone pools a grid head\'s AveragePooling2D in its graph as the head would (within 1e-5)', async () => {
  const size: [number, number] = [107, 107];
  const weights = sharedInceptionWeightsDir('fp32');
  const grid: GridPoolSpec = { kind: 'avgpool', pool: 3, stride: 2 };
  const plain = await loadBackbone({ weights, inputSize: size, threads: 2 });
  const pooled = await loadBackbone({ weights, inputSize: size, threads: 2, pool: grid });
  try {
    const expected = gridShape(grid, plain.outputShape);
    assert.deepEqual(pooled.featureShape, expected);
    const n = 2, rng = new Random(5);
    const input = randomArray(rng, n * size[0] * size[1] * 3);
    const full = await plain.extractor.extract(input, n);
    const inGraph = await pooled.extractor.extract(input, n);
    const want = new Float32Array(n * expected.reduce((a, b) => a * b, 1));
    gridPoolForward(grid, plain.outputShape, full, n, want);
    const diff = maxAbsDiff(inGraph.subarray(0, want.length), want);
    assert.ok(diff < 1e-5, `pooled in the graph differs by ${diff}`);
  } finally {
    await plain.dispose();
    await pooled.dispose();
  }
});

test('a grid head exports to TF.js and ONNX that predict as graft\'s head (within 1e-5)', async () => {
  await useWasm();
  const channels = 4, size: [number, number] = [9, 9];
  const backbone: KerasGraph = {
    name: 'tiny',
    layers: [{ name: 'input_1', className: 'InputLayer', config: { name: 'input_1', batch_input_shape: [null, null, null, channels], dtype: 'float32' }, inbound: [] }],
    inputs: ['input_1'],
    outputs: ['input_1'],
  };
  const rng = new Random(9);
  const featureShape = [9, 9, channels];
  for (const text of ['avgpool:5:4,flatten,dense:6:relu,dropout:0.2,dense:3:softmax', 'maxpool:3:3,flatten,dense:1:sigmoid']) {
    const spec = parseHeadSpec(text);
    const params = initHead(spec, featureShape, 8);
    params.dense.forEach((d) => d.bias.set(randomArray(rng, d.bias.length, 0.3)));
    const graph = buildClassifierGraph(backbone, spec);
    const names = headLayerNames(spec, new Set(['input_1']));
    const weights: WeightMap = headToWeightMap(spec, params, names);
    // Keras's shapes: the grid, then its flattening.
    const shapes = inferShapes(graph, [9, 9, channels]).output;
    assert.deepEqual(shapes.get(names[0]!), gridShape(spec.layers[0] as GridPoolSpec, featureShape));
    assert.deepEqual(shapes.get(names[1]!), [denseShapes(spec, featureShape)[0]!.inputSize]);
    const n = 3;
    const x = randomArray(rng, n * 81 * channels, 2);
    const units = params.dense.at(-1)!.units;
    const want = new Float32Array(n * units);
    for (let i = 0; i < n; i++) {
      const p = headForward(spec, params, x.subarray(i * 81 * channels, (i + 1) * 81 * channels), featureShape).probabilities;
      want.set(units === 1 ? [p[1]!] : p, i * units);
    }
    const root = await mkdtemp(join(tmpdir(), 'graft-grid-'));
    try {
      await writeTfjsLayersModel(graph, weights, root, { inputSize: size });
      const model = await loadLayersModelFromDir(root);
      const got = (model.predict(tf.tensor(x, [n, 9, 9, channels])) as tf.Tensor).dataSync();
      model.dispose();
      assert.ok(maxAbsDiff(got, want) < 1e-5, `${text}: TF.js differs by ${maxAbsDiff(got, want)}`);
      const onnx = await createOrtExtractor(kerasToOnnx(graph, weights, { inputSize: size }), [9, 9, channels], [units], { batchSize: n });
      try {
        const fromOnnx = await onnx.extract(x, n);
        assert.ok(maxAbsDiff(fromOnnx.subarray(0, n * units), want) < 1e-5, `${text}: ONNX differs`);
      } finally {
        await onnx.dispose();
      }
    } finally {
      await rm(root, { recursive: true, force: true });
    }
  }
});

test('graft trains a grid head end to end (cached and faithful): pooled in the backbone, saved, reloaded alike from ONNX and TF.js, explained by Grad-CAM', async () => {
  const root = await mkdtemp(join(tmpdir(), 'graft-grid-run-'));
  try {
    for (const split of ['train', 'validation'] as const) {
      for (const cls of ['cats', 'dogs']) {
        const from = join(sharedLabDataDir(), split, cls);
        await mkdir(join(root, 'data', split, cls), { recursive: true });
        for (const f of (await readdir(from)).sort().slice(0, split === 'train' ? 4 : 2)) await copyFile(join(from, f), join(root, 'data', split, cls, f));
      }
    }
    for (const mode of [{ kind: 'cached' } as const, { kind: 'faithful' } as const]) {
      const lines: string[] = [];
      const out = join(root, mode.kind);
      // 150x150: mixed7 is 7x7, pooled 3x3 in windows of 3 every 2.
      const result = await trainClassifier({
        data: join(root, 'data'), out, weights: sharedInceptionWeightsDir('fp32'), inputSize: [150, 150], head: parseHeadSpec('avgpool:3:2,flatten,dense:8:relu,dropout:0.2'),
        mode, batchSize: 4, epochs: 2, seed: 5, verbose: 2, log: (l) => lines.push(l),
      });
      assert.ok(lines.some((l) => /pooled in the backbone to \(None, 3, 3, 768\)/.test(l)), lines.join('\n'));
      assert.equal(result.history.val_accuracy.length, 2);
      const files = (await readdir(join(root, 'data', 'validation', 'cats'))).map((f) => join(root, 'data', 'validation', 'cats', f));
      const fromOnnx = await loadClassifier(out), fromTfjs = await loadClassifier(join(out, 'model', 'model.json'));
      let onnxPreds, tfjsPreds;
      try {
        onnxPreds = await predictFiles(fromOnnx, files);
        tfjsPreds = await predictFiles(fromTfjs, files);
      } finally {
        await fromOnnx.dispose();
        await fromTfjs.dispose();
      }
      onnxPreds.forEach((p, i) => assert.ok(maxAbsDiff(p.probabilities, tfjsPreds[i]!.probabilities) < 1e-4, `${files[i]}: ${p.probabilities} vs ${tfjsPreds[i]!.probabilities}`));
      if (mode.kind === 'cached') {
        const explainer = await loadExplainer(out, { threads: 2 });
        try {
          const e = await explainer.explain(files[0]!);
          assert.deepEqual(e.camShape, [7, 7]);
          assert.ok(maxAbsDiff(e.probabilities, onnxPreds[0]!.probabilities) < 1e-4);
          assert.ok(e.cam.every((v) => v >= 0 && v <= 1));
        } finally {
          await explainer.dispose();
        }
      }
    }
  } finally {
    await rm(root, { recursive: true, force: true });
  }
});
