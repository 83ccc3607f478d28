/**
 * Scale: graft trained on N distinct photos, as a user's big folder (opt-in: `npm run bench -- --only
 * scale`; long). A generator writes N JPEGs made from cats_and_dogs_filtered (each a different crop
 * and flip of one of its 3,000 photos, so no two files are the same) into a temporary folder; then
 * `graft train` runs on it with --validation-split 0.1 and its wall time, images/s (images of the
 * folder over the whole run's wall time, features and epochs included) and peak resident memory are
 * reported.
 *
 * GRAFT_BENCH_SCALE picks the runs as recipe:N[:epochs], comma-separated; default the set:
 * lab_cached:5000, lab_cached:20000, gap299_cached:6000, lab_faithful:20000:1 (hours on 2 cores).
 * Recipes: lab_cached (the lab's recipe, --mode cached), gap299_cached (299x299, inception
 * preprocessing, bilinear, gap head), lab_faithful (the lab, fresh augmentation every step).
 */
import { mkdir, mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import type { Report } from '../bench.js';
import { runGraft } from '../graft-process.js';
import { sharedLabDataDir } from '../../src/util/paths.js';
import { runPool } from '../../src/data/image-store.js';
import { Random } from '../../src/util/random.js';

export const optIn = true;

const RECIPES: Record<string, string[]> = {
  lab_cached: ['--recipe', 'lab', '--mode', 'cached'],
  // graft train's default recipe: 299x299, inception preprocessing, bilinear, gap head, cached.
  gap299_cached: ['--recipe', 'default', '--mode', 'cached', '--input-size', '299', '--preprocess', 'inception', '--interpolation', 'bilinear', '--head', 'gap,dense:1024:relu,dropout:0.2'],
  lab_faithful: ['--recipe', 'lab', '--mode', 'faithful'],
};
const DEFAULT_RUNS = 'lab_cached:5000,lab_cached:20000,gap299_cached:6000,lab_faithful:20000:1';
const DEFAULT_EPOCHS = 2;

/**
 * Writes `n` distinct JPEGs into dir/cats and dir/dogs: image i is photo i mod 3000 of the lab set (classes alternating),
 * cropped to a random 60-100% window (drawn from i) and mirrored on odd passes, at most 300 px a side.
 */
export async function generateImages(dir: string, n: number): Promise<void> {
  // Cats and dogs taking turns, so that any N has both classes half and half.
  const byClass: { path: string; cls: string }[][] = [[], []];
  for (const split of ['train', 'validation']) {
    for (const [c, cls] of ['cats', 'dogs'].entries()) {
      const folder = join(sharedLabDataDir(), split, cls);
      for (const f of (await readdir(folder)).sort()) byClass[c]!.push({ path: join(folder, f), cls });
    }
  }
  const sources = byClass[0]!.flatMap((cat, k) => [cat, byClass[1]![k]!]);
  for (const cls of ['cats', 'dogs']) await mkdir(join(dir, cls), { recursive: true });
  await runPool(n, 6, async (i) => {
    const src = sources[i % sources.length]!;
    const pass = Math.floor(i / sources.length);
    const rng = new Random(i + 1);
    const image = sharp(src.path);
    const { width = 1, height = 1 } = await image.metadata();
    const w = Math.max(8, Math.round(width * rng.uniform(0.6, 1))), h = Math.max(8, Math.round(height * rng.uniform(0.6, 1)));
    const left = Math.floor(rng.next() * (width - w + 1)), top = Math.floor(rng.next() * (height - h + 1));
    let out = image.extract({ left, top, width: w, height: h });
    if (pass % 2 === 1) out = out.flop();
    await out.resize(300, 300, { fit: 'inside', withoutEnlargement: true }).jpeg({ quality: 90 }).toFile(join(dir, src.cls, `img${String(i).padStart(6, '0')}.jpg`));
  });
}

async function trainOnce(name: string, data: string, args: string[], report: Report): Promise<void> {
  const out = await mkdtemp(join(tmpdir(), `graft-bench-scale-${name}-`));
  const { code, seconds, peakRssMb: peak } = await runGraft(['train', '--data', data, '--validation-split', '0.1', '--out', out, '--quiet', ...args], { stdout: 'ignore' });
  await rm(out, { recursive: true, force: true });
  if (code !== 0) throw new Error(`graft train ${args.join(' ')} failed (exit ${code})`);
  const n = Number(/_(\d+)$/.exec(name)![1]);
  report({ name: `scale_${name}_s`, value: seconds, unit: 's' });
  report({ name: `scale_${name}_img_s`, value: n / seconds, unit: 'images/s' });
  report({ name: `scale_${name}_peak_rss_mb`, value: peak, unit: 'MB' });
}

export async function run(report: Report): Promise<void> {
  const runs = (process.env.GRAFT_BENCH_SCALE ?? DEFAULT_RUNS).split(',').map((spec) => {
    const [recipe, n, epochs] = spec.split(':');
    if (!recipe || !RECIPES[recipe] || !(Number(n) > 0)) throw new Error(`GRAFT_BENCH_SCALE: '${spec}' is not recipe:N[:epochs] (recipes: ${Object.keys(RECIPES).join(', ')})`);
    return { recipe, n: Number(n), epochs: Number(epochs ?? DEFAULT_EPOCHS) };
  });
  const root = await mkdtemp(join(tmpdir(), 'graft-bench-scale-data-'));
  try {
    // One folder per size, generated once and shared by the runs of that size.
    const folders = new Map<number, string>();
    for (const { recipe, n, epochs } of runs) {
      let data = folders.get(n);
      if (!data) {
        data = join(root, `n${n}`);
        const t0 = performance.now();
        await generateImages(data, n);
        report({ name: `scale_generate_${n}_img_s`, value: n / ((performance.now() - t0) / 1000), unit: 'images/s' });
        folders.set(n, data);
      }
      await trainOnce(`${recipe}_e${epochs}_${n}`, data, [...RECIPES[recipe]!, '--epochs', String(epochs)], report);
    }
  } finally {
    await rm(root, { recursive: true, force: true });
  }
}
