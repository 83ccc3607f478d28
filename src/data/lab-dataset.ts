import { randomBytes } from 'node:crypto';
import { existsSync, statSync } from 'node:fs';
import { readdir, rename, rm, writeFile } from 'node:fs/promises';
import { dirname, isAbsolute, join, resolve, sep } from 'node:path';
import { BadZipError, readZipEntries } from '../util/zip.js';
import { DownloadNetworkError, downloadFile } from '../util/download.js';
import { GraftError, describeFsError } from '../util/errors.js';
import { makeFolder } from '../util/folders.js';
import { cacheDir, sharedDatasetDir } from '../util/paths.js';
import { optionName, setting } from '../util/option-names.js';
import { VALIDATION_FOLDER_NAMES } from './listing.js';

/** The zip the Keras transfer-learning lab downloads (about 65 MB: 2000 train + 1000 validation images). */
export const LAB_DATASET_URL = 'https://storage.googleapis.com/mledu-datasets/cats_and_dogs_filtered.zip';
export const LAB_DATASET_NAME = 'cats_and_dogs_filtered';
/** Written into the unzipped folder last, so a half-extracted folder is never taken for a dataset. */
const COMPLETE_MARKER = '.complete';

export interface LabDatasetOptions {
  /** A folder holding train/ and validation/ (the CLI's --data); it must exist. */
  data?: string;
  /**
   * A shared copy to use when it exists; `false` skips the lookup. Default:
   * ../shared/datasets/cats_and_dogs_filtered (GRAFT_SHARED moves ../shared).
   */
  shared?: string | false;
  /** Default: GRAFT_LAB_DATA_URL, else LAB_DATASET_URL. */
  url?: string;
  /**
   * md5 (hex) the downloaded zip must have. Default: GRAFT_LAB_DATA_MD5; without it the zip is
   * only checked to unzip and hold train/ (Google publishes no checksum for it).
   */
  md5?: string;
  /** Default: cacheDir() (GRAFT_CACHE_DIR, XDG cache). */
  cacheDir?: string;
  fetch?: typeof globalThis.fetch;
  /** Default: when stderr is a terminal. */
  progressBar?: boolean;
  /** Download attempts after the first (default 4, see downloadFile). */
  retries?: number;
  retryDelayMs?: number;
}

/** Where the downloaded dataset is (or would be) unzipped. */
export function cachedLabDatasetDir(dir = cacheDir()): string {
  return join(dir, LAB_DATASET_NAME);
}

function isDir(path: string): boolean {
  try {
    return statSync(path).isDirectory();
  } catch {
    return false;
  }
}

/** A folder the user named must exist and be in the lab layout; `what` says where the name came from. */
function checkLabFolder(folder: string, what: string): string {
  const abs = resolve(folder);
  if (!isDir(abs)) throw new GraftError(`${what} ${abs} does not exist or is not a folder (expected a folder with train/ and validation/)`, { file: abs });
  if (!isDir(join(abs, 'train'))) throw new GraftError(`${what} ${abs} has no train/ folder (expected a folder with train/ and validation/)`, { file: abs });
  // The lab validates on validation/ (or val/); other layouts are graft train's.
  if (!VALIDATION_FOLDER_NAMES.some((n) => isDir(join(abs, n)))) {
    throw new GraftError(`${what} ${abs} has no validation/ folder beside train/ (the lab validates on it; other layouts train with ${optionName('validationData')} or ${optionName('validationSplit')})`, { file: abs });
  }
  return abs;
}

/**
 * The folder holding the lab's train/ and validation/: `data` when given, else GRAFT_LAB_DATA,
 * else the shared copy when present, else the cached download, else the lab's zip downloaded
 * once from its published URL and unzipped into the cache. Offline with nothing cached, fails
 * saying how to point graft at a local copy.
 */
export async function resolveLabDataset(opts: LabDatasetOptions = {}): Promise<string> {
  if (opts.data !== undefined) return checkLabFolder(opts.data, 'dataset folder');
  const env = process.env.GRAFT_LAB_DATA;
  if (env) return checkLabFolder(env, 'GRAFT_LAB_DATA');
  const shared = opts.shared ?? sharedDatasetDir(LAB_DATASET_NAME);
  if (shared !== false && isDir(join(shared, 'train'))) return resolve(shared);

  const cache = resolve(opts.cacheDir ?? cacheDir());
  const target = cachedLabDatasetDir(cache);
  if (existsSync(join(target, COMPLETE_MARKER))) return target;

  const url = opts.url ?? process.env.GRAFT_LAB_DATA_URL ?? LAB_DATASET_URL;
  const zip = join(cache, `${LAB_DATASET_NAME}.zip`);
  try {
    const md5 = opts.md5 ?? process.env.GRAFT_LAB_DATA_MD5;
    await downloadFile(url, zip, { md5: md5 || undefined, fetch: opts.fetch, progressBar: opts.progressBar, retries: opts.retries, retryDelayMs: opts.retryDelayMs });
  } catch (err) {
    if (!(err instanceof DownloadNetworkError)) throw err;
    throw new GraftError(
      `cannot download the lab dataset from ${url} (${err.reason}) and it is not in the cache; offline? Pass ${setting('data', 'DIR')} (a folder with train/ and validation/), ` +
        `set GRAFT_LAB_DATA to such a folder, or put the unzipped ${LAB_DATASET_NAME} folder at ${target} (with an empty ${COMPLETE_MARKER} file in it)`,
      { file: target, cause: err.cause },
    );
  }
  // Another process may have unzipped it while we waited for the download lock.
  if (existsSync(join(target, COMPLETE_MARKER))) return target;
  await extractLabZip(zip, target);
  // The images are all in the folder now; the zip would only double the disk use.
  await rm(zip, { force: true });
  return target;
}

/** Rejects names that would land outside the extraction folder (zip-slip). */
function safeEntryPath(name: string, zip: string): string[] {
  const parts = name.replace(/\\/g, '/').split('/');
  if (isAbsolute(name) || name.startsWith('/') || /^[A-Za-z]:/.test(name) || parts.includes('..')) {
    throw new GraftError(`${zip}: refusing zip entry "${name}", whose path leads outside the folder it is unzipped into; the zip was deleted`, { file: zip });
  }
  return parts.filter((p) => p !== '' && p !== '.');
}

/**
 * Unzips `zip` into a temporary folder beside `target`, finds the folder holding train/ (the zip's
 * root or its one top folder), renames it to `target`, then writes the marker. A zip that cannot
 * be read or has no train/ is deleted, so the next run downloads it again.
 */
async function extractLabZip(zip: string, target: string): Promise<void> {
  const fail = async (message: string, cause?: unknown): Promise<never> => {
    await rm(zip, { force: true });
    throw new GraftError(message, { file: zip, cause });
  };
  let entries: Record<string, Uint8Array>;
  try {
    entries = await readZipEntries(zip);
  } catch (err) {
    if (!(err instanceof BadZipError)) throw err;
    return fail(`${zip} is not a readable zip (${err.message}); it was deleted, run again to download it again`, err);
  }
  const files: [string[], Uint8Array][] = [];
  for (const [name, bytes] of Object.entries(entries)) {
    let parts: string[];
    try {
      parts = safeEntryPath(name, zip);
    } catch (err) {
      await rm(zip, { force: true });
      throw err;
    }
    if (!name.endsWith('/') && parts.length > 0) files.push([parts, bytes]);
  }

  const tmp = join(dirname(target), `.${LAB_DATASET_NAME}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`);
  try {
    try {
      for (const [parts, bytes] of files) {
        const file = join(tmp, ...parts);
        if (!file.startsWith(tmp + sep)) return await fail(`${zip}: refusing zip entry "${parts.join('/')}" outside the folder it is unzipped into`);
        await makeFolder(dirname(file), file);
        await writeFile(file, bytes);
      }
    } catch (err) {
      if (err instanceof GraftError) throw err;
      throw describeFsError(err, tmp, 'write');
    }
    let root = tmp;
    if (!isDir(join(tmp, 'train'))) {
      const tops = (await readdir(tmp).catch(() => [] as string[])).filter((n) => n !== '__MACOSX' && isDir(join(tmp, n, 'train')));
      if (tops.length !== 1) return await fail(`${zip} holds no train/ folder (expected ${LAB_DATASET_NAME}/train and ${LAB_DATASET_NAME}/validation); it was deleted`);
      root = join(tmp, tops[0]!);
    }
    try {
      // A folder without the marker is a half-finished earlier extraction: replace it.
      await rm(target, { recursive: true, force: true });
      await rename(root, target);
      await writeFile(join(target, COMPLETE_MARKER), '');
    } catch (err) {
      if (existsSync(join(target, COMPLETE_MARKER))) return; // another process finished first
      throw describeFsError(err, target, 'write');
    }
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
}
