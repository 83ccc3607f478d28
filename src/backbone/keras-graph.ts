/**
 * The in-memory form of a Keras functional model, as read from a Keras/TF.js topology JSON or built
 * by an architecture in code: layers in topological order, each naming the layers it reads from.
 * Every backbone stage (weights, cutting, ONNX conversion, summaries, TF.js export) works on this.
 */
export interface KerasLayer {
  name: string;
  /** Keras class name: Conv2D, BatchNormalization, Activation, MaxPooling2D, ... */
  className: string;
  /** The layer's Keras config as in model.json (snake_case keys, e.g. kernel_size, strides). */
  config: Record<string, unknown>;
  /** Names of the layers whose (single) outputs this layer consumes, in order. */
  inbound: string[];
}

export interface KerasGraph {
  name: string;
  layers: KerasLayer[];
  inputs: string[];
  outputs: string[];
}

/** One weight array in Keras layout (kernels HWIO, channels last), keyed "layer/weight" (e.g. "conv2d_1/kernel"). */
export interface WeightTensor {
  shape: number[];
  data: Float32Array;
}

export type WeightMap = Map<string, WeightTensor>;

export function weightKey(layer: string, weight: string): string {
  return `${layer}/${weight}`;
}
