/**
 * The reference forward pass: a TF.js layers-model folder run by @tensorflow/tfjs on its wasm
 * backend. Shared by the backbone tests and benchmark (tfjs is a dev dependency, never the engine).
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import '@tensorflow/tfjs-backend-wasm';
import type { WeightMap } from '../../src/backbone/keras-graph.js';
import { setThreadsCount } from '@tensorflow/tfjs-backend-wasm';

let ready: Promise<void> | undefined;

/** Switches tfjs to the wasm backend once (threads: the wasm thread pool size, where supported). */
export function useWasm(threads?: number): Promise<void> {
  ready ??= (async () => {
    if (threads !== undefined) setThreadsCount(threads);
    await tf.setBackend('wasm');
    await tf.ready();
  })();
  return ready;
}

/** Loads the layers model in `dir` with tfjs's own weight decoding, optionally cut at `cut`. */
export async function loadTfjsModel(dir: string, cut?: string): Promise<tf.LayersModel> {
  await useWasm();
  const handler: tf.io.IOHandler = {
    async load() {
      const json = JSON.parse(await readFile(join(dir, 'model.json'), 'utf8')) as tf.io.ModelJSON;
      const specs: tf.io.WeightsManifestEntry[] = [];
      const buffers: Buffer[] = [];
      for (const group of json.weightsManifest) {
        specs.push(...group.weights);
        for (const p of group.paths) buffers.push(await readFile(join(dir, p)));
      }
      const all = Buffer.concat(buffers);
      const weightData = all.buffer.slice(all.byteOffset, all.byteOffset + all.byteLength);
      return { modelTopology: json.modelTopology, weightSpecs: specs, weightData, format: json.format };
    },
  };
  const model = await tf.loadLayersModel(handler);
  if (!cut) return model;
  return tf.model({ inputs: model.inputs, outputs: model.getLayer(cut).output as tf.SymbolicTensor });
}

/** Runs `model` on n NHWC images of [h, w, c]; returns the output as a flat Float32Array. */
export async function tfjsForward(model: tf.LayersModel, input: Float32Array, n: number, shape: [number, number, number]): Promise<Float32Array> {
  const x = tf.tensor4d(input, [n, ...shape]);
  const y = model.predict(x) as tf.Tensor;
  const data = (await y.data()) as Float32Array;
  x.dispose();
  y.dispose();
  return data;
}

interface ModelJson {
  modelTopology: object;
  weightsManifest: { paths: string[]; weights: tf.io.WeightsManifestEntry[] }[];
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
  const fetchFunc = async (input: string | URL | Request): Promise<Response> => {
    const url = typeof input === 'string' ? input : input instanceof URL ? input.href : input.url;
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

export { tf };
