/**
 * Fine-tuning's hot path at the lab's size (150x150, batch 20, mixed7's block trainable): the
 * frozen part up to mixed6, the segment's forward (keeping what backward needs) and its backward,
 * against the whole frozen backbone's forward that a frozen faithful step runs. Their ratio is
 * what a faithful fine-tuning epoch costs over a frozen one, head and decoding aside (target <= 1.5).
 */
import type { Report } from '../bench.js';
import { loadBackbone } from '../../src/backbone/backbone.js';
import { trainableSegment } from '../../src/train/finetune/segment.js';
import { SegmentEngine } from '../../src/train/finetune/segment-engine.js';
import { Random } from '../../src/util/random.js';

const N = 20;
const ROUNDS = 9;

/**
 * Median milliseconds of each timed part over ROUNDS rounds, after one warm-up; each round runs
 * every part once, in turn, so background load on a shared machine hits all of them alike.
 */
async function interleavedMedians(parts: Record<string, () => Promise<unknown>>): Promise<Record<string, number>> {
  const times: Record<string, number[]> = {};
  for (const [name, fn] of Object.entries(parts)) {
    await fn();
    times[name] = [];
  }
  for (let r = 0; r < ROUNDS; r++) {
    for (const [name, fn] of Object.entries(parts)) {
      const t0 = performance.now();
      await fn();
      times[name]!.push(performance.now() - t0);
    }
  }
  return Object.fromEntries(Object.entries(times).map(([name, t]) => [name, t.sort((p, q) => p - q)[Math.floor(t.length / 2)]!]));
}

export async function run(report: Report): Promise<void> {
  const full = await loadBackbone({ cut: 'mixed7', inputSize: [150, 150] });
  const below = await loadBackbone({ cut: 'mixed6', inputSize: [150, 150] });
  const segment = trainableSegment(full.graph, 'mixed6', [150, 150, 3]);
  const engine = await SegmentEngine.create(segment, full.weights);
  try {
    const rng = new Random(1);
    const images = Float32Array.from({ length: N * 150 * 150 * 3 }, () => rng.next());
    const x = await below.extractor.extract(images, N);
    const dy = Float32Array.from({ length: N * engine.outputSize }, () => (rng.next() - 0.5) * 1e-3);
    const t = await interleavedMedians({
      frozen: () => full.extractor.extract(images, N),
      lower: () => below.extractor.extract(images, N),
      forward: () => engine.forward(x, N, true),
      step: async () => {
        await engine.forward(x, N, true);
        await engine.backward(dy, N);
      },
    });
    const { frozen, lower, forward, step } = t as { frozen: number; lower: number; forward: number; step: number };
    report({ name: 'frozen_forward_ms_b20', value: frozen, unit: 'ms' });
    report({ name: 'below_mixed6_forward_ms_b20', value: lower, unit: 'ms' });
    report({ name: 'mixed7_segment_forward_ms_b20', value: forward, unit: 'ms' });
    report({ name: 'mixed7_segment_backward_ms_b20', value: step - forward, unit: 'ms' });
    report({ name: 'finetune_over_frozen_step', value: (lower + step) / frozen, unit: 'x' });
  } finally {
    await engine.dispose();
    await full.dispose();
    await below.dispose();
  }
}
