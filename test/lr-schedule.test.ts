/** Learning-rate schedules: Keras's ReduceLROnPlateau decisions, cosine, history's learning_rate and exact resume. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LrSchedule } from '../src/train/lr-schedule.js';
import { HeadTrainer } from '../src/train/head-trainer.js';
import { arrayBatchSource, fit, type ArrayData } from '../src/train/fit.js';
import { initHead } from '../src/model/head.js';
import type { HeadSpec } from '../src/model/head-spec.js';
import { Random } from '../src/util/random.js';

const logs = (val_loss: number) => ({ loss: 0, accuracy: 0, val_loss, val_accuracy: 0 });

test('plateau follows Keras 3 ReduceLROnPlateau: min_delta, patience, factor, cooldown, min_lr', () => {
  const s = new LrSchedule({ kind: 'plateau', patience: 2, factor: 0.5, minDelta: 0.01, cooldown: 1, minLr: 0.2 }, 1, 20);
  const seen: (number | null)[] = [];
  // improves, improves too little (wait 1), wait 2 -> 0.5; cooldown epoch (improves); wait 1, wait 2 -> 0.25; cooldown, then the floor 0.2.
  for (const v of [1.0, 0.995, 0.999, 0.9, 0.99, 0.99, 0.99, 0.99, 0.99, 0.99]) seen.push(s.onEpochEnd(logs(v)));
  // After a cooldown ends, Keras counts the same epoch as waiting (in_cooldown() is asked again).
  assert.deepEqual(seen, [null, null, 0.5, null, null, 0.25, null, 0.2, null, null]);
  assert.equal(s.rateFor(10), 0.2);
  const cos = new LrSchedule({ kind: 'cosine', minLr: 0.1 }, 1.1, 4);
  assert.deepEqual([0, 1, 2, 3].map((e) => +cos.rateFor(e).toFixed(6)), [1.1, +(0.1 + 0.5 * (1 + Math.SQRT1_2)).toFixed(6), 0.6, +(0.1 + 0.5 * (1 - Math.SQRT1_2)).toFixed(6)]);
  assert.throws(() => new LrSchedule({ kind: 'plateau', factor: 1 }, 1, 3), /factor out of range/);
});

const SPEC: HeadSpec = { layers: [{ kind: 'flatten' }, { kind: 'dense', units: 6, activation: 'relu' }, { kind: 'dense', units: 1, activation: 'sigmoid' }] };

function noisy(count: number, seed: number): ArrayData {
  const rng = new Random(seed), d = 6;
  const features = new Float32Array(count * d), labels = new Float32Array(count);
  for (let i = 0; i < count; i++) {
    labels[i] = rng.next() < 0.5 ? 1 : 0;
    for (let j = 0; j < d; j++) features[i * d + j] = rng.uniform(-1, 1) + (j === 0 ? labels[i]! - 0.5 : 0);
  }
  return { features, labels, count };
}

test('a schedule resumed mid-run gives the same rates, weights and history as the uninterrupted run', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'graft-lr-'));
  const train = noisy(80, 1), val = noisy(40, 2);
  const make = () => HeadTrainer.create(SPEC, initHead(SPEC, [6], 3), { kind: 'rmsprop', learningRate: 0.05 }, { seed: 3, threads: 2, featureShape: [6] });
  try {
    for (const lrSchedule of [{ kind: 'plateau' as const, patience: 0, factor: 0.5 }, { kind: 'cosine' as const }]) {
      const a = await make();
      const straight = await fit(a, arrayBatchSource(train, 16, { seed: 4 }), val, { epochs: 5, verbose: 0, lrSchedule });
      const pa = await a.syncParams();
      await a.dispose();
      assert.equal(straight.learning_rate!.length, 5);
      assert.equal(straight.learning_rate![0], 0.05);
      assert.ok(straight.learning_rate![4]! < 0.05, `the rate fell: ${straight.learning_rate}`);

      // A run of 5 epochs killed after its second: cosine's rates are those of a 5-epoch run.
      const b = await make();
      const stop = new AbortController();
      const killed = fit(b, arrayBatchSource(train, 16, { seed: 4 }), val, {
        epochs: 5, verbose: 0, lrSchedule, checkpoint: { dir }, signal: stop.signal,
        callbacks: { onEpochEnd: (epoch) => { if (epoch === 1) stop.abort(); } },
      });
      await assert.rejects(killed, /training interrupted in epoch 3/);
      await b.dispose();
      const c = await make();
      const resumed = await fit(c, arrayBatchSource(train, 16, { seed: 4 }), val, { epochs: 5, verbose: 0, lrSchedule, checkpoint: { dir, resume: true } });
      const pc = await c.syncParams();
      await c.dispose();
      assert.deepEqual(resumed, straight, lrSchedule.kind);
      pa.dense.forEach((d, i) => assert.deepEqual(pc.dense[i]!.kernel, d.kernel));
      await rm(dir, { recursive: true, force: true });
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('a resume with another schedule or other class weights is refused by name; older checkpoints compare as constant and unweighted', async () => {
  const { checkResumable } = await import('../src/train/checkpoint.js');
  const older = { epoch: 1, setup: { seed: 0 } };
  checkResumable('run', older, { seed: 0, 'class weight': 'none', 'learning-rate schedule': 'constant' }, 3);
  assert.throws(() => checkResumable('run', older, { seed: 0, 'learning-rate schedule': { kind: 'cosine', minLr: 0 } }, 3), /learning-rate schedule constant, now \{"kind":"cosine","minLr":0\}/);
  assert.throws(() => checkResumable('run', { epoch: 1, setup: { 'class weight': 'balanced' } }, { 'class weight': 'none' }, 3), /class weight balanced, now none/);
});
