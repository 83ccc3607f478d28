/**
 * A worker thread owning a column shard [inputSize, cols] of the head's big first Dense kernel and
 * its optimiser slots, in a private WebAssembly memory (onnxruntime-node can read it, unlike a
 * SharedArrayBuffer, and the SIMD RMSprop kernel runs on it). Per step it computes its columns of
 * X·W (forward) and then dW = Xᵀ·dH (by blocks of kernel rows, by default one block) into a
 * scratch it owns, each block followed at once by the fused optimiser update of those rows.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { OrtMatMul } from './ort-matmul.js';
import { applyUpdate, slotCount, type ResolvedOptimizer } from './optimizers.js';
import { simdRmsprop, wasmMemory, type RmspropKernel } from './simd-rmsprop.js';

export interface ShardInit {
  inputSize: number;
  /** Total units of the layer, and this shard's columns [col0, col0 + cols). */
  units: number;
  col0: number;
  cols: number;
  maxBatch: number;
  optimizer: ResolvedOptimizer;
  /** Kernel rows per dW block. */
  blockRows: number;
  ortThreads: number;
  /** Shared with the main thread: inputs [maxBatch, inputSize], outputs and output gradients [maxBatch, units]. */
  x: SharedArrayBuffer;
  h: SharedArrayBuffer;
  dh: SharedArrayBuffer;
  /**
   * For fine-tuning: this shard's part of the layer's input gradient, dX = dH·Wᵀ over its columns
   * [maxBatch, inputSize] (the main thread sums the shards); absent when never asked for.
   */
  dx?: SharedArrayBuffer;
}

export type ShardRequest =
  | { op: 'forward'; n: number }
  /** With inputGradient, first writes this shard's dX (from the weights before the update) into dx; learningRate: this step's rate (a schedule changes it between epochs). */
  | { op: 'backward'; n: number; step: number; inputGradient?: boolean; learningRate: number }
  | { op: 'gradient'; n: number }
  /**
   * Writes this shard's columns of rows [row0, row0 + rows) of the kernel (or of optimiser slot
   * `slot`) into `into`, a shared [rows, units] array.
   */
  | { op: 'gather'; slot: number | null; row0: number; rows: number; into: Float32Array }
  /** Replaces the shard's kernel (unless null) and its optimiser slots (those given). */
  | { op: 'set'; kernel: Float32Array | null; slots: Float32Array[] }
  | { op: 'close' };

const init = workerData as ShardInit;
const { inputSize: K, units: N, col0, cols: C, maxBatch: B, optimizer } = init;
const R = Math.min(init.blockRows, K);
const S = slotCount(optimizer);

// One memory for everything the kernels touch; 16-byte aligned arrays.
const sizes = { kernel: K * C, slots: S * K * C, scratch: R * C, x: B * K, xt: K * B, dh: B * C, h: B * C, dx: init.dx ? B * K : 0 };
const memory = wasmMemory(Object.values(sizes).reduce((a, n) => a + Math.ceil(n / 4) * 16, 0));
let offset = 0;
const take = (n: number) => {
  const a = new Float32Array(memory.buffer, offset, n);
  offset += Math.ceil(n / 4) * 16;
  return a;
};
const kernel = take(sizes.kernel);
const slotArea = take(sizes.slots);
const slots = Array.from({ length: S }, (_, s) => slotArea.subarray(s * K * C, (s + 1) * K * C));
const scratch = take(sizes.scratch);
const x = take(sizes.x), xt = take(sizes.xt), dh = take(sizes.dh), h = take(sizes.h), dx = take(sizes.dx);
const xShared = new Float32Array(init.x), hShared = new Float32Array(init.h), dhShared = new Float32Array(init.dh);
const dxShared = init.dx ? new Float32Array(init.dx) : null;
const rmsprop: RmspropKernel | null = optimizer.kind === 'rmsprop' ? simdRmsprop(memory, optimizer.legacy) : null;
const matmul = await OrtMatMul.create(init.ortThreads);
const matmulTransposed = dxShared ? await OrtMatMul.create(init.ortThreads, true) : null;

async function forward(n: number): Promise<void> {
  x.set(xShared.subarray(0, n * K));
  const out = h.subarray(0, n * C);
  await matmul.run(x.subarray(0, n * K), kernel, out, n, K, C);
  for (let b = 0; b < n; b++) hShared.set(out.subarray(b * C, (b + 1) * C), b * N + col0);
}

/** Milliseconds per phase, printed per step when GRAFT_HEAD_PROFILE is set. */
let tMat = 0, tUpd = 0, tT = 0;

/** Calls `each(r0, rows, dW block)` for consecutive row blocks of dW = Xᵀ·dH (x from the last forward). */
async function gradientBlocks(n: number, each: (r0: number, rows: number, g: Float32Array) => void): Promise<void> {
  const t0 = performance.now();
  for (let b = 0; b < n; b++) dh.set(dhShared.subarray(b * N + col0, b * N + col0 + C), b * C);
  for (let b = 0; b < n; b++) {
    const row = b * K;
    for (let i = 0; i < K; i++) xt[i * n + b] = x[row + i]!;
  }
  const dhn = dh.subarray(0, n * C);
  let t = performance.now();
  tT += t - t0;
  for (let r0 = 0; r0 < K; r0 += R) {
    const rows = Math.min(R, K - r0);
    const g = scratch.subarray(0, rows * C);
    await matmul.run(xt.subarray(r0 * n, (r0 + rows) * n), dhn, g, rows, n, C);
    const t1 = performance.now();
    each(r0, rows, g);
    const t2 = performance.now();
    tMat += t1 - t;
    tUpd += t2 - t1;
    t = t2;
  }
}

/** dX[n, K] = dH[n, C] · W[K, C]ᵀ over this shard's columns, into the shared dx. */
async function inputGradient(n: number): Promise<void> {
  if (!dxShared || !matmulTransposed) throw new Error('this head trainer was created without input gradients');
  for (let b = 0; b < n; b++) dh.set(dhShared.subarray(b * N + col0, b * N + col0 + C), b * C);
  await matmulTransposed.run(dh.subarray(0, n * C), kernel, dx.subarray(0, n * K), n, C, K);
  dxShared.set(dx.subarray(0, n * K));
}

async function backward(n: number, step: number, withInputGradient: boolean, learningRate: number): Promise<void> {
  if (withInputGradient) await inputGradient(n);
  const opt = learningRate === optimizer.learningRate ? optimizer : { ...optimizer, learningRate };
  await gradientBlocks(n, (r0, rows, g) => {
    const lo = r0 * C, hi = (r0 + rows) * C;
    if (rmsprop && opt.kind === 'rmsprop') {
      rmsprop(kernel.subarray(lo, hi), slots[0]!.subarray(lo, hi), g, opt.learningRate, opt.rho, opt.epsilon);
    } else {
      applyUpdate(opt, step, kernel, g, slots, lo, hi, 0);
    }
  });
}

parentPort!.on('message', (req: ShardRequest) => {
  void (async () => {
    try {
      switch (req.op) {
        case 'forward': {
          const t0 = performance.now();
          await forward(req.n);
          if (process.env.GRAFT_HEAD_PROFILE) console.error(`shard ${col0}: forward ${(performance.now() - t0).toFixed(1)} ms, faults so far ${process.resourceUsage().minorPageFault}`);
          parentPort!.postMessage({ ok: true });
          break;
        }
        case 'backward': {
          const t0 = performance.now();
          await backward(req.n, req.step, req.inputGradient === true, req.learningRate);
          if (process.env.GRAFT_HEAD_PROFILE) console.error(`shard ${col0}: backward ${(performance.now() - t0).toFixed(1)} ms (matmul ${tMat.toFixed(1)}, update ${tUpd.toFixed(1)}, transpose ${tT.toFixed(1)}), faults so far ${process.resourceUsage().minorPageFault}`);
          tMat = tUpd = tT = 0;
          parentPort!.postMessage({ ok: true });
          break;
        }
        case 'gradient': {
          const full = new Float32Array(K * C);
          await gradientBlocks(req.n, (r0, rows, g) => full.set(g, r0 * C));
          parentPort!.postMessage({ ok: true, gradient: full }, [full.buffer]);
          break;
        }
        case 'gather': {
          const src = req.slot === null ? kernel : slots[req.slot]!;
          for (let i = 0; i < req.rows; i++) {
            const r = req.row0 + i;
            req.into.set(src.subarray(r * C, (r + 1) * C), i * N + col0);
          }
          parentPort!.postMessage({ ok: true });
          break;
        }
        case 'set':
          if (req.kernel) kernel.set(req.kernel);
          req.slots.forEach((a, i) => slots[i]!.set(a));
          parentPort!.postMessage({ ok: true });
          break;
        case 'close':
          await matmul.dispose();
          await matmulTransposed?.dispose();
          parentPort!.postMessage({ ok: true });
          parentPort!.close();
          break;
      }
    } catch (err) {
      parentPort!.postMessage({ ok: false, error: (err as Error).message ?? String(err) });
    }
  })();
});
parentPort!.postMessage({ ok: true, ready: true });
