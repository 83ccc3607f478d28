/**
 * One fused optimiser update of a weight array in place, by the optimiser's SIMD kernel
 * (simd-rmsprop.ts, simd-adam.ts): what the head's shard workers and the fine-tuning trainer run
 * on arrays they keep in a WebAssembly memory.
 */
import { adamAlpha, applyUpdate, type ResolvedOptimizer } from './optimizers.js';
import { simdAdam } from './simd-adam.js';
import { simdRmsprop } from './simd-rmsprop.js';
import type { RowBlock, WasmMemory } from './wasm-simd.js';

/**
 * Updates w from gradient g and the optimiser's slots, all views of the kernel memory: every
 * element, or the rows of `block`. `opt` may carry another rate than the one the updater was made for.
 */
export type SimdUpdate = (opt: ResolvedOptimizer, step: number, w: Float32Array, g: Float32Array, slots: Float32Array[], block?: RowBlock) => void;

/** Whether `opt`'s kind has a SIMD kernel (then its arrays are worth keeping in a WebAssembly memory). */
export function hasSimdUpdate(opt: ResolvedOptimizer): boolean {
  return opt.kind === 'rmsprop' || opt.kind === 'adam';
}

/**
 * The SIMD update for `opt`'s kind over arrays in `memory`, or null where it has no kernel (SGD)
 * or the engine lacks WebAssembly SIMD: then applyUpdate, the JS loop, is the way.
 */
export function simdUpdate(opt: ResolvedOptimizer, memory: WasmMemory): SimdUpdate | null {
  if (opt.kind === 'rmsprop') {
    const rmsprop = simdRmsprop(memory, opt.legacy);
    return rmsprop && ((o, step, w, g, slots, block) => (o.kind === 'rmsprop' ? rmsprop(w, slots[0]!, g, o.learningRate, o.rho, o.epsilon, block) : applyUpdateRows(o, step, w, g, slots, block)));
  }
  if (opt.kind === 'adam') {
    const adam = simdAdam(memory);
    return adam && ((o, step, w, g, slots, block) => (o.kind === 'adam' ? adam(w, slots[0]!, slots[1]!, g, adamAlpha(o, step), 1 - o.beta1, 1 - o.beta2, o.epsilon, block) : applyUpdateRows(o, step, w, g, slots, block)));
  }
  return null;
}

/** applyUpdate, the JS loop, over every element or the rows of `block`. */
export function applyUpdateRows(opt: ResolvedOptimizer, step: number, w: Float32Array, g: Float32Array, slots: Float32Array[], block?: RowBlock): void {
  if (!block) return applyUpdate(opt, step, w, g, slots);
  for (let r = 0; r < block.rows; r++) {
    const lo = r * block.stride;
    applyUpdate(opt, step, w, g, slots, lo, lo + block.cols, r * block.gradientStride);
  }
}
