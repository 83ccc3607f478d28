import { homedir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { existsSync } from 'node:fs';

/** The package's root folder (holds package.json), from src/ under tsx or dist/src/ when built. */
export function packageRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, 'package.json'))) {
    const up = dirname(dir);
    if (up === dir) throw new Error('graft: cannot find its package.json');
    dir = up;
  }
  return dir;
}

/**
 * Data that lives outside the repo (datasets, weights) in a `shared/` folder beside the checkout.
 * GRAFT_SHARED overrides it.
 */
export function sharedRoot(): string {
  return resolve(process.env.GRAFT_SHARED ?? join(packageRoot(), '..', 'shared'));
}

export type WeightsVariant = 'fp32' | 'fp16' | 'uint8';

/** The ImageNet InceptionV3 (input_1..mixed7) as a TF.js layers-model folder. GRAFT_WEIGHTS_DIR overrides. */
export function sharedInceptionWeightsDir(variant: WeightsVariant = 'fp32'): string {
  if (variant === 'fp32' && process.env.GRAFT_WEIGHTS_DIR) return resolve(process.env.GRAFT_WEIGHTS_DIR);
  return join(sharedRoot(), 'weights', `inceptionv3_imagenet_mixed7_${variant}`);
}

/** A dataset folder in ../shared/datasets. */
export function sharedDatasetDir(name: string): string {
  return join(sharedRoot(), 'datasets', name);
}

/** The Keras lab's dataset (train/ + validation/). GRAFT_LAB_DATA overrides. */
export function sharedLabDataDir(): string {
  return resolve(process.env.GRAFT_LAB_DATA ?? sharedDatasetDir('cats_and_dogs_filtered'));
}

/** Where downloads are kept: GRAFT_CACHE_DIR, else $XDG_CACHE_HOME/graft, else ~/.cache/graft. */
export function cacheDir(): string {
  if (process.env.GRAFT_CACHE_DIR) return resolve(process.env.GRAFT_CACHE_DIR);
  const xdg = process.env.XDG_CACHE_HOME;
  return join(xdg && xdg.length > 0 ? xdg : join(homedir(), '.cache'), 'graft');
}
