import type { Command } from 'commander';
import { GraftError } from '../../util/errors.js';
import { choiceOption, fractionOption, intOption, MAX_SEED } from '../options.js';
import { formatDatasetReport, inspectDataset } from '../../data/inspect.js';

/** `graft data DIR`: what graft sees in a dataset folder, decoding every image to find bad ones. */
export function registerData(program: Command): void {
  program
    .command('data')
    .description('Show the classes, counts, image sizes and bad files graft finds in a dataset folder (exit 1 when training could not use it)')
    .argument('<dir>', 'a folder with train/ and validation/ (or val/), or one sub-folder per class')
    .option('--json', 'print one JSON object')
    .option('--validation-split <f>', 'hold out this fraction of each class (between 0 and 1, e.g. 0.2; single class-folder root)', fractionOption('validation-split'))
    .option('--split-order <order>', "'keras' (first fraction of each class, like Keras) or 'shuffled'", choiceOption('split-order', ['keras', 'shuffled'] as const), 'keras')
    .option('--seed <n>', 'seed of a shuffled split', intOption('seed', 0, MAX_SEED), 0)
    .option('--headers-only', 'read image headers only (fast; misses corrupt pixel data)')
    .option('--follow-symlinks', 'descend into linked folders')
    .option('--labels <file>', "labels from a .csv, .tsv or .jsonl table ('filename' relative to <dir>, 'class') instead of class folders")
    .option('--val-labels <file>', 'validation labels from a table like --labels')
    .option('--file-column <name>', 'the table column of image paths (default: filename)')
    .option('--label-column <name>', 'the table column of class names (default: class)')
    .option('--on-bad-image <what>', "'skip' (list bad files) or 'error' (fail on the first one, as training would)", choiceOption('on-bad-image', ['skip', 'error'] as const), 'skip')
    .action(async (dir: string, o: { json?: boolean; validationSplit?: number; splitOrder: 'keras' | 'shuffled'; seed: number; headersOnly?: boolean; followSymlinks?: boolean; onBadImage: 'skip' | 'error'; labels?: string; valLabels?: string; fileColumn?: string; labelColumn?: string }) => {
      const report = await inspectDataset(dir, {
        labels: o.labels,
        validationLabels: o.valLabels,
        fileColumn: o.fileColumn,
        labelColumn: o.labelColumn,
        validationSplit: o.validationSplit,
        splitOrder: o.splitOrder,
        seed: o.seed,
        decode: !o.headersOnly,
        followSymlinks: o.followSymlinks,
      });
      const first = report.bad[0];
      if (o.onBadImage === 'error' && first) {
        throw new GraftError(`bad image ${first.path}: ${first.reason} (${report.bad.length} bad file${report.bad.length === 1 ? '' : 's'} in all)`, { file: first.path });
      }
      console.log(o.json ? JSON.stringify(report) : formatDatasetReport(report));
      // A folder training would refuse fails the check (for scripts), after the whole report.
      if (report.problems.length > 0) {
        throw new GraftError(`${report.root} cannot be used for training as it is (${report.problems.length === 1 ? 'the problem' : `the ${report.problems.length} problems`} above)`, { file: report.root });
      }
    });
}
