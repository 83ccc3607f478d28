/**
 * Training from a feature store written by `graft features` (trainClassifier's `features` and
 * `validationFeatures`): the rows stand in for decoded images, the classes and labels come from the
 * store, and the store's settings (weights, cut, input size, resize, orientation, preprocessing,
 * pooling) must be this run's, else the run is refused naming what differs.
 */
import { basename, resolve } from 'node:path';
import type { Backbone } from '../backbone/backbone.js';
import type { ImageStore } from '../data/image-store.js';
import type { DatasetListing } from '../data/listing.js';
import { GraftError } from '../util/errors.js';
import { decodeLabelRuns } from './feature-extraction.js';
import { backboneFeatureSettings, type FeatureSettings } from './feature-fingerprint.js';
import { FeatureStoreFile, fingerprintChanges } from './feature-store.js';
import type { FileSetSetting } from './checkpoint.js';
import type { ClassMode } from '../data/batches.js';
import { storeLabels } from './feature-sources.js';
import type { RowsData } from './fit.js';
import { optionName, setting } from '../util/option-names.js';

/** A store's rows as the run's training or validation set. */
export interface StoredFeatureSet {
  file: string;
  rows: FeatureStoreFile;
  classes: string[];
  /** Stands in for the decoded images (count, labels; its paths name rows, its images cannot be read). */
  store: ImageStore;
  /** A listing of the rows (for counts and messages). */
  listing: DatasetListing;
  /** The store's fingerprint (its `images` digest names the images). */
  fingerprint: Record<string, unknown>;
}

/** Settings a store must share with the run. */
const SETTINGS = ['weights', 'cut', 'input size', 'interpolation', 'orientation', 'preprocess', 'pooling'] as const;

/**
 * Opens `file` (checked whole: every block's checksum) as a store of graft features; `classes`,
 * for a validation store, are the training's and must be its.
 */
export async function openStoredFeatures(file: string, what: 'training' | 'validation', classes?: string[]): Promise<StoredFeatureSet> {
  const path = resolve(file);
  const opened = await FeatureStoreFile.open(path, undefined, { verify: true });
  if (!(opened instanceof FeatureStoreFile)) {
    const hint = opened.problem === 'there is no such file' ? ' (sharded extraction writes parts: merge them with graft features --merge STORE)' : '';
    throw new GraftError(`the ${what} feature store ${path} cannot be used: ${opened.problem}${hint}`, { file: path });
  }
  try {
    const { header } = opened;
    if (header.firstRow !== 0 || header.partRows !== header.rows) {
      throw new GraftError(`${path} is one part (rows ${header.firstRow} to ${header.firstRow + header.partRows - 1} of ${header.rows}) of a sharded store: merge the parts first (graft features --merge STORE)`, { file: path });
    }
    const fp = header.fingerprint;
    const storeClasses = Array.isArray(fp.classes) && fp.classes.every((c) => typeof c === 'string') ? (fp.classes as string[]) : null;
    const labels = storeClasses && decodeLabelRuns(fp.labels, storeClasses.length);
    if (!storeClasses || !labels || labels.length !== header.rows || fp.feed !== 'cached') {
      throw new GraftError(`${path} is not a store of graft features (its header names no classes and labels, or not un-augmented features): write it with graft features`, { file: path });
    }
    if (classes && JSON.stringify(classes) !== JSON.stringify(storeClasses)) {
      throw new GraftError(`the ${what} feature store ${path} has the classes ${storeClasses.join(', ')}, the training data ${classes.join(', ')}: they must be the same`, { file: path });
    }
    const paths = Array.from({ length: header.rows }, (_, i) => `${path}#${i}`);
    const unreadable = (): never => {
      throw new Error(`the ${what} rows of ${path} are features, not images`);
    };
    const store: ImageStore = {
      size: [0, 0],
      count: header.rows,
      labels,
      paths,
      classes: storeClasses,
      bad: [],
      inMemory: false,
      imageBytes: 0,
      get: unreadable,
      load: async () => unreadable(),
    };
    const listing: DatasetListing = {
      // The store itself: an output folder beside it is not inside the "images".
      root: path,
      classes: storeClasses,
      files: paths.map((p, i) => ({ path: p, label: labels[i]! })),
      skipped: [],
      ignoredCount: 0,
      warnings: [],
    };
    return { file: path, rows: opened, classes: storeClasses, store, listing, fingerprint: fp };
  } catch (err) {
    await opened.close();
    throw err;
  }
}

/**
 * Refuses a store of other settings than the run's, in one line naming each difference (the
 * backbone's weights as a digest of their values, wherever they were loaded from).
 */
export function checkStoredSettings(set: StoredFeatureSet, backbone: Backbone, settings: FeatureSettings): void {
  // The same record graft features wrote into the store, so that the two cannot drift apart.
  const recorded = backboneFeatureSettings(backbone, settings);
  const run = Object.fromEntries(SETTINGS.map((k) => [k, recorded[k]]));
  const stored = Object.fromEntries(SETTINGS.map((k) => [k, set.fingerprint[k]]));
  const changes = fingerprintChanges(stored, run);
  if (JSON.stringify(set.rows.header.rowShape) !== JSON.stringify(backbone.extractor.outputShape)) changes.push(`row shape [${set.rows.header.rowShape.join(', ')}], now [${backbone.extractor.outputShape.join(', ')}]`);
  if (changes.length > 0) {
    throw new GraftError(`the feature store ${set.file} holds features of other settings than this run's (${changes.join('; ')}): train with the settings it was written with, or write it again with graft features`, { file: set.file });
  }
}

/** The set as a resume compares it: the store's images digest (its rows stand for them). */
export function storedImagesSetting(set: StoredFeatureSet): FileSetSetting {
  return { summary: `features of ${String(set.fingerprint.images)} (${basename(set.file)})`, files: [] };
}

/** A run's sets from stores: training always, validation from a store or from images (`listValidation`). */
export interface StoredRun {
  train: StoredFeatureSet;
  validation?: StoredFeatureSet;
  listings: { train: DatasetListing; validation: DatasetListing };
  opened: FeatureStoreFile[];
}

/**
 * Opens the stores of a run given `features` (and `validationFeatures`, or validation images
 * listed by `listValidation` with the store's classes). Cached features only: no augmentation to
 * apply to them, no backbone layers to tune.
 */
export async function openStoredRun(
  opts: { features: string; validationFeatures?: string; validationData?: string },
  run: { mode: string; fineTune: boolean; listValidation: (dir: string, classes: string[]) => Promise<DatasetListing> },
): Promise<StoredRun> {
  if (run.mode !== 'cached') throw new GraftError(`training from a feature store (${optionName('features')}) reads cached features: use ${setting('mode', 'cached', "{ kind: 'cached' }")}, not ${run.mode}`);
  if (run.fineTune) throw new GraftError(`fine-tuning trains backbone layers on images: it cannot run from a feature store (${optionName('features')})`);
  if (opts.validationFeatures !== undefined && opts.validationData !== undefined) {
    throw new GraftError(`${optionName('validationFeatures')} and ${optionName('validationData')} both give validation data: use one of them`);
  }
  if (opts.validationFeatures === undefined && opts.validationData === undefined) {
    throw new GraftError(`training from a feature store needs validation data: ${setting('validationFeatures', 'STORE')} or ${setting('validationData', 'DIR')}`);
  }
  const train = await openStoredFeatures(opts.features, 'training');
  const opened = [train.rows];
  try {
    const validation = opts.validationFeatures === undefined ? undefined : await openStoredFeatures(opts.validationFeatures, 'validation', train.classes);
    if (validation) opened.push(validation.rows);
    const validationListing = validation ? validation.listing : await run.listValidation(opts.validationData!, train.classes);
    return { train, validation, listings: { train: train.listing, validation: validationListing }, opened };
  } catch (err) {
    for (const o of opened) await o.close();
    throw err;
  }
}

/** The set's rows and encoded labels, as training and evaluation read them. */
export function storedRowsData(set: StoredFeatureSet, classMode: ClassMode): RowsData {
  return { rows: set.rows, labels: storeLabels(set.store, classMode), count: set.store.count };
}
