/** A Keras-style `model.summary()` table of a functional graph (Keras 2's print_summary layout). */
import type { KerasGraph, KerasLayer } from '../backbone/keras-graph.js';
import { GraftError } from '../util/errors.js';
import { inferShapes, layerWeightSpecs, shapeSize, type Shape } from '../backbone/layer-shapes.js';

const LINE_LENGTH = 98;
/** Column ends, as Keras computes them: [.33, .55, .67, 1] of the line length. */
const POSITIONS = [0.33, 0.55, 0.67, 1].map((p) => Math.floor(LINE_LENGTH * p));

function row(fields: string[]): string {
  let line = '';
  fields.forEach((f, i) => {
    if (i > 0) line = `${line.slice(0, -1)} `;
    line = (line + f).slice(0, POSITIONS[i]);
    line += ' '.repeat(POSITIONS[i]! - line.length);
  });
  return line.trimEnd();
}

const thousands = (n: number): string => n.toLocaleString('en-US');

/**
 * Which layers train: by default each layer's config.trainable (true when absent); with
 * `trainableFrom`, the layers from that one on (in topological order) train and those before are frozen.
 */
export type TrainableFrom = string | undefined;

export interface ParamCounts {
  total: number;
  trainable: number;
  nonTrainable: number;
}

function isTrainable(layer: KerasLayer, index: number, fromIndex: number): boolean {
  if (fromIndex >= 0) return index >= fromIndex;
  return layer.config.trainable !== false;
}

/** Total / trainable / non-trainable parameter counts of `graph` for `inputShape`. */
export function countParams(graph: KerasGraph, inputShape: Shape, trainableFrom?: TrainableFrom): ParamCounts {
  const shapes = inferShapes(graph, inputShape);
  const fromIndex = trainableFrom ? graph.layers.findIndex((l) => l.name === trainableFrom) : -1;
  if (trainableFrom && fromIndex < 0) throw new GraftError(`no layer named "${trainableFrom}" in model ${graph.name} to train from`);
  let total = 0;
  let trainable = 0;
  graph.layers.forEach((layer, i) => {
    for (const w of layerWeightSpecs(layer, shapes.inputs.get(layer.name) ?? [])) {
      const n = shapeSize(w.shape);
      total += n;
      if (w.trainable && isTrainable(layer, i, fromIndex)) trainable += n;
    }
  });
  return { total, trainable, nonTrainable: total - trainable };
}

/** The summary table of `graph` for an input of `inputShape` ([h, w, c]). */
export function summarizeModel(graph: KerasGraph, inputShape: Shape, trainableFrom?: TrainableFrom): string {
  const shapes = inferShapes(graph, inputShape);
  const lines = [`Model: "${graph.name}"`, '_'.repeat(LINE_LENGTH), row(['Layer (type)', 'Output Shape', 'Param #', 'Connected to']), '='.repeat(LINE_LENGTH)];
  graph.layers.forEach((layer, i) => {
    const params = layerWeightSpecs(layer, shapes.inputs.get(layer.name) ?? []).reduce((s, w) => s + shapeSize(w.shape), 0);
    const shape = `(None, ${shapes.output.get(layer.name)!.join(', ')})`;
    const links = layer.inbound.map((n) => `${n}[0][0]`);
    lines.push(row([`${layer.name} (${layer.className})`, shape, String(params), links[0] ?? '']));
    for (const link of links.slice(1)) lines.push(row(['', '', '', link]));
    lines.push((i === graph.layers.length - 1 ? '=' : '_').repeat(LINE_LENGTH));
  });
  const counts = countParams(graph, inputShape, trainableFrom);
  lines.push(`Total params: ${thousands(counts.total)}`);
  lines.push(`Trainable params: ${thousands(counts.trainable)}`);
  lines.push(`Non-trainable params: ${thousands(counts.nonTrainable)}`);
  return lines.join('\n');
}
