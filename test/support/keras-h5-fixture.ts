/** Test fixtures: Keras-layout HDF5 weight files written with h5wasm, and the shared weights read raw. */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import h5wasm from 'h5wasm/node';
import { inceptionV3Graph } from '../../src/backbone/architectures/inception-v3.js';
import type { KerasGraph, WeightTensor } from '../../src/backbone/keras-graph.js';
import { sharedInceptionWeightsDir } from '../../src/util/paths.js';
import { kerasModelTopology } from '../../src/export/tfjs-layers.js';
import { inferShapes, layerWeightSpecs } from '../../src/backbone/layer-shapes.js';
import { KERAS_ATTRIBUTE_LIMIT, writeNameList, writeText, type H5pyStrings } from '../../src/backbone/weights/h5-attributes.js';

export interface FixtureLayer {
  name: string;
  /** 'zeros': an all-zero array, stored chunked and gzip-compressed so that a full-size file stays small. */
  weights: { name: string; shape: number[]; data: Float32Array | 'zeros' }[];
}

export interface KerasH5FixtureOptions {
  /** Under a model_weights group, as model.save does. */
  underModelWeights?: boolean;
  /** false: leave layer_names out (to test files without it). */
  layerNames?: boolean;
  /** model.save: the topology as the root's model_config, weights under model_weights. */
  modelConfig?: KerasGraph;
  /** How the name lists are stored (default h5py3: variable-length; h5py2: fixed-length, as the published ImageNet files). */
  h5py?: H5pyStrings;
  /** Keras's chunking limit (default 64512 bytes); smaller makes a small file's lists split into name0, name1... */
  attributeLimit?: number;
  /** The keras_version attribute (default 2.1.5). */
  kerasVersion?: string;
}

let zeros = new Float32Array(0);
function zerosOf(n: number): Float32Array {
  if (zeros.length < n) zeros = new Float32Array(n);
  return zeros.subarray(0, n);
}

/**
 * Writes `layers` the way Keras 2 save_weights does through h5py (keras/saving/hdf5_format.py,
 * save_weights_to_hdf5_group): root `layer_names` (every layer), `backend`, `keras_version`; per
 * layer a group whose `weight_names` lists "<layer>/<weight>:0" (an empty float64 array for a
 * layer without weights) and whose datasets sit at those paths. The attribute encodings are
 * h5py's (src/backbone/weights/h5-attributes.ts), checked against files written by h5py 3.7
 * itself in test/fixtures/keras2-h5py/ (keras-h5.test.ts compares their HDF5 types).
 */
export async function writeKerasH5(file: string, layers: FixtureLayer[], opts: KerasH5FixtureOptions = {}): Promise<void> {
  await h5wasm.ready;
  const h5py = opts.h5py ?? 'h5py3';
  const limit = opts.attributeLimit ?? KERAS_ATTRIBUTE_LIMIT;
  const f = new h5wasm.File(file, 'w');
  try {
    if (opts.modelConfig) {
      // save_model_to_hdf5: model metadata at the root (json.dumps(...).encode('utf8'): bare bytes), weights under model_weights.
      writeText(f, 'model_config', JSON.stringify(kerasModelTopology(opts.modelConfig, graphInputShape(opts.modelConfig))));
      writeText(f, 'keras_version', opts.kerasVersion ?? '2.1.5');
      writeText(f, 'backend', 'tensorflow');
    }
    const root = opts.underModelWeights || opts.modelConfig ? f.create_group('model_weights') : f;
    if (opts.layerNames !== false) writeNameList(root, 'layer_names', layers.map((l) => l.name), h5py, limit);
    writeText(root, 'backend', 'tensorflow');
    writeText(root, 'keras_version', opts.kerasVersion ?? '2.1.5');
    for (const layer of layers) {
      const group = root.create_group(layer.name);
      writeNameList(group, 'weight_names', layer.weights.map((w) => `${layer.name}/${w.name}:0`), h5py, limit);
      if (layer.weights.length === 0) continue;
      const sub = group.create_group(layer.name);
      for (const w of layer.weights) {
        if (w.data === 'zeros') {
          const n = w.shape.reduce((a, b) => a * b, 1);
          sub.create_dataset({ name: `${w.name}:0`, data: zerosOf(n), shape: w.shape, dtype: '<f', chunks: w.shape, compression: 'gzip', compression_opts: 1 });
        } else {
          sub.create_dataset({ name: `${w.name}:0`, data: w.data, shape: w.shape, dtype: '<f' });
        }
      }
    }
  } finally {
    f.close();
  }
}

/**
 * The layout of Keras's inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5: all 311 layers
 * of InceptionV3 without its top (input_1 .. mixed10), the real layer and weight names and shapes
 * (21,802,784 parameters), name lists encoded as that file's h5py 2 wrote them; the weights are
 * zeros, stored compressed (the file is a few MB instead of 87).
 */
export async function writeInceptionNotopH5(file: string, opts: KerasH5FixtureOptions = {}): Promise<void> {
  const graph = inceptionV3Graph();
  const shapes = inferShapes(graph, [299, 299, 3]);
  const layers: FixtureLayer[] = graph.layers.map((l) => ({
    name: l.name,
    weights: layerWeightSpecs(l, shapes.inputs.get(l.name) ?? []).map((s) => ({ name: s.name, shape: s.shape, data: 'zeros' as const })),
  }));
  await writeKerasH5(file, layers, { h5py: 'h5py2', ...opts });
}

/** The graph's input shape (H, W, C), from its InputLayer's batch_input_shape (or Keras 3 batch_shape). */
function graphInputShape(graph: KerasGraph): [number, number, number] {
  const input = graph.layers.find((l) => l.name === graph.inputs[0])!;
  const shape = (input.config.batch_input_shape ?? input.config.batch_shape) as (number | null)[];
  return shape.slice(1) as [number, number, number];
}

/** The shared fp32 TF.js weights (input_1..mixed7), read straight from model.json + shards. */
export function readSharedTfjsWeights(): { tensors: Map<string, WeightTensor>; order: string[] } {
  const folder = sharedInceptionWeightsDir('fp32');
  const model = JSON.parse(readFileSync(join(folder, 'model.json'), 'utf8'));
  const tensors = new Map<string, WeightTensor>();
  const order: string[] = [];
  for (const group of model.weightsManifest as { paths: string[]; weights: { name: string; shape: number[]; dtype: string }[] }[]) {
    const bytes = Buffer.concat(group.paths.map((p) => readFileSync(join(folder, p))));
    let offset = 0;
    for (const w of group.weights) {
      assert.equal(w.dtype, 'float32');
      const n = w.shape.reduce((a, b) => a * b, 1);
      const data = new Float32Array(n);
      Buffer.from(data.buffer).set(bytes.subarray(offset, offset + 4 * n));
      offset += 4 * n;
      tensors.set(w.name, { shape: w.shape, data });
      order.push(w.name);
    }
  }
  return { tensors, order };
}

/** The graph's layers up to `last` (for block outputs, a prefix of Keras's layer order). */
export function cutAt(graph: KerasGraph, last: string): KerasGraph {
  const end = graph.layers.findIndex((l) => l.name === last);
  return { ...graph, layers: graph.layers.slice(0, end + 1), outputs: [last] };
}

/** A Keras-layout .h5 of InceptionV3 input_1..mixed7 holding the shared weights; returns them. */
export async function writeSharedInceptionH5(file: string): Promise<Map<string, WeightTensor>> {
  const { tensors, order } = readSharedTfjsWeights();
  // Keras layer_names lists every layer, weights or not, in model order.
  const layers: FixtureLayer[] = cutAt(inceptionV3Graph(), 'mixed7').layers.map((l) => ({
    name: l.name,
    weights: order.filter((k) => k.startsWith(`${l.name}/`)).map((k) => ({ name: k.slice(l.name.length + 1), ...tensors.get(k)! })),
  }));
  await writeKerasH5(file, layers);
  return tensors;
}

/** Bit-for-bit equality of two float arrays (NaN-safe, -0 aware). */
export function sameBits(a: Float32Array, b: Float32Array): boolean {
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));
}

/**
 * Keras 3's group names for the classes InceptionV3 and the lab head use, written out by hand
 * (rather than with graft's snake_case) so that the fixture checks the reader, not itself.
 */
const KERAS3_CLASS_PATHS: Record<string, string> = {
  InputLayer: 'input_layer',
  Conv2D: 'conv2d',
  BatchNormalization: 'batch_normalization',
  Activation: 'activation',
  MaxPooling2D: 'max_pooling2d',
  AveragePooling2D: 'average_pooling2d',
  Concatenate: 'concatenate',
  Flatten: 'flatten',
  Dense: 'dense',
  Dropout: 'dropout',
  GlobalAveragePooling2D: 'global_average_pooling2d',
};

export interface Keras3FixtureOptions {
  /** Write each layer's name on its vars group, as newer Keras 3 releases do. */
  names?: boolean;
  /** Leave weightless layers without a group, as newer releases do (Keras 3.0 writes empty ones). */
  skipEmpty?: boolean;
}

/**
 * Writes weights the way Keras 3 save_weights does: `layers/<class path>[_n]/vars/<i>`, counted per
 * class in the graph's layer order, plus the empty root `vars` group.
 */
export async function writeKeras3H5(file: string, graph: KerasGraph, tensors: Map<string, WeightTensor>, order: string[], opts: Keras3FixtureOptions = {}): Promise<void> {
  await h5wasm.ready;
  const f = new h5wasm.File(file, 'w');
  try {
    f.create_group('vars');
    const layersGroup = f.create_group('layers');
    const used = new Map<string, number>();
    for (const layer of graph.layers) {
      const base = KERAS3_CLASS_PATHS[layer.className];
      assert.ok(base, `no Keras 3 path for ${layer.className}`);
      const n = used.get(base) ?? 0;
      used.set(base, n + 1);
      const keys = order.filter((k) => k.startsWith(`${layer.name}/`));
      if (keys.length === 0 && opts.skipEmpty) continue;
      const vars = layersGroup.create_group(n === 0 ? base : `${base}_${n}`).create_group('vars');
      if (opts.names) vars.create_attribute('name', layer.name);
      keys.forEach((k, i) => {
        const t = tensors.get(k)!;
        vars.create_dataset({ name: String(i), data: t.data, shape: t.shape, dtype: '<f' });
      });
    }
  } finally {
    f.close();
  }
}

/** A graph's topology as Keras 3 writes config.json: keras_history tensors, batch_shape inputs. */
export function keras3Config(graph: KerasGraph): unknown {
  const tensor = (name: string) => ({ class_name: '__keras_tensor__', config: { shape: null, dtype: 'float32', keras_history: [name, 0, 0] } });
  const layers = graph.layers.map((l) => {
    const config: Record<string, unknown> = { ...l.config, name: l.name };
    if ('batch_input_shape' in config) {
      config.batch_shape = config.batch_input_shape;
      delete config.batch_input_shape;
    }
    const args = l.inbound.length === 0 ? null : l.className === 'Concatenate' ? [l.inbound.map(tensor)] : [tensor(l.inbound[0]!)];
    return { module: 'keras.layers', class_name: l.className, config, registered_name: null, name: l.name, inbound_nodes: args ? [{ args, kwargs: {} }] : [] };
  });
  return {
    module: 'keras.src.models.functional',
    class_name: 'Functional',
    config: { name: graph.name, trainable: true, layers, input_layers: graph.inputs.map((n) => [n, 0, 0]), output_layers: graph.outputs.map((n) => [n, 0, 0]) },
    registered_name: 'Functional',
  };
}
