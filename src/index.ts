/** graft's library API: everything the CLI does is available from here. */
export { GraftError } from './util/errors.js';
export { Random } from './util/random.js';
export type { KerasGraph, KerasLayer, WeightMap, WeightTensor } from './backbone/keras-graph.js';
export { LAB_HEAD } from './model/head-spec.js';
export type { HeadSpec, HeadLayerSpec, Activation } from './model/head-spec.js';
export { writeTfjsLayersModel, kerasModelTopology } from './export/tfjs-layers.js';
export type { TfjsExportOptions } from './export/tfjs-layers.js';
export { readHistory, writeHistory } from './export/history-io.js';
export { computeMetrics, rocAuc } from './evaluate/metrics.js';
export type { EvaluationMetrics, ClassMetrics, Misclassified, Probabilities } from './evaluate/metrics.js';
export { writeEvaluation, formatEvaluation, evaluationJson } from './evaluate/report.js';
export type { EvaluationContext } from './evaluate/report.js';
export { plotHistory } from './evaluate/plots.js';
export {
  LAB_AUGMENTATION,
  NO_AUGMENTATION,
  IDENTITY_TRANSFORM,
  applyTransform,
  randomTransform,
  affineMatrix,
  isAffineIdentity,
  fromKerasOptions,
  validateAugmentConfig,
  zoomBounds,
} from './data/augment.js';
export type { AugmentConfig, TransformParams, FillMode, ShiftRange, PixelAffine, KerasAugmentOptions } from './data/augment.js';
export { AugmentPool, sharedFloat32, sharedImageStore } from './data/augment-pool.js';
export type { ImageStore, AugmentBatchOptions } from './data/augment-pool.js';
export { augmentPreview } from './data/augment-preview.js';
export type { AugmentPreviewOptions } from './data/augment-preview.js';
export { preprocessParams, isPreprocessName, PREPROCESS_NAMES } from './data/preprocess.js';
export type { PreprocessName, PreprocessParams } from './data/preprocess.js';
