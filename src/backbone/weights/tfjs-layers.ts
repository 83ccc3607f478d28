/**
 * Reads a TF.js "layers-model" folder (model.json + binary weight shards) into a KerasGraph and a
 * WeightMap, dequantizing float16 and uint8/uint16 affine weights to float32.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { GraftError, describeFsError } from '../../util/errors.js';
import type { KerasGraph, WeightMap } from '../keras-graph.js';
import { parseKerasTopology } from '../topology.js';
import { FLOAT16_TO_FLOAT32 } from '../../util/float16.js';
import { readJsonFile } from '../../util/json-file.js';

export interface LoadedWeights {
  graph: KerasGraph;
  weights: WeightMap;
  /** The file the model came from (for messages). */
  source: string;
}

interface ManifestEntry {
  name: string;
  shape: number[];
  dtype: string;
  quantization?: { dtype: string; min?: number; scale?: number };
}

interface ManifestGroup {
  paths: string[];
  weights: ManifestEntry[];
}

type Json = Record<string, unknown>;

function isObject(v: unknown): v is Json {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Bytes one value of `entry` occupies in the shard, or null for an unknown dtype. */
function storedBytes(entry: ManifestEntry): number | null {
  const q = entry.quantization?.dtype;
  if (q !== undefined) return q === 'float16' || q === 'uint16' ? 2 : q === 'uint8' ? 1 : null;
  return entry.dtype === 'float32' || entry.dtype === 'int32' ? 4 : null;
}

function decode(entry: ManifestEntry, bytes: Uint8Array): Float32Array {
  const n = entry.shape.reduce((a, b) => a * b, 1);
  const out = new Float32Array(n);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const q = entry.quantization;
  if (!q) {
    if (entry.dtype === 'int32') for (let i = 0; i < n; i++) out[i] = view.getInt32(i * 4, true);
    else for (let i = 0; i < n; i++) out[i] = view.getFloat32(i * 4, true);
  } else if (q.dtype === 'float16') {
    for (let i = 0; i < n; i++) out[i] = FLOAT16_TO_FLOAT32[view.getUint16(i * 2, true)]!;
  } else {
    const min = Number(q.min ?? 0);
    const scale = Number(q.scale ?? 1);
    if (q.dtype === 'uint8') for (let i = 0; i < n; i++) out[i] = bytes[i]! * scale + min;
    else for (let i = 0; i < n; i++) out[i] = view.getUint16(i * 2, true) * scale + min;
  }
  return out;
}


/**
 * The error for a group whose shards hold fewer bytes than its manifest needs. The converter writes
 * equal-sized shards but the last, so a shorter earlier shard is the one cut short; otherwise the
 * last is. Names that shard, the weight lying across its end, and expected vs found bytes.
 */
function truncated(shards: { path: string; bytes: Uint8Array }[], entries: ManifestEntry[], file: string): GraftError {
  const full = shards[0]!.bytes.byteLength;
  let index = shards.findIndex((s, i) => i < shards.length - 1 && s.bytes.byteLength < full);
  if (index < 0) index = shards.length - 1;
  const start = shards.slice(0, index).reduce((sum, s) => sum + s.bytes.byteLength, 0);
  const found = shards[index]!.bytes.byteLength;
  const needTotal = entries.reduce((sum, e) => sum + e.shape.reduce((a, b) => a * b, 1) * (storedBytes(e) ?? 4), 0);
  const expected = index < shards.length - 1 ? full : needTotal - start;
  // The weight whose bytes cross the end of what the shard holds.
  let offset = 0;
  let victim = entries[entries.length - 1]!;
  for (const e of entries) {
    const end = offset + e.shape.reduce((a, b) => a * b, 1) * (storedBytes(e) ?? 4);
    if (end > start + found) {
      victim = e;
      break;
    }
    offset = end;
  }
  const path = shards[index]!.path;
  return new GraftError(
    `${path}: truncated weight shard: weight ${victim.name} [${victim.shape.join(',')}] does not fit; expected ${expected} bytes, found ${found}`,
    { file: path },
  );
}

/** Loads the TF.js layers model in folder `dir` (or the model.json file itself). */
export async function loadTfjsLayersModel(dir: string): Promise<LoadedWeights> {
  const file = dir.endsWith('.json') ? dir : join(dir, 'model.json');
  const folder = dir.endsWith('.json') ? join(dir, '..') : dir;
  const json = await readJsonFile(file);
  if (!isObject(json)) throw new GraftError(`${file}: not a TF.js model.json (expected a JSON object)`, { file });
  if (json.format !== undefined && json.format !== 'layers-model') {
    throw new GraftError(`${file}: a TF.js "${String(json.format)}" is not supported; graft needs a "layers-model" (Keras topology + weights)`, { file });
  }
  if (!isObject(json.modelTopology)) {
    throw new GraftError(`${file}: not a TF.js layers model (no modelTopology)`, { file });
  }
  if (!Array.isArray(json.weightsManifest)) {
    throw new GraftError(`${file}: not a TF.js layers model (no weightsManifest)`, { file });
  }
  const graph = parseKerasTopology(json.modelTopology, file);
  const weights: WeightMap = new Map();
  for (const rawGroup of json.weightsManifest as unknown[]) {
    const group = rawGroup as ManifestGroup;
    if (!isObject(rawGroup) || !Array.isArray(group.paths) || !Array.isArray(group.weights)) {
      throw new GraftError(`${file}: weightsManifest group without paths/weights`, { file });
    }
    // The group's shards form one byte stream; weights follow each other in manifest order.
    const shards: { path: string; bytes: Uint8Array }[] = [];
    for (const p of group.paths) {
      const shardFile = join(folder, p);
      try {
        shards.push({ path: shardFile, bytes: await readFile(shardFile) });
      } catch (err) {
        throw describeFsError(err, shardFile);
      }
    }
    const total = shards.reduce((s, x) => s + x.bytes.byteLength, 0);
    const stream = new Uint8Array(total);
    let at = 0;
    for (const s of shards) {
      stream.set(s.bytes, at);
      at += s.bytes.byteLength;
    }
    let offset = 0;
    for (const entry of group.weights) {
      const per = storedBytes(entry);
      if (per === null) {
        const dt = entry.quantization?.dtype ?? entry.dtype;
        throw new GraftError(`${file}: weight ${entry.name} has unsupported dtype ${dt} (expected float32, or float16/uint8/uint16 quantization)`, { file });
      }
      const n = entry.shape.reduce((a, b) => a * b, 1);
      const need = n * per;
      if (offset + need > total) throw truncated(shards, group.weights, file);
      const name = entry.name.replace(/:0$/, '');
      weights.set(name, { shape: [...entry.shape], data: decode(entry, stream.subarray(offset, offset + need)) });
      offset += need;
    }
  }
  return { graph, weights, source: file };
}
