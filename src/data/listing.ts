/**
 * Image folders -> the list of (file, label) Keras' `flow_from_directory` would use.
 *
 * Keras 2.x semantics, kept on purpose so that graft sees the same images in the same order as the
 * lab: one sub-folder per class, classes sorted by name (cats=0, dogs=1); inside a class folder
 * every folder below it is walked (os.walk), the walk's folders visited in sorted path order and
 * the files of each folder in sorted name order; classes follow one another in class order.
 * Deliberate differences, each to survive junk that would crash or mislead Keras:
 * - folders whose name starts with '.' (".ipynb_checkpoints", ".DS_Store" folders) are not classes;
 * - extensions are matched as ".png" etc. (Keras 2.2 matched a bare "png" suffix);
 * - broken links, unreadable files and unreadable folders are skipped with a reason instead of
 *   failing later (or, for folders, silently vanishing as os.walk does);
 * - with followSymlinks, folder links are followed once each (real paths are tracked), so a link
 *   loop cannot hang the walk.
 */
import { accessSync, constants } from 'node:fs';
import { access, readdir, realpath, stat } from 'node:fs/promises';
import { extname, join, resolve } from 'node:path';
import { GraftError, describeFsError, firstFew } from '../util/errors.js';
import { Random } from '../util/random.js';
import { setting } from '../util/option-names.js';

/** Extensions Keras 2.x accepts (white_list_formats), matched case-insensitively. */
export const IMAGE_EXTENSIONS = ['png', 'jpg', 'jpeg', 'bmp', 'ppm', 'tif', 'tiff'] as const;

export interface LabelledFile {
  path: string;
  label: number;
}

export interface SkippedFile {
  path: string;
  reason: string;
}

export interface DatasetListing {
  /** The folder the classes are sub-folders of (absolute). */
  root: string;
  /** Class names; a file's label is its class's index here. */
  classes: string[];
  /** Images in Keras order: class by class, sorted walk within each class. */
  files: LabelledFile[];
  /** Files or folders left out, with why (unreadable, broken link, link loop). */
  skipped: SkippedFile[];
  /** Files with other extensions, ignored as Keras ignores them. */
  ignoredCount: number;
  /** The first few of them (paths), to name in a report. */
  ignoredExamples?: string[];
  /** Things a user should hear about that do not stop training (empty class, hidden folders). */
  warnings: string[];
}

export interface ListOptions {
  /** Class folder names in label order (Keras `classes=`); default: every sub-folder, sorted. */
  classes?: string[];
  /** Descend into linked folders (Keras `follow_links`, default false). */
  followSymlinks?: boolean;
}

const extensionPattern = new RegExp(`\\.(${IMAGE_EXTENSIONS.join('|')})$`, 'i');

/**
 * Image formats Keras's white list leaves out. Files with these extensions are ignored like any
 * other non-image file, but a user should hear about them: they are pictures the run will not see.
 */
const OTHER_IMAGE_EXTENSIONS = new Set(['webp', 'gif', 'avif', 'heic', 'heif', 'jfif', 'jxl', 'jp2', 'pgm', 'pbm', 'pnm']);

/** Whether a file name has one of the image extensions Keras accepts. */
export function isImageFileName(name: string): boolean {
  return extensionPattern.test(name);
}

// Python sorts str by code point; JS sort compares UTF-16 units. They agree except between
// astral characters and U+E000..U+FFFF, so compare code points to be exact.
function byCodePoint(a: string, b: string): number {
  if (a === b) return 0;
  const ai = a[Symbol.iterator]();
  const bi = b[Symbol.iterator]();
  for (;;) {
    const x = ai.next();
    const y = bi.next();
    if (x.done) return y.done ? 0 : -1;
    if (y.done) return 1;
    const d = x.value.codePointAt(0)! - y.value.codePointAt(0)!;
    if (d !== 0) return d;
  }
}

/** Sort in Python's order (code points), which is what Keras' `sorted()` gives. */
export function pythonSorted(names: Iterable<string>): string[] {
  const list = [...names];
  // Without surrogates (astral characters), UTF-16 order is code point order: the plain
  // comparison is then exact and several times faster on big folders.
  if (list.every((n) => !/[\uD800-\uDFFF]/.test(n))) return list.sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  return list.sort(byCodePoint);
}

async function isReadableDir(path: string): Promise<boolean> {
  try {
    return (await stat(path)).isDirectory();
  } catch {
    return false;
  }
}

interface WalkState {
  followSymlinks: boolean;
  /** Real paths of folders already walked (loop guard). */
  seen: Set<string>;
  skipped: SkippedFile[];
  ignored: number;
  /** The first IGNORED_EXAMPLES ignored files (paths). */
  ignoredExamples: string[];
  /** Ignored files with an image extension Keras does not read, by extension. */
  ignoredImages: Map<string, number>;
  /** macOS archive metadata left out: `._name` (AppleDouble) files and `__MACOSX` folders. */
  macMetadata: number;
  /** Linked folders not walked (without followSymlinks). */
  linksNotFollowed: string[];
}

function newWalkState(followSymlinks: boolean | undefined): WalkState {
  return { followSymlinks: followSymlinks ?? false, seen: new Set(), skipped: [], ignored: 0, ignoredExamples: [], ignoredImages: new Map(), macMetadata: 0, linksNotFollowed: [] };
}

/** Counts a file left out for its extension (and which image formats were among them). */
const IGNORED_EXAMPLES = 5;

function ignore(state: WalkState, path: string): void {
  state.ignored++;
  if (state.ignoredExamples.length < IGNORED_EXAMPLES) state.ignoredExamples.push(path);
  const ext = extname(path).slice(1).toLowerCase();
  if (OTHER_IMAGE_EXTENSIONS.has(ext)) state.ignoredImages.set(ext, (state.ignoredImages.get(ext) ?? 0) + 1);
}

/**
 * A zip made on a Mac carries `__MACOSX/` and a `._name` file beside every file: metadata with the
 * picture's own extension. Keras would list them as images (and fail on them); graft leaves them out.
 */
const isMacMetadata = (name: string) => name.startsWith('._') || name === '__MACOSX';

/** What a user should hear about files and folders a walk left out, with no error to show for them. */
function walkWarnings(state: WalkState, where: string, allFormats = false): string[] {
  const out: string[] = [];
  const pictures = ignoredImagesWarning(state, where, allFormats);
  if (pictures) out.push(pictures);
  if (state.macMetadata > 0) {
    const n = state.macMetadata;
    out.push(`${n} macOS metadata ${n === 1 ? 'entry' : 'entries'} (._ files, __MACOSX folders) in ${where} left out: not images`);
  }
  const links = state.linksNotFollowed;
  if (links.length > 0) {
    out.push(`${links.length} linked folder${links.length === 1 ? '' : 's'} not followed, as Keras does not (${firstFew(links)}): follow symbolic links (${setting('followSymlinks')}) to include ${links.length === 1 ? 'it' : 'them'}`);
  }
  return out;
}

/** The warning for pictures left out for their format, or null when there were none. */
function ignoredImagesWarning(state: WalkState, where: string, allFormats: boolean): string | null {
  if (state.ignoredImages.size === 0) return null;
  const counts = [...state.ignoredImages].sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1));
  const n = counts.reduce((a, [, c]) => a + c, 0);
  const list = counts.map(([ext, c]) => `${c} .${ext}`).join(', ');
  const read = (exts: Iterable<string>) => [...exts].map((e) => '.' + e).join(' ');
  const why = allFormats
    ? `graft reads ${read(IMAGE_EXTENSIONS)} ${read(DECODABLE_OTHER_EXTENSIONS)}`
    : `like Keras's flow_from_directory, graft reads only ${read(IMAGE_EXTENSIONS)} from folders`;
  return `${n} image${n === 1 ? '' : 's'} in ${where} ignored (${list}): ${why}; convert them (e.g. to PNG) to use them`;
}

/** os.walk(top) as a list of [folder, file names] pairs, then sorted by folder path like Keras. */
async function walkClassFolder(top: string, state: WalkState): Promise<[string, string[]][]> {
  const out: [string, string[]][] = [];
  const visit = async (dir: string): Promise<void> => {
    let real: string;
    try {
      real = await realpath(dir);
    } catch (err) {
      state.skipped.push({ path: dir, reason: describeFsError(err, dir).message.replace(/^cannot read [^:]*: /, '') });
      return;
    }
    if (state.seen.has(real)) {
      state.skipped.push({ path: dir, reason: `folder already visited through another link (${real}); link loop or duplicate` });
      return;
    }
    state.seen.add(real);
    let entries;
    try {
      entries = await readdir(dir, { withFileTypes: true });
    } catch (err) {
      state.skipped.push({ path: dir, reason: `unreadable folder: ${describeFsError(err, dir).message.replace(/^cannot read [^:]*: /, '')}` });
      return;
    }
    const files: string[] = [];
    const subdirs: string[] = [];
    for (const e of entries) {
      const full = join(dir, e.name);
      if (isMacMetadata(e.name)) {
        state.macMetadata++;
      } else if (e.isDirectory()) {
        subdirs.push(full);
      } else if (e.isSymbolicLink()) {
        // os.walk classifies a link by its target: links to folders are folders (walked only with
        // followlinks), everything else (including broken links) is a file.
        let target;
        try {
          target = await stat(full);
        } catch (err) {
          const code = (err as NodeJS.ErrnoException).code;
          if (isImageFileName(e.name)) {
            state.skipped.push({ path: full, reason: code === 'ELOOP' ? 'symbolic link loop' : 'broken symbolic link' });
          } else ignore(state, full);
          continue;
        }
        if (target.isDirectory()) {
          if (state.followSymlinks) subdirs.push(full);
          else state.linksNotFollowed.push(full);
        } else if (target.isFile()) files.push(e.name);
        else if (isImageFileName(e.name)) state.skipped.push({ path: full, reason: 'not a regular file' });
      } else if (e.isFile()) {
        files.push(e.name);
      } else if (isImageFileName(e.name)) {
        // Sockets, FIFOs, devices: reading one could block forever.
        state.skipped.push({ path: full, reason: 'not a regular file' });
      }
    }
    out.push([dir, files]);
    for (const sub of subdirs) await visit(sub);
  };
  await visit(top);
  out.sort((a, b) => byCodePoint(a[0], b[0]));
  for (const entry of out) entry[1] = pythonSorted(entry[1]);
  return out;
}

/** Formats graft decodes beyond Keras's white list (sniffed by content, see decode.ts). */
const DECODABLE_OTHER_EXTENSIONS = new Set(['webp', 'gif', 'avif', 'jfif', 'pgm', 'pbm', 'pnm']);

/**
 * Every image file under `dir` (recursively, sorted like Keras walks a class folder), e.g. for
 * prediction; `onWarning` hears about pictures left out for their format. With `allFormats`
 * (prediction, where Keras parity does not matter), every format graft can decode is listed.
 */
export async function listImageFiles(
  dir: string,
  opts: {
    followSymlinks?: boolean;
    allFormats?: boolean;
    onWarning?: (line: string) => void;
    /** Hears about each picture or folder the walk cannot read (a broken link, a link loop, an unreadable folder). */
    onSkipped?: (path: string, reason: string) => void;
  } = {},
): Promise<string[]> {
  const state = newWalkState(opts.followSymlinks);
  const walked = await walkClassFolder(dir, state);
  const files: string[] = [];
  const wanted = (name: string) => isImageFileName(name) || (opts.allFormats === true && DECODABLE_OTHER_EXTENSIONS.has(extname(name).slice(1).toLowerCase()));
  for (const [folder, names] of walked) {
    for (const name of names) {
      if (wanted(name)) files.push(join(folder, name));
      else ignore(state, join(folder, name));
    }
  }
  for (const warning of walkWarnings(state, resolve(dir), opts.allFormats)) opts.onWarning?.(warning);
  for (const s of state.skipped) opts.onSkipped?.(s.path, s.reason);
  return files;
}

/** `root` resolved, once it is known to be a folder. */
async function checkedRoot(root: string): Promise<string> {
  const absRoot = resolve(root);
  let rootStat;
  try {
    rootStat = await stat(absRoot);
  } catch (err) {
    throw describeFsError(err, absRoot);
  }
  if (!rootStat.isDirectory()) throw new GraftError(`${absRoot} is not a folder (expected one sub-folder per class)`, { file: absRoot });
  return absRoot;
}

/** The class folders of `absRoot` in Keras's order, and the hidden (or macOS metadata) folders that are not classes. */
async function classFolders(absRoot: string): Promise<{ classes: string[]; hidden: string[] }> {
  let names: string[];
  try {
    names = await readdir(absRoot);
  } catch (err) {
    throw describeFsError(err, absRoot);
  }
  const classes: string[] = [];
  const hidden: string[] = [];
  for (const name of pythonSorted(names)) {
    if (!(await isReadableDir(join(absRoot, name)))) continue;
    if (name.startsWith('.') || isMacMetadata(name)) hidden.push(name);
    else classes.push(name);
  }
  return { classes, hidden };
}

/** Lists an image-classification folder (one sub-folder per class) the way Keras does. */
export async function listImageFolder(root: string, opts: ListOptions = {}): Promise<DatasetListing> {
  const absRoot = await checkedRoot(root);
  const warnings: string[] = [];
  let classes: string[];
  if (opts.classes) {
    classes = [...opts.classes];
    for (const c of classes) {
      if (!(await isReadableDir(join(absRoot, c)))) throw new GraftError(`class folder ${join(absRoot, c)} does not exist`, { file: absRoot });
    }
  } else {
    const found = await classFolders(absRoot);
    classes = found.classes;
    if (found.hidden.length > 0) warnings.push(`folders in ${absRoot} that are not classes: ${found.hidden.map((n) => `${n} (${n.startsWith('.') ? 'hidden' : 'macOS metadata'})`).join(', ')}`);
  }

  const state = newWalkState(opts.followSymlinks);
  const files: LabelledFile[] = [];
  for (let label = 0; label < classes.length; label++) {
    const classDir = join(absRoot, classes[label]!);
    const before = files.length;
    for (const [dir, names] of await walkClassFolder(classDir, state)) {
      const paths: string[] = [];
      for (const name of names) {
        if (isImageFileName(name)) paths.push(join(dir, name));
        else ignore(state, join(dir, name));
      }
      const problems = readabilityProblems(paths);
      paths.forEach((path, i) => {
        const problem = problems[i];
        if (problem) state.skipped.push({ path, reason: `unreadable: ${problem}` });
        else files.push({ path, label });
      });
    }
    if (files.length === before) warnings.push(`class folder ${classDir} holds no images`);
  }
  warnings.push(...walkWarnings(state, absRoot));
  return { root: absRoot, classes, files, skipped: state.skipped, ignoredCount: state.ignored, ignoredExamples: state.ignoredExamples, warnings };
}

/**
 * Per path: why it cannot be read, or undefined when it can. Synchronous access checks: a system
 * call each, where the promise API's bookkeeping made 100,000 files take seconds.
 */
function readabilityProblems(paths: string[]): (string | undefined)[] {
  return paths.map((path) => {
    try {
      accessSync(path, constants.R_OK);
      return undefined;
    } catch (err) {
      return describeFsError(err, path).message.replace(/^cannot read [^:]*: /, '');
    }
  });
}

/** Image files directly inside `dir` (not in class folders). */
export async function countLooseImages(dir: string): Promise<number> {
  try {
    return (await readdir(dir)).filter((name) => isImageFileName(name) && !isMacMetadata(name)).length;
  } catch {
    return 0;
  }
}

/** Per-class counts of a listing, in class order. */
export function classCounts(listing: DatasetListing): number[] {
  const counts = new Array<number>(listing.classes.length).fill(0);
  for (const f of listing.files) counts[f.label]!++;
  return counts;
}

export interface ResolveOptions extends ListOptions {
  /**
   * Fraction of each class held out for validation, from a single class-folder root (Keras
   * `validation_split`). Not allowed when the root already has a validation folder.
   */
  validationSplit?: number;
  /**
   * 'keras' (default): the validation part is the FIRST fraction of each class in sorted order,
   * exactly Keras' `subset='validation'` (split = (0, f); training gets (f, 1)); no randomness.
   * 'shuffled': a per-class random draw from `seed`, both parts kept in sorted order.
   */
  splitOrder?: 'keras' | 'shuffled';
  /** Seed of the 'shuffled' split. */
  seed?: number;
  /** Fewest classes training accepts (default 2). */
  minClasses?: number;
}

export interface ResolvedDataset {
  train: DatasetListing;
  validation?: DatasetListing;
  /** 'lab': root/train + root/validation (or val); 'classes': root is itself the class folders. */
  layout: 'lab' | 'classes';
}

/** Folder names accepted as the held-out part of a lab layout, in order of preference. */
export const VALIDATION_FOLDER_NAMES = ['validation', 'val'] as const;

/**
 * A training root in either layout. `root/train/` makes it the lab layout, with `validation/` (or
 * `val/`) as validation data; `test/` is never used for validation (it is meant to stay unseen) and
 * only mentioned in a warning. Otherwise the root's sub-folders are the classes.
 */
export async function resolveDataset(root: string, opts: ResolveOptions = {}): Promise<ResolvedDataset> {
  const absRoot = resolve(root);
  const split = opts.validationSplit;
  if (split !== undefined && !(split > 0 && split < 1)) {
    throw new GraftError(`validation split must be between 0 and 1 (exclusive), got ${split}`, { file: absRoot });
  }
  const minClasses = opts.minClasses ?? 2;
  const listOpts: ListOptions = { followSymlinks: opts.followSymlinks, classes: opts.classes };

  const checkClasses = async (l: DatasetListing) => {
    const nonEmpty = classCounts(l).filter((c) => c > 0).length;
    if (l.classes.length < minClasses || nonEmpty < minClasses) {
      let what = `${nonEmpty} class${nonEmpty === 1 ? '' : 'es'} with images (${l.classes.join(', ')})`;
      if (l.classes.length === 0) {
        const loose = await countLooseImages(l.root);
        what = loose > 0 ? `${loose} image${loose === 1 ? '' : 's'} but no class sub-folders (is it one class? point graft at the folder above)` : 'no class sub-folders';
      }
      throw new GraftError(`${l.root} has ${what}; training needs at least ${minClasses} sub-folders of images, one per class`, { file: l.root });
    }
  };

  if (await isReadableDir(join(absRoot, 'train'))) {
    const train = await listImageFolder(join(absRoot, 'train'), listOpts);
    await checkClasses(train);
    let validation: DatasetListing | undefined;
    for (const name of VALIDATION_FOLDER_NAMES) {
      const dir = join(absRoot, name);
      if (!(await isReadableDir(dir))) continue;
      if (split !== undefined) {
        throw new GraftError(`${absRoot} already has a ${name}/ folder; a validation split only applies to a single class-folder root`, { file: absRoot });
      }
      validation = await listValidationFolder(dir, train.classes, { followSymlinks: opts.followSymlinks });
      break;
    }
    if (await isReadableDir(join(absRoot, 'test'))) train.warnings.push(`${join(absRoot, 'test')} is not used (graft validates on validation/ or val/)`);
    if (!validation && split !== undefined) {
      const parts = splitListing(train, split, opts.splitOrder ?? 'keras', opts.seed ?? 0);
      return { train: parts.train, validation: parts.validation, layout: 'lab' };
    }
    return { train, validation, layout: 'lab' };
  }

  const all = await listImageFolder(absRoot, listOpts);
  await checkClasses(all);
  if (split === undefined) return { train: all, layout: 'classes' };
  const parts = splitListing(all, split, opts.splitOrder ?? 'keras', opts.seed ?? 0);
  return { ...parts, layout: 'classes' };
}

/**
 * A validation (or test) folder listed with the classes of training or of a trained model, so that
 * labels mean the same in both: its class folders unknown there are ignored and classes it lacks
 * are allowed, each with a warning; no class in common is an error.
 */
export async function listValidationFolder(
  dir: string,
  classes: string[],
  opts: { followSymlinks?: boolean; classesOf?: string } = {},
): Promise<DatasetListing> {
  const of = opts.classesOf ?? 'training';
  const root = await checkedRoot(dir);
  const own = await classFolders(root);
  const present = classes.filter((c) => own.classes.includes(c));
  if (present.length === 0) {
    throw new GraftError(`${root} has no class folder named like a class of ${of} (${of}: ${classes.join(', ')}; found: ${own.classes.join(', ') || 'none'})`, {
      file: root,
    });
  }
  const validation = await listImageFolder(root, { followSymlinks: opts.followSymlinks, classes: present });
  validation.classes = [...classes];
  // Re-map labels from the filtered class list onto the given class indices.
  for (const f of validation.files) f.label = classes.indexOf(present[f.label]!);
  const extra = own.classes.filter((c) => !classes.includes(c));
  const missing = classes.filter((c) => !own.classes.includes(c));
  // The same name spelt with other code points (macOS writes é as e + accent): it looks identical,
  // so it is named once as such rather than as a class ignored and a class lacking.
  const nfc = (name: string) => name.normalize('NFC');
  const lookalikes = extra.filter((c) => missing.some((m) => nfc(m) === nfc(c)));
  const unlike = (names: string[]) => names.filter((n) => !lookalikes.some((l) => nfc(l) === nfc(n)));
  if (unlike(extra).length > 0) validation.warnings.push(`${root} has classes not in ${of}, ignored: ${unlike(extra).join(', ')}`);
  if (unlike(missing).length > 0) validation.warnings.push(`${root} lacks classes of ${of}: ${unlike(missing).join(', ')}`);
  if (lookalikes.length > 0) {
    validation.warnings.push(`${firstFew(lookalikes.map((c) => `"${c}"`))} in ${root} differ${lookalikes.length === 1 ? 's' : ''} from the class of ${of} of the same look only in Unicode normalization (a folder named on a Mac?): rename ${lookalikes.length === 1 ? 'it' : 'them'}; ${lookalikes.length === 1 ? 'it is' : 'they are'} ignored`);
  }
  return validation;
}

/** Why training cannot validate on `validation` (it lists no images), or null when it can. */
export function emptyValidationProblem(validation: DatasetListing, split?: number): string | null {
  if (validation.files.length > 0) return null;
  if (split !== undefined) {
    return `a validation split of ${split} takes no images from ${validation.root}: every class has fewer than ${Math.ceil(1 / split)} images; use a larger split, or train with ${setting('validationData', 'DIR')}`;
  }
  return `the validation folder ${validation.root} holds no images`;
}

/**
 * Per-class split of a listing. 'keras': validation = files [0, floor(f*n)) of each class in
 * listing order, training = the rest (Keras' DirectoryIterator with validation_split). 'shuffled':
 * floor(f*n) files of each class drawn with a seeded generator; both parts keep listing order.
 */
export function splitListing(
  listing: DatasetListing,
  fraction: number,
  order: 'keras' | 'shuffled' = 'keras',
  seed = 0,
): { train: DatasetListing; validation: DatasetListing } {
  const byClass: LabelledFile[][] = listing.classes.map(() => []);
  for (const f of listing.files) byClass[f.label]!.push(f);
  const rng = new Random(seed);
  const train: LabelledFile[] = [];
  const validation: LabelledFile[] = [];
  for (const files of byClass) {
    const n = files.length;
    const nVal = Math.floor(fraction * n);
    const isVal = new Uint8Array(n);
    if (order === 'keras') {
      isVal.fill(1, 0, nVal);
    } else {
      const perm = rng.fork().permutation(n);
      for (let i = 0; i < nVal; i++) isVal[perm[i]!] = 1;
    }
    files.forEach((f, i) => (isVal[i] ? validation : train).push({ ...f }));
  }
  const base = { root: listing.root, classes: listing.classes, skipped: [], ignoredCount: 0 };
  const warnings: string[] = [];
  const unseen = listing.classes.filter((_, c) => byClass[c]!.length > 0 && Math.floor(fraction * byClass[c]!.length) === 0);
  if (unseen.length > 0 && validation.length > 0) {
    warnings.push(`a validation split of ${fraction} takes no image of ${unseen.join(', ')} (too few images), so validation does not see ${unseen.length === 1 ? 'that class' : 'those classes'}`);
  }
  return {
    train: { ...base, files: train, skipped: listing.skipped, ignoredCount: listing.ignoredCount, ignoredExamples: listing.ignoredExamples, warnings: listing.warnings },
    validation: { ...base, files: validation, warnings },
  };
}
