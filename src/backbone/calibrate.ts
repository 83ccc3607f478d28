/**
 * Calibration for the int8 backbone: runs the float backbone on a few hundred of the run's own
 * training images and keeps the range of every tensor the QDQ graph quantises. 'minmax' keeps the
 * whole range, reduced to each tensor's minimum and maximum inside the graph; 'percentile' exposes
 * each tensor as an output and clips a non-negative tensor's top at the 99.99th percentile of its
 * values (a histogram, re-binned as the maximum grows), so a few outliers do not spend the 256
 * levels.
 */
import { availableParallelism } from 'node:os';
import '../util/onnxruntime-telemetry.js';
import * as ort from 'onnxruntime-node';
import type { ImageStore } from '../data/image-store.js';
import type { PreprocessParams } from '../data/preprocess.js';
import { GraftError } from '../util/errors.js';
import { calibrationTargets, int8Form, rangeOutputNames, withProbeOutputs, withRangeOutputs, type Ranges } from './onnx/quantize-qdq.js';

export type CalibrationMethod = 'minmax' | 'percentile';
export const CALIBRATION_METHODS: readonly CalibrationMethod[] = ['minmax', 'percentile'];
/** Images calibration looks at (fewer when the training set is smaller). */
export const DEFAULT_CALIBRATION_IMAGES = 300;
/** Measured closer to fp32 features than the 99.99th percentile (docs/int8.md). */
export const DEFAULT_CALIBRATION_METHOD: CalibrationMethod = 'minmax';
const PERCENTILE = 99.99;
const BINS = 4096;

/** Where calibration images come from: `count` preprocessed NHWC images, read `n` at a time. */
export interface CalibrationSource {
  count: number;
  read(start: number, n: number, into: Float32Array): Promise<void>;
}

/** Up to `count` images of `store`, evenly spread over it (every class is seen), preprocessed by `pre`. */
export function storeCalibrationSource(store: ImageStore, pre: PreprocessParams, count = DEFAULT_CALIBRATION_IMAGES): CalibrationSource {
  const n = Math.min(count, store.count);
  const step = store.count / n;
  const picks = Array.from({ length: n }, (_, i) => Math.floor(i * step));
  let bytes = new Uint8Array(0);
  return {
    count: n,
    async read(start, k, into) {
      if (bytes.length < k * store.imageBytes) bytes = new Uint8Array(k * store.imageBytes);
      await store.load(picks.slice(start, start + k), bytes);
      for (let i = 0; i < k * store.imageBytes; i++) into[i] = bytes[i]! * pre.scale + pre.offset;
    },
  };
}

/** A tensor's running range and (for non-negative tensors) histogram over [0, top]. */
class TensorStats {
  min = Infinity;
  max = -Infinity;
  top = 0;
  readonly hist: Float64Array;

  constructor(readonly histogram: boolean) {
    this.hist = new Float64Array(histogram ? BINS : 0);
  }

  add(v: Float32Array): void {
    let lo = this.min, hi = this.max;
    for (let i = 0; i < v.length; i++) {
      const x = v[i]!;
      if (x < lo) lo = x;
      if (x > hi) hi = x;
    }
    this.min = lo;
    this.max = hi;
    if (!this.histogram || lo < 0 || hi <= 0) return;
    if (this.top === 0) this.top = hi;
    // Double the histogram's span (merging bins in pairs) until it holds the new maximum.
    while (hi > this.top) {
      for (let b = 0; b < BINS / 2; b++) this.hist[b] = this.hist[2 * b]! + this.hist[2 * b + 1]!;
      this.hist.fill(0, BINS / 2);
      this.top *= 2;
    }
    const per = BINS / this.top;
    for (let i = 0; i < v.length; i++) this.hist[Math.min(BINS - 1, Math.floor(v[i]! * per))]! += 1;
  }

  range(method: CalibrationMethod): [number, number] {
    if (!this.histogram || this.min < 0 || this.top === 0) return [this.min, this.max];
    let total = 0;
    for (let b = 0; b < BINS; b++) total += this.hist[b]!;
    const keep = (total * PERCENTILE) / 100;
    let acc = 0;
    for (let b = 0; b < BINS; b++) {
      acc += this.hist[b]!;
      if (acc >= keep) return [this.min, Math.min(this.max, ((b + 1) * this.top) / BINS)];
    }
    return [this.min, this.max];
  }
}

export interface CalibrateOptions {
  method?: CalibrationMethod;
  /** Images per onnxruntime call (default: as many as keep the exposed activations near 256 MB). */
  batchSize?: number;
  threads?: number;
}

/** Calibrated ranges of the tensors the QDQ form of `onnxBytes` quantises, measured on `source`. */
export async function calibrateRanges(
  onnxBytes: Uint8Array,
  inputShape: [number, number, number],
  source: CalibrationSource,
  opts: CalibrateOptions = {},
): Promise<Ranges> {
  if (source.count === 0) throw new GraftError('int8 calibration needs at least one image');
  const method = opts.method ?? DEFAULT_CALIBRATION_METHOD;
  const model = int8Form(onnxBytes);
  const targets = calibrationTargets(model);
  const minmax = method === 'minmax';
  const session = await ort.InferenceSession.create(minmax ? withRangeOutputs(model, targets) : withProbeOutputs(model, targets), {
    executionProviders: ['cpu'],
    graphOptimizationLevel: 'all',
    intraOpNumThreads: opts.threads ?? availableParallelism(),
    extra: { session: { intra_op: { allow_spinning: '0' } } },
  });
  try {
    const perImage = inputShape[0] * inputShape[1] * inputShape[2];
    // Exposed, InceptionV3 to mixed7's activations are ~20x its input's values at each image;
    // reduced in the graph, a batch holds what a feature extraction's does.
    const batch = Math.max(1, opts.batchSize ?? (minmax ? 16 : Math.min(32, Math.floor((256 << 20) / (perImage * 4 * 20 * 4)))));
    const input = new Float32Array(batch * perImage);
    const stats = new Map(targets.map((t) => [t, new TensorStats(method === 'percentile')]));
    const fetches = minmax ? targets.flatMap(rangeOutputNames) : targets;
    const inputName = session.inputNames[0]!;
    for (let at = 0; at < source.count; at += batch) {
      const n = Math.min(batch, source.count - at);
      await source.read(at, n, input);
      const outputs = await session.run({ [inputName]: new ort.Tensor('float32', input.subarray(0, n * perImage), [n, ...inputShape]) }, fetches);
      for (const t of targets) {
        const names = minmax ? rangeOutputNames(t) : [t];
        for (const name of names) {
          stats.get(t)!.add(outputs[name]!.data as Float32Array);
          outputs[name]!.dispose();
        }
      }
    }
    return Object.fromEntries(targets.map((t) => [t, stats.get(t)!.range(method)]));
  } finally {
    await session.release();
  }
}
