/**
 * A worker thread owning a column shard of the head's big first Dense kernel and its optimiser
 * slots, in a private WebAssembly memory (onnxruntime-node can read it, unlike a
 * SharedArrayBuffer, and the SIMD RMSprop and Adam kernels run on it). The shard is held transposed,
 * [cols, inputSize]: the forward product is then Wᵀ·Xᵀ, whose big operand MLAS streams as it
 * lies, where X·W made it repack the whole 77 MB kernel every step (13.6 -> 6.9 ms, measured
 * alone). Per step it computes its columns of X·W (forward) and then dWᵀ = dHᵀ·X by blocks of
 * inputs (a band of columns of the transposed kernel) into a scratch it owns, each block followed
 * at once by the fused optimiser update of that band. Blocks of inputs rather than of units: each
 * product then packs only its own slice of X, and its gradient is small enough to be read back
 * from cache by the update (measured 64 -> 54 ms a step a worker on the lab's head, same weights).
 */
import { parentPort, workerData } from 'node:worker_threads';
import { OrtMatMul } from './ort-matmul.js';
import { slotCount, type ResolvedOptimizer } from './optimizers.js';
import { applyUpdateRows, simdUpdate, type SimdUpdate } from './simd-update.js';
import { alignedBytes, arrayAllocator, wasmMemory } from './wasm-simd.js';
import { transposeInto } from '../util/transpose.js';

export interface ShardInit {
  inputSize: number;
  /** Total units of the layer, and this shard's columns [col0, col0 + cols). */
  units: number;
  col0: number;
  cols: number;
  maxBatch: number;
  optimizer: ResolvedOptimizer;
  /** Inputs per dW block: the gradient of a band of that many columns of the transposed kernel. */
  blockInputs: number;
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
  /** Replaces the shard's kernel (unless null) and its optimiser slots (those given), each given transposed: [cols, inputSize]. */
  | { op: 'set'; kernel: Float32Array | null; slots: Float32Array[] }
  | { op: 'close' };

const init = workerData as ShardInit;
const { inputSize: K, units: N, col0, cols: C, maxBatch: B, optimizer } = init;
const KB = Math.max(1, Math.min(init.blockInputs, K));
const S = slotCount(optimizer);

// One memory for everything the kernels touch; 16-byte aligned arrays. kernel and slots are
// [C, K] (transposed); h and dh are this shard's columns as [C, B] (transposed) and [B, C];
// xBlocks holds x by blocks of inputs, [blocks][B][KB].
const sizes = { kernel: K * C, slots: S * K * C, scratch: C * KB, x: B * K, xBlocks: B * K, dh: B * C, dht: C * B, ht: C * B, dx: init.dx ? B * K : 0 };
const memory = wasmMemory(Object.values(sizes).reduce((a, n) => a + alignedBytes(n), 0));
const take = arrayAllocator(memory);
const kernel = take(sizes.kernel);
const slotArea = take(sizes.slots);
const slots = Array.from({ length: S }, (_, s) => slotArea.subarray(s * K * C, (s + 1) * K * C));
const scratch = take(sizes.scratch);
const x = take(sizes.x), xBlocks = take(sizes.xBlocks), dh = take(sizes.dh), dht = take(sizes.dht), ht = take(sizes.ht), dx = take(sizes.dx);
const xShared = new Float32Array(init.x), hShared = new Float32Array(init.h), dhShared = new Float32Array(init.dh);
const dxShared = init.dx ? new Float32Array(init.dx) : null;
const update: SimdUpdate | null = simdUpdate(optimizer, memory);
const matmul = await OrtMatMul.create(init.ortThreads);
/** Wᵀ·xᵀ from x as it lies ([n, K]): MLAS packs the transposed input itself, 1.4 ms a step less than a transpose in JS. */
const matmulTransposedInput = await OrtMatMul.create(init.ortThreads, true);

/** hᵀ[C, n] = Wᵀ[C, K] · xᵀ[K, n], written into the shared h as this shard's columns. */
async function forward(n: number): Promise<void> {
  x.set(xShared.subarray(0, n * K));
  const out = ht.subarray(0, C * n);
  await matmulTransposedInput.run(kernel, x.subarray(0, n * K), out, C, K, n);
  transposeInto(out, 0, n, hShared, col0, N, C, n);
}

/** Milliseconds per phase summed over steps; with GRAFT_HEAD_PROFILE set, their means are printed every 100 steps. */
const PROFILE = Boolean(process.env.GRAFT_HEAD_PROFILE);
let tFwd = 0, tBwd = 0, tMat = 0, tUpd = 0, tT = 0, steps = 0;
function profileStep(): void {
  if (++steps < 100) return;
  const f = (t: number) => (t / steps).toFixed(1);
  console.error(`shard ${col0}, mean of ${steps} steps: forward ${f(tFwd)} ms, backward ${f(tBwd)} ms (dW products ${f(tMat)}, updates ${f(tUpd)}, dH transposes ${f(tT)})`);
  tFwd = tBwd = tMat = tUpd = tT = steps = 0;
}

/** This shard's columns of dH from the shared array, as [n, C] (dh) and [C, n] (dht). */
function takeOutputGradient(n: number): void {
  for (let b = 0; b < n; b++) dh.set(dhShared.subarray(b * N + col0, b * N + col0 + C), b * C);
  transposeInto(dh, 0, C, dht, 0, n, n, C);
}

/** x (from the last forward, [n, K]) by blocks of KB inputs into xBlocks: block i is [n, kb] at i * n * KB. */
function splitInputs(n: number): void {
  for (let k0 = 0; k0 < K; k0 += KB) {
    const kb = Math.min(KB, K - k0), at = k0 * n;
    for (let b = 0; b < n; b++) xBlocks.set(x.subarray(b * K + k0, b * K + k0 + kb), at + b * kb);
  }
}

/**
 * Calls `each(k0, kb, g)` for consecutive blocks of inputs [k0, k0 + kb) with g = dWᵀ[:, k0:k0+kb]
 * = dHᵀ·X[:, k0:k0+kb], packed as [C, kb] (dht from takeOutputGradient).
 */
async function gradientBlocks(n: number, each: (k0: number, kb: number, g: Float32Array) => void): Promise<void> {
  let t = performance.now();
  splitInputs(n);
  for (let k0 = 0; k0 < K; k0 += KB) {
    const kb = Math.min(KB, K - k0);
    const g = scratch.subarray(0, C * kb);
    await matmul.run(dht.subarray(0, C * n), xBlocks.subarray(k0 * n, (k0 + kb) * n), g, C, n, kb);
    const t1 = performance.now();
    each(k0, kb, g);
    const t2 = performance.now();
    tMat += t1 - t;
    tUpd += t2 - t1;
    t = t2;
  }
}

/** dX[n, K] = dH[n, C] · Wᵀ[C, K] over this shard's columns, into the shared dx. */
async function inputGradient(n: number): Promise<void> {
  if (!dxShared) throw new Error('this head trainer was created without input gradients');
  await matmul.run(dh.subarray(0, n * C), kernel, dx.subarray(0, n * K), n, C, K);
  dxShared.set(dx.subarray(0, n * K));
}

async function backward(n: number, step: number, withInputGradient: boolean, learningRate: number): Promise<void> {
  const t0 = performance.now();
  takeOutputGradient(n);
  tT += performance.now() - t0;
  if (withInputGradient) await inputGradient(n);
  const opt = learningRate === optimizer.learningRate ? optimizer : { ...optimizer, learningRate };
  await gradientBlocks(n, (k0, kb, g) => {
    const band = { rows: C, cols: kb, stride: K, gradientStride: kb };
    (update ?? applyUpdateRows)(opt, step, kernel.subarray(k0), g, slots.map((s) => s.subarray(k0)), band);
  });
}

parentPort!.on('message', (req: ShardRequest) => {
  void (async () => {
    try {
      switch (req.op) {
        case 'forward': {
          const t0 = performance.now();
          await forward(req.n);
          tFwd += performance.now() - t0;
          parentPort!.postMessage({ ok: true });
          break;
        }
        case 'backward': {
          const t0 = performance.now();
          await backward(req.n, req.step, req.inputGradient === true, req.learningRate);
          tBwd += performance.now() - t0;
          if (PROFILE) profileStep();
          parentPort!.postMessage({ ok: true });
          break;
        }
        case 'gradient': {
          // Transposed, as the shard holds it: [C, K].
          const full = new Float32Array(K * C);
          takeOutputGradient(req.n);
          await gradientBlocks(req.n, (k0, kb, g) => {
            for (let c = 0; c < C; c++) full.set(g.subarray(c * kb, (c + 1) * kb), c * K + k0);
          });
          parentPort!.postMessage({ ok: true, gradient: full }, [full.buffer]);
          break;
        }
        case 'gather': {
          const src = req.slot === null ? kernel : slots[req.slot]!;
          transposeInto(src, req.row0, K, req.into, col0, N, C, req.rows);
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
          await matmulTransposedInput.dispose();
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
