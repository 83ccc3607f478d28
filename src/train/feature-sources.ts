/**
 * Where the head's training batches come from — the three feeds named in the CLI:
 *  - faithful: every step augments fresh images and runs them through the backbone (the lab);
 *  - cached:   features of the un-augmented images, computed once;
 *  - views=K:  K augmented views per image computed once; each epoch samples one per image.
 * Validation features are always computed once (validation is never augmented).
 */
import type { FeatureExtractor } from '../backbone/engine.js';
import { AugmentPool, sharedFloat32, type PackedImages } from '../data/augment-pool.js';
import { IDENTITY_TRANSFORM, randomTransform, type AugmentConfig, type PixelAffine, type TransformParams } from '../data/augment.js';
import { BatchOrder, encodeLabels, labelWidth, type ClassMode } from '../data/batches.js';
import type { ImageStore } from '../data/image-store.js';
import { GraftError } from '../util/errors.js';
import { kMaxLength } from 'node:buffer';
import { join } from 'node:path';
import type { MemoryBudget } from '../util/memory-budget.js';
import { featureBytes, formatBytes, MemoryFeatureRows, obtainFeatureStore, type FeatureDtype, type FeatureRows } from './feature-store.js';
import { Random } from '../util/random.js';
import type { ArrayData, Batch, BatchSource, RowsData } from './fit.js';
import { deriveSeed } from './seeds.js';
import { setting } from '../util/option-names.js';

/** Random streams of the feeds (beside fit's shuffle and the trainer's dropout streams). */
const STREAM_AUGMENT = 3;
const STREAM_VIEW_CHOICE = 4;
const STREAM_VIEW_AUGMENT = 5;

export type FeedMode = { kind: 'faithful' } | { kind: 'cached' } | { kind: 'views'; views: number };

/** Most augmented views per image a views feed computes. */
export const MAX_VIEWS = 64;

/** Whether `mode` is a FeedMode graft can run (views: a whole number from 1 to MAX_VIEWS). */
export function isFeedMode(mode: unknown): mode is FeedMode {
  if (typeof mode !== 'object' || mode === null) return false;
  const m = mode as { kind?: unknown; views?: unknown };
  if (m.kind === 'faithful' || m.kind === 'cached') return true;
  return m.kind === 'views' && Number.isInteger(m.views) && (m.views as number) >= 1 && (m.views as number) <= MAX_VIEWS;
}

/** Parses `faithful`, `cached` or `views=K`. */
export function parseFeedMode(text: string): FeedMode {
  const t = text.trim().toLowerCase();
  const m = /^views\s*=\s*(\d+)$/.exec(t);
  const mode = m ? { kind: 'views', views: Number(m[1]) } : { kind: t };
  if (isFeedMode(mode)) return mode;
  throw new GraftError(`unknown feed mode '${text}': use faithful, cached or views=K (K from 1 to ${MAX_VIEWS})`);
}

export function feedModeName(mode: FeedMode): string {
  return mode.kind === 'views' ? `views=${mode.views}` : mode.kind;
}

/** What every feed needs: the images, how to turn them into backbone input, and the backbone. */
export interface FeedContext {
  store: ImageStore;
  extractor: FeatureExtractor;
  pool: AugmentPool;
  augmentation: AugmentConfig;
  pre: PixelAffine;
  classMode: ClassMode;
  seed: number;
}

/** Images per backbone call when computing features in bulk. */
const CHUNK = 32;

/**
 * Augments (or just converts) `indices` of the store into `input` (NHWC floats on shared memory)
 * through the worker pool, reading the store's shared pixels in place when it has them.
 */
export class BatchPreparer {
  private readonly scratch: Uint8Array | null;

  constructor(private readonly ctx: FeedContext, private readonly maxBatch: number) {
    const { store } = ctx;
    this.scratch = store.pixels ? null : new Uint8Array(new SharedArrayBuffer(maxBatch * store.imageBytes));
  }

  async prepare(indices: ArrayLike<number>, params: readonly TransformParams[], input: Float32Array): Promise<void> {
    const { store, augmentation, pre, pool } = this.ctx;
    const [h, w] = store.size;
    const opts = { fillMode: augmentation.fillMode, cval: augmentation.cval, pre };
    if (store.pixels) {
      const packed: PackedImages = { data: store.pixels, h, w };
      await pool.augmentBatch(packed, indices, params, input, opts);
      return;
    }
    if (indices.length > this.maxBatch) throw new Error(`batch of ${indices.length} over the preparer's ${this.maxBatch}`);
    const scratch = this.scratch!.subarray(0, indices.length * store.imageBytes);
    await store.load(indices, scratch);
    const local = Array.from({ length: indices.length }, (_, k) => k);
    await pool.augmentBatch({ data: scratch, h, w }, local, params, input, opts);
  }
}

function drawTransforms(cfg: AugmentConfig, rng: Random, n: number, h: number, w: number): TransformParams[] {
  return Array.from({ length: n }, () => randomTransform(cfg, rng, h, w));
}

function inputLength(ctx: FeedContext, n: number): number {
  const [h, w] = ctx.store.size;
  return n * h * w * 3;
}

function featureLength(ctx: FeedContext): number {
  return ctx.extractor.outputShape.reduce((a, b) => a * b, 1);
}

/**
 * Features of every image of the store (from image `from` on), in store order: un-augmented, or
 * augmented with transforms drawn from `augmentSeed`. `into` receives each chunk (e.g. to store
 * it as float16, or write it to a feature store); it may start before `from` (at a chunk's start).
 */
export async function computeFeatures(
  ctx: FeedContext,
  opts: {
    augmentSeed?: number;
    from?: number;
    onProgress?: (done: number, total: number) => void;
    into: (first: number, features: Float32Array, n: number) => void | Promise<void>;
  },
): Promise<void> {
  const { store } = ctx;
  const [h, w] = store.size;
  const preparer = new BatchPreparer(ctx, CHUNK);
  const inputs = [sharedFloat32(inputLength(ctx, CHUNK)), sharedFloat32(inputLength(ctx, CHUNK))];
  const rng = opts.augmentSeed === undefined ? null : new Random(opts.augmentSeed);
  const chunks = Math.ceil(store.count / CHUNK);
  const firstChunk = Math.min(chunks, Math.floor((opts.from ?? 0) / CHUNK));
  // Chunks skipped still draw their transforms: the later ones are those of a whole pass.
  for (let c = 0; rng && c < firstChunk; c++) drawTransforms(ctx.augmentation, rng, Math.min(CHUNK, store.count - c * CHUNK), h, w);
  const start = (c: number) => {
    const first = c * CHUNK;
    const n = Math.min(CHUNK, store.count - first);
    const indices = Array.from({ length: n }, (_, k) => first + k);
    const params = rng ? drawTransforms(ctx.augmentation, rng, n, h, w) : new Array<TransformParams>(n).fill(IDENTITY_TRANSFORM);
    return preparer.prepare(indices, params, inputs[c % 2]!).then(() => ({ first, n }));
  };
  // Prepare chunk c+1 on the worker threads while the backbone runs on chunk c.
  let next = firstChunk < chunks ? start(firstChunk) : undefined;
  try {
    for (let c = firstChunk; c < chunks; c++) {
      const { first, n } = await next!;
      next = c + 1 < chunks ? start(c + 1) : undefined;
      next?.catch(() => undefined);
      const features = await ctx.extractor.extract(inputs[c % 2]!.subarray(0, inputLength(ctx, n)), n);
      await opts.into(first, features, n);
      opts.onProgress?.(first + n, store.count);
    }
  } finally {
    // Stopped early (interrupt, full disk): let in-flight work finish before the buffers go.
    await next?.catch(() => undefined);
  }
}

/** Encoded labels of the whole store. */
export function storeLabels(store: ImageStore, classMode: ClassMode): Float32Array {
  const all = Array.from({ length: store.count }, (_, i) => i);
  return encodeLabels(store.labels, all, classMode, store.classes.length, new Float32Array(store.count * labelWidth(classMode, store.classes.length)));
}

/** The store's un-augmented features, held in memory (see cachedRows for features that may not fit). */
export async function cachedFeatures(ctx: FeedContext, onProgress?: (done: number, total: number) => void): Promise<ArrayData> {
  const d = featureLength(ctx);
  const features = new Float32Array(ctx.store.count * d);
  await computeFeatures(ctx, { onProgress, into: (first, f, n) => features.set(f.subarray(0, n * d), first * d) });
  return { features, labels: storeLabels(ctx.store, ctx.classMode), count: ctx.store.count };
}

/**
 * Where features over the memory budget go, and what makes them these features (the feeds add
 * their own part): a store file is reused only for the same fingerprint.
 */
export interface FeatureStorage {
  /** What is left of the run's memory budget: a feature set that does not fit in it goes to a store file. */
  budget: MemoryBudget;
  /** The folder of the store files (a run's features/). */
  dir: string;
  /** Images, weights, cut, input size, resize, preprocessing, orientation, pooling of `store` (computed only when a file is written or read). */
  fingerprint: (store: ImageStore) => Promise<Record<string, unknown>>;
  onNote?: (line: string) => void;
}

/**
 * `rows` rows of features for `store`, computed by `compute` (from row `from` on, in order): held
 * in memory when they fit in the budget, else in the store file `name` in storage.dir, reused when
 * a finished one of the same fingerprint is there.
 */
async function featureRows(
  ctx: FeedContext,
  storage: FeatureStorage | undefined,
  spec: { name: string; rows: number; dtype: FeatureDtype; feed: Record<string, unknown> },
  compute: (from: number, write: (first: number, values: Float32Array, n: number) => void | Promise<void>) => Promise<void>,
): Promise<FeatureRows> {
  const d = featureLength(ctx);
  const rowShape = ctx.extractor.outputShape;
  const bytes = featureBytes({ rows: spec.rows, rowShape, dtype: spec.dtype });
  // In memory within the budget (and within one typed array's limit).
  const left = storage?.budget.left ?? Infinity;
  if (!storage || (bytes <= kMaxLength && storage.budget.take(bytes))) {
    const memory = new MemoryFeatureRows(d, spec.rows, spec.dtype);
    await compute(0, (first, values, n) => memory.write(first, values, n));
    return memory;
  }
  const file = join(storage.dir, `${spec.name}.features`);
  const fingerprint = { ...(await storage.fingerprint(ctx.store)), ...spec.feed };
  storage.onNote?.(`The ${spec.name} features (${formatBytes(bytes)}) do not fit in what is left of the memory budget (${formatBytes(left)} of ${formatBytes(storage.budget.total)}): they are kept on disk in ${file}`);
  const { store, reused } = await obtainFeatureStore(file, { fingerprint, rows: spec.rows, rowShape, dtype: spec.dtype }, compute, { onNote: storage.onNote });
  if (reused) storage.onNote?.(`Reusing the ${spec.name} features of ${spec.rows} rows in ${file} (same images and settings)`);
  return store;
}

/**
 * The store's un-augmented features as rows (validation, and the `cached` feed): in memory when
 * they fit storage's budget, else in a store file (see featureRows). Without storage, in memory.
 */
export async function cachedRows(ctx: FeedContext, name: string, storage?: FeatureStorage, onProgress?: (done: number, total: number) => void): Promise<RowsData> {
  const rows = await featureRows(ctx, storage, { name, rows: ctx.store.count, dtype: 'float32', feed: { feed: 'cached' } }, (from, write) =>
    computeFeatures(ctx, { from, onProgress, into: write }),
  );
  return { rows, labels: storeLabels(ctx.store, ctx.classMode), count: ctx.store.count };
}

/**
 * Rows derived from other rows of the same images (features at a lower layer) by ctx.extractor
 * (the frozen layers above it), in memory within storage's budget, else in a store file (see
 * featureRows); `feed` tells them apart in the fingerprint.
 */
export async function derivedRows(ctx: FeedContext, name: string, source: RowsData, feed: Record<string, unknown>, storage?: FeatureStorage, onProgress?: (done: number, total: number) => void): Promise<RowsData> {
  const rows = await featureRows(ctx, storage, { name, rows: source.count, dtype: 'float32', feed }, async (from, write) => {
    const input = new Float32Array(CHUNK * source.rows.rowFloats);
    for (let first = from; first < source.count; first += CHUNK) {
      const n = Math.min(CHUNK, source.count - first);
      await source.rows.readRange(first, n, input);
      await write(first, await ctx.extractor.extract(input, n), n);
      onProgress?.(first + n, source.count);
    }
  });
  return { rows, labels: source.labels, count: source.count };
}

/** Batch order and labels shared by the feeds: Keras's flow_from_directory shuffle, per epoch. */
function orderAndLabels(ctx: FeedContext, batchSize: number) {
  const order = new BatchOrder(ctx.store.count, batchSize, { shuffle: true, seed: ctx.seed });
  const width = labelWidth(ctx.classMode, ctx.store.classes.length);
  const labels = new Float32Array(batchSize * width);
  const encode = (indices: ArrayLike<number>) => encodeLabels(ctx.store.labels, indices, ctx.classMode, ctx.store.classes.length, labels);
  return { order, encode };
}

/**
 * The lab's feed: each step draws a batch, augments it with fresh random transforms and runs it
 * through the backbone. Epoch e's transforms come from (seed, e) alone, so a resumed run sees the
 * same images as an uninterrupted one.
 *
 * The backbone and the head take turns, each with every core; only the light augmentation
 * overlaps (the worker threads prepare batch k+2 while the backbone runs on batch k+1). Running the
 * backbone on batch k+1 while the head trained on batch k, as earlier versions did, measured ~0.75 s
 * an epoch slower in the lab (A/B runs in alternating order on 2 cores): both want both cores.
 */
export function faithfulSource(ctx: FeedContext, batchSize: number): BatchSource {
  const { order, encode } = orderAndLabels(ctx, batchSize);
  const [h, w] = ctx.store.size;
  const preparer = new BatchPreparer(ctx, batchSize);
  // Two input buffers: batch k+2 is augmented into batch k's once the backbone has read it.
  const inputs = [0, 1].map(() => sharedFloat32(inputLength(ctx, batchSize)));
  return {
    stepsPerEpoch: order.steps,
    async *batches(epoch: number): AsyncGenerator<Batch> {
      const rng = new Random(deriveSeed(ctx.seed, epoch, STREAM_AUGMENT));
      const steps = order.steps;
      // Transforms are drawn in a fixed order whatever the timing (step 1's, then step 0's as the
      // pipeline starts, then 2, 3, ...), so the epoch is reproducible.
      let augmenting: Promise<unknown> = Promise.resolve();
      const augment = (step: number): Promise<Uint32Array> => {
        const indices = order.batch(epoch, step).slice();
        const params = drawTransforms(ctx.augmentation, rng, indices.length, h, w);
        const done = augmenting.then(() => preparer.prepare(indices, params, inputs[step % 2]!)).then(() => indices);
        augmenting = done.catch(() => undefined);
        return done;
      };
      const extract = (step: number, augmented: Promise<Uint32Array>) =>
        augmented.then(async (indices) => {
          const n = indices.length;
          return { indices, features: await ctx.extractor.extract(inputs[step % 2]!.subarray(0, inputLength(ctx, n)), n) };
        });
      const quiet = <T>(p: Promise<T> | undefined) => (p?.catch(() => undefined), p);
      let nextAugmented = steps > 1 ? quiet(augment(1)) : undefined;
      let current = steps > 0 ? quiet(extract(0, augment(0))) : undefined;
      try {
        for (let step = 0; step < steps; step++) {
          const { indices, features } = await current!;
          yield { features, labels: encode(indices), size: indices.length };
          // The head has finished its step: the backbone now has the cores to itself.
          current = step + 1 < steps ? quiet(extract(step + 1, nextAugmented!)) : undefined;
          nextAugmented = step + 2 < steps ? quiet(augment(step + 2)) : undefined;
        }
      } finally {
        // Stopped early (interrupt, error): let in-flight work finish before the buffers are reused.
        await Promise.allSettled([current, nextAugmented, augmenting]);
      }
    },
  };
}

/**
 * K augmented views of every image, computed once through the backbone and kept as float16 (half the memory;
 * features need no more precision), in memory or, over storage's budget, in a store file (row
 * v * count + i: view v of image i); each epoch every image contributes one of its views, drawn from (seed, epoch).
 */
export async function viewsSource(
  ctx: FeedContext,
  batchSize: number,
  views: number,
  onProgress?: (done: number, total: number) => void,
  storage?: FeatureStorage,
  name = 'training',
): Promise<BatchSource & { rows: FeatureRows }> {
  const d = featureLength(ctx);
  const count = ctx.store.count;
  const feed = { feed: `views=${views}`, augmentation: ctx.augmentation, seed: ctx.seed };
  const rows = await featureRows(ctx, storage, { name, rows: views * count, dtype: 'float16', feed }, async (from, write) => {
    for (let v = Math.floor(from / count); v < views; v++) {
      await computeFeatures(ctx, {
        augmentSeed: deriveSeed(ctx.seed, v, STREAM_VIEW_AUGMENT),
        from: Math.max(0, from - v * count),
        onProgress: onProgress && ((done) => onProgress(v * count + done, views * count)),
        into: (first, f, n) => write(v * count + first, f, n),
      });
    }
  });
  const { order, encode } = orderAndLabels(ctx, batchSize);
  const features = new Float32Array(batchSize * d);
  const picked = new Uint32Array(batchSize);
  return {
    rows,
    stepsPerEpoch: order.steps,
    async *batches(epoch: number): AsyncGenerator<Batch> {
      const choice = new Random(deriveSeed(ctx.seed, epoch, STREAM_VIEW_CHOICE));
      const picks = new Uint8Array(count);
      for (let i = 0; i < count; i++) picks[i] = choice.int(views);
      for (let step = 0; step < order.steps; step++) {
        const indices = order.batch(epoch, step);
        for (let k = 0; k < indices.length; k++) picked[k] = picks[indices[k]!]! * count + indices[k]!;
        await rows.read(picked.subarray(0, indices.length), features);
        yield { features, labels: encode(indices), size: indices.length };
      }
    },
  };
}
