import { lstat, mkdir, readlink, realpath, stat } from 'node:fs/promises';
import { basename, dirname, isAbsolute, join, relative, resolve, sep } from 'node:path';
import { fsErrorReason, GraftError } from './errors.js';

/**
 * Creates `dir` and any missing parents, one level at a time. Node's recursive mkdir reports a
 * read-only file system or a forbidden parent as ENOENT ("no such file"), and spins forever on
 * procfs; a plain mkdir per level gives the real reason. A failure is a GraftError about `dir`, or
 * about `forFile` (the file about to be written into it) when given.
 */
export async function makeFolder(dir: string, forFile?: string): Promise<void> {
  const target = resolve(dir);
  const fail = (reason: string, cause?: unknown) =>
    new GraftError(forFile ? `cannot write ${forFile}: ${reason}` : `cannot create ${target}: ${reason}`, { file: forFile ?? target, cause });
  const missing: string[] = [];
  for (let p = target; ; ) {
    const st = await stat(p).catch((err: NodeJS.ErrnoException) => {
      // ENOTDIR: a file higher up, named once the walk reaches it.
      if (err.code === 'ENOENT' || err.code === 'ENOTDIR') return null;
      throw fail(fsErrorReason(err), err);
    });
    if (st) {
      if (!st.isDirectory()) throw fail(`${p} is a file, not a folder`);
      break;
    }
    missing.unshift(p);
    const up = dirname(p);
    if (up === p) break;
    p = up;
  }
  for (const p of missing) {
    await mkdir(p).catch(async (err: NodeJS.ErrnoException) => {
      if (err.code !== 'EEXIST') throw fail(fsErrorReason(err), err);
      // stat said missing, mkdir says present: a link to nothing (or a race, then a folder now).
      if ((await stat(p).catch(() => null))?.isDirectory()) return;
      const link = await lstat(p).catch(() => null);
      if (link?.isSymbolicLink()) throw fail(`${p} is a broken symbolic link (to ${await readlink(p).catch(() => '?')})`);
      throw fail(fsErrorReason(err), err);
    });
  }
}

/** `path` absolute with its links resolved, as far as it exists (names still to be created are kept as given). */
export async function realPathOf(path: string): Promise<string> {
  const missing: string[] = [];
  for (let p = resolve(path); ; ) {
    try {
      return join(await realpath(p), ...missing.reverse());
    } catch {
      const parent = dirname(p);
      if (parent === p) return resolve(path);
      missing.push(basename(p));
      p = parent;
    }
  }
}

/** Whether `path` is `folder` or lies below it (absolute paths, compared as written: resolve links first where they matter). */
export function isSameOrInside(path: string, folder: string): boolean {
  const rel = relative(folder, path);
  return rel === '' || (rel !== '..' && !rel.startsWith(`..${sep}`) && !isAbsolute(rel));
}
