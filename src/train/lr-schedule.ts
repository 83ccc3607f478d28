/**
 * Learning-rate schedules, epoch by epoch: 'constant'; 'cosine' (the rate falls from the
 * optimiser's along half a cosine to minLr over the run's epochs, as Keras's CosineDecay does over
 * steps, here per epoch); 'plateau' (Keras 3's ReduceLROnPlateau: once `monitor` has not improved
 * by more than minDelta for `patience` epochs, the rate is multiplied by `factor`, not below
 * minLr, then `cooldown` epochs pass before counting again). Only the decisions live here: fit()
 * sets each epoch's rate, records it as history's `learning_rate` and keeps the state in the
 * checkpoint, so a resumed run follows the same rates.
 */
import { GraftError } from '../util/errors.js';
import { MONITORS, type Monitor } from './early-stopping.js';

export const LR_SCHEDULES = ['constant', 'cosine', 'plateau'] as const;

export type LrScheduleConfig =
  | { kind: 'constant' }
  | { kind: 'cosine'; minLr?: number }
  | { kind: 'plateau'; monitor?: Monitor; factor?: number; patience?: number; minDelta?: number; cooldown?: number; minLr?: number };

export type ResolvedLrSchedule =
  | { kind: 'constant' }
  | { kind: 'cosine'; minLr: number }
  | { kind: 'plateau'; monitor: Monitor; factor: number; patience: number; minDelta: number; cooldown: number; minLr: number };

/** Where a schedule stands (JSON-able, for checkpoints): the rate of the next epoch and plateau's counters. */
export interface LrScheduleState {
  learningRate: number;
  best: number | null;
  wait: number;
  cooldownCounter: number;
}

/** Keras's defaults (ReduceLROnPlateau: factor 0.1, patience 10, min_delta 1e-4, cooldown 0, min_lr 0). */
export function resolveLrSchedule(cfg: LrScheduleConfig): ResolvedLrSchedule {
  const num = (v: number | undefined, d: number, name: string, ok: (x: number) => boolean) => {
    const x = v ?? d;
    if (!(typeof x === 'number' && Number.isFinite(x) && ok(x))) throw new GraftError(`learning-rate schedule: ${name} out of range, got ${String(v)}`);
    return x;
  };
  switch (cfg?.kind) {
    case 'constant':
      return { kind: 'constant' };
    case 'cosine':
      return { kind: 'cosine', minLr: num(cfg.minLr, 0, 'minLr', (x) => x >= 0) };
    case 'plateau': {
      const monitor = cfg.monitor ?? 'val_loss';
      if (!MONITORS.includes(monitor)) throw new GraftError(`learning-rate schedule: cannot monitor '${String(monitor)}' (use one of ${MONITORS.join(', ')})`);
      return {
        kind: 'plateau',
        monitor,
        factor: num(cfg.factor, 0.1, 'factor', (x) => x > 0 && x < 1),
        patience: num(cfg.patience, 10, 'patience', (x) => Number.isInteger(x) && x >= 0),
        minDelta: num(cfg.minDelta, 1e-4, 'minDelta', (x) => x >= 0),
        cooldown: num(cfg.cooldown, 0, 'cooldown', (x) => Number.isInteger(x) && x >= 0),
        minLr: num(cfg.minLr, 0, 'minLr', (x) => x >= 0),
      };
    }
    default:
      throw new GraftError(`learning-rate schedule must be one of ${LR_SCHEDULES.join(', ')}, got ${JSON.stringify(cfg)}`);
  }
}

export class LrSchedule {
  readonly config: ResolvedLrSchedule;
  private s: LrScheduleState;

  constructor(config: LrScheduleConfig, readonly baseRate: number, readonly epochs: number, state?: LrScheduleState) {
    this.config = resolveLrSchedule(config);
    this.s = state ? { ...state } : { learningRate: baseRate, best: null, wait: 0, cooldownCounter: 0 };
  }

  get state(): LrScheduleState {
    return { ...this.s };
  }

  /** The rate to train epoch `epoch` (0-based) with. */
  rateFor(epoch: number): number {
    const c = this.config;
    if (c.kind === 'cosine') return c.minLr + (this.baseRate - c.minLr) * 0.5 * (1 + Math.cos((Math.PI * epoch) / this.epochs));
    return this.s.learningRate;
  }

  /** Keras 3's ReduceLROnPlateau.on_epoch_end, step for step (other schedules keep no state). Returns the new rate when it was reduced. */
  onEpochEnd(logs: Record<Monitor, number>): number | null {
    const c = this.config;
    if (c.kind !== 'plateau') return null;
    const current = logs[c.monitor];
    const rising = c.monitor.endsWith('accuracy');
    const inCooldown = this.s.cooldownCounter > 0;
    if (inCooldown) {
      this.s.cooldownCounter -= 1;
      this.s.wait = 0;
    }
    const best = this.s.best ?? (rising ? -Infinity : Infinity);
    const improved = rising ? current > best + c.minDelta : current < best - c.minDelta;
    if (improved) {
      this.s.best = current;
      this.s.wait = 0;
    } else if (!(this.s.cooldownCounter > 0)) {
      this.s.wait += 1;
      if (this.s.wait >= c.patience) {
        const old = this.s.learningRate;
        if (old > Math.fround(c.minLr)) {
          this.s.learningRate = Math.max(old * c.factor, c.minLr);
          this.s.cooldownCounter = c.cooldown;
          this.s.wait = 0;
          return this.s.learningRate;
        }
      }
    }
    return null;
  }
}
