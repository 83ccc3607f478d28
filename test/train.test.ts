import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, mkdir, readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { adamAlpha, applyUpdate, resolveOptimizer, type OptimizerConfig } from '../src/train/optimizers.js';
import { simdRmsprop } from '../src/train/simd-rmsprop.js';
import { simdAdam } from '../src/train/simd-adam.js';
import { applyUpdateRows, simdUpdate } from '../src/train/simd-update.js';
import { wasmMemory } from '../src/train/wasm-simd.js';
import { binaryAccuracy, binaryCrossentropy, categoricalAccuracy, categoricalCrossentropy } from '../src/train/losses.js';
import { HeadTrainer } from '../src/train/head-trainer.js';
import { arrayBatchSource, fit, type ArrayData, type TrainEnd } from '../src/train/fit.js';
import { EarlyStopping, resolveEarlyStopping, type EarlyStoppingConfig } from '../src/train/early-stopping.js';
import type { HeadParams } from '../src/model/head.js';
import { checkpointStatus, checkResumable, loadCheckpoint, markCheckpointFinished, saveCheckpoint } from '../src/train/checkpoint.js';
import { initHead } from '../src/model/head.js';
import type { HeadSpec } from '../src/model/head-spec.js';
import { Random } from '../src/util/random.js';
import { GraftError } from '../src/util/errors.js';

/** Keras's update rules written plainly, in float64, one step at a time. */
function referenceSteps(cfg: OptimizerConfig, w0: number[], grads: number[][]): number[] {
  const w = [...w0], s1 = w.map(() => 0), s2 = w.map(() => 0);
  grads.forEach((g, t) => {
    for (let i = 0; i < w.length; i++) {
      if (cfg.kind === 'rmsprop') {
        const rho = cfg.rho ?? 0.9, eps = cfg.epsilon ?? 1e-7;
        s1[i] = rho * s1[i]! + (1 - rho) * g[i]! ** 2;
        const denominator = cfg.legacy ? Math.sqrt(s1[i]!) + eps : Math.sqrt(s1[i]! + eps);
        w[i] = w[i]! - (cfg.learningRate! * g[i]!) / denominator;
      } else if (cfg.kind === 'adam') {
        const b1 = 0.9, b2 = 0.999, eps = 1e-7, step = t + 1;
        s1[i] = b1 * s1[i]! + (1 - b1) * g[i]!;
        s2[i] = b2 * s2[i]! + (1 - b2) * g[i]! ** 2;
        const alpha = (cfg.learningRate! * Math.sqrt(1 - b2 ** step)) / (1 - b1 ** step);
        w[i] = w[i]! - (alpha * s1[i]!) / (Math.sqrt(s2[i]!) + eps);
      } else {
        const m = cfg.momentum ?? 0;
        s1[i] = m * s1[i]! - cfg.learningRate! * g[i]!;
        w[i] = w[i]! + s1[i]!;
      }
    }
  });
  return w;
}

test('RMSprop, Adam and SGD kernels follow Keras formulas over several steps', () => {
  const rng = new Random(3);
  const n = 37, steps = 6;
  const w0 = Array.from({ length: n }, () => rng.uniform(-1, 1));
  const grads = Array.from({ length: steps }, () => Array.from({ length: n }, () => rng.uniform(-0.5, 0.5)));
  const configs: OptimizerConfig[] = [
    { kind: 'rmsprop', learningRate: 0.01 },
    { kind: 'rmsprop', learningRate: 0.01, legacy: true },
    { kind: 'rmsprop', learningRate: 0.01, epsilon: 1e-3 },
    { kind: 'rmsprop', learningRate: 0.01, epsilon: 1e-3, legacy: true },
    { kind: 'adam', learningRate: 0.01 },
    { kind: 'sgd', learningRate: 0.1 },
    { kind: 'sgd', learningRate: 0.1, momentum: 0.9 },
  ];
  for (const cfg of configs) {
    const opt = resolveOptimizer(cfg);
    const w = Float32Array.from(w0);
    const slots = [new Float32Array(n), new Float32Array(n)];
    grads.forEach((g, t) => applyUpdate(opt, t + 1, w, Float32Array.from(g), slots));
    const ref = referenceSteps(cfg, w0, grads);
    for (let i = 0; i < n; i++) assert.ok(Math.abs(w[i]! - ref[i]!) < 1e-5, `${cfg.kind} w[${i}] ${w[i]} vs ${ref[i]}`);
    assert.ok(ref.some((v, i) => Math.abs(v - w0[i]!) > 1e-3), 'the weights moved');
  }
  assert.deepEqual(resolveOptimizer({ kind: 'rmsprop' }), { kind: 'rmsprop', learningRate: 0.001, rho: 0.9, epsilon: 1e-7, legacy: false });
  assert.throws(() => resolveOptimizer({ kind: 'sgd', nesterov: true }), GraftError);
});

test('the SIMD RMSprop kernels (current and legacy) match the JS kernel, including a non-multiple-of-4 tail', () => {
  const n = 1003, mem = wasmMemory(n * 12 + 64);
  const w = new Float32Array(mem.buffer, 0, n), ms = new Float32Array(mem.buffer, 4016, n), g = new Float32Array(mem.buffer, 8032, n);
  const after: Float32Array[] = [];
  for (const legacy of [false, true]) {
    const kernel = simdRmsprop(mem, legacy);
    assert.ok(kernel, 'WebAssembly SIMD available');
    const rng = new Random(4);
    for (let i = 0; i < n; i++) { w[i] = rng.uniform(-1, 1); ms[i] = rng.next() * 1e-3; g[i] = rng.uniform(-0.1, 0.1); }
    const w2 = w.slice(), ms2 = ms.slice();
    // epsilon 1e-3 is of the size of ms here, so putting it inside or outside the root matters
    const opt = resolveOptimizer({ kind: 'rmsprop', learningRate: 0.001, epsilon: 1e-3, legacy });
    for (let s = 0; s < 3; s++) {
      kernel(w, ms, g, 0.001, 0.9, 1e-3);
      applyUpdate(opt, s + 1, w2, g, [ms2]);
    }
    for (let i = 0; i < n; i++) {
      assert.ok(Math.abs(w[i]! - w2[i]!) <= 1e-6 * Math.max(1, Math.abs(w2[i]!)), `legacy=${legacy} w[${i}]`);
      assert.ok(Math.abs(ms[i]! - ms2[i]!) <= 1e-6 * ms2[i]!, `legacy=${legacy} ms[${i}]`);
    }
    after.push(w.slice());
  }
  assert.ok(after[0]!.some((v, i) => Math.abs(v - after[1]![i]!) > 1e-5), 'the two epsilon placements give different weights');
});

test('the SIMD Adam kernel matches the JS kernel over several steps, including a non-multiple-of-4 tail and flushed tiny values', () => {
  const n = 1003, mem = wasmMemory(n * 16 + 64);
  const w = new Float32Array(mem.buffer, 0, n), m = new Float32Array(mem.buffer, 4016, n), v = new Float32Array(mem.buffer, 8032, n), g = new Float32Array(mem.buffer, 12048, n);
  const kernel = simdAdam(mem);
  assert.ok(kernel, 'WebAssembly SIMD available');
  const rng = new Random(8);
  for (let i = 0; i < n; i++) { w[i] = rng.uniform(-1, 1); m[i] = rng.uniform(-1e-3, 1e-3); v[i] = rng.next() * 1e-5; g[i] = rng.uniform(-0.1, 0.1); }
  // A few values the flushes act on: a gradient below 1e-18, slots headed below 1e-30.
  g[5] = 1e-20; m[6] = 1e-31; g[6] = 0; v[7] = 1e-31; g[7] = 0; g[1001] = 1e-20;
  const w2 = w.slice(), m2 = m.slice(), v2 = v.slice(), start = w.slice();
  const opt = resolveOptimizer({ kind: 'adam', learningRate: 0.01 });
  assert.ok(opt.kind === 'adam');
  for (let s = 1; s <= 4; s++) {
    kernel(w, m, v, g, adamAlpha(opt, s), 1 - opt.beta1, 1 - opt.beta2, opt.epsilon);
    applyUpdate(opt, s, w2, g, [m2, v2]);
  }
  for (let i = 0; i < n; i++) {
    assert.ok(Math.abs(w[i]! - w2[i]!) <= 1e-6 * Math.max(1, Math.abs(w2[i]!)), `w[${i}]: ${w[i]} vs ${w2[i]}`);
    // float32 steps against float64 ones: a few units in the last place of the terms summed
    assert.ok(Math.abs(m[i]! - m2[i]!) <= 1e-6 * Math.abs(m2[i]!) + 1e-7 * Math.abs(g[i]!), `m[${i}]: ${m[i]} vs ${m2[i]}`);
    assert.ok(Math.abs(v[i]! - v2[i]!) <= 1e-6 * v2[i]! + 1e-9 * g[i]! * g[i]!, `v[${i}]: ${v[i]} vs ${v2[i]}`);
  }
  assert.equal(m[6], 0, 'a first moment below 1e-30 is flushed');
  assert.equal(v[7], 0, 'a second moment below 1e-30 is flushed');
  assert.ok(w.filter((x, i) => x !== start[i]).length > n / 2, 'the weights moved');
});

test('the SIMD updates of a band of rows (RMSprop, Adam) match the JS loop and touch nothing outside the band', () => {
  // A [5, 23] kernel whose band of columns [6, 17) is updated from a packed [5, 11] gradient: rows of
  // 11 floats, so each row has a SIMD part and a JS tail, and the band starts off a group of 4.
  const rows = 5, stride = 23, k0 = 6, cols = 11, n = rows * stride;
  const mem = wasmMemory(4 * (4 * n + rows * cols) + 64);
  const at = (i: number, len: number) => new Float32Array(mem.buffer, i * 4 * n, len);
  const w = at(0, n), m = at(1, n), v = at(2, n), g = at(3, rows * cols);
  const band = { rows, cols, stride, gradientStride: cols };
  for (const cfg of [{ kind: 'rmsprop', learningRate: 0.01 }, { kind: 'adam', learningRate: 0.01 }] as const) {
    const opt = resolveOptimizer(cfg);
    const update = simdUpdate(opt, mem);
    assert.ok(update, 'WebAssembly SIMD available');
    const rng = new Random(12);
    for (const a of [w, g]) for (let i = 0; i < a.length; i++) a[i] = rng.uniform(-1, 1);
    for (const a of [m, v]) for (let i = 0; i < n; i++) a[i] = rng.next() * 1e-3;
    const slots = opt.kind === 'adam' ? [m, v] : [m];
    const before = [w, ...slots].map((a) => a.slice());
    const expected = before.map((a) => a.slice());
    for (let s = 1; s <= 2; s++) {
      update(opt, s, w.subarray(k0), g, slots.map((a) => a.subarray(k0)), band);
      applyUpdateRows(opt, s, expected[0]!.subarray(k0), g, expected.slice(1).map((a) => a.subarray(k0)), band);
    }
    [w, ...slots].forEach((a, j) => {
      for (let i = 0; i < n; i++) {
        const col = i % stride, inBand = col >= k0 && col < k0 + cols;
        if (!inBand) assert.equal(a[i], before[j]![i], `${cfg.kind} array ${j}[${i}] outside the band is untouched`);
        else {
          assert.notEqual(a[i], before[j]![i], `${cfg.kind} array ${j}[${i}] inside the band moved`);
          // float32 SIMD against float64 JS: weights as in the tests above, slots relative
          const tolerance = j === 0 ? 1e-6 * Math.max(1, Math.abs(expected[j]![i]!)) : 1e-6 * Math.abs(expected[j]![i]!) + 1e-12;
          assert.ok(Math.abs(a[i]! - expected[j]![i]!) <= tolerance, `${cfg.kind} array ${j}[${i}]: ${a[i]} vs ${expected[j]![i]}`);
        }
      }
    });
  }
});

test('RMSprop flushes values headed for subnormal floats to zero, in SIMD and JS alike, and keeps NaN', () => {
  const n = 9, mem = wasmMemory(n * 12 + 64);
  const kernel = simdRmsprop(mem)!;
  const w = new Float32Array(mem.buffer, 0, n), ms = new Float32Array(mem.buffer, 64, n), g = new Float32Array(mem.buffer, 128, n);
  // A weight whose gradient stays zero: its mean square decays by rho each step and must reach exactly 0.
  w.set([1, 1, 1, 1, 1, 1, 1, 1, 1]);
  ms.set([1e-8, 1e-8, 2e-30, 1e-3, 1e-3, 0, 0, 0, 1e-3]);
  g.set([0, 0, 0, 1e-20, 0.5, 0, 0, 0, NaN]);
  const w2 = w.slice(), ms2 = ms.slice(), g2 = g.slice();
  const opt = resolveOptimizer({ kind: 'rmsprop', learningRate: 0.001 });
  for (let s = 0; s < 700; s++) {
    kernel(w, ms, g, 0.001, 0.9, 1e-7);
    applyUpdate(opt, s + 1, w2, g2, [ms2]);
  }
  assert.equal(ms[0], 0, 'a decayed mean square ends at 0, not a subnormal');
  assert.equal(ms2[0], 0);
  assert.equal(ms[2], 0, 'below the flush threshold at once');
  assert.equal(w[3], 1, 'a 1e-20 gradient moves nothing');
  assert.ok(w[4]! < 1 && ms[4]! > 0.1, 'normal gradients train as before');
  assert.ok(Number.isNaN(w[8]!) && Number.isNaN(w2[8]!), 'NaN gradients are not hidden');
  for (let i = 0; i < n - 1; i++) {
    assert.ok(Math.abs(w[i]! - w2[i]!) <= 1e-5, `w[${i}] ${w[i]} vs ${w2[i]}`);
    assert.ok(Math.abs(ms[i]! - ms2[i]!) <= 1e-6 * Math.max(ms2[i]!, 1e-30), `ms[${i}]`);
  }
  for (let i = 0; i < n; i++) assert.ok(ms[i]! === 0 || ms[i]! >= 1e-30 || Number.isNaN(ms[i]!), `ms[${i}] = ${ms[i]} is subnormal`);
});

test('losses and accuracies follow Keras (clipping at 1e-7, threshold 0.5, argmax)', () => {
  const p = Float32Array.from([0.9, 0.2, 0.5, 0]), y = Float32Array.from([1, 0, 1, 0]);
  const expected = -(Math.log(Math.fround(0.9)) + Math.log(1 - Math.fround(0.2)) + Math.log(0.5) + Math.log(1 - 1e-7)) / 4;
  assert.ok(Math.abs(binaryCrossentropy(p, y, 4) - expected) < 1e-9);
  assert.ok(Math.abs(binaryCrossentropy(Float32Array.from([0]), Float32Array.from([1]), 1) + Math.log(1e-7)) < 1e-9);
  assert.equal(binaryAccuracy(p, y, 4), 0.75); // 0.5 is not > 0.5
  const pc = Float32Array.from([0.7, 0.2, 0.1, 0.1, 0.3, 0.6]), yc = Float32Array.from([1, 0, 0, 0, 1, 0]);
  assert.ok(Math.abs(categoricalCrossentropy(pc, yc, 2, 3) + (Math.log(Math.fround(0.7)) + Math.log(Math.fround(0.3))) / 2) < 1e-6);
  assert.equal(categoricalAccuracy(pc, yc, 2, 3), 0.5);
});

const SPEC: HeadSpec = { layers: [{ kind: 'flatten' }, { kind: 'dense', units: 8, activation: 'relu' }, { kind: 'dropout', rate: 0.2 }, { kind: 'dense', units: 1, activation: 'sigmoid' }] };
const SHAPE = [2, 2, 3];

/** Linearly separable samples: label = (w·x > 0) for a fixed random w. */
function separable(count: number, seed: number): ArrayData {
  const rng = new Random(seed), d = 12;
  const dir = Array.from({ length: d }, () => rng.uniform(-1, 1));
  const features = new Float32Array(count * d), labels = new Float32Array(count);
  for (let i = 0; i < count; i++) {
    let dot = 0;
    for (let j = 0; j < d; j++) { const v = rng.uniform(-1, 1); features[i * d + j] = v; dot += v * dir[j]!; }
    labels[i] = dot > 0 ? 1 : 0;
  }
  return { features, labels, count };
}

async function makeTrainer(seed = 11, blockInputs: number | undefined = 5): Promise<HeadTrainer> {
  // Checkpoint blocks of 3 rows (the kernel has more), so streamed slots cross block boundaries.
  const checkpointBlockFloats = 3 * (SPEC.layers.find((l) => l.kind === 'dense') as { units: number }).units;
  return HeadTrainer.create(SPEC, initHead(SPEC, SHAPE, seed), { kind: 'rmsprop', learningRate: 0.01 }, { seed, threads: 2, featureShape: SHAPE, blockInputs, checkpointBlockFloats });
}

test('a tiny head learns linearly separable features (>95% validation accuracy)', async () => {
  const trainer = await makeTrainer(11, undefined);
  try {
    const lines: string[] = [];
    const history = await fit(trainer, arrayBatchSource(separable(400, 1), 20, { seed: 1 }), separable(200, 1), { epochs: 12, log: (l) => lines.push(l) });
    assert.equal(history.loss.length, 12);
    assert.ok(history.loss[11]! < history.loss[0]!);
    assert.ok(history.val_accuracy[11]! > 0.95, `val_accuracy ${history.val_accuracy[11]}`);
    assert.match(lines[11]!, /^Epoch 12\/12 - \d+s - loss: \d\.\d{4} - accuracy: \d\.\d{4} - val_loss: \d\.\d{4} - val_accuracy: \d\.\d{4}$/);
  } finally {
    await trainer.dispose();
  }
});

test('resume after 2 epochs gives the same weights and history as 3 epochs straight', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'graft-head-'));
  const train = separable(120, 2), val = separable(40, 3);
  const quiet = { verbose: 0 as const };
  try {
    const a = await makeTrainer(5);
    const straight = await fit(a, arrayBatchSource(train, 16, { seed: 9 }), val, { epochs: 3, ...quiet });
    const pa = await a.syncParams();
    await a.dispose();

    const b = await makeTrainer(5);
    await fit(b, arrayBatchSource(train, 16, { seed: 9 }), val, { epochs: 2, checkpoint: { dir }, ...quiet });
    // The first kernel's slots reach the checkpoint streamed in blocks: they must equal a whole copy.
    const saved = await loadCheckpoint(dir), live = await b.getOptimizerState();
    assert.equal(saved!.optimizer.slots[0]![0]!.length, live.slots[0]![0]!.length);
    assert.deepEqual(saved!.optimizer.slots[0]![0], new Float32Array(live.slots[0]![0]!));
    assert.ok(live.slots[0]![0]!.some((v) => v > 0), 'the slots hold something');
    // So does the first kernel, of which the trainer holds no copy while it trains.
    assert.equal(b.params.dense[0]!.kernel.length, 0);
    const liveParams = await b.syncParams();
    assert.deepEqual(saved!.params.dense[0]!.kernel, new Float32Array(liveParams.dense[0]!.kernel));
    await b.dispose();
    const c = await makeTrainer(5);
    const resumed = await fit(c, arrayBatchSource(train, 16, { seed: 9 }), val, { epochs: 3, checkpoint: { dir, resume: true }, ...quiet });
    const pc = await c.syncParams();
    await c.dispose();

    assert.deepEqual(resumed, straight);
    pa.dense.forEach((d, i) => {
      assert.deepEqual(pc.dense[i]!.kernel, d.kernel);
      assert.deepEqual(pc.dense[i]!.bias, d.bias);
    });
    const ck = await loadCheckpoint(dir);
    assert.equal(ck!.epoch, 3);
    assert.equal(ck!.optimizer.iterations, 3 * 8);
    // Two binaries take turns; the json names the newest (epoch 3 is the third generation: a, b, a).
    assert.deepEqual(await readdir(dir).then((f) => f.sort()), ['checkpoint-a.bin', 'checkpoint-b.bin', 'checkpoint.json']);
    assert.equal(JSON.parse(await readFile(join(dir, 'checkpoint.json'), 'utf8')).binary, 'checkpoint-a.bin');

    // A different seed is refused rather than silently mixed.
    const d = await makeTrainer(6);
    await assert.rejects(fit(d, arrayBatchSource(train, 16, { seed: 9 }), val, { epochs: 4, checkpoint: { dir, resume: true }, ...quiet }), /another head, optimiser or seed/);
    await d.dispose();
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('saveCheckpoint writes streamed arrays block by block, and refuses a stream of the wrong length', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'graft-ck-'));
  try {
    const kernel = Float32Array.from({ length: 12 }, (_, i) => i), bias = Float32Array.from([7, 8, 9]);
    const slot = Float32Array.from({ length: 12 }, (_, i) => 100 + i);
    const streamed = (values: Float32Array, block: number) => ({
      length: 12,
      async *blocks() {
        const buffer = new Float32Array(block); // one reused buffer, as HeadTrainer does
        for (let i = 0; i < values.length; i += block) {
          const part = buffer.subarray(0, Math.min(block, values.length - i));
          part.set(values.subarray(i, i + part.length));
          yield part;
        }
      },
    });
    const config = resolveOptimizer({ kind: 'rmsprop' });
    const base = { seed: 1, fingerprint: 'f', history: { loss: [1], accuracy: [0.5], val_loss: [1], val_accuracy: [0.5] }, params: { dense: [{ inputSize: 4, units: 3, kernel, bias }] } };
    await saveCheckpoint(dir, { ...base, epoch: 1, optimizer: { config, iterations: 5, slots: [[streamed(slot, 5)], [Float32Array.from([1, 2, 3])]] } });
    const ck = await loadCheckpoint(dir);
    assert.deepEqual(ck!.params.dense[0]!.kernel, kernel);
    assert.deepEqual(ck!.optimizer.slots[0]![0], slot);
    assert.deepEqual(ck!.optimizer.slots[1]![0], Float32Array.from([1, 2, 3]));
    const short = { length: 12, async *blocks() { yield new Float32Array(5); } };
    await assert.rejects(saveCheckpoint(dir, { ...base, epoch: 2, optimizer: { config, iterations: 6, slots: [[short], [Float32Array.from([1, 2, 3])]] } }), /gave 5 values, expected 12/);
    assert.equal((await loadCheckpoint(dir))!.epoch, 1, 'the previous checkpoint stays');
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('checkpoint binaries take turns: a torn spare never matters, it is rewritten to size; old layouts load; finishing drops the spare', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'graft-ck-'));
  try {
    const config = resolveOptimizer({ kind: 'rmsprop' });
    const save = (epoch: number) => {
      const kernel = Float32Array.from({ length: 12 }, (_, i) => epoch * 100 + i);
      return saveCheckpoint(dir, {
        epoch, seed: 1, fingerprint: 'f', history: { loss: [], accuracy: [], val_loss: [], val_accuracy: [] },
        params: { dense: [{ inputSize: 4, units: 3, kernel, bias: Float32Array.from([epoch, 0, 0]) }] },
        optimizer: { config, iterations: epoch, slots: [[kernel.map((v) => v + 0.5)], [Float32Array.from([1, 2, 3])]] },
      });
    };
    const named = async () => JSON.parse(await readFile(join(dir, 'checkpoint.json'), 'utf8')).binary as string;
    await save(1);
    assert.equal(await named(), 'checkpoint-a.bin');
    await save(2);
    assert.equal(await named(), 'checkpoint-b.bin');
    // A crash while rewriting the spare leaves it torn (here: longer, and junk): the json still names the good one.
    await writeFile(join(dir, 'checkpoint-a.bin'), new Uint8Array(1000).fill(0xff));
    assert.equal((await loadCheckpoint(dir))!.epoch, 2);
    await save(3);
    assert.equal(await named(), 'checkpoint-a.bin');
    const three = (await loadCheckpoint(dir))!;
    assert.equal(three.epoch, 3);
    assert.deepEqual(three.params.dense[0]!.kernel, Float32Array.from({ length: 12 }, (_, i) => 300 + i));
    assert.deepEqual(three.optimizer.slots[0]![0], Float32Array.from({ length: 12 }, (_, i) => 300.5 + i));
    assert.equal((await stat(join(dir, 'checkpoint-a.bin'))).size, (12 + 3 + 12 + 3) * 4, 'cut to the new length');

    // One file per generation (earlier graft versions): still read, and replaced by the pair.
    await rename(join(dir, 'checkpoint-a.bin'), join(dir, 'checkpoint-3.bin'));
    await rm(join(dir, 'checkpoint-b.bin'));
    const meta = JSON.parse(await readFile(join(dir, 'checkpoint.json'), 'utf8'));
    await writeFile(join(dir, 'checkpoint.json'), JSON.stringify({ ...meta, binary: 'checkpoint-3.bin', sha256: undefined, checksum: undefined }) /* earlier layouts had no checksums */);
    assert.equal((await loadCheckpoint(dir))!.epoch, 3);
    await save(4);
    assert.deepEqual((await readdir(dir)).sort(), ['checkpoint-a.bin', 'checkpoint.json']);
    await save(5);
    assert.deepEqual((await readdir(dir)).sort(), ['checkpoint-a.bin', 'checkpoint-b.bin', 'checkpoint.json']);
    await markCheckpointFinished(dir);
    assert.deepEqual((await readdir(dir)).sort(), ['checkpoint-b.bin', 'checkpoint.json']);
    assert.deepEqual(await checkpointStatus(dir), { epoch: 5, finished: true });
    assert.equal((await loadCheckpoint(dir))!.epoch, 5);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('a failing checkpoint write is a GraftError and leaves the previous checkpoint intact; abort stops between steps', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'graft-head-'));
  const train = separable(60, 4), val = separable(20, 5);
  try {
    const t = await makeTrainer(7);
    await fit(t, arrayBatchSource(train, 20, { seed: 1 }), val, { epochs: 1, checkpoint: { dir }, verbose: 0 });
    const before = await readFile(join(dir, 'checkpoint.json'), 'utf8');
    const binBefore = await readFile(join(dir, 'checkpoint-a.bin'));
    // The next generation's binary cannot be written: a folder is in its way.
    await mkdir(join(dir, 'checkpoint-b.bin'));
    await assert.rejects(
      fit(t, arrayBatchSource(train, 20, { seed: 1 }), val, { epochs: 2, checkpoint: { dir, resume: true }, verbose: 0 }),
      (err: unknown) => err instanceof GraftError && /cannot write .*checkpoint-b\.bin/.test(err.message),
    );
    assert.equal(await readFile(join(dir, 'checkpoint.json'), 'utf8'), before);
    assert.deepEqual(await readFile(join(dir, 'checkpoint-a.bin')), binBefore);
    assert.equal((await loadCheckpoint(dir))!.epoch, 1);
    assert.ok(!(await readdir(dir)).some((f) => f.endsWith('.tmp')));

    const controller = new AbortController();
    controller.abort();
    await rm(join(dir, 'checkpoint-b.bin'), { recursive: true });
    await assert.rejects(
      fit(t, arrayBatchSource(train, 20, { seed: 1 }), val, { epochs: 3, checkpoint: { dir, resume: true }, verbose: 0, signal: controller.signal }),
      /interrupted in epoch 2; the checkpoint of epoch 1 .* is intact/,
    );
    assert.equal(await readFile(join(dir, 'checkpoint.json'), 'utf8'), before);
    await t.dispose();
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('a resume with another set of files names the files that went and came; an older summary-only checkpoint still matches', () => {
  const files = Array.from({ length: 9 }, (_, i) => `cats/${i}.jpg`);
  const set = (list: string[]) => ({ summary: `${list.length} images, digest ${list.join().length}`, files: list });
  const saved = { epoch: 1, setup: { images: set(files), seed: 0 } };
  assert.doesNotThrow(() => checkResumable('run', saved, { images: set(files) }, 2));
  // Checkpoints of earlier versions kept the summary alone.
  assert.doesNotThrow(() => checkResumable('run', { epoch: 1, setup: { images: set(files).summary } }, { images: set(files) }, 2));
  assert.throws(() => checkResumable('run', { epoch: 1, setup: { images: 'other' } }, { images: set(files) }, 2), /images other, now 9 images, digest 98\): resume/);
  const now = [...files.slice(1), 'dogs/a b.png'];
  assert.throws(
    () => checkResumable('run', saved, { images: set(now) }, 2),
    (err: unknown) => err instanceof GraftError && err.message.includes('images 9 images, digest 98, now 9 images, digest 100 (gone: cats/0.jpg; new: dogs/a b.png)): resume'),
  );
  const many = files.slice(0, 2);
  assert.throws(() => checkResumable('run', saved, { images: set(many) }, 2), /\(gone: cats\/2\.jpg, cats\/3\.jpg, cats\/4\.jpg, cats\/5\.jpg, cats\/6\.jpg and 2 more\)/);
});

test('a setting added after a checkpoint was written compares as the value every run had before it', () => {
  const old = { epoch: 1, setup: { seed: 0 } }; // written before orientation was recorded
  assert.doesNotThrow(() => checkResumable('run', old, { seed: 0, orientation: 'ignore' }, 2));
  assert.throws(() => checkResumable('run', old, { seed: 0, orientation: 'exif' }, 2), /other settings \(orientation ignore, now exif\)/);
  assert.throws(() => checkResumable('run', { epoch: 1, setup: { orientation: 'exif' } }, { orientation: 'ignore' }, 2), /other settings \(orientation exif, now ignore\)/);
});

test('a script that never disposes its HeadTrainer still ends once training is done', async () => {
  const { spawn } = await import('node:child_process');
  const { fileURLToPath } = await import('node:url');
  const script = fileURLToPath(new URL('./support/undisposed-trainer.ts', import.meta.url));
  const child = spawn(process.execPath, ['--import', 'tsx', script], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '', err = '';
  child.stdout.on('data', (d) => (out += d));
  child.stderr.on('data', (d) => (err += d));
  const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
  const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
  clearTimeout(timer);
  assert.equal(code, 0, `exit ${code} (killed after 60 s if null): ${err}`);
  const losses = JSON.parse(out) as number[];
  assert.equal(losses.length, 2);
  assert.ok(losses.every(Number.isFinite));
});

test('an unreadable checkpoint.json is named, with the way out', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'graft-ck-bad-'));
  try {
    await writeFile(join(dir, 'checkpoint.json'), '{"format": "graft-head-checkpoint-1", "epo');
    await assert.rejects(checkpointStatus(dir), /checkpoint\.json: not valid JSON.*; this checkpoint cannot be used: pass overwrite: true to start afresh$/);
    await writeFile(join(dir, 'checkpoint.json'), '{"format": "something else"}');
    await assert.rejects(loadCheckpoint(dir), /checkpoint\.json is not a graft head checkpoint \(format something else\); this checkpoint cannot be used/);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('EarlyStopping decides as Keras 3: patience, min_delta, direction by name, NaN, never on epoch 0', () => {
  /** Runs a sequence of figures; the epochs at which weights are kept, and where it stopped. */
  const run = (cfg: EarlyStoppingConfig, values: number[]) => {
    const es = new EarlyStopping(cfg), kept: number[] = [];
    for (let e = 0; e < values.length; e++) {
      const v = values[e]!;
      const d = es.onEpochEnd(e, { loss: v, accuracy: v, val_loss: v, val_accuracy: v });
      if (d.keepWeights) kept.push(e);
      if (d.stop) return { kept, stop: e, state: es.state };
    }
    return { kept, stop: -1, state: es.state };
  };
  // val_loss must fall: best at epoch 1, then two epochs without a lower value stop it at epoch 3.
  assert.deepEqual(run({ patience: 2, restoreBestWeights: true }, [0.5, 0.4, 0.45, 0.41, 0.3]), {
    kept: [0, 1], stop: 3, state: { best: 0.4, bestEpoch: 1, wait: 2, stoppedEpoch: 3 },
  });
  // Without restoring, no weights are kept.
  assert.deepEqual(run({ patience: 2 }, [0.5, 0.4, 0.45, 0.41]).kept, []);
  // Accuracies must rise; a rise of no more than min_delta is no improvement.
  assert.equal(run({ monitor: 'val_accuracy', patience: 1, minDelta: 0.01 }, [0.9, 0.905, 0.95]).stop, 1);
  assert.equal(run({ monitor: 'val_accuracy', patience: 1 }, [0.9, 0.905, 0.9]).stop, 2);
  assert.equal(run({ monitor: 'accuracy', patience: 0 }, [0.9, 0.8]).stop, 1);
  // patience 0 stops at the first epoch without improvement, but never at epoch 0 (a NaN there).
  assert.deepEqual(run({ patience: 0, restoreBestWeights: true }, [NaN, 0.3, 0.4]), {
    kept: [0, 1], stop: 2, state: { best: 0.3, bestEpoch: 1, wait: 1, stoppedEpoch: 2 },
  });
  // A NaN later is no improvement either.
  assert.equal(run({ patience: 1 }, [0.3, NaN]).stop, 1);
  // State taken from a checkpoint carries on where it was.
  const resumed = new EarlyStopping({ patience: 2 }, { best: 0.4, bestEpoch: 1, wait: 1, stoppedEpoch: -1 });
  assert.deepEqual(resumed.onEpochEnd(3, { loss: 1, accuracy: 0, val_loss: 0.41, val_accuracy: 0 }), { keepWeights: false, stop: true });
  assert.deepEqual(resolveEarlyStopping({}), { monitor: 'val_loss', patience: 0, minDelta: 0, restoreBestWeights: false });
  assert.throws(() => resolveEarlyStopping({ patience: 1.5 }), /patience must be a whole number/);
  assert.throws(() => resolveEarlyStopping({ minDelta: -1 }), /minDelta must be a number from 0/);
  assert.throws(() => resolveEarlyStopping({ monitor: 'val_auc' as never }), /cannot monitor 'val_auc'/);
});

test('early stopping in fit: stops patience epochs after the best, restores its weights, and a resumed run ends the same', async () => {
  const dirs = await Promise.all(['a', 'b'].map((n) => mkdtemp(join(tmpdir(), `graft-es-${n}-`))));
  // Validation with a quarter of its labels flipped: its loss falls while the head learns, then
  // rises as the head grows sure of the flipped ones.
  const all = separable(160, 2), d = all.features.length / all.count;
  const train = { features: all.features.subarray(0, 120 * d), labels: all.labels.subarray(0, 120), count: 120 };
  const val = { features: all.features.subarray(120 * d), labels: all.labels.slice(120).map((y, i) => (i % 4 === 0 ? 1 - y : y)), count: 40 };
  const earlyStopping = { monitor: 'val_loss', patience: 2, restoreBestWeights: true } as const;
  const source = () => arrayBatchSource(train, 16, { seed: 9 });
  const copy = (p: HeadParams) => p.dense.map((d) => ({ kernel: d.kernel.slice(), bias: d.bias.slice() }));
  const final = async (t: HeadTrainer) => copy(await t.syncParams());
  try {
    const a = await makeTrainer(5);
    const snapshots: ReturnType<typeof copy>[] = [];
    const lines: string[] = [];
    let end: TrainEnd | undefined;
    const straight = await fit(a, source(), val, {
      epochs: 12, earlyStopping, checkpoint: { dir: dirs[0]! }, verbose: 2, log: (l) => lines.push(l),
      callbacks: { onEpochEnd: async () => void snapshots.push(await final(a)), onTrainEnd: (e) => void (end = e) },
    });
    const ran = straight.val_loss.length;
    const best = straight.val_loss.indexOf(Math.min(...straight.val_loss));
    assert.ok(best > 0 && ran < 12, `the scenario stops early after improving once (best epoch ${best}, ${ran} epochs)`);
    assert.equal(ran - 1, best + 2, 'stopped 2 epochs (the patience) after the best one');
    assert.deepEqual(end, { stoppedEpoch: best + 2, restoredEpoch: best });
    assert.ok(lines.includes(`Epoch ${ran}: early stopping`));
    assert.ok(lines.includes(`Restoring model weights from the end of the best epoch: ${best + 1}.`));
    const restored = await final(a);
    assert.deepEqual(restored, snapshots[best], "the trainer ends with the best epoch's weights");
    assert.notDeepEqual(restored, snapshots[ran - 1]);
    const v = await a.evaluate(val.features, val.labels, val.count);
    assert.ok(Math.abs(v.loss - straight.val_loss[best]!) < 1e-6, 'and scores as that epoch did');
    await a.dispose();

    // Stopped after the best epoch and resumed: the same history, stop and weights; the best
    // weights come back from the checkpoint folder, the patience count from its json.
    const b = await makeTrainer(5);
    await fit(b, source(), val, { epochs: best + 2, earlyStopping, checkpoint: { dir: dirs[1]! }, verbose: 0 });
    await b.dispose();
    const c = await makeTrainer(5);
    const resumed = await fit(c, source(), val, { epochs: 12, earlyStopping, checkpoint: { dir: dirs[1]!, resume: true }, verbose: 0 });
    assert.deepEqual(resumed, straight);
    assert.deepEqual(await final(c), restored);
    await c.dispose();
    const files = await readdir(dirs[1]!);
    assert.ok(files.some((f) => /^best-[ab]\.bin$/.test(f)), `best weights kept beside the checkpoint: ${files.join(', ')}`);
    // Resuming a run that already stopped trains nothing and ends with the same weights.
    const d = await makeTrainer(5);
    const again: string[] = [];
    const twice = await fit(d, source(), val, { epochs: 12, earlyStopping, checkpoint: { dir: dirs[1]!, resume: true }, verbose: 2, log: (l) => again.push(l) });
    assert.deepEqual(twice, straight);
    assert.ok(again.includes(`Epoch ${ran}: early stopping (the run stopped there; nothing more to train)`), again.join('\n'));
    assert.deepEqual(await final(d), restored);
    await d.dispose();
    // Finishing keeps only the best weights the checkpoint names.
    await markCheckpointFinished(dirs[1]!);
    const named = JSON.parse(await readFile(join(dirs[1]!, 'checkpoint.json'), 'utf8')).earlyStopping.bestWeights as string;
    assert.deepEqual((await readdir(dirs[1]!)).filter((f) => f.startsWith('best-')), [named]);

    // Without a checkpoint folder the best weights are kept in memory: the same end.
    const e = await makeTrainer(5);
    const inMemory = await fit(e, source(), val, { epochs: 12, earlyStopping, verbose: 0 });
    assert.deepEqual(inMemory, straight);
    assert.deepEqual(await final(e), restored);
    await e.dispose();
  } finally {
    await Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true })));
  }
});

test('the first Dense layer trains the same whatever its shard count and block size (one, two or three workers), with every optimiser', async () => {
  // 7 units: shards of 7, 4+3 and 2+3+2 columns; 20 inputs: blocks of 7, 2 and 3 (short last blocks, rows not multiples of 4).
  const spec: HeadSpec = { layers: [{ kind: 'flatten' }, { kind: 'dense', units: 7, activation: 'relu' }, { kind: 'dense', units: 3, activation: 'softmax' }] };
  const shape = [5, 4], n = 6, size = 20;
  const rng = new Random(21);
  const batches = Array.from({ length: 4 }, () => ({
    x: new Float32Array(n * size).map(() => rng.uniform(-1, 1)),
    y: (() => { const y = new Float32Array(n * 3); for (let b = 0; b < n; b++) y[b * 3 + rng.int(3)] = 1; return y; })(),
  }));
  for (const kind of ['rmsprop', 'adam', 'sgd'] as const) {
    const results: { kernel: Float32Array; slots: Float32Array[]; dx: Float32Array }[] = [];
    for (const [threads, blockInputs] of [[1, 7], [2, 2], [3, 3]] as const) {
      const trainer = await HeadTrainer.create(spec, initHead(spec, shape, 4), { kind, learningRate: 0.05 }, { seed: 4, threads, featureShape: shape, blockInputs, inputGradient: true });
      try {
        const dx = new Float32Array(n * size);
        for (const { x, y } of batches) await trainer.trainStep(x, y, n, dx);
        const params = await trainer.syncParams();
        const state = await trainer.getOptimizerState();
        results.push({ kernel: params.dense[0]!.kernel.slice(), slots: state.slots[0]!.map((s) => s.slice()), dx });
      } finally {
        await trainer.dispose();
      }
    }
    const close = (a: Float32Array, b: Float32Array, what: string) => {
      assert.equal(a.length, b.length, what);
      for (let i = 0; i < a.length; i++) assert.ok(Math.abs(a[i]! - b[i]!) <= 1e-6 * (1 + Math.abs(a[i]!)), `${kind} ${what}[${i}]: ${a[i]} vs ${b[i]}`);
    };
    assert.ok(results[0]!.kernel.some((v, i) => v !== initHead(spec, shape, 4).dense[0]!.kernel[i]), 'the kernel trained');
    for (const r of results.slice(1)) {
      close(results[0]!.kernel, r.kernel, 'first kernel');
      results[0]!.slots.forEach((s, j) => close(s, r.slots[j]!, `slot ${j}`));
      close(results[0]!.dx, r.dx, 'feature gradient');
    }
  }
});
