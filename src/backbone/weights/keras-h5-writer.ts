import { randomBytes } from 'node:crypto';
import { rename, rm } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { loadH5wasm } from './h5wasm-module.js';
import { describeFsError, GraftError } from '../../util/errors.js';
import { makeFolder } from '../../util/folders.js';
import type { KerasGraph, WeightMap } from '../keras-graph.js';
import { weightKey } from '../keras-graph.js';
import { inferShapes, layerWeightSpecs, type Shape } from '../layer-shapes.js';
import { validateWeights } from '../validate-weights.js';
import { writeNameList, writeText } from './h5-attributes.js';

/**
 * Writes `weights` for the layers of `graph` as a Keras 2 `save_weights` HDF5 file, which Keras's
 * `model.load_weights(file)` (and loadKerasH5Weights) reads back: root attribute `layer_names` (every
 * layer, in graph order), per layer a group with `weight_names` ("dense_1/kernel:0", ...) and the
 * arrays. `inputShape` ([h, w, c]) fixes the weight shapes that are checked before writing.
 * Attributes are encoded as Keras 2.x writes them through h5py 3 (see h5-attributes.ts).
 * The file appears whole or not at all (written beside it, then renamed).
 */
export async function saveKerasH5Weights(file: string, graph: KerasGraph, weights: WeightMap, inputShape: Shape): Promise<void> {
  validateWeights(graph, weights, inputShape, file);
  const shapes = inferShapes(graph, inputShape);
  const tmp = join(dirname(file), `.${basename(file)}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`);
  try {
    await makeFolder(dirname(file), file);
    const h5wasm = await loadH5wasm();
    const h5 = new h5wasm.File(tmp, 'w');
    try {
      const names = graph.layers.map((l) => l.name);
      writeNameList(h5, 'layer_names', names, 'h5py3');
      writeText(h5, 'backend', 'tensorflow');
      writeText(h5, 'keras_version', '2.1.5');
      for (const layer of graph.layers) {
        const specs = layerWeightSpecs(layer, shapes.inputs.get(layer.name) ?? []);
        const group = h5.create_group(layer.name);
        const weightNames = specs.map((s) => `${layer.name}/${s.name}:0`);
        writeNameList(group, 'weight_names', weightNames, 'h5py3');
        if (specs.length === 0) continue;
        const inner = group.create_group(layer.name);
        for (const spec of specs) {
          const tensor = weights.get(weightKey(layer.name, spec.name))!;
          inner.create_dataset({ name: `${spec.name}:0`, data: tensor.data, shape: tensor.shape, dtype: '<f' });
        }
      }
    } finally {
      h5.close();
    }
    await rename(tmp, file);
  } catch (err) {
    await rm(tmp, { force: true }).catch(() => {});
    throw err instanceof GraftError ? err : describeFsError(err, file, 'write');
  }
}
