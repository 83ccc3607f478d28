import type { Command } from 'commander';
import { GraftError } from '../../util/errors.js';
import { formatDatasetReport, inspectDataset } from '../../data/inspect.js';

/** `graft data DIR`: what graft sees in a dataset folder, decoding every image to find bad ones. */
export function registerData(program: Command): void {
  program
    .command('data')
    .description('Show the classes, counts, image sizes and bad files graft finds in a dataset folder')
    .argument('<dir>', 'a folder with train/ and validation/ (or val/), or one sub-folder per class')
    .option('--json', 'print one JSON object')
    .option('--validation-split <fraction>', 'hold out this fraction of each class (single class-folder root)')
    .option('--split-order <order>', "'keras' (first fraction of each class, like Keras) or 'shuffled'", 'keras')
    .option('--seed <n>', 'seed of a shuffled split', '0')
    .option('--headers-only', 'read image headers only (fast; misses corrupt pixel data)')
    .option('--follow-symlinks', 'descend into linked folders')
    .option('--on-bad-image <mode>', "'skip' (list bad files) or 'error' (fail on the first one, as training would)", 'skip')
    .action(async (dir: string, o: { json?: boolean; validationSplit?: string; splitOrder: string; seed: string; headersOnly?: boolean; followSymlinks?: boolean; onBadImage: string }) => {
      const split = o.validationSplit === undefined ? undefined : Number(o.validationSplit);
      if (split !== undefined && !Number.isFinite(split)) throw new GraftError(`--validation-split must be a number, got ${o.validationSplit}`);
      if (o.splitOrder !== 'keras' && o.splitOrder !== 'shuffled') throw new GraftError(`--split-order must be keras or shuffled, got ${o.splitOrder}`);
      if (o.onBadImage !== 'skip' && o.onBadImage !== 'error') throw new GraftError(`--on-bad-image must be skip or error, got ${o.onBadImage}`);
      const seed = Number(o.seed);
      if (!Number.isInteger(seed)) throw new GraftError(`--seed must be an integer, got ${o.seed}`);
      const report = await inspectDataset(dir, {
        validationSplit: split,
        splitOrder: o.splitOrder,
        seed,
        decode: !o.headersOnly,
        followSymlinks: o.followSymlinks,
      });
      const first = report.bad[0];
      if (o.onBadImage === 'error' && first) {
        throw new GraftError(`bad image ${first.path}: ${first.reason} (${report.bad.length} bad file${report.bad.length === 1 ? '' : 's'} in all)`, { file: first.path });
      }
      console.log(o.json ? JSON.stringify(report) : formatDatasetReport(report));
    });
}
