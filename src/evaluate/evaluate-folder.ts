import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { listValidationFolder, VALIDATION_FOLDER_NAMES } from '../data/listing.js';
import { listLabelTable } from '../data/label-table.js';
import { predictFiles, type LoadedClassifier } from '../model/saved-classifier.js';
import { firstFew, GraftError } from '../util/errors.js';
import { computeMetrics, type EvaluationMetrics, type Probabilities } from './metrics.js';

export interface FolderEvaluation {
  metrics: EvaluationMetrics;
  classes: string[];
  /** The evaluated files, in the order the metrics index them. */
  files: string[];
  /** Files that could not be decoded, with why. */
  skipped: { path: string; reason: string }[];
  /** What the listing noticed (an empty class folder, pictures in formats left out). */
  warnings: string[];
  /** The folder evaluated (absolute): the validation part of a train/ + validation/ root, else the folder given. */
  root: string;
}

export interface EvaluateOptions {
  followSymlinks?: boolean;
  /** Labels from a table (paths relative to the folder given) instead of class folders: see listLabelTable. */
  labels?: string;
  fileColumn?: string;
  labelColumn?: string;
  /** Test-time augmentation: each image's probabilities averaged with its mirror's. */
  tta?: boolean;
  onProgress?: (done: number, total: number) => void;
}

/**
 * Evaluates a classifier on labelled class folders (a lab-layout root means its validation part),
 * with the model's class names deciding which folder is which label.
 */
export async function evaluateFolder(model: LoadedClassifier, root: string, opts: EvaluateOptions = {}): Promise<FolderEvaluation> {
  const val = VALIDATION_FOLDER_NAMES.map((n) => join(root, n)).find((d) => !opts.labels && existsSync(join(root, 'train')) && existsSync(d));
  const dir = val ?? root;
  const classes = model.info.classes;
  // Folders of some of the model's classes are fine (e.g. new photos of one class); labels follow the model.
  const listing = opts.labels
    ? await listLabelTable(opts.labels, dir, { classes, classesOf: 'the model', fileColumn: opts.fileColumn, labelColumn: opts.labelColumn })
    : await listValidationFolder(dir, classes, { classesOf: 'the model', followSymlinks: opts.followSymlinks });
  if (listing.files.length === 0) {
    throw new GraftError(`${dir}: no images in class folders named ${classes.join(', ')} (the model's classes)`, { file: dir });
  }
  const skipped = [...listing.skipped];
  const predictions = await predictFiles(model, listing.files.map((f) => f.path), {
    onBadImage: (path, reason) => skipped.push({ path, reason }),
    onProgress: opts.onProgress,
    tta: opts.tta,
  });
  if (predictions.length === 0) {
    const bad = firstFew(skipped.map((s) => `${s.path}: ${s.reason}`), '; ');
    throw new GraftError(`none of the ${listing.files.length} images in ${dir} could be read (${bad})`, { file: dir });
  }
  const label = new Map(listing.files.map((f) => [f.path, f.label]));
  const probabilities = predictions.map((p) => (model.info.classMode === 'binary' ? p.probabilities[1]! : p.probabilities));
  const labels = predictions.map((p) => label.get(p.file)!);
  const metrics = computeMetrics(probabilities as Probabilities, labels, classes.length);
  return { metrics, classes, files: predictions.map((p) => p.file), skipped, warnings: listing.warnings, root: listing.root };
}
