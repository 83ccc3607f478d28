/**
 * A head's grid pooling (AveragePooling2D / MaxPooling2D with padding 'valid') over channels-last
 * features, in plain JS, forward and backward: for the places the backbone's graph does not pool
 * on the head's behalf (features given unpooled to a trainer, Grad-CAM's gradient at the cut).
 */
import { GraftError } from '../util/errors.js';
import type { GridPoolSpec } from './head-spec.js';

/** The pooled map's [rows, columns, channels] for features [h, w, c], as Keras computes it ('valid'). */
export function gridShape(pool: GridPoolSpec, featureShape: readonly number[]): [number, number, number] {
  if (featureShape.length !== 3) throw new GraftError(`${pool.kind} needs features [h, w, c], found [${featureShape.join(', ')}]`);
  const [h, w, c] = featureShape as [number, number, number];
  const gh = Math.floor((h - pool.pool) / pool.stride) + 1;
  const gw = Math.floor((w - pool.pool) / pool.stride) + 1;
  if (h < pool.pool || w < pool.pool) throw new GraftError(`${pool.kind}:${pool.pool}:${pool.stride} needs features at least ${pool.pool}x${pool.pool}, found ${h}x${w} (use a smaller pool or a larger input size)`);
  return [gh, gw, c];
}

/** Pools `n` samples of features [h, w, c] into `out` (n x gh x gw x c). */
export function gridPoolForward(pool: GridPoolSpec, featureShape: readonly number[], features: Float32Array, n: number, out: Float32Array): void {
  const [gh, gw, c] = gridShape(pool, featureShape);
  const [h, w] = featureShape as [number, number, number];
  const size = h * w * c, pooled = gh * gw * c, max = pool.kind === 'maxpool', area = pool.pool * pool.pool;
  for (let b = 0; b < n; b++) {
    const img = features.subarray(b * size, (b + 1) * size);
    for (let gy = 0; gy < gh; gy++) {
      for (let gx = 0; gx < gw; gx++) {
        const o = b * pooled + (gy * gw + gx) * c;
        const cell = out.subarray(o, o + c);
        cell.fill(max ? -Infinity : 0);
        for (let y = gy * pool.stride; y < gy * pool.stride + pool.pool; y++) {
          for (let x = gx * pool.stride; x < gx * pool.stride + pool.pool; x++) {
            const p = (y * w + x) * c;
            if (max) for (let k = 0; k < c; k++) cell[k] = Math.max(cell[k]!, img[p + k]!);
            else for (let k = 0; k < c; k++) cell[k]! += img[p + k]!;
          }
        }
        if (!max) for (let k = 0; k < c; k++) cell[k]! /= area;
      }
    }
  }
}

/**
 * The gradient at the features from the gradient at the pooled map (`gradOut`, n x gh x gw x c),
 * into `into` (n x h x w x c, overwritten): averaging spreads each cell's gradient evenly over its
 * window (overlapping windows add up); the maximum sends it to the first position holding it.
 */
export function gridPoolBackward(pool: GridPoolSpec, featureShape: readonly number[], features: Float32Array, gradOut: Float32Array, n: number, into: Float32Array): void {
  const [gh, gw, c] = gridShape(pool, featureShape);
  const [h, w] = featureShape as [number, number, number];
  const size = h * w * c, pooled = gh * gw * c, max = pool.kind === 'maxpool', area = pool.pool * pool.pool;
  into.fill(0, 0, n * size);
  const best = new Float32Array(c), at = new Int32Array(c);
  for (let b = 0; b < n; b++) {
    const img = features.subarray(b * size, (b + 1) * size);
    const g = into.subarray(b * size, (b + 1) * size);
    for (let gy = 0; gy < gh; gy++) {
      for (let gx = 0; gx < gw; gx++) {
        const o = b * pooled + (gy * gw + gx) * c;
        if (max) {
          best.fill(-Infinity);
          for (let y = gy * pool.stride; y < gy * pool.stride + pool.pool; y++) {
            for (let x = gx * pool.stride; x < gx * pool.stride + pool.pool; x++) {
              const p = (y * w + x) * c;
              for (let k = 0; k < c; k++) if (img[p + k]! > best[k]!) { best[k] = img[p + k]!; at[k] = p + k; }
            }
          }
          for (let k = 0; k < c; k++) g[at[k]!]! += gradOut[o + k]!;
        } else {
          for (let y = gy * pool.stride; y < gy * pool.stride + pool.pool; y++) {
            for (let x = gx * pool.stride; x < gx * pool.stride + pool.pool; x++) {
              const p = (y * w + x) * c;
              for (let k = 0; k < c; k++) g[p + k]! += gradOut[o + k]! / area;
            }
          }
        }
      }
    }
  }
}
