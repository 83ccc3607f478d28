import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { RequestsById, startWorker } from '../src/util/worker-calls.js';

const echoWorker = () => startWorker(new URL('./support/echo-worker.ts', import.meta.url));

test('RequestsById matches replies that come back out of order to their requests, and fails every request once a worker exits', async () => {
  const workers = [echoWorker(), echoWorker()];
  const requests = new RequestsById<{ id: number; echo: number }>(workers, 'echo worker');
  try {
    // The slowest request goes first: its reply arrives last, on the same worker as a fast one.
    const delays = [120, 0, 40, 10];
    const replies = await Promise.all(delays.map((delayMs, i) => requests.send(workers[i % 2]!, (id) => ({ id, delayMs }))));
    assert.deepEqual(replies.map((r) => r.echo), delays);
    assert.equal(new Set(replies.map((r) => r.id)).size, delays.length, 'one id per request');

    const waiting = requests.send(workers[0]!, (id) => ({ id, delayMs: 5000 }));
    const exiting = requests.send(workers[1]!, (id) => ({ id, delayMs: 0, exit: true }));
    await assert.rejects(exiting, /echo worker exited \(code 3\)/);
    await assert.rejects(waiting, /echo worker exited \(code 3\)/, 'a request waiting on another worker fails too');
    await assert.rejects(requests.send(workers[0]!, (id) => ({ id, delayMs: 0 })), /echo worker exited/, 'and so does a later one');
  } finally {
    await Promise.all(workers.map((w) => w.terminate()));
  }
});

test('after a worker exits, the pool\'s surviving workers no longer keep the process alive', () => {
  const child = fileURLToPath(new URL('./support/requests-after-exit-child.ts', import.meta.url));
  const run = spawnSync(process.execPath, ['--import', 'tsx', child], { encoding: 'utf8', timeout: 20_000 });
  assert.equal(run.signal, null, 'the process ended on its own, not killed at the timeout');
  assert.equal(run.status, 0, run.stderr);
  assert.deepEqual(JSON.parse(run.stdout), ['echo worker exited (code 3)', 'echo worker exited (code 3)']);
});
