/**
 * The reference forward pass: a TF.js layers-model folder run by @tensorflow/tfjs on its wasm
 * backend. Shared by the backbone tests and benchmark (tfjs is a dev dependency, never the engine).
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import '@tensorflow/tfjs-backend-wasm';
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

export { tf };
