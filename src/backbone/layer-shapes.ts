import { GraftError } from '../util/errors.js';
import type { KerasGraph, KerasLayer } from './keras-graph.js';

/** A per-example shape (no batch dimension); channels last, as Keras prints it without the None. */
export type Shape = number[];

/** One weight a layer owns, in the order Keras stores them (get_weights / HDF5 weight_names). */
export interface WeightSpec {
  name: string;
  shape: number[];
  /** false for non-trainable state such as BatchNormalization's moving statistics. */
  trainable: boolean;
}

type Pair = [number, number];

function pair(v: unknown, fallback: Pair): Pair {
  if (v === undefined || v === null) return fallback;
  if (typeof v === 'number') return [v, v];
  if (Array.isArray(v) && v.length === 2) return [Number(v[0]), Number(v[1])];
  return fallback;
}

/** Output length of a window op along one axis with TF/Keras 'valid' or 'same' padding. */
export function windowOutput(size: number, window: number, stride: number, padding: string): number {
  return padding === 'same' ? Math.ceil(size / stride) : Math.floor((size - window) / stride) + 1;
}

/** Kernel, strides and padding of a Conv2D / pooling layer, with Keras's defaults. */
export function windowParams(layer: KerasLayer): { kernel: Pair; strides: Pair; padding: 'same' | 'valid' } {
  const c = layer.config;
  const kernel = pair(c.kernel_size ?? c.pool_size, [2, 2]);
  const strides = pair(c.strides, layer.className === 'Conv2D' ? [1, 1] : kernel);
  const padding = c.padding === 'same' ? 'same' : 'valid';
  return { kernel, strides, padding };
}

/** The weights `layer` owns, given the shapes of its inputs. */
export function layerWeightSpecs(layer: KerasLayer, inputShapes: Shape[]): WeightSpec[] {
  const c = layer.config;
  const inShape = inputShapes[0] ?? [];
  const channels = inShape[inShape.length - 1] ?? 0;
  switch (layer.className) {
    case 'Conv2D': {
      const { kernel } = windowParams(layer);
      const filters = Number(c.filters);
      const specs: WeightSpec[] = [{ name: 'kernel', shape: [kernel[0], kernel[1], channels, filters], trainable: true }];
      if (c.use_bias !== false) specs.push({ name: 'bias', shape: [filters], trainable: true });
      return specs;
    }
    case 'BatchNormalization': {
      const specs: WeightSpec[] = [];
      if (c.scale !== false) specs.push({ name: 'gamma', shape: [channels], trainable: true });
      if (c.center !== false) specs.push({ name: 'beta', shape: [channels], trainable: true });
      specs.push({ name: 'moving_mean', shape: [channels], trainable: false });
      specs.push({ name: 'moving_variance', shape: [channels], trainable: false });
      return specs;
    }
    case 'Dense': {
      const units = Number(c.units);
      const specs: WeightSpec[] = [{ name: 'kernel', shape: [channels, units], trainable: true }];
      if (c.use_bias !== false) specs.push({ name: 'bias', shape: [units], trainable: true });
      return specs;
    }
    default:
      return [];
  }
}

/** Output shape of one layer from its input shapes. Throws GraftError for unsupported layers or bad sizes. */
export function layerOutputShape(layer: KerasLayer, inputShapes: Shape[]): Shape {
  const c = layer.config;
  const first = inputShapes[0];
  const need = (): Shape => {
    if (!first) throw new GraftError(`layer ${layer.name} (${layer.className}) has no input`);
    return first;
  };
  switch (layer.className) {
    case 'InputLayer':
      throw new GraftError(`input layer ${layer.name} has no inbound shape`);
    case 'Conv2D':
    case 'MaxPooling2D':
    case 'AveragePooling2D': {
      const [h, w, ch] = need() as [number, number, number];
      const { kernel, strides, padding } = windowParams(layer);
      const oh = windowOutput(h, kernel[0], strides[0], padding);
      const ow = windowOutput(w, kernel[1], strides[1], padding);
      if (oh < 1 || ow < 1) {
        throw new GraftError(
          `layer ${layer.name} (${layer.className}) gets a ${h}x${w} input, too small for its ${kernel[0]}x${kernel[1]} window: use a larger input size`,
        );
      }
      return [oh, ow, layer.className === 'Conv2D' ? Number(c.filters) : ch];
    }
    case 'BatchNormalization':
    case 'Activation':
    case 'ReLU':
    case 'Dropout':
      return [...need()];
    case 'Concatenate': {
      const axis = Number(c.axis ?? -1);
      const rank = need().length;
      const ax = axis < 0 ? rank + axis : axis - 1; // Keras counts the batch axis
      const out = [...need()];
      out[ax] = inputShapes.reduce((s, sh) => s + (sh[ax] ?? 0), 0);
      return out;
    }
    case 'Add':
      return [...need()];
    case 'Flatten':
      return [need().reduce((a, b) => a * b, 1)];
    case 'GlobalAveragePooling2D':
    case 'GlobalMaxPooling2D':
      return [need()[need().length - 1]!];
    case 'Dense':
      return [Number(c.units)];
    default:
      throw new GraftError(`layer ${layer.name}: Keras layer type ${layer.className} is not supported`);
  }
}

export interface GraphShapes {
  /** Output shape of every layer, without the batch dimension. */
  output: Map<string, Shape>;
  /** Input shapes of every layer, in inbound order. */
  inputs: Map<string, Shape[]>;
}

/** Shapes of every layer of `graph` for an input of `inputShape` ([h, w, c]). */
export function inferShapes(graph: KerasGraph, inputShape: Shape): GraphShapes {
  const output = new Map<string, Shape>();
  const inputs = new Map<string, Shape[]>();
  for (const layer of graph.layers) {
    if (layer.className === 'InputLayer') {
      output.set(layer.name, [...inputShape]);
      inputs.set(layer.name, []);
      continue;
    }
    const ins = layer.inbound.map((name) => {
      const s = output.get(name);
      if (!s) throw new GraftError(`layer ${layer.name} reads ${name}, which is not defined before it`);
      return s;
    });
    inputs.set(layer.name, ins);
    output.set(layer.name, layerOutputShape(layer, ins));
  }
  return { output, inputs };
}

/** Number of scalars in a shape. */
export function shapeSize(shape: number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}
