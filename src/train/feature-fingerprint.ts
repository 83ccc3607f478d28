/**
 * What makes a set of backbone features these features, for a feature store file: which images
 * (names, labels, sizes and modification times), which weights (their values, wherever they were
 * loaded from), the cut, the input size, resize, orientation, preprocessing and pooling. A store
 * is reused only when all of them are the same.
 */
import { createHash } from 'node:crypto';
import { stat } from 'node:fs/promises';
import { relative, sep } from 'node:path';
import { poolingName, type Backbone } from '../backbone/backbone.js';
import type { WeightMap } from '../backbone/keras-graph.js';
import { runPool } from '../data/image-store.js';
import type { ImageStore } from '../data/image-store.js';

/** What a fingerprint reads of a set of images: an ImageStore, or a listing's files and labels. */
export type ImageSet = Pick<ImageStore, 'count' | 'paths' | 'labels'>;

/** Settings besides the backbone that change the features. */
export interface FeatureSettings {
  inputSize: [number, number];
  interpolation: string;
  orientation: string;
  preprocess: string;
}

/** SHA-256 (hex, 16 digits) of every weight: names, shapes and values. */
export function weightsDigest(weights: WeightMap): string {
  const hash = createHash('sha256');
  for (const key of [...weights.keys()].sort()) {
    const w = weights.get(key)!;
    hash.update(`${key}:${w.shape.join('x')}\n`);
    hash.update(new Uint8Array(w.data.buffer, w.data.byteOffset, w.data.byteLength));
  }
  return hash.digest('hex').slice(0, 16);
}

/** How many images and a digest of which files (relative to `root`), with labels, sizes and modification times. */
export async function imagesDigest(root: string, store: ImageSet): Promise<string> {
  const stats = new Array<string>(store.count);
  await runPool(store.count, 32, async (i) => {
    const s = await stat(store.paths[i]!).catch(() => null);
    stats[i] = s ? `${s.size}:${Math.round(s.mtimeMs)}` : 'gone';
  });
  const hash = createHash('sha256');
  store.paths.forEach((p, i) => hash.update(`${relative(root, p).split(sep).join('/')}\t${store.labels[i]}\t${stats[i]}\n`));
  return `${store.count} images, digest ${hash.digest('hex').slice(0, 16)}`;
}

/**
 * The settings `backbone`'s features depend on, as a store's fingerprint records them (after the
 * images): the weights as a digest of their values (`weights`, when already computed), the cut,
 * input size, resize, orientation, preprocessing and pooling, and for int8 the calibration.
 */
export function backboneFeatureSettings(backbone: Backbone, settings: FeatureSettings, weights = weightsDigest(backbone.weights)): Record<string, unknown> {
  return {
    weights,
    cut: backbone.graph.outputs[0],
    'input size': settings.inputSize.join('x'),
    interpolation: settings.interpolation,
    orientation: settings.orientation,
    preprocess: settings.preprocess,
    pooling: backbone.pooling ? poolingName(backbone.pooling) : 'none',
    // int8 features depend on the calibration too (fp32 stores keep their fingerprint).
    ...(backbone.precision === 'int8' ? { precision: 'int8', calibration: createHash('sha256').update(JSON.stringify(backbone.int8Ranges)).digest('hex').slice(0, 16) } : {}),
  };
}

/**
 * The fingerprint function of FeatureStorage for `backbone` and `settings`; `rootOf` says which
 * folder a store's image names are relative to. The weights are hashed once, when first needed.
 */
export function featureFingerprint<S extends ImageSet = ImageStore>(backbone: Backbone, settings: FeatureSettings, rootOf: (store: S) => string): (store: S) => Promise<Record<string, unknown>> {
  let weights: string | undefined;
  return async (store) => {
    weights ??= weightsDigest(backbone.weights);
    return { images: await imagesDigest(rootOf(store), store), ...backboneFeatureSettings(backbone, settings, weights) };
  };
}
