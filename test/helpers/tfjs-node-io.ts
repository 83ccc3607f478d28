/**
 * Test-only helpers for plain @tensorflow/tfjs under Node (no tfjs-node): load a layers-model folder
 * from disk through tf.io.fromMemory, and read a TF.js model's fp32 weights into a graft WeightMap.
 */
import * as tf from '@tensorflow/tfjs';
import '@tensorflow/tfjs-backend-wasm';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { WeightMap } from '../../src/backbone/keras-graph.js';

interface ModelJson {
  modelTopology: object;
  weightsManifest: { paths: string[]; weights: tf.io.WeightsManifestEntry[] }[];
}

export async function useWasmBackend(): Promise<void> {
  await tf.setBackend('wasm');
  await tf.ready();
}

/** model.json plus all of its shards, concatenated in manifest order. */
export async function readModelFolder(dir: string): Promise<{ json: ModelJson; specs: tf.io.WeightsManifestEntry[]; data: ArrayBuffer }> {
  const json = JSON.parse(await readFile(join(dir, 'model.json'), 'utf8')) as ModelJson;
  const parts: Buffer[] = [];
  const specs: tf.io.WeightsManifestEntry[] = [];
  for (const group of json.weightsManifest) {
    for (const p of group.paths) parts.push(await readFile(join(dir, p)));
    specs.push(...group.weights);
  }
  const all = Buffer.concat(parts);
  return { json, specs, data: all.buffer.slice(all.byteOffset, all.byteOffset + all.byteLength) as ArrayBuffer };
}

/**
 * Loads a layers-model folder through tfjs's own HTTP loader, as a browser would (model.json, then
 * the shards its manifest names, relative to it), with fetch answered from the folder.
 */
export async function loadLayersModelFromDir(dir: string): Promise<tf.LayersModel> {
  const base = 'http://model.test/';
  const fetchFunc = async (url: string): Promise<Response> => {
    const file = join(dir, decodeURIComponent(new URL(url).pathname.slice(1)));
    try {
      return new Response(await readFile(file), { status: 200 });
    } catch {
      return new Response('not found', { status: 404 });
    }
  };
  return tf.loadLayersModel(tf.io.http(`${base}model.json`, { fetchFunc }));
}

/** The weights of an unquantised float32 TF.js model as a WeightMap. */
export async function readFp32Weights(dir: string): Promise<WeightMap> {
  const { specs, data } = await readModelFolder(dir);
  const map: WeightMap = new Map();
  let offset = 0;
  for (const s of specs) {
    if (s.dtype !== 'float32' || s.quantization) throw new Error(`${dir}: ${s.name} is not plain float32`);
    const n = s.shape.reduce((a, b) => a * b, 1);
    map.set(s.name, { shape: [...s.shape], data: new Float32Array(data, offset, n) });
    offset += 4 * n;
  }
  return map;
}
