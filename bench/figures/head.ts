/**
 * The head's training speed on cached features: the lab's Flatten head (7x7x768 -> Dense(1024,
 * relu) -> Dropout(0.2) -> Dense(1, sigmoid)), RMSprop(1e-4), batch 20, 100 steps = one epoch of
 * 2000 samples, on random features; and the same with GlobalAveragePooling2D.
 */
import type { Report } from '../bench.js';
import { initHead } from '../../src/model/head.js';
import { LAB_HEAD, type HeadSpec } from '../../src/model/head-spec.js';
import { HeadTrainer } from '../../src/train/head-trainer.js';
import { Random } from '../../src/util/random.js';

const FEATURES = [7, 7, 768];
const SAMPLES = 2000, BATCH = 20;

/** Wall seconds of one epoch, its best step, and the CPU seconds (all threads) it used: on a busy machine wall time is noisy, CPU time much less. */
async function epochSeconds(spec: HeadSpec, features: Float32Array, labels: Float32Array, threads: number): Promise<{ epoch: number; step: number; cpu: number }> {
  const size = FEATURES.reduce((a, b) => a * b, 1);
  const trainer = await HeadTrainer.create(spec, initHead(spec, FEATURES, 1), { kind: 'rmsprop', learningRate: 1e-4 }, { seed: 1, threads, featureShape: FEATURES });
  try {
    // Warm-up steps: first touch of the workers' memory, JIT.
    for (let s = 0; s < 3; s++) await trainer.trainStep(features.subarray(s * BATCH * size), labels.subarray(s * BATCH), BATCH);
    let best = Infinity;
    const t0 = performance.now(), c0 = process.cpuUsage();
    for (let s = 0; s < SAMPLES / BATCH; s++) {
      const t = performance.now();
      await trainer.trainStep(features.subarray(s * BATCH * size, (s + 1) * BATCH * size), labels.subarray(s * BATCH), BATCH);
      best = Math.min(best, performance.now() - t);
    }
    const cpu = process.cpuUsage(c0);
    return { epoch: (performance.now() - t0) / 1000, step: best, cpu: (cpu.user + cpu.system) / 1e6 };
  } finally {
    await trainer.dispose();
  }
}

export async function run(report: Report): Promise<void> {
  const size = FEATURES.reduce((a, b) => a * b, 1);
  const rng = new Random(7);
  const features = new Float32Array(SAMPLES * size);
  for (let i = 0; i < features.length; i++) features[i] = rng.next() * 2;
  const labels = new Float32Array(SAMPLES).map(() => rng.int(2));
  const threads = Number(process.env.GRAFT_HEAD_THREADS ?? 2);
  const flat = await epochSeconds(LAB_HEAD, features, labels, threads);
  report({ name: 'head_epoch_s', value: flat.epoch, unit: 's' });
  report({ name: 'head_step_ms', value: flat.step, unit: 'ms (best step)' });
  report({ name: 'head_epoch_cpu_s', value: flat.cpu, unit: `s CPU over ${threads} threads` });
  const gap: HeadSpec = { layers: [{ kind: 'gap' }, ...LAB_HEAD.layers.slice(1)] };
  const g = await epochSeconds(gap, features, labels, threads);
  report({ name: 'head_gap_epoch_s', value: g.epoch, unit: 's' });
  report({ name: 'head_bench_peak_rss_mb', value: process.resourceUsage().maxRSS / 1024, unit: 'MB' });
}
