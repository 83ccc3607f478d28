/**
 * graft ui's data view, on the library graft data uses: a folder's listing (resolveDataset),
 * its report (inspectDataset), a paged image list per class, thumbnails made once by sharp and
 * cached on disk, and the augmentation preview. Loaded on first use (it brings sharp).
 */
import { createHash } from 'node:crypto';
import { readFile, stat } from 'node:fs/promises';
import { join, relative, sep } from 'node:path';
import sharp from 'sharp';
import { LAB_AUGMENTATION } from '../data/augment.js';
import { augmentPreview } from '../data/augment-preview.js';
import { decodeImage, BadImageError, readImageFile } from '../data/decode.js';
import { inspectDataset, type DatasetReport } from '../data/inspect.js';
import { resolveDataset, type DatasetListing, type ResolvedDataset } from '../data/listing.js';
import { writeFileAtomic } from '../util/atomic.js';
import { makeFolder } from '../util/folders.js';
import { cacheDir } from '../util/paths.js';
import { HttpError } from './http.js';
import type { ServedFolders } from './served-folders.js';

export const THUMBNAIL_SIZE = 128;
const PAGE_MAX = 500;

/** At most `n` of these at once (sharp work on 2 cores must not starve the server). */
function limiter(n: number): <T>(job: () => Promise<T>) => Promise<T> {
  let active = 0;
  const waiting: (() => void)[] = [];
  return async (job) => {
    if (active >= n) await new Promise<void>((r) => waiting.push(r));
    active++;
    try {
      return await job();
    } finally {
      active--;
      waiting.shift()?.();
    }
  };
}

export class DatasetViews {
  private readonly listings = new Map<string, { validationSplit?: number; data: ResolvedDataset }>();
  private readonly reports = new Map<string, Promise<DatasetReport>>();
  private readonly limit = limiter(2);

  constructor(private readonly folders: ServedFolders) {}

  private async dataset(id: string, opts: { validationSplit?: number } = {}): Promise<ResolvedDataset> {
    const folder = this.folders.get(id);
    const cached = this.listings.get(id);
    if (cached && (cached.validationSplit === opts.validationSplit || opts.validationSplit === undefined)) return cached.data;
    const data = await resolveDataset(folder.path, { validationSplit: opts.validationSplit, minClasses: 0 });
    this.listings.set(id, { validationSplit: opts.validationSplit, data });
    for (const key of this.reports.keys()) if (key.startsWith(`${id}:`)) this.reports.delete(key);
    return data;
  }

  private splits(data: ResolvedDataset): [string, DatasetListing][] {
    return [['train', data.train], ...(data.validation ? [['validation', data.validation] as [string, DatasetListing]] : [])];
  }

  /** Classes and counts per split, from the listing alone (fast: no image is read). */
  async summary(id: string, opts: { validationSplit?: number } = {}) {
    const data = await this.dataset(id, opts);
    return {
      layout: data.layout,
      classes: data.train.classes,
      splits: this.splits(data).map(([name, l]) => ({
        name,
        root: l.root,
        total: l.files.length,
        counts: Object.fromEntries(l.classes.map((c, i) => [c, l.files.filter((f) => f.label === i).length])),
      })),
      warnings: [...data.train.warnings, ...(data.validation?.warnings ?? [])],
      skipped: [...data.train.skipped, ...(data.validation?.skipped ?? [])],
    };
  }

  /** What graft data reports; `decode` reads every image (slow on big folders; headers only otherwise). */
  async report(id: string, decode: boolean): Promise<DatasetReport> {
    const folder = this.folders.get(id);
    const split = this.listings.get(id)?.validationSplit;
    const key = `${id}:${decode}`;
    let report = this.reports.get(key);
    if (!report) {
      report = inspectDataset(folder.path, { decode, validationSplit: split, concurrency: 2 });
      this.reports.set(key, report);
      report.catch(() => this.reports.delete(key));
    }
    return report;
  }

  /** One page of a class's images in a split, as paths relative to the opened folder. */
  async images(id: string, split: string, className: string, offset: number, limit: number) {
    const folder = this.folders.get(id);
    const data = await this.dataset(id);
    const listing = this.splits(data).find(([n]) => n === split)?.[1];
    if (!listing) throw new HttpError(404, `no ${split} split in this folder`);
    const label = listing.classes.indexOf(className);
    if (label < 0) throw new HttpError(404, `no class ${JSON.stringify(className)}`);
    const files = listing.files.filter((f) => f.label === label);
    const from = Math.max(0, Math.floor(offset) || 0);
    const n = Math.min(PAGE_MAX, Math.max(1, Math.floor(limit) || 100));
    return {
      total: files.length,
      offset: from,
      items: files.slice(from, from + n).map((f) => ({ path: relative(folder.path, f.path).split(sep).join('/'), name: f.path.split(sep).at(-1) })),
    };
  }

  /** A JPEG thumbnail (THUMBNAIL_SIZE, cropped square, turned upright as a browser shows it), made once and kept in the cache. */
  async thumbnail(file: string): Promise<Buffer> {
    const st = await stat(file);
    const key = createHash('sha256').update(`${file}\0${st.size}\0${st.mtimeMs}\0${THUMBNAIL_SIZE}`).digest('hex').slice(0, 32);
    const cached = join(cacheDir(), 'thumbnails', key.slice(0, 2), `${key}.jpg`);
    const hit = await readFile(cached).catch(() => null);
    if (hit) return hit;
    const jpeg = await this.limit(async () => {
      const bytes = await readImageFile(file);
      try {
        return await sharp(bytes, { failOn: 'truncated', limitInputPixels: 100_000_000 })
          .autoOrient()
          .resize(THUMBNAIL_SIZE, THUMBNAIL_SIZE, { fit: 'cover' })
          .jpeg({ quality: 75 })
          .toBuffer();
      } catch (err) {
        throw new HttpError(415, `${file}: not an image graft can read (${err instanceof Error ? err.message : String(err)})`);
      }
    });
    await makeFolder(join(cached, '..'));
    await writeFileAtomic(cached, jpeg).catch(() => undefined);
    return jpeg;
  }

  /** The lab's augmentation on one image: it, then 8 augmented versions (graft augment-preview). */
  async augmentPreview(file: string, seed: number): Promise<Buffer> {
    return this.limit(async () => {
      let image: Uint8Array;
      try {
        image = await decodeImage(file, { width: 150, height: 150 });
      } catch (err) {
        if (err instanceof BadImageError) throw new HttpError(415, `${file}: ${err.reason}`);
        throw err;
      }
      return augmentPreview(image, 150, 150, LAB_AUGMENTATION, 8, Number.isInteger(seed) ? seed : 0, { columns: 3 });
    });
  }
}
