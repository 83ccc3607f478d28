#!/usr/bin/env node
// Thin launcher: the CLI lives in the compiled library (dist/), built by `npm run build`.
import { spawn } from 'node:child_process';
import { constants as osConstants } from 'node:os';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

// glibc reads GLIBC_TUNABLES only at process start, so re-exec once with them set:
// - hugetlb=1: transparent huge pages for malloc cut the first-touch cost of big buffers ~7x;
// - mmap/trim thresholds: onnxruntime's per-step outputs (the head's gradient blocks) are recycled
//   from the heap instead of being mapped and faulted in afresh every step (about 2x on the head).
// The npm scripts that run node directly (test, bench) set the same string.
const TUNABLES = 'glibc.malloc.hugetlb=1:glibc.malloc.mmap_threshold=33554432:glibc.malloc.trim_threshold=536870912';
if (process.platform === 'linux' && !(process.env.GLIBC_TUNABLES ?? '').includes('glibc.malloc.hugetlb')) {
  const tunables = [process.env.GLIBC_TUNABLES, TUNABLES].filter(Boolean).join(':');
  const child = spawn(process.execPath, [...process.execArgv, ...process.argv.slice(1)], {
    stdio: 'inherit',
    env: { ...process.env, GLIBC_TUNABLES: tunables, GRAFT_LAUNCHER_PID: String(process.pid) },
  });
  // Signals sent to this process are passed on (a terminal's Ctrl-C reaches both; the CLI counts
  // two interrupts within a moment as one). If this process is killed outright, the child notices
  // it was orphaned and stops (see src/cli/main.ts).
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) process.on(sig, () => child.kill(sig));
  child.on('exit', (code, signal) => {
    process.exit(code ?? 128 + (signal ? osConstants.signals[signal] : 1));
  });
} else {
  await runCli();
}

async function runCli() {
  const entry = new URL('../dist/src/cli/main.js', import.meta.url);
  if (!existsSync(fileURLToPath(entry))) {
    console.error('graft: the package is not built yet; run `npm run build` first.');
    process.exit(1);
  }
  const { main } = await import(entry.href);
  process.exitCode = await main(process.argv);
}
