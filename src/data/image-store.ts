/**
 * The decoded images of a listing, decoded once per run and kept as uint8 HWC RGB (150x150x3 =
 * 67.5 KB each; the lab's 3000 images are ~200 MB). A dataset over the memory budget is not held:
 * it is checked once (every file decoded and dropped, so bad files are known up front) and then
 * decoded again on demand by `load`, which both kinds of store answer the same way.
 */
import { availableParallelism } from 'node:os';
import { GraftError } from '../util/errors.js';
import { BadImageError, decodeImageInto, type DecodeOptions, type Interpolation, type Orientation } from './decode.js';
import { DecodePool, defaultDecodeWorkers } from './decode-pool.js';
import type { DatasetListing, SkippedFile } from './listing.js';
import { setting } from '../util/option-names.js';

export interface ImageStore {
  /** [height, width] of every image. */
  readonly size: [number, number];
  /** Usable images (bad files left out). */
  readonly count: number;
  /** Label of image i. */
  readonly labels: Int32Array;
  /** File of image i. */
  readonly paths: readonly string[];
  readonly classes: readonly string[];
  /** Files that could not be decoded, with why. */
  readonly bad: readonly SkippedFile[];
  /** True when every image is held in memory (then `get` works). */
  readonly inMemory: boolean;
  /** Bytes of one image (h*w*3). */
  readonly imageBytes: number;
  /** Image i as a view into the store (no copy). In-memory stores only. */
  get(i: number): Uint8Array;
  /** In memory: every image back to back on a SharedArrayBuffer, so worker threads read them without copies. */
  readonly pixels?: Uint8Array;
  /** Copies (or decodes) images `indices` one after another into `into` (indices.length * imageBytes). */
  load(indices: ArrayLike<number>, into: Uint8Array): Promise<void>;
}

export interface BuildStoreOptions {
  width: number;
  height: number;
  interpolation?: Interpolation;
  orientation?: Orientation;
  maxPixels?: number;
  fast?: boolean;
  /** Decodes in flight at once (default 3 per core; sharp decodes on libuv's thread pool). */
  concurrency?: number;
  /**
   * Worker threads that decode beside the calling thread (default: defaultDecodeWorkers). The
   * images, their order and the bad files found are the same with any number.
   */
  decodeWorkers?: number;
  /** Keep images in memory only if they fit in this many bytes (default 1 GiB). */
  memoryBudgetBytes?: number;
  /** 'skip' (default): warn and leave the file out; 'error': stop with a GraftError. */
  onBadImage?: 'skip' | 'error';
  /** One line per bad file and a summary line; default: written to stderr. */
  onWarning?: (line: string) => void;
  onProgress?: (done: number, total: number) => void;
}

export const DEFAULT_MEMORY_BUDGET = 1 << 30;

/**
 * Decodes in flight: 3 per core. sharp works on libuv's pool (4 threads by default); keeping a
 * couple queued lets the pool stay busy while the main thread reads files and resizes (measured
 * on the lab's JPEGs, 2 cores: 2 -> 277/s, 3 -> 313/s, 4 -> 418/s, 6 -> 481/s; shared machine).
 */
export function defaultDecodeConcurrency(): number {
  return Math.max(2, 3 * availableParallelism());
}

/** Runs `task(i)` for i in [0, n) with at most `limit` running at once; stops at the first rejection. */
export async function runPool(n: number, limit: number, task: (i: number, slot: number) => Promise<void>): Promise<void> {
  let next = 0;
  let failed: unknown;
  const worker = async (slot: number) => {
    while (failed === undefined && next < n) {
      const i = next++;
      try {
        await task(i, slot);
      } catch (err) {
        if (failed === undefined) failed = err;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, n) }, (_, slot) => worker(slot)));
  if (failed !== undefined) throw failed;
}

/** What every store knows about its images, whichever way it holds them. */
interface StoreFacts {
  size: [number, number];
  count: number;
  labels: Int32Array;
  paths: string[];
  classes: string[];
  bad: SkippedFile[];
  imageBytes: number;
}

abstract class BaseImageStore {
  readonly size: [number, number];
  readonly count: number;
  readonly labels: Int32Array;
  readonly paths: string[];
  readonly classes: string[];
  readonly bad: SkippedFile[];
  readonly imageBytes: number;

  constructor(facts: StoreFacts) {
    ({ size: this.size, count: this.count, labels: this.labels, paths: this.paths, classes: this.classes, bad: this.bad, imageBytes: this.imageBytes } = facts);
  }
}

class MemoryImageStore extends BaseImageStore implements ImageStore {
  readonly inMemory = true;
  constructor(facts: StoreFacts, readonly pixels: Uint8Array) {
    super(facts);
  }

  get(i: number): Uint8Array {
    if (!(i >= 0 && i < this.count)) throw new RangeError(`image ${i} out of range [0, ${this.count})`);
    return this.pixels.subarray(i * this.imageBytes, (i + 1) * this.imageBytes);
  }

  async load(indices: ArrayLike<number>, into: Uint8Array): Promise<void> {
    for (let k = 0; k < indices.length; k++) into.set(this.get(indices[k]!), k * this.imageBytes);
  }
}

class StreamingImageStore extends BaseImageStore implements ImageStore {
  readonly inMemory = false;
  constructor(facts: StoreFacts, private readonly decode: DecodeOptions, private readonly concurrency: number) {
    super(facts);
  }

  get(): Uint8Array {
    throw new Error('this image store streams from disk (dataset over the memory budget); use load()');
  }

  async load(indices: ArrayLike<number>, into: Uint8Array): Promise<void> {
    await runPool(indices.length, this.concurrency, async (k) => {
      const i = indices[k]!;
      const path = this.paths[i]!;
      try {
        await decodeImageInto(path, this.decode, into.subarray(k * this.imageBytes, (k + 1) * this.imageBytes));
      } catch (err) {
        if (err instanceof BadImageError) throw new GraftError(`${err.message} (it decoded earlier in this run; was it changed?)`, { file: path });
        throw err;
      }
    });
  }
}

/** Decodes every image of `listing` (in parallel) into an ImageStore. */
export async function buildImageStore(listing: DatasetListing, opts: BuildStoreOptions): Promise<ImageStore> {
  const { width, height } = opts;
  if (!(Number.isInteger(width) && Number.isInteger(height) && width > 0 && height > 0)) {
    throw new GraftError(`image size must be positive integers, got ${width}x${height}`);
  }
  const decode: DecodeOptions = {
    width,
    height,
    interpolation: opts.interpolation,
    orientation: opts.orientation,
    maxPixels: opts.maxPixels,
    fast: opts.fast,
  };
  const imageBytes = width * height * 3;
  const n = listing.files.length;
  const concurrency = Math.max(1, opts.concurrency ?? defaultDecodeConcurrency());
  const budget = opts.memoryBudgetBytes ?? DEFAULT_MEMORY_BUDGET;
  const inMemory = n * imageBytes <= budget;
  const warn = opts.onWarning ?? ((line: string) => process.stderr.write(`${line}\n`));
  const onBad = opts.onBadImage ?? 'skip';

  // In memory: image i decodes straight into slot i. Streaming: into one scratch slot per worker.
  // Shared memory so that augmentation workers can read the images in place.
  const pixels = new Uint8Array(new SharedArrayBuffer(inMemory ? n * imageBytes : concurrency * imageBytes));
  const ok = new Uint8Array(n);
  const badByIndex = new Map<number, string>();
  let done = 0;
  const workers = Math.min(opts.decodeWorkers ?? defaultDecodeWorkers(n, decode.interpolation), Math.max(0, concurrency - 1));
  const pool = workers > 0 ? DecodePool.start(workers) : null;
  // Slots in flight take turns: the calling thread's, then each worker's.
  const share = workers + 1;
  try {
    await runPool(n, concurrency, async (i, slot) => {
      const at = inMemory ? i : slot;
      const path = listing.files[i]!.path;
      try {
        if (pool && slot % share !== 0) await pool.decodeInto(slot % share - 1, path, decode, pixels.buffer as SharedArrayBuffer, pixels.byteOffset + at * imageBytes, imageBytes);
        else await decodeImageInto(path, decode, pixels.subarray(at * imageBytes, (at + 1) * imageBytes));
        ok[i] = 1;
      } catch (err) {
        if (!(err instanceof BadImageError)) throw err;
        if (onBad === 'error') {
          throw new GraftError(`${err.message} (leave bad images out with ${setting('onBadImage', 'skip')})`, { file: path, cause: err });
        }
        badByIndex.set(i, err.reason);
        warn(`warning: skipping ${path}: ${err.reason}`);
      }
      opts.onProgress?.(++done, n);
    });
  } finally {
    await pool?.close();
  }

  const bad: SkippedFile[] = [...badByIndex.entries()].sort((a, b) => a[0] - b[0]).map(([i, reason]) => ({ path: listing.files[i]!.path, reason }));
  const count = n - bad.length;
  const labels = new Int32Array(count);
  const paths: string[] = [];
  let k = 0;
  for (let i = 0; i < n; i++) {
    if (!ok[i]) continue;
    // Close the holes bad files left, keeping listing order.
    if (inMemory && k !== i) pixels.copyWithin(k * imageBytes, i * imageBytes, (i + 1) * imageBytes);
    labels[k] = listing.files[i]!.label;
    paths.push(listing.files[i]!.path);
    k++;
  }
  if (bad.length > 0) warn(`warning: ${bad.length} of ${n} images in ${listing.root} could not be decoded and were skipped`);

  const size: [number, number] = [height, width];
  const facts: StoreFacts = { size, count, labels, paths, classes: listing.classes, bad, imageBytes };
  if (inMemory) return new MemoryImageStore(facts, pixels.subarray(0, count * imageBytes));
  return new StreamingImageStore(facts, decode, concurrency);
}
