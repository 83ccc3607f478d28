import { readFile } from 'node:fs/promises';
import { unzipSync } from 'fflate';
import { describeFsError } from './errors.js';

/** The file was read but is not a zip fflate can open; `message` says why. */
export class BadZipError extends Error {}

/**
 * The entries of the zip `file` (only those `keep` accepts, when given), read whole into memory.
 * A file that cannot be read is a GraftError naming it; one that is no readable zip, a BadZipError
 * for the caller to word (what the zip was meant to be, what happens next).
 */
export async function readZipEntries(file: string, keep?: (name: string) => boolean): Promise<Record<string, Uint8Array>> {
  let bytes: Uint8Array;
  try {
    bytes = await readFile(file);
  } catch (err) {
    throw describeFsError(err, file);
  }
  try {
    return unzipSync(bytes, keep ? { filter: (f) => keep(f.name) } : undefined);
  } catch (err) {
    throw new BadZipError((err as Error).message, { cause: err });
  }
}
