import assert from 'node:assert/strict';
import { test } from 'node:test';
import { classScoreGradient, gradCamMap, headForward } from '../src/model/head-gradient.js';
import { initHead } from '../src/model/head.js';
import type { HeadSpec } from '../src/model/head-spec.js';
import { rocCurve } from '../src/evaluate/roc-curve.js';
import { Random } from '../src/util/random.js';

const shape = [3, 4, 5];
const size = 60;

function features(seed: number): Float32Array {
  const rng = new Random(seed);
  return Float32Array.from({ length: size }, () => rng.uniform(0, 2));
}

/** Central differences of the class score (logit; -logit for class 0 of a sigmoid) in float64 around each feature. */
function numericGradient(spec: HeadSpec, params: ReturnType<typeof initHead>, x: Float32Array, cls: number): Float64Array {
  const score = (v: Float32Array) => {
    const { logits } = headForward(spec, params, v, shape);
    return logits.length === 1 ? (cls === 1 ? logits[0]! : -logits[0]!) : logits[cls]!;
  };
  const out = new Float64Array(x.length);
  const h = 1e-2;
  for (let i = 0; i < x.length; i++) {
    const up = Float32Array.from(x), down = Float32Array.from(x);
    up[i]! += h;
    down[i]! -= h;
    out[i] = (score(up) - score(down)) / (2 * h);
  }
  return out;
}

const heads: [string, HeadSpec][] = [
  ['flatten, relu, dropout, sigmoid', { layers: [{ kind: 'flatten' }, { kind: 'dense', units: 6, activation: 'relu' }, { kind: 'dropout', rate: 0.2 }, { kind: 'dense', units: 1, activation: 'sigmoid' }] }],
  ['gap, sigmoid hidden, softmax', { layers: [{ kind: 'gap' }, { kind: 'dense', units: 4, activation: 'sigmoid' }, { kind: 'dense', units: 3, activation: 'softmax' }] }],
  ['gap, linear, softmax', { layers: [{ kind: 'gap' }, { kind: 'dense', units: 4, activation: 'linear' }, { kind: 'dense', units: 3, activation: 'softmax' }] }],
];

for (const [name, spec] of heads) {
  test(`the class score's gradient at the cut matches finite differences (${name})`, () => {
    const params = initHead(spec, shape, 7);
    for (const p of params.dense) for (let i = 0; i < p.bias.length; i++) p.bias[i] = 0.1 * (i - 1);
    const x = features(3);
    const classes = params.dense.at(-1)!.units === 1 ? 2 : params.dense.at(-1)!.units;
    for (let cls = 0; cls < classes; cls++) {
      const { gradient } = classScoreGradient(spec, params, x, shape, cls);
      const numeric = numericGradient(spec, params, x, cls);
      const scale = Math.max(...numeric.map(Math.abs));
      assert.ok(scale > 1e-4, 'the score depends on the features');
      for (let i = 0; i < size; i++) assert.ok(Math.abs(gradient[i]! - numeric[i]!) < 2e-3 * scale + 1e-5, `class ${cls}, feature ${i}: ${gradient[i]} vs ${numeric[i]}`);
    }
  });
}

test('headForward gives probabilities: sigmoid as [1 - p, p], softmax summing to 1', () => {
  const [, sig] = heads[0]!;
  const p = headForward(sig, initHead(sig, shape, 1), features(1), shape).probabilities;
  assert.equal(p.length, 2);
  assert.ok(Math.abs(p[0]! + p[1]! - 1) < 1e-6);
  const [, soft] = heads[1]!;
  const q = headForward(soft, initHead(soft, shape, 1), features(1), shape).probabilities;
  assert.equal(q.length, 3);
  assert.ok(Math.abs(q.reduce((a, b) => a + b, 0) - 1) < 1e-6);
});

test('gradCamMap: channels weighted by their mean gradient, summed, negatives cut to 0', () => {
  // 1x2 positions, 2 channels: weights are the channel means of the gradient, 1 and -1.
  const A = Float32Array.of(3, 1, 1, 4); // position 0: (3, 1); position 1: (1, 4)
  const g = Float32Array.of(2, -1, 0, -1);
  const cam = gradCamMap(A, g, [1, 2, 2]);
  assert.deepEqual(Array.from(cam), [2, 0]); // 1*3 - 1*1 = 2; 1*1 - 1*4 = -3 -> 0
});

test('rocCurve: one point per distinct score from (0,0) to (1,1), ties moving together', () => {
  const roc = rocCurve([0.9, 0.8, 0.8, 0.3], [true, false, true, false])!;
  assert.deepEqual(roc.fpr, [0, 0, 0.5, 1]);
  assert.deepEqual(roc.tpr, [0, 0.5, 1, 1]);
  assert.equal(rocCurve([0.1, 0.2], [true, true]), null);
});
