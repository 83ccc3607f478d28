/**
 * Seeds for per-epoch random streams derived from (seed, epoch, stream) alone, so that epoch e
 * draws the same shuffle and dropout masks whether or not training was resumed before it.
 */
export const STREAM_SHUFFLE = 1;
export const STREAM_DROPOUT = 2;

export function deriveSeed(seed: number, epoch: number, stream: number): number {
  let h = Math.imul(seed >>> 0, 0x9e3779b1) ^ Math.imul(epoch + 1, 0x85ebca6b) ^ Math.imul(stream + 1, 0xc2b2ae35);
  h = Math.imul(h ^ (h >>> 16), 0x7feb352d);
  h = Math.imul(h ^ (h >>> 15), 0x846ca68b);
  return (h ^ (h >>> 16)) >>> 0;
}
