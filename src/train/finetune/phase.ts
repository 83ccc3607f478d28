/**
 * The second training phase (Keras's transfer-learning guide, fastai's fine_tune): after the head
 * has trained on frozen features, the backbone's layers after `from` up to the cut are unfrozen
 * and trained with the head at a low learning rate, BatchNormalization kept in inference mode.
 * The frozen part below `from` runs forward only: the same feeds as the head phase (cached,
 * views, faithful), taken at `from` instead of at the cut.
 */
import { join } from 'node:path';
import { availableParallelism } from 'node:os';
import type { Backbone } from '../../backbone/backbone.js';
import type { FeatureExtractor } from '../../backbone/engine.js';
import type { WeightMap } from '../../backbone/keras-graph.js';
import { AugmentPool } from '../../data/augment-pool.js';
import type { ImageStore } from '../../data/image-store.js';
import type { HeadSpec } from '../../model/head-spec.js';
import type { HeadParams } from '../../model/head.js';
import { GraftError } from '../../util/errors.js';
import { cachedRows, faithfulSource, viewsSource, type FeatureStorage, type FeedContext, type FeedMode } from '../feature-sources.js';
import { fit, limitSteps, rowsBatchSource, type BatchSource, type EpochLogs, type RowsData, type TrainEnd } from '../fit.js';
import { EXTRA_HISTORY_KEYS, type History } from '../history.js';
import type { EarlyStoppingConfig } from '../early-stopping.js';
import { markCheckpointFinished, type RunSetup } from '../checkpoint.js';
import type { OptimizerConfig } from '../optimizers.js';
import type { LrScheduleConfig } from '../lr-schedule.js';
import { trainableSegment, type Segment } from './segment.js';
import { SegmentEngine } from './segment-engine.js';
import { FineTuneTrainer } from './trainer.js';
import { belowExtractor, storageAtLayer } from './layer-features.js';

export interface FineTuneConfig {
  /** The layers after this one (e.g. 'mixed6') up to the cut become trainable. */
  from: string;
  /** Epochs of the second phase (default DEFAULT_FINE_TUNE_EPOCHS). */
  epochs?: number;
  /** Its learning rate (default 1e-5, as Keras's transfer-learning guide); the optimiser's kind and other settings are the first phase's. */
  learningRate?: number;
}

export const DEFAULT_FINE_TUNE_EPOCHS = 10;
export const DEFAULT_FINE_TUNE_LEARNING_RATE = 1e-5;

/** The fine-tuning settings with their defaults, as a run records them. */
export function resolveFineTune(cfg: FineTuneConfig): Required<FineTuneConfig> {
  const epochs = cfg.epochs ?? DEFAULT_FINE_TUNE_EPOCHS;
  const learningRate = cfg.learningRate ?? DEFAULT_FINE_TUNE_LEARNING_RATE;
  if (typeof cfg.from !== 'string' || cfg.from === '') throw new GraftError('fineTune.from must name a backbone layer (e.g. mixed6)');
  if (!Number.isSafeInteger(epochs) || epochs < 1) throw new GraftError(`fineTune.epochs must be a whole number from 1, got ${epochs}`);
  if (!(learningRate > 0) || !Number.isFinite(learningRate)) throw new GraftError(`fineTune.learningRate must be a positive number, got ${learningRate}`);
  return { from: cfg.from, epochs, learningRate };
}

/** Refuses a `from` that cannot be fine-tuned, before the head phase trains. */
export function checkFineTune(backbone: Backbone, config: Required<FineTuneConfig>): void {
  trainableSegment(backbone.graph, config.from, backbone.inputShape);
}

/**
 * A note before a cached fine-tuning phase whose head already fits its training features (last
 * head epoch's training accuracy at least 0.999): with no augmentation the loss left to learn from
 * is near zero, and that is where fine-tuning measured no gain (docs/fine-tuning.md).
 */
export function saturatedCachedNote(mode: FeedMode, headHistory: History): string | undefined {
  const last = headHistory.accuracy.at(-1);
  if (mode.kind !== 'cached' || last === undefined || last < 0.999) return undefined;
  return `Note: the head fits its training features (accuracy ${last.toFixed(4)}), so cached fine-tuning has little left to learn from; with few images, fine-tune with --mode faithful (augmented images every epoch; docs/fine-tuning.md)`;
}

/** The folder of the second phase's checkpoint, inside the run's. */
export function fineTuneCheckpointDir(checkpointDir: string): string {
  return join(checkpointDir, 'fine-tune');
}

export interface FineTunePhaseInput {
  config: Required<FineTuneConfig>;
  backbone: Backbone;
  head: HeadSpec;
  /** The head phase's final weights. */
  headParams: HeadParams;
  /** The head phase's optimiser: its kind and settings, with the fine-tuning rate. */
  optimizer: OptimizerConfig;
  mode: FeedMode;
  trainStore: ImageStore;
  valStore: ImageStore;
  /** Cached mode (required there): the features at `from` the head phase's were derived from (layerFeatures); the other modes compute their own. */
  atLayer?: { train: RowsData; val: RowsData };
  /**
   * The run's feature storage (at the cut): in faithful and views modes this phase's validation
   * features and views at `from` go through it too (their own files and fingerprint), so their
   * memory stays within the run's budget however many images there are.
   */
  storage: FeatureStorage;
  /** The feed context of the head phase, less its extractor and pool (this phase brings its own). */
  context: Omit<FeedContext, 'store' | 'extractor' | 'pool'>;
  batchSize: number;
  maxBatch: number;
  stepsPerEpoch?: number;
  valImagesUsed: number;
  /**
   * Epochs the head phase ran. The phase's epochs continue that count for their shuffles,
   * augmentations and dropout masks (Keras's guide: fit(..., initial_epoch=...)); starting again
   * at epoch 0 would replay the head phase's exact augmented images, which its head has learnt.
   */
  epochOffset: number;
  checkpointDir: string;
  resume?: boolean;
  setup: RunSetup;
  earlyStopping?: EarlyStoppingConfig;
  /** The head phase's schedule, run again over this phase's epochs from the fine-tuning rate. */
  lrSchedule?: LrScheduleConfig;
  /** The head phase's class weights (Keras's class_weight), for this phase's loss too. */
  classWeights?: readonly number[];
  /** Class names, when each epoch reports the classes' validation recalls (as the head phase does). */
  classRecall?: string[];
  verbose: 0 | 1 | 2;
  showMemory?: boolean;
  signal?: AbortSignal;
  log: (line: string) => void;
  say: (line: string) => void;
  /** Runs a long step with a progress bar (the learner's). */
  withProgress: <T>(label: string, during: string, run: (onProgress: (done: number, total: number) => void) => Promise<T>) => Promise<T>;
  onEpochEnd?: (epoch: number, logs: EpochLogs, history: History) => void | Promise<void>;
}

export interface FineTunePhaseResult {
  history: History;
  end: TrainEnd;
  trainer: FineTuneTrainer;
  /** Validation inputs at `from`, for the final evaluation. */
  valData: RowsData;
  segment: Segment;
  /** Frees the phase's engines (after the evaluation). */
  dispose(): Promise<void>;
}

/** Runs the second phase; the caller evaluates with result.trainer, exports with tunedWeights(), then calls dispose(). */
export async function fineTunePhase(p: FineTunePhaseInput): Promise<FineTunePhaseResult> {
  const { config, backbone } = p;
  const segment = trainableSegment(backbone.graph, config.from, backbone.inputShape);
  const threads = availableParallelism();
  let frozen: FeatureExtractor | null = null;
  let pool: AugmentPool | null = null;
  let engine: SegmentEngine | null = null;
  let trainer: FineTuneTrainer | null = null;
  /** Feature rows this phase opened (not the cached ones: the caller's). */
  const opened: RowsData['rows'][] = [];
  const release = async () => {
    for (const rows of opened) await rows.close();
    await trainer?.dispose();
    await engine?.dispose();
    await pool?.close();
    await frozen?.dispose();
  };
  try {
    const weights = segment.trainable.reduce((n, t) => n + t.shape.reduce((a, b) => a * b, 1), 0);
    p.say(`Fine-tuning the layers after ${config.from} up to ${segment.to}: ${weights.toLocaleString('en-US')} trainable backbone weights, learning rate ${config.learningRate}, ${config.epochs} epochs`);
    // The frozen part below `from` as its own network: it runs forward only.
    if (!p.atLayer) frozen = await belowExtractor(backbone, segment);
    pool = AugmentPool.create({ threads: Math.max(1, Math.min(2, threads)) });
    const context = (store: ImageStore): FeedContext => ({ ...p.context, store, extractor: frozen!, pool: pool! });
    engine = await SegmentEngine.create(segment, backbone.weights);
    trainer = await FineTuneTrainer.create(p.head, p.headParams, engine, { ...p.optimizer, learningRate: config.learningRate }, { seed: p.context.seed, maxBatch: p.maxBatch, epochOffset: p.epochOffset, classWeights: p.classWeights });

    let valData: RowsData;
    let source: BatchSource;
    if (p.atLayer) {
      // Cached: the features at `from` computed once per image before the head phase.
      valData = p.atLayer.val;
      source = rowsBatchSource(p.atLayer.train, p.batchSize, { shuffle: true, seed: p.context.seed });
    } else {
      const t0 = performance.now();
      const storage = storageAtLayer(p.storage, config.from);
      valData = await p.withProgress('Features ', `computing validation features at ${config.from}`, (onProgress) => cachedRows(context(p.valStore), `validation-${config.from}`, storage, onProgress));
      opened.push(valData.rows);
      p.say(`Validation features at ${config.from} computed once (${((performance.now() - t0) / 1000).toFixed(1)}s)`);
      if (p.mode.kind === 'faithful') source = faithfulSource(context(p.trainStore), p.batchSize);
      else if (p.mode.kind === 'views') {
        const views = p.mode.views;
        const viewsAtLayer = await p.withProgress('Views ', `computing augmented views at ${config.from}`, (onProgress) => viewsSource(context(p.trainStore), p.batchSize, views, onProgress, storage, `training-${config.from}`));
        opened.push(viewsAtLayer.rows);
        source = viewsAtLayer;
      } else {
        throw new Error('cached fine-tuning takes its features at the layer from layerFeatures (atLayer)');
      }
    }
    source = continueEpochs(limitSteps(source, p.stepsPerEpoch), p.epochOffset);
    if (p.mode.kind !== 'faithful') {
      await pool.close();
      await frozen?.dispose();
    }
    const valUsed = p.valImagesUsed >= valData.count ? valData : {
      rows: valData.rows,
      labels: valData.labels.subarray(0, p.valImagesUsed * (valData.labels.length / valData.count)),
      count: p.valImagesUsed,
    };
    let end: TrainEnd = {};
    const dir = fineTuneCheckpointDir(p.checkpointDir);
    const history = await fit(trainer, source, valUsed, {
      epochs: config.epochs,
      earlyStopping: p.earlyStopping,
      lrSchedule: p.lrSchedule,
      ...(p.classRecall && { classRecall: p.classRecall }),
      verbose: p.verbose,
      showMemory: p.showMemory,
      signal: p.signal,
      log: p.log,
      checkpoint: { dir, resume: p.resume, setup: p.setup },
      callbacks: {
        onEpochEnd: (epoch, logs, soFar) => p.onEpochEnd?.(epoch, logs, soFar),
        onTrainEnd: (e) => {
          end = e;
        },
      },
    });
    await markCheckpointFinished(dir);
    const t = trainer;
    return { history, end, trainer: t, valData, segment, dispose: release };
  } catch (err) {
    await release();
    throw err;
  }
}

/** The backbone's weights with the fine-tuned ones in place (for the export). */
export function tunedWeights(weights: WeightMap, segment: Segment, tuned: Float32Array[]): WeightMap {
  const out = new Map(weights);
  segment.trainable.forEach((t, i) => out.set(t.key, { shape: t.shape, data: tuned[i]! }));
  return out;
}

/** The source with its epoch k drawn as epoch offset + k (random streams only: fit still counts from 0). */
function continueEpochs(source: BatchSource, offset: number): BatchSource {
  return { ...source, batches: (epoch: number) => source.batches(offset + epoch) };
}

/** The two phases' histories as one, each epoch marked with its phase (1: head, 2: fine-tuning). */
export function joinHistories(head: History, tuned: History): History {
  const joined: History = {
    loss: [...head.loss, ...tuned.loss],
    accuracy: [...head.accuracy, ...tuned.accuracy],
    val_loss: [...head.val_loss, ...tuned.val_loss],
    val_accuracy: [...head.val_accuracy, ...tuned.val_accuracy],
    phase: [...head.loss.map(() => 1), ...tuned.loss.map(() => 2)],
  };
  // learning_rate (a schedule's) and val_balanced_accuracy: both phases have them or neither.
  for (const key of EXTRA_HISTORY_KEYS) {
    const a = head[key], b = tuned[key];
    if (a && b) joined[key] = [...a, ...b];
  }
  return joined;
}
