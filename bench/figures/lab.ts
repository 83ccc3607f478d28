/**
 * Whole `graft lab` runs as a user starts them (opt-in: `npm run bench -- --only lab`, ~50 min; GRAFT_BENCH_LAB=faithful,cached picks recipes,
 * GRAFT_BENCH_SEEDS=0,1,2 repeats each with other seeds):
 * wall time, peak resident memory and final validation accuracy for each recipe.
 */
import { spawn } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Report } from '../bench.js';
import { MALLOC_TUNABLES } from '../../src/util/malloc-tunables.js';

export const optIn = true;

/** Peak RSS of a process so far (Linux VmHWM), in MB. */
async function peakRssMb(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8').catch(() => '');
  const m = /VmHWM:\s+(\d+) kB/.exec(status);
  return m ? Number(m[1]) / 1024 : 0;
}

/** Runs one recipe and reports its figures; returns its final and last-five validation accuracy. */
async function runLab(name: string, args: string[], report: Report): Promise<{ final: number; last5: number }> {
  const out = await mkdtemp(join(tmpdir(), `graft-bench-${name}-`));
  const bin = fileURLToPath(new URL('../../../bin/graft.js', import.meta.url));
  const t0 = performance.now();
  // GLIBC_TUNABLES set here so the launcher does not re-exec: the pid measured is the trainer's.
  const child = spawn(process.execPath, [bin, 'lab', '--out', out, '--quiet', ...args], {
    stdio: ['ignore', 'inherit', 'inherit'],
    env: { ...process.env, GLIBC_TUNABLES: MALLOC_TUNABLES },
  });
  let peak = 0;
  const timer = setInterval(() => void peakRssMb(child.pid!).then((mb) => (peak = Math.max(peak, mb))), 250);
  const code = await new Promise<number | null>((resolve) => child.on('exit', (c) => resolve(c)));
  clearInterval(timer);
  const seconds = (performance.now() - t0) / 1000;
  if (code !== 0) throw new Error(`graft lab ${args.join(' ')} failed (exit ${code})`);
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
  const recipes: [string, string[]][] = [
    ['faithful', ['--mode', 'faithful']],
    ['cached', ['--mode', 'cached']],
    ['cached_gap', ['--mode', 'cached', '--head', 'gap,dense:1024:relu,dropout:0.2']],
    ['cached_inception', ['--mode', 'cached', '--preprocess', 'inception']],
    ['views2', ['--mode', 'views=2']],
    ['faithful_inception', ['--mode', 'faithful', '--preprocess', 'inception']],
    ['faithful_rmsprop_legacy', ['--mode', 'faithful', '--optimizer', 'rmsprop-legacy']],
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
