/**
 * Weight quantisation as TF.js's weights manifest describes it (tensorflowjs_converter
 * --quantize_float16 / --quantize_uint8), so that tf.loadLayersModel dequantises on load.
 */
import { float16Bits } from '../util/float16.js';

/** The `quantization` entry of a manifest weight. */
export type ManifestQuantization = { dtype: 'float16' } | { dtype: 'uint8'; min: number; scale: number };

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
