/**
 * Whole `graft lab` runs (and `graft train`'s default recipe on the lab's data: train_default) as a user starts them (opt-in: `npm run bench -- --only lab`, ~50 min; GRAFT_BENCH_LAB=faithful,cached picks recipes,
 * GRAFT_BENCH_SEEDS=0,1,2 repeats each with other seeds):
 * wall time, peak resident memory and final validation accuracy for each recipe.
 */
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Report } from '../bench.js';
import { runGraft } from '../graft-process.js';
import { sharedLabDataDir } from '../../src/util/paths.js';

export const optIn = true;

/** Runs one recipe and reports its figures; returns its final and last-five validation accuracy. */
async function runLab(name: string, args: string[], report: Report): Promise<{ final: number; last5: number }> {
  const out = await mkdtemp(join(tmpdir(), `graft-bench-${name}-`));
  // A recipe's arguments start with the command: `graft lab ...`, or `graft train ...` on the lab's folders.
  const [command, ...rest] = args;
  const { code, seconds, peakRssMb: peak } = await runGraft([command!, '--out', out, '--quiet', ...rest]);
  if (code !== 0) throw new Error(`graft ${args.join(' ')} failed (exit ${code})`);
  const history = JSON.parse(await readFile(join(out, 'history.json'), 'utf8')) as { val_accuracy: number[] };
  report({ name: `lab_${name}_s`, value: seconds, unit: 's' });
  report({ name: `lab_${name}_peak_rss_mb`, value: peak, unit: 'MB' });
  report({ name: `lab_${name}_val_accuracy`, value: history.val_accuracy.at(-1)!, unit: 'fraction' });
  // The final epoch alone swings by a point or two; the last five say where the run settled.
  const last5 = history.val_accuracy.slice(-5);
  const last5Mean = last5.reduce((a, b) => a + b, 0) / last5.length;
  report({ name: `lab_${name}_val_accuracy_last5_mean`, value: last5Mean, unit: 'fraction' });
  await rm(out, { recursive: true, force: true });
  return { final: history.val_accuracy.at(-1)!, last5: last5Mean };
}

export async function run(report: Report): Promise<void> {
  const only = process.env.GRAFT_BENCH_LAB;
  const lab = (...a: string[]) => ['lab', ...a];
  const data = sharedLabDataDir();
  const recipes: [string, string[]][] = [
    ['faithful', lab('--mode', 'faithful')],
    ['cached', lab('--mode', 'cached')],
    ['cached_gap', lab('--mode', 'cached', '--head', 'gap,dense:1024:relu,dropout:0.2')],
    ['cached_inception', lab('--mode', 'cached', '--preprocess', 'inception')],
    ['views2', lab('--mode', 'views=2')],
    ['faithful_inception', lab('--mode', 'faithful', '--preprocess', 'inception')],
    ['faithful_rmsprop_legacy', lab('--mode', 'faithful', '--optimizer', 'rmsprop-legacy')],
    // graft train's default recipe on the lab's data (issue #17: at most 90 s).
    ['train_default', ['train', '--data', join(data, 'train'), '--val', join(data, 'validation')]],
  ];
  // GRAFT_BENCH_SEEDS=0,1,2 runs every recipe once per seed and adds the mean over the seeds.
  const seeds = (process.env.GRAFT_BENCH_SEEDS ?? '0').split(',').map(Number);
  for (const [name, args] of recipes) {
    if (only && !only.split(',').includes(name)) continue;
    const results = [];
    for (const seed of seeds) results.push(await runLab(seed === 0 ? name : `${name}_seed${seed}`, [...args, '--seed', String(seed)], report));
    if (seeds.length > 1) {
      const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
      report({ name: `lab_${name}_val_accuracy_seed_mean`, value: mean(results.map((r) => r.final)), unit: 'fraction' });
      report({ name: `lab_${name}_val_accuracy_last5_seed_mean`, value: mean(results.map((r) => r.last5)), unit: 'fraction' });
    }
  }
}
