import { GraftError } from '../util/errors.js';
import type { KerasGraph, KerasLayer } from './keras-graph.js';

type Json = Record<string, unknown>;

/** Layer classes that are whole models (a functional model used as a layer of another). */
const NESTED_MODELS = new Set(['Functional', 'Model', 'Sequential']);

function isObject(v: unknown): v is Json {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Layer names a Keras inbound_nodes entry reads from (Keras 2 nested lists or Keras 3 keras_history). */
function inboundNames(nodes: unknown): string[] {
  if (!Array.isArray(nodes) || nodes.length === 0) return [];
  const node = nodes[0];
  if (Array.isArray(node)) {
    // Keras 2 / TF.js: [[["conv2d_1", 0, 0, {}], ...]]
    return node.map((t) => String((t as unknown[])[0]));
  }
  if (isObject(node)) {
    // Keras 3: {"args": [tensor | [tensors]], "kwargs": {}} with tensors {"config": {"keras_history": [name, 0, 0]}}
    const names: string[] = [];
    const visit = (v: unknown): void => {
      if (Array.isArray(v)) v.forEach(visit);
      else if (isObject(v)) {
        const hist = (v.config as Json | undefined)?.keras_history;
        if (Array.isArray(hist)) names.push(String(hist[0]));
      }
    };
    visit(node.args);
    return names;
  }
  return [];
}

/**
 * Reads a Keras functional-model topology (the `modelTopology` of a TF.js model.json, or the JSON of
 * Keras `model.to_json()`) into a KerasGraph. `source` names the file for error messages.
 */
export function parseKerasTopology(topology: unknown, source: string): KerasGraph {
  let config: unknown = topology;
  if (isObject(config) && isObject(config.model_config)) config = config.model_config;
  if (isObject(config) && isObject(config.config) && 'class_name' in config) {
    const cls = String(config.class_name);
    if (cls !== 'Model' && cls !== 'Functional') {
      throw new GraftError(`${source}: a ${cls} model is not supported; graft reads Keras functional models (Model/Functional)`, { file: source });
    }
    config = config.config;
  }
  if (!isObject(config) || !Array.isArray(config.layers)) {
    throw new GraftError(`${source}: not a Keras layers model (no model_config.config.layers)`, { file: source });
  }
  const layers: KerasLayer[] = config.layers.map((raw: unknown, i: number) => {
    if (!isObject(raw) || typeof raw.class_name !== 'string') {
      throw new GraftError(`${source}: layer #${i} has no class_name`, { file: source });
    }
    const cfg = isObject(raw.config) ? raw.config : {};
    const name = String(raw.name ?? cfg.name ?? `layer_${i}`);
    if (NESTED_MODELS.has(raw.class_name)) {
      throw new GraftError(
        `${source}: layer ${name} is a whole ${raw.class_name} model nested inside this one (as in x = base_model(inputs)); graft reads flat models: ` +
          `save the inner model on its own (base_model.save(...)), or build the outer one as Model(base_model.input, ...) like the lab`,
        { file: source },
      );
    }
    return { name, className: raw.class_name, config: cfg, inbound: inboundNames(raw.inbound_nodes) };
  });
  const ends = (v: unknown): string[] =>
    Array.isArray(v) ? (Array.isArray(v[0]) ? v.map((t) => String((t as unknown[])[0])) : [String(v[0])]) : [];
  const inputs = ends(config.input_layers);
  const outputs = ends(config.output_layers);
  return {
    name: String(config.name ?? 'model'),
    layers,
    inputs: inputs.length > 0 ? inputs : layers.filter((l) => l.className === 'InputLayer').map((l) => l.name),
    outputs: outputs.length > 0 ? outputs : [layers[layers.length - 1]!.name],
  };
}
