/**
 * Random image augmentation faithful to Keras's `ImageDataGenerator` (keras-preprocessing 1.1.x,
 * the scipy-based one the classic lab ran on): the same parameters, drawn in the same order, the
 * same transform matrix, resampled like `scipy.ndimage.affine_transform(order=1)`.
 *
 * Conventions (derived from keras-preprocessing's `get_random_transform`, `apply_affine_transform`,
 * `transform_matrix_offset_center` and scipy's `ni_interpolation.c`):
 * - Coordinates are (row, col). `tx` is the ROW shift (drawn from heightShiftRange * h), `ty` the
 *   COLUMN shift (widthShiftRange * w); `zx` scales rows, `zy` columns.
 * - The matrix rotation · shift · shear · zoom, centred with o = (h/2 - 0.5, w/2 - 0.5), maps OUTPUT
 *   coordinates to INPUT coordinates (scipy's "pull" resampling). Hence: input = M·out + offset;
 *   positive theta turns the image CLOCKWISE as displayed (rows down); tx > 0 moves the content UP
 *   (out[r] = in[r + tx]); zx = zy = 2 is a 2x zoom OUT (the content shrinks).
 * - Flips come after the affine transform.
 * - Later Keras (2.6+, keras/preprocessing/image.py) swaps the matrix axes (M' = PMP), which turns
 *   rotation counter-clockwise and makes tx a column shift; we follow keras-preprocessing 1.1.x.
 * - Borders, as scipy >= 1.6 does them for order 1 (each axis on its own):
 *   'nearest': tap indices clamped; 'reflect': half-sample symmetric (d c b a | a b c d | d c b a);
 *   'wrap': scipy's own 'wrap' (not 'grid-wrap'): the coordinate is wrapped with period n - 1
 *   into [0, n-1], so first and last samples overlap; 'constant': any coordinate outside
 *   [0, n-1] gives cval, with no blending against cval (that is scipy's 'grid-constant').
 */
import { GraftError } from '../util/errors.js';
import type { Random } from '../util/random.js';

export type FillMode = 'nearest' | 'constant' | 'reflect' | 'wrap';

/**
 * A shift range as Keras takes it: a number < 1 is a fraction of the size, >= 1 pixels (both
 * uniform in (-r, r)); an array is a set of pixel values, one picked at random with a random sign
 * (Keras's 1-D array form; Keras's int n is the array [0, 1, ..., n-1]).
 */
export type ShiftRange = number | readonly number[];

export interface AugmentConfig {
  /** Degrees; theta ~ U(-r, r). */
  rotationRange: number;
  widthShiftRange: ShiftRange;
  heightShiftRange: ShiftRange;
  /** Shear angle in DEGREES; shear ~ U(-r, r). */
  shearRange: number;
  /** z -> [1 - z, 1 + z], or [lo, hi]; zx and zy are drawn independently. */
  zoomRange: number | readonly [number, number];
  horizontalFlip: boolean;
  verticalFlip: boolean;
  fillMode: FillMode;
  /** The fill value for 'constant', in 0-255 units (augmentation runs before rescaling). */
  cval: number;
}

/** What one image gets: Keras's transform parameters (angles in degrees, shifts in pixels). */
export interface TransformParams {
  theta: number;
  tx: number;
  ty: number;
  shear: number;
  zx: number;
  zy: number;
  flipHorizontal: boolean;
  flipVertical: boolean;
}

/** The fused affine preprocessing applied to each 0-255 value: v * scale + offset. */
export interface PixelAffine {
  scale: number;
  offset: number;
}

export const NO_AUGMENTATION: Readonly<AugmentConfig> = Object.freeze({
  rotationRange: 0,
  widthShiftRange: 0,
  heightShiftRange: 0,
  shearRange: 0,
  zoomRange: 0,
  horizontalFlip: false,
  verticalFlip: false,
  fillMode: 'nearest',
  cval: 0,
});

/** The lab's `ImageDataGenerator(rotation_range=40, width_shift_range=0.2, ..., fill_mode='nearest')`. */
export const LAB_AUGMENTATION: Readonly<AugmentConfig> = Object.freeze({
  rotationRange: 40,
  widthShiftRange: 0.2,
  heightShiftRange: 0.2,
  shearRange: 0.2,
  zoomRange: 0.2,
  horizontalFlip: true,
  verticalFlip: false,
  fillMode: 'nearest',
  cval: 0,
});

export const IDENTITY_TRANSFORM: Readonly<TransformParams> = Object.freeze({
  theta: 0,
  tx: 0,
  ty: 0,
  shear: 0,
  zx: 1,
  zy: 1,
  flipHorizontal: false,
  flipVertical: false,
});

const FILL_MODES: readonly FillMode[] = ['nearest', 'constant', 'reflect', 'wrap'];

/** Keras's snake_case `ImageDataGenerator` options (the augmentation subset). */
export interface KerasAugmentOptions {
  rotation_range?: number;
  width_shift_range?: ShiftRange;
  height_shift_range?: ShiftRange;
  shear_range?: number;
  zoom_range?: number | readonly [number, number];
  horizontal_flip?: boolean;
  vertical_flip?: boolean;
  fill_mode?: string;
  cval?: number;
}

/** Converts Keras's option names (and defaults) into an AugmentConfig, checking values. */
export function fromKerasOptions(opts: KerasAugmentOptions): AugmentConfig {
  return validateAugmentConfig({
    rotationRange: opts.rotation_range ?? 0,
    widthShiftRange: opts.width_shift_range ?? 0,
    heightShiftRange: opts.height_shift_range ?? 0,
    shearRange: opts.shear_range ?? 0,
    zoomRange: opts.zoom_range ?? 0,
    horizontalFlip: opts.horizontal_flip ?? false,
    verticalFlip: opts.vertical_flip ?? false,
    fillMode: (opts.fill_mode ?? 'nearest') as FillMode,
    cval: opts.cval ?? 0,
  });
}

/** Throws GraftError on values Keras would reject (or that make no sense); returns cfg. */
export function validateAugmentConfig(cfg: AugmentConfig): AugmentConfig {
  const bad = (what: string) => {
    throw new GraftError(`augmentation: ${what}`);
  };
  const finite = (v: number, name: string) => {
    if (!Number.isFinite(v)) bad(`${name} must be a finite number, found ${v}`);
  };
  finite(cfg.rotationRange, 'rotation_range');
  finite(cfg.shearRange, 'shear_range');
  finite(cfg.cval, 'cval');
  for (const [name, r] of [['width_shift_range', cfg.widthShiftRange], ['height_shift_range', cfg.heightShiftRange]] as const) {
    if (typeof r === 'number') finite(r, name);
    else if (!Array.isArray(r) || r.length === 0 || !r.every(Number.isFinite)) bad(`${name} must be a number or a non-empty list of numbers`);
  }
  const z = cfg.zoomRange;
  if (typeof z === 'number') finite(z, 'zoom_range');
  else if (!Array.isArray(z) || z.length !== 2 || !z.every(Number.isFinite)) bad(`zoom_range must be a number or [lower, upper], found ${JSON.stringify(z)}`);
  if (!FILL_MODES.includes(cfg.fillMode)) bad(`fill_mode must be one of ${FILL_MODES.join(', ')}, found '${cfg.fillMode}'`);
  return cfg;
}

/** Keras: a float z gives [1 - z, 1 + z]; a pair is taken as is. */
export function zoomBounds(zoomRange: number | readonly [number, number]): [number, number] {
  return typeof zoomRange === 'number' ? [1 - zoomRange, 1 + zoomRange] : [zoomRange[0], zoomRange[1]];
}

function drawShift(range: ShiftRange, size: number, rng: Random): number {
  let t: number;
  let max: number;
  if (typeof range === 'number') {
    t = rng.uniform(-range, range);
    max = range;
  } else {
    t = range[rng.int(range.length)]! * (rng.next() < 0.5 ? -1 : 1);
    max = Math.max(...range);
  }
  return max < 1 ? t * size : t;
}

function isZeroRange(range: ShiftRange): boolean {
  return typeof range === 'number' ? range === 0 : false;
}

/**
 * Draws one image's parameters in Keras's order: theta, tx, ty, shear, (zx, zy), flip_horizontal,
 * flip_vertical. As in Keras, a zero range draws nothing and the two flip coins are always tossed,
 * so the stream does not shift when only the flip options change.
 */
export function randomTransform(cfg: AugmentConfig, rng: Random, h: number, w: number): TransformParams {
  const theta = cfg.rotationRange ? rng.uniform(-cfg.rotationRange, cfg.rotationRange) : 0;
  const tx = isZeroRange(cfg.heightShiftRange) ? 0 : drawShift(cfg.heightShiftRange, h, rng);
  const ty = isZeroRange(cfg.widthShiftRange) ? 0 : drawShift(cfg.widthShiftRange, w, rng);
  const shear = cfg.shearRange ? rng.uniform(-cfg.shearRange, cfg.shearRange) : 0;
  const [lo, hi] = zoomBounds(cfg.zoomRange);
  let zx = 1;
  let zy = 1;
  if (!(lo === 1 && hi === 1)) {
    zx = rng.uniform(lo, hi);
    zy = rng.uniform(lo, hi);
  }
  const flipHorizontal = rng.next() < 0.5 && cfg.horizontalFlip;
  const flipVertical = rng.next() < 0.5 && cfg.verticalFlip;
  return { theta, tx, ty, shear, zx, zy, flipHorizontal, flipVertical };
}

/** True when Keras would skip the affine step entirely (its transform_matrix stays None). */
export function isAffineIdentity(p: TransformParams): boolean {
  return p.theta === 0 && p.tx === 0 && p.ty === 0 && p.shear === 0 && p.zx === 1 && p.zy === 1;
}

type Mat3 = [number, number, number, number, number, number, number, number, number];

function mul(a: Mat3, b: Mat3): Mat3 {
  const r = new Array<number>(9) as Mat3;
  for (let i = 0; i < 3; i++) {
    for (let j = 0; j < 3; j++) {
      r[i * 3 + j] = a[i * 3]! * b[j]! + a[i * 3 + 1]! * b[3 + j]! + a[i * 3 + 2]! * b[6 + j]!;
    }
  }
  return r;
}

/**
 * The final 2x3 pull matrix [a00, a01, off0, a10, a11, off1]: input (row, col) =
 * (a00*r + a01*c + off0, a10*r + a11*c + off1) for output (r, c), as Keras hands it to scipy.
 */
export function affineMatrix(p: TransformParams, h: number, w: number): Float64Array {
  let m: Mat3 | null = null;
  const compose = (t: Mat3) => {
    m = m === null ? t : mul(m, t);
  };
  if (p.theta !== 0) {
    const t = (p.theta * Math.PI) / 180;
    compose([Math.cos(t), -Math.sin(t), 0, Math.sin(t), Math.cos(t), 0, 0, 0, 1]);
  }
  if (p.tx !== 0 || p.ty !== 0) compose([1, 0, p.tx, 0, 1, p.ty, 0, 0, 1]);
  if (p.shear !== 0) {
    const s = (p.shear * Math.PI) / 180;
    compose([1, -Math.sin(s), 0, 0, Math.cos(s), 0, 0, 0, 1]);
  }
  if (p.zx !== 1 || p.zy !== 1) compose([p.zx, 0, 0, 0, p.zy, 0, 0, 0, 1]);
  let f: Mat3 = m ?? [1, 0, 0, 0, 1, 0, 0, 0, 1];
  const ox = h / 2 - 0.5;
  const oy = w / 2 - 0.5;
  f = mul(mul([1, 0, ox, 0, 1, oy, 0, 0, 1], f), [1, 0, -ox, 0, 1, -oy, 0, 0, 1]);
  return Float64Array.of(f[0], f[1], f[2], f[3], f[4], f[5]);
}

const MODE_CODE: Record<FillMode, number> = { nearest: 0, constant: 1, reflect: 2, wrap: 3 };

/** scipy's half-sample symmetric index (period 2n). */
function reflectIndex(i: number, n: number): number {
  const p = 2 * n;
  let k = i % p;
  if (k < 0) k += p;
  return k >= n ? p - 1 - k : k;
}

/** scipy's 'wrap' coordinate map: period n - 1, into [0, n - 1]. */
function wrapCoord(v: number, n: number): number {
  if (n <= 1) return 0;
  const sz = n - 1;
  if (v < 0) return v + sz * (Math.trunc(-v / sz) + 1);
  if (v > sz) return v - sz * Math.trunc(v / sz);
  return v;
}

/**
 * Writes the transformed image (h*w*3 floats, HWC) into out at outOffset: each value is the
 * resampled 0-255 value * pre.scale + pre.offset. src is h*w*3 uint8 RGB, HWC.
 */
export function applyTransform(
  src: Uint8Array,
  h: number,
  w: number,
  params: TransformParams,
  cfg: { fillMode: FillMode; cval: number },
  out: Float32Array,
  outOffset: number,
  pre: PixelAffine,
): void {
  const n = h * w * 3;
  if (src.length < n) throw new GraftError(`augmentation: image holds ${src.length} bytes, expected ${h}x${w}x3 = ${n}`);
  if (outOffset < 0 || outOffset + n > out.length) throw new GraftError(`augmentation: output has no room for ${n} values at ${outOffset}`);
  const scale = pre.scale;
  const bias = pre.offset;
  const flipH = params.flipHorizontal;
  const flipV = params.flipVertical;
  const rowLen = w * 3;

  if (isAffineIdentity(params)) {
    // Keras skips scipy here: a plain (possibly flipped) conversion.
    for (let r = 0; r < h; r++) {
      const srow = r * rowLen;
      const drow = outOffset + (flipV ? h - 1 - r : r) * rowLen;
      if (!flipH) {
        for (let i = 0; i < rowLen; i++) out[drow + i] = src[srow + i]! * scale + bias;
      } else {
        for (let c = 0; c < w; c++) {
          const s = srow + c * 3;
          const d = drow + (w - 1 - c) * 3;
          out[d] = src[s]! * scale + bias;
          out[d + 1] = src[s + 1]! * scale + bias;
          out[d + 2] = src[s + 2]! * scale + bias;
        }
      }
    }
    return;
  }

  const m = affineMatrix(params, h, w);
  const a00 = m[0]!, a01 = m[1]!, o0 = m[2]!, a10 = m[3]!, a11 = m[4]!, o1 = m[5]!;
  const mode = MODE_CODE[cfg.fillMode];
  const cvalOut = cfg.cval * scale + bias;
  const hm1 = h - 1;
  const wm1 = w - 1;
  const dStep = flipH ? -3 : 3;

  for (let r = 0; r < h; r++) {
    // Same floating-point order as scipy: (shift + r*m0) + c*m1.
    const base0 = o0 + r * a00;
    const base1 = o1 + r * a10;
    let d = outOffset + (flipV ? hm1 - r : r) * rowLen + (flipH ? wm1 * 3 : 0);
    for (let c = 0; c < w; c++, d += dStep) {
      const y = base0 + c * a01;
      const x = base1 + c * a11;
      if (y >= 0 && y < hm1 && x >= 0 && x < wm1) {
        // Interior: all four taps inside.
        const y0 = y | 0;
        const x0 = x | 0;
        const fy = y - y0;
        const fx = x - x0;
        const w00 = (1 - fy) * (1 - fx);
        const w01 = (1 - fy) * fx;
        const w10 = fy * (1 - fx);
        const w11 = fy * fx;
        const p = y0 * rowLen + x0 * 3;
        const q = p + rowLen;
        out[d] = (src[p]! * w00 + src[p + 3]! * w01 + src[q]! * w10 + src[q + 3]! * w11) * scale + bias;
        out[d + 1] = (src[p + 1]! * w00 + src[p + 4]! * w01 + src[q + 1]! * w10 + src[q + 4]! * w11) * scale + bias;
        out[d + 2] = (src[p + 2]! * w00 + src[p + 5]! * w01 + src[q + 2]! * w10 + src[q + 5]! * w11) * scale + bias;
        continue;
      }
      // Border: map the taps (or the coordinate) the way scipy does for this mode.
      let yy = y;
      let xx = x;
      if (mode === 1) {
        if (y < 0 || y > hm1 || x < 0 || x > wm1) {
          out[d] = cvalOut;
          out[d + 1] = cvalOut;
          out[d + 2] = cvalOut;
          continue;
        }
      } else if (mode === 3) {
        yy = wrapCoord(y, h);
        xx = wrapCoord(x, w);
      }
      const fy0 = Math.floor(yy);
      const fx0 = Math.floor(xx);
      const fy = yy - fy0;
      const fx = xx - fx0;
      let ya: number, yb: number, xa: number, xb: number;
      if (mode === 2) {
        ya = reflectIndex(fy0, h);
        yb = reflectIndex(fy0 + 1, h);
        xa = reflectIndex(fx0, w);
        xb = reflectIndex(fx0 + 1, w);
      } else {
        // nearest clamps every tap; constant and wrap only reach here with coordinates in
        // [0, n-1], where the one tap past the end has weight 0 (clamping it is harmless).
        ya = fy0 < 0 ? 0 : fy0 > hm1 ? hm1 : fy0;
        yb = fy0 + 1 < 0 ? 0 : fy0 + 1 > hm1 ? hm1 : fy0 + 1;
        xa = fx0 < 0 ? 0 : fx0 > wm1 ? wm1 : fx0;
        xb = fx0 + 1 < 0 ? 0 : fx0 + 1 > wm1 ? wm1 : fx0 + 1;
      }
      const w00 = (1 - fy) * (1 - fx);
      const w01 = (1 - fy) * fx;
      const w10 = fy * (1 - fx);
      const w11 = fy * fx;
      const p00 = ya * rowLen + xa * 3;
      const p01 = ya * rowLen + xb * 3;
      const p10 = yb * rowLen + xa * 3;
      const p11 = yb * rowLen + xb * 3;
      out[d] = (src[p00]! * w00 + src[p01]! * w01 + src[p10]! * w10 + src[p11]! * w11) * scale + bias;
      out[d + 1] = (src[p00 + 1]! * w00 + src[p01 + 1]! * w01 + src[p10 + 1]! * w10 + src[p11 + 1]! * w11) * scale + bias;
      out[d + 2] = (src[p00 + 2]! * w00 + src[p01 + 2]! * w01 + src[p10 + 2]! * w10 + src[p11 + 2]! * w11) * scale + bias;
    }
  }
}
