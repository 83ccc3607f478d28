import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseHeadSpec } from '../src/model/head-spec-parse.js';
import { hasOutputLayer, headForClasses, headFromWeightMap, headToWeightMap, initHead, outputLayerNote, type HeadParams } from '../src/model/head.js';
import { LAB_HEAD, type HeadSpec } from '../src/model/head-spec.js';
import { HeadTrainer } from '../src/train/head-trainer.js';
import { Random } from '../src/util/random.js';
import { GraftError } from '../src/util/errors.js';

/** Straightforward float64 forward pass and mean loss of a dense head (fixed dropout masks). */
function referenceLoss(spec: HeadSpec, featureShape: number[], w: { kernel: number[]; bias: number[] }[], x: Float32Array, y: Float32Array, n: number, masks: Float32Array[]): number {
  const fsize = featureShape.reduce((a, b) => a * b, 1);
  let total = 0;
  for (let b = 0; b < n; b++) {
    let a: number[] = Array.from(x.subarray(b * fsize, (b + 1) * fsize));
    if (spec.layers[0]!.kind === 'gap') {
      const c = featureShape[2]!, cells = fsize / c;
      a = Array.from({ length: c }, (_, j) => { let s = 0; for (let p = 0; p < cells; p++) s += a[p * c + j]!; return s / cells; });
    }
    let d = 0, m = 0, act = '';
    for (const l of spec.layers) {
      if (l.kind === 'dense') {
        const { kernel, bias } = w[d++]!;
        const z = bias.map((bv, u) => { let s = bv; for (let i = 0; i < a.length; i++) s += a[i]! * kernel[i * l.units + u]!; return s; });
        act = l.activation;
        if (act === 'relu') a = z.map((v) => Math.max(0, v));
        else if (act === 'sigmoid') a = z.map((v) => 1 / (1 + Math.exp(-v)));
        else if (act === 'softmax') { const mx = Math.max(...z); const e = z.map((v) => Math.exp(v - mx)); const s = e.reduce((p, q) => p + q); a = e.map((v) => v / s); }
        else a = z;
      } else if (l.kind === 'dropout') {
        const mask = masks[m++]!;
        a = a.map((v, i) => v * mask[b * a.length + i]!);
      }
    }
    if (act === 'sigmoid') total -= y[b]! * Math.log(a[0]!) + (1 - y[b]!) * Math.log(1 - a[0]!);
    else for (let j = 0; j < a.length; j++) total -= y[b * a.length + j]! * Math.log(a[j]!);
  }
  return total / n;
}

async function gradientCheck(spec: HeadSpec, featureShape: number[], n: number, labels: Float32Array, masks: Float32Array[], seed: number): Promise<void> {
  const params = initHead(spec, featureShape, seed);
  const rng = new Random(seed + 1);
  for (const p of params.dense) for (let i = 0; i < p.bias.length; i++) p.bias[i] = rng.uniform(-0.1, 0.1);
  const fsize = featureShape.reduce((a, b) => a * b, 1);
  const x = new Float32Array(n * fsize).map(() => rng.uniform(-1, 1));
  const trainer = await HeadTrainer.create(spec, params, { kind: 'sgd', learningRate: 0.1 }, { seed, threads: 2, featureShape, blockInputs: 3 });
  try {
    const analytic = await trainer.gradients(x, labels, n, masks);
    const w = params.dense.map((p) => ({ kernel: Array.from(p.kernel), bias: Array.from(p.bias) }));
    const h = 1e-5;
    let checked = 0;
    w.forEach((layer, li) => {
      for (const key of ['kernel', 'bias'] as const) {
        const arr = layer[key];
        for (let i = 0; i < arr.length; i++) {
          const keep = arr[i]!;
          arr[i] = keep + h;
          const up = referenceLoss(spec, featureShape, w, x, labels, n, masks);
          arr[i] = keep - h;
          const down = referenceLoss(spec, featureShape, w, x, labels, n, masks);
          arr[i] = keep;
          const numeric = (up - down) / (2 * h);
          const got = analytic.dense[li]![key][i]!;
          assert.ok(Math.abs(got - numeric) <= 1e-4 + 1e-3 * Math.abs(numeric), `layer ${li} ${key}[${i}]: analytic ${got} vs numeric ${numeric}`);
          checked++;
        }
      }
    });
    assert.ok(checked > 20);
    assert.ok(Math.abs(analytic.loss - referenceLoss(spec, featureShape, w, x, labels, n, masks)) < 1e-5);
  } finally {
    await trainer.dispose();
  }
}

test('gradients of Dense+relu+Dropout(fixed mask)+Dense(sigmoid) with BCE match finite differences', async () => {
  const spec: HeadSpec = { layers: [{ kind: 'flatten' }, { kind: 'dense', units: 6, activation: 'relu' }, { kind: 'dropout', rate: 0.5 }, { kind: 'dense', units: 1, activation: 'sigmoid' }] };
  const n = 5, rng = new Random(9);
  const mask = new Float32Array(n * 6).map(() => (rng.next() < 0.5 ? 0 : 2));
  await gradientCheck(spec, [2, 2, 2], n, Float32Array.from([1, 0, 1, 1, 0]), [mask], 3);
});

test('gradients of a softmax head with categorical cross-entropy, and of a GAP head, match finite differences', async () => {
  const soft: HeadSpec = { layers: [{ kind: 'flatten' }, { kind: 'dense', units: 5, activation: 'relu' }, { kind: 'dense', units: 3, activation: 'softmax' }] };
  const y = new Float32Array(12);
  [0, 2, 1, 2].forEach((c, b) => (y[b * 3 + c] = 1));
  await gradientCheck(soft, [7], 4, y, [], 5);
  const gap: HeadSpec = { layers: [{ kind: 'gap' }, { kind: 'dense', units: 4, activation: 'relu' }, { kind: 'dense', units: 1, activation: 'sigmoid' }] };
  await gradientCheck(gap, [2, 3, 5], 3, Float32Array.from([0, 1, 1]), [], 6);
});

test('glorot_uniform init: bounds, mean and variance of U(±sqrt(6/(fan_in+fan_out))), zero biases, seeded', () => {
  const spec: HeadSpec = { layers: [{ kind: 'flatten' }, { kind: 'dense', units: 300, activation: 'relu' }, { kind: 'dense', units: 1, activation: 'sigmoid' }] };
  const p = initHead(spec, [10, 20], 1);
  const k = p.dense[0]!.kernel, limit = Math.sqrt(6 / (200 + 300));
  assert.equal(k.length, 200 * 300);
  let sum = 0, sq = 0, max = 0;
  for (const v of k) { sum += v; sq += v * v; max = Math.max(max, Math.abs(v)); }
  const mean = sum / k.length, variance = sq / k.length - mean * mean;
  assert.ok(max <= limit && max > 0.99 * limit);
  assert.ok(Math.abs(mean) < 0.01 * limit);
  assert.ok(Math.abs(variance / (limit * limit / 3) - 1) < 0.02, `variance ${variance}`);
  assert.ok(p.dense.every((d) => d.bias.every((b) => b === 0)));
  assert.deepEqual(initHead(spec, [10, 20], 1).dense[1]!.kernel, p.dense[1]!.kernel);
  assert.notDeepEqual(initHead(spec, [10, 20], 2).dense[1]!.kernel, p.dense[1]!.kernel);
});

test('the output layer: a softmax or 1-unit sigmoid Dense is fitted to the classes, with a note when it changes; a wider sigmoid stays hidden', () => {
  const spec = (text: string) => parseHeadSpec(text);
  assert.ok(hasOutputLayer(spec('gap,dense:3:softmax')));
  assert.ok(hasOutputLayer(spec('gap,dense:1:sigmoid')));
  assert.ok(!hasOutputLayer(spec('gap,dense:256:sigmoid')));
  assert.ok(!hasOutputLayer(spec('gap,dense:3')));
  const fit = (text: string, classes: number) => {
    const given = spec(text);
    const fitted = headForClasses(classes, given);
    return { layers: fitted.layers.map((l) => (l.kind === 'dense' ? `dense:${l.units}:${l.activation}` : l.kind)).join(','), note: outputLayerNote(given, fitted) };
  };
  assert.deepEqual(fit('gap,dense:3:softmax', 3), { layers: 'gap,dense:3:softmax', note: null });
  assert.deepEqual(fit('gap,dense:3:softmax', 2), { layers: 'gap,dense:1:sigmoid', note: "note: the head's output layer dense:3:softmax is fitted to the 2 classes: dense:1:sigmoid" });
  assert.deepEqual(fit('gap,dense:1:sigmoid', 4), { layers: 'gap,dense:4:softmax', note: "note: the head's output layer dense:1:sigmoid is fitted to the 4 classes: dense:4:softmax" });
  const wide = fit('gap,dense:256:sigmoid', 2);
  assert.equal(wide.layers, 'gap,dense:256:sigmoid,dense:1:sigmoid');
  assert.match(wide.note!, /dense:256:sigmoid stays a hidden layer/);
  assert.match(fit('gap,dense:3', 3).note!, /^warning: the head ends with dense:3 \(linear\).*write dense:3:softmax$/);
  assert.deepEqual(fit('gap,dense:64:relu', 2), { layers: 'gap,dense:64:relu,dense:1:sigmoid', note: null });
});

test('headForClasses and the weight map round trip under Keras names', () => {
  assert.deepEqual(headForClasses(2).layers.at(-1), { kind: 'dense', units: 1, activation: 'sigmoid' });
  assert.deepEqual(headForClasses(5).layers.at(-1), { kind: 'dense', units: 5, activation: 'softmax' });
  assert.equal(headForClasses(5).layers.length, LAB_HEAD.layers.length);
  assert.throws(() => headForClasses(1), GraftError);
  const spec = headForClasses(3);
  const params: HeadParams = initHead(spec, [2, 2, 4], 7);
  const map = headToWeightMap(spec, params);
  assert.deepEqual([...map.keys()], ['dense/kernel', 'dense/bias', 'dense_1/kernel', 'dense_1/bias']);
  assert.deepEqual(map.get('dense/kernel')!.shape, [16, 1024]);
  const back = headFromWeightMap(spec, [2, 2, 4], map);
  assert.equal(back.dense[1]!.kernel, params.dense[1]!.kernel);
  map.set('dense_1/bias', { shape: [4], data: new Float32Array(4) });
  assert.throws(() => headFromWeightMap(spec, [2, 2, 4], map, undefined, 'model.h5'), /model\.h5: dense_1\/bias has shape \[4\], expected \[3\]/);
});
