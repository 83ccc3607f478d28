import type { KerasLayer } from './keras-graph.js';

/**
 * Puts layers in the order Keras 2 gives `Model.layers` (and hence model.json and the HDF5
 * `layer_names`): by depth, deepest first, where a layer's depth is its longest path to an output;
 * layers of equal depth in the order a depth-first walk from the outputs first reaches them.
 * Matching that order matters: Keras `load_weights` pairs a file's layers with a model's by it.
 * `layers` may come in any topological (e.g. creation) order.
 */
export function kerasLayerOrder(layers: KerasLayer[], outputs: string[]): KerasLayer[] {
  const byName = new Map(layers.map((l) => [l.name, l]));
  // Depth-first pre-order from the outputs, visiting inbound layers in order (Keras build_map_of_graph).
  const firstSeen = new Map<string, number>();
  const postOrder: string[] = [];
  const done = new Set<string>();
  const visit = (name: string): void => {
    if (done.has(name)) return;
    if (!firstSeen.has(name)) firstSeen.set(name, firstSeen.size);
    const layer = byName.get(name);
    if (!layer) throw new Error(`kerasLayerOrder: unknown layer ${name}`);
    for (const inbound of layer.inbound) visit(inbound);
    done.add(name);
    postOrder.push(name);
  };
  for (const out of outputs) visit(out);
  // Longest distance to an output: walk consumers before producers (reverse post-order).
  const depth = new Map<string, number>();
  for (let i = postOrder.length - 1; i >= 0; i--) {
    const name = postOrder[i]!;
    const d = depth.get(name) ?? 0;
    depth.set(name, d);
    for (const inbound of byName.get(name)!.inbound) depth.set(inbound, Math.max(depth.get(inbound) ?? 0, d + 1));
  }
  return postOrder
    .map((name) => byName.get(name)!)
    .sort((a, b) => depth.get(b.name)! - depth.get(a.name)! || firstSeen.get(a.name)! - firstSeen.get(b.name)!);
}
