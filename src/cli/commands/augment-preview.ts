import type { Command } from 'commander';
import { stat } from 'node:fs/promises';
import { decodeImage } from '../../data/decode.js';
import { listImageFiles } from '../../data/listing.js';
import { LAB_AUGMENTATION } from '../../data/augment.js';
import { augmentPreview } from '../../data/augment-preview.js';
import { GraftError, describeFsError } from '../../util/errors.js';
import { writeFileAtomic } from '../../util/atomic.js';
import { intOption } from '../options.js';

/** FILE itself, or the first image (in Keras's walk order, sub-folders included) under a folder. */
async function pickImage(path: string): Promise<string> {
  let st;
  try {
    st = await stat(path);
  } catch (err) {
    throw describeFsError(err, path);
  }
  if (!st.isDirectory()) return path;
  const [first] = await listImageFiles(path);
  if (!first) throw new GraftError(`no image found in ${path}`, { file: path });
  return first;
}

export function registerAugmentPreview(program: Command): void {
  program
    .command('augment-preview')
    .description("Shows the lab's augmentation: an image, then n randomly augmented versions, as a PNG grid")
    .argument('<path>', 'an image file, or a folder (its first image is used)')
    .requiredOption('--out <file>', 'the PNG to write')
    .option('--n <count>', 'augmented versions to show', intOption('n', 1), 8)
    .option('--seed <seed>', 'random seed', intOption('seed', 0), 0)
    .option('--size <pixels>', 'image size (square)', intOption('size', 1), 150)
    .action(async (path: string, opts: { out: string; n: number; seed: number; size: number }) => {
      const file = await pickImage(path);
      const image = await decodeImage(file, { width: opts.size, height: opts.size });
      const png = await augmentPreview(image, opts.size, opts.size, LAB_AUGMENTATION, opts.n, opts.seed);
      await writeFileAtomic(opts.out, png);
      console.log(`wrote ${opts.out}: ${file} and ${opts.n} augmented versions (seed ${opts.seed})`);
    });
}
