/**
 * Keras-style progress within an epoch: a redrawn bar on a terminal, nothing on a pipe (where
 * only the per-epoch line is printed, so logs stay readable).
 */
export class Progbar {
  private readonly start = performance.now();
  private lastDraw = 0;

  constructor(private readonly total: number, private readonly stream: NodeJS.WriteStream = process.stderr) {}

  get enabled(): boolean {
    return this.stream.isTTY === true;
  }

  update(done: number, values: Record<string, number>): void {
    if (!this.enabled) return;
    const now = performance.now();
    if (done < this.total && now - this.lastDraw < 100) return;
    this.lastDraw = now;
    const width = 30, filled = Math.round((width * done) / Math.max(1, this.total));
    const bar = '='.repeat(Math.max(0, filled - 1)) + (done < this.total ? '>' : '=') + '.'.repeat(width - filled);
    const elapsed = (now - this.start) / 1000;
    const eta = done > 0 ? (elapsed / done) * (this.total - done) : 0;
    const metrics = Object.entries(values).map(([k, v]) => ` - ${k}: ${v.toFixed(4)}`).join('');
    const digits = String(this.total).length;
    this.stream.write(`\r${String(done).padStart(digits)}/${this.total} [${bar}] - ETA: ${Math.round(eta)}s${metrics}\x1b[K`);
  }

  clear(): void {
    if (this.enabled) this.stream.write('\r\x1b[K');
  }
}
