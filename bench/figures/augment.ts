/**
 * Augmentation throughput with the lab's settings (rotation 40, shifts 0.2, shear 0.2, zoom 0.2,
 * horizontal flip, nearest fill) at 150x150, fused with rescale: single thread and a 2-worker
 * pool; augment_img_s is the better of the two.
 */
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import sharp from 'sharp';
import type { Report } from '../bench.js';
import { LAB_AUGMENTATION, applyTransform, randomTransform, type TransformParams } from '../../src/data/augment.js';
import { AugmentPool, sharedFloat32, sharedPackedImages } from '../../src/data/augment-pool.js';
import { preprocessParams } from '../../src/data/preprocess.js';
import { sharedLabDataDir } from '../../src/util/paths.js';
import { Random } from '../../src/util/random.js';

const SIZE = 150;
const BATCH = 32;
const IMAGES = 64;

async function loadImages(): Promise<Uint8Array[]> {
  const dir = join(sharedLabDataDir(), 'train', 'cats');
  const files = (await readdir(dir)).filter((f) => f.endsWith('.jpg')).sort().slice(0, IMAGES);
  return Promise.all(
    files.map(async (f) => {
      const b = await sharp(join(dir, f)).removeAlpha().resize(SIZE, SIZE, { kernel: 'nearest', fit: 'fill' }).raw().toBuffer();
      return new Uint8Array(b.buffer, b.byteOffset, b.length);
    }),
  );
}

/** Best images/s over `reps` runs of about `seconds` each. */
async function measure(step: (n: number) => Promise<void> | void, reps = 3, seconds = 1.5): Promise<number> {
  let best = 0;
  for (let rep = 0; rep < reps; rep++) {
    let n = 0;
    const t0 = performance.now();
    while (performance.now() - t0 < seconds * 1000) {
      await step(n);
      n += BATCH;
    }
    best = Math.max(best, n / ((performance.now() - t0) / 1000));
  }
  return best;
}

export async function run(report: Report): Promise<void> {
  const views = await loadImages();
  const size = SIZE * SIZE * 3;
  const pre = preprocessParams('rescale');
  const cfg = LAB_AUGMENTATION;
  const rng = new Random(1);
  const draw = (): TransformParams[] => Array.from({ length: BATCH }, () => randomTransform(cfg, rng, SIZE, SIZE));

  const out = new Float32Array(BATCH * size);
  await measure((n) => {
    draw().forEach((p, k) => applyTransform(views[(n + k) % views.length]!, SIZE, SIZE, p, cfg, out, k * size, pre));
  }, 1, 0.5); // warm-up
  const single = await measure((n) => {
    draw().forEach((p, k) => applyTransform(views[(n + k) % views.length]!, SIZE, SIZE, p, cfg, out, k * size, pre));
  });

  // Two workers (the caller waits), and one worker plus the calling thread.
  const pooled = async (threads: number, useCallingThread: boolean): Promise<number> => {
    const pool = AugmentPool.create({ threads });
    try {
      const store = sharedPackedImages(views, SIZE, SIZE);
      const sout = sharedFloat32(BATCH * size);
      const step = (n: number) => {
        const idx = Array.from({ length: BATCH }, (_, k) => (n + k) % views.length);
        return pool.augmentBatch(store, idx, draw(), sout, { fillMode: cfg.fillMode, cval: cfg.cval, pre, useCallingThread });
      };
      await measure(step, 1, 0.5); // warm-up (worker start)
      return await measure(step);
    } finally {
      await pool.close();
    }
  };
  const pool2 = await pooled(2, false);
  const pool1main = await pooled(1, true);

  report({ name: 'augment_img_s', value: Math.max(single, pool2, pool1main), unit: 'img/s' });
  report({ name: 'augment_img_s_1thread', value: single, unit: 'img/s' });
  report({ name: 'augment_img_s_pool2', value: pool2, unit: 'img/s' });
  report({ name: 'augment_img_s_pool1_main', value: pool1main, unit: 'img/s' });
}
