/** graft's library API: everything the CLI does is available from here. */
export { GraftError } from './util/errors.js';
export { Random } from './util/random.js';
export type { KerasGraph, KerasLayer, WeightMap, WeightTensor } from './backbone/keras-graph.js';
export { LAB_HEAD } from './model/head-spec.js';
export type { HeadSpec, HeadLayerSpec, Activation } from './model/head-spec.js';
