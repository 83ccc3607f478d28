/** Unbalanced classes: class weights as Keras applies them, and the figures that show a neglected class. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { HeadTrainer } from '../src/train/head-trainer.js';
import { arrayBatchSource, fit, type ArrayData } from '../src/train/fit.js';
import { initHead } from '../src/model/head.js';
import type { HeadSpec } from '../src/model/head-spec.js';
import { Random } from '../src/util/random.js';
import { classRecalls, imbalanceRatio, parseClassWeight, planClassBalance, resolveClassWeights, sampleWeights } from '../src/train/class-weights.js';
import { computeMetrics } from '../src/evaluate/metrics.js';
import { formatEvaluation } from '../src/evaluate/report.js';

test("balanced weights are scikit-learn's n_samples / (n_classes * count); explicit ones name classes, others 1", () => {
  assert.deepEqual(resolveClassWeights('balanced', ['a', 'b', 'c'], [100, 10, 40]), [150 / 300, 150 / 30, 150 / 120]);
  assert.deepEqual(resolveClassWeights({ b: 4 }, ['a', 'b'], [5, 5]), [1, 4]);
  assert.throws(() => resolveClassWeights({ z: 4 }, ['a', 'b'], [5, 5]), /'z', which is not a class \(the classes are a, b\)/);
  assert.throws(() => resolveClassWeights({ a: -1 }, ['a', 'b'], [5, 5]), /must be a number from 0/);
  assert.equal(parseClassWeight('balanced'), 'balanced');
  assert.deepEqual(parseClassWeight('cats=4, dogs=0.5'), { cats: 4, dogs: 0.5 });
  assert.deepEqual(parseClassWeight('{"cats": 2}'), { cats: 2 });
  assert.throws(() => parseClassWeight('cats'), /NAME=WEIGHT/);
  assert.deepEqual(Array.from(sampleWeights(Float32Array.of(0, 1, 1), 3, 1, [2, 3], new Float32Array(3))), [2, 3, 3]);
  assert.deepEqual(Array.from(sampleWeights(Float32Array.of(0, 0, 1, 1, 0, 0), 2, 3, [1, 2, 5], new Float32Array(2))), [5, 1]);
  assert.equal(imbalanceRatio([100, 10, 0]), 10);
  const plan = planClassBalance(['cats', 'dogs'], [100, 1000], [50, 50], undefined);
  assert.ok(plan.showRecall && plan.weights === undefined);
  assert.match(plan.notes[0]!, /^warning: unbalanced classes: dogs has 1000 training images, cats 100 \(10\.0x\)/);
  assert.deepEqual(planClassBalance(['cats', 'dogs'], [100, 120], [50, 50], undefined), { showRecall: false, notes: [] });
});

const SPEC: HeadSpec = { layers: [{ kind: 'flatten' }, { kind: 'dense', units: 6, activation: 'relu' }, { kind: 'dense', units: 3, activation: 'softmax' }] };
const SHAPE = [5];

test('with class weights, the loss is sum(w * loss) / n and the gradient the weighted sum of per-sample gradients / n (Keras)', async () => {
  const rng = new Random(4), n = 5, k = 3, weights = [0.5, 2, 7];
  const features = Float32Array.from({ length: n * 5 }, () => rng.uniform(-1, 1));
  const classOf = [0, 2, 1, 2, 0];
  const labels = new Float32Array(n * k);
  classOf.forEach((c, i) => (labels[i * k + c] = 1));
  const plain = await HeadTrainer.create(SPEC, initHead(SPEC, SHAPE, 3), { kind: 'sgd', learningRate: 0.1 }, { seed: 3, threads: 2, featureShape: SHAPE });
  const weighted = await HeadTrainer.create(SPEC, initHead(SPEC, SHAPE, 3), { kind: 'sgd', learningRate: 0.1 }, { seed: 3, threads: 2, featureShape: SHAPE, classWeights: weights });
  try {
    const got = await weighted.gradients(features, labels, n);
    let loss = 0;
    const sum = got.dense.map((d) => ({ kernel: new Float64Array(d.kernel.length), bias: new Float64Array(d.bias.length) }));
    for (let i = 0; i < n; i++) {
      const one = await plain.gradients(features.slice(i * 5, (i + 1) * 5), labels.slice(i * k, (i + 1) * k), 1);
      const w = weights[classOf[i]!]!;
      loss += (w * one.loss) / n;
      one.dense.forEach((d, l) => {
        d.kernel.forEach((g, j) => (sum[l]!.kernel[j]! += (w * g) / n));
        d.bias.forEach((g, j) => (sum[l]!.bias[j]! += (w * g) / n));
      });
    }
    assert.ok(Math.abs(got.loss - loss) < 1e-5, `loss ${got.loss} vs ${loss}`);
    got.dense.forEach((d, l) => {
      d.kernel.forEach((g, j) => assert.ok(Math.abs(g - sum[l]!.kernel[j]!) < 1e-5, `layer ${l} kernel ${j}`));
      d.bias.forEach((g, j) => assert.ok(Math.abs(g - sum[l]!.bias[j]!) < 1e-5, `layer ${l} bias ${j}`));
    });
    // Evaluation is never weighted (Keras weighs fit's training data only).
    const e1 = await plain.evaluate(features, labels, n), e2 = await weighted.evaluate(features, labels, n);
    assert.equal(e1.loss, e2.loss);
    await assert.rejects(HeadTrainer.create(SPEC, initHead(SPEC, SHAPE, 3), { kind: 'sgd' }, { seed: 3, featureShape: SHAPE, classWeights: [1, 2] }), /3 numbers from 0/);
  } finally {
    await plain.dispose();
    await weighted.dispose();
  }
});

/** Two overlapping 1-D Gaussians in 4 features: class 1 (the minority) centred at +1, class 0 at -1. */
function overlapping(counts: [number, number], seed: number): ArrayData {
  const rng = new Random(seed), d = 4, count = counts[0] + counts[1];
  const features = new Float32Array(count * d), labels = new Float32Array(count);
  let i = 0;
  for (const c of [0, 1]) {
    for (let j = 0; j < counts[c]!; j++, i++) {
      labels[i] = c;
      for (let f = 0; f < d; f++) {
        // Box-Muller: a normal draw of spread 1.2 around the class centre.
        const g = Math.sqrt(-2 * Math.log(1 - rng.next())) * Math.cos(2 * Math.PI * rng.next());
        features[i * d + f] = (c === 1 ? 0.5 : -0.5) + 1.2 * g;
      }
    }
  }
  return { features, labels, count };
}

test("10:1 classes: without weights the minority's recall is measured low; balanced weights raise it", async () => {
  const spec: HeadSpec = { layers: [{ kind: 'flatten' }, { kind: 'dense', units: 8, activation: 'relu' }, { kind: 'dense', units: 1, activation: 'sigmoid' }] };
  const train = overlapping([400, 40], 1), val = overlapping([200, 200], 2);
  const recallOf = async (classWeights?: number[]) => {
    const trainer = await HeadTrainer.create(spec, initHead(spec, [4], 5), { kind: 'rmsprop', learningRate: 0.01 }, { seed: 5, threads: 2, featureShape: [4], classWeights });
    const lines: string[] = [];
    try {
      const history = await fit(trainer, arrayBatchSource(train, 20, { seed: 1 }), val, { epochs: 6, log: (l) => lines.push(l), classRecall: ['common', 'rare'] });
      assert.match(lines.at(-1)!, / - val_balanced_accuracy: \d\.\d{4} - val_recall: common \d\.\d{4}, rare \d\.\d{4}$/);
      assert.equal(history.val_balanced_accuracy!.length, 6);
      const ev = await trainer.evaluate(val.features, val.labels, val.count);
      return classRecalls(ev.probabilities, val.labels, val.count, 1);
    } finally {
      await trainer.dispose();
    }
  };
  const unweighted = await recallOf();
  const balanced = await recallOf(resolveClassWeights('balanced', ['common', 'rare'], [400, 40]));
  assert.ok(unweighted.recall[1]! < 0.6, `the minority's recall without weights: ${unweighted.recall[1]}`);
  assert.ok(balanced.recall[1]! > unweighted.recall[1]! + 0.2, `minority recall ${unweighted.recall[1]} -> ${balanced.recall[1]}`);
  assert.ok(balanced.balancedAccuracy > unweighted.balancedAccuracy, `balanced accuracy ${unweighted.balancedAccuracy} -> ${balanced.balancedAccuracy}`);
});

test('the report gives balanced accuracy and says which way to read accuracy', () => {
  // 9 of class a, 1 of class b, the model always answers a.
  const m = computeMetrics(new Array(10).fill(0.1), [0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
  assert.equal(m.accuracy, 0.9);
  assert.equal(m.balancedAccuracy, 0.5);
  const text = formatEvaluation(m, { classes: ['a', 'b'], trainingCounts: [90, 10] });
  assert.match(text, /balanced accuracy\s+0\.5000/);
  assert.match(text, /unbalanced \(a 9, b 1\): read balanced accuracy .* always answered a would score accuracy 0\.9000 but balanced accuracy 0\.5000/);
  assert.match(text, /Training was unbalanced \(a 90, b 10\)/);
  const even = computeMetrics([0.9, 0.1], [1, 0]);
  assert.match(formatEvaluation(even, { classes: ['a', 'b'] }), /about the same size: accuracy and balanced accuracy read alike/);
});
