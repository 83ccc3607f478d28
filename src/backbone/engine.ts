/**
 * The feature extractor: runs the frozen backbone on batches of preprocessed NHWC images. Kept
 * behind a small interface so the engine (onnxruntime-node today) can change without touching
 * callers.
 */
import { availableParallelism } from 'node:os';
import '../util/onnxruntime-telemetry.js'; // before onnxruntime-node: opts out of its telemetry
import * as ort from 'onnxruntime-node';
import { GraftError } from '../util/errors.js';

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
  /** Intra-op threads (default: the number of cores). */
  threads?: number;
  /** Images per onnxruntime call; larger requests are split (default DEFAULT_BATCH). */
  batchSize?: number;
  /**
   * Let idle worker threads busy-wait for the next op (default false): may save a little on an
   * idle machine, but measured ~1.5-2x slower when other work (image decoding) shares the cores.
   */
  spin?: boolean;
  /** What the network is, in messages (default 'the backbone'). */
  label?: string;
}

/**
 * Images per call: enough work per op for both cores, activations small enough to stay
 * cache-friendly (measured: 16 >= 32 > 64). 20 rather than 16 so that the lab's batches of 20 run
 * as one call, not 10 + 10: measured ~3% more images/s for such batches (interleaved runs on 2
 * cores, 169 against 164 images/s at the median) for 18 MB more resident memory; bulk feature
 * passes (chunks of 32) still run as 16 + 16.
 */
export const DEFAULT_BATCH = 20;

/** A FeatureExtractor running `onnxBytes` (from kerasToOnnx) on onnxruntime-node's CPU provider. */
export async function createOrtExtractor(
  onnxBytes: Uint8Array,
  inputShape: [number, number, number],
  outputShape: number[],
  opts: OrtExtractorOptions = {},
): Promise<FeatureExtractor> {
  const threads = opts.threads ?? availableParallelism();
  const batchSize = Math.max(1, opts.batchSize ?? DEFAULT_BATCH);
  const label = opts.label ?? 'the backbone';
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
