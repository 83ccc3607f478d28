/** The graft command with its output piped into a reader that goes away, as `graft train --help | head -5`. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const bin = fileURLToPath(new URL('../bin/graft.js', import.meta.url));

test('output into a closed pipe ends the command quietly (status 141, as SIGPIPE), with no stack trace', async () => {
  const child = spawn(process.execPath, [bin, 'train', '--help'], { stdio: ['ignore', 'pipe', 'pipe'] });
  // The reader goes away before the command writes (it takes a few hundred ms to start).
  child.stdout.destroy();
  let err = '';
  child.stderr.on('data', (d: Buffer) => (err += d.toString()));
  const code = await new Promise<number | null>((resolve) => child.on('close', (c) => resolve(c)));
  assert.equal(err, '', 'nothing on stderr');
  assert.equal(code, 141);
});
