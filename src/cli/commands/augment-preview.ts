import type { Command } from 'commander';
import { stat } from 'node:fs/promises';
import { extname } from 'node:path';
import { BadImageError, decodeImage } from '../../data/decode.js';
import { listImageFiles } from '../../data/listing.js';
import { LAB_AUGMENTATION } from '../../data/augment.js';
import { augmentPreview } from '../../data/augment-preview.js';
import { GraftError, describeFsError } from '../../util/errors.js';
import { writeFileAtomic } from '../../util/atomic.js';
import { realPathOf } from '../../util/folders.js';
import { intOption, MAX_SEED } from '../options.js';

/**
 * FILE itself decoded, or the first readable image (in Keras's walk order, sub-folders included)
 * under a folder; unreadable ones before it are named in a warning.
 */
async function pickImage(path: string, size: number, out: string): Promise<{ file: string; image: Uint8Array }> {
  let st;
  try {
    st = await stat(path);
  } catch (err) {
    throw describeFsError(err, path);
  }
  if (!st.isDirectory()) return { file: path, image: await decodeImage(path, { width: size, height: size }) };
  // Not an earlier preview written into the folder.
  const outPath = await realPathOf(out);
  const files = [];
  for (const file of await listImageFiles(path)) if ((await realPathOf(file)) !== outPath) files.push(file);
  if (files.length === 0) throw new GraftError(`no image found in ${path}`, { file: path });
  for (const file of files) {
    try {
      return { file, image: await decodeImage(file, { width: size, height: size }) };
    } catch (err) {
      if (!(err instanceof BadImageError)) throw err;
      console.error(`warning: skipped ${file}: ${err.reason}`);
    }
  }
  throw new GraftError(`none of the ${files.length} images in ${path} could be read`, { file: path });
}

/** The preview is a PNG: refuse another extension, and never write over the image shown. */
async function checkOut(out: string, input: string): Promise<void> {
  if (extname(out).toLowerCase() !== '.png') throw new GraftError(`--out ${out}: the preview is a PNG image; give a file name ending in .png`, { file: out });
  if ((await realPathOf(out)) === (await realPathOf(input))) throw new GraftError(`--out ${out} is the image being previewed; choose another file name`, { file: out });
}

export function registerAugmentPreview(program: Command): void {
  program
    .command('augment-preview')
    .description("Shows the lab's augmentation: an image, then n randomly augmented versions, as a PNG grid")
    .argument('<path>', 'an image file, or a folder (its first readable image is used)')
    .requiredOption('--out <file>', 'the PNG to write')
    .option('--n <count>', 'augmented versions to show', intOption('n', 1, 64), 8)
    .option('--seed <seed>', 'random seed', intOption('seed', 0, MAX_SEED), 0)
    .option('--size <pixels>', 'image size (square)', intOption('size', 1, 2048), 150)
    .action(async (path: string, opts: { out: string; n: number; seed: number; size: number }) => {
      const { file, image } = await pickImage(path, opts.size, opts.out);
      await checkOut(opts.out, file);
      const png = await augmentPreview(image, opts.size, opts.size, LAB_AUGMENTATION, opts.n, opts.seed);
      await writeFileAtomic(opts.out, png);
      console.log(`wrote ${opts.out}: ${file} and ${opts.n} augmented versions (seed ${opts.seed})`);
    });
}
