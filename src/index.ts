/** graft's library API: everything the CLI does is available from here. */
export { GraftError } from './util/errors.js';
export { Random } from './util/random.js';
export type { KerasGraph, KerasLayer, WeightMap, WeightTensor } from './backbone/keras-graph.js';
export { LAB_HEAD } from './model/head-spec.js';
export type { HeadSpec, HeadLayerSpec, Activation } from './model/head-spec.js';
export { headForClasses, initHead, headToWeightMap, headFromWeightMap, headInputSize } from './model/head.js';
export type { HeadParams, DenseParams } from './model/head.js';
export { resolveOptimizer, applyUpdate, slotCount } from './train/optimizers.js';
export type { OptimizerConfig, ResolvedOptimizer, OptimizerState } from './train/optimizers.js';
export { binaryCrossentropy, categoricalCrossentropy, binaryAccuracy, categoricalAccuracy } from './train/losses.js';
export { HeadTrainer } from './train/head-trainer.js';
export type { HeadTrainerOptions, StepResult } from './train/head-trainer.js';
export { fit, arrayBatchSource, trainerFingerprint } from './train/fit.js';
export type { Batch, BatchSource, ArrayData, FitOptions, FitCallbacks, EpochLogs } from './train/fit.js';
export { saveCheckpoint, loadCheckpoint, configFingerprint } from './train/checkpoint.js';
export type { Checkpoint } from './train/checkpoint.js';
export { emptyHistory } from './train/history.js';
export type { History } from './train/history.js';
