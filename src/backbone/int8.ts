/**
 * The int8 backbone: a loaded (fp32) backbone turned into onnxruntime's static QDQ quantisation,
 * calibrated on the run's own training images. See docs/int8.md.
 */
import { GraftError } from '../util/errors.js';
import type { Backbone } from './backbone.js';
import { calibrateRanges, type CalibrateOptions, type CalibrationSource } from './calibrate.js';
import { createOrtExtractor } from './engine.js';
import { quantizeQdq, type Ranges } from './onnx/quantize-qdq.js';

/** What the backbone computes in: 'fp32' (the default) or 'int8' (QDQ, calibrated). */
export type BackbonePrecision = 'fp32' | 'int8';
export const BACKBONE_PRECISIONS: readonly BackbonePrecision[] = ['fp32', 'int8'];
export const DEFAULT_BACKBONE_PRECISION: BackbonePrecision = 'fp32';

/** Throws a GraftError naming the choices unless `p` is a backbone precision. */
export function checkBackbonePrecision(p: string): BackbonePrecision {
  if (!(BACKBONE_PRECISIONS as readonly string[]).includes(p)) throw new GraftError(`unknown backbone precision "${p}": use ${BACKBONE_PRECISIONS.join(' or ')}`);
  return p as BackbonePrecision;
}

export interface QuantizeBackboneOptions extends CalibrateOptions {
  threads?: number;
  batchSize?: number;
}

/**
 * Calibrates `backbone` on `source` and swaps its extractor for the int8 one (the fp32 session is
 * released); returns the calibrated ranges, which the saved model records so that its ONNX form
 * can be quantised again the same way.
 */
export async function quantizeBackbone(backbone: Backbone, source: CalibrationSource, opts: QuantizeBackboneOptions = {}): Promise<Ranges> {
  const ranges = await calibrateRanges(backbone.onnx, backbone.inputShape, source, opts);
  const int8 = await createOrtExtractor(quantizeQdq(backbone.onnx, ranges), backbone.inputShape, backbone.featureShape, {
    threads: opts.threads,
    batchSize: opts.batchSize,
    label: 'the int8 backbone',
  });
  await backbone.extractor.dispose();
  backbone.extractor = int8;
  backbone.precision = 'int8';
  backbone.int8Ranges = ranges;
  return ranges;
}
