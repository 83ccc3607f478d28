import { Command } from 'commander';
import { reportError } from './report-error.js';
import { registerCommands } from './commands/index.js';
import { GRAFT_VERSION } from '../version.js';
import { useFlagNames } from '../util/option-names.js';

export { reportError };

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
