/**
 * PIL's convolution resize (Resample.c) for 8-bit RGB, so that Keras' `interpolation='bilinear'`
 * and `'box'` give the same bytes here as in the lab: per output pixel a window of source pixels
 * around centre (x + 0.5) * scale, support widened by the downscale factor, weights normalised
 * and turned into 22-bit fixed point, a horizontal pass rounded to uint8, then a vertical pass.
 */
import type { RgbImage } from './bitmap-formats.js';

export type PilFilter = 'bilinear' | 'box' | 'bicubic' | 'hamming' | 'lanczos';

const PRECISION_BITS = 32 - 8 - 2;

function sinc(x: number): number {
  if (x === 0) return 1;
  const t = x * Math.PI;
  return Math.sin(t) / t;
}

// The filters of Pillow's Resample.c (bicubic with a = -0.5, lanczos with a = 3).
const filters: Record<PilFilter, { support: number; fn: (x: number) => number }> = {
  box: { support: 0.5, fn: (x) => (x > -0.5 && x <= 0.5 ? 1 : 0) },
  hamming: {
    support: 1,
    fn: (x) => {
      const a = x < 0 ? -x : x;
      if (a === 0) return 1;
      if (a >= 1) return 0;
      const t = a * Math.PI;
      return (Math.sin(t) / t) * (0.54 + 0.46 * Math.cos(t));
    },
  },
  bicubic: {
    support: 2,
    fn: (x) => {
      const a = -0.5;
      const t = x < 0 ? -x : x;
      if (t < 1) return ((a + 2) * t - (a + 3)) * t * t + 1;
      if (t < 2) return (((t - 5) * t + 8) * t - 4) * a;
      return 0;
    },
  },
  lanczos: { support: 3, fn: (x) => (x >= -3 && x < 3 ? sinc(x) * sinc(x / 3) : 0) },
  bilinear: {
    support: 1,
    fn: (x) => {
      const a = x < 0 ? -x : x;
      return a < 1 ? 1 - a : 0;
    },
  },
};

interface Coeffs {
  ksize: number;
  /** Fixed-point weights, ksize per output pixel. */
  k: Int32Array;
  /** [first source pixel, count] per output pixel. */
  bounds: Int32Array;
}

function precomputeCoeffs(inSize: number, outSize: number, filter: PilFilter): Coeffs {
  const { support: baseSupport, fn } = filters[filter];
  const scale = inSize / outSize;
  const filterscale = scale < 1 ? 1 : scale;
  const support = baseSupport * filterscale;
  const ksize = Math.ceil(support) * 2 + 1;
  const k = new Int32Array(outSize * ksize);
  const bounds = new Int32Array(outSize * 2);
  const w = new Float64Array(ksize);
  const ss = 1 / filterscale;
  for (let xx = 0; xx < outSize; xx++) {
    const center = (xx + 0.5) * scale;
    const xmin = Math.max(0, Math.trunc(center - support + 0.5));
    const xmax = Math.min(inSize, Math.trunc(center + support + 0.5)) - xmin;
    let ww = 0;
    for (let x = 0; x < xmax; x++) {
      w[x] = fn((x + xmin - center + 0.5) * ss);
      ww += w[x]!;
    }
    for (let x = 0; x < xmax; x++) {
      const v = ww !== 0 ? w[x]! / ww : w[x]!;
      k[xx * ksize + x] = Math.trunc(v < 0 ? -0.5 + v * (1 << PRECISION_BITS) : 0.5 + v * (1 << PRECISION_BITS));
    }
    bounds[xx * 2] = xmin;
    bounds[xx * 2 + 1] = xmax;
  }
  return { ksize, k, bounds };
}

/**
 * Rows of the horizontal pass, reused from image to image: a fresh array per image costs more
 * than the pass itself (first touch of new memory).
 */
let midScratch = new Uint8Array(0);
/** One output row's sums in the vertical pass, reused likewise. */
let sums = new Int32Array(0);

/**
 * Resizes RGB HWC `src` to width x height into `out`, bit-exact with PIL's resize(filter).
 * PIL's sums are 32-bit integers; so are these (a pixel times a 22-bit weight fits). Stores go
 * through Uint8ClampedArray, whose clamping of an integer is PIL's clip8.
 */
export function resizePil(src: RgbImage, width: number, height: number, filter: PilFilter, out: Uint8Array): void {
  const half = 1 << (PRECISION_BITS - 1);
  // Horizontal pass (skipped when the width is unchanged, as PIL does).
  let mid = src.data;
  if (width !== src.width) {
    const { ksize, k, bounds } = precomputeCoeffs(src.width, width, filter);
    const bytes = src.height * width * 3;
    if (midScratch.length < bytes) midScratch = new Uint8Array(bytes);
    // Written through a clamping view, read (below) through the plain one: one array type at
    // each access keeps the engine's element loads monomorphic.
    const rows = new Uint8ClampedArray(midScratch.buffer, 0, bytes);
    const data = src.data;
    const rowBytes = src.width * 3;
    let o = 0;
    for (let y = 0; y < src.height; y++) {
      const row = y * rowBytes;
      for (let x = 0; x < width; x++) {
        const n = bounds[2 * x + 1]!;
        const kk = x * ksize;
        let p = row + bounds[2 * x]! * 3;
        let r = half, g = half, b = half;
        for (let i = 0; i < n; i++, p += 3) {
          const kv = k[kk + i]!;
          r = (r + data[p]! * kv) | 0;
          g = (g + data[p + 1]! * kv) | 0;
          b = (b + data[p + 2]! * kv) | 0;
        }
        rows[o] = r >> PRECISION_BITS;
        rows[o + 1] = g >> PRECISION_BITS;
        rows[o + 2] = b >> PRECISION_BITS;
        o += 3;
      }
    }
    mid = midScratch;
  }
  const stride = width * 3;
  if (height === src.height) {
    out.set(mid.subarray(0, stride * height));
    return;
  }
  const { ksize, k, bounds } = precomputeCoeffs(src.height, height, filter);
  const clamped = new Uint8ClampedArray(out.buffer, out.byteOffset, stride * height);
  if (sums.length < stride) sums = new Int32Array(stride);
  const acc = sums;
  for (let y = 0; y < height; y++) {
    const n = bounds[2 * y + 1]!;
    const kk = y * ksize;
    const b0 = bounds[2 * y]! * stride;
    const o = y * stride;
    // Up to 4 taps (bilinear shrinking by up to ~1.5x, the common case) as one sum a pixel, a
    // missing tap weighing 0 on a row that exists: 2x faster than sums taken row by row, the way
    // any other count goes.
    if (n <= 4) {
      const k0 = k[kk]!, k1 = n > 1 ? k[kk + 1]! : 0, k2 = n > 2 ? k[kk + 2]! : 0, k3 = n > 3 ? k[kk + 3]! : 0;
      const b1 = n > 1 ? b0 + stride : b0, b2 = n > 2 ? b0 + 2 * stride : b0, b3 = n > 3 ? b0 + 3 * stride : b0;
      for (let x = 0; x < stride; x++) {
        clamped[o + x] = (half + mid[b0 + x]! * k0 + mid[b1 + x]! * k1 + mid[b2 + x]! * k2 + mid[b3 + x]! * k3) >> PRECISION_BITS;
      }
      continue;
    }
    acc.fill(half, 0, stride);
    for (let i = 0; i < n; i++) {
      const kv = k[kk + i]!;
      const base = b0 + i * stride;
      for (let x = 0; x < stride; x++) acc[x] = (acc[x]! + mid[base + x]! * kv) | 0;
    }
    for (let x = 0; x < stride; x++) clamped[o + x] = acc[x]! >> PRECISION_BITS;
  }
}
