/**
 * Whole `graft lab` runs as a user starts them (opt-in: `npm run bench -- --only lab`, ~50 min; GRAFT_BENCH_LAB=faithful,cached picks recipes):
 * wall time, peak resident memory and final validation accuracy for each recipe.
 */
import { spawn } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Report } from '../bench.js';

export const optIn = true;

const TUNABLES = 'glibc.malloc.hugetlb=1:glibc.malloc.mmap_threshold=33554432:glibc.malloc.trim_threshold=536870912';

/** Peak RSS of a process so far (Linux VmHWM), in MB. */
async function peakRssMb(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8').catch(() => '');
  const m = /VmHWM:\s+(\d+) kB/.exec(status);
  return m ? Number(m[1]) / 1024 : 0;
}

async function runLab(name: string, args: string[], report: Report): Promise<void> {
  const out = await mkdtemp(join(tmpdir(), `graft-bench-${name}-`));
  const bin = fileURLToPath(new URL('../../../bin/graft.js', import.meta.url));
  const t0 = performance.now();
  // GLIBC_TUNABLES set here so the launcher does not re-exec: the pid measured is the trainer's.
  const child = spawn(process.execPath, [bin, 'lab', '--out', out, '--quiet', ...args], {
    stdio: ['ignore', 'inherit', 'inherit'],
    env: { ...process.env, GLIBC_TUNABLES: TUNABLES },
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
  report({ name: `lab_${name}_val_accuracy_last5_mean`, value: last5.reduce((a, b) => a + b, 0) / last5.length, unit: 'fraction' });
  await rm(out, { recursive: true, force: true });
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
  for (const [name, args] of recipes) {
    if (only && !only.split(',').includes(name)) continue;
    await runLab(name, args, report);
  }
}
