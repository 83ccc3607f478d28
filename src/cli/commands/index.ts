import type { Command } from 'commander';
import { registerWeights } from './weights.js';

/** Every subcommand registers itself here; each lives in its own module beside this one. */
export function registerCommands(program: Command): void {
  registerWeights(program);
}
