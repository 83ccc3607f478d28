/**
 * Batch prediction: `graft predict --json` over a folder of 1,000 photos of cats_and_dogs_filtered
 * (500 of each class, linked into a temporary folder) with a model of the default recipe (299x299,
 * gap head) trained for one epoch on 40 other photos (its accuracy does not matter here, its cost
 * does: the whole backbone to mixed7 runs for every image). Reports the command's wall time,
 * images/s and peak resident memory (the child process's VmHWM).
 */
import { spawn } from 'node:child_process';
import { mkdir, mkdtemp, readdir, readFile, rm, symlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Report } from '../bench.js';
import { trainClassifier } from '../../src/learner.js';
import { MALLOC_TUNABLES } from '../../src/util/malloc-tunables.js';
import { sharedInceptionWeightsDir, sharedLabDataDir } from '../../src/util/paths.js';

const IMAGES = 1000;

async function peakRssMb(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8').catch(() => '');
  const m = /VmHWM:\s+(\d+) kB/.exec(status);
  return m ? Number(m[1]) / 1024 : 0;
}

/** Links photos [from, from + perClass) of each class of the lab's training set into dir/cls. */
async function linkPhotos(dir: string, from: number, perClass: number): Promise<void> {
  for (const cls of ['cats', 'dogs']) {
    const src = join(sharedLabDataDir(), 'train', cls);
    await mkdir(join(dir, cls), { recursive: true });
    for (const f of (await readdir(src)).sort().slice(from, from + perClass)) await symlink(join(src, f), join(dir, cls, f));
  }
}

export async function run(report: Report): Promise<void> {
  const root = await mkdtemp(join(tmpdir(), 'graft-bench-predict-'));
  try {
    // The model: photos 0-19 of each class to train, 20-29 to validate; prediction reads 500-999.
    await linkPhotos(join(root, 'train'), 0, 20);
    await linkPhotos(join(root, 'val'), 20, 10);
    await linkPhotos(join(root, 'photos'), 500, IMAGES / 2);
    await trainClassifier({ data: join(root, 'train'), validationData: join(root, 'val'), out: join(root, 'run'), weights: sharedInceptionWeightsDir('fp32'), epochs: 1, verbose: 0 });

    const bin = fileURLToPath(new URL('../../../bin/graft.js', import.meta.url));
    const t0 = performance.now();
    // GLIBC_TUNABLES set here so the launcher does not re-exec: the pid measured is the predictor's.
    const child = spawn(process.execPath, [bin, 'predict', '--model', join(root, 'run'), '--json', join(root, 'photos')], {
      stdio: ['ignore', 'pipe', 'inherit'],
      env: { ...process.env, GLIBC_TUNABLES: MALLOC_TUNABLES },
    });
    let lines = 0;
    child.stdout.on('data', (chunk: Buffer) => {
      for (const byte of chunk) if (byte === 10) lines++;
    });
    let peak = 0;
    const timer = setInterval(() => void peakRssMb(child.pid!).then((mb) => (peak = Math.max(peak, mb))), 200);
    const code = await new Promise<number | null>((resolve) => child.on('exit', (c) => resolve(c)));
    clearInterval(timer);
    const seconds = (performance.now() - t0) / 1000;
    if (code !== 0 || lines !== IMAGES) throw new Error(`graft predict failed (exit ${code}, ${lines} of ${IMAGES} lines)`);
    report({ name: 'predict_1000_s', value: seconds, unit: 's' });
    report({ name: 'predict_1000_img_s', value: IMAGES / seconds, unit: 'images/s' });
    report({ name: 'predict_1000_peak_rss_mb', value: peak, unit: 'MB' });
  } finally {
    await rm(root, { recursive: true, force: true });
  }
}
