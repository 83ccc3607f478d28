/**
 * The glibc malloc settings graft's hot paths need, and a way to run a script under them.
 *
 * onnxruntime-node returns every output in fresh memory (a preallocated output is copied into, not
 * written), and on Linux each fresh page costs a fault on first touch. With glibc's defaults the
 * head's gradient blocks are mapped, faulted in and unmapped again every step: the lab head's
 * epoch measured 45 s instead of 7 s. glibc reads GLIBC_TUNABLES only when a process starts, so a
 * process that lacks them is run again with them (the `graft` launcher does this; library users
 * call `relaunchWithMallocTunables()` first thing).
 *  - hugetlb=1: transparent huge pages for malloc, ~7x cheaper first touch of big buffers;
 *  - mmap_threshold=32 MiB: outputs come from the heap instead of fresh mappings;
 *  - trim_threshold=512 MiB: memory freed after a step is kept for the next one.
 */
import { spawn } from 'node:child_process';
import { constants as osConstants } from 'node:os';
import { isMainThread } from 'node:worker_threads';
import { removeOwnedFiles, watchForOrphaning } from './abrupt-exit.js';

export const MALLOC_TUNABLES = 'glibc.malloc.hugetlb=1:glibc.malloc.mmap_threshold=33554432:glibc.malloc.trim_threshold=536870912';

/** Set in the relaunched process: the pid of the process waiting for it. */
const LAUNCHER_PID = 'GRAFT_LAUNCHER_PID';

/** Whether this process runs under graft's malloc settings (always true off Linux, where they do not apply). */
export function mallocTunablesSet(env: NodeJS.ProcessEnv = process.env): boolean {
  return process.platform !== 'linux' || /glibc\.malloc\.mmap_threshold=/.test(env.GLIBC_TUNABLES ?? '');
}

/**
 * On Linux, when this process lacks graft's malloc settings, runs the same script again (same
 * node, flags and arguments, stdio shared) with them added to GLIBC_TUNABLES; this process then
 * only waits, passes on SIGINT/SIGTERM/SIGHUP, and exits with the child's status: the returned
 * promise never settles here. In the relaunched process (or where nothing needs doing) it resolves
 * at once. Call it before doing anything else, since the script runs again from the top.
 */
export function relaunchWithMallocTunables(): Promise<void> {
  // Relaunched already: GLIBC_TUNABLES may have been dropped on the way (secure execution, a
  // scrubbing wrapper), and starting yet another process would not bring them back.
  if (mallocTunablesSet() || process.env[LAUNCHER_PID]) {
    exitWhenLauncherDies();
    return Promise.resolve();
  }
  // A REPL, `node -e` or a worker thread cannot be started again, and under a debugger (--inspect)
  // the child would fight this process for its port.
  if (!isMainThread || !process.argv[1] || process.execArgv.some((a) => a.startsWith('--inspect'))) return Promise.resolve();
  const tunables = [process.env.GLIBC_TUNABLES, MALLOC_TUNABLES].filter(Boolean).join(':');
  // The IPC channel carries nothing: it closes when this process ends, however it ends (kill -9
  // included), and the child hears of that at once (Node has no parent-death signal).
  const child = spawn(process.execPath, [...process.execArgv, ...process.argv.slice(1)], {
    stdio: ['inherit', 'inherit', 'inherit', 'ipc'],
    env: { ...process.env, GLIBC_TUNABLES: tunables, [LAUNCHER_PID]: String(process.pid) },
  });
  // A terminal's Ctrl-C reaches both processes; graft's CLI counts two interrupts within a moment
  // as one. Signals sent to this process alone are passed on.
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.on(sig, () => child.kill(sig));
  child.on('error', (err) => {
    console.error(`graft: could not start ${process.execPath}: ${err.message}`);
    process.exit(1);
  });
  child.on('exit', (code, signal) => process.exit(code ?? 128 + (signal ? osConstants.signals[signal] : 1)));
  return new Promise<void>(() => undefined);
}

let watchingLauncher = false;
/**
 * In a relaunched process: stop too, within a fraction of a second and silently, if the launcher
 * is killed outright (kill -9) rather than run on unseen. A watchdog thread polls the parent pid
 * (the main thread may be busy in native code for seconds); the launcher's IPC channel closing
 * says so at once when the main thread is free.
 */
function exitWhenLauncherDies(): void {
  if (!isMainThread || watchingLauncher) return;
  const launcher = Number(process.env[LAUNCHER_PID]);
  // Read once and dropped: processes this one starts (a graft command run from a relaunched
  // script, say) have another parent, and would take themselves for orphans.
  delete process.env[LAUNCHER_PID];
  if (!launcher) return;
  watchingLauncher = true;
  watchForOrphaning(launcher);
  if (process.channel) {
    // The listener first: adding it refs the channel, which must not keep this process alive.
    process.once('disconnect', endAsOrphan);
    process.channel.unref();
  }
}

/** Ends this process with nobody left to report to: its locks go, then SIGKILL (silent, see watchForOrphaning). */
function endAsOrphan(): void {
  removeOwnedFiles();
  process.kill(process.pid, 'SIGKILL');
}
