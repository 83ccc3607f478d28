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
