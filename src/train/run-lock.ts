/**
 * One run a folder: a lock file in the run folder (.graft.lock), created atomically (written
 * whole beside it, then hard-linked into place, which fails if one exists), naming its holder:
 * pid, start time, host and command. A lock whose holder is gone (killed, machine restarted) is
 * taken over with a note; one whose holder still runs refuses the new run at once, naming it.
 * Other tools (a web UI starting runs) read the holder with readRunLock.
 */
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { link, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { removeOnAbruptExit } from '../util/abrupt-exit.js';
import { describeFsError, GraftError } from '../util/errors.js';
import { optionName } from '../util/option-names.js';

export const LOCK_NAME = '.graft.lock';

export interface RunLockHolder {
  pid: number;
  /** When the holder took the lock (ISO 8601). */
  startedAt: string;
  host: string;
  /** The holder's command line, as a user would recognise it. */
  command: string;
  /** Linux: the holder process's start time in clock ticks after boot (/proc/PID/stat), so a reused pid is not taken for it. */
  processStart?: string;
}

export interface RunLock {
  readonly file: string;
  readonly holder: RunLockHolder;
  /** Removes the lock if it is still this one's. */
  release(): Promise<void>;
}

/** A process's start time after boot, or undefined off Linux. */
function processStart(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the command name (which may hold spaces and parentheses): state is field 3, start time field 22.
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19];
  } catch {
    return undefined;
  }
}

/** Whether the lock's holder may still be running (on another host it cannot be told: assumed so). */
export function holderAlive(holder: RunLockHolder): boolean {
  if (holder.host !== hostname()) return true;
  try {
    process.kill(holder.pid, 0);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EPERM') return false;
  }
  const now = processStart(holder.pid);
  return !(holder.processStart && now && now !== holder.processStart);
}

/** The holder of the lock in `dir`, or null when there is none (or it cannot be read). */
export async function readRunLock(dir: string): Promise<RunLockHolder | null> {
  try {
    const holder = JSON.parse(await readFile(join(dir, LOCK_NAME), 'utf8')) as RunLockHolder;
    return typeof holder?.pid === 'number' ? holder : null;
  } catch {
    return null;
  }
}

/** The holder in words, for messages. */
export function describeHolder(holder: RunLockHolder): string {
  return `pid ${holder.pid}${holder.host !== hostname() ? ` on ${holder.host}` : ''}, started ${holder.startedAt}: ${holder.command}`;
}

/** Whether `dir` is in use by a running graft process (not this one's own lock). */
export async function runningHolder(dir: string): Promise<RunLockHolder | null> {
  const holder = await readRunLock(dir);
  return holder && holderAlive(holder) ? holder : null;
}


/**
 * Takes the lock of run folder `dir` (which must exist) for this process, or refuses naming the
 * run that holds it. `note` hears of a stale lock taken over.
 */
export async function acquireRunLock(dir: string, note: (line: string) => void, command = process.argv.slice(1).join(' ')): Promise<RunLock> {
  const file = join(dir, LOCK_NAME);
  const holder: RunLockHolder = {
    pid: process.pid,
    startedAt: new Date().toISOString(),
    host: hostname(),
    command: command || 'node',
    ...(processStart(process.pid) && { processStart: processStart(process.pid) }),
  };
  const tmp = join(dir, `${LOCK_NAME}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`);
  try {
    await writeFile(tmp, JSON.stringify(holder, null, 1) + '\n');
    for (let attempt = 0; ; attempt++) {
      try {
        await link(tmp, file);
        break;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST' || attempt >= 5) throw err;
      }
      const current = await readRunLock(dir);
      if (current && holderAlive(current)) {
        throw new GraftError(`${dir} is in use by another graft run (${describeHolder(current)}): wait for it to end or stop it, or choose another output folder (${optionName('out')})`, { file });
      }
      // Gone: moved aside under a name of this process's own, so that of two runs taking it over at once only one does.
      const aside = `${tmp}.stale`;
      try {
        await rename(file, aside);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') continue;
        throw err;
      }
      await rm(aside, { force: true });
      note(current ? `note: ${dir} was locked by a run that is no longer running (${describeHolder(current)}); taking it over` : `note: ${dir} held an unreadable lock file; taking it over`);
    }
  } catch (err) {
    throw err instanceof GraftError ? err : describeFsError(err, file, 'write');
  } finally {
    await rm(tmp, { force: true }).catch(() => {});
  }
  // A process ended abruptly (a second Ctrl-C, its launcher killed) still removes its lock.
  const unregister = removeOnAbruptExit(file);
  return {
    file,
    holder,
    release: async () => {
      unregister();
      const current = await readRunLock(dir);
      if (current?.pid === process.pid && current.startedAt === holder.startedAt) await rm(file, { force: true }).catch(() => {});
    },
  };
}
