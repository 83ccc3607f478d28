/**
 * Worker threads for graft's pools (the head trainer's shards, augmentation): started so that they run
 * under tsx as well as compiled, idle ones do not keep the process alive, and a request is a
 * promise of the worker's one reply.
 */
import { Worker } from 'node:worker_threads';
import { GraftError } from './errors.js';

/** A worker's reply: ok, or the message of what failed. */
export interface WorkerReply {
  ok: boolean;
  error?: string;
  [key: string]: unknown;
}

/**
 * A worker running `url`, unref'd (a script that forgets to dispose still ends; calls ref it while
 * they wait). Under tsx (a .ts url) Node 20 workers do not get tsx's loader from `--import`, so a
 * small eval'd bootstrap registers tsx's ESM API before importing the file.
 */
export function startWorker(url: URL, workerData?: unknown): Worker {
  let worker: Worker;
  if (!url.pathname.endsWith('.ts')) {
    worker = new Worker(url, { workerData });
  } else {
    // Resolved here (not in the worker) so it does not depend on the working directory.
    const api = import.meta.resolve('tsx/esm/api');
    const code = `import(${JSON.stringify(api)}).then((m) => { m.register(); return import(${JSON.stringify(url.href)}); })`;
    worker = new Worker(code, { eval: true, workerData });
  }
  worker.unref();
  return worker;
}

/** Replies awaited from each worker; it is ref'd while any is. */
const pending = new WeakMap<Worker, number>();

/** The worker's next message, as a reply; `what` names the worker in errors ("head trainer worker"). */
export function nextReply(worker: Worker, what: string): Promise<WorkerReply> {
  const busy = pending.get(worker) ?? 0;
  if (busy === 0) worker.ref();
  pending.set(worker, busy + 1);
  const settled = () => {
    const left = pending.get(worker)! - 1;
    pending.set(worker, left);
    if (left === 0) worker.unref();
  };
  return new Promise<WorkerReply>((resolve, reject) => {
    const onMessage = (m: WorkerReply) => {
      cleanup();
      if (m.ok) resolve(m);
      else reject(new GraftError(`${what} failed: ${m.error}`));
    };
    const onError = (e: Error) => {
      cleanup();
      reject(new GraftError(`${what} failed: ${e.message}`));
    };
    const onExit = (code: number) => {
      cleanup();
      reject(new GraftError(`${what} exited (code ${code})`));
    };
    const cleanup = () => {
      worker.off('message', onMessage);
      worker.off('error', onError);
      worker.off('exit', onExit);
      settled();
    };
    worker.on('message', onMessage);
    worker.on('error', onError);
    worker.on('exit', onExit);
  });
}

/** Posts `request` to the worker and waits for its reply. */
export function callWorker(worker: Worker, request: unknown, what: string, transfer?: ArrayBuffer[]): Promise<WorkerReply> {
  const reply = nextReply(worker, what);
  worker.postMessage(request, transfer);
  return reply;
}
