/**
 * The trainable segment of a backbone for fine-tuning: the layers after a named layer (`from`) up to
 * the cut, and the weights Keras trains when they are unfrozen (conv kernels and biases, and
 * BatchNormalization's beta; BN runs in inference mode, its moving statistics fixed, as Keras does
 * with the base called with training=False).
 */
import { GraftError } from '../../util/errors.js';
import type { KerasGraph, KerasLayer, WeightMap } from '../../backbone/keras-graph.js';
import { weightKey } from '../../backbone/keras-graph.js';
import { inferShapes, layerWeightSpecs, type Shape } from '../../backbone/layer-shapes.js';

export interface TrainableWeight {
  layer: string;
  /** Keras weight name: kernel, bias, beta. */
  name: string;
  /** "layer/name", the WeightMap key. */
  key: string;
  shape: number[];
}

export interface Segment {
  /** The layer whose output feeds the segment (its input). */
  from: string;
  /** The segment's last layer (the cut). */
  to: string;
  /** Layers after `from` up to `to`, in topological order. */
  layers: KerasLayer[];
  /** Shape of `from`'s output (the segment's input), [h, w, c]. */
  inputShape: Shape;
  outputShape: Shape;
  /** Output shape of every segment layer, and of `from`. */
  shapes: Map<string, Shape>;
  /** Input shapes of every segment layer. */
  inputShapes: Map<string, Shape[]>;
  /** Trainable weights, in Keras's order (layer order, then the layer's weight order). */
  trainable: TrainableWeight[];
}

/** Layer kinds the segment's forward and backward graphs handle. */
const SUPPORTED = new Set(['Conv2D', 'BatchNormalization', 'Activation', 'ReLU', 'MaxPooling2D', 'AveragePooling2D', 'Concatenate']);

/**
 * The segment of `graph` (already cut at its output) after layer `from`, for an image input of
 * `imageShape` ([h, w, 3]). `from` may be the input layer (everything trainable). Refuses a `from`
 * that later layers bypass (inside a block: pick a block output such as mixed6).
 */
export function trainableSegment(graph: KerasGraph, from: string, imageShape: Shape): Segment {
  const to = graph.outputs[0]!;
  const byName = new Map(graph.layers.map((l) => [l.name, l]));
  if (!byName.has(from)) throw new GraftError(`fine-tuning: no layer named "${from}" before the cut ${to}`);
  if (from === to) throw new GraftError(`fine-tuning from ${from}, the cut itself, trains nothing: name an earlier layer (e.g. a block output such as mixed6)`);
  const below = ancestors(byName, from);
  const layers = graph.layers.filter((l) => !below.has(l.name));
  const inside = new Set(layers.map((l) => l.name));
  for (const l of layers) {
    for (const i of l.inbound) {
      if (i !== from && !inside.has(i)) {
        throw new GraftError(`fine-tuning from ${from}: layer ${l.name} reads ${i}, which lies before it, so ${from} does not split the network; name a block output (e.g. mixed6)`);
      }
    }
    if (!SUPPORTED.has(l.className)) throw new GraftError(`fine-tuning: layer ${l.name} (${l.className}) cannot be trained by graft`);
  }
  const all = inferShapes(graph, imageShape);
  const trainable: TrainableWeight[] = [];
  for (const l of layers) {
    if (l.className === 'BatchNormalization' && l.config.scale !== false) {
      throw new GraftError(`fine-tuning: layer ${l.name} is a BatchNormalization with a scale (gamma), which graft cannot train yet`);
    }
    for (const spec of layerWeightSpecs(l, all.inputs.get(l.name)!)) {
      if (spec.trainable) trainable.push({ layer: l.name, name: spec.name, key: weightKey(l.name, spec.name), shape: spec.shape });
    }
  }
  const shapes = new Map<string, Shape>([[from, all.output.get(from)!]]);
  const inputShapes = new Map<string, Shape[]>();
  for (const l of layers) {
    shapes.set(l.name, all.output.get(l.name)!);
    inputShapes.set(l.name, all.inputs.get(l.name)!);
  }
  return { from, to, layers, inputShape: all.output.get(from)!, outputShape: all.output.get(to)!, shapes, inputShapes, trainable };
}

function ancestors(byName: Map<string, KerasLayer>, name: string): Set<string> {
  const seen = new Set<string>();
  const stack = [name];
  while (stack.length > 0) {
    const n = stack.pop()!;
    if (seen.has(n)) continue;
    seen.add(n);
    stack.push(...(byName.get(n)?.inbound ?? []));
  }
  return seen;
}

/** Copies of the segment's trainable weights from `weights`, in `segment.trainable` order. */
export function trainableValues(segment: Segment, weights: WeightMap): Float32Array[] {
  return segment.trainable.map((t) => {
    const w = weights.get(t.key);
    if (!w) throw new GraftError(`fine-tuning: weight ${t.key} is missing`);
    return w.data.slice();
  });
}

/** Trainable and non-trainable parameter counts of a backbone graph when the segment after `from` is unfrozen (as Keras's summary counts them). */
export function trainableCounts(graph: KerasGraph, imageShape: Shape, from: string | null): { trainable: number; nonTrainable: number } {
  const shapes = inferShapes(graph, imageShape);
  const segment = from === null ? null : trainableSegment(graph, from, imageShape);
  const open = new Set(segment?.layers.map((l) => l.name) ?? []);
  let trainable = 0, nonTrainable = 0;
  for (const l of graph.layers) {
    for (const spec of layerWeightSpecs(l, shapes.inputs.get(l.name) ?? [])) {
      const n = spec.shape.reduce((a, b) => a * b, 1);
      if (open.has(l.name) && spec.trainable) trainable += n;
      else nonTrainable += n;
    }
  }
  return { trainable, nonTrainable };
}

/**
 * The first layer that trains when fine-tuning from `from`, for a Keras-style summary whose
 * layers from that one on train (Keras's guide: `for layer in base.layers[:i]: layer.trainable = False`).
 */
export function firstTunedLayer(graph: KerasGraph, from: string, imageShape: Shape): string {
  const segment = trainableSegment(graph, from, imageShape);
  return segment.layers[0]!.name;
}
