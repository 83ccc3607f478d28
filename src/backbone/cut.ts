/** Cutting a backbone at a named layer: keep only what that layer's output depends on. */
import { GraftError } from '../util/errors.js';
import type { KerasGraph } from './keras-graph.js';

/** Layers that make natural cut points: block outputs (mixedN, ...) and the graph's outputs. */
function cutPoints(graph: KerasGraph): string[] {
  const blocks = graph.layers.filter((l) => l.className === 'Concatenate' || l.className === 'Add').map((l) => l.name);
  const pts = blocks.length > 0 ? blocks : graph.layers.map((l) => l.name);
  for (const o of graph.outputs) if (!pts.includes(o)) pts.push(o);
  return pts;
}

/** The sub-graph of `graph` whose output is layer `layerName` (its ancestors, in the same order). */
export function cutGraph(graph: KerasGraph, layerName: string): KerasGraph {
  const byName = new Map(graph.layers.map((l) => [l.name, l]));
  if (!byName.has(layerName)) {
    const pts = cutPoints(graph);
    const shown = pts.length > 24 ? [...pts.slice(0, 12), '...', ...pts.slice(-12)] : pts;
    throw new GraftError(`no layer named "${layerName}" in model ${graph.name}; valid cut points include: ${shown.join(', ')}`);
  }
  const keep = new Set<string>();
  const stack = [layerName];
  while (stack.length > 0) {
    const name = stack.pop()!;
    if (keep.has(name)) continue;
    keep.add(name);
    const layer = byName.get(name);
    if (layer) stack.push(...layer.inbound);
  }
  return {
    name: graph.name,
    layers: graph.layers.filter((l) => keep.has(l.name)),
    inputs: graph.inputs.filter((i) => keep.has(i)),
    outputs: [layerName],
  };
}
