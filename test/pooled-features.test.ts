/**
 * Pool where the head pools: a gap head has the backbone run its GlobalAveragePooling2D inside the
 * ONNX graph, so features are [channels] an image. The numbers must be those of pooling in the head.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { loadBackbone } from '../src/backbone/backbone.js';
import { HeadTrainer } from '../src/train/head-trainer.js';
import { arrayBatchSource, fit, type ArrayData } from '../src/train/fit.js';
import { initHead } from '../src/model/head.js';
import { parseHeadSpec } from '../src/model/head-spec-parse.js';
import { sharedInceptionWeightsDir } from '../src/util/paths.js';
import { Random } from '../src/util/random.js';

/** Mean over the h*w positions of NHWC features [n, cells, c]. */
function meanPool(features: Float32Array, n: number, cells: number, c: number): Float32Array {
  const out = new Float32Array(n * c);
  for (let b = 0; b < n; b++) {
    for (let ch = 0; ch < c; ch++) {
      let sum = 0;
      for (let p = 0; p < cells; p++) sum += features[(b * cells + p) * c + ch]!;
      out[b * c + ch] = sum / cells;
    }
  }
  return out;
}

function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  assert.equal(a.length, b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

test('the backbone pooled in its graph returns the mean of its unpooled features (within 1e-5)', async () => {
  const size: [number, number] = [107, 107];
  const weights = sharedInceptionWeightsDir('fp32');
  const plain = await loadBackbone({ weights, inputSize: size, threads: 2 });
  const pooled = await loadBackbone({ weights, inputSize: size, threads: 2, pool: 'avg' });
  try {
    assert.deepEqual(plain.featureShape, plain.outputShape);
    assert.equal(plain.pooling, null);
    const [h, w, c] = plain.outputShape as [number, number, number];
    assert.deepEqual(pooled.outputShape, plain.outputShape, 'the cut layer is the same');
    assert.deepEqual(pooled.featureShape, [c]);
    assert.deepEqual(pooled.extractor.outputShape, [c]);
    // The exported classifier is built from the cut graph, unchanged by the pooling.
    assert.deepEqual(pooled.graph.layers.map((l) => l.name), plain.graph.layers.map((l) => l.name));
    const n = 3, rng = new Random(5);
    const input = new Float32Array(n * size[0] * size[1] * 3);
    for (let i = 0; i < input.length; i++) input[i] = rng.next();
    const full = await plain.extractor.extract(input, n);
    const inGraph = await pooled.extractor.extract(input, n);
    assert.equal(inGraph.length, n * c);
    const diff = maxAbsDiff(inGraph, meanPool(full, n, h * w, c));
    assert.ok(diff < 1e-5, `pooled in the graph differs by ${diff}`);
  } finally {
    await plain.dispose();
    await pooled.dispose();
  }
});

test('a gap head fed pooled features trains, validates and predicts as one pooling unpooled features (within 1e-5)', async () => {
  const shape = [3, 3, 16], cells = 9, c = 16;
  const spec = parseHeadSpec('gap,dense:12:relu,dropout:0.2,dense:3:softmax');
  const rng = new Random(3);
  const sample = (count: number): ArrayData => {
    const features = new Float32Array(count * cells * c), labels = new Float32Array(count * 3);
    for (let i = 0; i < count; i++) {
      const cls = i % 3;
      labels[i * 3 + cls] = 1;
      for (let j = 0; j < cells * c; j++) features[i * cells * c + j] = rng.normal() + (j % c === cls ? 1.5 : 0);
    }
    return { features, labels, count };
  };
  const pool = (d: ArrayData): ArrayData => ({ ...d, features: meanPool(d.features, d.count, cells, c) });
  const train = sample(60), val = sample(21);
  const run = async (pooledFeatures: boolean) => {
    const trainer = await HeadTrainer.create(spec, initHead(spec, shape, 4), { kind: 'adam', learningRate: 1e-2 }, { seed: 4, threads: 2, featureShape: shape, pooledFeatures });
    try {
      const t = pooledFeatures ? pool(train) : train, v = pooledFeatures ? pool(val) : val;
      const history = await fit(trainer, arrayBatchSource(t, 8, { seed: 2 }), v, { epochs: 3, verbose: 0 });
      const probabilities = await trainer.predict(v.features, v.count);
      return { history, probabilities, fingerprint: JSON.stringify(trainer.describe()), params: await trainer.syncParams() };
    } finally {
      await trainer.dispose();
    }
  };
  const inHead = await run(false);
  const inGraph = await run(true);
  for (const key of ['loss', 'accuracy', 'val_loss', 'val_accuracy'] as const) {
    inHead.history[key].forEach((x, e) => assert.ok(Math.abs(x - inGraph.history[key][e]!) < 1e-5, `${key} epoch ${e + 1}: ${x} vs ${inGraph.history[key][e]}`));
  }
  assert.ok(maxAbsDiff(inHead.probabilities, inGraph.probabilities) < 1e-5);
  inHead.params.dense.forEach((d, i) => assert.ok(maxAbsDiff(d.kernel, inGraph.params.dense[i]!.kernel) < 1e-5, `dense ${i} kernel`));
  // The same head: a checkpoint of either resumes the other.
  assert.equal(inGraph.fingerprint, inHead.fingerprint);
});
