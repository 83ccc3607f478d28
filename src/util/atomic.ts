import { randomBytes } from 'node:crypto';
import { mkdir, open, rename, rm } from 'node:fs/promises';
import { dirname, basename, join } from 'node:path';
import { describeFsError } from './errors.js';

/**
 * Writes `data` to `file` so that readers see either the old file or the complete new one, never
 * a torn one: write a temporary file beside it, fsync, then rename over the target. `data` may be
 * chunks (a list, or produced one by one), written one after another without joining them in memory.
 */
export async function writeFileAtomic(file: string, data: string | Uint8Array | Iterable<Uint8Array> | AsyncIterable<Uint8Array>): Promise<void> {
  const dir = dirname(file);
  const tmp = join(dir, `.${basename(file)}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`);
  try {
    await mkdir(dir, { recursive: true });
    const handle = await open(tmp, 'w');
    try {
      if (typeof data === 'string' || data instanceof Uint8Array) await handle.writeFile(data);
      else {
        for await (const chunk of data) {
          let done = 0;
          while (done < chunk.length) done += (await handle.write(chunk, done, chunk.length - done)).bytesWritten;
        }
      }
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(tmp, file);
  } catch (err) {
    await rm(tmp, { force: true }).catch(() => {});
    throw describeFsError(err, file, 'write');
  }
}
