/**
 * One budget for what a run holds in memory per image (decoded pixels, features): each set takes
 * its share if it fits in what is left, else it stays on disk. With one total rather than one per
 * set, a run's memory is bounded by the setting whatever the number of images.
 */
export class MemoryBudget {
  private used = 0;

  constructor(readonly total: number) {}

  /** Bytes not yet taken. */
  get left(): number {
    return Math.max(0, this.total - this.used);
  }

  /** Takes `bytes` when they fit in what is left (true), else takes nothing (false). */
  take(bytes: number): boolean {
    if (bytes > this.left) return false;
    this.used += bytes;
    return true;
  }
}
