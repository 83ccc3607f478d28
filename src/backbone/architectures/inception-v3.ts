import type { KerasGraph, KerasLayer } from '../keras-graph.js';
import { kerasLayerOrder } from '../keras-layer-order.js';

/**
 * InceptionV3 without its classifier top (input_1 .. mixed10), written the way Keras
 * `applications/inception_v3.py` builds it, so that the layer names are the ones of the original
 * Keras ImageNet weights file (Keras 2.1 automatic names: conv2d_1, batch_normalization_1,
 * activation_1, max_pooling2d_1, average_pooling2d_1, concatenate_1 ...; blocks mixed0..mixed10).
 * Layer configs are Keras JSON configs, so shape inference, weight specs and the ONNX converter
 * read them like any model.json.
 */

type Pair = [number, number];

/** Creates layers with Keras 2.1's naming: an unnamed layer gets `<snake_case class>_<n>`, n from 1 per class. */
class GraphBuilder {
  readonly layers: KerasLayer[] = [];
  private readonly counters = new Map<string, number>();

  add(className: string, prefix: string, config: Record<string, unknown>, inbound: string[], name?: string): string {
    let layerName = name;
    if (layerName === undefined) {
      const n = (this.counters.get(prefix) ?? 0) + 1;
      this.counters.set(prefix, n);
      layerName = `${prefix}_${n}`;
    }
    this.layers.push({ name: layerName, className, config: { name: layerName, trainable: true, ...config }, inbound });
    return layerName;
  }

  /** Keras inception_v3.conv2d_bn: Conv2D without bias, BatchNormalization without scale, ReLU. */
  conv2dBn(x: string, filters: number, rows: number, cols: number, opts: { padding?: 'same' | 'valid'; strides?: Pair } = {}): string {
    const conv = this.add('Conv2D', 'conv2d', {
      filters,
      kernel_size: [rows, cols],
      strides: opts.strides ?? [1, 1],
      padding: opts.padding ?? 'same',
      data_format: 'channels_last',
      dilation_rate: [1, 1],
      activation: 'linear',
      use_bias: false,
    }, [x]);
    const bn = this.add('BatchNormalization', 'batch_normalization', {
      axis: 3,
      momentum: 0.99,
      epsilon: 0.001,
      center: true,
      scale: false,
    }, [conv]);
    return this.add('Activation', 'activation', { activation: 'relu' }, [bn]);
  }

  maxPool(x: string, size: number, stride: number, padding: 'same' | 'valid' = 'valid'): string {
    return this.add('MaxPooling2D', 'max_pooling2d', {
      pool_size: [size, size], strides: [stride, stride], padding, data_format: 'channels_last',
    }, [x]);
  }

  avgPool(x: string, size: number, stride: number, padding: 'same' | 'valid' = 'valid'): string {
    return this.add('AveragePooling2D', 'average_pooling2d', {
      pool_size: [size, size], strides: [stride, stride], padding, data_format: 'channels_last',
    }, [x]);
  }

  concat(inputs: string[], name?: string): string {
    return this.add('Concatenate', 'concatenate', { axis: 3 }, inputs, name);
  }
}

/** Stem: 299x299x3 -> 35x35x192. */
function stem(b: GraphBuilder, input: string): string {
  let x = b.conv2dBn(input, 32, 3, 3, { strides: [2, 2], padding: 'valid' });
  x = b.conv2dBn(x, 32, 3, 3, { padding: 'valid' });
  x = b.conv2dBn(x, 64, 3, 3);
  x = b.maxPool(x, 3, 2);
  x = b.conv2dBn(x, 80, 1, 1, { padding: 'valid' });
  x = b.conv2dBn(x, 192, 3, 3, { padding: 'valid' });
  return b.maxPool(x, 3, 2);
}

/** mixed0..mixed2: 35x35 blocks (1x1, 5x5, double 3x3, pooled 1x1 with `poolFilters`). */
function block35(b: GraphBuilder, x: string, poolFilters: number, name: string): string {
  const branch1x1 = b.conv2dBn(x, 64, 1, 1);
  let branch5x5 = b.conv2dBn(x, 48, 1, 1);
  branch5x5 = b.conv2dBn(branch5x5, 64, 5, 5);
  let branch3x3dbl = b.conv2dBn(x, 64, 1, 1);
  branch3x3dbl = b.conv2dBn(branch3x3dbl, 96, 3, 3);
  branch3x3dbl = b.conv2dBn(branch3x3dbl, 96, 3, 3);
  let branchPool = b.avgPool(x, 3, 1, 'same');
  branchPool = b.conv2dBn(branchPool, poolFilters, 1, 1);
  return b.concat([branch1x1, branch5x5, branch3x3dbl, branchPool], name);
}

/** mixed3: reduction 35x35 -> 17x17x768. */
function reduction17(b: GraphBuilder, x: string): string {
  const branch3x3 = b.conv2dBn(x, 384, 3, 3, { strides: [2, 2], padding: 'valid' });
  let branch3x3dbl = b.conv2dBn(x, 64, 1, 1);
  branch3x3dbl = b.conv2dBn(branch3x3dbl, 96, 3, 3);
  branch3x3dbl = b.conv2dBn(branch3x3dbl, 96, 3, 3, { strides: [2, 2], padding: 'valid' });
  const branchPool = b.maxPool(x, 3, 2);
  return b.concat([branch3x3, branch3x3dbl, branchPool], 'mixed3');
}

/** mixed4..mixed7: 17x17 blocks with factorised 7x7 convolutions of `c` inner filters. */
function block17(b: GraphBuilder, x: string, c: number, name: string): string {
  const branch1x1 = b.conv2dBn(x, 192, 1, 1);
  let branch7x7 = b.conv2dBn(x, c, 1, 1);
  branch7x7 = b.conv2dBn(branch7x7, c, 1, 7);
  branch7x7 = b.conv2dBn(branch7x7, 192, 7, 1);
  let branch7x7dbl = b.conv2dBn(x, c, 1, 1);
  branch7x7dbl = b.conv2dBn(branch7x7dbl, c, 7, 1);
  branch7x7dbl = b.conv2dBn(branch7x7dbl, c, 1, 7);
  branch7x7dbl = b.conv2dBn(branch7x7dbl, c, 7, 1);
  branch7x7dbl = b.conv2dBn(branch7x7dbl, 192, 1, 7);
  let branchPool = b.avgPool(x, 3, 1, 'same');
  branchPool = b.conv2dBn(branchPool, 192, 1, 1);
  return b.concat([branch1x1, branch7x7, branch7x7dbl, branchPool], name);
}

/** mixed8: reduction 17x17 -> 8x8x1280. */
function reduction8(b: GraphBuilder, x: string): string {
  let branch3x3 = b.conv2dBn(x, 192, 1, 1);
  branch3x3 = b.conv2dBn(branch3x3, 320, 3, 3, { strides: [2, 2], padding: 'valid' });
  let branch7x7x3 = b.conv2dBn(x, 192, 1, 1);
  branch7x7x3 = b.conv2dBn(branch7x7x3, 192, 1, 7);
  branch7x7x3 = b.conv2dBn(branch7x7x3, 192, 7, 1);
  branch7x7x3 = b.conv2dBn(branch7x7x3, 192, 3, 3, { strides: [2, 2], padding: 'valid' });
  const branchPool = b.maxPool(x, 3, 2);
  return b.concat([branch3x3, branch7x7x3, branchPool], 'mixed8');
}

/** mixed9, mixed10: 8x8x2048 blocks; `i` is 0 or 1 (names mixed9_<i>, mixed<9+i>). */
function block8(b: GraphBuilder, x: string, i: number): string {
  const branch1x1 = b.conv2dBn(x, 320, 1, 1);
  const branch3x3 = b.conv2dBn(x, 384, 1, 1);
  const branch3x3a = b.conv2dBn(branch3x3, 384, 1, 3);
  const branch3x3b = b.conv2dBn(branch3x3, 384, 3, 1);
  const branch3x3cat = b.concat([branch3x3a, branch3x3b], `mixed9_${i}`);
  let branch3x3dbl = b.conv2dBn(x, 448, 1, 1);
  branch3x3dbl = b.conv2dBn(branch3x3dbl, 384, 3, 3);
  const branch3x3dblA = b.conv2dBn(branch3x3dbl, 384, 1, 3);
  const branch3x3dblB = b.conv2dBn(branch3x3dbl, 384, 3, 1);
  const branch3x3dblCat = b.concat([branch3x3dblA, branch3x3dblB]); // unnamed in Keras: concatenate_<n>
  let branchPool = b.avgPool(x, 3, 1, 'same');
  branchPool = b.conv2dBn(branchPool, 192, 1, 1);
  return b.concat([branch1x1, branch3x3cat, branch3x3dblCat, branchPool], `mixed${9 + i}`);
}

export interface InceptionV3Options {
  /** [height, width, 3]; null for any size (Keras's default for include_top=False). */
  inputShape?: [number | null, number | null, 3];
}

/** Keras InceptionV3(include_top=False): input_1 .. mixed10, layers in Keras's own model order. */
export function inceptionV3Graph(opts: InceptionV3Options = {}): KerasGraph {
  const [h, w] = opts.inputShape ?? [null, null, 3];
  const b = new GraphBuilder();
  const input = b.add('InputLayer', 'input', { batch_input_shape: [null, h, w, 3], dtype: 'float32', sparse: false }, []);
  let x = stem(b, input);
  x = block35(b, x, 32, 'mixed0');
  x = block35(b, x, 64, 'mixed1');
  x = block35(b, x, 64, 'mixed2');
  x = reduction17(b, x);
  x = block17(b, x, 128, 'mixed4');
  x = block17(b, x, 160, 'mixed5');
  x = block17(b, x, 160, 'mixed6');
  x = block17(b, x, 192, 'mixed7');
  x = reduction8(b, x);
  x = block8(b, x, 0);
  x = block8(b, x, 1);
  return { name: 'inception_v3', layers: kerasLayerOrder(b.layers, [x]), inputs: [input], outputs: [x] };
}
