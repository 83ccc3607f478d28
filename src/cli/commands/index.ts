import type { Command } from 'commander';
import { registerAugmentPreview } from './augment-preview.js';

/** Every subcommand registers itself here; each lives in its own module beside this one. */
export function registerCommands(program: Command): void {
  registerAugmentPreview(program);
}
