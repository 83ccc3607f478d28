import type { Command } from 'commander';
import { findLearningRate } from '../../lr-finder.js';
import { parseHeadSpec } from '../../model/head-spec-parse.js';
import { LAB_RECIPE } from '../../learner.js';
import { PREPROCESS_NAMES, type PreprocessName } from '../../data/preprocess.js';
import { parseClassWeight, type ClassWeightSetting } from '../../train/class-weights.js';
import { choiceOption, floatOption, fractionOption, interruptSignal, intOption, sizeOption } from '../options.js';

interface LrFindFlags {
  data: string;
  labels?: string;
  fileColumn?: string;
  labelColumn?: string;
  validationSplit?: number;
  out: string;
  weights: string;
  cut: string;
  inputSize: string;
  head?: string;
  optimizer: 'rmsprop' | 'adam' | 'sgd';
  batchSize: number;
  preprocess: PreprocessName;
  classWeight?: ClassWeightSetting;
  startLr: number;
  endLr: number;
  numIt: number;
  seed: number;
}

/** `graft lr-find`: fastai's learning-rate range test on the user's images, with a plot. */
export function registerLrFind(program: Command): void {
  program
    .command('lr-find')
    .description("Learning-rate range test (fastai's lr_find): train the head briefly at an exponentially growing rate, plot the loss, suggest a rate")
    .requiredOption('--data <dir>', 'class folders (or, with --labels, the folder of the images)')
    .option('--labels <file>', 'labels from a .csv, .tsv or .jsonl table (filename, class)')
    .option('--file-column <name>', 'the table column of image paths (default: filename)')
    .option('--label-column <name>', 'the table column of class names (default: class)')
    .option('--validation-split <f>', 'leave out the validation part a training run would hold out', fractionOption('validation-split'))
    .option('--out <dir>', 'where lr-find.png and lr-find.json go', 'runs/lr-find')
    .option('--weights <spec>', "backbone weights (as graft train)", 'imagenet')
    .option('--cut <layer>', 'backbone layer the head sits on', LAB_RECIPE.cut)
    .option('--input-size <HxW>', 'image size', '150x150')
    .option('--head <spec>', 'head layers, as graft train')
    .option('--optimizer <name>', 'rmsprop, adam or sgd', choiceOption('optimizer', ['rmsprop', 'adam', 'sgd'] as const), 'rmsprop')
    .option('--batch-size <n>', 'batch size', intOption('batch-size', 1, 256), LAB_RECIPE.batchSize)
    .option('--preprocess <name>', `pixel scaling: ${PREPROCESS_NAMES.join(' or ')}`, choiceOption('preprocess', PREPROCESS_NAMES), LAB_RECIPE.preprocess)
    .option('--class-weight <w>', "'balanced' or NAME=WEIGHT pairs, as graft train", parseClassWeight)
    .option('--start-lr <rate>', 'the first rate tried', floatOption('start-lr', 0, 10, { aboveMin: true }), 1e-7)
    .option('--end-lr <rate>', 'the last rate tried', floatOption('end-lr', 0, 1000, { aboveMin: true }), 10)
    .option('--num-it <n>', 'steps (the rate grows exponentially over them; stops early once the loss explodes)', intOption('num-it', 2, 100000), 100)
    .option('--seed <n>', 'random seed', intOption('seed', 0), 0)
    .action(async (f: LrFindFlags) => {
      const { signal, release } = interruptSignal();
      try {
        await findLearningRate({
          data: f.data,
          labels: f.labels,
          fileColumn: f.fileColumn,
          labelColumn: f.labelColumn,
          validationSplit: f.validationSplit,
          out: f.out,
          weights: f.weights,
          cut: f.cut,
          inputSize: sizeOption(f.inputSize),
          head: f.head ? parseHeadSpec(f.head) : undefined,
          optimizer: { kind: f.optimizer },
          batchSize: f.batchSize,
          preprocess: f.preprocess,
          classWeight: f.classWeight,
          startLr: f.startLr,
          endLr: f.endLr,
          numIt: f.numIt,
          seed: f.seed,
          signal,
        });
      } finally {
        release();
      }
    });
}
