/**
 * For test/worker-calls.test.ts: one worker exits while the other has a request waiting, and
 * nothing closes the pool. The process must still end on its own.
 */
import { RequestsById, startWorker } from '../../src/util/worker-calls.js';

const url = new URL('./echo-worker.ts', import.meta.url);
const workers = [startWorker(url), startWorker(url)];
const requests = new RequestsById<{ id: number }>(workers, 'echo worker');
const waiting = requests.send(workers[0]!, (id) => ({ id, delayMs: 100 })).catch((e: Error) => e.message);
const exiting = requests.send(workers[1]!, (id) => ({ id, delayMs: 0, exit: true })).catch((e: Error) => e.message);
console.log(JSON.stringify(await Promise.all([waiting, exiting])));
