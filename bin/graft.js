#!/usr/bin/env node
// Thin launcher: the CLI lives in the compiled library (dist/), built by `npm run build`.
import { spawn } from 'node:child_process';
import { constants as osConstants } from 'node:os';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

// glibc reads GLIBC_TUNABLES only at process start. Transparent huge pages for malloc cut the
// first-touch cost of the big training buffers ~7x on small VMs, so re-exec once with it set.
const HUGETLB = 'glibc.malloc.hugetlb=1';
if (process.platform === 'linux' && !(process.env.GLIBC_TUNABLES ?? '').includes(HUGETLB)) {
  const tunables = [process.env.GLIBC_TUNABLES, HUGETLB].filter(Boolean).join(':');
  const child = spawn(process.execPath, [...process.execArgv, ...process.argv.slice(1)], {
    stdio: 'inherit',
    env: { ...process.env, GLIBC_TUNABLES: tunables },
  });
  // The child shares the terminal, so Ctrl-C reaches it directly (forwarding would send it twice);
  // signals sent to this process alone are passed on.
  process.on('SIGINT', () => {});
  for (const sig of ['SIGTERM', 'SIGHUP']) process.on(sig, () => child.kill(sig));
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
