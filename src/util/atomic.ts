import { randomBytes } from 'node:crypto';
import { open, rename, rm, type FileHandle } from 'node:fs/promises';
import { dirname, basename, join } from 'node:path';
import { describeFsError, GraftError } from './errors.js';
import { makeFolder } from './folders.js';

/**
 * For fault tests only: GRAFT_TEST_FULL_DISK=<regexp> makes every write of a file whose name
 * matches fail once part of it is written, as on a full disk (ENOSPC).
 */
function checkInjectedFullDisk(file: string): void {
  const pattern = process.env.GRAFT_TEST_FULL_DISK;
  if (pattern && new RegExp(pattern).test(basename(file))) {
    throw Object.assign(new Error(`ENOSPC: no space left on device, write '${file}' (injected by GRAFT_TEST_FULL_DISK)`), { code: 'ENOSPC' });
  }
}

/**
 * Writes `data` to `file` so that readers see either the old file or the complete new one, never
 * a torn one: write a temporary file beside it, fsync, then rename over the target. `data` may be
 * chunks (a list, or produced one by one), written one after another without joining them in memory.
 */
export async function writeFileAtomic(file: string, data: string | Uint8Array | Iterable<Uint8Array> | AsyncIterable<Uint8Array>): Promise<void> {
  const dir = dirname(file);
  const tmp = join(dir, `.${basename(file)}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`);
  try {
    await makeFolder(dir, file);
    const handle = await open(tmp, 'w');
    try {
      if (typeof data === 'string' || data instanceof Uint8Array) await handle.writeFile(data);
      else await writeChunks(handle, data);
      checkInjectedFullDisk(file);
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(tmp, file);
  } catch (err) {
    await rm(tmp, { force: true }).catch(() => {});
    throw err instanceof GraftError ? err : describeFsError(err, file, 'write');
  }
}

/** Writes the chunks one after another from the handle's position; returns the bytes written. */
async function writeChunks(handle: FileHandle, data: Iterable<Uint8Array> | AsyncIterable<Uint8Array>): Promise<number> {
  let total = 0;
  for await (const chunk of data) {
    let done = 0;
    while (done < chunk.length) done += (await handle.write(chunk, done, chunk.length - done)).bytesWritten;
    total += done;
  }
  return total;
}

/**
 * Writes `data` over `file` in place (creating it if missing, cutting it to the new length) and
 * fsyncs it. Not atomic: only for a file no reader relies on until a later atomic step names it.
 * Rewriting an existing file reuses its cached pages; on VMs, where first touch of fresh memory is
 * slow, that makes rewriting a big file several times faster than writing a new one.
 */
export async function overwriteFile(file: string, data: Iterable<Uint8Array> | AsyncIterable<Uint8Array>): Promise<void> {
  try {
    const handle = await open(file, 'r+').catch((err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT') return open(file, 'w');
      throw err;
    });
    try {
      await handle.truncate(await writeChunks(handle, data));
      checkInjectedFullDisk(file);
      await handle.sync();
    } finally {
      await handle.close();
    }
  } catch (err) {
    throw describeFsError(err, file, 'write');
  }
}
