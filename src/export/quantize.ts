/**
 * Weight quantisation as TF.js's weights manifest describes it (tensorflowjs_converter
 * --quantize_float16 / --quantize_uint8), so that tf.loadLayersModel dequantises on load.
 */

/** The `quantization` entry of a manifest weight. */
export type ManifestQuantization = { dtype: 'float16' } | { dtype: 'uint8'; min: number; scale: number };

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** IEEE 754 half-precision bits of `value`, rounded to nearest even (Node 20 has no Float16Array). */
export function float16Bits(value: number): number {
  f32[0] = value;
  const x = u32[0]!;
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  let mant = x & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant !== 0 ? 0x200 : 0); // Inf / NaN
  let e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00; // overflow -> Inf
  if (e <= 0) {
    // Subnormal half (or zero): shift the implicit 1 in, then round to nearest even.
    if (e < -10) return sign;
    mant |= 0x800000;
    const shift = 14 - e;
    const half = 1 << (shift - 1);
    const rest = mant & ((1 << shift) - 1);
    let h = mant >>> shift;
    if (rest > half || (rest === half && (h & 1) === 1)) h += 1;
    return sign | h;
  }
  let h = (e << 10) | (mant >>> 13);
  const rest = mant & 0x1fff;
  if (rest > 0x1000 || (rest === 0x1000 && (h & 1) === 1)) h += 1; // may carry into the exponent: still correct
  return sign | h;
}

export function toFloat16(data: Float32Array): Uint16Array {
  const out = new Uint16Array(data.length);
  for (let i = 0; i < data.length; i++) out[i] = float16Bits(data[i]!);
  return out;
}

/**
 * Per-tensor affine uint8 (value ~= q * scale + min) with the range widened to hold 0 and the zero
 * point nudged onto an integer, as tensorflowjs does, so that exact zeros stay exact.
 */
export function toUint8(data: Float32Array): { values: Uint8Array; min: number; scale: number } {
  let lo = 0;
  let hi = 0;
  for (let i = 0; i < data.length; i++) {
    const v = data[i]!;
    if (v < lo) lo = v;
    if (v > hi) hi = v;
  }
  let scale = (hi - lo) / 255;
  let min = lo;
  if (scale === 0 || !Number.isFinite(scale)) {
    scale = 1;
    min = 0;
  } else {
    const zeroPoint = Math.round(Math.min(255, Math.max(0, -lo / scale)));
    min = -zeroPoint * scale;
  }
  const max = min + 255 * scale;
  const values = new Uint8Array(data.length);
  for (let i = 0; i < data.length; i++) {
    const v = Math.min(max, Math.max(min, data[i]!));
    values[i] = Math.round((v - min) / scale);
  }
  return { values, min, scale };
}
