import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { computeMetrics } from '../src/evaluate/metrics.js';
import { formatEvaluation, writeEvaluation } from '../src/evaluate/report.js';
import { GraftError } from '../src/util/errors.js';

test('writeEvaluation writes metrics.json and report.txt with class names and misclassified files', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'graft-report-'));
  try {
    const m = computeMetrics([0.9, 0.2, 0.6, 0.4, 0.5, 0.0], [1, 0, 0, 1, 1, 0]);
    const files = ['d1.jpg', 'c1.jpg', 'c2.jpg', 'd2.jpg', 'd3.jpg', 'c3.jpg'];
    const out = await writeEvaluation(dir, m, { classes: ['cats', 'dogs'], files });
    assert.deepEqual((await readdir(dir)).sort(), ['metrics.json', 'report.txt']);
    const json = JSON.parse(await readFile(out.metricsFile, 'utf8'));
    assert.deepEqual(json.classes, ['cats', 'dogs']);
    assert.deepEqual(json.confusion, [[2, 1], [2, 1]]);
    assert.equal(json.accuracy, 0.5);
    assert.deepEqual(json.perClass.map((c: { class: string }) => c.class), ['cats', 'dogs']);
    assert.deepEqual(json.misclassified.map((x: { file: string }) => x.file), ['c2.jpg', 'd2.jpg', 'd3.jpg']);
    assert.deepEqual(json.misclassified.map((x: { trueClass: string; predictedClass: string }) => [x.trueClass, x.predictedClass]), [['cats', 'dogs'], ['dogs', 'cats'], ['dogs', 'cats']]);
    const text = await readFile(out.reportFile, 'utf8');
    assert.equal(text, formatEvaluation(m, { classes: ['cats', 'dogs'], files }));
    assert.match(text, /accuracy\s+0\.5000/);
    assert.match(text, /ROC AUC\s+0\.7778/);
    assert.match(text, /^\s+cats\s+2\s+1$/m);
    assert.match(text, /^\s+dogs\s+2\s+1$/m);
    assert.match(text, /^\s+dogs\s+0\.5000\s+0\.3333\s+0\.4000\s+3$/m);
    assert.match(text, /Misclassified: 3/);
    // Most confident mistakes first, ties in item order.
    assert.ok(text.indexOf('c2.jpg') < text.indexOf('d2.jpg') && text.indexOf('d2.jpg') < text.indexOf('d3.jpg'));
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('the report lists at most 20 mistakes, k classes get a one-vs-rest AUC line, and class names must match', () => {
  const n = 30;
  const rows = Array.from({ length: n }, (_, i) => [0.1, 0.2 + i / 100, 0.1]); // always predicts class 1
  const labels = Array.from({ length: n }, () => 0);
  const m = computeMetrics(rows, labels);
  const text = formatEvaluation(m, { classes: ['a', 'b', 'c'] });
  assert.match(text, /Misclassified: 30 \(the 20 most confident shown\)/);
  assert.equal(text.split('\n').filter((l) => /^\s+#\d+\s/.test(l)).length, 20);
  assert.match(text, /#29\s/); // highest probability listed
  assert.doesNotMatch(text, /#0\s/);
  // Every image is of class a: no class has images of it and of others.
  assert.match(text, /ROC AUC \(one-vs-rest, macro\)\s+n\/a \(needs a class with images of it and of others\)/);
  const mixed = computeMetrics(rows, labels.map((_, i) => i % 3));
  assert.match(formatEvaluation(mixed, { classes: ['a', 'b', 'c'] }), new RegExp(`ROC AUC \\(one-vs-rest, macro\\)\\s+${mixed.auc!.toFixed(4)}`));
  assert.throws(() => formatEvaluation(m, { classes: ['a', 'b'] }), GraftError);
  // Two classes but images of one only: no AUC, and the report says why.
  const one = computeMetrics([0.9, 0.8, 0.3], [1, 1, 1], 2);
  assert.equal(one.auc, null);
  assert.match(formatEvaluation(one, { classes: ['cats', 'dogs'] }), /ROC AUC\s+n\/a \(needs images of both classes\)/);
  assert.throws(() => formatEvaluation(m, { classes: ['a', 'b', 'c'], files: ['x'] }), GraftError);
});
