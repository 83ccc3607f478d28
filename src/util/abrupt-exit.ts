/**
 * Files a process must remove even when it ends abruptly (a second Ctrl-C, its launcher killed):
 * its run-folder locks. They go on 'exit', and, once watchForOrphaning runs, from a watchdog
 * thread that ends the process when its launcher is gone, even while the main thread is busy in
 * native code (a model being built or loaded runs for seconds without returning to the event
 * loop, so a timer or an IPC event there would wait that long).
 */
import { readFileSync, unlinkSync } from 'node:fs';
import { Worker } from 'node:worker_threads';

/** Files holding this process's pid as JSON `{ "pid": ... }`, removed if they still do. */
const owned = new Set<string>();
let exitHookSet = false;
let watchdog: Worker | null = null;

function removeIfOurs(file: string): void {
  try {
    if ((JSON.parse(readFileSync(file, 'utf8')) as { pid?: unknown }).pid === process.pid) unlinkSync(file);
  } catch {
    // gone already, or not ours
  }
}

/** Removes every owned file now (the process is ending). */
export function removeOwnedFiles(): void {
  for (const file of owned) removeIfOurs(file);
  owned.clear();
}

/**
 * Has `file` (JSON naming this process's pid) removed however the process ends; returns a
 * function that stops that (once the caller removed it itself).
 */
export function removeOnAbruptExit(file: string): () => void {
  owned.add(file);
  watchdog?.postMessage({ add: file });
  if (!exitHookSet) {
    exitHookSet = true;
    process.on('exit', removeOwnedFiles);
  }
  return () => {
    owned.delete(file);
    watchdog?.postMessage({ remove: file });
  };
}

/** The watchdog thread: polls the parent pid; once it is no longer `launcher`, removes the files and SIGKILLs the process. */
const WATCHDOG = `
const { parentPort, workerData } = require('node:worker_threads');
const fs = require('node:fs');
const files = new Set(workerData.files);
parentPort.on('message', (m) => { if (m.add) files.add(m.add); if (m.remove) files.delete(m.remove); });
setInterval(() => {
  if (process.ppid === workerData.launcher) return;
  for (const f of files) {
    try { if (JSON.parse(fs.readFileSync(f, 'utf8')).pid === workerData.pid) fs.unlinkSync(f); } catch {}
  }
  process.kill(workerData.pid, 'SIGKILL');
}, 100);
`;

/**
 * Ends this process, silently (SIGKILL: native threads are not torn down mid-call, which printed
 * "terminate called after throwing an instance of 'Napi::Error'"), within ~0.1 s of its parent
 * `launcher` ending, however busy the main thread is.
 */
export function watchForOrphaning(launcher: number): void {
  if (watchdog) return;
  watchdog = new Worker(WATCHDOG, { eval: true, execArgv: [], workerData: { launcher, pid: process.pid, files: [...owned] } });
  watchdog.unref();
}
