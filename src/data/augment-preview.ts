/**
 * A picture of what augmentation does: the original image, then n augmented versions drawn from
 * one seed, in a grid with small white gaps, as a PNG.
 */
import sharp from 'sharp';
import { GraftError } from '../util/errors.js';
import { Random } from '../util/random.js';
import { applyTransform, randomTransform, validateAugmentConfig, type AugmentConfig } from './augment.js';

export interface AugmentPreviewOptions {
  /** Images per row (default: about a square grid). */
  columns?: number;
  /** Pixels between tiles (default 4). */
  gap?: number;
}

export async function augmentPreview(
  image: Uint8Array,
  h: number,
  w: number,
  cfg: AugmentConfig,
  n: number,
  seed: number,
  opts: AugmentPreviewOptions = {},
): Promise<Buffer> {
  validateAugmentConfig(cfg);
  if (!Number.isInteger(n) || n < 0) throw new GraftError(`augment preview: n must be a whole number >= 0, found ${n}`);
  if (image.length < h * w * 3) throw new GraftError(`augment preview: image holds ${image.length} bytes, expected ${h}x${w}x3`);
  const tiles = n + 1;
  const cols = Math.max(1, Math.min(tiles, opts.columns ?? Math.ceil(Math.sqrt(tiles))));
  const rows = Math.ceil(tiles / cols);
  const gap = opts.gap ?? 4;
  const W = cols * w + (cols + 1) * gap;
  const H = rows * h + (rows + 1) * gap;
  const canvas = new Uint8Array(W * H * 3).fill(255);
  const tile = new Float32Array(h * w * 3);
  const rng = new Random(seed);
  for (let t = 0; t < tiles; t++) {
    if (t === 0) for (let i = 0; i < tile.length; i++) tile[i] = image[i]!;
    else applyTransform(image, h, w, randomTransform(cfg, rng, h, w), cfg, tile, 0, { scale: 1, offset: 0 });
    const x0 = gap + (t % cols) * (w + gap);
    const y0 = gap + Math.floor(t / cols) * (h + gap);
    for (let r = 0; r < h; r++) {
      let d = ((y0 + r) * W + x0) * 3;
      let s = r * w * 3;
      for (let i = 0; i < w * 3; i++) {
        const v = Math.round(tile[s++]!);
        canvas[d++] = v < 0 ? 0 : v > 255 ? 255 : v;
      }
    }
  }
  return sharp(canvas, { raw: { width: W, height: H, channels: 3 } }).png().toBuffer();
}
