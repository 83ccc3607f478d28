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

function clip8(v: number): number {
  const s = v >> PRECISION_BITS;
  return s < 0 ? 0 : s > 255 ? 255 : s;
}

/** Resizes RGB HWC `src` to width x height into `out`, bit-exact with PIL's resize(filter). */
export function resizePil(src: RgbImage, width: number, height: number, filter: PilFilter, out: Uint8Array): void {
  const half = 1 << (PRECISION_BITS - 1);
  // Horizontal pass (skipped when the width is unchanged, as PIL does).
  let mid = src.data;
  if (width !== src.width) {
    const c = precomputeCoeffs(src.width, width, filter);
    mid = new Uint8Array(src.height * width * 3);
    for (let y = 0; y < src.height; y++) {
      const row = y * src.width * 3;
      for (let x = 0; x < width; x++) {
        const xmin = c.bounds[x * 2]!;
        const n = c.bounds[x * 2 + 1]!;
        let r = half, g = half, b = half;
        for (let i = 0; i < n; i++) {
          const kv = c.k[x * c.ksize + i]!;
          const p = row + (xmin + i) * 3;
          r += src.data[p]! * kv;
          g += src.data[p + 1]! * kv;
          b += src.data[p + 2]! * kv;
        }
        const o = (y * width + x) * 3;
        mid[o] = clip8(r);
        mid[o + 1] = clip8(g);
        mid[o + 2] = clip8(b);
      }
    }
  }
  if (height === src.height) {
    out.set(mid.subarray(0, width * height * 3));
    return;
  }
  const c = precomputeCoeffs(src.height, height, filter);
  const stride = width * 3;
  for (let y = 0; y < height; y++) {
    const ymin = c.bounds[y * 2]!;
    const n = c.bounds[y * 2 + 1]!;
    for (let x = 0; x < stride; x++) {
      let s = half;
      for (let i = 0; i < n; i++) s += mid[(ymin + i) * stride + x]! * c.k[y * c.ksize + i]!;
      out[y * stride + x] = clip8(s);
    }
  }
}
