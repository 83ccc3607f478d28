/**
 * Adam's fused update as a hand-assembled WebAssembly SIMD function (f32x4), as simd-rmsprop.ts
 * does for RMSprop. The JS loop took 3.9-4.7 ms a step a worker for the default recipe's
 * 1.8M-weight Dense layer (now 0.8-1.4 ms) and 114-144 ms for the lab's 38.5M (now 26-33 ms).
 *
 * adam(w, m, v, g, n4, alpha, 1-beta1, 1-beta2, eps): for n4 groups of 4 floats at byte offsets:
 *   m += (g - m)(1 - beta1);  v += (g^2 - v)(1 - beta2);  w -= alpha * m / (sqrt(v) + eps)
 * (Keras's formulas; alpha = lr * sqrt(1 - beta2^t) / (1 - beta1^t), optimizers.ts adamAlpha),
 * with gradients and slot values too small to matter flushed to zero as RMSprop's are.
 */
import { adamElements, FLUSH_GRADIENT_BELOW, FLUSH_SLOT_BELOW } from './optimizers.js';
import { ADD, checkInMemory, DIV, F32, flushAbsBelow, forEachRow, get, I32, instantiateKernel, kernelModule, LOAD, loopOverGroups, MUL, set, splatArguments, splatFlushThresholds, SQRT, STORE, SUB, V128, wholeArray, type RowBlock, type WasmMemory } from './wasm-simd.js';

function moduleBytes(): Uint8Array {
  // params: 0 w, 1 m, 2 v, 3 g, 4 n4, 5 alpha, 6 1-beta1, 7 1-beta2, 8 eps;
  // locals: 9 alpha, 10 1-beta1, 11 1-beta2, 12 eps (splatted), 13 g, 14 m, 15 v, 16 gradient flush threshold, 17 slot flush threshold
  const body = [
    1, 9, V128,
    ...splatFlushThresholds(FLUSH_GRADIENT_BELOW, FLUSH_SLOT_BELOW, 16),
    ...splatArguments(5, 4, 9),
    ...loopOverGroups(4, [0, 1, 2, 3], [
      ...get(3), ...LOAD, ...set(13),
      ...flushAbsBelow(13, 16),
      // m = m + (g - m) * (1 - beta1)
      ...get(1), ...LOAD,
      ...get(13), ...get(1), ...LOAD, ...SUB, ...get(10), ...MUL,
      ...ADD, ...set(14),
      ...flushAbsBelow(14, 17),
      ...get(1), ...get(14), ...STORE,
      // v = v + (g*g - v) * (1 - beta2)
      ...get(2), ...LOAD,
      ...get(13), ...get(13), ...MUL, ...get(2), ...LOAD, ...SUB, ...get(11), ...MUL,
      ...ADD, ...set(15),
      ...flushAbsBelow(15, 17),
      ...get(2), ...get(15), ...STORE,
      // w = w - alpha * m / (sqrt(v) + eps)
      ...get(0),
      ...get(0), ...LOAD,
      ...get(9), ...get(14), ...MUL,
      ...get(15), ...SQRT, ...get(12), ...ADD,
      ...DIV, ...SUB,
      ...STORE,
    ]),
  ];
  return kernelModule('adam', [I32, I32, I32, I32, I32, F32, F32, F32, F32], body);
}

/** alpha: this step's bias-corrected rate (adamAlpha); b1, b2: 1 - beta1, 1 - beta2; every element, or the rows of `block`. */
export type AdamKernel = (w: Float32Array, m: Float32Array, v: Float32Array, g: Float32Array, alpha: number, b1: number, b2: number, eps: number, block?: RowBlock) => void;

/**
 * A kernel over arrays that all lie in `memory`, or null where the engine lacks WebAssembly
 * SIMD. Row lengths need not be multiples of 4 (the tails run in JS, with the same formulas).
 */
export function simdAdam(memory: WasmMemory): AdamKernel | null {
  const fn = instantiateKernel<(w: number, m: number, v: number, g: number, n4: number, alpha: number, b1: number, b2: number, eps: number) => void>(moduleBytes(), 'adam', memory);
  if (!fn) return null;
  return (w, m, v, g, alpha, b1, b2, eps, block = wholeArray(w.length)) => {
    checkInMemory('simdAdam', memory, [w, m, v, g]);
    forEachRow(
      block,
      (lo, gLo, n4) => fn(w.byteOffset + lo * 4, m.byteOffset + lo * 4, v.byteOffset + lo * 4, g.byteOffset + gLo * 4, n4, alpha, b1, b2, eps),
      (lo, hi, gLo) => adamElements(w, m, v, g, lo, hi, gLo - lo, alpha, b1, b2, eps),
    );
  };
}
