import cliProgress from 'cli-progress';

/** How a progress line starts on a pipe with GRAFT_PROGRESS=json. */
export const PROGRESS_PREFIX = 'graft-progress ';

/**
 * A progress bar on a terminal (cli-progress), nothing on a pipe, where only the per-epoch or
 * summary lines are printed so logs stay readable. Keras-style by default:
 * ` 37/100 [==========>...................] - ETA: 9s - loss: 0.1234 - accuracy: 0.9500`.
 */
export class Progbar {
  private bar: cliProgress.SingleBar | null = null;
  private lastReport = 0;

  constructor(
    private readonly total: number,
    private readonly label = '',
    private readonly stream: NodeJS.WriteStream = process.stderr,
  ) {}

  get enabled(): boolean {
    return this.stream.isTTY === true;
  }

  /** Moves the bar to `done`, with metrics shown after it. */
  update(done: number, values: Record<string, number> = {}): void {
    if (!this.enabled) {
      this.report(done, values);
      return;
    }
    const metrics = Object.entries(values).map(([k, v]) => ` - ${k}: ${v.toFixed(4)}`).join('');
    if (!this.bar) {
      const digits = String(this.total).length;
      this.bar = new cliProgress.SingleBar(
        {
          format: `${this.label}{done}/{total} [{bar}] - ETA: {eta}s{metrics}`,
          barCompleteChar: '=',
          barIncompleteChar: '.',
          barsize: 30,
          stream: this.stream,
          hideCursor: true,
          clearOnComplete: true,
          fps: 10,
        },
        cliProgress.Presets.legacy,
      );
      this.bar.start(this.total, 0, { done: '0'.padStart(digits), metrics: '' });
    }
    this.bar.update(done, { done: String(done).padStart(String(this.total).length), metrics });
  }

  /**
   * On a pipe with GRAFT_PROGRESS=json (graft ui's training processes), one line per quarter
   * second: `graft-progress {"label","done","total",...metrics}`, for a page to show.
   */
  private report(done: number, values: Record<string, number>): void {
    if (process.env.GRAFT_PROGRESS !== 'json') return;
    const now = Date.now();
    if (done < this.total && now - this.lastReport < 250) return;
    this.lastReport = now;
    this.stream.write(`${PROGRESS_PREFIX}${JSON.stringify({ label: this.label.trim(), done, total: this.total, ...values })}\n`);
  }

  /** Removes the bar, leaving the line free for what follows. */
  clear(): void {
    this.bar?.stop();
    this.bar = null;
  }
}
