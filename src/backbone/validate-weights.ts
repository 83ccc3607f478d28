import { GraftError } from '../util/errors.js';
import type { KerasGraph, WeightMap } from './keras-graph.js';
import { weightKey } from './keras-graph.js';
import { inferShapes, layerWeightSpecs, type Shape } from './layer-shapes.js';

/**
 * Checks that `weights` holds every weight `graph` needs, with the right shape, for an input of
 * `inputShape`. `source` names the file the weights came from. Extra weights (e.g. the layers of a
 * full InceptionV3 beyond the cut) are allowed.
 */
export function validateWeights(graph: KerasGraph, weights: WeightMap, inputShape: Shape, source: string): void {
  const shapes = inferShapes(graph, inputShape);
  for (const layer of graph.layers) {
    for (const spec of layerWeightSpecs(layer, shapes.inputs.get(layer.name) ?? [])) {
      const key = weightKey(layer.name, spec.name);
      const found = weights.get(key);
      if (!found) {
        throw new GraftError(`${source}: layer ${layer.name} needs weight ${key} [${spec.shape.join(',')}], which is missing`, { file: source });
      }
      if (found.shape.length !== spec.shape.length || found.shape.some((d, i) => d !== spec.shape[i])) {
        throw new GraftError(
          `${source}: layer ${layer.name} weight ${spec.name}: expected shape [${spec.shape.join(',')}], found [${found.shape.join(',')}]`,
          { file: source },
        );
      }
      const size = spec.shape.reduce((a, b) => a * b, 1);
      if (found.data.length !== size) {
        throw new GraftError(`${source}: layer ${layer.name} weight ${spec.name}: expected ${size} values, found ${found.data.length}`, { file: source });
      }
    }
  }
}
