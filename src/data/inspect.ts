/**
 * What graft sees in a dataset folder (`graft data DIR`): layout, classes and counts per split,
 * image sizes and formats, and the files it would skip with why. Every image is actually decoded,
 * since a header can lie; `decode: false` reads headers only (fast, misses corrupt pixel data).
 */
import { DEFAULT_MAX_PIXELS, BadImageError, decodeFullRgb, readImageFile, readImageSize, readOrientation, sniffFormat } from './decode.js';
import { setting } from '../util/option-names.js';
import { runPool, defaultDecodeConcurrency } from './image-store.js';
import { resolveTableDataset } from './label-table.js';
import { imbalanceRatio, WARN_RATIO } from '../train/class-weights.js';
import { classCounts, countLooseImages, emptyValidationProblem, IMAGE_EXTENSIONS, resolveDataset, type DatasetListing, type ResolveOptions } from './listing.js';

export interface SizeStats {
  min: number;
  median: number;
  max: number;
}

export interface SplitReport {
  name: 'train' | 'validation';
  root: string;
  total: number;
  /** Images per class (class name -> count), before removing bad files. */
  counts: Record<string, number>;
  /** Images that decode, per class. */
  usable: Record<string, number>;
}

export interface DatasetReport {
  root: string;
  /** The labels table, when the layout is 'table'. */
  labels?: string;
  layout: 'lab' | 'classes' | 'table';
  classes: string[];
  splits: SplitReport[];
  /** Over all decodable images; null when there are none. */
  width: SizeStats | null;
  height: SizeStats | null;
  /** Decoded format -> count ('jpeg', 'png', ...). */
  formats: Record<string, number>;
  /** Images whose EXIF Orientation tag turns them (as phone photos' often does). */
  rotated: number;
  /** Files graft would leave out: unreadable at listing, or failing to decode. */
  bad: { path: string; reason: string }[];
  /** Files with extensions other than images, ignored. */
  ignoredFiles: number;
  /** The first few of them (paths). */
  ignoredExamples: string[];
  warnings: string[];
  /** Reasons training would refuse this folder (e.g. fewer than two classes). */
  problems: string[];
}

export interface InspectOptions extends Pick<ResolveOptions, 'validationSplit' | 'splitOrder' | 'seed' | 'followSymlinks'> {
  /** Labels from a table (paths relative to the folder given), as `graft train --labels` reads them. */
  labels?: string;
  validationLabels?: string;
  fileColumn?: string;
  labelColumn?: string;
  decode?: boolean;
  maxPixels?: number;
  concurrency?: number;
  onProgress?: (done: number, total: number) => void;
}

function stats(values: number[]): SizeStats | null {
  if (values.length === 0) return null;
  const s = [...values].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return { min: s[0]!, median: s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2, max: s[s.length - 1]! };
}

export async function inspectDataset(root: string, opts: InspectOptions = {}): Promise<DatasetReport> {
  const resolved = opts.labels
    ? { ...(await resolveTableDataset({ ...opts, labels: opts.labels, data: root })), layout: 'table' as const }
    : await resolveDataset(root, {
        validationSplit: opts.validationSplit,
        splitOrder: opts.splitOrder,
        seed: opts.seed,
        followSymlinks: opts.followSymlinks,
        minClasses: 0,
      });
  const parts: [SplitReport['name'], DatasetListing][] = [['train', resolved.train]];
  if (resolved.validation) parts.push(['validation', resolved.validation]);

  const files = parts.flatMap(([, l]) => l.files);
  const sizes: ({ width: number; height: number; format: string; orientation: number } | null)[] = new Array(files.length).fill(null);
  const badReason = new Map<string, string>();
  let done = 0;
  await runPool(files.length, opts.concurrency ?? defaultDecodeConcurrency(), async (i) => {
    const path = files[i]!.path;
    try {
      if (opts.decode === false) {
        sizes[i] = await readImageSize(path);
      } else {
        const buf = await readImageFile(path);
        const img = await decodeFullRgb(buf, path, { maxPixels: opts.maxPixels ?? DEFAULT_MAX_PIXELS });
        sizes[i] = { width: img.width, height: img.height, format: sniffFormat(buf, path), orientation: await readOrientation(buf) };
      }
    } catch (err) {
      if (!(err instanceof BadImageError)) throw err;
      badReason.set(path, err.reason);
    }
    opts.onProgress?.(++done, files.length);
  });

  const formats: Record<string, number> = {};
  for (const s of sizes) if (s) formats[s.format] = (formats[s.format] ?? 0) + 1;
  const good = sizes.filter((s): s is NonNullable<typeof s> => s !== null);

  const classes = resolved.train.classes;
  const splits: SplitReport[] = parts.map(([name, l]) => {
    const counts: Record<string, number> = {};
    const usable: Record<string, number> = {};
    classCounts(l).forEach((c, k) => (counts[classes[k]!] = c));
    for (const c of classes) usable[c] = 0;
    for (const f of l.files) if (!badReason.has(f.path)) usable[classes[f.label]!]!++;
    return { name, root: l.root, total: l.files.length, counts, usable };
  });

  const bad = [
    ...parts.flatMap(([, l]) => l.skipped),
    ...files.filter((f) => badReason.has(f.path)).map((f) => ({ path: f.path, reason: badReason.get(f.path)! })),
  ];
  const warnings = parts.flatMap(([, l]) => l.warnings);
  const rotated = good.filter((s) => s.orientation > 1).length;
  if (rotated > 0) {
    warnings.push(
      `${rotated} image${rotated === 1 ? ' carries' : 's carry'} an EXIF rotation (as phone photos do): graft, like Keras, reads ${rotated === 1 ? 'it' : 'them'} as stored, ` +
        `turned or mirrored, where browsers and viewers show ${rotated === 1 ? 'it' : 'them'} upright; training with ${setting('orientation', 'exif')} turns ${rotated === 1 ? 'it' : 'them'} upright in training and prediction alike`,
    );
  }
  // Classes whose listed images all fail to decode: training warns of them, or refuses (below).
  for (const sp of splits) {
    const lost = classes.filter((c) => sp.counts[c]! > 0 && sp.usable[c] === 0);
    if (lost.length > 0) warnings.push(`no readable ${sp.name === 'train' ? 'training' : 'validation'} images of ${lost.join(', ')} in ${sp.root}`);
  }
  const trainUsable0 = classes.map((c) => splits[0]!.usable[c]!);
  const ratio = imbalanceRatio(trainUsable0);
  if (ratio > WARN_RATIO) {
    const present = trainUsable0.filter((n) => n > 0);
    const big = trainUsable0.indexOf(Math.max(...present)), small = trainUsable0.indexOf(Math.min(...present));
    warnings.push(
      `unbalanced classes: ${classes[big]} has ${trainUsable0[big]} training images, ${classes[small]} ${trainUsable0[small]} (${ratio.toFixed(1)}x): ` +
        `train with ${setting('classWeight', 'balanced')} and read balanced accuracy and each class's recall, not accuracy`,
    );
  }
  const problems: string[] = [];
  const validation = parts.find(([name]) => name === 'validation')?.[1];
  const emptyValidation = validation && emptyValidationProblem(validation, opts.validationSplit);
  if (emptyValidation) problems.push(emptyValidation);
  else if (validation && validation.files.every((f) => badReason.has(f.path))) problems.push(`no readable validation images in ${validation.root}`);
  const trainUsable = Object.values(splits[0]!.usable).filter((n) => n > 0).length;
  const loose = classes.length === 0 ? await countLooseImages(resolved.train.root) : 0;
  if (loose > 0) {
    problems.push(`${resolved.train.root} holds ${loose} image${loose === 1 ? '' : 's'} but no class sub-folders; graft expects one sub-folder per class`);
  } else if (trainUsable < 2) {
    problems.push(`${resolved.train.root} has ${trainUsable} class${trainUsable === 1 ? '' : 'es'} with usable images; training needs at least 2`);
  }
  return {
    root: resolved.layout === 'lab' ? resolved.train.root.replace(/[/\\]train$/, '') : resolved.train.root,
    ...(opts.labels && { labels: opts.labels }),
    layout: resolved.layout,
    classes,
    splits,
    width: stats(good.map((s) => s.width)),
    height: stats(good.map((s) => s.height)),
    formats,
    rotated,
    bad,
    ignoredFiles: parts.reduce((n, [, l]) => n + l.ignoredCount, 0),
    // A split's validation part lists the same folder again: its examples would repeat.
    ignoredExamples: [...new Set(parts.flatMap(([, l]) => l.ignoredExamples ?? []))].slice(0, 5),
    warnings,
    problems,
  };
}

/** The report as lines for a terminal. */
export function formatDatasetReport(r: DatasetReport): string {
  const lines: string[] = [];
  const trainRoot = r.splits.find((s) => s.name === 'train')?.root;
  const validationFolder = r.splits.some((s) => s.name !== 'train' && s.root !== trainRoot);
  lines.push(`dataset ${r.root} (${r.layout === 'table' ? `labels from ${r.labels}` : r.layout === 'lab' ? `train/${validationFolder ? ' + validation/' : ''} layout` : 'one folder per class'})`);
  lines.push(`classes: ${r.classes.map((c, i) => `${i}=${c}`).join(', ') || '(none)'}`);
  for (const s of r.splits) {
    const per = r.classes.map((c) => `${c} ${s.usable[c]}${s.usable[c] !== s.counts[c] ? ` of ${s.counts[c]}` : ''}`).join(', ');
    const usable = Object.values(s.usable).reduce((a, b) => a + b, 0);
    lines.push(`${s.name}: ${usable} images${per ? ` (${per})` : ''}  ${s.root}`);
  }
  if (r.width && r.height) {
    lines.push(`width  min ${r.width.min}, median ${r.width.median}, max ${r.width.max}`);
    lines.push(`height min ${r.height.min}, median ${r.height.median}, max ${r.height.max}`);
  }
  const formats = Object.entries(r.formats).map(([f, n]) => `${f} ${n}`).join(', ');
  if (formats) lines.push(`formats: ${formats}`);
  // Every file left out for its extension; pictures among them also have a warning of their own.
  if (r.ignoredFiles > 0) {
    const more = r.ignoredFiles - r.ignoredExamples.length;
    const named = r.ignoredExamples.length > 0 ? `: ${r.ignoredExamples.join(', ')}${more > 0 ? ` and ${more} more` : ''}` : '';
    lines.push(`${r.ignoredFiles} file${r.ignoredFiles === 1 ? '' : 's'} ignored for ${r.ignoredFiles === 1 ? 'its' : 'their'} extension (not ${IMAGE_EXTENSIONS.map((e) => '.' + e).join(' ')})${named}`);
  }
  for (const w of r.warnings) lines.push(`warning: ${w}`);
  if (r.bad.length > 0) {
    lines.push(`${r.bad.length} bad files (skipped):`);
    for (const b of r.bad) lines.push(`  ${b.path}: ${b.reason}`);
  } else {
    lines.push('no bad files');
  }
  for (const p of r.problems) lines.push(`problem: ${p}`);
  return lines.join('\n');
}
