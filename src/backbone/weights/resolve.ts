/**
 * What a `--weights` value means, and loading it. The one place where weight sources are told apart:
 *
 *   'imagenet' (the default) -> the ImageNet InceptionV3, from the first of:
 *       1. GRAFT_WEIGHTS_DIR, when set (a TF.js folder, or a Keras .h5 file);
 *       2. the Keras .h5 in the download cache (cacheDir()), when a previous run downloaded it;
 *       3. the shared TF.js folder (sharedInceptionWeightsDir()), when it exists;
 *       4. a download of the Keras .h5 into the cache (ensureImagenetWeights).
 *     Local sources come first so that nothing touches the network when a copy is at hand.
 *   a path ending .h5 / .hdf5 -> a Keras HDF5 file: a full saved model (model.save) with its own
 *     topology, or weights only (Keras 2 save_weights, the Keras ImageNet files, or a Keras 3
 *     .weights.h5) for inceptionV3Graph();
 *   a path ending .keras -> a Keras 3 archive (model.save('x.keras')): its topology and weights;
 *   a folder holding model.json, or a model.json file -> a TF.js layers model (topology + weights);
 *   anything else -> GraftError.
 */
import { existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { GraftError } from '../../util/errors.js';
import { sharedInceptionWeightsDir } from '../../util/paths.js';
import { inceptionV3Graph } from '../architectures/inception-v3.js';
import type { KerasGraph, WeightMap } from '../keras-graph.js';
import { cachedImagenetWeightsPath, ensureImagenetWeights, type ImagenetWeightsOptions } from './imagenet.js';
import { loadKerasArchive } from './keras-archive.js';
import { loadKerasH5Weights, readKerasH5Layers, readKerasH5Topology } from './keras-h5.js';
import { loadTfjsLayersModel } from './tfjs-layers.js';

export const DEFAULT_WEIGHTS = 'imagenet';

/** Where weights will come from, decided without reading them. */
export type WeightsPlan =
  | { kind: 'tfjs'; path: string }
  | { kind: 'h5'; path: string }
  | { kind: 'keras'; path: string }
  /** The ImageNet .h5 must be downloaded (to `path`). */
  | { kind: 'download'; path: string };

export interface LoadedModel {
  graph: KerasGraph;
  weights: WeightMap;
  /** The file the weights came from (for messages). */
  source: string;
}

export interface ResolveWeightsOptions {
  /**
   * For Keras .h5 files: load only InceptionV3 up to this layer (e.g. "mixed7"), so that a file
   * holding a cut network (a Keras lab model saved with its head) is accepted too.
   */
  cut?: string;
  /** Download settings when the ImageNet .h5 has to be fetched (progress, mirror, cache folder). */
  download?: ImagenetWeightsOptions;
}

function isDir(path: string): boolean {
  try {
    return statSync(path).isDirectory();
  } catch {
    return false;
  }
}

/** The plan for a path given by the user (or GRAFT_WEIGHTS_DIR). */
function planPath(path: string): WeightsPlan {
  if (/\.(h5|hdf5)$/i.test(path)) return { kind: 'h5', path };
  if (/\.json$/i.test(path)) return { kind: 'tfjs', path };
  if (/\.keras$/i.test(path)) return { kind: 'keras', path };
  if (isDir(path)) {
    if (existsSync(join(path, 'model.json'))) return { kind: 'tfjs', path };
    throw new GraftError(`${path}: no model.json in this folder (expected a TF.js layers model, or pass a Keras .h5 file)`, { file: path });
  }
  if (!existsSync(path)) {
    throw new GraftError(`${path}: no such weights file or folder (expected "imagenet", a Keras .h5 or .keras file or a TF.js model folder)`, { file: path });
  }
  throw new GraftError(`${path}: unsupported weights format (expected a Keras .h5/.hdf5 or .keras file or a TF.js model folder with model.json)`, { file: path });
}

/** Decides what `spec` (a --weights value; default "imagenet") means, in the order documented above. */
export function planWeights(spec: string = DEFAULT_WEIGHTS, opts: { cacheDir?: string } = {}): WeightsPlan {
  if (spec !== DEFAULT_WEIGHTS) return planPath(spec);
  const env = process.env.GRAFT_WEIGHTS_DIR;
  if (env) {
    try {
      return planPath(env);
    } catch (err) {
      if (err instanceof GraftError) throw new GraftError(`GRAFT_WEIGHTS_DIR: ${err.message}`, { file: env });
      throw err;
    }
  }
  const cached = cachedImagenetWeightsPath(opts.cacheDir);
  if (existsSync(cached)) return { kind: 'h5', path: cached };
  const shared = sharedInceptionWeightsDir('fp32');
  if (existsSync(join(shared, 'model.json'))) return { kind: 'tfjs', path: shared };
  return { kind: 'download', path: cached };
}

/** `full` up to layer `cut` (its ancestors), and whether that is a prefix of the layer order. */
function upTo(full: KerasGraph, cut: string | undefined, file: string): { graph: KerasGraph; isPrefix: boolean } {
  if (cut === undefined) return { graph: full, isPrefix: true };
  const byName = new Map(full.layers.map((l) => [l.name, l]));
  if (!byName.has(cut)) {
    const blocks = full.layers.filter((l) => l.className === 'Concatenate' || l.className === 'Add').map((l) => l.name);
    throw new GraftError(`${file}: the model ${full.name} has no layer named "${cut}" (block outputs: ${blocks.join(', ')})`, { file });
  }
  const keep = new Set<string>();
  const stack = [cut];
  while (stack.length > 0) {
    const name = stack.pop()!;
    if (!keep.has(name)) {
      keep.add(name);
      stack.push(...byName.get(name)!.inbound);
    }
  }
  const layers = full.layers.filter((l) => keep.has(l.name));
  return {
    graph: { ...full, layers, inputs: full.inputs.filter((i) => keep.has(i)), outputs: [cut] },
    isPrefix: layers.every((l, i) => full.layers[i] === l),
  };
}

/**
 * A Keras .h5: a full saved model (model.save) brings its own topology, and its layers pair with it
 * by name; a weights-only file is InceptionV3's, paired by order like Keras load_weights. A block
 * output's ancestors are a prefix of Keras's layer order, so that pairing holds for a cut at
 * mixedN; a cut inside a block is no prefix, and there names pair the layers.
 */
async function loadH5(file: string, cut: string | undefined): Promise<LoadedModel> {
  const own = await readKerasH5Topology(file);
  const full = own ?? inceptionV3Graph();
  const { graph, isPrefix } = upTo(full, cut ?? (own ? undefined : await blockHeldBy(file)), file);
  const match = own !== undefined || !isPrefix ? 'name' : 'order';
  return { graph, weights: await loadKerasH5Weights(file, graph, { match, layerOrder: full }), source: file };
}

/**
 * For a weights-only file with fewer layers than the whole InceptionV3 (e.g. one saved from a
 * backbone cut at mixed7): the block output whose layers are exactly the file's weighted layers.
 */
async function blockHeldBy(file: string): Promise<string | undefined> {
  const held = (await readKerasH5Layers(file)).filter((l) => l.weights.length > 0).length;
  const full = inceptionV3Graph();
  let weighted = 0;
  for (const layer of full.layers) {
    if (layer.className === 'Conv2D' || layer.className === 'BatchNormalization') weighted++;
    if (/^mixed\d+$/.test(layer.name) && weighted === held) return layer.name;
  }
  return undefined;
}

/**
 * Loads the weights `spec` names (default "imagenet": see the order above) as a Keras graph and
 * its weights. Only the "imagenet" download touches the network, and only when no copy is local.
 */
export async function resolveWeights(spec: string = DEFAULT_WEIGHTS, opts: ResolveWeightsOptions = {}): Promise<LoadedModel> {
  const plan = planWeights(spec, { cacheDir: opts.download?.cacheDir });
  switch (plan.kind) {
    case 'tfjs':
      return loadTfjsLayersModel(plan.path);
    case 'h5':
      return loadH5(plan.path, opts.cut);
    case 'keras': {
      const { graph, weights } = await loadKerasArchive(plan.path, (full) => upTo(full, opts.cut, plan.path).graph);
      return { graph, weights, source: plan.path };
    }
    case 'download': {
      const file = await ensureImagenetWeights(opts.download);
      return loadH5(file, opts.cut);
    }
  }
}

