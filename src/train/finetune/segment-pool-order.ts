/**
 * The segment's pool branches in the order that costs least to train: InceptionV3's
 * AveragePooling2D (3x3, stride 1, 'same') -> 1x1 Conv2D -> BatchNormalization becomes
 * Conv2D -> BatchNormalization -> AveragePooling2D, before the ReLU.
 *
 * Exact: the convolution and the folded normalisation are one affine map per pixel, and TF's
 * 'same' average (padding not counted) weighs every window's pixels by weights summing to 1, so
 * the two commute, bias included. The pooling (forward and backward) then runs on the conv's
 * output channels (192 at mixed7) instead of its input's (768), and the conv's saved input is
 * the block's input, which other branches save anyway.
 */
import type { KerasLayer } from '../../backbone/keras-graph.js';
import { windowParams } from '../../backbone/layer-shapes.js';
import type { Segment } from './segment.js';

function isShapePreservingMeanPool(l: KerasLayer): boolean {
  if (l.className !== 'AveragePooling2D') return false;
  const { strides, padding } = windowParams(l);
  return padding === 'same' && strides[0] === 1 && strides[1] === 1;
}

function isLinearPointwiseConv(l: KerasLayer): boolean {
  if (l.className !== 'Conv2D') return false;
  const { kernel, strides } = windowParams(l);
  return kernel[0] === 1 && kernel[1] === 1 && strides[0] === 1 && strides[1] === 1 && (l.config.activation ?? 'linear') === 'linear';
}

/** `segment` with each such pool moved after its conv (and the conv's BatchNormalization); the backbone's graph is not changed. */
export function poolAfterAffine(segment: Segment): Segment {
  let layers = segment.layers;
  const shapes = new Map(segment.shapes);
  const inputShapes = new Map(segment.inputShapes);
  const readers = (name: string) => layers.filter((l) => l.inbound.includes(name));
  for (const pool of segment.layers) {
    if (!isShapePreservingMeanPool(pool)) continue;
    const [conv, ...others] = readers(pool.name);
    if (!conv || others.length > 0 || !isLinearPointwiseConv(conv) || readers(conv.name).length !== 1) continue;
    const next = readers(conv.name)[0]!;
    const last = next.className === 'BatchNormalization' ? next : conv;
    if ([pool.name, conv.name, last.name].includes(segment.to)) continue;
    // conv (and BN) read what the pool read; the pool reads their output; their readers read the pool.
    const moved = new Map<string, KerasLayer>([
      [conv.name, { ...conv, inbound: [...pool.inbound] }],
      [pool.name, { ...pool, inbound: [last.name] }],
    ]);
    const rewired = layers
      .filter((l) => l !== pool)
      .map((l) => moved.get(l.name) ?? (l !== last && l.inbound.includes(last.name) ? { ...l, inbound: l.inbound.map((i) => (i === last.name ? pool.name : i)) } : l));
    rewired.splice(rewired.findIndex((l) => l.name === last.name) + 1, 0, moved.get(pool.name)!);
    layers = rewired;
    inputShapes.set(conv.name, segment.inputShapes.get(pool.name)!);
    shapes.set(pool.name, segment.shapes.get(last.name)!);
    inputShapes.set(pool.name, [segment.shapes.get(last.name)!]);
  }
  return { ...segment, layers, shapes, inputShapes };
}
