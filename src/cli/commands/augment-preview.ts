import type { Command } from 'commander';
import { readdir, stat } from 'node:fs/promises';
import { extname, join } from 'node:path';
import sharp from 'sharp';
import { LAB_AUGMENTATION } from '../../data/augment.js';
import { augmentPreview } from '../../data/augment-preview.js';
import { GraftError, describeFsError } from '../../util/errors.js';
import { writeFileAtomic } from '../../util/atomic.js';

const IMAGE_EXT = new Set(['.jpg', '.jpeg', '.png', '.bmp', '.gif', '.webp', '.tif', '.tiff']);

/** Decodes one image to size x size RGB. (Stand-in: the integrator swaps in the shared decoder.) */
async function decodeImage(file: string, size: number): Promise<Uint8Array> {
  try {
    const buf = await sharp(file).removeAlpha().resize(size, size, { kernel: 'nearest', fit: 'fill' }).raw().toBuffer();
    return new Uint8Array(buf.buffer, buf.byteOffset, buf.length);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code) throw describeFsError(err, file);
    throw new GraftError(`cannot decode ${file}: ${(err as Error).message}`, { file });
  }
}

/** FILE itself, or the first image (by name, searching sub-folders) under a folder. */
async function pickImage(path: string): Promise<string> {
  let st;
  try {
    st = await stat(path);
  } catch (err) {
    throw describeFsError(err, path);
  }
  if (!st.isDirectory()) return path;
  const entries = (await readdir(path, { withFileTypes: true })).sort((a, b) => a.name.localeCompare(b.name));
  for (const e of entries) if (e.isFile() && IMAGE_EXT.has(extname(e.name).toLowerCase())) return join(path, e.name);
  for (const e of entries) {
    if (!e.isDirectory()) continue;
    try {
      return await pickImage(join(path, e.name));
    } catch {
      // no image in that sub-folder; try the next
    }
  }
  throw new GraftError(`no image found in ${path}`, { file: path });
}

function positiveInt(name: string, min: number) {
  return (v: string): number => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < min) throw new GraftError(`--${name} must be a whole number >= ${min}, found '${v}'`);
    return n;
  };
}

export function registerAugmentPreview(program: Command): void {
  program
    .command('augment-preview')
    .description("Shows the lab's augmentation: an image, then n randomly augmented versions, as a PNG grid")
    .argument('<path>', 'an image file, or a folder (its first image is used)')
    .requiredOption('--out <file>', 'the PNG to write')
    .option('--n <count>', 'augmented versions to show', positiveInt('n', 1), 8)
    .option('--seed <seed>', 'random seed', positiveInt('seed', 0), 0)
    .option('--size <pixels>', 'image size (square)', positiveInt('size', 1), 150)
    .action(async (path: string, opts: { out: string; n: number; seed: number; size: number }) => {
      const file = await pickImage(path);
      const image = await decodeImage(file, opts.size);
      const png = await augmentPreview(image, opts.size, opts.size, LAB_AUGMENTATION, opts.n, opts.seed);
      await writeFileAtomic(opts.out, png);
      console.log(`wrote ${opts.out}: ${file} and ${opts.n} augmented versions (seed ${opts.seed})`);
    });
}
