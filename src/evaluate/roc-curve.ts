/**
 * The ROC curve of scores for positives against negatives: one point per distinct threshold, from
 * (0, 0) to (1, 1), as sklearn's roc_curve with drop_intermediate=False.
 */
export function rocCurve(scores: ArrayLike<number>, positive: ArrayLike<boolean>): { fpr: number[]; tpr: number[]; thresholds: number[] } | null {
  const n = scores.length;
  let pos = 0;
  for (let i = 0; i < n; i++) if (positive[i]) pos++;
  const neg = n - pos;
  if (pos === 0 || neg === 0) return null;
  const order = Array.from({ length: n }, (_, i) => i).sort((a, b) => scores[b]! - scores[a]!);
  const fpr = [0], tpr = [0], thresholds = [Infinity];
  let tp = 0, fp = 0;
  for (let k = 0; k < n; k++) {
    const i = order[k]!;
    if (positive[i]) tp++;
    else fp++;
    // Tied scores move together: a point only where the next score differs.
    if (k === n - 1 || scores[order[k + 1]!]! !== scores[i]!) {
      fpr.push(fp / neg);
      tpr.push(tp / pos);
      thresholds.push(scores[i]!);
    }
  }
  return { fpr, tpr, thresholds };
}
