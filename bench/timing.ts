/** The fastest of `times` runs of `fn`, in milliseconds (the least disturbed by the rest of the machine). */
export async function bestMs(times: number, fn: () => Promise<unknown>): Promise<number> {
  let min = Infinity;
  for (let i = 0; i < times; i++) {
    const t0 = performance.now();
    await fn();
    min = Math.min(min, performance.now() - t0);
  }
  return min;
}
