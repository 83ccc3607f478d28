/** Tiny TF.js layers models written to a temp folder: fixtures for the converter and loader tests. */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Random } from '../../src/util/random.js';
import type { KerasGraph } from '../../src/backbone/keras-graph.js';
import { inferShapes, layerWeightSpecs } from '../../src/backbone/layer-shapes.js';

export interface TinyLayer {
  name: string;
  className: string;
  config: Record<string, unknown>;
  inbound: string[];
  /** Weights this layer owns, in Keras order: [weight name, shape]. */
  weights?: [string, number[]][];
}

/**
 * A conv+BN+relu stem, a second branch with a biased relu conv, concat, a standalone BN,
 * 'same' average pooling touching the borders, 'same' max pooling, a residual Add, and a dense head
 * (Flatten -> Dense relu -> BN -> Dropout -> Dense softmax) on a 9x9x3 input.
 */
export function tinyLayers(): TinyLayer[] {
  const conv = (name: string, inbound: string, cin: number, filters: number, k: number, s: number, padding: string, useBias: boolean, activation: string): TinyLayer => ({
    name,
    className: 'Conv2D',
    config: { name, filters, kernel_size: [k, k], strides: [s, s], padding, use_bias: useBias, activation, data_format: 'channels_last', dilation_rate: [1, 1] },
    inbound: [inbound],
    weights: useBias ? [['kernel', [k, k, cin, filters]], ['bias', [filters]]] : [['kernel', [k, k, cin, filters]]],
  });
  const bn = (name: string, inbound: string, ch: number, scale: boolean): TinyLayer => ({
    name,
    className: 'BatchNormalization',
    config: { name, axis: -1, epsilon: 0.001, center: true, scale, momentum: 0.99 },
    inbound: [inbound],
    weights: [...(scale ? [['gamma', [ch]] as [string, number[]]] : []), ['beta', [ch]], ['moving_mean', [ch]], ['moving_variance', [ch]]],
  });
  return [
    { name: 'input_1', className: 'InputLayer', config: { name: 'input_1', batch_input_shape: [null, 9, 9, 3], dtype: 'float32', sparse: false }, inbound: [] },
    conv('conv2d_1', 'input_1', 3, 4, 3, 2, 'same', false, 'linear'),
    bn('batch_normalization_1', 'conv2d_1', 4, false),
    { name: 'activation_1', className: 'Activation', config: { name: 'activation_1', activation: 'relu' }, inbound: ['batch_normalization_1'] },
    conv('conv2d_2', 'input_1', 3, 2, 2, 2, 'same', true, 'relu'),
    { name: 'mixed0', className: 'Concatenate', config: { name: 'mixed0', axis: -1 }, inbound: ['activation_1', 'conv2d_2'] },
    bn('batch_normalization_2', 'mixed0', 6, true),
    { name: 'average_pooling2d_1', className: 'AveragePooling2D', config: { name: 'average_pooling2d_1', pool_size: [3, 3], strides: [1, 1], padding: 'same', data_format: 'channels_last' }, inbound: ['batch_normalization_2'] },
    { name: 'add_1', className: 'Add', config: { name: 'add_1' }, inbound: ['average_pooling2d_1', 'mixed0'] },
    { name: 'max_pooling2d_1', className: 'MaxPooling2D', config: { name: 'max_pooling2d_1', pool_size: [3, 3], strides: [2, 2], padding: 'same', data_format: 'channels_last' }, inbound: ['add_1'] },
    { name: 'flatten', className: 'Flatten', config: { name: 'flatten', data_format: 'channels_last' }, inbound: ['max_pooling2d_1'] },
    { name: 'dense', className: 'Dense', config: { name: 'dense', units: 8, activation: 'relu', use_bias: true }, inbound: ['flatten'], weights: [['kernel', [54, 8]], ['bias', [8]]] },
    bn('batch_normalization_3', 'dense', 8, true),
    { name: 'dropout', className: 'Dropout', config: { name: 'dropout', rate: 0.2 }, inbound: ['batch_normalization_3'] },
    { name: 'dense_1', className: 'Dense', config: { name: 'dense_1', units: 3, activation: 'softmax', use_bias: true }, inbound: ['dropout'], weights: [['kernel', [8, 3]], ['bias', [3]]] },
  ];
}

/** Random weights: variances positive, everything else N(0, 0.5). */
export function tinyWeights(layers: TinyLayer[], seed = 1): Map<string, Float32Array> {
  const rnd = new Random(seed);
  const out = new Map<string, Float32Array>();
  for (const l of layers) {
    for (const [w, shape] of l.weights ?? []) {
      const data = new Float32Array(shape.reduce((a, b) => a * b, 1));
      for (let i = 0; i < data.length; i++) data[i] = w === 'moving_variance' ? rnd.uniform(0.2, 2) : rnd.normal() * 0.5;
      out.set(`${l.name}/${w}`, data);
    }
  }
  return out;
}

/** model.json topology (Keras 2 / TF.js style) for `layers`. */
export function tinyTopology(layers: TinyLayer[]): Record<string, unknown> {
  const last = layers[layers.length - 1]!.name;
  return {
    class_name: 'Model',
    config: {
      name: 'tiny',
      layers: layers.map((l) => ({ name: l.name, class_name: l.className, config: l.config, inbound_nodes: l.inbound.length ? [l.inbound.map((n) => [n, 0, 0, {}])] : [] })),
      input_layers: [['input_1', 0, 0]],
      output_layers: [[last, 0, 0]],
    },
  };
}

/** Writes a layers-model folder (float32 weights split over `shards` files); returns the folder. */
export function writeTinyModel(layers: TinyLayer[], weights: Map<string, Float32Array>, shards = 2): string {
  const dir = mkdtempSync(join(tmpdir(), 'graft-tiny-'));
  const specs: { name: string; shape: number[]; dtype: string }[] = [];
  const parts: Buffer[] = [];
  for (const l of layers) {
    for (const [w, shape] of l.weights ?? []) {
      specs.push({ name: `${l.name}/${w}`, shape, dtype: 'float32' });
      const d = weights.get(`${l.name}/${w}`)!;
      parts.push(Buffer.from(d.buffer, d.byteOffset, d.byteLength));
    }
  }
  const all = Buffer.concat(parts);
  const size = Math.ceil(all.length / shards / 4) * 4 + 4;
  const paths: string[] = [];
  for (let i = 0, at = 0; at < all.length; i++, at += size) {
    const p = `group1-shard${i + 1}of${shards}.bin`;
    writeFileSync(join(dir, p), all.subarray(at, Math.min(at + size, all.length)));
    paths.push(p);
  }
  const json = {
    format: 'layers-model',
    generatedBy: 'graft test',
    convertedBy: null,
    modelTopology: { keras_version: '2.1.6', backend: 'tensorflow', model_config: tinyTopology(layers) },
    weightsManifest: [{ paths, weights: specs }],
  };
  writeFileSync(join(dir, 'model.json'), JSON.stringify(json));
  return dir;
}

/** TinyLayers for any KerasGraph, with the weights each layer owns for an input of `inputShape`. */
export function graphToTinyLayers(graph: KerasGraph, inputShape: number[]): TinyLayer[] {
  const shapes = inferShapes(graph, inputShape);
  return graph.layers.map((l) => ({
    name: l.name,
    className: l.className,
    config: l.config,
    inbound: l.inbound,
    weights: layerWeightSpecs(l, shapes.inputs.get(l.name) ?? []).map((w) => [w.name, w.shape] as [string, number[]]),
  }));
}
