/**
 * The feature extractor: runs the frozen backbone on batches of preprocessed NHWC images. Kept
 * behind a small interface so the engine (onnxruntime-node today) can change without touching
 * callers.
 */
import { availableParallelism } from 'node:os';
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
}

/** A FeatureExtractor running `onnxBytes` (from kerasToOnnx) on onnxruntime-node's CPU provider. */
export async function createOrtExtractor(
  onnxBytes: Uint8Array,
  inputShape: [number, number, number],
  outputShape: number[],
  opts: OrtExtractorOptions = {},
): Promise<FeatureExtractor> {
  const threads = opts.threads ?? availableParallelism();
  let session: ort.InferenceSession;
  try {
    session = await ort.InferenceSession.create(onnxBytes, {
      executionProviders: ['cpu'],
      graphOptimizationLevel: 'all',
      executionMode: 'sequential',
      intraOpNumThreads: threads,
      interOpNumThreads: 1,
    });
  } catch (err) {
    throw new GraftError(`onnxruntime could not load the backbone: ${(err as Error).message.split('\n')[0]}`, { cause: err });
  }
  const inputName = session.inputNames[0]!;
  const outputName = session.outputNames[0]!;
  const perImageIn = inputShape[0] * inputShape[1] * inputShape[2];
  const perImageOut = outputShape.reduce((a, b) => a * b, 1);
  return {
    inputShape,
    outputShape,
    async extract(input: Float32Array, n: number): Promise<Float32Array> {
      if (input.length < n * perImageIn) {
        throw new GraftError(`feature extractor: ${n} images of ${inputShape.join('x')} need ${n * perImageIn} values, got ${input.length}`);
      }
      const data = input.length === n * perImageIn ? input : input.subarray(0, n * perImageIn);
      const tensor = new ort.Tensor('float32', data, [n, ...inputShape]);
      const result = await session.run({ [inputName]: tensor });
      const out = result[outputName]!;
      const values = out.data as Float32Array;
      if (values.length !== n * perImageOut) {
        throw new GraftError(`feature extractor: expected ${n * perImageOut} feature values, got ${values.length} (shape ${out.dims.join('x')})`);
      }
      tensor.dispose();
      return values;
    },
    async dispose(): Promise<void> {
      await session.release();
    },
  };
}
