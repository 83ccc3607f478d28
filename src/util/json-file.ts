import { readFile } from 'node:fs/promises';
import { describeFsError, GraftError } from './errors.js';

export interface ReadJsonOptions {
  /** Return undefined instead of failing when the file does not exist. */
  allowMissing?: boolean;
  /** Rewrites the text before parsing (e.g. Python's bare NaN). */
  prepare?: (text: string) => string;
}

/**
 * Reads and parses a JSON file. A read problem or bad JSON becomes one GraftError naming the
 * file: `<file>: not valid JSON (<why>)`.
 */
export async function readJsonFile(file: string, options: ReadJsonOptions = {}): Promise<unknown> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    if (options.allowMissing && (err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw describeFsError(err, file);
  }
  return parseJsonText(options.prepare ? options.prepare(text) : text, file);
}

/** Parses JSON text read from `file` (a path, or e.g. "x.keras (config.json)"); bad JSON is a GraftError naming it. */
export function parseJsonText(text: string, file: string): unknown {
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new GraftError(`${file}: not valid JSON (${(err as Error).message})`, { file, cause: err });
  }
}
