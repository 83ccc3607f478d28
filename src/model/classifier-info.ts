import type { ClassMode } from '../data/batches.js';
import type { Interpolation, Orientation } from '../data/decode.js';
import type { PreprocessName } from '../data/preprocess.js';
import type { HeadSpec } from './head-spec.js';

/**
 * What a saved classifier needs besides its weights to be used on new pictures: stored in the
 * TF.js model.json (userDefinedMetadata.graft) and in model.onnx (metadata_props "graft").
 */
export interface ClassifierInfo {
  format: 'graft-classifier';
  version: 1;
  /** Class names in label order. */
  classes: string[];
  classMode: ClassMode;
  /** [height, width] the images are resized to. */
  inputSize: [number, number];
  preprocess: PreprocessName;
  interpolation: Interpolation;
  /** 'exif' when trained on photos turned upright by their EXIF tag; absent: the tag is ignored (Keras's way). */
  orientation?: Orientation;
  /** The backbone layer the head sits on. */
  cut: string;
  head: HeadSpec;
  /** Where the backbone weights came from, by file name (see weightsSourceName). */
  backbone: string;
  trainingMode: string;
  /**
   * 'int8' when the backbone ran as onnxruntime's static QDQ int8 quantisation (--backbone-precision
   * int8): model.onnx holds that graph, and int8Calibration the activation ranges that rebuild it
   * from the float weights. The TF.js model keeps float32 weights (TF.js has no int8 kernels).
   * Absent: fp32.
   */
  backbonePrecision?: 'int8';
  int8Calibration?: Record<string, [number, number]>;
}

/**
 * The name under which a classifier's metadata records its backbone weights: the file name (and
 * for a TF.js model.json its folder), never the whole local path, since the metadata ships with
 * the model, to browsers too.
 */
export function weightsSourceName(source: string): string {
  const parts = source.split(/[\\/]/).filter(Boolean);
  const last = parts.at(-1) ?? source;
  return last === 'model.json' && parts.length > 1 ? `${parts.at(-2)}/${last}` : last;
}
