/** Real photos from the shared lab dataset, decoded as the Keras lab does: RGB, resized, x/255. */
import { readdirSync } from 'node:fs';
import { copyFile, mkdir, mkdtemp, readdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { sharedLabDataDir } from '../../src/util/paths.js';

/** The first `count` validation images (cats and dogs alternating), as paths. */
export function labImagePaths(count: number): string[] {
  const dir = join(sharedLabDataDir(), 'validation');
  const cats = readdirSync(join(dir, 'cats')).sort().map((f) => join(dir, 'cats', f));
  const dogs = readdirSync(join(dir, 'dogs')).sort().map((f) => join(dir, 'dogs', f));
  const out: string[] = [];
  for (let i = 0; out.length < count; i++) {
    out.push(cats[i % cats.length]!);
    if (out.length < count) out.push(dogs[i % dogs.length]!);
  }
  return out;
}

/** Decodes `paths` into one NHWC Float32Array of [n, h, w, 3] in [0, 1]. */
export async function loadImages(paths: string[], h: number, w: number): Promise<Float32Array> {
  const out = new Float32Array(paths.length * h * w * 3);
  for (let i = 0; i < paths.length; i++) {
    const raw = await sharp(paths[i]!).removeAlpha().toColourspace('srgb').resize(w, h, { fit: 'fill' }).raw().toBuffer();
    const base = i * h * w * 3;
    for (let j = 0; j < raw.length; j++) out[base + j] = raw[j]! / 255;
  }
  return out;
}

/**
 * A temporary folder whose data/ holds the first `perClass` lab photos of each class in train/
 * and validation/ (a tiny dataset laid out as the lab's); returns the folder.
 */
export async function labSubset(prefix: string, perClass: { train: number; validation: number }): Promise<string> {
  const root = await mkdtemp(join(tmpdir(), prefix));
  for (const split of ['train', 'validation'] as const) {
    for (const cls of ['cats', 'dogs']) {
      const from = join(sharedLabDataDir(), split, cls);
      await mkdir(join(root, 'data', split, cls), { recursive: true });
      for (const f of (await readdir(from)).sort().slice(0, perClass[split])) await copyFile(join(from, f), join(root, 'data', split, cls, f));
    }
  }
  return root;
}
