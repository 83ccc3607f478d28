/**
 * A trained classifier loaded back for `graft predict` / `graft evaluate`: the run folder (model/
 * and model.onnx), the TF.js model folder alone, or model.onnx alone; the whole network runs on
 * onnxruntime.
 */
import { existsSync, statSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { basename, dirname, join, relative, resolve, sep } from 'node:path';
import onnxProto from 'onnx-proto';
import { kerasToOnnx } from '../backbone/onnx/convert.js';
import { classifierOnnx } from './classifier-onnx.js';
import { createOrtExtractor, type FeatureExtractor } from '../backbone/engine.js';
import { loadTfjsLayersModel } from '../backbone/weights/tfjs-layers.js';
import { BadImageError, decodeBytesInto, decodeImageInto, ORIENTATIONS } from '../data/decode.js';
import { defaultDecodeConcurrency, runPool } from '../data/image-store.js';
import { preprocessParams } from '../data/preprocess.js';
import { GraftError } from '../util/errors.js';
import { MANIFEST_NAME, RunManifest } from '../train/run-manifest.js';
import { runningHolder } from '../train/run-lock.js';
import { readJsonFile } from '../util/json-file.js';
import type { ClassifierInfo } from './classifier-info.js';
import { summarizeModel } from './summary.js';

export interface Prediction {
  file: string;
  /** Index and name of the most probable class. */
  classIndex: number;
  className: string;
  /** Probability of the predicted class. */
  probability: number;
  /** One probability per class, in class order. */
  probabilities: number[];
}

export interface LoadedClassifier {
  info: ClassifierInfo;
  source: string;
  /** Class probabilities of one NHWC preprocessed batch: n rows of (1 for binary, else k) values. */
  run(input: Float32Array, n: number): Promise<Float32Array>;
  dispose(): Promise<void>;
}

function checkInfo(info: unknown, source: string): ClassifierInfo {
  const i = info as Partial<ClassifierInfo> | undefined;
  if (!i || i.format !== 'graft-classifier' || !Array.isArray(i.classes) || !Array.isArray(i.inputSize)) {
    throw new GraftError(`${source}: not a classifier trained by graft (no graft metadata with classes and input size)`, { file: source });
  }
  if (i.orientation !== undefined && !ORIENTATIONS.includes(i.orientation)) {
    throw new GraftError(`${source}: unknown orientation "${String(i.orientation)}" in its graft metadata (from a newer graft?)`, { file: source });
  }
  return i as ClassifierInfo;
}

async function readModelJsonInfo(file: string): Promise<ClassifierInfo> {
  const json = (await readJsonFile(file)) as { userDefinedMetadata?: { graft?: unknown } } | null;
  return checkInfo(json?.userDefinedMetadata?.graft, file);
}

async function readOnnxInfo(file: string, bytes: Uint8Array): Promise<ClassifierInfo> {
  let model;
  try {
    model = onnxProto.onnx.ModelProto.decode(bytes);
  } catch {
    throw new GraftError(`${file}: not an ONNX model`, { file });
  }
  // Protobuf decodes almost any bytes (an empty file, a text file) into an empty message.
  if (!model.graph?.node?.length) throw new GraftError(`${file}: not an ONNX model (no graph in it)`, { file });
  const entry = model.metadataProps?.find((p) => p.key === 'graft');
  if (!entry?.value) throw new GraftError(`${file}: this ONNX model has no graft metadata (class names, input size)`, { file });
  return checkInfo(JSON.parse(entry.value), file);
}

/**
 * The TF.js side of a classifier at `target` (`path` resolved): a run folder's model/, a TF.js
 * model folder, or its model.json named directly (standing for its folder); null for a file that
 * is not a model.json (an .onnx file). `folder` is where a run's model.onnx would lie.
 */
function locateTfjsClassifier(
  path: string,
  target: string,
  expected = 'model/model.json from graft train, a TF.js model folder, or model.onnx',
): { folder: string; modelDir: string; modelJson: string } | null {
  const isDir = statSync(target).isDirectory();
  if (!isDir && basename(target) !== 'model.json') return null;
  const folder = isDir ? target : dirname(target);
  const modelDir = isDir && existsSync(join(target, 'model', 'model.json')) ? join(target, 'model') : folder;
  const modelJson = join(modelDir, 'model.json');
  if (!existsSync(modelJson)) {
    throw new GraftError(`${path}: no classifier here (expected ${expected})`, { file: path });
  }
  return { folder, modelDir, modelJson };
}

/**
 * The record of the run folder holding a model at `folder` (the run folder, or its model/), to
 * check the model's files against; null for a model outside a run folder. A set of results whose
 * commit a run cut short is finished first, when no run holds the folder.
 */
async function runRecord(folder: string): Promise<RunManifest | null> {
  for (const dir of [folder, dirname(folder)]) {
    if (!existsSync(join(dir, MANIFEST_NAME))) continue;
    let record = await RunManifest.open(dir);
    if (record.committing && !(await runningHolder(dir))) record = await RunManifest.open(dir, { recover: true }).catch(() => record);
    return record;
  }
  return null;
}

/** Finds and loads a classifier from a run folder, a TF.js model folder or an .onnx file. */
export async function loadClassifier(path: string, opts: { threads?: number } = {}): Promise<LoadedClassifier> {
  const target = resolve(path);
  if (!existsSync(target)) throw new GraftError(`${path}: no such model file or folder`, { file: path });
  let info: ClassifierInfo;
  let onnx: Uint8Array;
  let source: string;
  const located = locateTfjsClassifier(path, target);
  if (located) {
    const { folder, modelDir, modelJson } = located;
    const record = await runRecord(folder);
    // A run folder has model.onnx beside model/; a bare TF.js folder is converted in memory.
    const onnxFile = join(folder, 'model.onnx');
    const hasOnnx = existsSync(onnxFile);
    if (hasOnnx) {
      onnx = new Uint8Array(await readFile(onnxFile));
      await record?.verify(relative(record.dir, onnxFile).split(sep).join('/'), onnx);
    } else {
      for (const rel of record?.paths().filter((p) => join(record.dir, p).startsWith(modelDir + sep)) ?? []) await record!.verify(rel);
    }
    info = await readModelJsonInfo(modelJson);
    onnx = hasOnnx ? onnx! : await convertTfjs(modelDir, info);
    source = hasOnnx ? onnxFile : modelDir;
  } else {
    onnx = new Uint8Array(await readFile(target));
    const record = await runRecord(dirname(target));
    await record?.verify(relative(record.dir, target).split(sep).join('/'), onnx);
    info = await readOnnxInfo(target, onnx);
    source = target;
  }
  const [h, w] = info.inputSize;
  const outputs = info.classMode === 'binary' ? 1 : info.classes.length;
  const session: FeatureExtractor = await createOrtExtractor(onnx, [h, w, 3], [outputs], { threads: opts.threads, label: `the classifier ${source}` });
  return {
    info,
    source,
    run: (input, n) => session.extract(input, n),
    dispose: () => session.dispose(),
  };
}

/**
 * The Keras-style layer table of a trained classifier (a run folder, its model/ folder or its
 * model.json), its backbone counted as frozen, as it was trained.
 */
export async function summarizeClassifier(path: string): Promise<string> {
  const target = resolve(path);
  if (!existsSync(target)) throw new GraftError(`${path}: no such model file or folder`, { file: path });
  const located = locateTfjsClassifier(path, target, 'model/model.json from graft train, or the model/ folder itself');
  if (!located) {
    const why = target.endsWith('.onnx') ? 'an ONNX model has no Keras layer table; give its run folder or model/ folder' : 'not a run folder, a model/ folder or a model.json';
    throw new GraftError(`${path}: ${why}`, { file: path });
  }
  const info = await readModelJsonInfo(located.modelJson);
  const { graph } = await loadTfjsLayersModel(located.modelDir);
  return summarizeModel(graph, [info.inputSize[0], info.inputSize[1], 3]);
}

async function convertTfjs(dir: string, info: ClassifierInfo): Promise<Uint8Array> {
  const { graph, weights } = await loadTfjsLayersModel(dir);
  return classifierOnnx(kerasToOnnx(graph, weights, { inputSize: info.inputSize }), info);
}

/** Per-class probabilities from the network's output row (sigmoid: [1-p, p]). */
export function classProbabilities(info: ClassifierInfo, row: Float32Array): number[] {
  return info.classMode === 'binary' ? [1 - row[0]!, row[0]!] : Array.from(row);
}

/** An image to classify: a file path, or encoded bytes in memory (an upload, say) with a name for results and errors. */
export type ImageInput = string | { name: string; bytes: Uint8Array };

export interface PredictOptions {
  /** Images per onnxruntime call (default 16). */
  batchSize?: number;
  /** Hears about each image that cannot be decoded (it is left out); without it the first one throws. */
  onBadImage?: (file: string, reason: string) => void;
  /** Hears how many of the images are done (read or found unreadable), after each batch. */
  onProgress?: (done: number, total: number) => void;
  /**
   * Test-time augmentation: each image's probabilities are the mean of the image's and its
   * left-right mirror's (the flip the lab's augmentation trains with). Twice the network's work.
   */
  tta?: boolean;
}

/** Mirrors n NHWC images left to right, in place. */
export function mirrorImages(input: Float32Array, n: number, h: number, w: number): void {
  for (let b = 0; b < n; b++) {
    for (let y = 0; y < h; y++) {
      const row = (b * h + y) * w * 3;
      for (let x = 0, x2 = w - 1; x < x2; x++, x2--) {
        for (let c = 0; c < 3; c++) {
          const i = row + x * 3 + c, j = row + x2 * 3 + c;
          const t = input[i]!;
          input[i] = input[j]!;
          input[j] = t;
        }
      }
    }
  }
}

/**
 * Decodes, preprocesses and classifies `files` in batches, in order. Files that cannot be decoded
 * are reported through onBadImage and left out; without onBadImage the first one throws its
 * GraftError (naming the file) rather than vanish from the results. Folders are not walked:
 * `listImageFiles(dir, { allFormats: true })` lists the images under one, as `graft predict` does.
 */
export function predictFiles(model: LoadedClassifier, files: string[], opts: PredictOptions = {}): Promise<Prediction[]> {
  return predictImages(model, files, opts);
}

/** predictFiles for files and in-memory images alike; a prediction's `file` is the path or the given name. */
export async function predictImages(model: LoadedClassifier, images: ImageInput[], opts: PredictOptions = {}): Promise<Prediction[]> {
  const results: Prediction[] = [];
  await predictEach(model, images, (p) => {
    results.push(p);
  }, opts);
  return results;
}

/**
 * predictImages without holding the results: `onPrediction` hears each prediction as its batch is
 * done, and onBadImage each unreadable image, both in input order (so a caller can write each
 * result at once, and memory stays flat however many images there are).
 */
export async function predictEach(model: LoadedClassifier, images: ImageInput[], onPrediction: (p: Prediction) => void | Promise<void>, opts: PredictOptions = {}): Promise<void> {
  const { info } = model;
  const [h, w] = info.inputSize;
  const batch = opts.batchSize ?? 16;
  if (!Number.isInteger(batch) || batch < 1) throw new GraftError(`predictFiles: batchSize must be a positive integer, got ${batch}`);
  const size = h * w * 3;
  const input = new Float32Array(batch * size);
  const { scale, offset } = preprocessParams(info.preprocess);
  const width = info.classMode === 'binary' ? 1 : info.classes.length;
  const decodeOpts = { width: w, height: h, interpolation: info.interpolation, orientation: info.orientation };
  const nameOf = (image: ImageInput) => (typeof image === 'string' ? image : image.name);
  // Batch k+1 is decoded (several images at once, on sharp's threads) while the network runs on
  // batch k, into the other of two pixel buffers. A failed decode is kept, not thrown, so that
  // bad images are reported in input order.
  const pixels = [0, 1].map(() => new Uint8Array(batch * size));
  const decodeBatch = async (start: number, into: Uint8Array) => {
    const slice = images.slice(start, start + batch);
    const failures: unknown[] = new Array(slice.length).fill(null);
    await runPool(slice.length, defaultDecodeConcurrency(), async (i) => {
      const image = slice[i]!;
      const out = into.subarray(i * size, (i + 1) * size);
      try {
        if (typeof image === 'string') await decodeImageInto(image, decodeOpts, out);
        else await decodeBytesInto(image.bytes, image.name, decodeOpts, out);
      } catch (err) {
        failures[i] = err ?? new Error('decode failed');
      }
    });
    return { slice, failures };
  };
  let next: ReturnType<typeof decodeBatch> | null = images.length > 0 ? decodeBatch(0, pixels[0]!) : null;
  try {
    for (let k = 0, start = 0; next; k++, start += batch) {
      const { slice, failures } = await next;
      const decoded = pixels[k % 2]!;
      next = start + batch < images.length ? decodeBatch(start + batch, pixels[(k + 1) % 2]!) : null;
      let rows = 0;
      for (const [i, err] of failures.entries()) {
        if (err !== null) {
          if (!(err instanceof GraftError) || !opts.onBadImage) throw err;
          continue;
        }
        const from = i * size, to = rows++ * size;
        for (let j = 0; j < size; j++) input[to + j] = decoded[from + j]! * scale + offset;
      }
      let out = rows > 0 ? await model.run(input.subarray(0, rows * size), rows) : new Float32Array(0);
      if (opts.tta && rows > 0) {
        // A copy: the session may hand back the same output buffer on the next run.
        const plain = out.slice(0, rows * width);
        mirrorImages(input.subarray(0, rows * size), rows, h, w);
        const mirrored = await model.run(input.subarray(0, rows * size), rows);
        for (let i = 0; i < plain.length; i++) plain[i] = (plain[i]! + mirrored[i]!) / 2;
        out = plain;
      }
      // Results and bad images in input order.
      let row = 0;
      for (const [i, image] of slice.entries()) {
        const err = failures[i];
        if (err !== null) {
          // The caller names the file; pass on only the problem.
          opts.onBadImage!(nameOf(image), err instanceof BadImageError ? err.reason : (err as Error).message);
          continue;
        }
        const probabilities = classProbabilities(info, out.subarray(row * width, (row + 1) * width));
        row++;
        if (!probabilities.every(Number.isFinite)) {
          // A damaged model (or one trained to NaN) gives no answer: never print NaN as a probability.
          throw new GraftError(`${nameOf(image)}: the model ${model.source} gave a probability that is not a number (${probabilities.join(', ')}): the model is damaged or diverged in training`, { file: model.source });
        }
        let best = 0;
        for (let c = 1; c < probabilities.length; c++) if (probabilities[c]! > probabilities[best]!) best = c;
        // Keras's binary rule: class 1 only when p > 0.5.
        if (info.classMode === 'binary') best = probabilities[1]! > 0.5 ? 1 : 0;
        await onPrediction({ file: nameOf(image), classIndex: best, className: info.classes[best]!, probability: probabilities[best]!, probabilities });
      }
      opts.onProgress?.(Math.min(images.length, start + batch), images.length);
    }
  } finally {
    // Stopped early (a bad image, a failing callback): the decode in flight finishes before its buffer goes.
    await next?.catch(() => undefined);
  }
}
