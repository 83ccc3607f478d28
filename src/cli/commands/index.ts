import type { Command } from 'commander';
import { registerAugmentPreview } from './augment-preview.js';
import { registerData } from './data.js';

/** Every subcommand registers itself here; each lives in its own module beside this one. */
export function registerCommands(program: Command): void {
  registerData(program);
  registerAugmentPreview(program);
}
