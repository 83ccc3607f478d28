import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseKerasTopology } from '../src/backbone/topology.js';
import { cutGraph } from '../src/backbone/cut.js';
import { buildClassifierGraph } from '../src/model/classifier-graph.js';
import { LAB_HEAD } from '../src/model/head-spec.js';
import { parseHeadSpec } from '../src/model/head-spec-parse.js';
import { headForClasses } from '../src/model/head.js';
import { countParams, summarizeModel } from '../src/model/summary.js';
import { runGraft } from './support/cli.js';
import { GraftError } from '../src/util/errors.js';
import { sharedInceptionWeightsDir } from '../src/util/paths.js';

const modelJson = join(sharedInceptionWeightsDir('fp32'), 'model.json');
const inception = parseKerasTopology(JSON.parse(readFileSync(modelJson, 'utf8')).modelTopology, modelJson);

test('the lab model summary: Keras rows and the exact Keras totals', () => {
  const text = summarizeModel(buildClassifierGraph(cutGraph(inception, 'mixed7'), LAB_HEAD), [150, 150, 3]);
  const lines = text.split('\n');
  assert.deepEqual(lines.slice(-3), ['Total params: 47,512,481', 'Trainable params: 38,537,217', 'Non-trainable params: 8,975,264']);
  assert.match(text, /^conv2d_1 \(Conv2D\) +\(None, 74, 74, 32\) +864 +input_1\[0\]\[0\]$/m);
  assert.match(text, /^flatten \(Flatten\) +\(None, 37632\) +0 +mixed7\[0\]\[0\]$/m);
  assert.match(text, /^dense \(Dense\) +\(None, 1024\) +38536192 +flatten\[0\]\[0\]$/m);
  // mixed7 has four inbound tensors: one on its row, three on continuation rows.
  const at = lines.findIndex((l) => l.startsWith('mixed7 (Concatenate)'));
  assert.match(lines[at]!, /activation_61\[0\]\[0\]$/);
  assert.deepEqual(lines.slice(at + 1, at + 4).map((l) => l.trim()), ['activation_64[0][0]', 'activation_69[0][0]', 'activation_70[0][0]']);
});

test('trainableFrom unfreezes the layers from a given one on', () => {
  const graph = buildClassifierGraph(cutGraph(inception, 'mixed7'), LAB_HEAD);
  const frozen = countParams(graph, [150, 150, 3]);
  const all = countParams(graph, [150, 150, 3], 'input_1');
  assert.equal(all.total, frozen.total);
  // Unfrozen, only BN moving mean/variance stay non-trainable: 2 values per channel of every BN,
  // and every BN here follows a conv with that many filters.
  const channels = graph.layers.filter((l) => l.className === 'Conv2D').reduce((s, l) => s + Number(l.config.filters), 0);
  assert.equal(all.nonTrainable, 2 * channels);
  const headOnly = countParams(graph, [150, 150, 3], 'flatten');
  assert.deepEqual(headOnly, frozen);
  assert.throws(() => countParams(graph, [150, 150, 3], 'mixed42'), /no layer named "mixed42"/);
});

test('head specs: parsing, classes, and clear errors', () => {
  assert.deepEqual(parseHeadSpec('flatten,dense:1024:relu,dropout:0.2,dense:1:sigmoid'), LAB_HEAD);
  const gap = headForClasses(5, parseHeadSpec('gap, dense:256:relu'));
  assert.deepEqual(gap.layers, [{ kind: 'gap' }, { kind: 'dense', units: 256, activation: 'relu' }, { kind: 'dense', units: 5, activation: 'softmax' }]);
  assert.deepEqual(headForClasses(3, LAB_HEAD).layers.at(-1), { kind: 'dense', units: 3, activation: 'softmax' });
  assert.deepEqual(headForClasses(2, LAB_HEAD), LAB_HEAD);
  const text = summarizeModel(buildClassifierGraph(cutGraph(inception, 'mixed7'), gap), [150, 150, 3]);
  assert.match(text, /global_average_pooling2d \(Globa +\(None, 768\) +0/);
  assert.match(text, /Trainable params: 198,149$/m); // 768*256+256 + 256*5+5
  for (const [spec, why] of [
    ['', /empty/],
    ['dense:10:relu', /must start with flatten, gap, avgpool or maxpool/],
    ['flatten,dense:abc', /item 2 "dense:abc": units must be a positive integer/],
    ['flatten,dense:4:gelu', /unknown activation "gelu"/],
    ['flatten,dropout:1.5', /rate must be in \[0, 1\)/],
    ['flatten,conv:3', /unknown layer "conv"/],
    ['flatten,gap', /gap must be the first layer/],
  ] as const) {
    assert.throws(() => parseHeadSpec(spec), (e: unknown) => e instanceof GraftError && why.test(e.message), spec);
  }
  assert.throws(() => headForClasses(1, LAB_HEAD), /at least 2 classes/);
});

test('graft summary prints the table; bad options give one-line errors', async () => {
  const lab = await runGraft('summary', '--input-size', '150x150');
  assert.equal(lab.code, 0);
  assert.match(lab.out, /Total params: 47,512,481\nTrainable params: 38,537,217\nNon-trainable params: 8,975,264$/);
  const gap = await runGraft('summary', '--cut', 'mixed2', '--head', 'gap,dense:3:softmax');
  assert.equal(gap.code, 0);
  assert.match(gap.out, /dense \(Dense\) +\(None, 3\) +867 +global_average_pooling2d\[0\]\[0\]/);
  // A head without an output layer shows the one training adds (2 classes unless --classes says).
  const hidden = await runGraft('summary', '--cut', 'mixed2', '--head', 'gap,dense:16:relu');
  assert.equal(hidden.code, 0);
  assert.match(hidden.out, /dense \(Dense\) +\(None, 16\) +4624 .*\n+dense_1 \(Dense\) +\(None, 1\) +17 /s);
  const five = await runGraft('summary', '--cut', 'mixed2', '--head', 'gap,dense:16:relu', '--classes', '5');
  assert.match(five.out, /dense_1 \(Dense\) +\(None, 5\) +85 /);
  const noLayer = await runGraft('summary', '--cut', 'mixed99');
  assert.equal(noLayer.code, 1);
  assert.match(noLayer.errLines.at(-1)!, /^graft: error: no layer named "mixed99".*mixed7/);
  const big = await runGraft('summary', '--input-size', 'big');
  assert.equal(big.code, 1);
  assert.match(big.errLines.at(-1)!, /--input-size must look like 150 or 150x150, found 'big'/);
  const small = await runGraft('summary', '--input-size', '60');
  assert.equal(small.code, 1);
  assert.match(small.errLines.at(-1)!, /input size 60x60 is too small/);
});
