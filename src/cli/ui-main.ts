import { Command } from 'commander';
import { GRAFT_VERSION } from '../version.js';
import { registerUi } from './commands/ui.js';
import { reportError } from './report-error.js';
import { useFlagNames } from '../util/option-names.js';

/**
 * `graft ui` alone: the launcher comes here for it without loading the other commands (the
 * training and model code, onnxruntime, sharp), which the page loads only when it needs them, so
 * an idle server stays small. Training runs in its own `graft train` processes.
 */
export async function uiMain(argv: string[]): Promise<number> {
  useFlagNames();
  const program = new Command('graft').version(GRAFT_VERSION).showHelpAfterError('(run with --help for usage)').exitOverride();
  registerUi(program);
  try {
    await program.parseAsync(argv);
    return 0;
  } catch (err) {
    return reportError(err);
  }
}
