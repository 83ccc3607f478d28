/**
 * Keras 3 weight files (`model.save_weights('x.weights.h5')`, and the model.weights.h5 inside a
 * `.keras` archive). Unlike Keras 2 files they carry no layer names: keras/src/saving/saving_lib.py
 * stores a functional model's layers under `layers/<snake_case(class name)>` with a per-class
 * counter in model.layers order (conv2d, conv2d_1, ...), each layer's variables as datasets
 * `vars/0`, `vars/1`, ... (trainable ones first, each group in creation order, which for Conv2D,
 * Dense and BatchNormalization is Keras 2's order too). Newer Keras also writes the layer's name
 * as an attribute `name` on its `vars` group; where present it is used instead of the counters.
 */
import type { Dataset, Group } from 'h5wasm/node';
import { h5wasmLoaded } from './h5wasm-module.js';
import { GraftError } from '../../util/errors.js';
import type { KerasGraph, WeightMap } from '../keras-graph.js';
import { weightKey } from '../keras-graph.js';
import { inferShapes, layerWeightSpecs, type Shape } from '../layer-shapes.js';

/** The group Keras 3 keeps a functional model's layers in (Keras 2.13's name for it second). */
const LAYER_GROUPS = ['layers', '_layer_checkpoint_dependencies'] as const;

/** keras.src.utils.naming.to_snake_case: Conv2D -> conv2d, BatchNormalization -> batch_normalization. */
export function kerasSnakeCase(name: string): string {
  return name
    .replace(/\W+/g, '')
    .replace(/(.)([A-Z][a-z]+)/g, '$1_$2')
    .replace(/([a-z])([A-Z])/g, '$1_$2')
    .toLowerCase();
}

/** Each layer's group name under `layers/`, as Keras 3 numbers them: per class, in layer order. */
export function keras3LayerPaths(graph: KerasGraph): Map<string, string> {
  const used = new Map<string, number>();
  const paths = new Map<string, string>();
  for (const layer of graph.layers) {
    const base = kerasSnakeCase(layer.className);
    const n = used.get(base);
    used.set(base, n === undefined ? 0 : n + 1);
    paths.set(layer.name, n === undefined ? base : `${base}_${n + 1}`);
  }
  return paths;
}

function layersGroup(h5: Group): Group | undefined {
  for (const name of LAYER_GROUPS) {
    const g = h5.get(name);
    if (g instanceof h5wasmLoaded().Group) return g;
  }
  return undefined;
}

/** Whether an opened HDF5 file has Keras 3's group of layers (keras-h5.ts tells it from a Keras 2 file). */
export function hasKeras3Layers(h5: Group): boolean {
  return layersGroup(h5) !== undefined;
}

interface FileLayer {
  path: string;
  /** The layer name Keras wrote on the vars group, if it did. */
  name?: string;
  vars: Group | null;
  count: number;
}

function fileLayers(h5: Group): FileLayer[] {
  const root = layersGroup(h5)!;
  return root.keys().map((path) => {
    const group = root.get(path);
    const vars = group instanceof h5wasmLoaded().Group ? group.get('vars') : null;
    if (!(vars instanceof h5wasmLoaded().Group)) return { path, vars: null, count: 0 };
    const name = vars.attrs.name?.value;
    return { path, name: typeof name === 'string' ? name : undefined, vars, count: vars.keys().length };
  });
}

/** The file's layer groups that hold variables, with how many (for telling how deep a saved network goes). */
export function keras3WeightedLayers(h5: Group): { name: string; weights: string[] }[] {
  return fileLayers(h5)
    .filter((l) => l.count > 0)
    .map((l) => ({ name: l.name ?? l.path, weights: Array.from({ length: l.count }, (_, i) => String(i)) }));
}

/**
 * Reads the weights of `graph`'s layers from a Keras 3 file. `layerOrder` is the whole model the
 * file was saved from (its layer order numbers the groups); `graph` may be a cut of it.
 */
export function readKeras3Weights(file: string, h5: Group, graph: KerasGraph, layerOrder: KerasGraph, inputShape: Shape): WeightMap {
  const layers = fileLayers(h5);
  const byPath = new Map(layers.map((l) => [l.path, l]));
  const named = layers.every((l) => l.vars === null || l.count === 0 || l.name !== undefined) && layers.some((l) => l.name !== undefined);
  const byName = named ? new Map(layers.filter((l) => l.name !== undefined).map((l) => [l.name!, l])) : null;
  const paths = keras3LayerPaths(layerOrder);
  const shapes = inferShapes(graph, inputShape);
  const weights: WeightMap = new Map();
  for (const layer of graph.layers) {
    const specs = layerWeightSpecs(layer, shapes.inputs.get(layer.name) ?? []);
    if (specs.length === 0) continue;
    const path = paths.get(layer.name);
    const source = byName ? byName.get(layer.name) : path === undefined ? undefined : byPath.get(path);
    const where = byName ? `layer ${layer.name}` : `layers/${path} (layer ${layer.name})`;
    if (!source || !source.vars || source.count === 0) throw new GraftError(`${file}: has no weights for ${where}`, { file });
    if (source.count !== specs.length) {
      throw new GraftError(`${file}: ${where} has ${source.count} weights, the model expects ${specs.length} (${specs.map((s) => s.name).join(', ')})`, { file });
    }
    specs.forEach((spec, i) => {
      const dataset = source.vars!.get(String(i));
      if (!(dataset instanceof h5wasmLoaded().Dataset)) throw new GraftError(`${file}: ${where}: weight ${i} (${spec.name}) is missing`, { file });
      const shape = (dataset as Dataset).shape ?? [];
      if (shape.length !== spec.shape.length || shape.some((d, k) => d !== spec.shape[k])) {
        throw new GraftError(`${file}: ${where} weight ${i} (${spec.name}): expected shape [${spec.shape.join(',')}], found [${shape.join(',')}]`, { file });
      }
      const value = (dataset as Dataset).value;
      const data = value instanceof Float32Array ? value : value instanceof Float64Array ? Float32Array.from(value) : undefined;
      if (!data) throw new GraftError(`${file}: ${where} weight ${i} (${spec.name}) has unsupported data type ${JSON.stringify((dataset as Dataset).dtype)}`, { file });
      weights.set(weightKey(layer.name, spec.name), { shape, data });
    });
  }
  return weights;
}
