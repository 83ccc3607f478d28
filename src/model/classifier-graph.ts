import type { KerasGraph, KerasLayer } from '../backbone/keras-graph.js';
import type { HeadSpec } from './head-spec.js';

/** Keras's class names for the head's layer kinds. */
const CLASS_NAMES = { flatten: 'Flatten', gap: 'GlobalAveragePooling2D', avgpool: 'AveragePooling2D', maxpool: 'MaxPooling2D', dense: 'Dense', dropout: 'Dropout' } as const;
/** The base of the auto-generated Keras layer names (flatten, dense, dense_1, dropout, ...). */
const BASE_NAMES = { flatten: 'flatten', gap: 'global_average_pooling2d', avgpool: 'average_pooling2d', maxpool: 'max_pooling2d', dense: 'dense', dropout: 'dropout' } as const;

/** Head layers named as Keras would name them in a fresh session: dense, dense_1, ... */
export function headLayerNames(head: HeadSpec, taken: ReadonlySet<string> = new Set()): string[] {
  const counts = new Map<string, number>();
  return head.layers.map((spec) => {
    const base = BASE_NAMES[spec.kind];
    for (;;) {
      const n = counts.get(base) ?? 0;
      counts.set(base, n + 1);
      const name = n === 0 ? base : `${base}_${n}`;
      if (!taken.has(name)) return name;
    }
  });
}

/**
 * The whole classifier as one Keras graph: the (cut) backbone followed by the head's layers, the
 * backbone layers marked trainable=false. Used for summaries and exports.
 */
export function buildClassifierGraph(backbone: KerasGraph, head: HeadSpec, name = 'model'): KerasGraph {
  if (backbone.outputs.length !== 1) throw new Error('the backbone must have exactly one output');
  const frozen: KerasLayer[] = backbone.layers.map((l) => ({ ...l, config: { ...l.config, trainable: false } }));
  const names = headLayerNames(head, new Set(backbone.layers.map((l) => l.name)));
  let previous = backbone.outputs[0]!;
  const headLayers: KerasLayer[] = head.layers.map((spec, i) => {
    const layerName = names[i]!;
    const config: Record<string, unknown> = { name: layerName, trainable: true, dtype: 'float32' };
    if (spec.kind === 'dense') Object.assign(config, { units: spec.units, activation: spec.activation, use_bias: true });
    if (spec.kind === 'dropout') Object.assign(config, { rate: spec.rate });
    if (spec.kind === 'avgpool' || spec.kind === 'maxpool') Object.assign(config, { pool_size: [spec.pool, spec.pool], padding: 'valid', strides: [spec.stride, spec.stride] });
    if (spec.kind === 'flatten' || spec.kind === 'gap' || spec.kind === 'avgpool' || spec.kind === 'maxpool') config.data_format = 'channels_last';
    const layer: KerasLayer = { name: layerName, className: CLASS_NAMES[spec.kind], config, inbound: [previous] };
    previous = layerName;
    return layer;
  });
  return { name, layers: [...frozen, ...headLayers], inputs: [...backbone.inputs], outputs: [previous] };
}
