/**
 * A prediction as a program wants it: the K most probable classes, and `unknown` when the best
 * probability is below a threshold (an image of none of the classes still gets a softmax winner).
 */
import type { Prediction } from './saved-classifier.js';
import { GraftError } from '../util/errors.js';

/** What `graft predict` answers for an image that no class reaches the threshold for. */
export const UNKNOWN = 'unknown';

export interface AnswerOptions {
  /** How many of the most probable classes to list (default: none listed). */
  topK?: number;
  /** Below this probability the answer is `unknown` (default: always the best class). */
  threshold?: number;
}

export interface Answer {
  file: string;
  /** The best class, or 'unknown' when its probability is below the threshold. */
  class: string;
  probability: number;
  /** With a threshold: the best class whatever its probability, and whether it reached the threshold. */
  bestClass?: string;
  /** The topK classes, most probable first (ties in class order). */
  top?: { class: string; probability: number }[];
}

export function checkAnswerOptions(opts: AnswerOptions): void {
  if (opts.topK !== undefined && !(Number.isInteger(opts.topK) && opts.topK >= 1)) throw new GraftError(`top-k must be a whole number from 1, got ${opts.topK}`);
  if (opts.threshold !== undefined && !(opts.threshold >= 0 && opts.threshold <= 1)) throw new GraftError(`the threshold must be a probability from 0 to 1, got ${opts.threshold}`);
}

export function answer(p: Prediction, classes: readonly string[], opts: AnswerOptions = {}): Answer {
  const known = opts.threshold === undefined || p.probability >= opts.threshold;
  const out: Answer = { file: p.file, class: known ? p.className : UNKNOWN, probability: p.probability };
  if (opts.threshold !== undefined) out.bestClass = p.className;
  if (opts.topK !== undefined) {
    const order = p.probabilities.map((_, i) => i).sort((a, b) => p.probabilities[b]! - p.probabilities[a]! || a - b);
    out.top = order.slice(0, opts.topK).map((i) => ({ class: classes[i]!, probability: p.probabilities[i]! }));
  }
  return out;
}
