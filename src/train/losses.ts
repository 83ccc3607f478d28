/**
 * Keras's losses and metrics on probabilities, as batch means. Probabilities are clipped to
 * [1e-7, 1 - 1e-7] as Keras does (its backend epsilon) so that log never sees 0.
 */
export const KERAS_EPSILON = 1e-7;

const clip = (p: number) => Math.min(1 - KERAS_EPSILON, Math.max(KERAS_EPSILON, p));

/**
 * Mean binary cross-entropy of probabilities p[n] against labels y[n] (0/1). With sample weights
 * w[n]: sum(w * loss) / n (Keras's 'sum_over_batch_size' reduction).
 */
export function binaryCrossentropy(p: Float32Array, y: Float32Array, n: number, w?: Float32Array): number {
  let sum = 0;
  for (let i = 0; i < n; i++) {
    const q = clip(p[i]!), t = y[i]!;
    sum -= (t * Math.log(q) + (1 - t) * Math.log(1 - q)) * (w ? w[i]! : 1);
  }
  return n > 0 ? sum / n : 0;
}

/**
 * Mean categorical cross-entropy of rows p[n, k] (renormalised to sum 1, as Keras does) against
 * one-hot y[n, k]; with sample weights w[n], sum(w * loss) / n as Keras reduces it.
 */
export function categoricalCrossentropy(p: Float32Array, y: Float32Array, n: number, k: number, w?: Float32Array): number {
  let sum = 0;
  for (let i = 0; i < n; i++) {
    let total = 0;
    for (let j = 0; j < k; j++) total += p[i * k + j]!;
    for (let j = 0; j < k; j++) {
      const t = y[i * k + j]!;
      if (t !== 0) sum -= t * Math.log(clip(p[i * k + j]! / total)) * (w ? w[i]! : 1);
    }
  }
  return n > 0 ? sum / n : 0;
}

/** Keras's binary_accuracy: the share of samples whose (p > 0.5) equals the label. */
export function binaryAccuracy(p: Float32Array, y: Float32Array, n: number, threshold = 0.5): number {
  let hits = 0;
  for (let i = 0; i < n; i++) if ((p[i]! > threshold ? 1 : 0) === y[i]) hits++;
  return n > 0 ? hits / n : 0;
}

/** Keras's categorical_accuracy: argmax of the prediction equals argmax of the one-hot label. */
export function categoricalAccuracy(p: Float32Array, y: Float32Array, n: number, k: number): number {
  let hits = 0;
  for (let i = 0; i < n; i++) {
    let bp = 0, by = 0;
    for (let j = 1; j < k; j++) {
      if (p[i * k + j]! > p[i * k + bp]!) bp = j;
      if (y[i * k + j]! > y[i * k + by]!) by = j;
    }
    if (bp === by) hits++;
  }
  return n > 0 ? hits / n : 0;
}
