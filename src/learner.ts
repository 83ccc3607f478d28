/**
 * The one call for the common path (like fastai's vision_learner + fine_tune): a folder of
 * labelled pictures in, a trained, evaluated and exported classifier out. Every stage beneath it
 * (backbone, data, augmentation, head, loop, evaluation, export) is usable on its own.
 */
import { createHash } from 'node:crypto';
import { constants as fsConstants, existsSync } from 'node:fs';
import { access, rmdir, stat } from 'node:fs/promises';
import { join, relative, resolve, sep } from 'node:path';
import { availableParallelism, totalmem } from 'node:os';
import { loadBackbone, type Backbone } from './backbone/backbone.js';
import { classifierOnnx } from './model/classifier-onnx.js';
import { checkBackbonePrecision, quantizeBackbone, type BackbonePrecision } from './backbone/int8.js';
import { storeCalibrationSource } from './backbone/calibrate.js';
import { kerasToOnnx } from './backbone/onnx/convert.js';
import { AugmentPool } from './data/augment-pool.js';
import { NO_AUGMENTATION, type AugmentConfig } from './data/augment.js';
import type { ClassMode } from './data/batches.js';
import { INTERPOLATIONS, ORIENTATIONS, type Interpolation, type Orientation } from './data/decode.js';
import { buildImageStore, DEFAULT_MEMORY_BUDGET, type ImageStore } from './data/image-store.js';
import { listTables } from './data/label-table.js';
import { classCounts, emptyValidationProblem, listValidationFolder, resolveDataset, type DatasetListing } from './data/listing.js';
import { PREPROCESS_NAMES, preprocessParams, type PreprocessName } from './data/preprocess.js';
import { computeMetrics, type EvaluationMetrics } from './evaluate/metrics.js';
import { plotHistory } from './evaluate/plots.js';
import { writeEvaluation } from './evaluate/report.js';
import { writeHistory } from './export/history-io.js';
import { writeTfjsLayersModel } from './export/tfjs-layers.js';
import { buildClassifierGraph, headLayerNames } from './model/classifier-graph.js';
import { backbonePooling, denseShapes, headForClasses, headToWeightMap, initHead, outputLayerNote } from './model/head.js';
import type { HeadSpec } from './model/head-spec.js';
import { weightsSourceName, type ClassifierInfo } from './model/classifier-info.js';
import { cachedRows, faithfulSource, feedModeName, isFeedMode, MAX_VIEWS, viewsSource, type FeatureStorage, type FeedContext, type FeedMode } from './train/feature-sources.js';
import { featureFingerprint } from './train/feature-fingerprint.js';
import { checkStoredSettings, openStoredRun, storedImagesSetting, storedRowsData } from './train/stored-features.js';
import type { FeatureRows } from './train/feature-store.js';
import { fit, evaluateRows, limitSteps, rowsBatchSource, type BatchSource, type EpochLogs, type RowsData, type TrainEnd } from './train/fit.js';
import { resolveEarlyStopping, type EarlyStoppingConfig } from './train/early-stopping.js';
import { HeadTrainer } from './train/head-trainer.js';
import { checkFineTune, fineTunePhase, joinHistories, resolveFineTune, saturatedCachedNote, tunedWeights, type FineTuneConfig } from './train/finetune/phase.js';
import { layerFeatures } from './train/finetune/layer-features.js';
import { trainableSegment } from './train/finetune/segment.js';
import { resolveLrSchedule, type LrScheduleConfig } from './train/lr-schedule.js';
import { planClassBalance, resolveClassWeights, type ClassWeightSetting } from './train/class-weights.js';
import { Progbar } from './train/progbar.js';
import type { History } from './train/history.js';
import { resolveOptimizer, slotCount, type OptimizerConfig } from './train/optimizers.js';
import { describeRecipe, isRecipeName, RECIPE_NAMES, RECIPES, resolveRecipe, type RecipeName } from './train/recipes.js';
import { checkResumable, markCheckpointFinished, type FileSetSetting, type RunSetup } from './train/checkpoint.js';
import { closeRunSession, commitResults, openRunSession, startTraining, type RunSession } from './train/run-session.js';
import { writeFileAtomic } from './util/atomic.js';
import { describeFsError, GraftError } from './util/errors.js';
import { isSameOrInside, makeFolder, realPathOf } from './util/folders.js';
import { mallocTunablesSet } from './util/malloc-tunables.js';
import { MemoryBudget } from './util/memory-budget.js';
import { optionName, setting } from './util/option-names.js';

export { LAB_RECIPE, DEFAULT_RECIPE, RECIPES, RECIPE_NAMES } from './train/recipes.js';

export interface TrainOptions {
  /**
   * The settings every field below left unset takes: 'default' (graft's best measured recipe,
   * DEFAULT_RECIPE; see docs/recipes.md) or 'lab' (the Keras lab's, LAB_RECIPE, as `graft lab`).
   */
  recipe?: RecipeName;
  /** A lab-layout root (train/ + validation/) or a folder of class folders. */
  data: string;
  /** Validation class folders, when not inside `data` (with `validationLabels`: the folder its paths are relative to). */
  validationData?: string;
  /**
   * Labels from a table (Keras flow_from_dataframe): a CSV, TSV or JSON-lines file whose file
   * column (`fileColumn`, default 'filename') names images relative to `data` and whose label
   * column (`labelColumn`, default 'class') names their class.
   */
  labels?: string;
  /** A validation table like `labels` (paths relative to `validationData`, else `data`). */
  validationLabels?: string;
  fileColumn?: string;
  labelColumn?: string;
  /** Hold out this fraction of each class of `data` for validation (Keras validation_split). */
  validationSplit?: number;
  /** Which images a validation split holds out: 'keras' (the first of each class, default) or 'shuffled' (drawn with `seed`). */
  splitOrder?: 'keras' | 'shuffled';
  /** Descend into linked folders when listing images (Keras follow_links). */
  followSymlinks?: boolean;
  /** Where history, plots, metrics, checkpoints and the exported model go. */
  out: string;
  /**
   * Backbone weights: 'imagenet' (default), a Keras .h5 / .weights.h5 / .keras file, or a TF.js
   * layers-model folder.
   */
  weights?: string;
  /** The backbone layer the head sits on (default: the recipe's, mixed7 in both). */
  cut?: string;
  /**
   * 'fp32' (default) or 'int8': onnxruntime's static QDQ quantisation of the backbone, calibrated
   * on the training images (src/backbone/int8.ts, docs/int8.md); model.onnx is then int8 too.
   */
  backbonePrecision?: BackbonePrecision;
  /** Image [height, width] (default: the recipe's; 299x299, the lab's 150x150). */
  inputSize?: [number, number];
  /**
   * The head (parseHeadSpec; default the recipe's: AveragePooling2D(7, 5)-Flatten-Dense(256)-Dropout(0.2), the lab's
   * Flatten-Dense(1024)-Dropout(0.2)); its output layer is fitted to the number of classes (see headForClasses).
   */
  head?: HeadSpec;
  /** Default the recipe's: Adam 1e-3 (the lab's RMSprop 1e-4), with Keras's other defaults. */
  optimizer?: OptimizerConfig;
  /** Default the recipe's: 10 (the lab's 20). */
  epochs?: number;
  /**
   * Keras's EarlyStopping (default: none, as in the lab): stop once `monitor` (default val_loss)
   * has not improved by more than `minDelta` for `patience` epochs; with `restoreBestWeights`, the
   * evaluation and the exported model use the best epoch's weights.
   */
  earlyStopping?: EarlyStoppingConfig;
  /**
   * Keras's class_weight for unbalanced classes: 'balanced' (n_samples / (n_classes * count)) or a
   * weight per class name (others 1). Scales each training sample's loss and gradient. Default none.
   */
  classWeight?: ClassWeightSetting;
  /**
   * The learning rate epoch by epoch (default constant, as the lab): 'cosine' down to minLr, or
   * 'plateau' (Keras ReduceLROnPlateau: factor, patience, minLr...). Each epoch's rate is history's `learning_rate`.
   */
  lrSchedule?: LrScheduleConfig;
  /** Default the recipe's: 20 in both. */
  batchSize?: number;
  /** Batches per epoch (Keras steps_per_epoch); default: one pass over the training images. */
  stepsPerEpoch?: number;
  /** Validation batches per epoch (Keras validation_steps); default: all validation images. */
  validationSteps?: number;
  /**
   * How the head is fed (default the recipe's: cached, the lab's faithful. faithful: fresh
   * augmentation through the backbone every step; cached: features once, no augmentation; views:
   * K augmented views computed once).
   */
  mode?: FeedMode;
  /** ImageDataGenerator-style augmentation of training images (default the lab's in both recipes; none in cached mode). */
  augmentation?: AugmentConfig;
  /** Pixel scaling: 'rescale' (x/255, the lab's) or 'inception' (x/127.5 - 1, the default recipe's). */
  preprocess?: PreprocessName;
  /** Resize filter (default the recipe's: 'bilinear'; the lab's 'nearest', as Keras load_img). */
  interpolation?: Interpolation;
  /**
   * The EXIF Orientation tag: 'ignore' (Keras's way, default) or 'exif' (photos turned upright,
   * as browsers show them). Saved with the model, so prediction does the same.
   */
  orientation?: Orientation;
  /**
   * Bytes of decoded images and features held in memory, all sets together (default
   * DEFAULT_MEMORY_BUDGET, 1 GiB), taken in the order they are made (training images, validation
   * images, validation features, training features): images that do not fit are decoded again
   * when needed, features (cached, views, validation) go to a feature store file in
   * `out`/features/, read back batch by batch in the same order (the same results), and reused by
   * a resume or a later run on the same images and settings.
   */
  memoryBudget?: number;
  /** Seeds the head's initial weights, shuffling, augmentation and dropout (default 0). */
  seed?: number;
  /** Continue the unfinished (or finished, with more epochs) run in `out` from its checkpoint. */
  resume?: boolean;
  /**
   * Start afresh even when `out` holds an earlier run, finished or not (default: refuse, so it is
   * not lost); its outputs are removed when training starts.
   */
  overwrite?: boolean;
  /** An image that cannot be read: 'skip' it with a warning (default) or stop with an 'error'. */
  onBadImage?: 'skip' | 'error';
  /** 0: silent; 1: progress bars, epoch lines and notes (default); 2: epoch lines and notes, no progress bars. */
  verbose?: 0 | 1 | 2;
  /** Print the resident memory with every epoch. */
  showMemory?: boolean;
  /** Aborting it stops training at the next step; the last finished epoch's checkpoint stays. */
  signal?: AbortSignal;
  /** Where epoch lines, notes and warnings go (default: standard output). */
  log?: (line: string) => void;
  /** Called after each epoch (0-based) with its Keras-style logs, once the checkpoint is written. */
  onEpochEnd?: (epoch: number, logs: EpochLogs) => void | Promise<void>;
  /**
   * A second phase after the head's (default: none): the backbone's layers after `from` (e.g.
   * 'mixed6') up to the cut are unfrozen and trained with the head for `epochs` (default 10) at
   * `learningRate` (default 1e-5), BatchNormalization kept in inference mode, as Keras's guide.
   */
  fineTune?: FineTuneConfig;
  /**
   * Train on a feature store written by `extractFeatures` (`graft features`) instead of decoding
   * `data`: cached mode only; the classes and labels are the store's, and its settings (weights,
   * cut, input size, resize, orientation, preprocessing, pooling) must be this run's, else the run
   * is refused naming what differs. Validation: `validationData` images or `validationFeatures`.
   */
  features?: string;
  /** With `features`: validation features from a store like it. */
  validationFeatures?: string;
}

/** The folder of a run's feature store files (features over the memory budget). */
export const FEATURES_FOLDER = 'features';

/** The lab's fit() arguments for its dataset: 100 batches of 20 training, 50 of 20 validation images. */
export const LAB_STEPS = { stepsPerEpoch: 100, validationSteps: 50 } as const;

export interface TrainResult {
  history: History;
  metrics: EvaluationMetrics;
  classes: string[];
  out: string;
  /** The TF.js layers-model folder and the ONNX file of the whole classifier. */
  modelDir: string;
  onnxFile: string;
  /** With early stopping: the epoch it stopped after and the epoch whose weights were kept (0-based, as Keras). */
  end: TrainEnd;
}

/** Validation data as loaded: from a lab layout, a separate folder or a split. */
async function listData(opts: TrainOptions): Promise<{ train: DatasetListing; validation: DatasetListing }> {
  if (opts.labels !== undefined) return listTables({ ...opts, labels: opts.labels });
  const resolved = await resolveDataset(opts.data, { validationSplit: opts.validationSplit, splitOrder: opts.splitOrder, seed: opts.seed, followSymlinks: opts.followSymlinks });
  let validation = resolved.validation;
  if (opts.validationData) {
    if (validation) {
      throw new GraftError(
        opts.validationSplit !== undefined
          ? `${optionName('validationData')} and ${optionName('validationSplit')} both give validation data: use one of them`
          : `${opts.data} already has a validation folder (${validation.root}): drop ${optionName('validationData')}, or point ${optionName('data')} at its training folder`,
        { file: opts.data },
      );
    }
    validation = await listValidationFolder(opts.validationData, resolved.train.classes, { followSymlinks: opts.followSymlinks });
  }
  if (!validation) {
    // A train/ + test/ folder: the test set is never taken for validation unasked, but it can be.
    const test = join(resolve(opts.data), 'test');
    const testHint = resolved.layout === 'lab' && existsSync(test) ? ` (${test} is kept unseen as a test set; ${setting('validationData', test)} validates on it)` : '';
    throw new GraftError(`no validation data for ${opts.data}: give a folder with train/ and validation/, ${setting('validationData', 'DIR')}, or ${setting('validationSplit', 0.2)}${testHint}`, { file: opts.data });
  }
  const empty = emptyValidationProblem(validation, opts.validationSplit);
  if (empty) throw new GraftError(empty, { file: validation.root });
  return { train: resolved.train, validation };
}

/**
 * Readable images as a resume compares them: how many, and a digest of which files (relative to
 * their folder, '/'-separated) with which labels. Not where the folder is: moved, it is the same data.
 */
function imagesSetting(root: string, store: ImageStore): FileSetSetting {
  const hash = createHash('sha256');
  const files = store.paths.map((p) => relative(root, p).split(sep).join('/'));
  files.forEach((f, i) => hash.update(`${f}\t${store.labels[i]}\n`));
  return { summary: `${store.count} images, digest ${hash.digest('hex').slice(0, 12)}`, files };
}

/** More steps per epoch than the training images make batches. */
function tooManySteps(steps: number, batches: number, images: string, batchSize: number): GraftError {
  return new GraftError(`${steps} steps per epoch is more than the ${batches} batches of ${batchSize} that ${images} make: pass ${setting('stepsPerEpoch', batches)} or fewer`);
}

/** The first `samples` samples, or all of them. */
function limitSamples(data: RowsData, samples: number): RowsData {
  if (samples >= data.count) return data;
  const lsize = data.labels.length / data.count;
  return { rows: data.rows, labels: data.labels.subarray(0, samples * lsize), count: samples };
}

/**
 * Refuses options the command line could never pass (its parsers check each flag), before any
 * work: a wrong type or range would otherwise fail minutes later, deep inside, or run silently wrong.
 */
function checkTrainOptions(opts: TrainOptions): void {
  const bad = (what: string, value: unknown) => new GraftError(`trainClassifier: ${what}, got ${JSON.stringify(value) ?? String(value)}`);
  const whole = (name: keyof TrainOptions, min = -Infinity) => {
    const v = opts[name];
    // null as undefined: the default (as `??` reads it).
    if (v !== undefined && v !== null && !(Number.isSafeInteger(v) && (v as number) >= min)) throw bad(`${name} must be a whole number${min > -Infinity ? ` from ${min}` : ''}`, v);
  };
  for (const name of opts.features === undefined ? (['data', 'out'] as const) : (['out'] as const)) if (typeof opts[name] !== 'string' || opts[name] === '') throw bad(`${name} must be a folder path`, opts[name]);
  if (opts.features !== undefined && (opts.data || opts.labels !== undefined)) throw new GraftError(`${optionName('features')} replaces ${optionName('data')}: give one of them`);
  if (opts.resume && opts.overwrite) {
    throw new GraftError('resume and overwrite cannot go together: resume continues the run in the output folder, overwrite replaces it (pass one of them)');
  }
  whole('epochs', 1);
  whole('batchSize', 1);
  whole('stepsPerEpoch', 1);
  whole('validationSteps', 1);
  whole('seed');
  whole('memoryBudget', 0);
  const split = opts.validationSplit;
  if (split !== undefined && !(typeof split === 'number' && split > 0 && split < 1)) throw bad('validationSplit must be a fraction between 0 and 1', split);
  const size = opts.inputSize;
  if (size !== undefined && !(Array.isArray(size) && size.length === 2 && size.every((d) => Number.isInteger(d) && d > 0))) throw bad('inputSize must be [height, width]', size);
  if (opts.mode !== undefined && !isFeedMode(opts.mode)) {
    throw bad(`mode must be { kind: 'faithful' }, { kind: 'cached' } or { kind: 'views', views: 1 to ${MAX_VIEWS} } (parseFeedMode reads 'views=3')`, opts.mode);
  }
  if (opts.recipe !== undefined && !isRecipeName(opts.recipe)) throw bad(`recipe must be one of ${RECIPE_NAMES.map((n) => `'${n}'`).join(', ')}`, opts.recipe);
  const named = RECIPES[opts.recipe ?? 'default'];
  checkInputSizeFits(size ?? named.inputSize, opts.batchSize ?? named.batchSize);
  if (opts.preprocess !== undefined && !PREPROCESS_NAMES.includes(opts.preprocess)) throw bad(`preprocess must be one of ${PREPROCESS_NAMES.join(', ')}`, opts.preprocess);
  if (opts.interpolation !== undefined && !INTERPOLATIONS.includes(opts.interpolation)) throw bad(`interpolation must be one of ${INTERPOLATIONS.join(', ')}`, opts.interpolation);
  if (opts.orientation !== undefined && !ORIENTATIONS.includes(opts.orientation)) throw bad(`orientation must be one of ${ORIENTATIONS.join(', ')}`, opts.orientation);
  if (opts.onBadImage !== undefined && !['skip', 'error'].includes(opts.onBadImage)) throw bad("onBadImage must be 'skip' or 'error'", opts.onBadImage);
  if (opts.verbose !== undefined && ![0, 1, 2].includes(opts.verbose)) throw bad('verbose must be 0, 1 or 2', opts.verbose);
  if (opts.splitOrder !== undefined && !['keras', 'shuffled'].includes(opts.splitOrder)) throw bad("splitOrder must be 'keras' or 'shuffled'", opts.splitOrder);
  if (opts.earlyStopping !== undefined) {
    if (typeof opts.earlyStopping !== 'object' || opts.earlyStopping === null) throw bad('earlyStopping must be { monitor?, patience?, minDelta?, restoreBestWeights? }', opts.earlyStopping);
    try {
      resolveEarlyStopping(opts.earlyStopping);
    } catch (err) {
      throw new GraftError(`trainClassifier: ${(err as Error).message}`);
    }
  }
}

/**
 * Trains a classifier on a folder of labelled images and writes everything a user keeps into
 * `opts.out`: history.json, accuracy.png, loss.png, metrics.json, report.txt, checkpoint/,
 * model/ (TF.js layers model) and model.onnx.
 */
export async function trainClassifier(opts: TrainOptions): Promise<TrainResult> {
  checkTrainOptions(opts);
  const log = opts.log ?? ((line: string) => process.stdout.write(`${line}\n`));
  const verbose = opts.verbose ?? 1;
  /** The progress bar on screen, if any: a note printed meanwhile first clears it (the next update redraws it). */
  let activeBar: Progbar | null = null;
  const say = (line: string) => {
    activeBar?.clear();
    if (verbose > 0) log(line);
  };
  const out = resolve(opts.out);
  /** Ctrl-C before the first epoch stops at once (fit handles it between steps from then on). */
  const stopIfInterrupted = (during: string) => {
    if (opts.signal?.aborted) throw new GraftError(`interrupted while ${during}, before training started; nothing in ${out} was changed`);
  };
  /** Runs a long step with a progress bar on a terminal (verbose 1 only), stopping early on an interrupt. */
  const withProgress = async <T>(label: string, during: string, run: (onProgress: (done: number, total: number) => void) => Promise<T>): Promise<T> => {
    try {
      return await run((done, total) => {
        stopIfInterrupted(during);
        if (verbose === 1) (activeBar ??= new Progbar(total, label)).update(done);
      });
    } finally {
      activeBar?.clear();
      activeBar = null;
    }
  };
  const seed = opts.seed ?? 0;
  // The recipe's settings, each one the caller set in its place.
  // From a feature store the features are cached ones (a mode given otherwise is refused later).
  const recipe = resolveRecipe(opts.features !== undefined && opts.mode === undefined ? { ...opts, mode: { kind: 'cached' } } : opts);
  const { mode } = recipe.settings;
  const orientation = opts.orientation ?? 'ignore';
  const augmentation = mode.kind === 'cached' ? NO_AUGMENTATION : recipe.settings.augmentation;

  // The folder is this run's alone from here: checked, locked, cleared of what a run cut short left.
  const session = await openRunSession(out, {
    resume: opts.resume,
    overwrite: opts.overwrite,
    say,
    inputs: [
      ...(opts.weights && opts.weights !== 'imagenet' ? [{ what: optionName('weights'), path: resolve(opts.weights) }] : []),
      ...(opts.data ? [{ what: optionName('data'), path: resolve(opts.data) }] : []),
      ...[opts.features, opts.validationFeatures].flatMap((f, i) => (f ? [{ what: optionName(i === 0 ? 'features' : 'validationFeatures'), path: resolve(f) }] : [])),
      ...(opts.validationData ? [{ what: optionName('validationData'), path: resolve(opts.validationData) }] : []),
    ],
  });
  const { earlier } = session;
  const checkpointDir = join(out, 'checkpoint');
  try {
    return await trainInSession(opts, session, { out, checkpointDir, say, log, verbose, withProgress, stopIfInterrupted, seed, recipe, orientation, augmentation, earlier });
  } finally {
    await closeRunSession(session);
  }
}

/** The run itself, once its folder is held (trainClassifier's stages after openRunSession). */
async function trainInSession(
  opts: TrainOptions,
  session: RunSession,
  ctx: {
    out: string;
    checkpointDir: string;
    say: (line: string) => void;
    log: (line: string) => void;
    verbose: 0 | 1 | 2;
    withProgress: <T>(label: string, during: string, run: (onProgress: (done: number, total: number) => void) => Promise<T>) => Promise<T>;
    stopIfInterrupted: (during: string) => void;
    seed: number;
    recipe: ReturnType<typeof resolveRecipe>;
    orientation: Orientation;
    augmentation: AugmentConfig;
    earlier: RunSession['earlier'];
  },
): Promise<TrainResult> {
  const { out, checkpointDir, say, log, verbose, withProgress, stopIfInterrupted, seed, recipe, orientation, augmentation, earlier } = ctx;
  const { inputSize, batchSize, mode, preprocess, interpolation, cut, optimizer, epochs } = recipe.settings;
  say(describeRecipe(recipe));
  const stored = opts.features === undefined ? undefined
    : await openStoredRun({ ...opts, features: opts.features }, { mode: feedModeName(mode), fineTune: opts.fineTune !== undefined, listValidation: (dir, classes) => listValidationFolder(dir, classes, { followSymlinks: opts.followSymlinks }) });
  const { train, validation } = stored ? stored.listings : await listData(opts);
  const realOut = await realPathOf(out);
  for (const [what, listing] of [['training', train], ['validation', validation]] as const) {
    // Through links too: a linked images folder is the same folder.
    if (isSameOrInside(realOut, await realPathOf(listing.root))) {
      // Its plots would be read as pictures of a class (or a class of their own) next time.
      throw new GraftError(`the output folder ${out} is inside the ${what} images folder ${listing.root}: choose an output folder (${optionName('out')}) outside it`, { file: out });
    }
  }
  for (const w of [...train.warnings, ...validation.warnings]) say(`warning: ${w}`);
  // Named like every other file left out (a FIFO, a broken link), not dropped in silence.
  for (const s of [...train.skipped, ...validation.skipped]) say(`warning: skipped ${s.path}: ${s.reason}`);
  if (!mallocTunablesSet()) {
    say("warning: this process was started without graft's GLIBC_TUNABLES, so the head trains several times slower; call relaunchWithMallocTunables() first thing in the script, or use the graft command");
  }
  const classes = train.classes;
  // Weights naming no class are refused now, not after minutes of decoding.
  if (opts.classWeight !== undefined) resolveClassWeights(opts.classWeight, classes, classes.map(() => 1));
  const classMode: ClassMode = classes.length === 2 ? 'binary' : 'categorical';
  // The head is checked before minutes of decoding and feature computation.
  const head = headForClasses(classes.length, recipe.settings.head);
  HeadTrainer.checkSpec(head);
  // Only about a head the caller wrote: the lab's default simply gets the output its classes need.
  const headNote = opts.head ? outputLayerNote(opts.head, head) : null;
  if (headNote) say(headNote);
  const fineTune = opts.fineTune === undefined ? undefined : resolveFineTune(opts.fineTune);
  // What makes this run this run, for --resume; the images and step counts follow after decoding.
  const settings: RunSetup = {
    classes,
    // A path as an absolute one: the same file named from another folder is the same run.
    weights: !opts.weights || opts.weights === 'imagenet' ? 'imagenet' : resolve(opts.weights),
    cut,
    'input size': inputSize.join('x'),
    interpolation,
    orientation,
    preprocess,
    mode: feedModeName(mode),
    augmentation,
    'batch size': batchSize,
    head,
    optimizer: resolveOptimizer(optimizer),
    'early stopping': opts.earlyStopping ? resolveEarlyStopping(opts.earlyStopping) : 'off',
    'fine-tune': fineTune ?? 'off',
    'backbone precision': checkBackbonePrecision(opts.backbonePrecision ?? 'fp32'),
    'class weight': opts.classWeight ?? 'none',
    // 'constant' and no schedule train alike (history gains learning_rate with one).
    'learning-rate schedule': opts.lrSchedule === undefined || resolveLrSchedule(opts.lrSchedule).kind === 'constant' ? 'constant' : resolveLrSchedule(opts.lrSchedule),
    seed,
  };
  // A resume must be the same run: refused here, before minutes of work, if a setting changed.
  if (opts.resume && earlier) {
    checkResumable(out, earlier, settings, epochs);
    if (!earlier.setup) say(`warning: the checkpoint in ${out} was written by an earlier graft that did not record its settings: resuming assumes they are unchanged`);
  }
  say(`Found ${train.files.length} images belonging to ${classes.length} classes.`);
  say(`Found ${validation.files.length} images belonging to ${classes.length} classes.`);
  const listedBatches = Math.ceil(train.files.length / batchSize);
  if (opts.stepsPerEpoch !== undefined && opts.stepsPerEpoch > listedBatches) {
    throw tooManySteps(opts.stepsPerEpoch, listedBatches, `${train.files.length} training images`, batchSize);
  }
  // An output folder that cannot be written shows now, not after minutes of decoding.
  await makeFolder(out);
  await access(out, fsConstants.W_OK).catch((err: unknown) => {
    throw describeFsError(err, out, 'write into');
  });

  let backbone: Backbone | undefined;
  let pool: AugmentPool | undefined;
  let trainer: HeadTrainer | undefined;
  /** Feature rows to close at the end (store files stay open while training reads them). */
  const opened: FeatureRows[] = [...(stored?.opened ?? [])];
  try {
    // The backbone first: a weights problem shows before minutes of decoding.
    // A head that starts by pooling has the backbone pool: features are 768 floats an image, not 7x7x768.
    backbone = await loadBackbone({ weights: opts.weights, cut, inputSize, pool: backbonePooling(head) });
    stopIfInterrupted('loading the backbone');
    const pooledNote = backbone.pooling ? `, pooled in the backbone to (None, ${backbone.featureShape.join(', ')})` : '';
    say(`Backbone: ${backbone.source}, cut at ${backbone.graph.outputs[0]} -> (None, ${backbone.outputShape.join(', ')})${pooledNote}`);
    checkHeadFits(head, backbone.outputShape, optimizer);
    for (const set of [stored?.train, stored?.validation]) if (set) checkStoredSettings(set, backbone, { inputSize, interpolation, orientation, preprocess });
    // One budget for decoded images and features together, taken in the order they are made.
    const budget = new MemoryBudget(opts.memoryBudget ?? DEFAULT_MEMORY_BUDGET);
    if (fineTune) checkFineTune(backbone, fineTune);
    const storeOptions = { width: inputSize[1], height: inputSize[0], interpolation, orientation, onBadImage: opts.onBadImage, onWarning: (l: string) => say(l) };
    const decode = async (listing: DatasetListing, what: string) => {
      const store = await withProgress('Decoding ', `decoding the ${what} images`, (onProgress) => buildImageStore(listing, { ...storeOptions, memoryBudgetBytes: budget.left, onProgress }));
      if (store.inMemory) budget.take(store.count * store.imageBytes);
      return store;
    };
    const trainStore = stored ? stored.train.store : await decode(train, 'training');
    const valStore = stored?.validation ? stored.validation.store : await decode(validation, 'validation');
    for (const [name, store] of [['training', trainStore], ['validation', valStore]] as const) {
      if (store.count === 0) throw new GraftError(`no readable ${name} images in ${name === 'training' ? train.root : validation.root}`);
    }
    // Unreadable files can leave a class with no training images, which listing could not know.
    const perClass = classes.map((_, c) => trainStore.labels.filter((l) => l === c).length);
    const unlearnable = classes.filter((_, c) => perClass[c] === 0);
    if (classes.length - unlearnable.length < 2) {
      throw new GraftError(
        `training needs readable images of at least 2 classes; in ${train.root} only ${classes.filter((_, c) => perClass[c]! > 0).join(', ')} has any (none of ${unlearnable.join(', ')} could be read)`,
        { file: train.root },
      );
    }
    if (unlearnable.length > 0) say(`warning: no readable training images of ${unlearnable.join(', ')}: the model keeps an output for ${unlearnable.length === 1 ? 'that class' : 'those classes'} but cannot learn it`);
    // Likewise validation (a class whose listed images all failed; one listing gave none of was warned of then).
    const listedForValidation = classCounts(validation);
    const unmeasured = classes.filter((_, c) => listedForValidation[c]! > 0 && !valStore.labels.includes(c));
    if (unmeasured.length > 0) say(`warning: no readable validation images of ${unmeasured.join(', ')}: validation does not measure ${unmeasured.length === 1 ? 'that class' : 'those classes'}`);
    const balance = planClassBalance(classes, perClass, classes.map((_, c) => valStore.labels.filter((l) => l === c).length), opts.classWeight);
    for (const note of balance.notes) say(note);
    const trainBatches = Math.ceil(trainStore.count / batchSize);
    if (opts.stepsPerEpoch !== undefined && opts.stepsPerEpoch > trainBatches) {
      throw tooManySteps(opts.stepsPerEpoch, trainBatches, `${trainStore.count} readable training images`, batchSize);
    }
    // Validation uses its first validationSteps batches' worth of images, or all of them.
    const valImagesUsed = Math.min(valStore.count, opts.validationSteps === undefined ? valStore.count : opts.validationSteps * batchSize);
    // The images the run reads (unreadable files aside, wherever their folder is) and how many
    // batches it uses: as a resume sees them, with the same step counts however they were given.
    const setup: RunSetup = {
      ...settings,
      'training images': stored ? storedImagesSetting(stored.train) : imagesSetting(train.root, trainStore),
      'validation images': stored?.validation ? storedImagesSetting(stored.validation) : imagesSetting(validation.root, valStore),
      'steps per epoch': opts.stepsPerEpoch ?? trainBatches,
      'validation images used': valImagesUsed,
    };
    if (opts.resume && earlier) checkResumable(out, earlier, setup, epochs);
    pool = AugmentPool.create({ threads: Math.max(1, Math.min(2, availableParallelism())) });
    const pre = preprocessParams(preprocess);
    if (settings['backbone precision'] === 'int8') {
      if (fineTune) throw new GraftError(`${setting('backbonePrecision', 'int8')} does not combine with fine-tuning (the fine-tuned layers train in float): use fp32`);
      const calibration = storeCalibrationSource(trainStore, pre);
      say(`Calibrating the int8 backbone on ${calibration.count} training images`);
      await quantizeBackbone(backbone, calibration);
      stopIfInterrupted('calibrating the int8 backbone');
    }
    const context = (store: ImageStore): FeedContext => ({ store, extractor: backbone!.extractor, pool: pool!, augmentation, pre, classMode, seed });
    const storage: FeatureStorage = {
      budget,
      dir: join(out, FEATURES_FOLDER),
      fingerprint: featureFingerprint(backbone, { inputSize, interpolation, orientation, preprocess }, (store) => (store === trainStore ? train.root : validation.root)),
      onNote: say,
    };

    // Features and the trainer live inside this call only, so their memory is free before the export.
    const trainHead = async (featureShape: number[]) => {
      // The trainer first: created after the features, it measured ~190 MB higher peak memory in a
      // cached lab run (memory the backbone's engine freed is not all handed back to the system).
      try {
        trainer = await HeadTrainer.create(head, initHead(head, featureShape, seed), optimizer, {
          seed,
          featureShape,
          pooledFeatures: backbone!.pooling !== null,
          // Sized to the batches that can occur: no bigger than the training set.
          maxBatch: Math.max(HeadTrainer.DEFAULT_MAX_BATCH, Math.min(batchSize, trainStore.count)),
          classWeights: balance.weights,
        });
      } catch (err) {
        // Memory capped below the machine's (ulimit, a container): say what did not fit.
        if (err instanceof RangeError) {
          throw new GraftError(`not enough memory for the head's weights, optimiser state and batch buffers (${err.message}): use a smaller batch size, fewer units or a gap head`, { cause: err });
        }
        throw err;
      }

      // Cached fine-tuning: each image once through the backbone, to the fine-tuned layer; the head's features derived from there.
      const atLayer = fineTune && mode.kind === 'cached'
        ? await layerFeatures({ backbone: backbone!, segment: trainableSegment(backbone!.graph, fineTune.from, backbone!.inputShape), context, trainStore, valStore, storage, withProgress, say })
        : null;
      opened.push(...(atLayer?.all.map((d) => d.rows) ?? []));
      const t0 = performance.now();
      const valData = stored?.validation ? storedRowsData(stored.validation, classMode)
        : atLayer?.atCut.val ?? await withProgress('Features ', 'computing validation features', (p) => cachedRows(context(valStore), 'validation', storage, p));
      if (!stored?.validation && !atLayer) opened.push(valData.rows);
      if (!atLayer) say(`Validation features of ${valData.count} images computed once (${((performance.now() - t0) / 1000).toFixed(1)}s)`);
      const valUsed = limitSamples(valData, valImagesUsed);

      let source: BatchSource;
      if (mode.kind === 'faithful') {
        source = faithfulSource(context(trainStore), batchSize);
      } else if (mode.kind === 'cached') {
        const t1 = performance.now();
        const cached = stored ? storedRowsData(stored.train, classMode)
          : atLayer?.atCut.train ?? await withProgress('Features ', 'computing training features', (p) => cachedRows(context(trainStore), 'training', storage, p));
        if (!stored && !atLayer) opened.push(cached.rows);
        if (!atLayer) say(`Training features of ${cached.count} images computed once (${((performance.now() - t1) / 1000).toFixed(1)}s)`);
        source = rowsBatchSource(cached, batchSize, { shuffle: true, seed });
      } else {
        const t1 = performance.now();
        const views = await withProgress('Views ', 'computing augmented views', (p) => viewsSource(context(trainStore), batchSize, mode.views, p, storage));
        opened.push(views.rows);
        source = views;
        say(`${mode.views} augmented views of ${trainStore.count} images computed once (${((performance.now() - t1) / 1000).toFixed(1)}s)`);
      }
      source = limitSteps(source, opts.stepsPerEpoch);
      if (mode.kind !== 'faithful') {
        // Every feature the run needs exists now: hand back the engine's arenas and the
        // augmentation threads before the head's training, so they do not add to its peak memory.
        await backbone!.extractor.dispose();
        await pool!.close();
      }

      // Training starts now: an earlier run's outputs go (--overwrite said so), so this folder
      // never holds one run's model beside another's history.
      await startTraining(session);
      let end: TrainEnd = {};
      const history = await fit(trainer, source, valUsed, {
        epochs,
        earlyStopping: opts.earlyStopping,
        verbose,
        showMemory: opts.showMemory,
        signal: opts.signal,
        log,
        checkpoint: { dir: checkpointDir, resume: opts.resume, setup },
        ...(balance.showRecall && { classRecall: classes }),
        lrSchedule: opts.lrSchedule,
        callbacks: {
          // history.json changes with the model, metrics and plots, as one set (commitResults); the
          // epochs done so far are in the checkpoint.
          onEpochEnd: async (epoch, logs) => {
            await opts.onEpochEnd?.(epoch, logs);
          },
          onTrainEnd: (e) => {
            end = e;
          },
        },
      });
      if (fineTune) {
        // The second phase: its own trainer, feeds and checkpoint; the head phase's are released first.
        const saturated = saturatedCachedNote(mode, history);
        if (saturated) say(saturated);
        const headParams = await trainer.syncParams();
        await trainer.dispose();
        trainer = undefined;
        await pool!.close();
        await backbone!.extractor.dispose();
        const phase = await fineTunePhase({
          config: fineTune, backbone: backbone!, head, headParams, optimizer, mode, trainStore, valStore,
          context: { augmentation, pre, classMode, seed }, storage, batchSize, maxBatch: Math.max(HeadTrainer.DEFAULT_MAX_BATCH, Math.min(batchSize, trainStore.count)),
          stepsPerEpoch: opts.stepsPerEpoch, valImagesUsed, epochOffset: history.loss.length, checkpointDir, resume: opts.resume, setup, earlyStopping: opts.earlyStopping, verbose,
          lrSchedule: opts.lrSchedule, classWeights: balance.weights, ...(balance.showRecall && { classRecall: classes }), ...(atLayer && { atLayer: atLayer.atLayer }),
          showMemory: opts.showMemory, signal: opts.signal, log, say, withProgress,
          // history.json changes with the model as one set (commitResults); the epochs so far are in the checkpoints.
          onEpochEnd: async (epoch, logs) => {
            await opts.onEpochEnd?.(history.loss.length + epoch, logs);
          },
        });
        try {
          const joined = joinHistories(history, phase.history);
          const evaluation = await evaluateRows(phase.trainer, phase.valData);
          const metrics = computeMetrics(evaluation.probabilities, Array.from(valStore.labels), classes.length);
          const params = await phase.trainer.syncParams();
          const shift = (e: number | undefined) => (e === undefined ? undefined : history.loss.length + e);
          const tunedEnd: TrainEnd = { ...(phase.end.stoppedEpoch !== undefined && { stoppedEpoch: shift(phase.end.stoppedEpoch) }), ...(phase.end.restoredEpoch !== undefined && { restoredEpoch: shift(phase.end.restoredEpoch) }) };
          return { history: joined, metrics, params, end: tunedEnd, weights: tunedWeights(backbone!.weights, phase.segment, params.backbone!) };
        } finally {
          await phase.dispose();
        }
      }
      const evaluation = await evaluateRows(trainer, valData);
      const trueLabels = Array.from(valStore.labels);
      const metrics = computeMetrics(evaluation.probabilities, trueLabels, classes.length);
      const params = await trainer!.syncParams();
      await trainer!.dispose();
      trainer = undefined;
      return { history, metrics, params, end, weights: backbone!.weights };
    };
    const { history, metrics, params, end, weights } = await trainHead(backbone.outputShape);
    await pool.close();
    pool = undefined;
    await backbone.extractor.dispose();

    const info: ClassifierInfo = {
      format: 'graft-classifier',
      version: 1,
      classes,
      classMode,
      inputSize,
      preprocess,
      interpolation,
      ...(orientation === 'exif' ? { orientation } : {}),
      cut: backbone.graph.outputs[0]!,
      head,
      backbone: weightsSourceName(backbone.source),
      trainingMode: feedModeName(mode),
      ...(backbone.precision === 'int8' ? { backbonePrecision: 'int8' as const, int8Calibration: backbone.int8Ranges } : {}),
    };
    await commitResults(session, async (staging) => {
      await writeHistory(join(staging, 'history.json'), history);
      await plotHistory(history, staging);
      await writeEvaluation(staging, metrics, { classes, files: [...valStore.paths], trainingCounts: perClass });
      await exportClassifier({ ...backbone!, weights }, head, params, info, staging);
    });
    const modelDir = join(out, 'model'), onnxFile = join(out, 'model.onnx');
    await markCheckpointFinished(checkpointDir);
    say(`Saved the classifier to ${modelDir} (TF.js) and ${onnxFile} (ONNX); plots and metrics in ${out}`);
    return { history, metrics, classes, out, modelDir, onnxFile, end };
  } finally {
    for (const rows of opened) await rows.close();
    await trainer?.dispose();
    await pool?.close();
    await backbone?.dispose();
  }
}

/**
 * Working memory of the backbone (InceptionV3 to mixed7) per input pixel of a batch: its
 * activations at 150x150 sum to ~25 MB an image (~1100 bytes a pixel), not all alive at once.
 */
const BACKBONE_BYTES_PER_PIXEL = 1000;

/**
 * Refuses an input size whose batches would not fit in half this machine's memory, before any
 * work (it would end in an allocation failure with no word of why).
 */
export function checkInputSizeFits(inputSize: [number, number], batchSize: number): void {
  const flagsOrOption = (side: number) => (optionName('inputSize') === 'inputSize' ? `inputSize: [${side}, ${side}]` : setting('inputSize', `${side}x${side}`));
  const [h, w] = inputSize;
  const need = h * w * batchSize * BACKBONE_BYTES_PER_PIXEL;
  const room = totalmem() / 2;
  if (need > room) {
    const side = Math.floor(Math.sqrt(room / (batchSize * BACKBONE_BYTES_PER_PIXEL)));
    const gb = (b: number) => (b / 2 ** 30).toFixed(1);
    throw new GraftError(
      `an input size of ${h}x${w} in batches of ${batchSize} needs about ${gb(need)} GB for the backbone, more than half this machine's ${gb(totalmem())} GB of memory: use ${flagsOrOption(side)} or smaller, or a smaller ${optionName('batchSize')}`,
    );
  }
}

/**
 * Refuses a head whose weights and optimiser slots alone would not fit in this machine's memory,
 * before minutes of decoding (such a head would end in an allocation failure with no word of why).
 */
function checkHeadFits(head: HeadSpec, featureShape: number[], optimizer: OptimizerConfig): void {
  const weights = denseShapes(head, featureShape).reduce((n, d) => n + d.inputSize * d.units + d.units, 0);
  const bytes = weights * 4 * (1 + slotCount(resolveOptimizer(optimizer)));
  if (bytes > totalmem()) {
    const gb = (b: number) => (b / 2 ** 30).toFixed(1);
    throw new GraftError(
      `the head has ${weights.toLocaleString('en-US')} weights: with the optimiser's state that is ${gb(bytes)} GB, more than this machine's ${gb(totalmem())} GB of memory; use fewer units or a gap head`,
    );
  }
}

/** Writes the whole classifier (backbone up to the cut + trained head) as TF.js and ONNX. */
export async function exportClassifier(
  backbone: Backbone,
  head: HeadSpec,
  params: Awaited<ReturnType<HeadTrainer['syncParams']>>,
  info: ClassifierInfo,
  out: string,
): Promise<{ modelDir: string; onnxFile: string }> {
  const graph = buildClassifierGraph(backbone.graph, head);
  const names = headLayerNames(head, new Set(backbone.graph.layers.map((l) => l.name)));
  const weights = new Map([...backbone.weights, ...headToWeightMap(head, params, names)]);
  const modelDir = join(out, 'model');
  await writeTfjsLayersModel(graph, weights, modelDir, { inputSize: info.inputSize, metadata: { graft: info } });
  const onnxFile = join(out, 'model.onnx');
  await writeFileAtomic(onnxFile, classifierOnnx(kerasToOnnx(graph, weights, { inputSize: info.inputSize, outputName: 'probabilities', metadata: { graft: JSON.stringify(info) } }), info));
  return { modelDir, onnxFile };
}
