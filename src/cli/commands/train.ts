import { BACKBONE_PRECISIONS, type BackbonePrecision } from '../../backbone/int8.js';
import type { Command } from 'commander';
import { parseHeadSpec } from '../../model/head-spec-parse.js';
import { LAB_RECIPE, LAB_STEPS, trainClassifier, type TrainOptions } from '../../learner.js';
import { describeRecipes, RECIPE_NAMES, recipeByName, type RecipeName, type RecipeSettings } from '../../train/recipes.js';
import type { OptimizerConfig } from '../../train/optimizers.js';
import { feedModeName, parseFeedMode } from '../../train/feature-sources.js';
import { NO_AUGMENTATION } from '../../data/augment.js';
import { PREPROCESS_NAMES, type PreprocessName } from '../../data/preprocess.js';
import { INTERPOLATIONS, ORIENTATIONS, type Interpolation, type Orientation } from '../../data/decode.js';
import { resolveLabDataset } from '../../data/lab-dataset.js';
import { bytesOption, choiceOption, floatOption, fractionOption, interruptSignal, intOption, MAX_SEED, sizeOption } from '../options.js';
import { GraftError } from '../../util/errors.js';
import { MONITORS, type Monitor } from '../../train/early-stopping.js';
import { LR_SCHEDULES, type LrScheduleConfig } from '../../train/lr-schedule.js';
import { parseClassWeight, type ClassWeightSetting } from '../../train/class-weights.js';

interface TrainFlags {
  data?: string;
  features?: string;
  valFeatures?: string;
  val?: string;
  labels?: string;
  valLabels?: string;
  fileColumn?: string;
  labelColumn?: string;
  validationSplit?: number;
  splitOrder?: 'keras' | 'shuffled';
  followSymlinks?: boolean;
  out: string;
  recipe?: RecipeName;
  weights?: string;
  // The recipe's settings: unset (train) takes the recipe's; graft lab sets them to the lab's.
  cut?: string;
  backbonePrecision?: BackbonePrecision;
  inputSize?: string;
  head?: string;
  optimizer?: (typeof OPTIMIZER_NAMES)[number];
  lr?: number;
  momentum?: number;
  epochs?: number;
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
  batchSize?: number;
  steps?: number;
  validationSteps?: number;
  mode?: string;
  augment: boolean;
  preprocess?: PreprocessName;
  interpolation?: Interpolation;
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

/**
 * The knobs `graft train` and `graft lab` share. With `recipe` (graft lab), the recipe's values
 * are the flags' defaults; without (graft train), unset flags take the --recipe's.
 */
function addTrainingOptions(cmd: Command, defaults: { out: string; steps?: number; validationSteps?: number; recipe?: RecipeSettings }): Command {
  const r = defaults.recipe;
  const fromRecipe = r ? '' : " (default: the recipe's)";
  return cmd
    .option('--out <dir>', 'where results, checkpoints and the model go', defaults.out)
    .option('--weights <spec>', "backbone weights: 'imagenet', a Keras .h5 / .weights.h5 / .keras file or a TF.js model folder", 'imagenet')
    .option('--cut <layer>', `backbone layer the head sits on${fromRecipe}`, r?.cut)
    .option('--backbone-precision <p>', "fp32, or int8: the backbone quantised (onnxruntime static QDQ, calibrated on 300 training images; ~2x faster, docs/int8.md)", choiceOption('backbone-precision', BACKBONE_PRECISIONS), 'fp32')
    .option('--input-size <HxW>', `image size, e.g. 150 or 150x150${fromRecipe}`, r && r.inputSize.join('x'))
    .option('--head <spec>', `head layers, e.g. 'flatten,dense:1024:relu,dropout:0.2,dense:1:sigmoid' or 'gap,dense:256:relu' or 'avgpool:7:5,flatten,dense:256:relu' (a 3x3 grid of mixed7 at 299); the output layer (dense:1:sigmoid for 2 classes, dense:K:softmax for K) is added or fitted to the number of classes${fromRecipe}`)
    .option('--optimizer <name>', `rmsprop (Keras 3 / TF >= 2.11), rmsprop-legacy (tf.keras.optimizers.legacy.RMSprop), adam or sgd${fromRecipe}`, choiceOption('optimizer', OPTIMIZER_NAMES), r && optimizerName(r.optimizer))
    .option('--lr <rate>', `learning rate${fromRecipe}`, floatOption('lr', 0, 10, { aboveMin: true }), r?.optimizer.learningRate)
    .option('--momentum <m>', 'SGD momentum', floatOption('momentum', 0, 1))
    .option('--epochs <n>', `epochs${fromRecipe}`, intOption('epochs', 1, 100_000), r?.epochs)
    .option('--early-stopping <patience>', 'stop once --monitor has not improved for <patience> epochs (Keras EarlyStopping; off by default, as in the lab)', intOption('early-stopping', 0, 100_000))
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
    .option('--batch-size <n>', `batch size${fromRecipe}`, intOption('batch-size', 1, 256), r?.batchSize)
    // Commander appends "(default: N)" when there is a default; say "one pass"/"all" only when there is none.
    .option('--steps <n>', `batches per epoch (Keras steps_per_epoch${defaults.steps === undefined ? '; default: one pass' : ''})`, intOption('steps', 1, 1e9), defaults.steps)
    .option('--validation-steps <n>', `validation batches per epoch${defaults.validationSteps === undefined ? ' (default: all)' : ''}`, intOption('validation-steps', 1, 1e9), defaults.validationSteps)
    .option('--mode <mode>', `faithful (fresh augmentation every step), cached (no augmentation, features once) or views=K${fromRecipe}`, r && feedModeName(r.mode))
    .option('--no-augment', "train without the lab's augmentation")
    .option('--preprocess <name>', `pixel scaling: ${PREPROCESS_NAMES.join(' (x/255, the lab) or ')} (x/127.5-1, InceptionV3's own)${fromRecipe}`, choiceOption('preprocess', PREPROCESS_NAMES), r?.preprocess)
    .option('--interpolation <name>', `resize filter (nearest like Keras load_img)${fromRecipe}`, choiceOption('interpolation', INTERPOLATIONS), r?.interpolation)
    .option('--orientation <how>', "EXIF orientation: 'ignore' (pixels as stored, like Keras) or 'exif' (photos turned upright, as browsers show them; saved with the model for predict)", choiceOption('orientation', ORIENTATIONS), 'ignore')
    .option('--seed <n>', 'random seed', intOption('seed', 0, MAX_SEED), 0)
    .option('--memory-budget <size>', 'memory for decoded images and features, all together (e.g. 512M, 4G; default 1G): what does not fit stays on disk (features in --out/features/, reused by --resume and later runs on the same images)', bytesOption('memory-budget'))
    .option('--resume', 'continue from the checkpoint in --out')
    .option('--overwrite', 'start afresh even if --out holds an earlier run (finished or not); its outputs are removed as training starts')
    .option('--on-bad-image <what>', 'skip (warn and leave out) or error', choiceOption('on-bad-image', ['skip', 'error'] as const), 'skip')
    .option('--verbose', 'also print memory use per epoch')
    .option('--quiet', 'no progress bars (epoch lines, warnings and notes only)');
}

function optimizerName(cfg: OptimizerConfig): (typeof OPTIMIZER_NAMES)[number] {
  return cfg.kind === 'rmsprop' && cfg.legacy ? 'rmsprop-legacy' : cfg.kind;
}

/** The optimiser the flags ask for: the recipe's, with --optimizer and --lr in its place; unset if neither is given. */
function optimizerFromFlags(flags: TrainFlags, recipe: RecipeSettings): OptimizerConfig | undefined {
  if (flags.optimizer === undefined && flags.lr === undefined) return undefined;
  const kind = flags.optimizer ?? optimizerName(recipe.optimizer);
  const lr = flags.lr ?? recipe.optimizer.learningRate ?? 1e-4;
  return kind === 'sgd' ? { kind: 'sgd', learningRate: lr, momentum: flags.momentum ?? 0 }
    : kind === 'adam' ? { kind: 'adam', learningRate: lr }
    : { kind: 'rmsprop', learningRate: lr, legacy: kind === 'rmsprop-legacy' };
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

async function runTraining(flags: TrainFlags, data: string | undefined, recipeName: RecipeName): Promise<void> {
  const recipe = recipeByName(recipeName);
  if ((data === undefined) === (flags.features === undefined)) throw new GraftError(data === undefined ? 'give the images (--data DIR) or their features (--features STORE)' : '--features replaces --data: give one of them');
  if (flags.valFeatures !== undefined && flags.features === undefined) throw new GraftError('--val-features applies to --features only');
  if (!flags.labels && (flags.valLabels || flags.fileColumn || flags.labelColumn)) throw new GraftError('--val-labels, --file-column and --label-column apply to --labels only');
  if (flags.splitOrder !== undefined && flags.validationSplit === undefined) throw new GraftError('--split-order applies to --validation-split only');
  const optimizer = flags.optimizer ?? optimizerName(recipe.optimizer);
  if (flags.momentum !== undefined && optimizer !== 'sgd') {
    throw new GraftError(`--momentum applies to --optimizer sgd only (this run uses ${optimizer})`);
  }
  const stoppingFlags = [flags.monitor !== undefined && '--monitor', flags.minDelta !== undefined && '--min-delta', flags.restoreBestWeights && '--restore-best-weights'].filter(Boolean);
  if (flags.earlyStopping === undefined && stoppingFlags.length > 0) {
    throw new GraftError(`${stoppingFlags.join(' and ')} ${stoppingFlags.length === 1 ? 'applies' : 'apply'} to --early-stopping only (e.g. --early-stopping 3)`);
  }
  const tuneFlags = [flags.fineTuneEpochs !== undefined && '--fine-tune-epochs', flags.fineTuneLr !== undefined && '--fine-tune-lr'].filter(Boolean);
  if (flags.fineTune === undefined && tuneFlags.length > 0) {
    throw new GraftError(`${tuneFlags.join(' and ')} ${tuneFlags.length === 1 ? 'applies' : 'apply'} to --fine-tune only (e.g. --fine-tune mixed6)`);
  }
  const mode = flags.mode === undefined ? undefined : parseFeedMode(flags.mode);
  if ((mode ?? recipe.mode).kind === 'views' && !flags.augment) {
    throw new GraftError(`--mode ${feedModeName(mode ?? recipe.mode)} with --no-augment: the views would all be the same image; use --mode cached`);
  }
  const options: TrainOptions = {
    data: data ?? '',
    features: flags.features,
    validationFeatures: flags.valFeatures,
    validationData: flags.val,
    labels: flags.labels,
    validationLabels: flags.valLabels,
    fileColumn: flags.fileColumn,
    labelColumn: flags.labelColumn,
    validationSplit: flags.validationSplit,
    splitOrder: flags.splitOrder,
    followSymlinks: flags.followSymlinks,
    out: flags.out,
    recipe: recipeName,
    weights: flags.weights,
    cut: flags.cut,
    backbonePrecision: flags.backbonePrecision,
    inputSize: flags.inputSize === undefined ? undefined : sizeOption(flags.inputSize),
    head: flags.head ? parseHeadSpec(flags.head) : undefined,
    optimizer: optimizerFromFlags(flags, recipe),
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
  };
  // Listening for Ctrl-C only once every flag is read (a bad one throws above, leaving no listener behind).
  const { signal, release } = interruptSignal((received) =>
    process.stderr.write(`\nstopping at the next step${received === 'SIGINT' ? ' (Ctrl-C again to quit at once)' : ''}; checkpoints already written stay intact\n`),
  );
  options.signal = signal;
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
    .option('--data <dir>', 'class folders, or a folder with train/ and validation/')
    .option('--features <store>', 'train on a feature store written by graft features instead of --data (cached mode; its settings must be this run\'s)')
    .option('--val-features <store>', 'with --features: validation features from a store (else --val images)')
    .option('--val <dir>', 'validation class folders (with --val-labels: the folder its paths are relative to)')
    .option('--labels <file>', "labels from a table instead of class folders (Keras flow_from_dataframe): a .csv, .tsv or .jsonl file whose 'filename' column names images relative to --data and whose 'class' column names their class")
    .option('--val-labels <file>', 'validation labels from a table like --labels')
    .option('--file-column <name>', 'the table column of image paths (default: filename)')
    .option('--label-column <name>', 'the table column of class names (default: class)')
    .option('--validation-split <f>', 'hold out this fraction of each class for validation (between 0 and 1, e.g. 0.2)', fractionOption('validation-split'))
    .option('--split-order <order>', "which images --validation-split holds out: 'keras' (the first of each class, like Keras) or 'shuffled' (drawn with --seed)", choiceOption('split-order', ['keras', 'shuffled'] as const))
    .option('--follow-symlinks', 'descend into linked folders (Keras follow_links)')
    .option('--recipe <name>', `the settings every flag below left unset takes: ${RECIPE_NAMES.join(' or ')} (listed below)`, choiceOption('recipe', RECIPE_NAMES), 'default');
  addTrainingOptions(cmd, { out: 'runs/train' })
    .addHelpText('after', ['', 'Recipes (--recipe; each flag given overrides that setting; the measurements: docs/recipes.md):', ...describeRecipes().map((l) => `  ${l}`)].join('\n'))
    .action((flags: TrainFlags) => runTraining(flags, flags.data, flags.recipe ?? 'default'));
}

export function registerLab(program: Command): void {
  const cmd = program
    .command('lab')
    .description("Reproduce the Keras transfer-learning lab: InceptionV3 cut at mixed7, Flatten-1024-Dropout-sigmoid head, cats vs dogs")
    .option('--data <dir>', 'the lab dataset (a folder with train/ and validation/); default $GRAFT_LAB_DATA, else the lab zip, downloaded once into the cache');
  addTrainingOptions(cmd, { out: 'runs/lab', steps: LAB_STEPS.stepsPerEpoch, validationSteps: LAB_STEPS.validationSteps, recipe: LAB_RECIPE }).action(async (flags: TrainFlags) =>
    runTraining(flags, await resolveLabDataset({ data: flags.data }), 'lab'),
  );
}
