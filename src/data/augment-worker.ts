/** Worker side of AugmentPool: transforms its chunk of a batch in shared memory. */
import { parentPort } from 'node:worker_threads';
import { applyTransform } from './augment.js';
import type { WorkerReply, WorkerTask } from './augment-pool.js';

const port = parentPort;
if (port) {
  port.on('message', (task: WorkerTask) => {
    const reply: WorkerReply = { id: task.id };
    try {
      const src = new Uint8Array(task.src, task.srcByteOffset, task.srcLength);
      const out = new Float32Array(task.out, task.outByteOffset, task.outLength);
      const size = task.h * task.w * 3;
      const cfg = { fillMode: task.fillMode, cval: task.cval };
      for (let k = 0; k < task.params.length; k++) {
        const s = task.srcOffsets[k]!;
        applyTransform(src.subarray(s, s + size), task.h, task.w, task.params[k]!, cfg, out, task.outOffsets[k]!, task.pre);
      }
    } catch (err) {
      reply.error = err instanceof Error ? err.message : String(err);
    }
    port.postMessage(reply);
  });
}
