/**
 * Cached fine-tuning's features: each image runs once through the frozen backbone below the
 * fine-tuned layer; its features there are kept (through the feature store: memory budget, spill
 * to disk, reuse) for the second phase, and the head phase's features at the cut are derived from
 * them by the frozen layers above (pooled in the graph for a pooling or grid head), not by a second pass
 * over the images.
 */
import type { Backbone } from '../../backbone/backbone.js';
import { cutGraph } from '../../backbone/cut.js';
import { createOrtExtractor, type FeatureExtractor } from '../../backbone/engine.js';
import { kerasToOnnx } from '../../backbone/onnx/convert.js';
import type { ImageStore } from '../../data/image-store.js';
import { cachedRows, derivedRows, type FeatureStorage, type FeedContext } from '../feature-sources.js';
import type { RowsData } from '../fit.js';
import { frozenSegmentForward } from './segment-onnx.js';
import type { Segment } from './segment.js';

/** The frozen backbone below the segment (its own network, forward only); the images themselves when the segment starts at the input. */
export async function belowExtractor(backbone: Backbone, segment: Segment): Promise<FeatureExtractor> {
  const [h, w] = backbone.inputShape;
  if (segment.from === backbone.graph.inputs[0]) return identityExtractor(backbone.inputShape);
  const below = cutGraph(backbone.graph, segment.from);
  return createOrtExtractor(kerasToOnnx(below, backbone.weights, { inputSize: [h, w] }), backbone.inputShape, segment.inputShape, { label: `the backbone up to ${segment.from}` });
}

/** Fine-tuning from the input layer: the images themselves are the segment's input. */
function identityExtractor(shape: [number, number, number]): FeatureExtractor {
  return {
    inputShape: shape,
    outputShape: [...shape],
    extract: async (input, n) => input.slice(0, n * shape[0] * shape[1] * shape[2]),
    dispose: async () => {},
  };
}

export interface LayerFeatures {
  /** Features at the segment's input (`from`), for the second phase. */
  atLayer: { train: RowsData; val: RowsData };
  /** The head phase's features at the cut (pooled as the backbone pools), derived from them. */
  atCut: { train: RowsData; val: RowsData };
  /** Every set, for the caller to close. */
  all: RowsData[];
}

export interface LayerFeaturesInput {
  backbone: Backbone;
  segment: Segment;
  /** The feed context less its extractor (which this brings). */
  context: (store: ImageStore) => FeedContext;
  trainStore: ImageStore;
  valStore: ImageStore;
  /** The run's feature storage (at the cut): features at `from` get their own files and fingerprint. */
  storage: FeatureStorage;
  withProgress: <T>(label: string, during: string, run: (onProgress: (done: number, total: number) => void) => Promise<T>) => Promise<T>;
  say: (line: string) => void;
}

/** The run's feature storage for features taken at `layer` (unpooled) instead of at the cut: their own fingerprint. */
export function storageAtLayer(storage: FeatureStorage, layer: string): FeatureStorage {
  return { ...storage, fingerprint: async (store) => ({ ...(await storage.fingerprint(store)), cut: layer, pooling: 'none' }) };
}

/** Features at `from` (once per image) and at the cut (derived), validation and training. */
export async function layerFeatures(p: LayerFeaturesInput): Promise<LayerFeatures> {
  const { segment, backbone } = p;
  const from = segment.from;
  const all: RowsData[] = [];
  try {
    const atLayerStorage = storageAtLayer(p.storage, from);
    const below = await belowExtractor(backbone, segment);
    const atLayer = {} as LayerFeatures['atLayer'];
    try {
      for (const [which, store] of [['validation', p.valStore], ['training', p.trainStore]] as const) {
        const t0 = performance.now();
        const rows = await p.withProgress('Features ', `computing ${which} features at ${from}`, (onProgress) => cachedRows({ ...p.context(store), extractor: below }, `${which}-${from}`, atLayerStorage, onProgress));
        all.push(rows);
        atLayer[which === 'training' ? 'train' : 'val'] = rows;
        p.say(`${which === 'training' ? 'Training' : 'Validation'} features of ${rows.count} images at ${from} computed once (${((performance.now() - t0) / 1000).toFixed(1)}s)`);
      }
    } finally {
      await below.dispose();
    }
    const above = await createOrtExtractor(frozenSegmentForward(segment, backbone.weights, backbone.pooling), segment.inputShape as [number, number, number], backbone.featureShape, { label: `the backbone from ${from} to ${segment.to}` });
    const atCut = {} as LayerFeatures['atCut'];
    try {
      for (const [which, key] of [['validation', 'val'], ['training', 'train']] as const) {
        const t0 = performance.now();
        const rows = await p.withProgress('Features ', `deriving ${which} features at ${segment.to} from ${from}`, (onProgress) =>
          derivedRows({ ...p.context(which === 'training' ? p.trainStore : p.valStore), extractor: above }, which, atLayer[key], { feed: 'cached', via: from }, p.storage, onProgress),
        );
        all.push(rows);
        atCut[key] = rows;
        p.say(`${which === 'training' ? 'Training' : 'Validation'} features at ${segment.to} derived from those at ${from} (${((performance.now() - t0) / 1000).toFixed(1)}s)`);
      }
    } finally {
      await above.dispose();
    }
    return { atLayer, atCut, all };
  } catch (err) {
    for (const rows of all) await rows.rows.close();
    throw err;
  }
}
