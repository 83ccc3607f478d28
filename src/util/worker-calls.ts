/**
 * Worker threads for graft's pools (the head trainer's shards, augmentation, decoding): started so
 * that they run under tsx as well as compiled, idle ones do not keep the process alive, and a
 * request is a promise of the worker's reply: the next one (nextReply, one request in flight per
 * worker) or the one carrying its id (RequestsById, many in flight).
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

/**
 * Requests in flight to a pool's workers, answered by replies that carry the request's id: a pool
 * that keeps several requests in flight per worker gets its replies in any order. The workers are
 * ref'd while any request waits. A worker's error or exit fails every waiting request and every
 * later one, with `what` ("image decoding worker") in the message.
 */
export class RequestsById<Reply extends { id: number }> {
  private nextId = 1;
  private readonly waiting = new Map<number, { resolve: (reply: Reply) => void; reject: (err: Error) => void }>();
  private failure: Error | null = null;

  constructor(private readonly workers: readonly Worker[], what: string) {
    for (const worker of workers) {
      worker.on('message', (reply: Reply) => this.settle(reply));
      worker.on('error', (err) => this.fail(new GraftError(`${what} failed: ${err.message}`)));
      worker.on('exit', (code) => {
        if (this.waiting.size > 0) this.fail(new GraftError(`${what} exited (code ${code})`));
      });
    }
  }

  /** Posts `request(id)` to `worker` and resolves with the reply carrying that id. */
  send(worker: Worker, request: (id: number) => unknown): Promise<Reply> {
    if (this.failure) return Promise.reject(this.failure);
    const id = this.nextId++;
    return new Promise<Reply>((resolve, reject) => {
      if (this.waiting.size === 0) for (const w of this.workers) w.ref();
      this.waiting.set(id, { resolve, reject });
      worker.postMessage(request(id));
    });
  }

  private settle(reply: Reply): void {
    const request = this.waiting.get(reply.id);
    if (!request) return;
    this.waiting.delete(reply.id);
    if (this.waiting.size === 0) for (const w of this.workers) w.unref();
    request.resolve(reply);
  }

  private fail(err: Error): void {
    this.failure ??= err;
    const waiting = [...this.waiting.values()];
    this.waiting.clear();
    // Nothing waits any more: the surviving workers must not keep the process alive either.
    if (waiting.length > 0) for (const w of this.workers) w.unref();
    for (const request of waiting) request.reject(err);
  }
}
