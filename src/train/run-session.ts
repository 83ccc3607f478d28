/**
 * A training run's hold on its --out folder, as stages of trainClassifier: open it (refuse what
 * is not ours, lock it, clear what a run cut short left), start training (--overwrite's removal,
 * the checkpoint's files claimed), commit the results as one set, release it.
 */
import { rmdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { GraftError } from '../util/errors.js';
import { makeFolder } from '../util/folders.js';
import { optionName, setting } from '../util/option-names.js';
import { checkpointStatus } from './checkpoint.js';
import { checkInputsKept, checkNoForeignFiles, checkOutFolder, describeRunFiles, earlierRunFiles, removeLeftovers } from './run-folder.js';
import { acquireRunLock, type RunLock } from './run-lock.js';
import { RunManifest } from './run-manifest.js';

/** The files a checkpoint folder may hold (claimed before the first is written). */
const CHECKPOINT_FILES = ['checkpoint', 'checkpoint/fine-tune'].flatMap((dir) =>
  ['checkpoint.json', 'checkpoint-a.bin', 'checkpoint-b.bin', 'best-a.bin', 'best-b.bin'].map((f) => `${dir}/${f}`),
);

export interface RunSession {
  out: string;
  manifest: RunManifest;
  lock: RunLock;
  /** The earlier run's checkpoint (epochs done, finished, settings), when this run may continue it. */
  earlier: Awaited<ReturnType<typeof checkpointStatus>>;
  /** What --overwrite removes when training starts. */
  replaced: string[];
  /** Whether the folder was created by this run (and goes again if the run ends having written nothing). */
  created: boolean;
}

/**
 * Opens run folder `out` for a run: refuses a folder that is the root, the home folder or a data
 * folder, a folder another run holds, files graft did not write where it would write its own, and
 * (unless resume or overwrite) an earlier run's outputs. `inputs`: the run's data and weights.
 */
export async function openRunSession(
  out: string,
  opts: { resume?: boolean; overwrite?: boolean; inputs: { what: string; path: string }[]; say: (line: string) => void },
): Promise<RunSession> {
  const outStat = await stat(out).catch(() => null);
  if (outStat && !outStat.isDirectory()) throw new GraftError(`the output folder ${out} is a file, not a folder: choose another output folder (${optionName('out')})`, { file: out });
  await checkOutFolder(out, opts.inputs.filter((i) => i.what !== optionName('weights')));
  await makeFolder(out);
  const lock = await acquireRunLock(out, opts.say);
  try {
    const manifest = await RunManifest.open(out, { recover: true });
    await removeLeftovers(manifest);
    await checkNoForeignFiles(manifest);
    const checkpointDir = join(out, 'checkpoint');
    const earlier = opts.overwrite ? null : await checkpointStatus(checkpointDir);
    const previous = opts.resume && earlier ? [] : await earlierRunFiles(manifest);
    if (!opts.overwrite) {
      if (!opts.resume && earlier && !earlier.finished) {
        throw new GraftError(
          `${out} holds the checkpoint of a run that did not finish (${earlier.epoch} epoch${earlier.epoch === 1 ? '' : 's'} done): pass ${setting('resume')} to continue it, ${setting('overwrite')} to start afresh, or another output folder (${optionName('out')})`,
          { file: checkpointDir },
        );
      }
      // A new run would replace a finished one's outputs (and, stopped halfway, leave a folder mixing the two).
      if (previous.length > 0) {
        const further = earlier ? `, ${setting('resume')} with more ${optionName('epochs')} to train that run further` : '';
        throw new GraftError(`${out} holds the outputs of an earlier run (${describeRunFiles(out, previous)}): pass ${setting('overwrite')} to replace them${further}, or choose another output folder (${optionName('out')})`, {
          file: out,
        });
      }
      if (opts.resume && !earlier) opts.say(`No checkpoint in ${checkpointDir} to resume from: starting a fresh run`);
    }
    // What --overwrite clears as training starts; the run's own inputs must not be among it.
    const replaced = opts.overwrite ? previous : [];
    checkInputsKept(replaced, opts.inputs);
    return { out, manifest, lock, earlier, replaced, created: !outStat };
  } catch (err) {
    await lock.release();
    if (!outStat) await rmdir(out).catch(() => undefined);
    throw err;
  }
}

/** Training starts: an earlier run's files go (--overwrite said so), and the checkpoint's files are claimed. */
export async function startTraining(session: RunSession): Promise<void> {
  if (session.replaced.length > 0) await session.manifest.removeAll();
  await session.manifest.claim(...CHECKPOINT_FILES);
}

/**
 * Writes a set of results through `write` (given a staging folder laid out like the run folder)
 * and commits them as one: the folder holds the earlier set or this one, never a mix.
 */
export async function commitResults(session: RunSession, write: (staging: string) => Promise<void>): Promise<void> {
  const staging = await session.manifest.stage();
  try {
    await write(staging);
  } catch (err) {
    // A full disk: what was staged goes, so the earlier set stays whole and the disk is not kept full.
    await session.manifest.removeStaging(staging);
    throw err;
  }
  await session.manifest.commitStaged(staging, { replaceFolders: ['model'] });
}

/** The run is over: the lock goes, and a folder this run created and left empty. */
export async function closeRunSession(session: RunSession): Promise<void> {
  await session.lock.release();
  if (session.created) await rmdir(session.out).catch(() => undefined);
}
