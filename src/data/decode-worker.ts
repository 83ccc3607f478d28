/** Worker side of DecodePool: decodes a file into its place in a store's shared pixels. */
import { parentPort } from 'node:worker_threads';
import { BadImageError, decodeImageInto } from './decode.js';
import type { DecodeReply, DecodeTask } from './decode-pool.js';

const port = parentPort;
if (port) {
  port.on('message', (task: DecodeTask) => {
    void (async () => {
      const reply: DecodeReply = { id: task.id };
      try {
        await decodeImageInto(task.path, task.opts, new Uint8Array(task.target, task.byteOffset, task.length));
      } catch (err) {
        if (err instanceof BadImageError) reply.bad = err.reason;
        else reply.error = err instanceof Error ? err.message : String(err);
      }
      port.postMessage(reply);
    })();
  });
}
