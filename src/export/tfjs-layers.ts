import { randomBytes } from 'node:crypto';
import { readdir, rename, rm, stat } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import type { KerasGraph, KerasLayer, WeightMap } from '../backbone/keras-graph.js';
import { weightKey } from '../backbone/keras-graph.js';
import { inferShapes, layerWeightSpecs } from '../backbone/layer-shapes.js';
import { validateWeights } from '../backbone/validate-weights.js';
import { writeFileAtomic } from '../util/atomic.js';
import { describeFsError, GraftError } from '../util/errors.js';
import { makeFolder } from '../util/folders.js';
import { toFloat16, toUint8, type ManifestQuantization } from './quantize.js';

export interface TfjsExportOptions {
  /** Largest shard file in bytes; weights may straddle shards, as in tensorflowjs_converter. Default 4 MiB. */
  shardBytes?: number;
  /** Store weights as IEEE half floats or per-tensor affine uint8; tfjs dequantises on load. */
  quantize?: 'float16' | 'uint8';
  /**
   * Input [height, width] fixed in the exported InputLayer (a Flatten head needs a static shape).
   * Default: the graph's own input shape when it is fully known, else 150x150 (the lab's size).
   */
  inputSize?: [number, number];
  /** Stored as model.json's userDefinedMetadata (tf.LayersModel.getUserDefinedMetadata()). */
  metadata?: Record<string, unknown>;
}

interface ManifestWeight {
  name: string;
  shape: number[];
  dtype: 'float32';
  quantization?: ManifestQuantization;
}

const DEFAULT_SHARD_BYTES = 4 * 1024 * 1024;
const GLOROT = { class_name: 'GlorotUniform', config: { seed: null } };
const ZEROS = { class_name: 'Zeros', config: {} };

/** The input layer's [h, w, c] from its Keras config, when fully known. */
function staticInputShape(layer: KerasLayer | undefined): [number, number, number] | undefined {
  const s = (layer?.config.batch_input_shape ?? layer?.config.batch_shape) as unknown[] | undefined;
  if (!Array.isArray(s) || s.length !== 4) return undefined;
  const dims = s.slice(1).map((d) => (typeof d === 'number' ? d : NaN));
  return dims.every((d) => Number.isInteger(d) && d > 0) ? (dims as [number, number, number]) : undefined;
}

/**
 * A layer's config completed the way tfjs-layers (and Keras 2) write it, so every layer
 * deserialises: the input gets a static batch_input_shape, head layers get their initializers etc.
 */
function exportConfig(layer: KerasLayer, inputShape: [number, number, number]): Record<string, unknown> {
  const c: Record<string, unknown> = { ...layer.config, name: layer.name };
  switch (layer.className) {
    case 'InputLayer':
      delete c.batch_shape; // Keras 3 spelling; tfjs reads batch_input_shape
      return { ...c, batch_input_shape: [null, ...inputShape], dtype: 'float32', sparse: false };
    case 'Dense':
      return {
        activation: 'linear', use_bias: true,
        kernel_initializer: GLOROT, bias_initializer: ZEROS,
        kernel_regularizer: null, bias_regularizer: null, activity_regularizer: null,
        kernel_constraint: null, bias_constraint: null,
        ...c,
      };
    case 'Dropout':
      return { noise_shape: null, seed: null, ...c };
    case 'Flatten':
    case 'GlobalAveragePooling2D':
    case 'GlobalMaxPooling2D':
      return { data_format: 'channels_last', ...c };
    default:
      return c;
  }
}

/** The Keras functional-model JSON (model.to_json()) of `graph`. */
export function kerasModelTopology(graph: KerasGraph, inputShape: [number, number, number]): Record<string, unknown> {
  const ends = (names: string[]) => names.map((n) => [n, 0, 0]);
  return {
    class_name: 'Model',
    config: {
      name: graph.name,
      layers: graph.layers.map((l) => ({
        name: l.name,
        class_name: l.className,
        config: exportConfig(l, inputShape),
        inbound_nodes: l.inbound.length === 0 ? [] : [l.inbound.map((n) => [n, 0, 0, {}])],
      })),
      input_layers: ends(graph.inputs),
      output_layers: ends(graph.outputs),
    },
    // The layer configs are in Keras 2 form (batch_input_shape, nested inbound_nodes).
    keras_version: '2.1.5',
    backend: 'tensorflow',
  };
}

/** Bytes of every weight in manifest order (layer order, each layer's weights in Keras order). */
function encodeWeights(
  graph: KerasGraph,
  weights: WeightMap,
  inputShape: [number, number, number],
  quantize: TfjsExportOptions['quantize'],
): { specs: ManifestWeight[]; chunks: Uint8Array[] } {
  const shapes = inferShapes(graph, inputShape);
  const specs: ManifestWeight[] = [];
  const chunks: Uint8Array[] = [];
  for (const layer of graph.layers) {
    for (const spec of layerWeightSpecs(layer, shapes.inputs.get(layer.name) ?? [])) {
      const name = weightKey(layer.name, spec.name);
      const data = weights.get(name)!.data; // present and sized: validateWeights ran first
      const entry: ManifestWeight = { name, shape: spec.shape, dtype: 'float32' };
      if (quantize === 'float16') {
        const half = toFloat16(data);
        chunks.push(new Uint8Array(half.buffer, half.byteOffset, half.byteLength));
        entry.quantization = { dtype: 'float16' };
      } else if (quantize === 'uint8') {
        const q = toUint8(data);
        chunks.push(q.values);
        entry.quantization = { dtype: 'uint8', min: q.min, scale: q.scale };
      } else {
        // A view, not a copy: the shards are little-endian float32, as Float32Array is on every Node host.
        chunks.push(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
      }
      specs.push(entry);
    }
  }
  return { specs, chunks };
}

/** Splits the concatenation of `chunks` into shards of at most `shardBytes` without concatenating it first. */
function* shards(chunks: Uint8Array[], total: number, shardBytes: number): Generator<Uint8Array> {
  let ci = 0;
  let offset = 0;
  for (let start = 0; start < total; start += shardBytes) {
    const shard = new Uint8Array(Math.min(shardBytes, total - start));
    let filled = 0;
    while (filled < shard.length) {
      const chunk = chunks[ci]!;
      const n = Math.min(chunk.length - offset, shard.length - filled);
      shard.set(chunk.subarray(offset, offset + n), filled);
      filled += n;
      offset += n;
      if (offset === chunk.length) {
        ci++;
        offset = 0;
      }
    }
    yield shard;
  }
}

/** True when `dir` does not exist or holds nothing but a previous TF.js export (model.json, shards). */
async function replaceable(dir: string): Promise<boolean> {
  try {
    const st = await stat(dir);
    if (!st.isDirectory()) return false;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return true;
    throw describeFsError(err, dir);
  }
  const names = await readdir(dir);
  return names.every((n) => n === 'model.json' || /^group\d+-shard\d+of\d+\.bin$/.test(n));
}

/**
 * Writes `graph` with `weights` as a TF.js layers model (model.json + group1-shardNofM.bin) that plain
 * @tensorflow/tfjs `tf.loadLayersModel` loads. The files are written into a fresh folder beside
 * `dir`, which then replaces `dir` by rename, so a crash never leaves a half model in place.
 * `dir` must be absent, empty or a previous TF.js export. Returns the model.json path.
 */
export async function writeTfjsLayersModel(
  graph: KerasGraph,
  weights: WeightMap,
  dir: string,
  opts: TfjsExportOptions = {},
): Promise<string> {
  const target = resolve(dir);
  const shardBytes = opts.shardBytes ?? DEFAULT_SHARD_BYTES;
  if (!Number.isInteger(shardBytes) || shardBytes < 1) throw new GraftError(`TF.js export to ${target}: shard size must be a positive integer, got ${shardBytes}`);
  if (opts.quantize !== undefined && opts.quantize !== 'float16' && opts.quantize !== 'uint8') {
    throw new GraftError(`TF.js export to ${target}: unknown quantization "${String(opts.quantize)}" (use float16 or uint8)`);
  }
  const input = graph.layers.find((l) => l.name === graph.inputs[0]);
  const channels = Number((input?.config.batch_input_shape as unknown[] | undefined)?.[3] ?? 3) || 3;
  const inputShape: [number, number, number] = opts.inputSize
    ? [opts.inputSize[0], opts.inputSize[1], channels]
    : (staticInputShape(input) ?? [150, 150, channels]);
  validateWeights(graph, weights, inputShape, target);
  if (!(await replaceable(target))) {
    throw new GraftError(`cannot export a TF.js model to ${target}: it exists and holds other files; choose a new or empty folder`, { file: target });
  }

  const { specs, chunks } = encodeWeights(graph, weights, inputShape, opts.quantize);
  const total = chunks.reduce((s, c) => s + c.length, 0);
  const count = Math.max(1, Math.ceil(total / shardBytes));
  const paths = Array.from({ length: total === 0 ? 0 : count }, (_, i) => `group1-shard${i + 1}of${count}.bin`);

  const parent = dirname(target);
  const staging = join(parent, `.${basename(target)}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`);
  const old = `${staging}.old`;
  try {
    await makeFolder(staging);
    let i = 0;
    for (const shard of shards(chunks, total, shardBytes)) await writeFileAtomic(join(staging, paths[i++]!), shard);
    const modelJson = {
      format: 'layers-model',
      generatedBy: 'graft',
      convertedBy: null,
      modelTopology: kerasModelTopology(graph, inputShape),
      weightsManifest: [{ paths, weights: specs }],
      ...(opts.metadata ? { userDefinedMetadata: opts.metadata } : {}),
    };
    await writeFileAtomic(join(staging, 'model.json'), JSON.stringify(modelJson));
    // Swap folders: the old export (if any) moves aside, the new one takes its place, then the old goes.
    let hadOld = true;
    try {
      await rename(target, old);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      hadOld = false;
    }
    try {
      await rename(staging, target);
    } catch (err) {
      if (hadOld) await rename(old, target).catch(() => {}); // put the previous export back
      throw err;
    }
    if (hadOld) await rm(old, { recursive: true, force: true });
  } catch (err) {
    await rm(staging, { recursive: true, force: true }).catch(() => {});
    if (err instanceof GraftError) throw err;
    throw describeFsError(err, target, 'write');
  }
  return join(target, 'model.json');
}
