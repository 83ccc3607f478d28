import { test } from 'node:test';
import assert from 'node:assert/strict';
import { computeMetrics, rocAuc } from '../src/evaluate/metrics.js';
import { GraftError } from '../src/util/errors.js';

const close = (a: number, b: number, tol = 1e-12) => assert.ok(Math.abs(a - b) <= tol, `${a} vs ${b}`);

test('binary metrics from sigmoid probabilities (hand-computed)', () => {
  const m = computeMetrics([0.9, 0.2, 0.6, 0.4, 0.5, 0.0], [1, 0, 0, 1, 1, 0]);
  assert.equal(m.count, 6);
  assert.equal(m.numClasses, 2);
  close(m.accuracy, 0.5); // 0.5 is not > 0.5: predicted 0
  assert.deepEqual(m.confusion, [[2, 1], [2, 1]]);
  close(m.perClass[0]!.precision, 0.5);
  close(m.perClass[0]!.recall, 2 / 3);
  close(m.perClass[0]!.f1, 4 / 7);
  close(m.perClass[1]!.precision, 0.5);
  close(m.perClass[1]!.recall, 1 / 3);
  close(m.perClass[1]!.f1, 0.4);
  assert.deepEqual(m.perClass.map((c) => c.support), [3, 3]);
  close(m.macro.precision, 0.5);
  close(m.macro.recall, 0.5);
  close(m.macro.f1, 17 / 35);
  close(m.loss, -(Math.log(0.9) + Math.log(0.8) + Math.log(0.4) + Math.log(0.4) + Math.log(0.5) + Math.log(1 - 1e-7)) / 6);
  close(m.auc!, 7 / 9);
  assert.deepEqual(m.misclassified.map((x) => [x.index, x.trueLabel, x.predicted]), [[2, 0, 1], [3, 1, 0], [4, 1, 0]]);
  close(m.misclassified[0]!.probability, 0.6);
  close(m.misclassified[0]!.trueProbability, 0.4, 1e-12);
  close(m.misclassified[1]!.probability, 0.6, 1e-12);
});

test('loss clips probabilities at 1e-7 like Keras', () => {
  close(computeMetrics([0], [1]).loss, -Math.log(1e-7), 1e-9);
  close(computeMetrics([1], [0]).loss, -Math.log(1e-7), 1e-6);
  close(computeMetrics(new Float32Array([1]), [1]).loss, -Math.log(1 - 1e-7), 1e-12);
});

test('ROC AUC uses average ranks for ties', () => {
  close(rocAuc([0.5, 0.5, 0.5, 0.5], [true, false, true, false])!, 0.5);
  close(rocAuc([0.7, 0.3, 0.3, 0.1], [true, true, false, false])!, 3.5 / 4);
  close(rocAuc([0.1, 0.9], [false, true])!, 1);
  close(rocAuc([0.9, 0.1], [false, true])!, 0);
  assert.equal(rocAuc([0.2, 0.4], [true, true]), null);
  assert.equal(computeMetrics([0.2, 0.4], [1, 1]).auc, null);
});

test('k-class metrics from softmax rows (hand-computed), flat rows give the same', () => {
  const rows = [[0.7, 0.2, 0.1], [0.1, 0.3, 0.6], [0.2, 0.5, 0.3], [0.3, 0.3, 0.4], [0.5, 0.5, 0]];
  const labels = [0, 1, 1, 2, 2];
  const m = computeMetrics(rows, labels);
  assert.equal(m.numClasses, 3);
  close(m.accuracy, 0.6);
  assert.deepEqual(m.confusion, [[1, 0, 0], [0, 1, 1], [1, 0, 1]]);
  assert.deepEqual(m.perClass.map((c) => [c.precision, c.recall, c.support]), [[0.5, 1, 1], [1, 0.5, 2], [0.5, 0.5, 2]]);
  close(m.perClass[0]!.f1, 2 / 3);
  close(m.perClass[1]!.f1, 2 / 3);
  close(m.perClass[2]!.f1, 0.5);
  close(m.macro.precision, 2 / 3);
  close(m.macro.recall, 2 / 3);
  close(m.macro.f1, 11 / 18);
  close(m.loss, -(Math.log(0.7) + Math.log(0.3) + Math.log(0.5) + Math.log(0.4) + Math.log(1e-7)) / 5);
  // One-vs-rest AUCs (by hand, ties counting a half): class 0 1, class 1 4/6, class 2 2/6; macro 2/3.
  close(m.auc!, 2 / 3);
  // Classes without images of their own are left out of the mean; none at all gives null.
  close(computeMetrics(rows.slice(0, 3), labels.slice(0, 3), 3).auc!, (1 + 1) / 2);
  assert.equal(computeMetrics([[0.2, 0.3, 0.5]], [2], 3).auc, null);
  assert.deepEqual(m.misclassified.map((x) => [x.index, x.trueLabel, x.predicted]), [[1, 1, 2], [4, 2, 0]]);
  const flat = computeMetrics(new Float32Array(rows.flat()), labels, 3);
  assert.deepEqual(flat.confusion, m.confusion);
  close(flat.loss, m.loss, 1e-6);
});

test('two-class softmax rows agree with the sigmoid form', () => {
  const p = [0.9, 0.2, 0.6, 0.4, 0.7];
  const y = [1, 0, 0, 1, 1];
  const a = computeMetrics(p, y);
  const b = computeMetrics(p.map((v) => [1 - v, v]), y);
  assert.deepEqual(b.confusion, a.confusion);
  close(b.loss, a.loss, 1e-12);
  close(b.auc!, a.auc!);
  close(a.auc!, 5 / 6);
});

test('bad inputs are refused with a GraftError', () => {
  assert.throws(() => computeMetrics([], []), GraftError);
  assert.throws(() => computeMetrics([0.5, 0.5], [0, 2]), GraftError);
  assert.throws(() => computeMetrics([0.5, NaN], [0, 1]), GraftError);
  assert.throws(() => computeMetrics([0.1, 0.2, 0.3], [0, 1]), GraftError);
});

test('macro averages leave out a class with no images of it and none predicted (sklearn)', () => {
  // Three classes, only class 2 in the data, every image right: macro 1, not 1/3.
  const m = computeMetrics([[0.1, 0.1, 0.8], [0.2, 0.1, 0.7]], [2, 2], 3);
  assert.deepEqual(m.perClass.map((c) => c.support), [0, 0, 2]);
  close(m.macro.precision, 1);
  close(m.macro.recall, 1);
  close(m.macro.f1, 1);
  // A class predicted but absent still counts (its precision is 0).
  const wrong = computeMetrics([[0.7, 0.1, 0.2], [0.2, 0.1, 0.7]], [2, 2], 3);
  close(wrong.macro.precision, (0 + 1) / 2);
  close(wrong.macro.recall, (0 + 0.5) / 2);
});
