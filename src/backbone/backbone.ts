/**
 * The frozen backbone: weights loaded, cut at a layer, converted to ONNX and running in a feature
 * extractor, ready for `extract`.
 */
import { gridShape } from '../model/grid-pool.js';
import type { GridPoolSpec } from '../model/head-spec.js';
import { GraftError } from '../util/errors.js';
import { inceptionV3Graph } from './architectures/inception-v3.js';
import { cutGraph } from './cut.js';
import { createOrtExtractor, type FeatureExtractor } from './engine.js';
import type { KerasGraph, WeightMap } from './keras-graph.js';
import { inferShapes } from './layer-shapes.js';
import { kerasToOnnx } from './onnx/convert.js';
import { validateWeights } from './validate-weights.js';
import { resolveWeights } from './weights/resolve.js';
import { setting } from '../util/option-names.js';

export interface BackboneOptions {
  /** A TF.js layers-model folder (or its model.json); default: the shared InceptionV3 (fp32). */
  weights?: string;
  /** The layer whose output are the features (default "mixed7"). */
  cut?: string;
  /** Input [height, width] (default [150, 150]; at least 75 for InceptionV3). */
  inputSize?: [number, number];
  /** Threads of the feature extractor (default: the number of cores). */
  threads?: number;
  /** Images per engine call (default DEFAULT_BATCH). */
  batchSize?: number;
  /** Busy-wait between ops (default false; see OrtExtractorOptions.spin). */
  spin?: boolean;
  /**
   * Pool the cut layer's output inside the backbone's graph (avg: GlobalAveragePooling2D, max:
   * GlobalMaxPooling2D), as a head starting with that pooling would: extraction then returns the
   * channels alone (768 floats an image at mixed7 rather than 7x7x768), whatever is cached is as
   * small, and the head starts after its pooling. Default: none (the cut layer's whole output).
   */
  pool?: FeaturePooling;
}

/**
 * A pooling the backbone can run at its end on behalf of the head: global (avg, max) or a head's
 * grid pooling (AveragePooling2D / MaxPooling2D, padding 'valid').
 */
export type FeaturePooling = 'avg' | 'max' | GridPoolSpec;

/** A pooling's name in notes and fingerprints: avg, max, avgpool:7:5. */
export function poolingName(pooling: FeaturePooling): string {
  return typeof pooling === 'string' ? pooling : `${pooling.kind}:${pooling.pool}:${pooling.stride}`;
}

export interface Backbone {
  /** The cut graph (input .. cut layer). */
  graph: KerasGraph;
  weights: WeightMap;
  inputShape: [number, number, number];
  /** Shape of the cut layer's output, e.g. [7, 7, 768] for mixed7 at 150x150 (what the head is built on). */
  outputShape: number[];
  /** The pooling run inside the graph (BackboneOptions.pool), or null. */
  pooling: FeaturePooling | null;
  /** Shape of what `extractor` returns for one image: outputShape, or [channels] when pooled. */
  featureShape: number[];
  /** The file the weights came from. */
  source: string;
  extractor: FeatureExtractor;
  /** The float ONNX graph the extractor was built from (what int8 quantisation starts from). */
  onnx: Uint8Array;
  /** What the extractor computes in: fp32 as loaded; int8 after quantizeBackbone (src/backbone/int8.ts). */
  precision: 'fp32' | 'int8';
  /** The int8 extractor's calibrated activation ranges (by ONNX tensor name). */
  int8Ranges?: Record<string, [number, number]>;
  dispose(): Promise<void>;
}

export const DEFAULT_CUT = 'mixed7';
export const DEFAULT_INPUT_SIZE: [number, number] = [150, 150];
/** InceptionV3's smallest input: its stem reduces 75x75 to 3x3 before mixed0's 3x3 pools. */
const MIN_INPUT_SIZE = 75;

/** Throws a GraftError unless [h, w] is a usable input size for the InceptionV3 backbone. */
export function checkInputSize([h, w]: [number, number]): void {
  if (!Number.isInteger(h) || !Number.isInteger(w) || h < MIN_INPUT_SIZE || w < MIN_INPUT_SIZE) {
    throw new GraftError(`input size ${h}x${w} is too small: InceptionV3 needs at least ${MIN_INPUT_SIZE}x${MIN_INPUT_SIZE}`);
  }
}

/** Loads, cuts, validates and converts the backbone, and starts its feature extractor. */
export async function loadBackbone(opts: BackboneOptions = {}): Promise<Backbone> {
  const [h, w] = opts.inputSize ?? DEFAULT_INPUT_SIZE;
  checkInputSize([h, w]);
  const cut = opts.cut ?? DEFAULT_CUT;
  const loaded = await resolveWeights(opts.weights ?? 'imagenet', { cut });
  if (!loaded.graph.layers.some((l) => l.name === cut)) {
    // A layer of InceptionV3 these weights stop before (the shared copy ends at mixed7); other
    // missing cuts are cutGraph's to name.
    const inceptionLayers = new Set(inceptionV3Graph().layers.map((l) => l.name));
    if (inceptionLayers.has(cut) && loaded.graph.layers.every((l) => inceptionLayers.has(l.name))) {
      throw new GraftError(
        `the weights ${loaded.source} stop at ${loaded.graph.outputs.join(', ')}, before "${cut}": for a later cut use the full Keras ImageNet weights (graft weights --download, or ${setting('weights', 'FILE.h5')})`,
      );
    }
  }
  const graph = cutGraph(loaded.graph, cut);
  const inputShape: [number, number, number] = [h, w, 3];
  validateWeights(graph, loaded.weights, inputShape, loaded.source);
  const outputShape = inferShapes(graph, inputShape).output.get(cut)!;
  // A fixed H x W lets onnxruntime plan memory once (the batch dimension stays free).
  const pooling = opts.pool ?? null;
  if (pooling && outputShape.length !== 3) throw new GraftError(`pooling needs the cut layer's output as [h, w, channels]; ${cut} gives [${outputShape.join(', ')}]`);
  const featureShape = !pooling ? outputShape : typeof pooling === 'string' ? [outputShape.at(-1)!] : gridShape(pooling, outputShape);
  const onnxBytes = kerasToOnnx(pooling ? withGlobalPooling(graph, pooling) : graph, loaded.weights, { inputSize: [h, w] });
  const extractor = await createOrtExtractor(onnxBytes, inputShape, featureShape, { threads: opts.threads, batchSize: opts.batchSize, spin: opts.spin });
  const backbone: Backbone = {
    graph,
    weights: loaded.weights,
    inputShape,
    outputShape,
    pooling,
    featureShape,
    source: loaded.source,
    extractor,
    onnx: onnxBytes,
    precision: 'fp32',
    // The extractor in use now (int8 quantisation swaps it).
    dispose: () => backbone.extractor.dispose(),
  };
  return backbone;
}

/**
 * `graph` with a global pooling layer after its output: the pooling a head starts with, run in the
 * backbone's graph so that features leave it 768 floats an image rather than 7x7x768.
 */
export function withGlobalPooling(graph: KerasGraph, pooling: FeaturePooling): KerasGraph {
  const grid = typeof pooling === 'object' && (pooling.kind === 'avgpool' || pooling.kind === 'maxpool') ? pooling : null;
  if (!grid && pooling !== 'avg' && pooling !== 'max') throw new GraftError(`unknown backbone pooling "${String(pooling)}": use avg or max`);
  const className = grid ? (grid.kind === 'avgpool' ? 'AveragePooling2D' : 'MaxPooling2D') : pooling === 'avg' ? 'GlobalAveragePooling2D' : 'GlobalMaxPooling2D';
  const taken = new Set(graph.layers.map((l) => l.name));
  let name = 'graft_feature_pool';
  for (let i = 1; taken.has(name); i++) name = `graft_feature_pool_${i}`;
  const window = grid ? { pool_size: [grid.pool, grid.pool], strides: [grid.stride, grid.stride], padding: 'valid' } : {};
  const pool = { name, className, config: { name, data_format: 'channels_last', ...window }, inbound: [graph.outputs[0]!] };
  return { ...graph, layers: [...graph.layers, pool], outputs: [name] };
}
