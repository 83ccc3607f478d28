import type { Command } from 'commander';

/** Every subcommand registers itself here; each lives in its own module beside this one. */
export function registerCommands(program: Command): void {
  void program;
}
