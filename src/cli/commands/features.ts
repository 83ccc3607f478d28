import type { Command } from 'commander';
import { parseHeadSpec } from '../../model/head-spec-parse.js';
import { extractFeatures, mergeFeatureShards, parseShard } from '../../train/feature-extraction.js';
import { RECIPE_NAMES, type RecipeName } from '../../train/recipes.js';
import { PREPROCESS_NAMES, type PreprocessName } from '../../data/preprocess.js';
import { INTERPOLATIONS, ORIENTATIONS, type Interpolation, type Orientation } from '../../data/decode.js';
import { Progbar } from '../../train/progbar.js';
import { GraftError } from '../../util/errors.js';
import { bytesOption, choiceOption, interruptSignal, intOption, sizeOption } from '../options.js';

interface FeaturesFlags {
  data?: string;
  out?: string;
  shard?: string;
  merge?: string;
  labels?: string;
  fileColumn?: string;
  labelColumn?: string;
  followSymlinks?: boolean;
  recipe: RecipeName;
  weights?: string;
  cut?: string;
  inputSize?: string;
  interpolation?: Interpolation;
  orientation: Orientation;
  preprocess?: PreprocessName;
  head?: string;
  pooling?: 'avg' | 'max' | 'none';
  batchSize?: number;
  memoryBudget?: number;
  quiet?: boolean;
}

export function registerFeatures(program: Command): void {
  program
    .command('features')
    .description('Compute backbone features of a labelled image folder once, into a feature store that graft train --features reads (resumable; --shard I/N splits the work among workers, --merge joins their parts)')
    .option('--data <dir>', 'class folders (of a folder with train/ and validation/: its training folder), or with --labels the folder its paths are relative to')
    .option('--out <store>', 'the feature store file (a shard writes STORE.part-I-of-N beside it)')
    .option('--shard <I/N>', 'compute shard I of N (0-based) of the sorted listing only, e.g. $JOB_COMPLETION_INDEX/16')
    .option('--merge <store>', "join the finished parts STORE.part-I-of-N into STORE (the same bytes as one unsharded run) and remove them")
    .option('--labels <file>', 'labels from a table (as graft train --labels)')
    .option('--file-column <name>', 'the table column of image paths (default: filename)')
    .option('--label-column <name>', 'the table column of class names (default: class)')
    .option('--follow-symlinks', 'descend into linked folders')
    .option('--recipe <name>', `the settings left unset take this recipe's: ${RECIPE_NAMES.join(' or ')}`, choiceOption('recipe', RECIPE_NAMES), 'default')
    .option('--weights <spec>', "backbone weights: 'imagenet', a Keras .h5 / .weights.h5 / .keras file or a TF.js model folder", 'imagenet')
    .option('--cut <layer>', "backbone layer the features come from (default: the recipe's)")
    .option('--input-size <HxW>', "image size (default: the recipe's)")
    .option('--interpolation <name>', "resize filter (default: the recipe's)", choiceOption('interpolation', INTERPOLATIONS))
    .option('--orientation <how>', "EXIF orientation: 'ignore' or 'exif'", choiceOption('orientation', ORIENTATIONS), 'ignore')
    .option('--preprocess <name>', "pixel scaling (default: the recipe's)", choiceOption('preprocess', PREPROCESS_NAMES))
    .option('--head <spec>', "the head the features are for: one starting with gap has them pooled in the backbone (default: the recipe's)")
    .option('--pooling <how>', "or the pooling itself: avg, max or none (default: the head's)", choiceOption('pooling', ['avg', 'max', 'none'] as const))
    .option('--batch-size <n>', 'images per backbone call', intOption('batch-size', 1, 256))
    .option('--memory-budget <size>', 'decoded images held at once (default 256M)', bytesOption('memory-budget'))
    .option('--quiet', 'no progress bar')
    .action(async (flags: FeaturesFlags) => {
      const say = (line: string) => console.error(line);
      if (flags.merge !== undefined) {
        const extra = (['data', 'out', 'shard', 'labels'] as const).filter((k) => flags[k] !== undefined);
        if (extra.length > 0) throw new GraftError(`--merge joins finished parts: it takes no ${extra.map((k) => `--${k}`).join(', ')}`);
        await mergeFeatureShards(flags.merge, { onNote: say });
        return;
      }
      if (flags.data === undefined || flags.out === undefined) throw new GraftError('give the images (--data DIR) and the store to write (--out STORE), or --merge STORE');
      if (flags.head !== undefined && flags.pooling !== undefined) throw new GraftError('--head and --pooling both set the pooling: give one of them');
      const shard = flags.shard === undefined ? undefined : parseShard(flags.shard);
      const showBar = !flags.quiet && process.stderr.isTTY;
      let bar: Progbar | null = null;
      const { signal, release } = interruptSignal(() => say('\nstopping after this chunk; the rows written are kept (run the same command again to continue)'));
      try {
        const result = await extractFeatures({
          data: flags.data,
          out: flags.out,
          shard,
          labels: flags.labels,
          fileColumn: flags.fileColumn,
          labelColumn: flags.labelColumn,
          followSymlinks: flags.followSymlinks,
          recipe: flags.recipe,
          weights: flags.weights,
          cut: flags.cut,
          inputSize: flags.inputSize === undefined ? undefined : sizeOption(flags.inputSize),
          interpolation: flags.interpolation,
          orientation: flags.orientation,
          preprocess: flags.preprocess,
          head: flags.head === undefined ? undefined : parseHeadSpec(flags.head),
          pooling: flags.pooling,
          batchSize: flags.batchSize,
          memoryBudget: flags.memoryBudget,
          signal,
          onNote: (line) => {
            bar?.clear();
            say(line);
          },
          onProgress: showBar ? (done, total) => (bar ??= new Progbar(total, 'Features ')).update(done) : undefined,
        });
        (bar as Progbar | null)?.clear();
        if (shard) say(`Shard ${shard.index}/${shard.count} done; once every shard is: graft features --merge ${flags.out}`);
        else say(`${result.rows} images of ${result.classes.length} classes (${result.classes.join(', ')}): graft train --features ${flags.out}`);
      } finally {
        (bar as Progbar | null)?.clear();
        release();
      }
    });
}
