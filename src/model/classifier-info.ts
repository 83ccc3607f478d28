import type { ClassMode } from '../data/batches.js';
import type { Interpolation } from '../data/decode.js';
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
  /** The backbone layer the head sits on. */
  cut: string;
  head: HeadSpec;
  /** Where the backbone weights came from. */
  backbone: string;
  trainingMode: string;
}
