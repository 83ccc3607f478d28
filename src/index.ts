/** graft's library API: everything the CLI does is available from here. */
export { GraftError } from './util/errors.js';
export { Random } from './util/random.js';
export type { KerasGraph, KerasLayer, WeightMap, WeightTensor } from './backbone/keras-graph.js';
export { LAB_HEAD } from './model/head-spec.js';
export type { HeadSpec, HeadLayerSpec, Activation } from './model/head-spec.js';
export { inceptionV3Graph } from './backbone/architectures/inception-v3.js';
export type { InceptionV3Options } from './backbone/architectures/inception-v3.js';
export { kerasLayerOrder } from './backbone/keras-layer-order.js';
export { loadKerasH5Weights, readKerasH5Layers, readKerasH5Topology } from './backbone/weights/keras-h5.js';
export type { KerasH5Options } from './backbone/weights/keras-h5.js';
export { saveKerasH5Weights } from './backbone/weights/keras-h5-writer.js';
export {
  ensureImagenetWeights,
  cachedImagenetWeightsPath,
  hasCachedImagenetWeights,
  IMAGENET_WEIGHTS_FILE,
  IMAGENET_WEIGHTS_URL,
  IMAGENET_WEIGHTS_MD5,
} from './backbone/weights/imagenet.js';
export type { ImagenetWeightsOptions } from './backbone/weights/imagenet.js';
export { resolveWeights, planWeights, DEFAULT_WEIGHTS } from './backbone/weights/resolve.js';
export type { WeightsPlan, LoadedModel, ResolveWeightsOptions } from './backbone/weights/resolve.js';
export { downloadFile, DownloadNetworkError } from './util/download.js';
export type { DownloadOptions, DownloadProgress } from './util/download.js';
