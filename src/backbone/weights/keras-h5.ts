import { open, stat } from 'node:fs/promises';
import type { Dataset, File as H5File, Group } from 'h5wasm/node';
import { h5wasmLoaded, loadH5wasm } from './h5wasm-module.js';
import { GraftError, describeFsError } from '../../util/errors.js';
import type { KerasGraph, WeightMap, WeightTensor } from '../keras-graph.js';
import { weightKey } from '../keras-graph.js';
import { inferShapes, layerWeightSpecs, type Shape, type WeightSpec } from '../layer-shapes.js';
import { parseKerasTopology } from '../topology.js';
import { validateWeights } from '../validate-weights.js';
import { hasKeras3Layers, keras3WeightedLayers, readKeras3Weights } from './keras3-h5.js';
import { hasNameList, readNameList, readText } from './h5-attributes.js';

/** How loadKerasH5Weights pairs the file's layers with the graph's. */
export interface KerasH5Options {
  /**
   * 'order' (default, as Keras `load_weights`): the file's layers that have weights, in file order,
   * pair with the graph's layers that have weights, in graph order. Unlike Keras, a file with MORE
   * layers than the graph is accepted and only its first layers are used: graft's graphs are often
   * a model cut at some layer (mixed7) while the file holds the whole network, and the cut is a
   * prefix of Keras's layer order. 'name': each graph layer takes the file layer of the same name.
   */
  match?: 'order' | 'name';
  /** [h, w, c] used to infer the weight shapes; default the graph input's size, else 299x299. */
  inputShape?: Shape;
  /**
   * Keras 3 files only: the whole model the file was saved from (default `graph`), whose layer
   * order numbers the file's layer groups when `graph` is a cut of it.
   */
  layerOrder?: KerasGraph;
}

interface FileLayer {
  name: string;
  /** Dataset paths relative to the layer's group, in the layer's weight order. */
  weightNames: string[];
  group: Group;
}

const HDF5_SIGNATURE = Buffer.from([0x89, 0x48, 0x44, 0x46, 0x0d, 0x0a, 0x1a, 0x0a]);

/** HDF5 files start with a signature at byte 0, 512, 1024, 2048 ... (after an optional user block). */
async function isHdf5(file: string, size: number): Promise<boolean> {
  const handle = await open(file, 'r');
  try {
    const buf = Buffer.alloc(8);
    for (let offset = 0; offset + 8 <= size; offset = offset === 0 ? 512 : offset * 2) {
      const { bytesRead } = await handle.read(buf, 0, 8, offset);
      if (bytesRead === 8 && buf.equals(HDF5_SIGNATURE)) return true;
    }
    return false;
  } finally {
    await handle.close();
  }
}

/** Keras 3's layout: a `layers` group, and none of Keras 2's `layer_names` (at the root or in model_weights). */
function isKeras3Layout(h5: Group): boolean {
  return !hasNameList(h5, 'layer_names') && h5.get('model_weights') === null && hasKeras3Layers(h5);
}

function shortWeightName(kerasName: string): string {
  const last = kerasName.split('/').pop() ?? kerasName;
  return last.replace(/:\d+$/, '');
}

function toFloat32(value: unknown): Float32Array | undefined {
  if (value instanceof Float32Array) return value;
  if (value instanceof Float64Array || value instanceof Int32Array || value instanceof Int16Array || value instanceof Int8Array || value instanceof Uint8Array) {
    return Float32Array.from(value);
  }
  return undefined;
}

function defaultInputShape(graph: KerasGraph): Shape {
  const input = graph.layers.find((l) => l.className === 'InputLayer');
  const batchShape = input?.config.batch_input_shape ?? input?.config.batch_shape; // Keras 2 / Keras 3 spelling
  if (Array.isArray(batchShape) && batchShape.length === 4 && batchShape.slice(1).every((d) => typeof d === 'number')) {
    return batchShape.slice(1) as number[];
  }
  const channels = Array.isArray(batchShape) && typeof batchShape[3] === 'number' ? batchShape[3] : 3;
  return [299, 299, channels];
}

/** Opens `file` read-only (with file-level checks first, so users get a clear line), runs `fn`, closes it. */
async function withH5<T>(file: string, fn: (h5: Group) => T): Promise<T> {
  let size: number;
  try {
    const st = await stat(file);
    if (st.isDirectory()) throw Object.assign(new Error('is a folder'), { code: 'EISDIR' });
    size = st.size;
  } catch (err) {
    throw describeFsError(err, file);
  }
  if (!(await isHdf5(file, size).catch((err: unknown) => { throw describeFsError(err, file); }))) {
    throw new GraftError(`${file}: not an HDF5 file (a Keras .h5 weights file was expected)`, { file });
  }
  const h5wasm = await loadH5wasm();
  let h5: H5File;
  try {
    h5 = new h5wasm.File(file, 'r');
  } catch (err) {
    throw new GraftError(`${file}: cannot open the HDF5 file, it may be damaged or truncated (${hdf5Reason(err)})`, { file, cause: err });
  }
  try {
    return fn(h5);
  } catch (err) {
    if (err instanceof GraftError) throw err;
    throw new GraftError(`${file}: cannot read the Keras weights, the file may be damaged (${hdf5Reason(err)})`, { file, cause: err });
  } finally {
    h5.close();
  }
}

/** The innermost reason of an HDF5 error stack (its last "in func(): reason" line), in one line. */
function hdf5Reason(err: unknown): string {
  const message = (err as Error | undefined)?.message ?? String(err);
  const reasons = [...message.matchAll(/ in ([\w]+\(\)): ([^\n]+)/g)].map((m) => `${m[1]}: ${m[2]!.trim()}`);
  return reasons.length > 0 ? reasons[reasons.length - 1]! : message.split('\n')[0]!;
}

/**
 * Reads the weights of a Keras HDF5 file for the layers of `graph`, checked against the shapes the
 * graph needs (GraftError naming file, layer, expected and found shape). Keras 2 files
 * (`model.save_weights('x.h5')`, a full `model.save('x.h5')`, or a published
 * `*_weights_tf_dim_ordering_tf_kernels*.h5`) and Keras 3 `.weights.h5` files (see keras3-h5.ts).
 *
 * Keras 2 layout: the root (or the `model_weights` group of a full model) has an attribute
 * `layer_names`; each layer is a group with an attribute `weight_names` ("conv2d_1/kernel:0", ...)
 * naming datasets inside that group, in the order the layer owns them.
 */
export async function loadKerasH5Weights(file: string, graph: KerasGraph, opts: KerasH5Options = {}): Promise<WeightMap> {
  return withH5(file, (h5) => {
    if (!isKeras3Layout(h5)) return readWeights(file, h5, graph, opts);
    const inputShape = opts.inputShape ?? defaultInputShape(graph);
    const weights = readKeras3Weights(file, h5, graph, opts.layerOrder ?? graph, inputShape);
    validateWeights(graph, weights, inputShape, file);
    return weights;
  });
}

/**
 * The model topology a full Keras model file (`model.save('x.h5')`) carries in its `model_config`
 * attribute, or undefined for a weights-only file.
 */
export async function readKerasH5Topology(file: string): Promise<KerasGraph | undefined> {
  return withH5(file, (h5) => {
    if (isKeras3Layout(h5)) return undefined; // Keras 3 keeps the topology beside the weights (.keras)
    const config = readText(file, h5, 'model_config');
    if (config === undefined || config === '') return undefined;
    let json: unknown;
    try {
      json = JSON.parse(config);
    } catch (err) {
      throw new GraftError(`${file}: the model_config attribute is not valid JSON (${(err as Error).message})`, { file });
    }
    return parseKerasTopology(json, file);
  });
}

/** The group holding `layer_names`: the root (save_weights), else `model_weights` (model.save). */
function weightsRoot(h5: Group): Group {
  if (hasNameList(h5, 'layer_names')) return h5;
  const modelWeights = h5.get('model_weights');
  return modelWeights instanceof h5wasmLoaded().Group ? modelWeights : h5;
}

/** The layers a Keras weights file lists with their weight names (layers without weights included). */
function fileLayersOf(file: string, h5: Group): FileLayer[] {
  const root = weightsRoot(h5);
  const layerNames = readNameList(file, root, 'layer_names');
  if (layerNames === undefined) {
    throw new GraftError(
      `${file}: an HDF5 file with neither a layer_names attribute (Keras 2) nor a layers group (Keras 3), so not a Keras weights file`,
      { file },
    );
  }
  return layerNames.map((name) => {
    const group = root.get(name);
    if (!(group instanceof h5wasmLoaded().Group)) throw new GraftError(`${file}: layer ${name} is listed in layer_names but has no group`, { file });
    return { name, weightNames: readNameList(file, group, 'weight_names') ?? [], group };
  });
}

/**
 * The layers of a Keras weights file, in file order, with the names of their weights ("kernel", ...);
 * for a Keras 3 file, its layer groups that hold weights (in name order), with their indices.
 */
export async function readKerasH5Layers(file: string): Promise<{ name: string; weights: string[] }[]> {
  return withH5(file, (h5) =>
    isKeras3Layout(h5) ? keras3WeightedLayers(h5) : fileLayersOf(file, h5).map((l) => ({ name: l.name, weights: l.weightNames.map(shortWeightName) })),
  );
}

/**
 * The Keras version and backend a Keras 2 .h5 was saved with (its `keras_version` and `backend`
 * attributes, beside `layer_names` or at the root); either is undefined when the file has none
 * (Keras 1 wrote neither; Keras 3 files keep them elsewhere).
 */
export async function readKerasH5Origin(file: string): Promise<{ kerasVersion?: string; backend?: string }> {
  return withH5(file, (h5) => {
    if (isKeras3Layout(h5)) return {};
    const root = weightsRoot(h5);
    const text = (name: string) => readText(file, root, name) ?? (root === h5 ? undefined : readText(file, h5, name));
    return { kerasVersion: text('keras_version'), backend: text('backend') };
  });
}

function readWeights(file: string, h5: Group, graph: KerasGraph, opts: KerasH5Options): WeightMap {
  const fileLayers = fileLayersOf(file, h5).filter((l) => l.weightNames.length > 0);

  const inputShape = opts.inputShape ?? defaultInputShape(graph);
  const shapes = inferShapes(graph, inputShape);
  const wanted = graph.layers
    .map((layer) => ({ layer: layer.name, specs: layerWeightSpecs(layer, shapes.inputs.get(layer.name) ?? []) }))
    .filter((w) => w.specs.length > 0);

  let pairs: { layer: string; specs: WeightSpec[]; source: FileLayer }[];
  if ((opts.match ?? 'order') === 'order') {
    if (fileLayers.length < wanted.length) {
      throw new GraftError(
        `${file}: too few layers: the file has ${fileLayers.length} layers with weights, the model needs ${wanted.length} (up to ${graph.outputs.join(', ')})`,
        { file },
      );
    }
    pairs = wanted.map((w, i) => ({ ...w, source: fileLayers[i]! }));
  } else {
    const byName = new Map(fileLayers.map((l) => [l.name, l]));
    pairs = wanted.map((w) => {
      const source = byName.get(w.layer);
      if (!source) throw new GraftError(`${file}: has no weights for layer ${w.layer}`, { file });
      return { ...w, source };
    });
  }

  const weights: WeightMap = new Map();
  for (const { layer, specs, source } of pairs) {
    const what = source.name === layer ? `layer ${layer}` : `layer ${source.name} (for ${layer})`;
    if (source.weightNames.length !== specs.length) {
      throw new GraftError(
        `${file}: ${what} has ${source.weightNames.length} weights (${source.weightNames.map(shortWeightName).join(', ')}), the model expects ${specs.length} (${specs.map((s) => s.name).join(', ')})`,
        { file },
      );
    }
    specs.forEach((spec, j) => {
      const weightName = source.weightNames[j]!;
      const dataset = source.group.get(weightName);
      if (!(dataset instanceof h5wasmLoaded().Dataset)) throw new GraftError(`${file}: ${what}: weight ${weightName} is missing`, { file });
      const shape = (dataset as Dataset).shape ?? [];
      if (shape.length !== spec.shape.length || shape.some((d, k) => d !== spec.shape[k])) {
        throw new GraftError(
          `${file}: ${what} weight ${shortWeightName(weightName)}: expected shape [${spec.shape.join(',')}], found [${shape.join(',')}]`,
          { file },
        );
      }
      const data = toFloat32((dataset as Dataset).value);
      if (!data) throw new GraftError(`${file}: ${what} weight ${weightName} has unsupported data type ${JSON.stringify((dataset as Dataset).dtype)}`, { file });
      const tensor: WeightTensor = { shape, data };
      weights.set(weightKey(layer, spec.name), tensor);
    });
  }
  validateWeights(graph, weights, inputShape, file);
  return weights;
}
