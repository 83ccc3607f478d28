/**
 * `npm run bench:recipes [-- options]`: measures candidate training recipes on several datasets
 * and prints the table that chose graft train's default recipe (docs/recipes.md).
 *
 * Cached mode computes each image's features once; so does this script, once per (dataset, input
 * size, interpolation, preprocessing) — a "pass" — and then trains every candidate head of that
 * pass, for every seed, on the same features through the library's HeadTrainer and fit (the loop
 * `graft train --mode cached` runs). Features of a pooling head are pooled here, where the head
 * pools: averaging over H and W before a `gap` head gives the same head training as the head
 * pooling 17x17x768 itself, at 768 floats an image. A concat-pooling head (average and max,
 * 1536 floats) is measured the same way, as a `gap` head on [1, 1, 1536]; grid heads
 * (AveragePooling2D to 3x3 and the like, GRIDS) are fed the grid as a flatten head. The 299x299
 * pass also computes the validation set mirrored, to score each run with TTA as well.
 *
 * Results go to a JSON file entry by entry (--results, default /tmp/graft-recipes.json); a run
 * started again skips what it holds, so it can be stopped and continued.
 *
 *   --datasets a,b     which sets (default all four: cats_and_dogs,eurosat,beans,sign_language)
 *   --candidates a,b   which candidates (default all)
 *   --seeds N          seeds 0..N-1 (default 3)
 *   --seeds-of A=2     fewer (or more) seeds for named candidates
 *   --epochs N         epochs (default 10)
 *   --threads N        threads of the backbone and the head (default: the cores)
 *   --data-root DIR    where the sets lie (default $GRAFT_SHARED/datasets, ../shared/datasets)
 *   --feature-cache D  where pooled features are kept between runs (default /tmp/h15d-feats)
 *   --table            only print the table from the results file
 */
import { existsSync } from 'node:fs';
import { mkdir, readFile } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { join, resolve } from 'node:path';
import {
  AugmentPool,
  HeadTrainer,
  NO_AUGMENTATION,
  arrayBatchSource,
  buildImageStore,
  computeFeatures,
  fit,
  headForClasses,
  initHead,
  listImageFolder,
  listValidationFolder,
  loadBackbone,
  parseHeadSpec,
  preprocessParams,
  relaunchWithMallocTunables,
  type ArrayData,
  type ClassMode,
  type FeedContext,
  type ImageStore,
  type Interpolation,
  type OptimizerConfig,
  type PreprocessName,
} from '../src/index.js';
import type { LrScheduleConfig } from '../src/train/lr-schedule.js';
import { storeLabels } from '../src/train/feature-sources.js';
import { denseShapes } from '../src/model/head.js';
import { writeFileAtomic } from '../src/util/atomic.js';
import { sharedRoot } from '../src/util/paths.js';

await relaunchWithMallocTunables();

interface DatasetDef {
  train: string;
  val: string;
}
const DATASETS: Record<string, DatasetDef> = {
  cats_and_dogs: { train: 'cats_and_dogs_filtered/train', val: 'cats_and_dogs_filtered/validation' },
  eurosat: { train: 'eurosat_rgb/train', val: 'eurosat_rgb/test' },
  beans: { train: 'beans/train', val: 'beans/test' },
  sign_language: { train: 'sign_language_digits/train', val: 'sign_language_digits/test' },
};

/** One feature computation: what the images become before the head. */
interface Pass {
  id: string;
  size: number;
  interpolation: Interpolation;
  preprocess: PreprocessName;
  /**
   * full: the cut's whole output too (a flatten head); always: average and max over H, W; grids:
   * also coarse average/max grids of the map (GRIDS), and the validation set's mirror image too (TTA).
   */
  keep: 'full' | 'pooled' | 'grids';
}
const PASSES: Pass[] = [
  { id: '150-nearest-rescale', size: 150, interpolation: 'nearest', preprocess: 'rescale', keep: 'full' },
  { id: '150-bilinear-inception', size: 150, interpolation: 'bilinear', preprocess: 'inception', keep: 'full' },
  { id: '224-bilinear-inception', size: 224, interpolation: 'bilinear', preprocess: 'inception', keep: 'pooled' },
  { id: '299-bilinear-inception', size: 299, interpolation: 'bilinear', preprocess: 'inception', keep: 'grids' },
  { id: '299-nearest-inception', size: 299, interpolation: 'nearest', preprocess: 'inception', keep: 'pooled' },
];

/**
 * Coarse grids of the cut's map, as Keras's AveragePooling2D / MaxPooling2D (padding 'valid') with
 * these pool sizes and strides make them: on mixed7's 17x17 at 299, 'a3' is 3x3 (windows 0-6, 5-11,
 * 10-16: every position seen), 'a4' 4x4 (0-4, 4-8, 8-12, 12-16), 'a2' 2x2 (0-8, 8-16).
 */
const GRIDS = {
  a2: { op: 'avg', pool: 9, stride: 8 },
  a3: { op: 'avg', pool: 7, stride: 5 },
  a4: { op: 'avg', pool: 5, stride: 4 },
  m3: { op: 'max', pool: 7, stride: 5 },
} as const;
type GridId = keyof typeof GRIDS;
const gridSide = (g: GridId, side: number) => Math.floor((side - GRIDS[g].pool) / GRIDS[g].stride) + 1;

/**
 * What the head is fed: the full features, their average over H, W, average and max side by side,
 * a coarse grid (GRIDS), or the average over H, W followed by the 3x3 average grid ('avg+a3').
 */
type HeadInput = 'full' | 'avg' | 'avgmax' | GridId | 'avg+a3';

interface Candidate {
  id: string;
  pass: string;
  /** As --head takes it (the output layer is fitted to the classes). */
  head: string;
  input: HeadInput;
  optimizer: OptimizerConfig;
  batchSize: number;
  epochs?: number;
  /** A learning-rate schedule (fit's lrSchedule). */
  lrSchedule?: LrScheduleConfig;
  what: string;
}
const RMSPROP_1E4: OptimizerConfig = { kind: 'rmsprop', learningRate: 1e-4 };
const ADAM_1E3: OptimizerConfig = { kind: 'adam', learningRate: 1e-3 };
const GAP_1024 = 'gap,dense:1024:relu,dropout:0.2';
const FLAT_256 = 'flatten,dense:256:relu,dropout:0.2';
const CANDIDATES: Candidate[] = [
  { id: 'A', pass: '150-nearest-rescale', head: 'flatten,dense:1024:relu,dropout:0.2', input: 'full', optimizer: RMSPROP_1E4, batchSize: 20, what: "the lab's recipe, cached" },
  { id: 'B', pass: '299-bilinear-inception', head: GAP_1024, input: 'avg', optimizer: RMSPROP_1E4, batchSize: 20, what: '299, inception, GAP head' },
  { id: 'B-adam', pass: '299-bilinear-inception', head: GAP_1024, input: 'avg', optimizer: ADAM_1E3, batchSize: 20, what: 'B with Adam 1e-3' },
  { id: 'B-nearest', pass: '299-nearest-inception', head: GAP_1024, input: 'avg', optimizer: RMSPROP_1E4, batchSize: 20, what: 'B resized as Keras load_img (nearest), as the browser snippet does' },
  { id: 'C', pass: '224-bilinear-inception', head: GAP_1024, input: 'avg', optimizer: RMSPROP_1E4, batchSize: 20, what: 'B at 224' },
  { id: 'B150', pass: '150-bilinear-inception', head: GAP_1024, input: 'avg', optimizer: RMSPROP_1E4, batchSize: 20, what: 'B at 150' },
  { id: 'D-flat256', pass: '150-bilinear-inception', head: 'flatten,dense:256:relu,dropout:0.2', input: 'full', optimizer: RMSPROP_1E4, batchSize: 20, what: '150, inception, Flatten-256 head' },
  { id: 'D-concat', pass: '299-bilinear-inception', head: GAP_1024, input: 'avgmax', optimizer: RMSPROP_1E4, batchSize: 20, what: '299, inception, avg+max pooling head' },
  { id: 'B-cosine', pass: '299-bilinear-inception', head: GAP_1024, input: 'avg', optimizer: ADAM_1E3, batchSize: 20, lrSchedule: { kind: 'cosine' }, what: 'B-adam, cosine decay to 0 over the epochs' },
  // Keras's ReduceLROnPlateau defaults (factor 0.1, patience 10) never act in 10 epochs: a fifth after 2 epochs without a lower val_loss.
  { id: 'B-plateau', pass: '299-bilinear-inception', head: GAP_1024, input: 'avg', optimizer: ADAM_1E3, batchSize: 20, lrSchedule: { kind: 'plateau', factor: 0.2, patience: 2, minLr: 1e-5 }, what: 'B-adam, ReduceLROnPlateau(val_loss, factor 0.2, patience 2, min_lr 1e-5)' },
  { id: 'P3-256', pass: '299-bilinear-inception', head: FLAT_256, input: 'a3', optimizer: ADAM_1E3, batchSize: 20, what: 'AveragePooling2D(7, 5) to 3x3, flatten, dense 256' },
  { id: 'P3-256-cosine', pass: '299-bilinear-inception', head: FLAT_256, input: 'a3', optimizer: ADAM_1E3, batchSize: 20, lrSchedule: { kind: 'cosine' }, what: 'P3-256 with cosine decay to 0 over the epochs' },
  { id: 'P3-512', pass: '299-bilinear-inception', head: 'flatten,dense:512:relu,dropout:0.2', input: 'a3', optimizer: ADAM_1E3, batchSize: 20, what: 'AveragePooling2D(7, 5) to 3x3, flatten, dense 512' },
  { id: 'M3-256', pass: '299-bilinear-inception', head: FLAT_256, input: 'm3', optimizer: ADAM_1E3, batchSize: 20, what: 'MaxPooling2D(7, 5) to 3x3, flatten, dense 256' },
  { id: 'P4-256', pass: '299-bilinear-inception', head: FLAT_256, input: 'a4', optimizer: ADAM_1E3, batchSize: 20, what: 'AveragePooling2D(5, 4) to 4x4, flatten, dense 256' },
  { id: 'P2-256', pass: '299-bilinear-inception', head: FLAT_256, input: 'a2', optimizer: ADAM_1E3, batchSize: 20, what: 'AveragePooling2D(9, 8) to 2x2, flatten, dense 256' },
  { id: 'GP3-256', pass: '299-bilinear-inception', head: FLAT_256, input: 'avg+a3', optimizer: ADAM_1E3, batchSize: 20, what: 'GAP and the 3x3 average grid concatenated, dense 256' },
  { id: 'D-concat224', pass: '224-bilinear-inception', head: GAP_1024, input: 'avgmax', optimizer: RMSPROP_1E4, batchSize: 20, what: '224, inception, avg+max pooling head' },
];

interface Result {
  dataset: string;
  candidate: string;
  seed: number;
  epochs: number;
  valAccuracy: number[];
  valLoss: number[];
  /** Validation accuracy with test-time augmentation (the mean of the image's and its mirror's probabilities), per epoch. */
  valAccuracyTta?: number[];
  /** The rate each epoch trained with (schedules only). */
  learningRate?: number[];
  /** Seconds to train the head (all epochs, validation included). */
  trainSeconds: number;
  /** Seconds to decode and compute the pass's features (train + validation). */
  featureSeconds: number;
  /** Weights of the head (its Dense layers). */
  headParams: number;
  backboneParams: number;
  trainCount: number;
  valCount: number;
}

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : undefined;
}
const resultsFile = resolve(arg('results') ?? '/tmp/graft-recipes.json');
const dataRoot = resolve(arg('data-root') ?? join(sharedRoot(), 'datasets'));
const seeds = Number(arg('seeds') ?? 3);
/** Fewer seeds for some candidates, e.g. `--seeds-of A=2` (the lab's 38.5M-weight head takes minutes a seed). */
const seedsOf = new Map((arg('seeds-of') ?? '').split(',').filter(Boolean).map((kv) => [kv.split('=')[0]!, Number(kv.split('=')[1])] as const));
const seedsFor = (candidate: string) => seedsOf.get(candidate) ?? seeds;
const epochs = Number(arg('epochs') ?? 10);
const datasetIds = (arg('datasets') ?? Object.keys(DATASETS).join(',')).split(',');
const candidateIds = (arg('candidates') ?? CANDIDATES.map((c) => c.id).join(',')).split(',');
for (const d of datasetIds) if (!DATASETS[d]) throw new Error(`unknown dataset ${d}: one of ${Object.keys(DATASETS).join(', ')}`);
for (const c of candidateIds) if (!CANDIDATES.some((k) => k.id === c)) throw new Error(`unknown candidate ${c}: one of ${CANDIDATES.map((k) => k.id).join(', ')}`);

async function loadResults(): Promise<Result[]> {
  if (!existsSync(resultsFile)) return [];
  return JSON.parse(await readFile(resultsFile, 'utf8')) as Result[];
}

const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;

/** A split's features by name: 'full' (the whole map, flatten passes), 'avg', 'max' and the GRIDS. */
type Feats = Map<string, Float32Array>;

/** Features of a store, kept whole or pooled: average and max over H, W, and (grids) the GRIDS. */
async function passFeatures(ctx: FeedContext, shape: number[], keep: Pass['keep']): Promise<Feats> {
  const count = ctx.store.count;
  const d = shape.reduce((a, b) => a * b, 1);
  const [h, w, channels] = shape as [number, number, number];
  const cells = h * w;
  const out: Feats = new Map();
  if (keep === 'full') out.set('full', new Float32Array(count * d));
  out.set('avg', new Float32Array(count * channels));
  out.set('max', new Float32Array(count * channels));
  const grids = keep === 'grids' ? (Object.keys(GRIDS) as GridId[]) : [];
  for (const g of grids) out.set(g, new Float32Array(count * gridSide(g, h) * gridSide(g, w) * channels));
  await computeFeatures(ctx, {
    into: (first, f, n) => {
      out.get('full')?.set(f.subarray(0, n * d), first * d);
      for (let i = 0; i < n; i++) {
        const k = first + i;
        const avg = out.get('avg')!.subarray(k * channels, (k + 1) * channels);
        const max = out.get('max')!.subarray(k * channels, (k + 1) * channels);
        max.fill(-Infinity);
        const img = f.subarray(i * d, (i + 1) * d);
        for (let p = 0; p < cells; p++) {
          const o = p * channels;
          for (let c = 0; c < channels; c++) {
            const v = img[o + c]!;
            avg[c] += v;
            if (v > max[c]!) max[c] = v;
          }
        }
        for (let c = 0; c < channels; c++) avg[c] /= cells;
        for (const g of grids) {
          const { op, pool, stride } = GRIDS[g];
          const gh = gridSide(g, h), gw = gridSide(g, w);
          const all = out.get(g)!;
          for (let gy = 0; gy < gh; gy++) {
            for (let gx = 0; gx < gw; gx++) {
              const cell = all.subarray(((k * gh + gy) * gw + gx) * channels, ((k * gh + gy) * gw + gx + 1) * channels);
              cell.fill(op === 'max' ? -Infinity : 0);
              for (let y = gy * stride; y < gy * stride + pool; y++) {
                for (let x = gx * stride; x < gx * stride + pool; x++) {
                  const o = (y * w + x) * channels;
                  if (op === 'max') for (let c = 0; c < channels; c++) cell[c] = Math.max(cell[c]!, img[o + c]!);
                  else for (let c = 0; c < channels; c++) cell[c] += img[o + c]!;
                }
              }
              if (op === 'avg') for (let c = 0; c < channels; c++) cell[c] /= pool * pool;
            }
          }
        }
      }
    },
  });
  return out;
}

/** Mirrors an in-memory store's images left to right, in place (the TTA pass's images). */
function mirrorStore(store: ImageStore): void {
  if (!store.pixels) throw new Error('the validation store is not in memory: cannot mirror it');
  const [h, w] = store.size;
  for (let i = 0; i < store.count; i++) {
    const img = store.get(i);
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < w >> 1; x++) {
        const a = (y * w + x) * 3, b = (y * w + (w - 1 - x)) * 3;
        for (let c = 0; c < 3; c++) {
          const t = img[a + c]!;
          img[a + c] = img[b + c]!;
          img[b + c] = t;
        }
      }
    }
  }
}

/** Per-row concatenation of [count, da] and [count, db]. */
function concatRows(a: Float32Array, b: Float32Array, count: number): Float32Array {
  const da = a.length / count, db = b.length / count;
  const out = new Float32Array(count * (da + db));
  for (let i = 0; i < count; i++) {
    out.set(a.subarray(i * da, (i + 1) * da), i * (da + db));
    out.set(b.subarray(i * db, (i + 1) * db), i * (da + db) + da);
  }
  return out;
}

/** The head's input for a candidate, and the feature shape the head is told. */
function headData(feats: Feats, input: HeadInput, shape: number[], labels: Float32Array, count: number): { data: ArrayData; featureShape: number[] } {
  const channels = shape[shape.length - 1]!;
  if (input === 'full') return { data: { features: feats.get('full')!, labels, count }, featureShape: shape };
  if (input === 'avg') return { data: { features: feats.get('avg')!, labels, count }, featureShape: [1, 1, channels] };
  if (input === 'avgmax') return { data: { features: concatRows(feats.get('avg')!, feats.get('max')!, count), labels, count }, featureShape: [1, 1, 2 * channels] };
  if (input === 'avg+a3') {
    const a3 = feats.get('a3')!;
    return { data: { features: concatRows(feats.get('avg')!, a3, count), labels, count }, featureShape: [1, 1, channels + a3.length / count] };
  }
  const g = feats.get(input)!;
  const side = Math.round(Math.sqrt(g.length / count / channels));
  return { data: { features: g, labels, count }, featureShape: [side, side, channels] };
}

/** Pooled features saved under /tmp (--feature-cache), so a stopped run does not compute them again. */
const featureCache = resolve(arg('feature-cache') ?? '/tmp/h15d-feats');
async function savedFeats(key: string): Promise<Feats | null> {
  const index = join(featureCache, `${key}.json`);
  if (!existsSync(index)) return null;
  const names = JSON.parse(await readFile(index, 'utf8')) as string[];
  const out: Feats = new Map();
  for (const n of names) {
    const buf = await readFile(join(featureCache, `${key}.${n}.f32`));
    out.set(n, new Float32Array(buf.buffer, buf.byteOffset, buf.byteLength / 4));
  }
  return out;
}
async function saveFeats(key: string, feats: Feats): Promise<void> {
  await mkdir(featureCache, { recursive: true });
  for (const [n, f] of feats) if (n !== 'full') await writeFileAtomic(join(featureCache, `${key}.${n}.f32`), Buffer.from(f.buffer, f.byteOffset, f.byteLength));
  await writeFileAtomic(join(featureCache, `${key}.json`), JSON.stringify([...feats.keys()].filter((n) => n !== 'full')));
}

/** Accuracy of the mean of two sets of probabilities (the image's and its mirror's). */
function ttaAccuracy(trainer: HeadTrainer, a: Float32Array, b: Float32Array, labels: Float32Array, n: number): number {
  const avg = new Float32Array(a.length);
  for (let i = 0; i < a.length; i++) avg[i] = (a[i]! + b[i]!) / 2;
  return trainer.score(avg, labels, n).accuracy;
}

/** One dataset's features of one pass: train, validation and (grids passes) the validation set mirrored. */
interface SetFeats {
  train: Feats;
  val: Feats;
  valMirror?: Feats;
  shape: number[];
  classes: number;
  classMode: ClassMode;
  featureSeconds: number;
  backboneParams: number;
}

/** Computes (or loads from the feature cache) one pass's features of each dataset that needs them. */
async function passSets(pass: Pass, datasets: string[], threads: number): Promise<Map<string, SetFeats>> {
  const out = new Map<string, SetFeats>();
  let backbone: Awaited<ReturnType<typeof loadBackbone>> | null = null;
  let pool: AugmentPool | null = null;
  try {
    for (const datasetId of datasets) {
      const key = `${datasetId}-${pass.id}`;
      const meta = join(featureCache, `${key}.meta.json`);
      if (pass.keep !== 'full' && existsSync(meta)) {
        const m = JSON.parse(await readFile(meta, 'utf8')) as Omit<SetFeats, 'train' | 'val' | 'valMirror'>;
        const valMirror = await savedFeats(`${key}-valmirror`);
        out.set(datasetId, { ...m, train: (await savedFeats(`${key}-train`))!, val: (await savedFeats(`${key}-val`))!, ...(valMirror && { valMirror }) });
        console.error(`# ${datasetId} ${pass.id}: features from ${featureCache}`);
        continue;
      }
      const def = DATASETS[datasetId]!;
      const train = await listImageFolder(join(dataRoot, def.train));
      const validation = await listValidationFolder(join(dataRoot, def.val), train.classes);
      const classMode: ClassMode = train.classes.length === 2 ? 'binary' : 'categorical';
      console.error(`# ${datasetId} ${pass.id}: features`);
      const t0 = performance.now();
      backbone ??= await loadBackbone({ inputSize: [pass.size, pass.size], threads });
      pool ??= AugmentPool.create({ threads: Math.min(2, threads) });
      const storeOpts = { width: pass.size, height: pass.size, interpolation: pass.interpolation };
      const stores: ImageStore[] = [await buildImageStore(train, storeOpts), await buildImageStore(validation, storeOpts)];
      const ctx = (store: ImageStore): FeedContext => ({ store, extractor: backbone!.extractor, pool: pool!, augmentation: NO_AUGMENTATION, pre: preprocessParams(pass.preprocess), classMode, seed: 0 });
      const shape = backbone.outputShape;
      const trainFeats = await passFeatures(ctx(stores[0]!), shape, pass.keep);
      trainFeats.set('labels', storeLabels(stores[0]!, classMode));
      const valFeats = await passFeatures(ctx(stores[1]!), shape, pass.keep);
      valFeats.set('labels', storeLabels(stores[1]!, classMode));
      let valMirror: Feats | undefined;
      if (pass.keep === 'grids') {
        mirrorStore(stores[1]!);
        valMirror = await passFeatures(ctx(stores[1]!), shape, pass.keep);
      }
      const featureSeconds = (performance.now() - t0) / 1000;
      const backboneParams = [...backbone.weights.values()].reduce((a, w) => a + w.data.length, 0);
      console.error(`#   ${featureSeconds.toFixed(1)} s (${stores[0]!.count} + ${stores[1]!.count}${valMirror ? ` + ${stores[1]!.count} mirrored` : ''} images, features ${shape.join('x')})`);
      const set: SetFeats = { train: trainFeats, val: valFeats, valMirror, shape, classes: train.classes.length, classMode, featureSeconds, backboneParams };
      out.set(datasetId, set);
      if (pass.keep !== 'full') {
        await saveFeats(`${key}-train`, trainFeats);
        await saveFeats(`${key}-val`, valFeats);
        if (valMirror) await saveFeats(`${key}-valmirror`, valMirror);
        const { train: _t, val: _v, valMirror: _m, ...m } = set;
        await writeFileAtomic(meta, JSON.stringify(m));
      }
    }
  } finally {
    await backbone?.dispose();
    await pool?.close();
  }
  return out;
}

async function measure(): Promise<void> {
  const results = await loadResults();
  const done = (dataset: string, candidate: string, seed: number) => results.some((r) => r.dataset === dataset && r.candidate === candidate && r.seed === seed && r.epochs === epochs);
  // On a machine other jobs keep busy, one thread each measured steadier than a pool waiting on its slowest.
  const threads = Number(arg('threads') ?? availableParallelism());
  for (const pass of PASSES) {
    const candidates = CANDIDATES.filter((c) => c.pass === pass.id && candidateIds.includes(c.id));
    const todoSets = datasetIds.filter((d) => candidates.some((c) => Array.from({ length: seedsFor(c.id) }, (_, s) => s).some((s) => !done(d, c.id, s))));
    if (todoSets.length === 0) continue;
    const sets = await passSets(pass, todoSets, threads);
    // Seed by seed, so every candidate has a first figure on every set before the spreads come in.
    const maxSeeds = Math.max(...candidates.map((c) => seedsFor(c.id)));
    for (let seed = 0; seed < maxSeeds; seed++) {
      for (const datasetId of todoSets) {
        const set = sets.get(datasetId)!;
        const trainLabels = set.train.get('labels')!, valLabels = set.val.get('labels')!;
        const width = set.classMode === 'binary' ? 1 : set.classes;
        const trainCount = trainLabels.length / width, valCount = valLabels.length / width;
        for (const cand of candidates) {
          if (seed >= seedsFor(cand.id) || done(datasetId, cand.id, seed)) continue;
          const tr = headData(set.train, cand.input, set.shape, trainLabels, trainCount);
          const va = headData(set.val, cand.input, set.shape, valLabels, valCount);
          const vm = set.valMirror && headData(set.valMirror, cand.input, set.shape, valLabels, valCount);
          const head = headForClasses(set.classes, parseHeadSpec(cand.head));
          const headParams = denseShapes(head, tr.featureShape).reduce((a, { inputSize, units }) => a + inputSize * units + units, 0);
          const t1 = performance.now();
          const trainer = await HeadTrainer.create(head, initHead(head, tr.featureShape, seed), cand.optimizer, { seed, featureShape: tr.featureShape, maxBatch: HeadTrainer.DEFAULT_MAX_BATCH, threads });
          try {
            const valAccuracyTta: number[] = [];
            const history = await fit(trainer, arrayBatchSource(tr.data, cand.batchSize, { shuffle: true, seed }), va.data, {
              epochs: cand.epochs ?? epochs,
              verbose: 2,
              ...(cand.lrSchedule && { lrSchedule: cand.lrSchedule }),
              log: (line) => console.error(`#     ${datasetId} ${cand.id} seed ${seed}: ${line}`),
              callbacks: vm
                ? {
                    onEpochEnd: async () => {
                      const plain = await trainer.predict(va.data.features, valCount);
                      const mirrored = await trainer.predict(vm.data.features, valCount);
                      valAccuracyTta.push(ttaAccuracy(trainer, plain, mirrored, valLabels, valCount));
                    },
                  }
                : undefined,
            });
            const trainSeconds = (performance.now() - t1) / 1000;
            const r: Result = {
              dataset: datasetId,
              candidate: cand.id,
              seed,
              epochs,
              valAccuracy: history.val_accuracy,
              valLoss: history.val_loss,
              ...(vm && { valAccuracyTta }),
              ...(history.learning_rate && { learningRate: history.learning_rate }),
              trainSeconds,
              featureSeconds: set.featureSeconds,
              headParams,
              backboneParams: set.backboneParams,
              trainCount,
              valCount,
            };
            results.push(r);
            await writeFileAtomic(resultsFile, JSON.stringify(results, null, 1));
            console.error(`#   ${datasetId} ${cand.id} seed ${seed}: last-5 val_accuracy ${mean(history.val_accuracy.slice(-5)).toFixed(4)}${vm ? ` (TTA ${mean(valAccuracyTta.slice(-5)).toFixed(4)})` : ''} (${trainSeconds.toFixed(1)} s)`);
          } finally {
            await trainer.dispose();
          }
        }
      }
    }
  }
}

/** Sample standard deviation (0 for one value). */
function sd(xs: number[]): number {
  if (xs.length < 2) return 0;
  const m = mean(xs);
  return Math.sqrt(xs.reduce((a, x) => a + (x - m) ** 2, 0) / (xs.length - 1));
}

/**
 * Three markdown tables: the candidates' settings and model size; per dataset the mean over seeds
 * of each run's mean val_accuracy over its last 5 epochs, ± the standard deviation over seeds
 * (n seeds); and the wall time (decoding + features once, then training the head).
 */
function printTable(results: Result[]): void {
  const cands = CANDIDATES.filter((c) => results.some((r) => r.candidate === c.id));
  const sets = Object.keys(DATASETS).filter((d) => results.some((r) => r.dataset === d));
  const runs = (c: string, d: string) => results.filter((r) => r.candidate === c && r.dataset === d);
  console.log('| candidate | input | interpolation | preprocessing | head | optimiser | epochs | feed | head weights (2 classes) | exported model |');
  console.log('|---|---|---|---|---|---|---|---|---|---|');
  for (const c of cands) {
    const pass = PASSES.find((p) => p.id === c.pass)!;
    const grid = (g: GridId) => `${GRIDS[g].op === 'max' ? 'maxpool' : 'avgpool'}(${GRIDS[g].pool}, stride ${GRIDS[g].stride})`;
    const head = c.input === 'avgmax' ? c.head.replace('gap', 'concatpool (avg+max)')
      : c.input === 'avg+a3' ? c.head.replace('flatten', `concat(gap, ${grid('a3')}+flatten)`)
      : c.input in GRIDS ? `${grid(c.input as GridId)},${c.head}` : c.head;
    // Weights of the whole classifier for two classes (the export's size in float32).
    const side = pass.size === 299 ? 17 : pass.size === 224 ? 12 : 7;
    const featureShape = c.input === 'full' ? [side, side, 768]
      : c.input === 'avg' ? [1, 1, 768]
      : c.input === 'avgmax' ? [1, 1, 1536]
      : c.input === 'avg+a3' ? [1, 1, 768 * (1 + gridSide('a3', side) ** 2)]
      : [gridSide(c.input, side), gridSide(c.input, side), 768];
    const params2 = denseShapes(headForClasses(2, parseHeadSpec(c.head)), featureShape).reduce((a, { inputSize, units }) => a + inputSize * units + units, 0);
    const backboneParams = results.find((x) => x.candidate === c.id)!.backboneParams;
    const size = `${(((backboneParams + params2) * 4) / 1e6).toFixed(0)} MB`;
    const schedule = c.lrSchedule ? `, ${c.lrSchedule.kind}${c.lrSchedule.kind === 'plateau' ? ` (factor ${c.lrSchedule.factor}, patience ${c.lrSchedule.patience})` : ''}` : '';
    console.log(`| ${c.id} | ${pass.size}x${pass.size} | ${pass.interpolation} | ${pass.preprocess} | ${head} | ${c.optimizer.kind} ${c.optimizer.learningRate}${schedule} | ${c.epochs ?? epochs} | cached, batch ${c.batchSize} | ${(params2 / 1e6).toFixed(2)}M | ${size} |`);
  }
  console.log('');
  console.log(`| candidate | ${sets.join(' | ')} | mean over sets |`);
  console.log(`|---|${sets.map(() => '---|').join('')}---|`);
  for (const c of cands) {
    const means: number[] = [];
    const cells = sets.map((d) => {
      const rs = runs(c.id, d);
      if (rs.length === 0) return '';
      const last5 = rs.map((r) => mean(r.valAccuracy.slice(-5)));
      means.push(mean(last5));
      return `${mean(last5).toFixed(4)} ±${sd(last5).toFixed(4)} (${rs.length})`;
    });
    console.log(`| ${c.id} | ${cells.join(' | ')} | ${means.length === sets.length ? mean(means).toFixed(4) : ''} |`);
  }
  const tta = cands.filter((c) => results.some((r) => r.candidate === c.id && r.valAccuracyTta));
  if (tta.length > 0) {
    console.log('');
    console.log('With test-time augmentation (mean of the image\'s and its mirror\'s probabilities), same runs:');
    console.log('');
    console.log(`| candidate + TTA | ${sets.join(' | ')} | mean over sets |`);
    console.log(`|---|${sets.map(() => '---|').join('')}---|`);
    for (const c of tta) {
      const means: number[] = [];
      const cells = sets.map((d) => {
        const rs = runs(c.id, d).filter((r) => r.valAccuracyTta);
        if (rs.length === 0) return '';
        const last5 = rs.map((r) => mean(r.valAccuracyTta!.slice(-5)));
        means.push(mean(last5));
        return `${mean(last5).toFixed(4)} ±${sd(last5).toFixed(4)} (${rs.length})`;
      });
      console.log(`| ${c.id} | ${cells.join(' | ')} | ${means.length === sets.length ? mean(means).toFixed(4) : ''} |`);
    }
  }
  console.log('');
  console.log(`| candidate | ${sets.map((d) => `${d} features + head`).join(' | ')} |`);
  console.log(`|---|${sets.map(() => '---|').join('')}`);
  for (const c of cands) {
    const cells = sets.map((d) => {
      const rs = runs(c.id, d);
      return rs.length === 0 ? '' : `${rs[0]!.featureSeconds.toFixed(0)} + ${mean(rs.map((r) => r.trainSeconds)).toFixed(0)} s`;
    });
    console.log(`| ${c.id} | ${cells.join(' | ')} |`);
  }
}

if (!process.argv.includes('--table')) await measure();
printTable(await loadResults());
