/** Runs the graft CLI in-process, capturing what it prints. */
import { main } from '../../src/cli/main.js';

export interface CliRun {
  code: number;
  /** stdout and stderr, one entry per console call ... */
  outLines: string[];
  errLines: string[];
  /** ... and joined with newlines. */
  out: string;
  err: string;
}

export async function runGraft(...args: string[]): Promise<CliRun> {
  const outLines: string[] = [];
  const errLines: string[] = [];
  const log = console.log;
  const error = console.error;
  console.log = (...a: unknown[]) => void outLines.push(a.join(' '));
  console.error = (...a: unknown[]) => void errLines.push(a.join(' '));
  try {
    const code = await main(['node', 'graft', ...args]);
    return { code, outLines, errLines, out: outLines.join('\n'), err: errLines.join('\n') };
  } finally {
    console.log = log;
    console.error = error;
  }
}
