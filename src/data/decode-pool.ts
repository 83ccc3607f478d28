/**
 * Decoding on worker threads beside the calling one. sharp decodes on libuv's thread pool either
 * way, but the resize to the run's size (PIL's, in JS: ~2.5 ms for a 500x375 photo at 299x299)
 * runs on the thread that asked, which caps a store's build near 400 images/s however many cores
 * decode. Workers write straight into the store's SharedArrayBuffer: no pixels are copied back.
 */
import { availableParallelism } from 'node:os';
import type { Worker } from 'node:worker_threads';
import { GraftError } from '../util/errors.js';
import { RequestsById, startWorker } from '../util/worker-calls.js';
import { BadImageError, type DecodeOptions, type Interpolation } from './decode.js';

/** A decode request: the file, and where in `target` its height*width*3 bytes go. */
export interface DecodeTask {
  id: number;
  path: string;
  opts: DecodeOptions;
  target: SharedArrayBuffer;
  byteOffset: number;
  length: number;
}

/** Done, or why not: `bad` for a file that is not a usable image (BadImageError's reason), `error` for anything else. */
export interface DecodeReply {
  id: number;
  bad?: string;
  error?: string;
}

/** Below this many images a store decodes on the calling thread alone: starting a worker (and sharp in it) costs ~0.1 s. */
export const MIN_IMAGES_FOR_WORKERS = 100;

/**
 * Worker threads a store of `images` images decodes on besides the calling thread: one per further
 * core (at most 3), where a convolution resize runs; none for 'nearest', whose sampling is cheap.
 * Measured on 2 cores, 2,000 of the lab's photos: at 150x150 nearest 2.3-2.6 s with or without a
 * worker; at 299x299 bilinear 5.5 s against 6.2 s with the earlier 3.4 ms resize, and level
 * (4.6-4.75 s against 4.7-4.8 s) with the current one, when the main thread no longer limits two
 * cores. With more cores it does.
 */
export function defaultDecodeWorkers(images: number, interpolation: Interpolation = 'nearest'): number {
  if (interpolation === 'nearest' || images < MIN_IMAGES_FOR_WORKERS) return 0;
  return Math.max(0, Math.min(3, availableParallelism() - 1));
}

function workerUrl(): URL {
  const ext = import.meta.url.endsWith('.ts') ? '.ts' : '.js';
  return new URL(`./decode-worker${ext}`, import.meta.url);
}

export class DecodePool {
  private readonly requests: RequestsById<DecodeReply>;

  private constructor(private readonly workers: Worker[]) {
    this.requests = new RequestsById(workers, 'image decoding worker');
  }

  static start(threads: number): DecodePool {
    if (!(Number.isInteger(threads) && threads >= 1)) throw new GraftError(`decode workers must be a positive integer, got ${threads}`);
    return new DecodePool(Array.from({ length: threads }, () => startWorker(workerUrl())));
  }

  /** Decodes `path` on worker `worker` into target bytes [byteOffset, byteOffset + length); rejects with BadImageError as decodeImageInto does. */
  async decodeInto(worker: number, path: string, opts: DecodeOptions, target: SharedArrayBuffer, byteOffset: number, length: number): Promise<void> {
    const w = this.workers[worker % this.workers.length]!;
    const reply = await this.requests.send(w, (id): DecodeTask => ({ id, path, opts, target, byteOffset, length }));
    if (reply.bad !== undefined) throw new BadImageError(path, reply.bad);
    if (reply.error !== undefined) throw new GraftError(reply.error, { file: path });
  }

  async close(): Promise<void> {
    await Promise.all(this.workers.map((w) => w.terminate()));
  }
}
