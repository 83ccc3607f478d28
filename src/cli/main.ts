import { Command, CommanderError } from 'commander';
import { GraftError } from '../util/errors.js';
import { registerCommands } from './commands/index.js';
import { GRAFT_VERSION } from '../version.js';
import { useFlagNames } from '../util/option-names.js';

/** Builds the `graft` command line: a thin shell over the library API. */
export function buildProgram(): Command {
  // Messages from the library name settings by the flags a user of this command types.
  useFlagNames();
  const program = new Command('graft')
    .description('Transfer learning on images: a frozen pretrained backbone and a small trained head.')
    .version(GRAFT_VERSION)
    .showHelpAfterError('(run with --help for usage)')
    .exitOverride();
  registerCommands(program);
  return program;
}

/** Runs the CLI; returns the exit code. User errors print one line, never a stack trace. */
export async function main(argv: string[]): Promise<number> {
  const program = buildProgram();
  try {
    await program.parseAsync(argv);
    return 0;
  } catch (err) {
    return reportError(err);
  }
}

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
  console.error(`graft: internal error: ${message}`);
  if (process.env.GRAFT_DEBUG && err instanceof Error) console.error(err.stack);
  else console.error('(set GRAFT_DEBUG=1 for details, and please report it)');
  return 2;
}
