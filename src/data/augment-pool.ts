/**
 * Augmentation over worker threads. Images and outputs live in SharedArrayBuffers, so a batch is
 * split into contiguous chunks, one per worker, with no copying of pixels between threads. The
 * parameters are drawn by the caller (on the main thread, from its seeded Random), so the output
 * does not depend on the number of workers: it is bit-identical to `applyTransform` one by one.
 */
import type { Worker } from 'node:worker_threads';
import { GraftError } from '../util/errors.js';
import { RequestsById, startWorker } from '../util/worker-calls.js';
import { applyTransform, type FillMode, type PixelAffine, type TransformParams } from './augment.js';

/** N images of h x w x 3 uint8 (HWC), one after another, in one buffer (best: on a SharedArrayBuffer). */
export interface PackedImages {
  data: Uint8Array;
  h: number;
  w: number;
}

export interface AugmentBatchOptions {
  fillMode: FillMode;
  cval: number;
  pre: PixelAffine;
  /** Where the batch's first image goes in `out` (in floats); image k goes k*h*w*3 further. */
  outOffset?: number;
  /**
   * Also work on the calling thread (one more share than there are workers). Faster when the
   * caller would only wait; leave it off to overlap augmentation with work on the main thread.
   */
  useCallingThread?: boolean;
}

/** A message to a worker: its chunk of the batch. */
export interface WorkerTask {
  id: number;
  src: SharedArrayBuffer;
  srcByteOffset: number;
  srcLength: number;
  h: number;
  w: number;
  /** Byte offset in src of each image of the chunk. */
  srcOffsets: number[];
  params: TransformParams[];
  out: SharedArrayBuffer;
  outByteOffset: number;
  outLength: number;
  /** Float offset in out of each image of the chunk. */
  outOffsets: number[];
  fillMode: FillMode;
  cval: number;
  pre: PixelAffine;
}

export interface WorkerReply {
  id: number;
  error?: string;
}

function workerUrl(): URL {
  const ext = import.meta.url.endsWith('.ts') ? '.ts' : '.js';
  return new URL(`./augment-worker${ext}`, import.meta.url);
}

export class AugmentPool {
  private readonly workers: Worker[];
  private readonly requests: RequestsById<WorkerReply>;
  private staging: Uint8Array | null = null;
  private busy = 0;
  private closed = false;

  private constructor(workers: Worker[]) {
    this.workers = workers;
    this.requests = new RequestsById(workers, 'augment worker');
  }

  /** Starts `threads` workers (default: 2). */
  static create(opts: { threads?: number } = {}): AugmentPool {
    const threads = opts.threads ?? 2;
    if (!Number.isInteger(threads) || threads < 1) throw new GraftError(`augmentation: threads must be a positive integer, found ${threads}`);
    const url = workerUrl();
    const workers: Worker[] = [];
    for (let i = 0; i < threads; i++) workers.push(startWorker(url));
    return new AugmentPool(workers);
  }

  get threads(): number {
    return this.workers.length;
  }

  /**
   * Transforms images[indices[k]] with params[k] into out (a Float32Array on a SharedArrayBuffer),
   * image k at outOffset + k*h*w*3. `images` is an PackedImages (copied to shared memory first when
   * it is not already there) or a list of h*w*3 views with (h, w) given.
   */
  async augmentBatch(
    images: PackedImages | { views: readonly Uint8Array[]; h: number; w: number },
    indices: ArrayLike<number>,
    params: readonly TransformParams[],
    out: Float32Array,
    opts: AugmentBatchOptions,
  ): Promise<void> {
    if (this.closed) throw new GraftError('augmentation: the worker pool is closed');
    const { h, w } = images;
    const size = h * w * 3;
    const count = indices.length;
    if (params.length !== count) throw new GraftError(`augmentation: ${count} indices but ${params.length} parameter sets`);
    if (!(out.buffer instanceof SharedArrayBuffer)) throw new GraftError('augmentation: the pool needs its output on a SharedArrayBuffer');
    const outOffset = opts.outOffset ?? 0;
    if (outOffset < 0 || outOffset + count * size > out.length) throw new GraftError(`augmentation: output has no room for ${count} images of ${h}x${w}x3`);
    if (count === 0) return;

    // Where each image of the batch lies in shared memory.
    let src: Uint8Array;
    const srcOffsets: number[] = new Array<number>(count);
    if ('views' in images) {
      src = this.stagingBuffer(count * size);
      for (let k = 0; k < count; k++) {
        const v = images.views[indices[k]!];
        if (!v || v.length < size) throw new GraftError(`augmentation: image ${indices[k]} is missing or smaller than ${h}x${w}x3`);
        src.set(v.subarray(0, size), k * size);
        srcOffsets[k] = k * size;
      }
    } else {
      const n = Math.floor(images.data.length / size);
      if (images.data.buffer instanceof SharedArrayBuffer) src = images.data;
      else {
        src = this.stagingBuffer(count * size);
        for (let k = 0; k < count; k++) {
          const i = indices[k]!;
          src.set(images.data.subarray(i * size, (i + 1) * size), k * size);
        }
      }
      for (let k = 0; k < count; k++) {
        const i = indices[k]!;
        if (!Number.isInteger(i) || i < 0 || i >= n) throw new GraftError(`augmentation: image index ${i} out of range 0..${n - 1}`);
        srcOffsets[k] = src === images.data ? i * size : k * size;
      }
    }

    const shares = this.workers.length + (opts.useCallingThread ? 1 : 0);
    const chunk = Math.ceil(count / shares);
    const jobs: Promise<void>[] = [];
    this.acquire();
    try {
      for (let t = 0; t < this.workers.length; t++) {
        const from = t * chunk;
        const to = Math.min(count, from + chunk);
        if (from >= to) break;
        const task = (id: number): WorkerTask => ({
          id,
          src: src.buffer as SharedArrayBuffer,
          srcByteOffset: src.byteOffset,
          srcLength: src.length,
          h,
          w,
          srcOffsets: srcOffsets.slice(from, to),
          params: params.slice(from, to),
          out: out.buffer as SharedArrayBuffer,
          outByteOffset: out.byteOffset,
          outLength: out.length,
          outOffsets: Array.from({ length: to - from }, (_, k) => outOffset + (from + k) * size),
          fillMode: opts.fillMode,
          cval: opts.cval,
          pre: { scale: opts.pre.scale, offset: opts.pre.offset },
        });
        jobs.push(this.requests.send(this.workers[t]!, task).then((reply) => {
          if (reply.error) throw new GraftError(`augment worker: ${reply.error}`);
        }));
      }
      if (opts.useCallingThread) {
        const cfg = { fillMode: opts.fillMode, cval: opts.cval };
        for (let k = this.workers.length * chunk; k < count; k++) {
          const s = srcOffsets[k]!;
          applyTransform(src.subarray(s, s + size), h, w, params[k]!, cfg, out, outOffset + k * size, opts.pre);
        }
      }
      await Promise.all(jobs);
    } finally {
      this.release();
    }
  }

  /** Stops the workers. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await Promise.all(this.workers.map((wk) => wk.terminate()));
  }

  private stagingBuffer(bytes: number): Uint8Array {
    // One staging buffer, grown as needed; safe because a batch is awaited before the next one.
    if (this.busy > 0) throw new GraftError('augmentation: one batch at a time per pool when images are not on shared memory');
    if (!this.staging || this.staging.length < bytes) this.staging = new Uint8Array(new SharedArrayBuffer(bytes));
    return this.staging.subarray(0, bytes);
  }

  // Batches running now (the staging buffer serves one at a time); the workers are ref'd by their requests.
  private acquire(): void {
    this.busy++;
  }

  private release(): void {
    this.busy--;
  }
}

/** A Float32Array of `length` on a new SharedArrayBuffer (for pool outputs). */
export function sharedFloat32(length: number): Float32Array {
  return new Float32Array(new SharedArrayBuffer(length * 4));
}

/** Copies images into one PackedImages on a SharedArrayBuffer. */
export function sharedPackedImages(views: readonly Uint8Array[], h: number, w: number): PackedImages {
  const size = h * w * 3;
  const data = new Uint8Array(new SharedArrayBuffer(Math.max(1, views.length * size)));
  views.forEach((v, i) => {
    if (v.length < size) throw new GraftError(`augmentation: image ${i} holds ${v.length} bytes, expected ${h}x${w}x3`);
    data.set(v.subarray(0, size), i * size);
  });
  return { data: data.subarray(0, views.length * size), h, w };
}
