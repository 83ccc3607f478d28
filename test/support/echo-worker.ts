/** A worker for test/worker-calls.test.ts: replies { id, echo } after `delayMs`, or exits with code 3 when asked. */
import { parentPort } from 'node:worker_threads';

parentPort!.on('message', (req: { id: number; delayMs: number; exit?: boolean }) => {
  if (req.exit) process.exit(3);
  setTimeout(() => parentPort!.postMessage({ id: req.id, echo: req.delayMs }), req.delayMs);
});
