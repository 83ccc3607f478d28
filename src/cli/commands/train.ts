import type { Command } from 'commander';
import { parseHeadSpec } from '../../model/head-spec-parse.js';
import { LAB_RECIPE, LAB_STEPS, trainClassifier, type TrainOptions } from '../../learner.js';
import { parseFeedMode } from '../../train/feature-sources.js';
import { NO_AUGMENTATION } from '../../data/augment.js';
import { PREPROCESS_NAMES, type PreprocessName } from '../../data/preprocess.js';
import { INTERPOLATIONS, ORIENTATIONS, type Interpolation, type Orientation } from '../../data/decode.js';
import { resolveLabDataset } from '../../data/lab-dataset.js';
import { bytesOption, choiceOption, floatOption, fractionOption, interruptSignal, intOption, sizeOption } from '../options.js';
import { GraftError } from '../../util/errors.js';
import { MONITORS, type Monitor } from '../../train/early-stopping.js';
import { LR_SCHEDULES, type LrScheduleConfig } from '../../train/lr-schedule.js';
import { parseClassWeight, type ClassWeightSetting } from '../../train/class-weights.js';

interface TrainFlags {
  data?: string;
  val?: string;
  labels?: string;
  valLabels?: string;
  fileColumn?: string;
  labelColumn?: string;
  validationSplit?: number;
  splitOrder?: 'keras' | 'shuffled';
  followSymlinks?: boolean;
  out: string;
  weights?: string;
  cut: string;
  inputSize: string;
  head?: string;
  optimizer: (typeof OPTIMIZER_NAMES)[number];
  lr: number;
  momentum?: number;
  epochs: number;
  earlyStopping?: number;
  classWeight?: ClassWeightSetting;
  lrSchedule?: (typeof LR_SCHEDULES)[number];
  lrFactor?: number;
  lrPatience?: number;
  minLr?: number;
  monitor?: Monitor;
  minDelta?: number;
  restoreBestWeights?: boolean;
  fineTune?: string;
  fineTuneEpochs?: number;
  fineTuneLr?: number;
  batchSize: number;
  steps?: number;
  validationSteps?: number;
  mode: string;
  augment: boolean;
  preprocess: PreprocessName;
  interpolation: Interpolation;
  orientation: Orientation;
  seed: number;
  memoryBudget?: number;
  resume?: boolean;
  overwrite?: boolean;
  onBadImage: 'skip' | 'error';
  verbose?: boolean;
  quiet?: boolean;
}

const OPTIMIZER_NAMES = ['rmsprop', 'rmsprop-legacy', 'adam', 'sgd'] as const;

/** The knobs `graft train` and `graft lab` share, with the lab's values as defaults. */
function addTrainingOptions(cmd: Command, defaults: { out: string; steps?: number; validationSteps?: number }): Command {
  return cmd
    .option('--out <dir>', 'where results, checkpoints and the model go', defaults.out)
    .option('--weights <spec>', "backbone weights: 'imagenet', a Keras .h5 / .weights.h5 / .keras file or a TF.js model folder", 'imagenet')
    .option('--cut <layer>', 'backbone layer the head sits on', LAB_RECIPE.cut)
    .option('--input-size <HxW>', 'image size, e.g. 150 or 150x150', '150x150')
    .option('--head <spec>', "head layers, e.g. 'flatten,dense:1024:relu,dropout:0.2,dense:1:sigmoid' or 'gap,dense:256:relu'; the output layer (dense:1:sigmoid for 2 classes, dense:K:softmax for K) is added or fitted to the number of classes")
    .option('--optimizer <name>', 'rmsprop (Keras 3 / TF >= 2.11), rmsprop-legacy (tf.keras.optimizers.legacy.RMSprop), adam or sgd', choiceOption('optimizer', OPTIMIZER_NAMES), 'rmsprop')
    .option('--lr <rate>', 'learning rate', floatOption('lr', 0, 10, { aboveMin: true }), 1e-4)
    .option('--momentum <m>', 'SGD momentum', floatOption('momentum', 0, 1))
    .option('--epochs <n>', 'epochs', intOption('epochs', 1), LAB_RECIPE.epochs)
    .option('--early-stopping <patience>', 'stop once --monitor has not improved for <patience> epochs (Keras EarlyStopping; off by default, as in the lab)', intOption('early-stopping', 0))
    .option('--monitor <figure>', `what early stopping watches: ${MONITORS.join(', ')} (default: val_loss)`, choiceOption('monitor', MONITORS))
    .option('--min-delta <d>', 'smallest change of --monitor that counts as an improvement (default: 0)', floatOption('min-delta', 0, Number.MAX_VALUE))
    .option('--restore-best-weights', "with --early-stopping: evaluate and export the best epoch's weights, not the last's")
    .option('--fine-tune <layer>', 'after the head, a second phase training the backbone layers after <layer> (e.g. mixed6) up to the cut with it (BatchNormalization kept frozen, as Keras)')
    .option('--fine-tune-epochs <n>', 'epochs of the --fine-tune phase (default: 10)', intOption('fine-tune-epochs', 1))
    .option('--fine-tune-lr <rate>', 'learning rate of the --fine-tune phase (default: 1e-5, as Keras\'s transfer-learning guide)', floatOption('fine-tune-lr', 0, 10, { aboveMin: true }))
    .option('--lr-schedule <name>', "the learning rate epoch by epoch: constant (the lab's), cosine (half a cosine down to --min-lr over the epochs) or plateau (Keras ReduceLROnPlateau on --monitor: times --lr-factor after --lr-patience epochs without improvement)", choiceOption('lr-schedule', LR_SCHEDULES))
    .option('--lr-factor <f>', 'plateau: factor the rate is multiplied by (default: 0.1, as Keras)', floatOption('lr-factor', 0, 1, { aboveMin: true }))
    .option('--lr-patience <n>', 'plateau: epochs without improvement before the rate falls (default: 10, as Keras)', intOption('lr-patience', 0))
    .option('--min-lr <rate>', 'cosine and plateau: the lowest rate (default: 0)', floatOption('min-lr', 0, 10))
    .option('--class-weight <w>', "weigh each class's loss for unbalanced classes: 'balanced' (n_samples / (n_classes * count), as scikit-learn and Keras users compute it) or NAME=WEIGHT pairs, e.g. 'cats=4,dogs=1' (others 1)", parseClassWeight)
    .option('--batch-size <n>', 'batch size', intOption('batch-size', 1, 256), LAB_RECIPE.batchSize)
    // Commander appends "(default: N)" when there is a default; say "one pass"/"all" only when there is none.
    .option('--steps <n>', `batches per epoch (Keras steps_per_epoch${defaults.steps === undefined ? '; default: one pass' : ''})`, intOption('steps', 1), defaults.steps)
    .option('--validation-steps <n>', `validation batches per epoch${defaults.validationSteps === undefined ? ' (default: all)' : ''}`, intOption('validation-steps', 1), defaults.validationSteps)
    .option('--mode <mode>', 'faithful (fresh augmentation every step), cached (no augmentation, features once) or views=K', 'faithful')
    .option('--no-augment', "train without the lab's augmentation")
    .option('--preprocess <name>', `pixel scaling: ${PREPROCESS_NAMES.join(' (x/255, the lab) or ')} (x/127.5-1, InceptionV3's own)`, choiceOption('preprocess', PREPROCESS_NAMES), LAB_RECIPE.preprocess)
    .option('--interpolation <name>', 'resize filter (nearest like Keras load_img)', choiceOption('interpolation', INTERPOLATIONS), LAB_RECIPE.interpolation)
    .option('--orientation <how>', "EXIF orientation: 'ignore' (pixels as stored, like Keras) or 'exif' (photos turned upright, as browsers show them; saved with the model for predict)", choiceOption('orientation', ORIENTATIONS), 'ignore')
    .option('--seed <n>', 'random seed', intOption('seed', 0), 0)
    .option('--memory-budget <size>', 'memory for decoded images and features, all together (e.g. 512M, 4G; default 1G): what does not fit stays on disk (features in --out/features/, reused by --resume and later runs on the same images)', bytesOption('memory-budget'))
    .option('--resume', 'continue from the checkpoint in --out')
    .option('--overwrite', 'start afresh even if --out holds an earlier run (finished or not); its outputs are removed as training starts')
    .option('--on-bad-image <what>', 'skip (warn and leave out) or error', choiceOption('on-bad-image', ['skip', 'error'] as const), 'skip')
    .option('--verbose', 'also print memory use per epoch')
    .option('--quiet', 'no progress bars (epoch lines, warnings and notes only)');
}

function lrScheduleOf(flags: TrainFlags): LrScheduleConfig | undefined {
  const plateauOnly = [flags.lrFactor !== undefined && '--lr-factor', flags.lrPatience !== undefined && '--lr-patience'].filter(Boolean);
  if (plateauOnly.length > 0 && flags.lrSchedule !== 'plateau') throw new GraftError(`${plateauOnly.join(' and ')} apply to --lr-schedule plateau only`);
  if (flags.minLr !== undefined && flags.lrSchedule !== 'plateau' && flags.lrSchedule !== 'cosine') throw new GraftError('--min-lr applies to --lr-schedule cosine or plateau only');
  switch (flags.lrSchedule) {
    case undefined:
      return undefined;
    case 'plateau':
      // Its monitor is early stopping's when given (--monitor), else val_loss, as Keras's default.
      return { kind: 'plateau', monitor: flags.monitor, factor: flags.lrFactor, patience: flags.lrPatience, minLr: flags.minLr };
    case 'cosine':
      return { kind: 'cosine', minLr: flags.minLr };
    default:
      return { kind: 'constant' };
  }
}

async function runTraining(flags: TrainFlags, data: string): Promise<void> {
  if (!flags.labels && (flags.valLabels || flags.fileColumn || flags.labelColumn)) throw new GraftError('--val-labels, --file-column and --label-column apply to --labels only');
  if (flags.splitOrder !== undefined && flags.validationSplit === undefined) throw new GraftError('--split-order applies to --validation-split only');
  if (flags.momentum !== undefined && flags.optimizer !== 'sgd') {
    throw new GraftError(`--momentum applies to --optimizer sgd only (this run uses ${flags.optimizer})`);
  }
  const stoppingFlags = [flags.monitor !== undefined && '--monitor', flags.minDelta !== undefined && '--min-delta', flags.restoreBestWeights && '--restore-best-weights'].filter(Boolean);
  if (flags.earlyStopping === undefined && stoppingFlags.length > 0) {
    throw new GraftError(`${stoppingFlags.join(' and ')} ${stoppingFlags.length === 1 ? 'applies' : 'apply'} to --early-stopping only (e.g. --early-stopping 3)`);
  }
  const tuneFlags = [flags.fineTuneEpochs !== undefined && '--fine-tune-epochs', flags.fineTuneLr !== undefined && '--fine-tune-lr'].filter(Boolean);
  if (flags.fineTune === undefined && tuneFlags.length > 0) {
    throw new GraftError(`${tuneFlags.join(' and ')} ${tuneFlags.length === 1 ? 'applies' : 'apply'} to --fine-tune only (e.g. --fine-tune mixed6)`);
  }
  const mode = parseFeedMode(flags.mode);
  if (mode.kind === 'views' && !flags.augment) {
    throw new GraftError(`--mode views=${mode.views} with --no-augment: the views would all be the same image; use --mode cached`);
  }
  const { signal, release } = interruptSignal((received) =>
    process.stderr.write(`\nstopping at the next step${received === 'SIGINT' ? ' (Ctrl-C again to quit at once)' : ''}; checkpoints already written stay intact\n`),
  );
  const options: TrainOptions = {
    data,
    validationData: flags.val,
    labels: flags.labels,
    validationLabels: flags.valLabels,
    fileColumn: flags.fileColumn,
    labelColumn: flags.labelColumn,
    validationSplit: flags.validationSplit,
    splitOrder: flags.splitOrder,
    followSymlinks: flags.followSymlinks,
    out: flags.out,
    weights: flags.weights,
    cut: flags.cut,
    inputSize: sizeOption(flags.inputSize),
    head: flags.head ? parseHeadSpec(flags.head) : undefined,
    optimizer:
      flags.optimizer === 'sgd' ? { kind: 'sgd', learningRate: flags.lr, momentum: flags.momentum ?? 0 }
      : flags.optimizer === 'adam' ? { kind: 'adam', learningRate: flags.lr }
      : { kind: 'rmsprop', learningRate: flags.lr, legacy: flags.optimizer === 'rmsprop-legacy' },
    epochs: flags.epochs,
    earlyStopping:
      flags.earlyStopping === undefined
        ? undefined
        : { patience: flags.earlyStopping, monitor: flags.monitor, minDelta: flags.minDelta, restoreBestWeights: flags.restoreBestWeights === true },
    fineTune: flags.fineTune === undefined ? undefined : { from: flags.fineTune, epochs: flags.fineTuneEpochs, learningRate: flags.fineTuneLr },
    classWeight: flags.classWeight,
    lrSchedule: lrScheduleOf(flags),
    batchSize: flags.batchSize,
    stepsPerEpoch: flags.steps,
    validationSteps: flags.validationSteps,
    mode,
    augmentation: flags.augment ? undefined : NO_AUGMENTATION,
    preprocess: flags.preprocess,
    interpolation: flags.interpolation,
    orientation: flags.orientation,
    seed: flags.seed,
    memoryBudget: flags.memoryBudget,
    resume: flags.resume,
    overwrite: flags.overwrite,
    onBadImage: flags.onBadImage,
    verbose: flags.quiet ? 2 : 1,
    showMemory: flags.verbose,
    signal,
  };
  try {
    const result = await trainClassifier(options);
    const { history, end } = result;
    // The figures of the weights the model holds: the last epoch's, or the best one's if restored.
    const kept = end.restoredEpoch ?? history.val_accuracy.length - 1;
    const label = end.restoredEpoch === undefined ? 'final' : `best epoch ${kept + 1} (its weights restored):`;
    console.log(`${label} val_accuracy: ${history.val_accuracy[kept]?.toFixed(4)} - val_loss: ${history.val_loss[kept]?.toFixed(4)}`);
  } finally {
    release();
  }
}

export function registerTrain(program: Command): void {
  const cmd = program
    .command('train')
    .description('Train a classifier on any folder of labelled images (one sub-folder per class)')
    .requiredOption('--data <dir>', 'class folders, or a folder with train/ and validation/')
    .option('--val <dir>', 'validation class folders (with --val-labels: the folder its paths are relative to)')
    .option('--labels <file>', "labels from a table instead of class folders (Keras flow_from_dataframe): a .csv, .tsv or .jsonl file whose 'filename' column names images relative to --data and whose 'class' column names their class")
    .option('--val-labels <file>', 'validation labels from a table like --labels')
    .option('--file-column <name>', 'the table column of image paths (default: filename)')
    .option('--label-column <name>', 'the table column of class names (default: class)')
    .option('--validation-split <f>', 'hold out this fraction of each class for validation (between 0 and 1, e.g. 0.2)', fractionOption('validation-split'))
    .option('--split-order <order>', "which images --validation-split holds out: 'keras' (the first of each class, like Keras) or 'shuffled' (drawn with --seed)", choiceOption('split-order', ['keras', 'shuffled'] as const))
    .option('--follow-symlinks', 'descend into linked folders (Keras follow_links)');
  addTrainingOptions(cmd, { out: 'runs/train' }).action((flags: TrainFlags) => runTraining(flags, flags.data!));
}

export function registerLab(program: Command): void {
  const cmd = program
    .command('lab')
    .description("Reproduce the Keras transfer-learning lab: InceptionV3 cut at mixed7, Flatten-1024-Dropout-sigmoid head, cats vs dogs")
    .option('--data <dir>', 'the lab dataset (a folder with train/ and validation/); default $GRAFT_LAB_DATA, else the lab zip, downloaded once into the cache');
  addTrainingOptions(cmd, { out: 'runs/lab', steps: LAB_STEPS.stepsPerEpoch, validationSteps: LAB_STEPS.validationSteps }).action(async (flags: TrainFlags) =>
    runTraining(flags, await resolveLabDataset({ data: flags.data })),
  );
}
