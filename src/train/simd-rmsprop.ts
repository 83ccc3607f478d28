/**
 * RMSprop's fused update as a tiny hand-assembled WebAssembly SIMD function (f32x4): V8 runs the
 * plain JS loop at ~4 ns/element (scalar f64 sqrt and divide), which makes the optimiser, not the
 * matrix products, the bottleneck of the head's step. No library ships such a kernel for Node.
 *
 * rmsprop(w, ms, g, n4, lr, rho, 1-rho, eps): for n4 groups of 4 floats at byte offsets w, ms, g:
 *   ms = rho*ms + (1-rho)*g*g;  w = w - (lr*g) / sqrt(ms + eps)     (legacy: (lr*g) / (sqrt(ms) + eps))
 * with gradients and ms values too small to matter flushed to zero (see FLUSH_GRADIENT_BELOW).
 */
import { applyUpdate, FLUSH_GRADIENT_BELOW, FLUSH_SLOT_BELOW } from './optimizers.js';
import { ADD, ANDNOT, checkInMemory, DIV, F32, flushAbsBelow, forEachRow, get, I32, instantiateKernel, kernelModule, LOAD, loopOverGroups, LT, MUL, set, splatArguments, splatFlushThresholds, SQRT, STORE, SUB, tee, V128, wholeArray, type RowBlock, type WasmMemory } from './wasm-simd.js';

function moduleBytes(legacy: boolean): Uint8Array {
  // params: 0 w, 1 ms, 2 g, 3 n4, 4 lr, 5 rho, 6 omr, 7 eps;
  // locals: 8 vlr, 9 vrho, 10 vomr, 11 veps, 12 g, 13 ms, 14 flush-g threshold, 15 flush-ms threshold
  const body = [
    1, 8, V128,
    ...splatFlushThresholds(FLUSH_GRADIENT_BELOW, FLUSH_SLOT_BELOW, 14),
    ...splatArguments(4, 4, 8),
    ...loopOverGroups(3, [0, 1, 2], [
      ...get(2), ...LOAD, ...set(12),
      // g = g & ~(|g| < flush): keeps NaN, drops values whose square would be subnormal
      ...flushAbsBelow(12, 14),
      ...get(1),
      ...get(9), ...get(1), ...LOAD, ...MUL,
      ...get(10), ...get(12), ...get(12), ...MUL, ...MUL,
      ...ADD, ...tee(13),
      // ms = ms & ~(ms < flush)
      ...get(13), ...get(15), ...LT, ...ANDNOT, ...tee(13),
      ...STORE,
      ...get(0),
      ...get(0), ...LOAD,
      ...get(8), ...get(12), ...MUL,
      ...(legacy ? [...get(13), ...SQRT, ...get(11), ...ADD] : [...get(13), ...get(11), ...ADD, ...SQRT]),
      ...DIV, ...SUB,
      ...STORE,
    ]),
  ];
  return kernelModule('rmsprop', [I32, I32, I32, I32, F32, F32, F32, F32], body);
}

/** Updates w and ms from g in place: every element, or the rows of `block` (all views of the kernel memory). */
export type RmspropKernel = (w: Float32Array, ms: Float32Array, g: Float32Array, lr: number, rho: number, eps: number, block?: RowBlock) => void;

/**
 * A kernel over arrays that all lie in `memory` (views of memory.buffer), or null where the
 * engine lacks WebAssembly SIMD; `legacy` selects tf.keras's legacy epsilon placement. Row
 * lengths need not be multiples of 4 (the tails run in JS).
 */
export function simdRmsprop(memory: WasmMemory, legacy = false): RmspropKernel | null {
  const fn = instantiateKernel<(w: number, m: number, g: number, n4: number, lr: number, rho: number, omr: number, eps: number) => void>(moduleBytes(legacy), 'rmsprop', memory);
  if (!fn) return null;
  return (w, ms, g, lr, rho, eps, block = wholeArray(w.length)) => {
    checkInMemory('simdRmsprop', memory, [w, ms, g]);
    const opt = { kind: 'rmsprop', learningRate: lr, rho, epsilon: eps, legacy } as const;
    forEachRow(
      block,
      (lo, gLo, n4) => fn(w.byteOffset + lo * 4, ms.byteOffset + lo * 4, g.byteOffset + gLo * 4, n4, lr, rho, 1 - rho, eps),
      (lo, hi, gLo) => applyUpdate(opt, 0, w, g, [ms], lo, hi, gLo),
    );
  };
}
