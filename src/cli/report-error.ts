import { CommanderError } from 'commander';
import { GraftError } from '../util/errors.js';

/** The exit code for an error ending a command; user errors print one line, never a stack trace. */
export function reportError(err: unknown): number {
  if (err instanceof CommanderError) {
    // Commander has already printed its message (or help/version, which exit 0).
    return err.exitCode;
  }
  if (err instanceof GraftError) {
    console.error(`graft: error: ${err.message}`);
    return 1;
  }
  const message = err instanceof Error ? err.message : String(err);
  if (err instanceof RangeError && /allocation failed|Invalid (typed )?array length|out of memory|Array buffer/i.test(message)) {
    // Memory capped below what the bounds allow for (ulimit, a container, other programs' use).
    console.error(`graft: error: not enough memory (${message}): use a smaller --input-size, --batch-size or head, or free memory`);
    return 1;
  }
  console.error(`graft: internal error: ${message}`);
  if (process.env.GRAFT_DEBUG && err instanceof Error) console.error(err.stack);
  else console.error('(set GRAFT_DEBUG=1 for details, and please report it)');
  return 2;
}
