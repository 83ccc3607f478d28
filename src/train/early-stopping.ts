/**
 * Keras's EarlyStopping callback (Keras 3, also tf.keras since TF 2.11): stop training once the
 * monitored figure has not improved for `patience` epochs, and optionally end with the weights of
 * the best epoch. Only the decision lives here; fit() stores the best weights and the state in the
 * checkpoint, so a resumed run stops and restores exactly as an uninterrupted one.
 */
import { GraftError } from '../util/errors.js';

export const MONITORS = ['val_loss', 'val_accuracy', 'loss', 'accuracy'] as const;
export type Monitor = (typeof MONITORS)[number];

export interface EarlyStoppingConfig {
  /** The epoch figure watched (default 'val_loss'); accuracies must rise, losses fall (Keras mode 'auto'). */
  monitor?: Monitor;
  /** Epochs without improvement before training stops (default 0, as Keras). */
  patience?: number;
  /** Smallest change that counts as an improvement (default 0). */
  minDelta?: number;
  /** End with the weights of the best epoch rather than the last (default false, as Keras). */
  restoreBestWeights?: boolean;
}

export interface ResolvedEarlyStopping {
  monitor: Monitor;
  patience: number;
  minDelta: number;
  restoreBestWeights: boolean;
}

/** Where an EarlyStopping stands after some epochs (JSON-able, for checkpoints). */
export interface EarlyStoppingState {
  /** The best figure so far; null before any (Keras starts from +-infinity). */
  best: number | null;
  /** 0-based epoch of the best figure, or of the weights kept as best; -1 before any. */
  bestEpoch: number;
  /** Epochs since the last improvement. */
  wait: number;
  /** 0-based epoch at which training was stopped; -1 while it goes on. */
  stoppedEpoch: number;
}

/** Fills in Keras's defaults; refuses what Keras would not take. */
export function resolveEarlyStopping(cfg: EarlyStoppingConfig): ResolvedEarlyStopping {
  const monitor = cfg.monitor ?? 'val_loss';
  if (!MONITORS.includes(monitor)) throw new GraftError(`early stopping cannot monitor '${String(monitor)}': use one of ${MONITORS.join(', ')}`);
  const patience = cfg.patience ?? 0;
  if (!(Number.isSafeInteger(patience) && patience >= 0)) throw new GraftError(`early stopping's patience must be a whole number of epochs from 0, got ${String(patience)}`);
  const minDelta = cfg.minDelta ?? 0;
  if (!(typeof minDelta === 'number' && Number.isFinite(minDelta) && minDelta >= 0)) throw new GraftError(`early stopping's minDelta must be a number from 0, got ${String(minDelta)}`);
  return { monitor, patience, minDelta, restoreBestWeights: cfg.restoreBestWeights === true };
}

export const INITIAL_STATE: EarlyStoppingState = { best: null, bestEpoch: -1, wait: 0, stoppedEpoch: -1 };

/** What to do after an epoch: keep its weights as the best, and/or stop training. */
export interface EarlyStoppingDecision {
  keepWeights: boolean;
  stop: boolean;
}

export class EarlyStopping {
  readonly config: ResolvedEarlyStopping;
  private s: EarlyStoppingState;

  constructor(config: EarlyStoppingConfig, state: EarlyStoppingState = INITIAL_STATE) {
    this.config = resolveEarlyStopping(config);
    this.s = { ...state };
  }

  get state(): EarlyStoppingState {
    return { ...this.s };
  }

  get stopped(): boolean {
    return this.s.stoppedEpoch >= 0;
  }

  /** Accuracies must rise and losses fall by more than minDelta. */
  private improves(value: number, reference: number | null): boolean {
    if (Number.isNaN(value)) return false;
    const { monitor, minDelta } = this.config;
    const rising = monitor.endsWith('accuracy');
    if (reference === null) return true;
    return rising ? value - minDelta > reference : value + minDelta < reference;
  }

  /** Keras 3's on_epoch_end, step for step. `epoch` is 0-based and counts resumed epochs. */
  onEpochEnd(epoch: number, logs: Record<Monitor, number>): EarlyStoppingDecision {
    const value = logs[this.config.monitor];
    const restore = this.config.restoreBestWeights;
    let keepWeights = false;
    // Keras keeps the first epoch's weights even if its figure is NaN, so there is always a best.
    if (restore && this.s.bestEpoch < 0) {
      keepWeights = true;
      this.s.bestEpoch = epoch;
    }
    this.s.wait += 1;
    if (this.improves(value, this.s.best)) {
      this.s.best = value;
      this.s.bestEpoch = epoch;
      this.s.wait = 0;
      return { keepWeights: restore, stop: false };
    }
    if (this.s.wait >= this.config.patience && epoch > 0) {
      this.s.stoppedEpoch = epoch;
      return { keepWeights, stop: true };
    }
    return { keepWeights, stop: false };
  }
}
