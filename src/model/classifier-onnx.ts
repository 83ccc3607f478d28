/**
 * A classifier's ONNX graph in the precision its metadata records: the float graph as converted,
 * or for an int8 backbone its QDQ quantisation with the ranges calibrated in training.
 */
import { quantizeQdq } from '../backbone/onnx/quantize-qdq.js';
import { GraftError } from '../util/errors.js';
import type { ClassifierInfo } from './classifier-info.js';

export function classifierOnnx(floatOnnx: Uint8Array, info: ClassifierInfo): Uint8Array {
  if (info.backbonePrecision === undefined) return floatOnnx;
  if (info.backbonePrecision !== 'int8' || !info.int8Calibration) {
    throw new GraftError(`backbone precision "${String(info.backbonePrecision)}" in the model's graft metadata is not one this graft runs (or its calibration is missing)`);
  }
  return quantizeQdq(floatOnnx, info.int8Calibration);
}
