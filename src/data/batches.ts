/**
 * The batch order of Keras' DirectoryIterator: every epoch a fresh permutation when shuffling
 * (here drawn from (seed, epoch), so a run is reproducible and any epoch can be recomputed alone),
 * batches cut from it in order, the last partial batch kept: steps = ceil(n / batchSize).
 * Plus label encoding for class_mode 'binary' / 'categorical' / 'sparse' into a reused buffer, and
 * a double-buffered batch reader over an ImageStore (one batch prefetched while one is used).
 */
import { Random } from '../util/random.js';
import type { ImageStore } from './image-store.js';

export type ClassMode = 'binary' | 'categorical' | 'sparse';

export interface OrderOptions {
  /** Default true, like flow_from_directory. */
  shuffle?: boolean;
  seed?: number;
}

/** ceil(n / batchSize): Keras' len(iterator). */
export function stepsPerEpoch(n: number, batchSize: number): number {
  if (!(Number.isInteger(batchSize) && batchSize > 0)) throw new RangeError(`batch size must be a positive integer, got ${batchSize}`);
  return Math.ceil(n / batchSize);
}

/** The order in which the n images are visited in `epoch` (0-based). */
export function epochOrder(n: number, epoch: number, opts: OrderOptions = {}): Uint32Array {
  if (opts.shuffle === false) {
    const order = new Uint32Array(n);
    for (let i = 0; i < n; i++) order[i] = i;
    return order;
  }
  // One stream per (seed, epoch): mix the epoch into the seed, then let Random spread it.
  const seed = ((opts.seed ?? 0) ^ Math.imul(epoch + 1, 0x9e3779b1)) >>> 0;
  return new Random(seed).permutation(n);
}

/** All batches of `epoch`, as views into that epoch's order; the last one may be shorter. */
export function batchIndices(n: number, batchSize: number, epoch: number, opts: OrderOptions = {}): Uint32Array[] {
  const order = epochOrder(n, epoch, opts);
  const steps = stepsPerEpoch(n, batchSize);
  return Array.from({ length: steps }, (_, s) => order.subarray(s * batchSize, Math.min(n, (s + 1) * batchSize)));
}

/** Batch order of a dataset across epochs, caching the current epoch's permutation. */
export class BatchOrder {
  readonly steps: number;
  private cachedEpoch = -1;
  private order: Uint32Array = new Uint32Array(0);

  constructor(
    readonly n: number,
    readonly batchSize: number,
    readonly opts: OrderOptions = {},
  ) {
    this.steps = stepsPerEpoch(n, batchSize);
  }

  epochOrder(epoch: number): Uint32Array {
    if (epoch !== this.cachedEpoch) {
      this.order = epochOrder(this.n, epoch, this.opts);
      this.cachedEpoch = epoch;
    }
    return this.order;
  }

  /** Indices of batch `step` of `epoch` (a view; valid until another epoch is asked for). */
  batch(epoch: number, step: number): Uint32Array {
    if (!(step >= 0 && step < this.steps)) throw new RangeError(`step ${step} out of range [0, ${this.steps})`);
    return this.epochOrder(epoch).subarray(step * this.batchSize, Math.min(this.n, (step + 1) * this.batchSize));
  }
}

/** Floats per example: 1 for 'binary' and 'sparse', numClasses for 'categorical'. */
export function labelWidth(mode: ClassMode, numClasses: number): number {
  return mode === 'categorical' ? numClasses : 1;
}

/**
 * Labels of `indices` encoded for `mode` into `into` (at least indices.length * labelWidth floats);
 * returns the filled view. 'binary': 0/1 as float (Keras requires two classes); 'sparse': the
 * class index as float; 'categorical': one-hot rows.
 */
export function encodeLabels(
  labels: ArrayLike<number>,
  indices: ArrayLike<number>,
  mode: ClassMode,
  numClasses: number,
  into: Float32Array,
): Float32Array {
  const width = labelWidth(mode, numClasses);
  const out = into.subarray(0, indices.length * width);
  if (mode === 'categorical') {
    out.fill(0);
    for (let k = 0; k < indices.length; k++) out[k * numClasses + labels[indices[k]!]!] = 1;
  } else {
    for (let k = 0; k < indices.length; k++) out[k] = labels[indices[k]!]!;
  }
  return out;
}

export interface ImageBatch {
  step: number;
  indices: Uint32Array;
  /** indices.length images, HWC uint8, one after another (a view into a reused buffer). */
  images: Uint8Array;
  /** Encoded labels (a view into a reused buffer). */
  labels: Float32Array;
}

/**
 * The batches of one epoch with the next batch loading while the caller works on the current
 * one. A yielded batch's buffers are reused two steps later: finish with a batch before asking
 * for the one after next.
 */
export async function* readBatches(store: ImageStore, order: BatchOrder, epoch: number, mode: ClassMode): AsyncGenerator<ImageBatch> {
  const width = labelWidth(mode, store.classes.length);
  const images = [0, 1].map(() => new Uint8Array(order.batchSize * store.imageBytes));
  const labels = [0, 1].map(() => new Float32Array(order.batchSize * width));
  const start = (step: number) => {
    const indices = order.batch(epoch, step);
    const buf = images[step % 2]!.subarray(0, indices.length * store.imageBytes);
    return store.load(indices, buf).then(() => ({ indices, buf }));
  };
  let pending = order.steps > 0 ? start(0) : undefined;
  for (let step = 0; step < order.steps; step++) {
    const { indices, buf } = await pending!;
    pending = step + 1 < order.steps ? start(step + 1) : undefined;
    // A rejected prefetch is reported when it is awaited; keep it from being "unhandled" meanwhile.
    pending?.catch(() => undefined);
    yield { step, indices, images: buf, labels: encodeLabels(store.labels, indices, mode, store.classes.length, labels[step % 2]!) };
  }
}
