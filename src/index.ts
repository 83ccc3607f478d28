/** graft's library API: everything the CLI does is available from here. */
export { GraftError } from './util/errors.js';
export { Random } from './util/random.js';
export type { KerasGraph, KerasLayer, WeightMap, WeightTensor } from './backbone/keras-graph.js';
export { LAB_HEAD } from './model/head-spec.js';
export type { HeadSpec, HeadLayerSpec, Activation } from './model/head-spec.js';
export { loadTfjsLayersModel } from './backbone/weights/tfjs-layers.js';
export type { LoadedWeights } from './backbone/weights/tfjs-layers.js';
export { cutGraph } from './backbone/cut.js';
export { kerasToOnnx } from './backbone/onnx/convert.js';
export type { KerasToOnnxOptions } from './backbone/onnx/convert.js';
export { createOrtExtractor, DEFAULT_BATCH } from './backbone/engine.js';
export type { FeatureExtractor, OrtExtractorOptions } from './backbone/engine.js';
export { loadBackbone, resolveWeights, checkInputSize, DEFAULT_CUT, DEFAULT_INPUT_SIZE } from './backbone/backbone.js';
export type { Backbone, BackboneOptions } from './backbone/backbone.js';
export { summarizeModel, countParams } from './model/summary.js';
export type { ParamCounts, TrainableFrom } from './model/summary.js';
export { parseHeadSpec, withClasses } from './model/head-spec-parse.js';
