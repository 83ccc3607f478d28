/**
 * What a training run leaves in its --out folder, recognised so that a new run can refuse to
 * mix with it, and --overwrite can clear it without touching anything else: plain output files by
 * name, and inside checkpoint/ and model/ only the files graft writes there (a model/ folder counts
 * only when its model.json carries graft's metadata).
 */
import { readdir, readFile, rm, rmdir, stat } from 'node:fs/promises';
import { join, relative, sep } from 'node:path';
import { describeFsError, firstFew, GraftError } from '../util/errors.js';
import { isSameOrInside } from '../util/folders.js';
import { optionName, setting } from '../util/option-names.js';

/** Files a run writes straight into its folder. */
const RUN_FILES = ['history.json', 'accuracy.png', 'loss.png', 'metrics.json', 'report.txt', 'model.onnx'] as const;
/** Leftovers of writes cut short: atomic writes' temporary files of RUN_FILES, the model export's staging folders. */
const TEMPORARY = new RegExp(`^\\.(${[...RUN_FILES, 'model'].map((n) => n.replace(/\./g, '\\.')).join('|')})\\.\\d+\\.[0-9a-f]{8}\\.tmp(\\.old)?$`);
/** checkpoint.json, its two binaries (and one-per-generation ones of earlier versions), early stopping's best weights, temporary files of atomic writes. */
const CHECKPOINT_FILE = /^(checkpoint\.json|checkpoint-(\d+|a|b)\.bin|best-(a|b)\.bin|\.checkpoint\.json\..*\.tmp)$/;

const isFile = async (path: string) => (await stat(path).catch(() => null))?.isFile() === true;

/** graft's files in `dir/model`: model.json (with graft's metadata) and the weight shards it lists. */
async function modelFiles(modelDir: string): Promise<string[]> {
  let manifest: { weightsManifest?: { paths?: unknown[] }[]; userDefinedMetadata?: { graft?: unknown } };
  try {
    manifest = JSON.parse(await readFile(join(modelDir, 'model.json'), 'utf8'));
  } catch {
    return [];
  }
  if (!manifest?.userDefinedMetadata?.graft) return [];
  const shards = (manifest.weightsManifest ?? []).flatMap((g) => g.paths ?? []).filter((p): p is string => typeof p === 'string' && !p.includes('/') && !p.includes(sep));
  const files = [join(modelDir, 'model.json')];
  for (const shard of shards) if (await isFile(join(modelDir, shard))) files.push(join(modelDir, shard));
  return files;
}

/** The files an earlier run left in `out` (absolute paths; a staging folder counts as one), in a stable order. */
export async function earlierRunFiles(out: string): Promise<string[]> {
  const files: string[] = [];
  for (const name of RUN_FILES) if (await isFile(join(out, name))) files.push(join(out, name));
  for (const name of (await readdir(out).catch(() => [] as string[])).sort()) if (TEMPORARY.test(name)) files.push(join(out, name));
  // The run's checkpoint, and the fine-tuning phase's in checkpoint/fine-tune/.
  for (const checkpointDir of [join(out, 'checkpoint'), join(out, 'checkpoint', 'fine-tune')]) {
    for (const name of (await readdir(checkpointDir).catch(() => [] as string[])).sort()) {
      if (CHECKPOINT_FILE.test(name) && (await isFile(join(checkpointDir, name)))) files.push(join(checkpointDir, name));
    }
  }
  files.push(...(await modelFiles(join(out, 'model'))));
  return files;
}

/** `files` as a user reads them: relative to `out`, each of checkpoint/ and model/ as one entry. */
export function describeRunFiles(out: string, files: string[]): string {
  const names = files.map((f) => relative(out, f).split(sep)).map((parts) => (parts.length > 1 ? `${parts[0]}/` : parts[0]!));
  return [...new Set(names)].join(', ');
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

/**
 * Refuses an `out/model` folder holding files graft did not write there: the export replaces that
 * folder whole at the end of the run, so this shows before the training rather than after.
 */
export async function checkModelFolderFree(out: string): Promise<void> {
  const modelDir = join(out, 'model');
  const names = await readdir(modelDir).catch(() => null);
  if (!names) return;
  const ours = new Set((await modelFiles(modelDir)).map((f) => relative(modelDir, f)));
  const foreign = names.filter((n) => !ours.has(n));
  if (foreign.length > 0) {
    throw new GraftError(`${modelDir} holds files graft did not write (${firstFew(foreign)}): the trained model is exported there; move them, or choose another output folder (${optionName('out')})`, { file: modelDir });
  }
}

/** Removes `files` (from earlierRunFiles), then checkpoint/ and model/ if that left them empty. */
export async function removeRunFiles(out: string, files: string[]): Promise<void> {
  for (const file of files) {
    // Recursive for a staging folder of the model export; everything else is a file.
    await rm(file, { force: true, recursive: true }).catch((err: unknown) => {
      throw describeFsError(err, file, 'remove');
    });
  }
  for (const dir of [join('checkpoint', 'fine-tune'), 'checkpoint', 'model']) await rmdir(join(out, dir)).catch(() => undefined);
}
