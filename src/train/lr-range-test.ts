/**
 * fastai's learning-rate range test (`lr_find`): train step by step while the rate grows
 * exponentially from startLr to endLr over numIt steps, record the loss smoothed as fastai's
 * Recorder does (exponential moving average, beta 0.98, debiased), stop once it passes 4x the best
 * (it has exploded) or turns NaN, and suggest a rate by fastai's default 'valley' rule.
 */
import { GraftError } from '../util/errors.js';
import type { BatchSource } from './fit.js';
import type { HeadTrainer } from './head-trainer.js';

export interface RangeTestOptions {
  /** Default 1e-7, as fastai. */
  startLr?: number;
  /** Default 10, as fastai. */
  endLr?: number;
  /** Steps (default 100, as fastai); the data is gone through again as often as needed. */
  numIt?: number;
  /** Stop once the smoothed loss passes 4x the best (default true). */
  stopDiv?: boolean;
  signal?: AbortSignal;
}

export interface RangeTestResult {
  /** The rate of each step taken. */
  lrs: number[];
  /** The smoothed loss after each step. */
  losses: number[];
  /** The suggested rate (valley), within the rates tried. */
  suggestion: number;
  /** Why it stopped: all steps done, or the loss exploded. */
  stopped: 'done' | 'diverged';
}

/**
 * fastai's valley: the longest stretch over which the loss keeps falling (longest decreasing
 * subsequence), and a point about two thirds of the way down it. Over the points fastai uses:
 * the first tenth and the last five left out. Returns the index into `losses`.
 */
export function valleyIndex(losses: number[], numIt: number): number {
  const from = Math.floor(numIt / 10), to = Math.max(from + 1, losses.length - 5);
  const l = losses.slice(from, to);
  const n = l.length;
  if (n < 2) return losses.indexOf(Math.min(...losses.filter(Number.isFinite)));
  const lds = new Array<number>(n).fill(1);
  let maxStart = 0, maxEnd = 0;
  for (let i = 1; i < n; i++) {
    for (let j = 0; j < i; j++) {
      if (l[i]! < l[j]! && lds[i]! < lds[j]! + 1) lds[i] = lds[j]! + 1;
      if (lds[maxEnd]! < lds[i]!) {
        maxEnd = i;
        maxStart = maxEnd - lds[maxEnd]!;
      }
    }
  }
  const sections = (maxEnd - maxStart) / 3;
  const idx = maxStart + Math.trunc(sections) + Math.trunc(sections / 2);
  return from + Math.min(n - 1, Math.max(0, idx));
}

export async function lrRangeTest(trainer: HeadTrainer, source: BatchSource, opts: RangeTestOptions = {}): Promise<RangeTestResult> {
  const start = opts.startLr ?? 1e-7, end = opts.endLr ?? 10, numIt = opts.numIt ?? 100;
  if (!(start > 0 && end > start && Number.isFinite(end))) throw new GraftError(`the range test needs 0 < start rate < end rate, got ${start} and ${end}`);
  if (!(Number.isInteger(numIt) && numIt >= 2)) throw new GraftError(`the range test needs at least 2 steps, got ${numIt}`);
  const lrs: number[] = [], losses: number[] = [];
  const beta = 0.98;
  let avg = 0, best = Infinity, stopped: RangeTestResult['stopped'] = 'done';
  outer: for (let epoch = 0; ; epoch++) {
    trainer.beginEpoch(epoch);
    for await (const b of source.batches(epoch)) {
      if (opts.signal?.aborted) throw new GraftError('the learning-rate range test was interrupted');
      const i = lrs.length;
      // fastai's SchedExp at pos i / numIt: start * (end / start) ** pos.
      const lr = start * (end / start) ** (i / numIt);
      trainer.setLearningRate(lr);
      const { loss } = await trainer.trainStep(b.features, b.labels, b.size);
      avg = beta * avg + (1 - beta) * loss;
      const smooth = avg / (1 - beta ** (i + 1));
      lrs.push(lr);
      losses.push(smooth);
      if (smooth < best) best = smooth;
      if (!Number.isFinite(smooth) || (opts.stopDiv !== false && smooth > 4 * best)) {
        stopped = 'diverged';
        break outer;
      }
      if (lrs.length >= numIt) break outer;
    }
  }
  const finite = losses.map((l) => (Number.isFinite(l) ? l : Infinity));
  return { lrs, losses, suggestion: lrs[valleyIndex(finite, numIt)]!, stopped };
}
