import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { DownloadNetworkError, downloadFile, type DownloadOptions } from '../../util/download.js';
import { GraftError } from '../../util/errors.js';
import { cacheDir } from '../../util/paths.js';
import { setting } from '../../util/option-names.js';

/** The Keras InceptionV3 ImageNet weights without the classifier top, as published by Keras. */
export const IMAGENET_WEIGHTS_FILE = 'inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5';
export const IMAGENET_WEIGHTS_URL = `https://storage.googleapis.com/tensorflow/keras-applications/inception_v3/${IMAGENET_WEIGHTS_FILE}`;
export const IMAGENET_WEIGHTS_MD5 = 'bcbd6486424b2319ff4ef7d526e38f63';

export interface ImagenetWeightsOptions extends Omit<DownloadOptions, 'md5'> {
  /** Default: GRAFT_IMAGENET_URL, else the Keras URL. */
  url?: string;
  /** Default: cacheDir() (GRAFT_CACHE_DIR, XDG cache). */
  cacheDir?: string;
  /** Default: GRAFT_IMAGENET_MD5, else the md5 Keras publishes for the file; '' skips the check (a custom mirror). */
  md5?: string;
}

/** Where the ImageNet .h5 is (or would be) cached. */
export function cachedImagenetWeightsPath(dir = cacheDir()): string {
  return join(dir, IMAGENET_WEIGHTS_FILE);
}

/** Whether the ImageNet .h5 is already in the cache (so no download is needed). */
export function hasCachedImagenetWeights(dir = cacheDir()): boolean {
  return existsSync(cachedImagenetWeightsPath(dir));
}

/**
 * The local path of the Keras ImageNet InceptionV3 notop .h5 (about 87 MB), downloaded into the
 * cache on first use. Offline with nothing cached, fails saying how to point graft at a local copy.
 */
export async function ensureImagenetWeights(opts: ImagenetWeightsOptions = {}): Promise<string> {
  const url = opts.url ?? process.env.GRAFT_IMAGENET_URL ?? IMAGENET_WEIGHTS_URL;
  const dest = cachedImagenetWeightsPath(opts.cacheDir ?? cacheDir());
  const md5 = opts.md5 ?? process.env.GRAFT_IMAGENET_MD5 ?? IMAGENET_WEIGHTS_MD5;
  try {
    return await downloadFile(url, dest, { ...opts, md5: md5 === '' ? undefined : md5 });
  } catch (err) {
    if (!(err instanceof DownloadNetworkError)) throw err;
    // Unreachable server: say exactly what to do instead.
    throw new GraftError(
      `cannot download the ImageNet weights from ${url} (${err.reason}); offline? Download ${IMAGENET_WEIGHTS_FILE} elsewhere and pass ` +
        `${setting('weights', `/path/to/${IMAGENET_WEIGHTS_FILE}`)} (or a TF.js model folder with model.json), or set GRAFT_WEIGHTS_DIR to such a folder, ` +
        `or put the file at ${dest}`,
      { file: dest, cause: err.cause },
    );
  }
}
