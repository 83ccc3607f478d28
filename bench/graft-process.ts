/**
 * Runs the graft command as a user does, for the benchmarks that time whole runs: its wall time
 * and peak resident memory (Linux VmHWM, polled), and its output when asked for.
 */
import { spawn } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { MALLOC_TUNABLES } from '../src/util/malloc-tunables.js';

export interface GraftRun {
  code: number | null;
  seconds: number;
  peakRssMb: number;
  /** Standard output, when run with stdout: 'capture' (also echoed to standard error). */
  stdout: string;
}

/** Peak RSS of a process so far, in MB. */
async function peakRssMb(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8').catch(() => '');
  const m = /VmHWM:\s+(\d+) kB/.exec(status);
  return m ? Number(m[1]) / 1024 : 0;
}

export async function runGraft(args: string[], opts: { stdout?: 'inherit' | 'ignore' | 'capture' } = {}): Promise<GraftRun> {
  const bin = fileURLToPath(new URL('../../bin/graft.js', import.meta.url));
  const mode = opts.stdout ?? 'inherit';
  const t0 = performance.now();
  // GLIBC_TUNABLES set here so the launcher does not re-exec: the pid measured is graft's own.
  const child = spawn(process.execPath, [bin, ...args], {
    stdio: ['ignore', mode === 'capture' ? 'pipe' : mode, 'inherit'],
    env: { ...process.env, GLIBC_TUNABLES: MALLOC_TUNABLES },
  });
  let stdout = '';
  child.stdout?.on('data', (d: Buffer) => {
    stdout += d.toString();
    process.stderr.write(d);
  });
  let peak = 0;
  const timer = setInterval(() => void peakRssMb(child.pid!).then((mb) => (peak = Math.max(peak, mb))), 250);
  const code = await new Promise<number | null>((resolve) => child.on('exit', (c) => resolve(c)));
  clearInterval(timer);
  return { code, seconds: (performance.now() - t0) / 1000, peakRssMb: peak, stdout };
}
