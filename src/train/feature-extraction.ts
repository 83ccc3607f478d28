/**
 * `graft features`: backbone features of a labelled image folder written once to a feature store
 * (the format of src/train/feature-store.ts, one format for spilled and extracted features), so
 * that training runs read them instead of decoding images (`graft train --features STORE`).
 *
 * Extraction for millions of images splits into shards: shard I of N takes a deterministic slice
 * of the listing (whole chunks of 32 images, so every image goes through the backbone in the same
 * batch as in one unsharded run) and writes the part file STORE.part-I-of-N; a killed shard
 * continues from its last verified block; `mergeFeatureShards` joins the N parts into STORE, the
 * same bytes one run writes. Every shard lists the whole folder: the listing decides the rows.
 */
import { readdir, rm } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { availableParallelism } from 'node:os';
import { loadBackbone, type Backbone, type FeaturePooling } from '../backbone/backbone.js';
import { AugmentPool } from '../data/augment-pool.js';
import { NO_AUGMENTATION } from '../data/augment.js';
import type { Interpolation, Orientation } from '../data/decode.js';
import { buildImageStore } from '../data/image-store.js';
import { resolveTableDataset } from '../data/label-table.js';
import { resolveDataset, type DatasetListing } from '../data/listing.js';
import { preprocessParams, type PreprocessName } from '../data/preprocess.js';
import { backbonePooling } from '../model/head.js';
import type { HeadSpec } from '../model/head-spec.js';
import { GraftError } from '../util/errors.js';
import { featureFingerprint } from './feature-fingerprint.js';
import { computeFeatures } from './feature-sources.js';
import { checkDiskSpace, featureBytes, FeatureStoreFile, FeatureStoreWriter, formatBytes, mergeFeatureStoreParts, type FeatureStoreSpec } from './feature-store.js';
import { resolveRecipe, type RecipeName } from './recipes.js';

/** Images a shard's slice is made of, whole: computeFeatures's chunk, so that batches are those of one run. */
export const SHARD_CHUNK = 32;

/** Decoded images a shard holds at once by default (a window of the slice). */
export const DEFAULT_EXTRACTION_BUDGET = 256 << 20;

/** Shard `index` (0-based) of `count`. */
export interface Shard {
  index: number;
  count: number;
}

/** Parses `I/N` (0 <= I < N): `--shard 3/16`, or JOB_COMPLETION_INDEX/N. */
export function parseShard(text: string): Shard {
  const m = /^\s*(\d+)\s*\/\s*(\d+)\s*$/.exec(text);
  const index = m ? Number(m[1]) : NaN, count = m ? Number(m[2]) : NaN;
  if (!m || !Number.isSafeInteger(count) || count < 1 || index >= count) {
    throw new GraftError(`bad shard '${text}': use I/N with N at least 1 and I from 0 to N-1 (e.g. 0/4 ... 3/4)`);
  }
  return { index, count };
}

/** Rows [first, first + count) of `rows` that `shard` computes: a share of whole 32-image chunks. */
export function shardRows(rows: number, shard: Shard): { first: number; count: number } {
  const chunks = Math.ceil(rows / SHARD_CHUNK);
  const from = Math.floor((shard.index * chunks) / shard.count) * SHARD_CHUNK;
  const to = Math.min(rows, Math.floor(((shard.index + 1) * chunks) / shard.count) * SHARD_CHUNK);
  return { first: Math.min(from, rows), count: Math.max(0, to - from) };
}

/** The part file shard I of N writes beside the store. */
export function shardPartFile(store: string, shard: Shard): string {
  return `${store}.part-${shard.index}-of-${shard.count}`;
}

/** Labels as runs, "label*count,..." (a folder's listing is class by class: a few runs). */
export function encodeLabelRuns(labels: ArrayLike<number>): string {
  const runs: string[] = [];
  for (let i = 0; i < labels.length; ) {
    let j = i;
    while (j < labels.length && labels[j] === labels[i]) j++;
    runs.push(`${labels[i]}*${j - i}`);
    i = j;
  }
  return runs.join(',');
}

/** The labels of encodeLabelRuns, or null when `text` is not such a list. */
export function decodeLabelRuns(text: unknown, classes: number): Int32Array | null {
  if (typeof text !== 'string') return null;
  const runs = text === '' ? [] : text.split(',').map((r) => /^(\d+)\*(\d+)$/.exec(r));
  if (runs.some((r) => !r || Number(r[1]) >= classes)) return null;
  const total = runs.reduce((n, r) => n + Number(r![2]), 0);
  const labels = new Int32Array(total);
  let at = 0;
  for (const r of runs) labels.fill(Number(r![1]), at, (at += Number(r![2])));
  return labels;
}

export interface ExtractFeaturesOptions {
  /** A folder of class folders (or train/ + validation/: its training folder), or with `labels` the folder a table's paths are relative to. */
  data: string;
  /** Labels from a table (see TrainOptions.labels). */
  labels?: string;
  fileColumn?: string;
  labelColumn?: string;
  followSymlinks?: boolean;
  /** The store file (a shard writes STORE.part-I-of-N beside it). */
  out: string;
  /** This worker's share; default: the whole listing, written to `out`. */
  shard?: Shard;
  /** The settings left unset take this recipe's (as graft train's). */
  recipe?: RecipeName;
  weights?: string;
  cut?: string;
  inputSize?: [number, number];
  interpolation?: Interpolation;
  orientation?: Orientation;
  preprocess?: PreprocessName;
  /** The head the features are for: one starting with gap has them pooled in the backbone (768 floats an image). */
  head?: HeadSpec;
  /** Or the pooling itself ('none': the cut layer's whole output); default the head's. */
  pooling?: FeaturePooling | 'none';
  /** Images per backbone call. */
  batchSize?: number;
  /** Decoded images held at once (default DEFAULT_EXTRACTION_BUDGET). */
  memoryBudget?: number;
  /** Rows per checksummed block, the unit a killed run keeps (default about 8 MiB of rows). */
  blockRows?: number;
  onNote?: (line: string) => void;
  onProgress?: (done: number, total: number) => void;
  /** Aborting it stops after the current chunk; what is written stays, to continue from. */
  signal?: AbortSignal;
}

export interface ExtractFeaturesResult {
  /** The file written (the store, or this shard's part). */
  file: string;
  /** Rows of the whole store, and those of this file. */
  rows: number;
  firstRow: number;
  partRows: number;
  /** Already complete: nothing computed. */
  reused: boolean;
  /** Rows found done in an unfinished file (a resumed shard). */
  resumedFrom: number;
  classes: string[];
}

/** The listing a store's rows follow: class folders (a lab layout's training folder) or a table. */
async function listForExtraction(opts: ExtractFeaturesOptions): Promise<DatasetListing> {
  if (opts.labels !== undefined) {
    return (await resolveTableDataset({ labels: opts.labels, data: opts.data, fileColumn: opts.fileColumn, labelColumn: opts.labelColumn, onBadImage: 'error' })).train;
  }
  if (opts.fileColumn !== undefined || opts.labelColumn !== undefined) throw new GraftError('the file and label columns apply to a labels table only');
  return (await resolveDataset(opts.data, { followSymlinks: opts.followSymlinks })).train;
}

/** What the store's header says of its rows: the features' settings (as training's spill stores), the classes and the labels. */
export async function extractionFingerprint(
  backbone: Backbone,
  settings: { inputSize: [number, number]; interpolation: string; orientation: string; preprocess: string },
  listing: DatasetListing,
): Promise<Record<string, unknown>> {
  const labels = Int32Array.from(listing.files, (f) => f.label);
  const images = { count: listing.files.length, paths: listing.files.map((f) => f.path), labels };
  const base = await featureFingerprint<typeof images>(backbone, settings, () => listing.root)(images);
  return { ...base, feed: 'cached', classes: listing.classes, labels: encodeLabelRuns(labels) };
}

/**
 * Computes the features of `opts.data` (or of this shard's slice of it) into a feature store,
 * resumably: stages listing, backbone, the file to write (reused when complete, continued when
 * unfinished), then window by window decoding and extraction.
 */
export async function extractFeatures(opts: ExtractFeaturesOptions): Promise<ExtractFeaturesResult> {
  const note = opts.onNote ?? (() => undefined);
  const recipe = resolveRecipe({ recipe: opts.recipe, cut: opts.cut, inputSize: opts.inputSize, interpolation: opts.interpolation, preprocess: opts.preprocess, head: opts.head }).settings;
  const listing = await listForExtraction(opts);
  if (listing.files.length === 0) throw new GraftError(`no images found in ${listing.root}`, { file: listing.root });
  for (const w of listing.warnings) note(`warning: ${w}`);
  for (const s of listing.skipped) note(`warning: skipped ${s.path}: ${s.reason}`);
  const out = resolve(opts.out);
  const rows = listing.files.length;
  const { first, count } = opts.shard ? shardRows(rows, opts.shard) : { first: 0, count: rows };
  const file = opts.shard ? shardPartFile(out, opts.shard) : out;
  const pool = opts.pooling === 'none' ? undefined : (opts.pooling ?? backbonePooling(recipe.head));
  const orientation = opts.orientation ?? 'ignore';
  const backbone = await loadBackbone({ weights: opts.weights, cut: recipe.cut, inputSize: recipe.inputSize, pool, batchSize: opts.batchSize });
  let augment: AugmentPool | undefined;
  try {
    const fingerprint = await extractionFingerprint(backbone, { inputSize: recipe.inputSize, interpolation: recipe.interpolation, orientation, preprocess: recipe.preprocess }, listing);
    const spec: FeatureStoreSpec = { fingerprint, rows, rowShape: backbone.extractor.outputShape, dtype: 'float32' };
    const result = { file, rows, firstRow: first, partRows: count, classes: listing.classes };
    const done = await FeatureStoreFile.open(file, spec, { verify: true });
    if (done instanceof FeatureStoreFile) {
      await done.close();
      note(`${file} is complete (rows ${first} to ${first + count - 1} of ${rows}): nothing to compute`);
      return { ...result, reused: true, resumedFrom: count };
    }
    if (done.problem !== 'there is no such file') {
      note(`${file} cannot be used: ${done.problem}; computing it again`);
      await rm(file, { force: true });
    }
    await checkDiskSpace(file, featureBytes({ rows: count, rowShape: spec.rowShape, dtype: spec.dtype }));
    const writer = await FeatureStoreWriter.begin(file, spec, { firstRow: first, partRows: count, onNote: note, blockRows: opts.blockRows });
    const resumedFrom = writer.rowsDone;
    try {
      if (resumedFrom > 0) note(`Continuing the unfinished ${file} from row ${first + resumedFrom} (${resumedFrom} of its ${count} rows verified)`);
      note(`Computing features of ${count - resumedFrom} images (rows ${first + resumedFrom} to ${first + count - 1} of ${rows}) into ${file}`);
      augment = AugmentPool.create({ threads: Math.max(1, Math.min(2, availableParallelism())) });
      await extractRows(opts, listing, backbone, augment, writer, { first, count, orientation, recipe });
      const finished = await writer.finish();
      await finished.close();
    } finally {
      await writer.close();
    }
    note(`Wrote ${file} (${count} rows of ${rows}, ${formatBytes(featureBytes({ rows: count, rowShape: spec.rowShape, dtype: spec.dtype }))})`);
    return { ...result, reused: false, resumedFrom };
  } finally {
    await augment?.close();
    await backbone.dispose();
  }
}

/** Rows [writer.rowsDone, count) of the slice starting at `first`: window by window, decoded in memory once. */
async function extractRows(
  opts: ExtractFeaturesOptions,
  listing: DatasetListing,
  backbone: Backbone,
  pool: AugmentPool,
  writer: FeatureStoreWriter,
  part: { first: number; count: number; orientation: Orientation; recipe: ReturnType<typeof resolveRecipe>['settings'] },
): Promise<void> {
  const [h, w] = part.recipe.inputSize;
  const budget = opts.memoryBudget ?? DEFAULT_EXTRACTION_BUDGET;
  const windowRows = Math.max(1, Math.floor(budget / (h * w * 3 * SHARD_CHUNK))) * SHARD_CHUNK;
  const pre = preprocessParams(part.recipe.preprocess);
  const stopIfAborted = () => {
    if (opts.signal?.aborted) throw new GraftError(`interrupted: ${writer.rowsDone} of ${part.count} rows of ${writer.file} are kept; run the same command again to continue`);
  };
  // Windows start on whole chunks (the slice does), so a resumed run batches as an uninterrupted one.
  for (let at = Math.floor(writer.rowsDone / SHARD_CHUNK) * SHARD_CHUNK; at < part.count; at += windowRows) {
    stopIfAborted();
    const files = listing.files.slice(part.first + at, part.first + Math.min(part.count, at + windowRows));
    const store = await buildImageStore({ ...listing, files, skipped: [], warnings: [] }, {
      width: w, height: h, interpolation: part.recipe.interpolation, orientation: part.orientation, memoryBudgetBytes: Number.MAX_SAFE_INTEGER, onBadImage: 'error',
    }).catch((err: unknown) => {
      // Every row belongs to an image of the listing: an unreadable one must leave it (or be fixed).
      const cause = (err as { cause?: unknown }).cause;
      if (err instanceof GraftError && err.file && cause instanceof Error) {
        throw new GraftError(`${cause.message}: remove or replace it, then run every shard again (the listing decides the rows)`, { file: err.file, cause });
      }
      throw err;
    });
    const ctx = { store, extractor: backbone.extractor, pool, augmentation: NO_AUGMENTATION, pre, classMode: 'binary' as const, seed: 0 };
    await computeFeatures(ctx, {
      from: Math.max(0, writer.rowsDone - at),
      into: (row, features, n) => writer.write(at + row, features, n),
      onProgress: (d) => {
        opts.onProgress?.(at + d, part.count);
        stopIfAborted();
      },
    });
  }
}

/** Part files of `store` present beside it (finished ones only), by shard. */
async function findParts(store: string): Promise<{ file: string; shard: Shard }[]> {
  const name = basename(store);
  const pattern = /^\.part-(\d+)-of-(\d+)$/;
  const found: { file: string; shard: Shard }[] = [];
  for (const entry of await readdir(dirname(store)).catch(() => [] as string[])) {
    if (!entry.startsWith(name)) continue;
    const m = pattern.exec(entry.slice(name.length));
    if (m) found.push({ file: join(dirname(store), entry), shard: { index: Number(m[1]), count: Number(m[2]) } });
  }
  return found.sort((a, b) => a.shard.count - b.shard.count || a.shard.index - b.shard.index);
}

/**
 * Joins the N part files STORE.part-I-of-N into STORE (the bytes one run writes) once all N are
 * finished, then removes them. A missing or unfinished part is named.
 */
export async function mergeFeatureShards(store: string, opts: { onNote?: (line: string) => void; keepParts?: boolean } = {}): Promise<{ file: string; rows: number; parts: number }> {
  const out = resolve(store);
  const parts = await findParts(out);
  if (parts.length === 0) throw new GraftError(`no parts of ${out} to merge (shards write ${basename(out)}.part-I-of-N beside it)`, { file: out });
  const counts = [...new Set(parts.map((p) => p.shard.count))];
  if (counts.length > 1) throw new GraftError(`the parts of ${out} come from different shard counts (${counts.map((n) => `of ${n}`).join(', ')}): remove the parts of the run you gave up`, { file: out });
  const n = counts[0]!;
  const missing = Array.from({ length: n }, (_, i) => i).filter((i) => !parts.some((p) => p.shard.index === i));
  if (missing.length > 0) {
    const shown = missing.slice(0, 10).map((i) => `${i}/${n}`).join(', ');
    throw new GraftError(`cannot merge ${out}: ${missing.length} of ${n} shards are not finished (${shown}${missing.length > 10 ? ', ...' : ''}); run them (graft features --shard I/${n}) first`, { file: out });
  }
  const merged = await mergeFeatureStoreParts(parts.map((p) => p.file), out);
  const rows = merged.header.rows;
  await merged.close();
  if (!opts.keepParts) for (const p of parts) await rm(p.file, { force: true });
  opts.onNote?.(`Merged ${n} parts into ${out} (${rows} rows)${opts.keepParts ? '' : '; the parts were removed'}`);
  return { file: out, rows, parts: n };
}
