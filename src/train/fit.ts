import { GraftError } from '../util/errors.js';
import { Random } from '../util/random.js';
import type { HeadTrainer } from './head-trainer.js';
import type { OptimizerState } from './optimizers.js';
import { emptyHistory, type History } from './history.js';
import { checkResumable, configFingerprint, loadBestWeights, loadCheckpoint, saveBestWeights, saveCheckpoint, type ParamShapes, type RunSetup, type SavedOptimizerState, type SavedParams, type TrainedParams } from './checkpoint.js';
import { EarlyStopping, type EarlyStoppingConfig } from './early-stopping.js';
import { Progbar } from './progbar.js';
import { deriveSeed, STREAM_SHUFFLE } from './seeds.js';
import { setting } from '../util/option-names.js';
import type { FeatureRows } from './feature-store.js';
import { classRecalls } from './class-weights.js';
import { LrSchedule, type LrScheduleConfig } from './lr-schedule.js';

/** One batch of cached features [size, ...featureShape] and labels [size] or one-hot [size, k]. */
export interface Batch {
  features: Float32Array;
  labels: Float32Array;
  size: number;
}

/** Where training batches come from; batches(epoch) must depend only on the epoch (for exact resume). */
export interface BatchSource {
  stepsPerEpoch: number;
  batches(epoch: number): AsyncIterable<Batch>;
}

/** Samples held in memory: features [count, ...] and labels [count] or [count, k]. */
export interface ArrayData {
  features: Float32Array;
  labels: Float32Array;
  count: number;
}

/** Samples whose features are rows (in memory or in a feature store file), with their labels [count] or [count, k]. */
export interface RowsData {
  rows: FeatureRows;
  labels: Float32Array;
  count: number;
}

export interface EpochLogs {
  loss: number;
  accuracy: number;
  val_loss: number;
  val_accuracy: number;
  seconds: number;
  rss: number;
}

/** How training ended, for the caller's last words (epochs 0-based). */
export interface TrainEnd {
  /** Early stopping ended training after this epoch. */
  stoppedEpoch?: number;
  /** The trainer holds the weights of this (best) epoch rather than the last one's. */
  restoredEpoch?: number;
}

export interface FitCallbacks {
  /** After each epoch (0-based, as Keras), once its checkpoint is written; `history` holds every epoch so far. */
  onEpochEnd?(epoch: number, logs: EpochLogs, history: History): void | Promise<void>;
  /** Once, after the last epoch (and any restoring of the best weights). */
  onTrainEnd?(end: TrainEnd): void | Promise<void>;
}

export interface FitOptions {
  epochs: number;
  /** First epoch to run (0-based); a resumed checkpoint overrides it. */
  initialEpoch?: number;
  /** Batches of a BatchSource validation set per epoch (default: its stepsPerEpoch). */
  validationSteps?: number;
  callbacks?: FitCallbacks;
  /** 0 silent, 1 progress bar (on a terminal) and a line per epoch (default), 2 a line per epoch. */
  verbose?: 0 | 1 | 2;
  /** Append the process's resident memory to each epoch line, so a leak shows. */
  showMemory?: boolean;
  /**
   * Write a checkpoint after every epoch into dir; with resume, continue from the one found there.
   * `setup` (the run's data and settings by name) is stored with it, and resuming with a different
   * one is refused.
   */
  checkpoint?: { dir: string; resume?: boolean; setup?: RunSetup };
  /** Stops training between steps; the last checkpoint stays as it was. */
  signal?: AbortSignal;
  /**
   * Keras's EarlyStopping: stop when the monitored figure stops improving, optionally ending with
   * the best epoch's weights. Its state and best weights go into the checkpoint.
   */
  earlyStopping?: EarlyStoppingConfig;
  /** Where epoch lines go (default stdout). */
  log?: (line: string) => void;
  /**
   * Class names: the epoch line then adds the validation set's balanced accuracy and each class's
   * recall, and history val_balanced_accuracy (for unbalanced classes, where accuracy misleads).
   * Validation held in memory (ArrayData) only.
   */
  classRecall?: string[];
  /**
   * A learning-rate schedule (constant, cosine or Keras's ReduceLROnPlateau) from the trainer's
   * rate: each epoch's rate goes into history's `learning_rate`, its state into the checkpoint.
   */
  lrSchedule?: LrScheduleConfig;
}

/**
 * In-memory samples as a BatchSource: shuffled each epoch by a stream seeded from (seed, epoch),
 * cut into batches of batchSize (the last one may be smaller), like Keras's fit(x, y, shuffle=True).
 */
export function arrayBatchSource(data: ArrayData, batchSize: number, options: { shuffle?: boolean; seed?: number } = {}): BatchSource {
  if (data.count < 1) throw new GraftError('no training samples');
  return rowsBatchSource({ rows: arrayRows(data.features, data.features.length / data.count), labels: data.labels, count: data.count }, batchSize, options);
}

/** Features already in one array, as rows (read by copying). */
function arrayRows(features: Float32Array, rowFloats: number): FeatureRows {
  return {
    count: features.length / rowFloats,
    rowFloats,
    async read(rows, into) {
      for (let j = 0; j < rows.length; j++) into.set(features.subarray(rows[j]! * rowFloats, (rows[j]! + 1) * rowFloats), j * rowFloats);
    },
    async readRange(first, n, into) {
      into.set(features.subarray(first * rowFloats, (first + n) * rowFloats));
    },
    async close() {},
  };
}

/**
 * A source cut to the first `steps` batches of each epoch (of that epoch's shuffled order). More
 * steps than the source has are refused before it is built (trainClassifier, after decoding).
 */
export function limitSteps(source: BatchSource, steps: number | undefined): BatchSource {
  if (steps === undefined || steps >= source.stepsPerEpoch) return source;
  return {
    stepsPerEpoch: steps,
    async *batches(epoch) {
      let step = 0;
      for await (const b of source.batches(epoch)) {
        if (step++ >= steps) break;
        yield b;
      }
    },
  };
}

/**
 * Rows of features as a BatchSource, in the same order as arrayBatchSource over the same samples
 * (so features read from a store file train exactly as the same features held in one array).
 */
export function rowsBatchSource(data: RowsData, batchSize: number, options: { shuffle?: boolean; seed?: number } = {}): BatchSource {
  const { count } = data;
  if (count < 1) throw new GraftError('no training samples');
  const fsize = data.rows.rowFloats, lsize = data.labels.length / count;
  const steps = Math.ceil(count / batchSize);
  return {
    stepsPerEpoch: steps,
    async *batches(epoch: number) {
      const order = options.shuffle === false ? null : new Random(deriveSeed(options.seed ?? 0, epoch, STREAM_SHUFFLE)).permutation(count);
      const features = new Float32Array(batchSize * fsize), labels = new Float32Array(batchSize * lsize);
      const picked = new Uint32Array(batchSize);
      for (let s = 0; s < steps; s++) {
        const size = Math.min(batchSize, count - s * batchSize);
        for (let j = 0; j < size; j++) {
          const i = order ? order[s * batchSize + j]! : s * batchSize + j;
          picked[j] = i;
          labels.set(data.labels.subarray(i * lsize, (i + 1) * lsize), j * lsize);
        }
        await data.rows.read(picked.subarray(0, size), features);
        yield { features, labels, size };
      }
    },
  };
}

/**
 * Loss, accuracy and probabilities of `data` in inference mode, read in chunks of the trainer's
 * batch limit: the same numbers as trainer.evaluate over all the features in one array.
 */
export async function evaluateRows(trainer: FitTrainer, data: RowsData): Promise<{ loss: number; accuracy: number; probabilities: Float32Array }> {
  const chunk = trainer.batchLimit, k = trainer.outputUnits;
  const features = new Float32Array(chunk * data.rows.rowFloats);
  const probabilities = new Float32Array(data.count * k);
  for (let b0 = 0; b0 < data.count; b0 += chunk) {
    const m = Math.min(chunk, data.count - b0);
    await data.rows.readRange(b0, m, features);
    probabilities.set((await trainer.predict(features, m)).subarray(0, m * k), b0 * k);
  }
  return { ...trainer.score(probabilities, data.labels, data.count), probabilities };
}

/** What fit needs of a trainer: a HeadTrainer, or a fine-tuning trainer (head and backbone segment). */
export interface FitTrainer {
  trainStep: HeadTrainer['trainStep'];
  evaluate: HeadTrainer['evaluate'];
  beginEpoch(epoch: number): void;
  describe(): { seed: number };
  setParams(params: TrainedParams): Promise<void>;
  setOptimizerState(state: OptimizerState): Promise<void>;
  paramsToSave(): SavedParams;
  optimizerStateToSave(): SavedOptimizerState;
  syncParams(): Promise<TrainedParams>;
  paramShapes(): ParamShapes;
  predict: HeadTrainer['predict'];
  score: HeadTrainer['score'];
  readonly batchLimit: number;
  readonly outputUnits: number;
  /** The rate of the next steps, and setting it: what a learning-rate schedule needs (HeadTrainer has both). */
  readonly learningRate?: number;
  setLearningRate?(rate: number): void;
}

/** The fingerprint fit stores in checkpoints: resuming with another head, optimiser or seed is refused. */
export function trainerFingerprint(trainer: FitTrainer): string {
  return configFingerprint(trainer.describe());
}

async function evaluateSource(trainer: FitTrainer, source: BatchSource, epoch: number, steps: number): Promise<{ loss: number; accuracy: number }> {
  let loss = 0, acc = 0, seen = 0, step = 0;
  for await (const b of source.batches(epoch)) {
    if (step++ >= steps) break;
    const r = await trainer.evaluate(b.features, b.labels, b.size);
    loss += r.loss * b.size;
    acc += r.accuracy * b.size;
    seen += b.size;
  }
  return seen > 0 ? { loss: loss / seen, accuracy: acc / seen } : { loss: NaN, accuracy: NaN };
}

/**
 * Trains like Keras's model.fit: per epoch, every batch of `train` once (loss and accuracy are the
 * size-weighted means over the epoch's batches, as Keras's progress bar reports), then validation,
 * a checkpoint and the callbacks. Returns the History of all epochs (including resumed ones).
 */
export async function fit(trainer: FitTrainer, train: BatchSource, validation: ArrayData | BatchSource | RowsData, opts: FitOptions): Promise<History> {
  const verbose = opts.verbose ?? 1;
  const log = opts.log ?? ((line: string) => process.stdout.write(line + '\n'));
  const fingerprint = trainerFingerprint(trainer);
  let history = emptyHistory();
  let start = opts.initialEpoch ?? 0;
  const dir = opts.checkpoint?.dir;
  let stopping = opts.earlyStopping ? new EarlyStopping(opts.earlyStopping) : null;
  /** The best weights kept for early stopping: a file in the checkpoint folder, or (without one) a copy in memory. */
  let bestFile: string | undefined;
  let bestInMemory: TrainedParams | null = null;
  if (opts.lrSchedule && (trainer.learningRate === undefined || !trainer.setLearningRate)) throw new GraftError('this trainer cannot follow a learning-rate schedule');
  let schedule = opts.lrSchedule ? new LrSchedule(opts.lrSchedule, trainer.learningRate!, opts.epochs) : null;
  if (dir && opts.checkpoint?.resume) {
    const ck = await loadCheckpoint(dir);
    if (ck) {
      checkResumable(dir, ck, opts.checkpoint.setup, opts.epochs);
      if (ck.fingerprint !== fingerprint) {
        throw new GraftError(`cannot resume the run in ${dir} with another head, optimiser or seed: resume with the ones it was started with, or pass ${setting('overwrite')} to start afresh`, { file: dir });
      }
      await trainer.setParams(ck.params);
      await trainer.setOptimizerState(ck.optimizer);
      history = ck.history;
      start = ck.epoch;
      if (schedule && ck.lrSchedule) schedule = new LrSchedule(opts.lrSchedule!, schedule.baseRate, opts.epochs, ck.lrSchedule);
      if (stopping && ck.earlyStopping) {
        stopping = new EarlyStopping(stopping.config, ck.earlyStopping.state);
        bestFile = ck.earlyStopping.bestWeights;
        if (stopping.config.restoreBestWeights && stopping.state.bestEpoch >= 0 && !bestFile) {
          throw new GraftError(`the checkpoint in ${dir} kept no best weights (its run did not restore them): resume it as it was started, or pass ${setting('overwrite')} to start afresh`, { file: dir });
        }
      }
      if (verbose > 0) log(`Resuming from the checkpoint of epoch ${ck.epoch}/${opts.epochs} in ${dir}`);
      if (stopping?.stopped && verbose > 0) log(`Epoch ${stopping.state.stoppedEpoch + 1}: early stopping (the run stopped there; nothing more to train)`);
    }
  }
  let lastSaved = start;
  for (let epoch = start; epoch < opts.epochs && !stopping?.stopped; epoch++) {
    const t0 = performance.now();
    trainer.beginEpoch(epoch);
    if (schedule) trainer.setLearningRate!(schedule.rateFor(epoch));
    const bar = verbose === 1 ? new Progbar(train.stepsPerEpoch) : null;
    let loss = 0, acc = 0, seen = 0, step = 0;
    for await (const b of train.batches(epoch)) {
      if (opts.signal?.aborted) {
        bar?.clear();
        throw new GraftError(
          dir && lastSaved > 0
            ? `training interrupted in epoch ${epoch + 1}; the checkpoint of epoch ${lastSaved} in ${dir} is intact (resume to continue)`
            : `training interrupted in epoch ${epoch + 1}`,
        );
      }
      const r = await trainer.trainStep(b.features, b.labels, b.size);
      loss += r.loss * b.size;
      acc += r.accuracy * b.size;
      seen += b.size;
      step++;
      bar?.update(step, { loss: loss / seen, accuracy: acc / seen });
    }
    bar?.clear();
    if (seen === 0) throw new GraftError(`epoch ${epoch + 1} had no training batches`);
    const val = 'stepsPerEpoch' in validation
      ? await evaluateSource(trainer, validation, epoch, opts.validationSteps ?? validation.stepsPerEpoch)
      : 'rows' in validation
        ? await evaluateRows(trainer, validation)
        : await trainer.evaluate(validation.features, validation.labels, validation.count);
    history.loss.push(loss / seen);
    history.accuracy.push(acc / seen);
    history.val_loss.push(val.loss);
    history.val_accuracy.push(val.accuracy);
    let recallText = '';
    if (opts.classRecall && 'probabilities' in val && !('stepsPerEpoch' in validation)) {
      const r = classRecalls(val.probabilities as Float32Array, validation.labels, validation.count, trainer.outputUnits);
      (history.val_balanced_accuracy ??= []).push(r.balancedAccuracy);
      const recalls = r.recall.map((x, c) => `${opts.classRecall![c] ?? c} ${Number.isNaN(x) ? 'n/a' : x.toFixed(4)}`).join(', ');
      recallText = ` - val_balanced_accuracy: ${r.balancedAccuracy.toFixed(4)} - val_recall: ${recalls}`;
    }
    const epochLogs = { loss: loss / seen, accuracy: acc / seen, val_loss: val.loss, val_accuracy: val.accuracy };
    const decision = stopping?.onEpochEnd(epoch, epochLogs);
    let reduced: number | null = null;
    if (schedule) {
      (history.learning_rate ??= []).push(trainer.learningRate!);
      reduced = schedule.onEpochEnd(epochLogs);
    }
    if (decision?.keepWeights) {
      if (dir) bestFile = await saveBestWeights(dir, trainer.paramsToSave(), bestFile);
      else bestInMemory = copyParams(await trainer.syncParams());
    }
    if (dir) {
      const params = trainer.paramsToSave();
      const optimizer = trainer.optimizerStateToSave();
      const earlyStopping = stopping ? { state: stopping.state, ...(bestFile && { bestWeights: bestFile }) } : undefined;
      await saveCheckpoint(dir, { epoch: epoch + 1, seed: trainer.describe().seed, fingerprint, setup: opts.checkpoint?.setup, history, params, optimizer, earlyStopping, ...(schedule && { lrSchedule: schedule.state }) });
      lastSaved = epoch + 1;
    }
    const seconds = (performance.now() - t0) / 1000;
    const rss = process.memoryUsage().rss;
    const logs: EpochLogs = { loss: loss / seen, accuracy: acc / seen, val_loss: val.loss, val_accuracy: val.accuracy, seconds, rss };
    if (verbose > 0) {
      const f = (x: number) => x.toFixed(4);
      log(`Epoch ${epoch + 1}/${opts.epochs} - ${Math.round(seconds)}s - loss: ${f(logs.loss)} - accuracy: ${f(logs.accuracy)} - val_loss: ${f(logs.val_loss)} - val_accuracy: ${f(logs.val_accuracy)}${recallText}${schedule ? ` - learning_rate: ${trainer.learningRate!.toExponential(4)}` : ''}${opts.showMemory ? ` - rss: ${Math.round(rss / 2 ** 20)} MB` : ''}`);
    }
    await opts.callbacks?.onEpochEnd?.(epoch, logs, history);
    if (decision?.stop && verbose > 0) log(`Epoch ${epoch + 1}: early stopping`);
    if (reduced !== null && verbose > 0) log(`Epoch ${epoch + 1}: ReduceLROnPlateau reducing learning rate to ${reduced.toExponential(4)}.`);
  }
  const end: TrainEnd = stopping?.stopped ? { stoppedEpoch: stopping.state.stoppedEpoch } : {};
  const bestEpoch = stopping?.state.bestEpoch ?? -1;
  if (stopping?.config.restoreBestWeights && bestEpoch >= 0) {
    // As Keras 3: the best epoch's weights at the end, whether or not training stopped early.
    const best = dir && bestFile ? await loadBestWeights(dir, bestFile, trainer.paramShapes()) : bestInMemory;
    if (best) {
      await trainer.setParams(best);
      end.restoredEpoch = bestEpoch;
      if (verbose > 0) log(`Restoring model weights from the end of the best epoch: ${bestEpoch + 1}.`);
    }
  }
  if (!dir) await trainer.syncParams();
  await opts.callbacks?.onTrainEnd?.(end);
  return history;
}

/** A whole copy of the trained weights. */
function copyParams(params: TrainedParams): TrainedParams {
  const dense = params.dense.map((d) => ({ ...d, kernel: d.kernel.slice(), bias: d.bias.slice() }));
  return params.backbone ? { dense, backbone: params.backbone.map((a) => a.slice()) } : { dense };
}
