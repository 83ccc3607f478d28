import { GraftError } from '../util/errors.js';

/** Keras's backend epsilon: probabilities are clipped to [EPSILON, 1 - EPSILON] before the log. */
export const EPSILON = 1e-7;

export interface ClassMetrics {
  precision: number;
  recall: number;
  f1: number;
  /** How many items truly belong to the class. */
  support: number;
}

export interface Misclassified {
  /** Position in the evaluated set (matches the file list the caller passes on to reports). */
  index: number;
  trueLabel: number;
  predicted: number;
  /** The probability the model gave its (wrong) predicted class. */
  probability: number;
  /** The probability the model gave the true class. */
  trueProbability: number;
}

export interface EvaluationMetrics {
  count: number;
  numClasses: number;
  accuracy: number;
  /**
   * The mean of the recalls of the classes that have items (scikit-learn's balanced_accuracy_score):
   * what accuracy would be with classes of equal size; the figure to read when they are not.
   */
  balancedAccuracy: number;
  /** Mean binary (2 classes, one probability) or categorical cross-entropy, as Keras computes it. */
  loss: number;
  /** confusion[true][predicted] counts. */
  confusion: number[][];
  perClass: ClassMetrics[];
  /** Means over the classes present in the labels or the predictions (sklearn's classification_report). */
  macro: { precision: number; recall: number; f1: number };
  /**
   * ROC AUC: of class 1 against class 0 for two classes; for more, the mean of each class's AUC
   * against the rest (like sklearn's roc_auc_score with multi_class='ovr', average='macro', except
   * that classes without images are left out of the mean where sklearn raises an error). Null when
   * no class has both positive and negative images.
   */
  auc: number | null;
  misclassified: Misclassified[];
}

/**
 * Probabilities as the model outputs them: for two classes either one probability of class 1 per
 * item (sigmoid head) or rows of 2; for k classes rows of k (softmax head), as arrays or flat row-major.
 */
export type Probabilities = ArrayLike<number> | ArrayLike<number>[];

/** Rows of per-class probabilities, and whether the input was a single sigmoid output per item. */
function toRows(probabilities: Probabilities, n: number, numClasses: number | undefined): { rows: Float64Array[]; sigmoid: boolean } {
  const first = (probabilities as ArrayLike<unknown>)[0];
  if (n > 0 && typeof first === 'object' && first !== null) {
    const rows = Array.from(probabilities as ArrayLike<number>[], (r) => Float64Array.from(r));
    if (rows.length !== n) throw new GraftError(`metrics: ${rows.length} probability rows for ${n} labels`);
    const k = rows[0]!.length;
    if (numClasses !== undefined && k !== numClasses) throw new GraftError(`metrics: rows of ${k} probabilities for ${numClasses} classes`);
    if (rows.some((r) => r.length !== k)) throw new GraftError('metrics: probability rows of different lengths');
    return { rows, sigmoid: false };
  }
  const flat = probabilities as ArrayLike<number>;
  if (flat.length === n && (numClasses === undefined || numClasses === 2)) {
    return { rows: Array.from({ length: n }, (_, i) => Float64Array.of(1 - flat[i]!, flat[i]!)), sigmoid: true };
  }
  const k = numClasses ?? (n > 0 ? flat.length / n : 0);
  if (!Number.isInteger(k) || k < 2 || flat.length !== n * k) {
    throw new GraftError(`metrics: ${flat.length} probabilities do not fit ${n} labels${numClasses ? ` and ${numClasses} classes` : ''}`);
  }
  return { rows: Array.from({ length: n }, (_, i) => Float64Array.from({ length: k }, (_, c) => flat[i * k + c]!)), sigmoid: false };
}

const clip = (p: number) => Math.min(1 - EPSILON, Math.max(EPSILON, p));

/**
 * ROC AUC of `scores` for positives (`positive[i]`) vs negatives, as the Mann-Whitney U statistic
 * with average ranks for ties: (sum of positive ranks - nPos(nPos+1)/2) / (nPos * nNeg).
 */
export function rocAuc(scores: ArrayLike<number>, positive: ArrayLike<boolean>): number | null {
  const n = scores.length;
  const order = Array.from({ length: n }, (_, i) => i).sort((a, b) => scores[a]! - scores[b]!);
  let rankSum = 0;
  let nPos = 0;
  for (let i = 0; i < n; ) {
    let j = i;
    while (j + 1 < n && scores[order[j + 1]!] === scores[order[i]!]) j++;
    const avgRank = (i + j) / 2 + 1; // ranks are 1-based
    for (let t = i; t <= j; t++) {
      if (positive[order[t]!]) {
        rankSum += avgRank;
        nPos++;
      }
    }
    i = j + 1;
  }
  const nNeg = n - nPos;
  if (nPos === 0 || nNeg === 0) return null;
  return (rankSum - (nPos * (nPos + 1)) / 2) / (nPos * nNeg);
}

/**
 * Accuracy, loss, confusion matrix, per-class and macro precision/recall/F1, two-class ROC AUC and
 * the misclassified items, from the model's probabilities and the true class indices.
 * Two classes with one probability each: predicted class 1 when p > 0.5 (Keras binary_accuracy);
 * otherwise the class of highest probability (the first on ties).
 */
export function computeMetrics(probabilities: Probabilities, labels: ArrayLike<number>, numClasses?: number): EvaluationMetrics {
  const n = labels.length;
  if (n === 0) throw new GraftError('metrics: there are no items to evaluate');
  const { rows, sigmoid } = toRows(probabilities, n, numClasses);
  const k = rows[0]!.length;
  const confusion = Array.from({ length: k }, () => new Array<number>(k).fill(0));
  const misclassified: Misclassified[] = [];
  let lossSum = 0;
  let correct = 0;
  for (let i = 0; i < n; i++) {
    const y = labels[i]!;
    if (!Number.isInteger(y) || y < 0 || y >= k) throw new GraftError(`metrics: label ${y} of item ${i} is not a class index 0..${k - 1}`);
    const row = rows[i]!;
    if (row.some((p) => !Number.isFinite(p))) throw new GraftError(`metrics: item ${i} has a non-finite probability`);
    let predicted: number;
    if (sigmoid) {
      predicted = row[1]! > 0.5 ? 1 : 0;
      const p = clip(row[1]!);
      lossSum -= y === 1 ? Math.log(p) : Math.log(1 - p);
    } else {
      predicted = 0;
      for (let c = 1; c < k; c++) if (row[c]! > row[predicted]!) predicted = c;
      const sum = row.reduce((a, b) => a + b, 0); // Keras normalises rows before the log
      lossSum -= Math.log(clip(row[y]! / sum));
    }
    confusion[y]![predicted]! += 1;
    if (predicted === y) correct++;
    else misclassified.push({ index: i, trueLabel: y, predicted, probability: row[predicted]!, trueProbability: row[y]! });
  }

  const perClass: ClassMetrics[] = [];
  // Macro averages run over the classes present (in the labels or the predictions), as sklearn's
  // classification_report does: a class with no images of it and none predicted has nothing to score.
  const present: ClassMetrics[] = [];
  for (let c = 0; c < k; c++) {
    const tp = confusion[c]![c]!;
    const support = confusion[c]!.reduce((a, b) => a + b, 0);
    const predictedAs = confusion.reduce((a, r) => a + r[c]!, 0);
    // sklearn's zero_division=0: an undefined ratio counts as 0.
    const precision = predictedAs === 0 ? 0 : tp / predictedAs;
    const recall = support === 0 ? 0 : tp / support;
    const f1 = precision + recall === 0 ? 0 : (2 * precision * recall) / (precision + recall);
    perClass.push({ precision, recall, f1, support });
    if (support > 0 || predictedAs > 0) present.push(perClass[c]!);
  }
  const mean = (f: (m: ClassMetrics) => number) => present.reduce((a, m) => a + f(m), 0) / present.length;
  const supported = perClass.filter((m) => m.support > 0);
  const balancedAccuracy = supported.reduce((a, m) => a + m.recall, 0) / supported.length;
  let auc: number | null;
  if (k === 2) {
    auc = rocAuc(rows.map((r) => r[1]!), Array.from(labels, (y) => y === 1));
  } else {
    const each = Array.from({ length: k }, (_, c) => rocAuc(rows.map((r) => r[c]!), Array.from(labels, (y) => y === c))).filter((a): a is number => a !== null);
    auc = each.length > 0 ? each.reduce((a, b) => a + b, 0) / each.length : null;
  }
  return {
    count: n,
    numClasses: k,
    accuracy: correct / n,
    balancedAccuracy,
    loss: lossSum / n,
    confusion,
    perClass,
    macro: { precision: mean((m) => m.precision), recall: mean((m) => m.recall), f1: mean((m) => m.f1) },
    auc,
    misclassified,
  };
}
