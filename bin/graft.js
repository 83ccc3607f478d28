#!/usr/bin/env node
// Thin launcher: the CLI lives in the compiled library (dist/), built by `npm run build`.
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

// A reader that went away (`graft train --help | head`): end quietly, as a command killed by
// SIGPIPE does (status 141), instead of an unhandled 'error' event and its stack trace.
for (const stream of [process.stdout, process.stderr]) {
  stream.on('error', (err) => {
    if (err.code === 'EPIPE') process.exit(141);
    throw err;
  });
}

const dist = new URL('../dist/src/', import.meta.url);
if (!existsSync(fileURLToPath(new URL('cli/main.js', dist)))) {
  console.error('graft: the package is not built yet; run `npm run build` first.');
  process.exit(1);
}
// `graft ui` is a small server (training runs in processes of its own): no relaunch, and none of the other commands loaded.
if (process.argv[2] === 'ui') {
  const { uiMain } = await import(new URL('cli/ui-main.js', dist).href);
  process.exitCode = await uiMain(process.argv);
} else {
  // On Linux, runs the CLI in a child process with GLIBC_TUNABLES set (glibc reads them only at
  // start; see src/util/malloc-tunables.ts); this process then only waits for it.
  const { relaunchWithMallocTunables } = await import(new URL('util/malloc-tunables.js', dist).href);
  await relaunchWithMallocTunables();
  const { main } = await import(new URL('cli/main.js', dist).href);
  process.exitCode = await main(process.argv);
}
