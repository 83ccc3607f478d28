/**
 * Keras's `class_weight` for unbalanced classes: each training sample's loss (and so its gradient)
 * is scaled by its class's weight. As in Keras 3, where class_weight becomes sample weights and
 * losses reduce 'sum_over_batch_size', a batch's loss is sum(w_i * loss_i) / n, not divided by the
 * sum of the weights; validation figures are never weighted, and neither is accuracy (Keras passes
 * sample weights to `weighted_metrics` only).
 */
import { GraftError } from '../util/errors.js';
import { setting as named } from '../util/option-names.js';

/** 'balanced' (scikit-learn's n_samples / (n_classes * count)) or a weight per class name (others 1). */
export type ClassWeightSetting = 'balanced' | Record<string, number>;

/** Largest class / smallest class above which classes count as unbalanced (the epoch line shows each class's recall). */
export const UNBALANCED_RATIO = 1.5;
/** Largest / smallest above which `graft data` and training warn. */
export const WARN_RATIO = 3;

/** Largest class count over the smallest non-empty one (1 when fewer than two classes have images). */
export function imbalanceRatio(counts: readonly number[]): number {
  const present = counts.filter((c) => c > 0);
  if (present.length < 2) return 1;
  return Math.max(...present) / Math.min(...present);
}

/**
 * One weight per class. 'balanced' follows scikit-learn's compute_class_weight (what Keras users
 * pass): n_samples / (n_classes * count); a class without training images gets 1 (it has no
 * sample to weigh). Explicit weights name classes; unnamed classes get 1, as Keras does.
 */
export function resolveClassWeights(setting: ClassWeightSetting, classes: readonly string[], counts: readonly number[]): number[] {
  if (setting === 'balanced') {
    const present = counts.filter((c) => c > 0).length;
    const total = counts.reduce((a, b) => a + b, 0);
    return counts.map((c) => (c > 0 ? total / (present * c) : 1));
  }
  if (typeof setting !== 'object' || setting === null || Array.isArray(setting)) {
    throw new GraftError(`class weights must be 'balanced' or a weight per class name, got ${JSON.stringify(setting)}`);
  }
  for (const [name, w] of Object.entries(setting)) {
    if (!classes.includes(name)) throw new GraftError(`class weight for '${name}', which is not a class (the classes are ${classes.join(', ')})`);
    if (!(typeof w === 'number' && Number.isFinite(w) && w >= 0)) throw new GraftError(`the class weight of '${name}' must be a number from 0, got ${JSON.stringify(w)}`);
  }
  return classes.map((c) => setting[c] ?? 1);
}

/** `balanced`, `cats=4,dogs=1` or a JSON object {"cats": 4}. */
export function parseClassWeight(text: string): ClassWeightSetting {
  const t = text.trim();
  if (t === 'balanced') return 'balanced';
  if (t.startsWith('{')) {
    let json: unknown;
    try {
      json = JSON.parse(t);
    } catch {
      throw new GraftError(`--class-weight: not valid JSON: ${t}`);
    }
    if (typeof json !== 'object' || json === null || Array.isArray(json)) throw new GraftError(`--class-weight: expected an object of class weights, got ${t}`);
    return json as Record<string, number>;
  }
  const out: Record<string, number> = {};
  for (const part of t.split(',')) {
    const m = /^(.+)=([^=]+)$/.exec(part.trim());
    const w = m ? Number(m[2]) : NaN;
    if (!m || !Number.isFinite(w) || w < 0) throw new GraftError(`--class-weight must be 'balanced' or NAME=WEIGHT pairs such as 'cats=4,dogs=1', found '${part.trim()}'`);
    out[m[1]!.trim()] = w;
  }
  return out;
}

/**
 * Each sample's weight from its label: binary labels [n] hold the class (0/1), categorical ones
 * [n, k] are one-hot (the class is the argmax). Written into `out` [n].
 */
export function sampleWeights(labels: Float32Array, n: number, k: number, weights: readonly number[], out: Float32Array): Float32Array {
  for (let i = 0; i < n; i++) {
    let c: number;
    if (k === 1) c = labels[i]! > 0.5 ? 1 : 0;
    else {
      c = 0;
      for (let j = 1; j < k; j++) if (labels[i * k + j]! > labels[i * k + c]!) c = j;
    }
    out[i] = weights[c] ?? 1;
  }
  return out;
}

/**
 * Recall of each class and their mean (balanced accuracy) from probabilities and labels as the
 * trainer holds them (binary: p[n] and labels 0/1; categorical: rows of k). Classes without
 * samples have NaN recall and are left out of the mean (scikit-learn's balanced_accuracy_score).
 */
export function classRecalls(probs: Float32Array, labels: Float32Array, n: number, k: number): { recall: number[]; balancedAccuracy: number } {
  const classes = k === 1 ? 2 : k;
  const hits = new Array<number>(classes).fill(0), totals = new Array<number>(classes).fill(0);
  for (let i = 0; i < n; i++) {
    let truth: number, predicted: number;
    if (k === 1) {
      truth = labels[i]! > 0.5 ? 1 : 0;
      predicted = probs[i]! > 0.5 ? 1 : 0;
    } else {
      truth = 0;
      predicted = 0;
      for (let j = 1; j < k; j++) {
        if (labels[i * k + j]! > labels[i * k + truth]!) truth = j;
        if (probs[i * k + j]! > probs[i * k + predicted]!) predicted = j;
      }
    }
    totals[truth]! += 1;
    if (truth === predicted) hits[truth]! += 1;
  }
  const recall = totals.map((t, c) => (t > 0 ? hits[c]! / t : NaN));
  const present = recall.filter((r) => !Number.isNaN(r));
  return { recall, balancedAccuracy: present.length > 0 ? present.reduce((a, b) => a + b, 0) / present.length : NaN };
}

/** How a run treats its class sizes: the weights (if any), whether epoch lines show recalls, and what to warn of. */
export interface ClassBalancePlan {
  weights?: number[];
  showRecall: boolean;
  notes: string[];
}

/**
 * From the readable training images per class (and validation's): the class weights to train with,
 * whether the epoch line shows each class's recall (unbalanced classes or weights given), and a
 * warning when training is unbalanced beyond WARN_RATIO without weights.
 */
export function planClassBalance(classes: readonly string[], trainCounts: readonly number[], valCounts: readonly number[], setting: ClassWeightSetting | undefined): ClassBalancePlan {
  const notes: string[] = [];
  const weights = setting === undefined ? undefined : resolveClassWeights(setting, classes, trainCounts);
  const ratio = imbalanceRatio(trainCounts);
  if (weights) {
    notes.push(`Class weights${setting === 'balanced' ? ' (balanced)' : ''}: ${classes.map((c, i) => `${c} ${+weights[i]!.toFixed(4)}`).join(', ')}`);
  } else if (ratio > WARN_RATIO) {
    const big = trainCounts.indexOf(Math.max(...trainCounts));
    const present = trainCounts.filter((n) => n > 0);
    const small = trainCounts.indexOf(Math.min(...present));
    notes.push(
      `warning: unbalanced classes: ${classes[big]} has ${trainCounts[big]} training images, ${classes[small]} ${trainCounts[small]} (${ratio.toFixed(1)}x); ` +
        `the model may rarely predict the small classes: weigh them with ${named('classWeight', 'balanced')}, and read balanced accuracy and each class's recall rather than accuracy`,
    );
  }
  const showRecall = weights !== undefined || ratio > UNBALANCED_RATIO || imbalanceRatio(valCounts) > UNBALANCED_RATIO;
  return { ...(weights && { weights }), showRecall, notes };
}
