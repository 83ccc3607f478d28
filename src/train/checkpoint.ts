import { createHash } from 'node:crypto';
import { open, readdir, rm, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { describeFsError, firstFew, GraftError } from '../util/errors.js';
import { overwriteFile, writeFileAtomic } from '../util/atomic.js';
import { makeFolder } from '../util/folders.js';
import { sha256File, sha256Stream } from '../util/checksum.js';
import { readJsonFile } from '../util/json-file.js';
import type { DenseParams, HeadParams } from '../model/head.js';
import type { History } from './history.js';
import type { OptimizerState } from './optimizers.js';
import type { EarlyStoppingState } from './early-stopping.js';
import type { LrScheduleState } from './lr-schedule.js';
import { setting } from '../util/option-names.js';

/**
 * A training checkpoint in `<dir>`: checkpoint.json (small) naming checkpoint-a.bin or
 * checkpoint-b.bin (every float array, concatenated). The two binaries take turns: a new
 * generation is written over the one the json does not name, synced, and only then is the json
 * replaced atomically, so a crash at any point leaves the json naming a complete binary.
 * Rewriting the older binary in place, rather than a fresh file each epoch, reuses its cached
 * pages: for the lab's 308 MB a checkpoint took ~0.33 s instead of ~0.9 s an epoch on a VM.
 */
/**
 * The weights a trainer trains: the head's, and while fine-tuning the backbone's unfrozen ones
 * (in the segment's Keras order; their optimiser slots follow the head's in OptimizerState.slots).
 */
export interface TrainedParams extends HeadParams {
  backbone?: Float32Array[];
}

export interface Checkpoint {
  /** Epochs finished (training resumes at this 0-based epoch). */
  epoch: number;
  seed: number;
  fingerprint: string;
  /** What the run was given (data, preprocessing, feed...), so a resume with other settings is refused. */
  setup?: RunSetup;
  history: History;
  params: TrainedParams;
  optimizer: OptimizerState;
  /** Early stopping's state, and the file of the best weights kept (restoreBestWeights). */
  earlyStopping?: EarlyStoppingCheckpoint;
  /** The learning-rate schedule's state (the next epoch's rate, plateau's counters). */
  lrSchedule?: LrScheduleState;
}

export interface EarlyStoppingCheckpoint {
  state: EarlyStoppingState;
  /** The best-weights binary in the checkpoint folder (saveBestWeights), if kept. */
  bestWeights?: string;
  /** Its SHA-256 (checkpoints of earlier versions had none). */
  bestSha256?: string;
}

/** An array saved block by block, for arrays too big to copy whole only to save them. */
export interface StreamedArray {
  readonly length: number;
  /** Consecutive blocks, `length` floats in all; each is written before the next is asked for. */
  blocks(): AsyncIterable<Float32Array>;
}

/** Optimiser state as saveCheckpoint takes it: any slot may be streamed. */
export interface SavedOptimizerState extends Omit<OptimizerState, 'slots'> {
  slots: (Float32Array | StreamedArray)[][];
}

/** Head weights for a checkpoint: any kernel may be streamed (the first one is, from the workers). */
export interface SavedParams {
  dense: (Omit<DenseParams, 'kernel'> & { kernel: Float32Array | StreamedArray })[];
  backbone?: Float32Array[];
}

/** Shapes of a trainer's weights, for reading them back: the head's Dense layers and the lengths of any backbone weights. */
export interface ParamShapes {
  dense: { inputSize: number; units: number }[];
  backbone?: number[];
}

function paramArrays(params: SavedParams): (Float32Array | StreamedArray)[] {
  return [...params.dense.flatMap((d) => [d.kernel, d.bias]), ...(params.backbone ?? [])];
}

async function takeParams(like: ParamShapes, take: (n: number) => Promise<Float32Array>): Promise<TrainedParams> {
  const dense = [];
  for (const { inputSize, units } of like.dense) dense.push({ inputSize, units, kernel: await take(inputSize * units), bias: await take(units) });
  if (!like.backbone) return { dense };
  const backbone = [];
  for (const n of like.backbone) backbone.push(await take(n));
  return { dense, backbone };
}

const paramsBytes = (like: ParamShapes) => like.dense.reduce((n, d) => n + (d.inputSize * d.units + d.units) * 4, 0) + (like.backbone ?? []).reduce((n, l) => n + l * 4, 0);

/** What saveCheckpoint writes: a Checkpoint whose big arrays may be streamed. */
export interface CheckpointToSave extends Omit<Checkpoint, 'optimizer' | 'params'> {
  params: SavedParams;
  optimizer: SavedOptimizerState;
}

/**
 * A run's settings by readable name (`preprocess`, `training images`...), JSON-able. Resuming is
 * only the same run when every one of them is unchanged.
 */
export type RunSetup = Record<string, unknown>;

/**
 * A setting that is a set of files (a run's images): compared by `summary` (say a count and a
 * digest); `files` are kept so a refused resume can name the files that came or went.
 */
export interface FileSetSetting {
  summary: string;
  files: string[];
}

function isFileSet(v: unknown): v is FileSetSetting {
  return typeof v === 'object' && v !== null && typeof (v as FileSetSetting).summary === 'string' && Array.isArray((v as FileSetSetting).files);
}

/** What a setting is compared by (checkpoints of earlier versions saved a file set's summary alone). */
const comparable = (v: unknown) => JSON.stringify(isFileSet(v) ? v.summary : v);

/** The files only one of two file sets holds, named (a few of each). */
function fileSetChanges(before: FileSetSetting, now: FileSetSetting): string {
  const had = new Set(before.files), has = new Set(now.files);
  const gone = before.files.filter((f) => !has.has(f)), added = now.files.filter((f) => !had.has(f));
  const parts = [...(gone.length ? [`gone: ${firstFew(gone)}`] : []), ...(added.length ? [`new: ${firstFew(added)}`] : [])];
  return parts.length ? ` (${parts.join('; ')})` : '';
}

const FORMAT = 'graft-head-checkpoint-1';
const BINARIES = ['checkpoint-a.bin', 'checkpoint-b.bin'] as const;
/** Early stopping's best weights: two binaries taking turns, like the checkpoint's. */
const BEST_BINARIES = ['best-a.bin', 'best-b.bin'] as const;
const JSON_NAME = 'checkpoint.json';

interface Meta {
  format: string;
  generation: number;
  binary: string;
  bytes: number;
  /** The binary's SHA-256 (checkpoints of earlier versions had none). */
  sha256?: string;
  epoch: number;
  seed: number;
  fingerprint: string;
  setup?: RunSetup;
  history: History;
  dense: { inputSize: number; units: number }[];
  /** Lengths of the fine-tuned backbone weights, when the run fine-tunes. */
  backbone?: number[];
  optimizer: { config: OptimizerState['config']; iterations: number; slotsPerParam: number };
  /** Set once the run that wrote it has finished (trained every epoch and exported). */
  finished?: boolean;
  earlyStopping?: EarlyStoppingCheckpoint;
  /** SHA-256 of this JSON as written without this field, so damage to it shows too. */
  checksum?: string;
  lrSchedule?: LrScheduleState;
}

/** checkpoint.json's text, with its own checksum. */
function metaText(meta: Meta): string {
  const { checksum: _, ...rest } = meta;
  return JSON.stringify({ ...rest, checksum: createHash('sha256').update(JSON.stringify(rest, null, 1)).digest('hex') }, null, 1);
}

/** Checksums of best-weights binaries this process wrote, so a checkpoint need not read them back. */
const bestChecksums = new Map<string, string>();

/** A short stable hash of a JSON-able description of the training setup. */
export function configFingerprint(config: unknown): string {
  return createHash('sha256').update(JSON.stringify(config)).digest('hex').slice(0, 16);
}

function arrays(ck: CheckpointToSave): (Float32Array | StreamedArray)[] {
  return [...paramArrays(ck.params), ...ck.optimizer.slots.flat()];
}

const bytesOf = (a: Float32Array) => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);

/** The bytes of every array in order, streamed ones block by block. */
async function* arrayBytes(data: (Float32Array | StreamedArray)[], hash?: { update(b: Uint8Array): unknown }): AsyncGenerator<Uint8Array> {
  for (const a of data) {
    if (a instanceof Float32Array) {
      hash?.update(bytesOf(a));
      yield bytesOf(a);
      continue;
    }
    let floats = 0;
    for await (const block of a.blocks()) {
      floats += block.length;
      hash?.update(bytesOf(block));
      yield bytesOf(block);
    }
    if (floats !== a.length) throw new Error(`a streamed checkpoint array gave ${floats} values, expected ${a.length}`);
  }
}

async function readMeta(dir: string): Promise<Meta | null> {
  const file = join(dir, JSON_NAME);
  const unusable = (why: string) => new GraftError(`${why}; this checkpoint cannot be used: pass ${setting('overwrite')} to start afresh`, { file });
  const meta = (await readJsonFile(file, { allowMissing: true }).catch((err: unknown) => {
    // Unreadable content, not an unreadable file (there --overwrite would fail the same way).
    throw err instanceof GraftError && !(err.cause instanceof Error && 'code' in err.cause) ? unusable(err.message) : err;
  })) as Meta | undefined;
  if (!meta) return null;
  if (meta.format !== FORMAT) throw unusable(`${file} is not a graft head checkpoint (format ${String(meta.format)})`);
  const { checksum, ...rest } = meta;
  if (checksum !== undefined && createHash('sha256').update(JSON.stringify(rest, null, 1)).digest('hex') !== checksum) {
    throw unusable(`${file} is damaged (its checksum does not match its content)`);
  }
  return meta;
}

/** The binaries the checkpoint in `dir` names (its weights, early stopping's best), or [] when there is none. */
export async function readCheckpointBinaries(dir: string): Promise<string[]> {
  const meta = await readMeta(dir);
  return meta ? [meta.binary, ...(meta.earlyStopping?.bestWeights ? [meta.earlyStopping.bestWeights] : [])] : [];
}

/**
 * Writes a checkpoint binary in place; on a failure (a full disk) the partial file is removed,
 * so it neither keeps the disk full nor is mistaken for a checkpoint.
 */
async function writeBinary(file: string, data: AsyncIterable<Uint8Array>): Promise<void> {
  try {
    await overwriteFile(file, data);
  } catch (err) {
    await rm(file, { force: true }).catch(() => {});
    throw err;
  }
}

export async function saveCheckpoint(dir: string, ck: CheckpointToSave): Promise<void> {
  await makeFolder(dir);
  const previous = await readMeta(dir).catch(() => null);
  const generation = (previous?.generation ?? 0) + 1;
  const binary = previous?.binary === BINARIES[0] ? BINARIES[1] : BINARIES[0];
  const data = arrays(ck);
  const hash = sha256Stream();
  await writeBinary(join(dir, binary), arrayBytes(data, hash));
  let earlyStopping = ck.earlyStopping;
  if (earlyStopping?.bestWeights) {
    const best = join(dir, earlyStopping.bestWeights);
    earlyStopping = { ...earlyStopping, bestSha256: bestChecksums.get(best) ?? (await sha256File(best)).sha256 };
  }
  const meta: Meta = {
    format: FORMAT,
    generation,
    binary,
    bytes: data.reduce((s, a) => s + a.length * 4, 0),
    sha256: hash.digest('hex'),
    epoch: ck.epoch,
    seed: ck.seed,
    fingerprint: ck.fingerprint,
    setup: ck.setup,
    history: ck.history,
    dense: ck.params.dense.map((d) => ({ inputSize: d.inputSize, units: d.units })),
    ...(ck.params.backbone && { backbone: ck.params.backbone.map((a) => a.length) }),
    optimizer: { config: ck.optimizer.config, iterations: ck.optimizer.iterations, slotsPerParam: ck.optimizer.slots[0]?.length ?? 0 },
    ...(earlyStopping && { earlyStopping }),
    ...(ck.lrSchedule && { lrSchedule: ck.lrSchedule }),
  };
  await writeFileAtomic(join(dir, JSON_NAME), metaText(meta));
  await removeBinariesExcept(dir, [...BINARIES]);
}

/**
 * Writes the head's weights as early stopping's best into the best-weights binary that `current`
 * (the one the checkpoint names now) is not, and returns its name: the checkpoint written next
 * names it, so a crash in between leaves the older best in force.
 */
export async function saveBestWeights(dir: string, params: SavedParams, current: string | undefined): Promise<string> {
  await makeFolder(dir);
  const binary = current === BEST_BINARIES[0] ? BEST_BINARIES[1] : BEST_BINARIES[0];
  const hash = sha256Stream();
  await writeBinary(join(dir, binary), arrayBytes(paramArrays(params), hash));
  bestChecksums.set(join(dir, binary), hash.digest('hex'));
  return binary;
}

/** The best weights the checkpoint in `dir` names (written by saveBestWeights), shaped like `like`. */
export async function loadBestWeights(dir: string, binary: string, like: ParamShapes): Promise<TrainedParams> {
  if (!(BEST_BINARIES as readonly string[]).includes(binary)) throw new GraftError(`${join(dir, JSON_NAME)} names an unknown best-weights file ${binary}`, { file: join(dir, JSON_NAME) });
  const meta = await readMeta(dir);
  const expected = meta?.earlyStopping?.bestWeights === binary ? meta.earlyStopping.bestSha256 : undefined;
  return readArrays(join(dir, binary), paramsBytes(like), expected, (take) => takeParams(like, take));
}

/** Opens `file`, checks it holds `bytes` bytes, and lets `read` take float arrays from it in order. */
async function readArrays<T>(file: string, bytes: number, sha256: string | undefined, read: (take: (n: number) => Promise<Float32Array>) => Promise<T>): Promise<T> {
  // Read straight into the arrays: a binary is as big as the head's weights (and slots).
  let handle: FileHandle;
  try {
    handle = await open(file, 'r');
  } catch (err) {
    throw describeFsError(err, file);
  }
  try {
    const size = (await handle.stat()).size;
    if (size !== bytes) throw new GraftError(`${file} holds ${size} bytes, expected ${bytes}; this checkpoint cannot be used: pass ${setting('overwrite')} to start afresh`, { file });
    const hash = sha256 ? sha256Stream() : null;
    let offset = 0;
    const take = async (n: number) => {
      const a = new Float32Array(n), view = bytesOf(a);
      for (let done = 0; done < view.length;) {
        const { bytesRead } = await handle.read(view, done, view.length - done, offset + done);
        if (bytesRead === 0) throw new GraftError(`${file} ended early`, { file });
        done += bytesRead;
      }
      offset += n * 4;
      hash?.update(view);
      return a;
    };
    const result = await read(take);
    // Damage that keeps the size (flipped bytes) would otherwise resume training on garbage weights.
    if (hash && hash.digest('hex') !== sha256) {
      throw new GraftError(`${file} is damaged (its checksum differs from the one in ${JSON_NAME}); this checkpoint cannot be used: pass ${setting('overwrite')} to start afresh`, { file });
    }
    return result;
  } catch (err) {
    throw err instanceof GraftError ? err : describeFsError(err, file);
  } finally {
    await handle.close();
  }
}

/** Removes every checkpoint binary in `dir` (best-weights ones too, with `best`) but those in `keep`. */
async function removeBinariesExcept(dir: string, keep: string[], best = false): Promise<void> {
  // checkpoint-<generation>.bin: the one-file-per-generation layout of earlier graft versions.
  const pattern = best ? /^(checkpoint-(\d+|a|b)|best-(a|b))\.bin$/ : /^checkpoint-(\d+|a|b)\.bin$/;
  for (const f of await readdir(dir).catch(() => [] as string[])) {
    if (pattern.test(f) && !keep.includes(f)) await rm(join(dir, f), { force: true }).catch(() => {});
  }
}

/** How far the run that wrote the checkpoint in `dir` got (epochs done, whether it finished) and its settings, or null when there is none. */
export async function checkpointStatus(dir: string): Promise<{ epoch: number; finished: boolean; setup?: RunSetup } | null> {
  const meta = await readMeta(dir);
  return meta ? { epoch: meta.epoch, finished: meta.finished === true, ...(meta.setup && { setup: meta.setup }) } : null;
}

/**
 * Settings added to RunSetup after checkpoints were first written, with the value every run had
 * before they existed: an older checkpoint is compared as if it had recorded that value.
 */
const SETTINGS_ADDED_LATER: RunSetup = { orientation: 'ignore', 'early stopping': 'off', 'fine-tune': 'off', 'class weight': 'none', 'learning-rate schedule': 'constant', 'backbone precision': 'fp32' };

/**
 * Refuses to resume the run in `dir` (its folder or its checkpoint's; saved: the checkpoint's
 * epochs done and settings) as a run of `epochs` epochs with `setup`, naming every setting in it
 * that changed (settings saved but not in `setup` are not compared). Checkpoints of graft versions
 * that recorded no settings are only checked for their epochs.
 */
export function checkResumable(dir: string, saved: { epoch: number; setup?: RunSetup }, setup: RunSetup | undefined, epochs: number): void {
  const show = (v: unknown) => (isFileSet(v) ? v.summary : typeof v === 'string' ? v : JSON.stringify(v));
  const changes: string[] = [];
  if (saved.setup && setup) {
    // The keys given now (a caller may check some settings early and the rest later).
    for (const key of Object.keys(setup)) {
      const before = key in saved.setup ? saved.setup[key] : SETTINGS_ADDED_LATER[key], now = setup[key];
      if (comparable(before) === comparable(now)) continue;
      const which = isFileSet(before) && isFileSet(now) ? fileSetChanges(before, now) : '';
      changes.push(`${key} ${show(before)}, now ${show(now)}${which}`);
    }
  }
  if (changes.length > 0) {
    throw new GraftError(
      `cannot resume the run in ${dir} with other settings (${changes.join('; ')}): resume with the settings it was started with, or pass ${setting('overwrite')} to start afresh`,
      { file: dir },
    );
  }
  if (saved.epoch > epochs) {
    throw new GraftError(`the run in ${dir} has ${saved.epoch} epoch${saved.epoch === 1 ? '' : 's'} done, more than the ${epochs} asked for: resume with ${setting('epochs', saved.epoch)} or more`, { file: dir });
  }
}

/** Records that the run which wrote the checkpoint in `dir` has finished, so a fresh run may replace it. */
export async function markCheckpointFinished(dir: string): Promise<void> {
  const meta = await readMeta(dir);
  if (!meta) return;
  if (!meta.finished) await writeFileAtomic(join(dir, JSON_NAME), metaText({ ...meta, finished: true }));
  // No more generations will be written: the other binaries would only take disk space.
  await removeBinariesExcept(dir, [meta.binary, ...(meta.earlyStopping?.bestWeights ? [meta.earlyStopping.bestWeights] : [])], true);
}

/** The checkpoint in `dir`, or null when there is none. */
export async function loadCheckpoint(dir: string): Promise<Checkpoint | null> {
  const meta = await readMeta(dir);
  if (!meta) return null;
  return readArrays(join(dir, meta.binary), meta.bytes, meta.sha256, async (take) => {
    const params = await takeParams({ dense: meta.dense, backbone: meta.backbone }, take);
    const slots: Float32Array[][] = [];
    for (const n of [...params.dense.flatMap((d) => [d.kernel.length, d.bias.length]), ...(params.backbone ?? []).map((a) => a.length)]) {
      const perParam: Float32Array[] = [];
      for (let j = 0; j < meta.optimizer.slotsPerParam; j++) perParam.push(await take(n));
      slots.push(perParam);
    }
    return {
      epoch: meta.epoch,
      seed: meta.seed,
      fingerprint: meta.fingerprint,
      ...(meta.setup && { setup: meta.setup }),
      history: meta.history,
      params,
      optimizer: { config: meta.optimizer.config, iterations: meta.optimizer.iterations, slots },
      ...(meta.earlyStopping && { earlyStopping: meta.earlyStopping }),
      ...(meta.lrSchedule && { lrSchedule: meta.lrSchedule }),
    };
  });
}
