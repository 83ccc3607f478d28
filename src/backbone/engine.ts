/**
 * The feature extractor: runs the frozen backbone on batches of preprocessed NHWC images. Kept
 * behind a small interface so the engine (onnxruntime-node today) can change without touching
 * callers.
 */
import { availableParallelism } from 'node:os';
import '../util/onnxruntime-telemetry.js'; // before onnxruntime-node: opts out of its telemetry
import * as ort from 'onnxruntime-node';
import type { Worker } from 'node:worker_threads';
import { GraftError } from '../util/errors.js';
import { callWorker, startWorker } from '../util/worker-calls.js';
import type { ExtractorWorkerInit, ExtractorWorkerRequest } from './extractor-worker.js';

export interface FeatureExtractor {
  /** [h, w, 3] of one input image. */
  readonly inputShape: [number, number, number];
  /** Shape of one image's features (no batch dimension), NHWC like Keras. */
  readonly outputShape: number[];
  /** Features of `n` images stored NHWC in `input`; returns n * prod(outputShape) values. */
  extract(input: Float32Array, n: number): Promise<Float32Array>;
  dispose(): Promise<void>;
}

export interface OrtExtractorOptions {
  /** Threads in all (default: the number of cores): shared out among the worker sessions, if any. */
  threads?: number;
  /** Images per onnxruntime call; larger requests are split (default DEFAULT_BATCH). */
  batchSize?: number;
  /**
   * Let idle worker threads busy-wait for the next op (default false): may save a little on an
   * idle machine, but measured ~1.5-2x slower when other work (image decoding) shares the cores.
   * Only for a session on the calling thread (worker sessions run one thread each on 2 cores).
   */
  spin?: boolean;
  /** What the network is, in messages (default 'the backbone'). */
  label?: string;
  /**
   * Sessions, each on its own worker thread with threads / workers intra-op threads, that take
   * equal shares of each request (default 1: one session on the calling thread). See
   * parallelWorkers() for the count that suits bulk extraction.
   */
  workers?: number;
}

/**
 * Worker sessions for bulk extraction (graft features) on `threads` cores: one single-threaded
 * session per core, at most MAX_WORKERS. Measured on 2 cores at 150x150: 202-207 images/s against
 * 192-196 for one session with two threads (small late layers, 7x7 at mixed7, leave intra-op
 * threads waiting at every op's barrier); 42.7 against 38-41 at 299x299. Not the default: each
 * session holds its own copy of the network and activations (~110-250 MB more at peak), and in a
 * training run, where the head's and augmentation's threads take turns with the backbone,
 * fine-tuning measured slower and 250 MB heavier with them.
 */
export function parallelWorkers(threads = availableParallelism()): number {
  return Math.max(1, Math.min(threads, MAX_WORKERS));
}
const MAX_WORKERS = 4;

/**
 * Images per call: enough work per op for both cores, activations small enough to stay
 * cache-friendly (measured: 16 >= 32 > 64). 20 rather than 16 so that the lab's batches of 20 run
 * as one call, not 10 + 10: measured ~3% more images/s for such batches (interleaved runs on 2
 * cores, 169 against 164 images/s at the median) for 18 MB more resident memory; bulk feature
 * passes (chunks of 32) still run as 16 + 16.
 */
export const DEFAULT_BATCH = 20;

/**
 * A FeatureExtractor running `onnxBytes` (from kerasToOnnx) on onnxruntime-node's CPU provider: on
 * worker threads, one session each, for a big network on several cores (`workers`); else one
 * session on the calling thread.
 */
export async function createOrtExtractor(
  onnxBytes: Uint8Array,
  inputShape: [number, number, number],
  outputShape: number[],
  opts: OrtExtractorOptions = {},
): Promise<FeatureExtractor> {
  const threads = opts.threads ?? availableParallelism();
  const batchSize = Math.max(1, opts.batchSize ?? DEFAULT_BATCH);
  const label = opts.label ?? 'the backbone';
  const workers = opts.workers ?? 1;
  if (workers > 1) return ParallelExtractor.create(onnxBytes, inputShape, outputShape, { workers, threads: Math.max(1, Math.floor(threads / workers)), batchSize, label });
  let session: ort.InferenceSession;
  try {
    session = await ort.InferenceSession.create(onnxBytes, {
      executionProviders: ['cpu'],
      graphOptimizationLevel: 'all',
      executionMode: 'sequential',
      intraOpNumThreads: threads,
      interOpNumThreads: 1,
      extra: { session: { intra_op: { allow_spinning: opts.spin ? '1' : '0' } } },
    });
  } catch (err) {
    throw new GraftError(`onnxruntime could not load ${label}: ${(err as Error).message.split('\n')[0]}`, { cause: err });
  }
  const inputName = session.inputNames[0]!;
  const outputName = session.outputNames[0]!;
  const perImageIn = inputShape[0] * inputShape[1] * inputShape[2];
  const perImageOut = outputShape.reduce((a, b) => a * b, 1);
  // onnxruntime-node refuses tensors on a SharedArrayBuffer (where the augmentation workers write
  // batches), so such input is staged through one reused ordinary buffer.
  let staging: Float32Array | null = null;
  let released = false;
  return {
    inputShape,
    outputShape,
    async extract(input: Float32Array, n: number): Promise<Float32Array> {
      if (released) throw new GraftError(`${label} was disposed: load it again to run it`);
      if (!Number.isInteger(n) || n < 0 || input.length < n * perImageIn) {
        throw new GraftError(`feature extractor: ${n} images of ${inputShape.join('x')} need ${n * perImageIn} values, got ${input.length}`);
      }
      const out = new Float32Array(n * perImageOut);
      // Equal chunks (20 -> 10 + 10, not 16 + 4): a small remainder would run inefficiently.
      const chunk = Math.ceil(n / Math.ceil(n / batchSize));
      for (let at = 0; at < n; at += chunk) {
        const b = Math.min(chunk, n - at);
        // Both tensors are views: onnxruntime reads the images and writes into `out` directly.
        let images = input.subarray(at * perImageIn, (at + b) * perImageIn);
        if (images.buffer instanceof SharedArrayBuffer) {
          staging ??= new Float32Array(batchSize * perImageIn);
          staging.set(images);
          images = staging.subarray(0, images.length);
        }
        const x = new ort.Tensor('float32', images, [b, ...inputShape]);
        const y = new ort.Tensor('float32', out.subarray(at * perImageOut, (at + b) * perImageOut), [b, ...outputShape]);
        await session.run({ [inputName]: x }, { [outputName]: y });
      }
      return out;
    },
    async dispose(): Promise<void> {
      // Idempotent: a backbone may be released early (to free memory) and again on cleanup.
      if (released) return;
      released = true;
      await session.release();
    },
  };
}

/** A FeatureExtractor whose requests are shared out among worker threads, each with its own session (extractor-worker.ts). */
class ParallelExtractor implements FeatureExtractor {
  private readonly perIn: number;
  private readonly perOut: number;
  /** Shared staging for inputs not already on a SharedArrayBuffer, and for outputs; grown as needed. */
  private input = new Float32Array(new SharedArrayBuffer(0));
  private output = new Float32Array(new SharedArrayBuffer(0));
  private queue: Promise<unknown> = Promise.resolve();
  private released = false;

  private constructor(
    readonly inputShape: [number, number, number],
    readonly outputShape: number[],
    private readonly workers: Worker[],
    private readonly label: string,
  ) {
    this.perIn = inputShape[0] * inputShape[1] * inputShape[2];
    this.perOut = outputShape.reduce((a, b) => a * b, 1);
  }

  static async create(onnx: Uint8Array, inputShape: [number, number, number], outputShape: number[], o: { workers: number; threads: number; batchSize: number; label: string }): Promise<ParallelExtractor> {
    const init: ExtractorWorkerInit = { inputShape, outputShape, batchSize: o.batchSize, threads: o.threads };
    const url = new URL(`./extractor-worker${import.meta.url.endsWith('.ts') ? '.ts' : '.js'}`, import.meta.url);
    const workers = Array.from({ length: o.workers }, () => startWorker(url, init));
    try {
      // Each its own copy of the bytes, transferred rather than cloned, dropped once loaded.
      await Promise.all(workers.map((w) => {
        const bytes = new Uint8Array(onnx); // a copy (a Buffer's slice() would be a view)
        return callWorker(w, { op: 'load', onnx: bytes } satisfies ExtractorWorkerRequest, 'a backbone worker', [bytes.buffer]);
      }));
    } catch (err) {
      await Promise.all(workers.map((w) => w.terminate()));
      throw new GraftError(`onnxruntime could not load ${o.label}: ${(err as Error).message.replace(/^a backbone worker failed: /, '')}`, { cause: err });
    }
    return new ParallelExtractor(inputShape, outputShape, workers, o.label);
  }

  extract(input: Float32Array, n: number): Promise<Float32Array> {
    if (this.released) return Promise.reject(new GraftError(`${this.label} was disposed: load it again to run it`));
    if (!Number.isInteger(n) || n < 0 || input.length < n * this.perIn) {
      return Promise.reject(new GraftError(`feature extractor: ${n} images of ${this.inputShape.join('x')} need ${n * this.perIn} values, got ${input.length}`));
    }
    // One request at a time: they share the staging buffers.
    const run = this.queue.then(() => this.run(input, n));
    this.queue = run.catch(() => {});
    return run;
  }

  private async run(input: Float32Array, n: number): Promise<Float32Array> {
    let images = input;
    if (!(input.buffer instanceof SharedArrayBuffer)) {
      if (this.input.length < n * this.perIn) this.input = new Float32Array(new SharedArrayBuffer(n * this.perIn * 4));
      this.input.set(input.subarray(0, n * this.perIn));
      images = this.input;
    }
    if (this.output.length < n * this.perOut) this.output = new Float32Array(new SharedArrayBuffer(n * this.perOut * 4));
    // Equal shares in order (20 -> 10 + 10), the same for the same n: a result never depends on timing.
    const calls: Promise<unknown>[] = [];
    const share = Math.ceil(n / this.workers.length);
    for (let w = 0, first = 0; first < n; w++, first += share) {
      const req: ExtractorWorkerRequest = { op: 'run', input: images.buffer as SharedArrayBuffer, inputOffset: images.byteOffset, output: this.output.buffer as SharedArrayBuffer, first, n: Math.min(share, n - first) };
      calls.push(callWorker(this.workers[w]!, req, `${this.label} (worker ${w + 1})`));
    }
    await Promise.all(calls);
    return this.output.slice(0, n * this.perOut);
  }

  async dispose(): Promise<void> {
    if (this.released) return;
    this.released = true;
    await this.queue;
    await Promise.all(this.workers.map(async (w) => {
      await callWorker(w, { op: 'close' } satisfies ExtractorWorkerRequest, 'a backbone worker').catch(() => {});
      await w.terminate();
    }));
  }
}
