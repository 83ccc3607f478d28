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
 * 1536 floats) is measured the same way, as a `gap` head on [1, 1, 1536].
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
 *   --table            only print the table from the results file
 */
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
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
  /** full: the cut's whole output too (a flatten head); always: average and max over H, W. */
  keep: 'full' | 'pooled';
}
const PASSES: Pass[] = [
  { id: '150-nearest-rescale', size: 150, interpolation: 'nearest', preprocess: 'rescale', keep: 'full' },
  { id: '150-bilinear-inception', size: 150, interpolation: 'bilinear', preprocess: 'inception', keep: 'full' },
  { id: '224-bilinear-inception', size: 224, interpolation: 'bilinear', preprocess: 'inception', keep: 'pooled' },
  { id: '299-bilinear-inception', size: 299, interpolation: 'bilinear', preprocess: 'inception', keep: 'pooled' },
  { id: '299-nearest-inception', size: 299, interpolation: 'nearest', preprocess: 'inception', keep: 'pooled' },
];

/** What the head is fed: the full features, their average over H, W, or average and max side by side. */
type HeadInput = 'full' | 'avg' | 'avgmax';

interface Candidate {
  id: string;
  pass: string;
  /** As --head takes it (the output layer is fitted to the classes). */
  head: string;
  input: HeadInput;
  optimizer: OptimizerConfig;
  batchSize: number;
  epochs?: number;
  what: string;
}
const RMSPROP_1E4: OptimizerConfig = { kind: 'rmsprop', learningRate: 1e-4 };
const ADAM_1E3: OptimizerConfig = { kind: 'adam', learningRate: 1e-3 };
const GAP_1024 = 'gap,dense:1024:relu,dropout:0.2';
const CANDIDATES: Candidate[] = [
  { id: 'A', pass: '150-nearest-rescale', head: 'flatten,dense:1024:relu,dropout:0.2', input: 'full', optimizer: RMSPROP_1E4, batchSize: 20, what: "the lab's recipe, cached" },
  { id: 'B', pass: '299-bilinear-inception', head: GAP_1024, input: 'avg', optimizer: RMSPROP_1E4, batchSize: 20, what: '299, inception, GAP head' },
  { id: 'B-adam', pass: '299-bilinear-inception', head: GAP_1024, input: 'avg', optimizer: ADAM_1E3, batchSize: 20, what: 'B with Adam 1e-3' },
  { id: 'B-nearest', pass: '299-nearest-inception', head: GAP_1024, input: 'avg', optimizer: RMSPROP_1E4, batchSize: 20, what: 'B resized as Keras load_img (nearest), as the browser snippet does' },
  { id: 'C', pass: '224-bilinear-inception', head: GAP_1024, input: 'avg', optimizer: RMSPROP_1E4, batchSize: 20, what: 'B at 224' },
  { id: 'B150', pass: '150-bilinear-inception', head: GAP_1024, input: 'avg', optimizer: RMSPROP_1E4, batchSize: 20, what: 'B at 150' },
  { id: 'D-flat256', pass: '150-bilinear-inception', head: 'flatten,dense:256:relu,dropout:0.2', input: 'full', optimizer: RMSPROP_1E4, batchSize: 20, what: '150, inception, Flatten-256 head' },
  { id: 'D-concat', pass: '299-bilinear-inception', head: GAP_1024, input: 'avgmax', optimizer: RMSPROP_1E4, batchSize: 20, what: '299, inception, avg+max pooling head' },
  { id: 'D-concat224', pass: '224-bilinear-inception', head: GAP_1024, input: 'avgmax', optimizer: RMSPROP_1E4, batchSize: 20, what: '224, inception, avg+max pooling head' },
];

interface Result {
  dataset: string;
  candidate: string;
  seed: number;
  epochs: number;
  valAccuracy: number[];
  valLoss: number[];
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

/** Features of a store, kept whole or pooled over H and W (average, then max, per channel). */
async function passFeatures(ctx: FeedContext, shape: number[], keep: Pass['keep']): Promise<{ full?: Float32Array; pooled?: Float32Array }> {
  const count = ctx.store.count;
  const d = shape.reduce((a, b) => a * b, 1);
  const channels = shape[shape.length - 1]!;
  const cells = d / channels;
  const full = keep === 'full' ? new Float32Array(count * d) : undefined;
  const pooled = new Float32Array(count * 2 * channels);
  await computeFeatures(ctx, {
    into: (first, f, n) => {
      full?.set(f.subarray(0, n * d), first * d);
      for (let i = 0; i < n; i++) {
        const avg = pooled.subarray((first + i) * 2 * channels, (first + i) * 2 * channels + channels);
        const max = pooled.subarray((first + i) * 2 * channels + channels, (first + i + 1) * 2 * channels);
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
      }
    },
  });
  return { full, pooled };
}

/** The head's input for a candidate, and the feature shape the head is told. */
function headData(feats: { full?: Float32Array; pooled?: Float32Array }, input: HeadInput, shape: number[], labels: Float32Array, count: number): { data: ArrayData; featureShape: number[] } {
  const channels = shape[shape.length - 1]!;
  if (input === 'full') return { data: { features: feats.full!, labels, count }, featureShape: shape };
  if (input === 'avgmax') return { data: { features: feats.pooled!, labels, count }, featureShape: [1, 1, 2 * channels] };
  const avg = new Float32Array(count * channels);
  for (let i = 0; i < count; i++) avg.set(feats.pooled!.subarray(i * 2 * channels, i * 2 * channels + channels), i * channels);
  return { data: { features: avg, labels, count }, featureShape: [1, 1, channels] };
}

async function measure(): Promise<void> {
  const results = await loadResults();
  const done = (dataset: string, candidate: string, seed: number) => results.some((r) => r.dataset === dataset && r.candidate === candidate && r.seed === seed && r.epochs === epochs);
  // On a machine other jobs keep busy, one thread each measured steadier than a pool waiting on its slowest.
  const threads = Number(arg('threads') ?? availableParallelism());
  for (const datasetId of datasetIds) {
    const def = DATASETS[datasetId]!;
    const train = await listImageFolder(join(dataRoot, def.train));
    const validation = await listValidationFolder(join(dataRoot, def.val), train.classes);
    const classMode: ClassMode = train.classes.length === 2 ? 'binary' : 'categorical';
    for (const pass of PASSES) {
      const candidates = CANDIDATES.filter((c) => c.pass === pass.id && candidateIds.includes(c.id));
      const todo = candidates.filter((c) => Array.from({ length: seedsFor(c.id) }, (_, s) => s).some((s) => !done(datasetId, c.id, s)));
      if (todo.length === 0) continue;
      console.error(`# ${datasetId} ${pass.id}: features for ${todo.map((c) => c.id).join(', ')}`);
      const t0 = performance.now();
      const backbone = await loadBackbone({ inputSize: [pass.size, pass.size], threads });
      const backboneParams = [...backbone.weights.values()].reduce((a, w) => a + w.data.length, 0);
      const pool = AugmentPool.create({ threads: Math.min(2, threads) });
      const storeOpts = { width: pass.size, height: pass.size, interpolation: pass.interpolation };
      const stores: ImageStore[] = [await buildImageStore(train, storeOpts), await buildImageStore(validation, storeOpts)];
      const ctx = (store: ImageStore): FeedContext => ({ store, extractor: backbone.extractor, pool, augmentation: NO_AUGMENTATION, pre: preprocessParams(pass.preprocess), classMode, seed: 0 });
      const shape = backbone.outputShape;
      const [trainFeats, valFeats] = [await passFeatures(ctx(stores[0]!), shape, pass.keep), await passFeatures(ctx(stores[1]!), shape, pass.keep)];
      await backbone.dispose();
      await pool.close();
      const featureSeconds = (performance.now() - t0) / 1000;
      console.error(`#   ${featureSeconds.toFixed(1)} s (${stores[0]!.count} + ${stores[1]!.count} images, features ${shape.join('x')})`);
      const trainLabels = storeLabels(stores[0]!, classMode);
      const valLabels = storeLabels(stores[1]!, classMode);
      for (const cand of todo) {
        const tr = headData(trainFeats, cand.input, shape, trainLabels, stores[0]!.count);
        const va = headData(valFeats, cand.input, shape, valLabels, stores[1]!.count);
        const head = headForClasses(train.classes.length, parseHeadSpec(cand.head));
        const headParams = denseShapes(head, tr.featureShape).reduce((a, { inputSize, units }) => a + inputSize * units + units, 0);
        for (let seed = 0; seed < seedsFor(cand.id); seed++) {
          if (done(datasetId, cand.id, seed)) continue;
          const t1 = performance.now();
          const trainer = await HeadTrainer.create(head, initHead(head, tr.featureShape, seed), cand.optimizer, { seed, featureShape: tr.featureShape, maxBatch: HeadTrainer.DEFAULT_MAX_BATCH, threads });
          try {
            const history = await fit(trainer, arrayBatchSource(tr.data, cand.batchSize, { shuffle: true, seed }), va.data, {
              epochs: cand.epochs ?? epochs,
              verbose: 2,
              log: (line) => console.error(`#     ${cand.id} seed ${seed}: ${line}`),
            });
            const trainSeconds = (performance.now() - t1) / 1000;
            const r: Result = {
              dataset: datasetId,
              candidate: cand.id,
              seed,
              epochs,
              valAccuracy: history.val_accuracy,
              valLoss: history.val_loss,
              trainSeconds,
              featureSeconds,
              headParams,
              backboneParams,
              trainCount: stores[0]!.count,
              valCount: stores[1]!.count,
            };
            results.push(r);
            await writeFileAtomic(resultsFile, JSON.stringify(results, null, 1));
            console.error(`#   ${cand.id} seed ${seed}: last-5 val_accuracy ${mean(history.val_accuracy.slice(-5)).toFixed(4)} (${trainSeconds.toFixed(1)} s)`);
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
    const head = c.input === 'avgmax' ? c.head.replace('gap', 'concatpool (avg+max)') : c.head;
    // Weights of the whole classifier for two classes (the export's size in float32).
    const featureShape = c.input === 'full' ? [7, 7, 768] : [1, 1, c.input === 'avgmax' ? 1536 : 768];
    const params2 = denseShapes(headForClasses(2, parseHeadSpec(c.head)), featureShape).reduce((a, { inputSize, units }) => a + inputSize * units + units, 0);
    const backboneParams = results.find((x) => x.candidate === c.id)!.backboneParams;
    const size = `${(((backboneParams + params2) * 4) / 1e6).toFixed(0)} MB`;
    console.log(`| ${c.id} | ${pass.size}x${pass.size} | ${pass.interpolation} | ${pass.preprocess} | ${head} | ${c.optimizer.kind} ${c.optimizer.learningRate} | ${c.epochs ?? epochs} | cached, batch ${c.batchSize} | ${(params2 / 1e6).toFixed(2)}M | ${size} |`);
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
