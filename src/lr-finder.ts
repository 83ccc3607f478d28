/**
 * `graft lr-find`: the fastai-style learning-rate range test on the user's own training images,
 * with the head and optimiser a run would use, on backbone features computed once (no
 * augmentation: the test is about the rate, not the images). Writes lr-find.png (loss against
 * rate, the suggestion marked) and lr-find.json into `out`.
 */
import { join } from 'node:path';
import { availableParallelism } from 'node:os';
import { loadBackbone, type Backbone } from './backbone/backbone.js';
import { AugmentPool } from './data/augment-pool.js';
import { NO_AUGMENTATION } from './data/augment.js';
import { buildImageStore } from './data/image-store.js';
import { resolveDataset, type DatasetListing } from './data/listing.js';
import { resolveTableDataset } from './data/label-table.js';
import { preprocessParams } from './data/preprocess.js';
import { writeLrPlot } from './evaluate/lr-plot.js';
import { LAB_RECIPE, type TrainOptions } from './learner.js';
import { backbonePooling, headForClasses, initHead } from './model/head.js';
import { cachedFeatures } from './train/feature-sources.js';
import { arrayBatchSource } from './train/fit.js';
import { HeadTrainer } from './train/head-trainer.js';
import { lrRangeTest, type RangeTestOptions, type RangeTestResult } from './train/lr-range-test.js';
import { resolveClassWeights } from './train/class-weights.js';
import { writeFileAtomic } from './util/atomic.js';
import { GraftError } from './util/errors.js';
import { makeFolder } from './util/folders.js';

export type LrFindOptions = Omit<TrainOptions, 'epochs' | 'earlyStopping' | 'lrSchedule' | 'resume' | 'overwrite' | 'mode' | 'augmentation' | 'validationData' | 'validationLabels' | 'onEpochEnd' | 'showMemory'> & RangeTestOptions;

export interface LrFindResult extends RangeTestResult {
  plotFile: string;
  jsonFile: string;
}

/** The training images only (a validation split's held-out part left out, as training would). */
async function trainingListing(opts: LrFindOptions): Promise<DatasetListing> {
  if (opts.labels !== undefined) {
    return (await resolveTableDataset({ labels: opts.labels, data: opts.data, validationSplit: opts.validationSplit, splitOrder: opts.splitOrder, seed: opts.seed, fileColumn: opts.fileColumn, labelColumn: opts.labelColumn, onBadImage: opts.onBadImage })).train;
  }
  return (await resolveDataset(opts.data, { validationSplit: opts.validationSplit, splitOrder: opts.splitOrder, seed: opts.seed, followSymlinks: opts.followSymlinks })).train;
}

export async function findLearningRate(opts: LrFindOptions): Promise<LrFindResult> {
  const log = opts.verbose === 0 ? () => {} : (opts.log ?? ((l: string) => process.stdout.write(l + '\n')));
  const seed = opts.seed ?? 0, batchSize = opts.batchSize ?? LAB_RECIPE.batchSize;
  const inputSize = opts.inputSize ?? LAB_RECIPE.inputSize;
  const train = await trainingListing(opts);
  for (const w of train.warnings) log(`warning: ${w}`);
  const classes = train.classes;
  const head = headForClasses(classes.length, opts.head ?? LAB_RECIPE.head);
  HeadTrainer.checkSpec(head);
  await makeFolder(opts.out);
  let backbone: Backbone | undefined, pool: AugmentPool | undefined, trainer: HeadTrainer | undefined;
  try {
    backbone = await loadBackbone({ weights: opts.weights, cut: opts.cut ?? LAB_RECIPE.cut, inputSize, pool: backbonePooling(head) });
    const store = await buildImageStore(train, { width: inputSize[1], height: inputSize[0], interpolation: opts.interpolation ?? LAB_RECIPE.interpolation, orientation: opts.orientation ?? 'ignore', onBadImage: opts.onBadImage, onWarning: log });
    if (store.count === 0) throw new GraftError(`no readable training images in ${train.root}`, { file: train.root });
    log(`Found ${store.count} images belonging to ${classes.length} classes.`);
    pool = AugmentPool.create({ threads: Math.max(1, Math.min(2, availableParallelism())) });
    const classMode = classes.length === 2 ? 'binary' : 'categorical';
    const features = await cachedFeatures({ store, extractor: backbone.extractor, pool, augmentation: NO_AUGMENTATION, pre: preprocessParams(opts.preprocess ?? LAB_RECIPE.preprocess), classMode, seed });
    const counts = classes.map((_, c) => store.labels.filter((l) => l === c).length);
    trainer = await HeadTrainer.create(head, initHead(head, backbone.outputShape, seed), opts.optimizer ?? LAB_RECIPE.optimizer, {
      seed,
      featureShape: backbone.outputShape,
      pooledFeatures: backbone.pooling !== null,
      maxBatch: Math.max(HeadTrainer.DEFAULT_MAX_BATCH, Math.min(batchSize, store.count)),
      classWeights: opts.classWeight === undefined ? undefined : resolveClassWeights(opts.classWeight, classes, counts),
    });
    const result = await lrRangeTest(trainer, arrayBatchSource(features, batchSize, { shuffle: true, seed }), opts);
    const plotFile = join(opts.out, 'lr-find.png'), jsonFile = join(opts.out, 'lr-find.json');
    await writeLrPlot(plotFile, result.lrs, result.losses, result.suggestion);
    await writeFileAtomic(jsonFile, JSON.stringify({ suggestion: result.suggestion, method: 'valley', stopped: result.stopped, learning_rate: result.lrs, loss: result.losses.map((l) => (Number.isFinite(l) ? l : null)) }, null, 1) + '\n');
    log(`Tried ${result.lrs.length} rates from ${result.lrs[0]!.toExponential(1)} to ${result.lrs.at(-1)!.toExponential(1)}${result.stopped === 'diverged' ? ' (stopped: the loss exploded)' : ''}`);
    log(`Suggested learning rate: ${result.suggestion.toExponential(2)} (fastai's valley); plot in ${plotFile}`);
    return { ...result, plotFile, jsonFile };
  } finally {
    await trainer?.dispose();
    await pool?.close();
    await backbone?.dispose();
  }
}
