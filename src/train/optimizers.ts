import { GraftError } from '../util/errors.js';

/**
 * Keras optimisers with Keras's defaults and formulas: Keras 3, which is also tf.keras's optimizer
 * since TF 2.11. Each has one fused per-element kernel: one pass over (weight, gradient, slots) per step, since
 * the head's 38.5M weights make every extra pass a memory-bound ~0.1 s.
 */
export type OptimizerConfig =
  | {
      kind: 'rmsprop';
      learningRate?: number;
      rho?: number;
      epsilon?: number;
      momentum?: number;
      centered?: boolean;
      /**
       * tf.keras.optimizers.legacy.RMSprop (the only RMSprop up to TF 2.10) adds epsilon after the
       * square root, lr*g/(sqrt(ms)+eps); Keras 3 and TF >= 2.11 add it inside, lr*g/sqrt(ms+eps).
       * With eps 1e-7 the two differ where ms is below ~1e-6: the legacy rule gives such
       * rarely-active weights full-size steps of about lr*sign(g), the current one damps them.
       */
      legacy?: boolean;
    }
  | { kind: 'adam'; learningRate?: number; beta1?: number; beta2?: number; epsilon?: number }
  | { kind: 'sgd'; learningRate?: number; momentum?: number; nesterov?: boolean };

export type ResolvedOptimizer =
  | { kind: 'rmsprop'; learningRate: number; rho: number; epsilon: number; legacy: boolean }
  | { kind: 'adam'; learningRate: number; beta1: number; beta2: number; epsilon: number }
  | { kind: 'sgd'; learningRate: number; momentum: number };

/** Fills in Keras's defaults; rejects the variants graft does not implement. */
export function resolveOptimizer(cfg: OptimizerConfig): ResolvedOptimizer {
  const lr = (x: number | undefined, d: number) => {
    const v = x ?? d;
    if (!(v > 0) || !Number.isFinite(v)) throw new GraftError(`learning rate must be a positive number, found ${v}`);
    return v;
  };
  switch (cfg.kind) {
    case 'rmsprop':
      if ((cfg.momentum ?? 0) !== 0 || cfg.centered) throw new GraftError('RMSprop with momentum or centered=true is not supported');
      return { kind: 'rmsprop', learningRate: lr(cfg.learningRate, 0.001), rho: cfg.rho ?? 0.9, epsilon: cfg.epsilon ?? 1e-7, legacy: cfg.legacy ?? false };
    case 'adam':
      return { kind: 'adam', learningRate: lr(cfg.learningRate, 0.001), beta1: cfg.beta1 ?? 0.9, beta2: cfg.beta2 ?? 0.999, epsilon: cfg.epsilon ?? 1e-7 };
    case 'sgd':
      if (cfg.nesterov) throw new GraftError('SGD with nesterov=true is not supported');
      return { kind: 'sgd', learningRate: lr(cfg.learningRate, 0.01), momentum: cfg.momentum ?? 0 };
    default:
      throw new GraftError(`unknown optimizer ${(cfg as { kind: string }).kind}`);
  }
}

/** How many state arrays (each the size of the weight) the optimiser keeps per weight. */
export function slotCount(opt: ResolvedOptimizer): number {
  return opt.kind === 'adam' ? 2 : opt.kind === 'rmsprop' ? 1 : opt.momentum !== 0 ? 1 : 0;
}

/**
 * Gradients smaller than this are taken as zero by RMSprop, and its running mean square is
 * flushed to zero below FLUSH_SLOT_BELOW. Without it, weights whose features are always zero see
 * their mean square decay by rho every step into subnormal floats within a few epochs, and
 * subnormal arithmetic is ~100x slower on x86 (WebAssembly cannot set flush-to-zero). The effect
 * on the update is below float32 resolution even in the legacy rule: lr*g/(sqrt(ms)+eps) < 1e-4 * 1e-18 / 1e-7.
 */
export const FLUSH_GRADIENT_BELOW = 1e-18;
export const FLUSH_SLOT_BELOW = 1e-30;

/**
 * One fused update of w[lo..hi) from gradient g (indexed from gOffset: g[i - lo + gOffset]).
 * `step` is the 1-based iteration (Keras's iterations + 1), used by Adam's bias correction.
 */
export function applyUpdate(
  opt: ResolvedOptimizer,
  step: number,
  w: Float32Array,
  g: Float32Array,
  slots: Float32Array[],
  lo = 0,
  hi = w.length,
  gOffset = 0,
): void {
  const d = gOffset - lo;
  if (opt.kind === 'rmsprop') {
    // ms = rho*ms + (1-rho)*g^2; w -= lr*g / sqrt(ms + eps)   (legacy: lr*g / (sqrt(ms) + eps))
    const ms = slots[0]!, rho = opt.rho, omr = 1 - opt.rho, lr = opt.learningRate, eps = opt.epsilon;
    const inside = opt.legacy ? 0 : eps, outside = opt.legacy ? eps : 0;
    for (let i = lo; i < hi; i++) {
      let gi = g[i + d]!;
      if (Math.abs(gi) < FLUSH_GRADIENT_BELOW) gi = 0;
      let m = Math.fround(rho * ms[i]! + omr * gi * gi);
      if (m < FLUSH_SLOT_BELOW) m = 0;
      ms[i] = m;
      w[i] = w[i]! - (lr * gi) / (Math.sqrt(m + inside) + outside);
    }
  } else if (opt.kind === 'adam') {
    adamElements(w, slots[0]!, slots[1]!, g, lo, hi, d, adamAlpha(opt, step), 1 - opt.beta1, 1 - opt.beta2, opt.epsilon);
  } else if (opt.momentum === 0) {
    const lr = opt.learningRate;
    for (let i = lo; i < hi; i++) w[i] = w[i]! - lr * g[i + d]!;
  } else {
    // Keras SGD with momentum: v = momentum*v - lr*g; w += v
    const vel = slots[0]!, mo = opt.momentum, lr = opt.learningRate;
    for (let i = lo; i < hi; i++) {
      const vi = Math.fround(mo * vel[i]! - lr * g[i + d]!);
      vel[i] = vi;
      w[i] = w[i]! + vi;
    }
  }
}

/** Adam's bias-corrected rate of the 1-based step t: lr * sqrt(1 - beta2^t) / (1 - beta1^t). */
export function adamAlpha(opt: Extract<ResolvedOptimizer, { kind: 'adam' }>, step: number): number {
  return (opt.learningRate * Math.sqrt(1 - opt.beta2 ** step)) / (1 - opt.beta1 ** step);
}

/**
 * Keras's Adam over w[lo..hi) (gradient g[i + d]): m += (g-m)(1-b1); v += (g^2-v)(1-b2);
 * w -= alpha * m/(sqrt(v)+eps); b1, b2 are 1 - beta1, 1 - beta2. Gradients and slot values
 * flushed to zero below FLUSH_GRADIENT_BELOW and FLUSH_SLOT_BELOW, as in the SIMD kernel: a
 * weight whose gradient stays zero sees m shrink by beta1 every step, into subnormal floats
 * within ~700 steps.
 */
export function adamElements(w: Float32Array, m: Float32Array, v: Float32Array, g: Float32Array, lo: number, hi: number, d: number, alpha: number, b1: number, b2: number, eps: number): void {
  for (let i = lo; i < hi; i++) {
    let gi = g[i + d]!;
    if (Math.abs(gi) < FLUSH_GRADIENT_BELOW) gi = 0;
    let mi = Math.fround(m[i]! + (gi - m[i]!) * b1);
    if (Math.abs(mi) < FLUSH_SLOT_BELOW) mi = 0;
    let vi = Math.fround(v[i]! + (gi * gi - v[i]!) * b2);
    if (vi < FLUSH_SLOT_BELOW) vi = 0;
    m[i] = mi;
    v[i] = vi;
    w[i] = w[i]! - (alpha * mi) / (Math.sqrt(vi) + eps);
  }
}

/** Optimiser state for a checkpoint: the config, Keras's `iterations`, and every slot array. */
export interface OptimizerState {
  config: ResolvedOptimizer;
  iterations: number;
  /** slots[p][s]: slot s of parameter array p. */
  slots: Float32Array[][];
}
