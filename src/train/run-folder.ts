/**
 * What a training run may do in its --out folder. graft-run.json (RunManifest) records every file
 * graft wrote there: a new run refuses to mix with an earlier one, --overwrite removes exactly
 * those files, and a file graft would write that is not recorded is the user's: refused, named.
 */
import { lstat, readdir, rm } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join, relative, resolve, sep } from 'node:path';
import { firstFew, GraftError } from '../util/errors.js';
import { isSameOrInside, realPathOf } from '../util/folders.js';
import { optionName, setting } from '../util/option-names.js';
import { MANIFEST_NAME, STAGING_PATTERN, type RunManifest } from './run-manifest.js';
import { LOCK_NAME } from './run-lock.js';
import { readCheckpointBinaries } from './checkpoint.js';

/** Files a run writes straight into its folder, and its folders. */
export const RUN_FILES = ['history.json', 'accuracy.png', 'loss.png', 'metrics.json', 'report.txt', 'model.onnx'] as const;
const RUN_FOLDERS = ['checkpoint', 'model'] as const;
/** The names graft writes in checkpoint/ (other files there are left alone, so they may be the user's). */
const CHECKPOINT_NAME = /^(checkpoint\.json|checkpoint-(\d+|a|b)\.bin|best-(a|b)\.bin)$/;
/** Leftovers of writes cut short: atomic writes' temporary files, the model export's staging folders. */
const TEMPORARY = /^\..+\.\d+\.[0-9a-f]{8}\.tmp(\.old|\.stale)?$/;
/** Checkpoint binaries, named by checkpoint.json or left by a write cut short. */
const CHECKPOINT_BINARY = /^(checkpoint-(\d+|a|b)|best-(a|b))\.bin$/;

/** The files of an earlier run that `manifest` records and that are still there (absolute paths), in a stable order. */
export async function earlierRunFiles(manifest: RunManifest): Promise<string[]> {
  const files: string[] = [];
  for (const rel of manifest.paths()) {
    const file = join(manifest.dir, rel);
    if (await lstat(file).catch(() => null)) files.push(file);
  }
  const order = (f: string) => {
    const rel = relative(manifest.dir, f).split(sep);
    const i = (RUN_FILES as readonly string[]).indexOf(rel[0]!);
    return i >= 0 ? i : rel.length > 1 ? RUN_FILES.length + (RUN_FOLDERS as readonly string[]).indexOf(rel[0]!) + 1 : 99;
  };
  return files.sort((a, b) => order(a) - order(b) || (a < b ? -1 : 1));
}

/** `files` as a user reads them: relative to `out`, each of checkpoint/ and model/ as one entry. */
export function describeRunFiles(out: string, files: string[]): string {
  const names = files.map((f) => relative(out, f).split(sep)).map((parts) => (parts.length > 1 ? `${parts[0]}/` : parts[0]!));
  return [...new Set(names)].join(', ');
}

/**
 * Refuses an output folder that could never be a run's own: the file-system root, the home folder,
 * or a data folder of the run (or one holding it).
 */
export async function checkOutFolder(out: string, inputs: { what: string; path: string }[]): Promise<void> {
  const real = await realPathOf(out);
  const forbidden = [
    ['the root of the file system', resolve('/')],
    ['your home folder', resolve(homedir())],
  ] as const;
  for (const [what, path] of forbidden) {
    if (real === (await realPathOf(path))) throw new GraftError(`the output folder ${out} is ${what}: choose a folder of its own for the run (${optionName('out')})`, { file: out });
  }
  for (const { what, path } of inputs) {
    if ((await realPathOf(path)) === real) {
      throw new GraftError(`the output folder ${out} is the ${what} folder: choose a folder of its own for the run (${optionName('out')})`, { file: out });
    }
  }
}

/**
 * Refuses, naming it, a file in `out` that graft would write (or remove with --overwrite) but did
 * not write: one not in the manifest, a symbolic link in its place, or a link for model/ or checkpoint/.
 */
export async function checkNoForeignFiles(manifest: RunManifest): Promise<void> {
  const out = manifest.dir;
  const foreign: string[] = [];
  const ours = (rel: string, isFile: boolean) => isFile && manifest.owns(rel);
  for (const name of [...RUN_FILES, MANIFEST_NAME]) {
    const st = await lstat(join(out, name)).catch(() => null);
    if (st && name !== MANIFEST_NAME && !ours(name, st.isFile())) foreign.push(name);
    if (st && name === MANIFEST_NAME && !st.isFile()) foreign.push(name);
  }
  for (const folder of RUN_FOLDERS) {
    const st = await lstat(join(out, folder)).catch(() => null);
    if (!st) continue;
    if (!st.isDirectory()) {
      foreign.push(st.isSymbolicLink() ? `${folder} (a symbolic link)` : folder);
      continue;
    }
    for (const e of await readdir(join(out, folder), { withFileTypes: true })) {
      const rel = `${folder}/${e.name}`;
      if (TEMPORARY.test(e.name) && manifest.exists) continue;
      // model/ is replaced whole by each export; in checkpoint/ only graft's names are written.
      if (folder === 'checkpoint' && !CHECKPOINT_NAME.test(e.name)) continue;
      if (!ours(rel, e.isFile())) foreign.push(e.isSymbolicLink() ? `${rel} (a symbolic link)` : rel);
    }
  }
  // Files other modules recorded (a feature store, say): a link in their place is not theirs either.
  for (const rel of manifest.paths()) {
    if (rel.includes('/') && (RUN_FOLDERS as readonly string[]).includes(rel.split('/')[0]!)) continue;
    if ((RUN_FILES as readonly string[]).includes(rel) || STAGING_PATTERN.test(rel)) continue;
    const st = await lstat(join(out, rel)).catch(() => null);
    if (st && !st.isFile()) foreign.push(`${rel} (${st.isSymbolicLink() ? 'a symbolic link' : 'not a file'})`);
  }
  if (foreign.length > 0) {
    throw new GraftError(
      `${out} holds files graft did not write where it writes its own (${firstFew(foreign)}${manifest.exists ? '' : `; there is no ${MANIFEST_NAME} recording a run of graft's`}): graft neither replaces nor removes them; move them, or choose another output folder (${optionName('out')})`,
      { file: join(out, foreign[0]!.split(' ')[0]!) },
    );
  }
}

/**
 * Removes what a run cut short left (the caller holds the folder's lock): temporary files of
 * atomic writes and uncommitted staging folders in the folder and in checkpoint/, and checkpoint
 * binaries the checkpoint does not name (a write cut short). Returns what it removed.
 */
export async function removeLeftovers(manifest: RunManifest): Promise<string[]> {
  const removed: string[] = [];
  const out = manifest.dir;
  const gone = async (file: string) => {
    await rm(file, { recursive: true, force: true });
    removed.push(file);
  };
  for (const name of await readdir(out).catch(() => [] as string[])) {
    if (name.startsWith(LOCK_NAME)) continue;
    if ((TEMPORARY.test(name) || STAGING_PATTERN.test(name)) && (manifest.exists || !STAGING_PATTERN.test(name))) await gone(join(out, name));
    if (STAGING_PATTERN.test(name) && manifest.owns(name)) await manifest.forget(name);
  }
  const checkpointDir = join(out, 'checkpoint');
  if (!manifest.owns('checkpoint/checkpoint.json')) return removed;
  const named = await readCheckpointBinaries(checkpointDir).catch(() => null);
  for (const name of await readdir(checkpointDir).catch(() => [] as string[])) {
    if (TEMPORARY.test(name) && manifest.owns(`checkpoint/${name.slice(1).replace(/\.\d+\.[0-9a-f]{8}\.tmp$/, '')}`)) await gone(join(checkpointDir, name));
    else if (named && CHECKPOINT_BINARY.test(name) && !named.includes(name) && manifest.owns(`checkpoint/${name}`)) await gone(join(checkpointDir, name));
  }
  return removed;
}

/**
 * Refuses when an input of the new run (weights, data) is among the files --overwrite would
 * remove, or holds some of them: they are still needed, or are the user's.
 */
export function checkInputsKept(files: string[], inputs: { what: string; path: string }[]): void {
  for (const { what, path } of inputs) {
    if (files.some((f) => isSameOrInside(f, path))) {
      throw new GraftError(`${what} ${path} is part of the earlier run that ${setting('overwrite')} would remove: copy it elsewhere first, or choose another output folder (${optionName('out')})`, { file: path });
    }
  }
}
