/**
 * Run by util.test.ts without GLIBC_TUNABLES: prints a line, relaunches itself under graft's malloc
 * settings, prints another, then exits with 3 ('exit') or waits for SIGTERM and exits with 5 ('wait').
 */
import { relaunchWithMallocTunables } from '../../src/util/malloc-tunables.js';

const line = (stage: string) =>
  console.log(JSON.stringify({ stage, pid: process.pid, ppid: process.ppid, tunables: process.env.GLIBC_TUNABLES ?? null, launcherVar: process.env.GRAFT_LAUNCHER_PID ?? null }));
line('start');
await relaunchWithMallocTunables();
if (process.argv[2] === 'exit') {
  line('relaunched');
  process.exit(3);
}
// The handler before the line the test waits for, so that its SIGTERM cannot come first.
process.on('SIGTERM', () => {
  line('sigterm');
  process.exit(5);
});
line('relaunched');
setInterval(() => undefined, 1000);
