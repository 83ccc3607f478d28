import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import sharp from 'sharp';
import { parseKerasTopology } from '../src/backbone/topology.js';
import type { KerasGraph, WeightMap } from '../src/backbone/keras-graph.js';
import { buildClassifierGraph } from '../src/model/classifier-graph.js';
import { LAB_HEAD, type HeadSpec } from '../src/model/head-spec.js';
import { writeTfjsLayersModel } from '../src/export/tfjs-layers.js';
import { toUint8 } from '../src/export/quantize.js';
import { float16Bits } from '../src/util/float16.js';
import { GraftError } from '../src/util/errors.js';
import { Random } from '../src/util/random.js';
import { decodeImage } from '../src/data/decode.js';
import { sharedInceptionWeightsDir, sharedLabDataDir } from '../src/util/paths.js';
import { loadLayersModelFromDir, readFp32Weights, useWasm } from './support/tfjs-reference.js';

function randomTensor(rng: Random, shape: number[], limit: number) {
  const n = shape.reduce((a, b) => a * b, 1);
  const data = new Float32Array(n);
  for (let i = 0; i < n; i++) data[i] = rng.uniform(-limit, limit);
  return { shape, data };
}

/** Dense layer in float64: out[j] = act(sum_i x[i] k[i, j] + b[j]). */
function dense(x: ArrayLike<number>, k: Float32Array, b: Float32Array, units: number, act: 'relu' | 'sigmoid' | 'softmax'): number[] {
  const out = Array.from(b, Number);
  for (let i = 0; i < x.length; i++) {
    const xi = x[i]!;
    if (xi === 0) continue;
    const row = i * units;
    for (let j = 0; j < units; j++) out[j]! += xi * k[row + j]!;
  }
  if (act === 'relu') return out.map((v) => Math.max(0, v));
  if (act === 'sigmoid') return out.map((v) => 1 / (1 + Math.exp(-v)));
  const m = Math.max(...out);
  const e = out.map((v) => Math.exp(v - m));
  const s = e.reduce((a, v) => a + v, 0);
  return e.map((v) => v / s);
}

/** A "backbone" that is just its input, for small fast export checks. */
function inputOnly(channels: number): KerasGraph {
  return {
    name: 'tiny',
    layers: [{ name: 'input_1', className: 'InputLayer', config: { name: 'input_1', batch_input_shape: [null, null, null, channels], dtype: 'float32' }, inbound: [] }],
    inputs: ['input_1'],
    outputs: ['input_1'],
  };
}

test('float16 and uint8 encodings', () => {
  assert.equal(float16Bits(1), 0x3c00);
  assert.equal(float16Bits(-2), 0xc000);
  assert.equal(float16Bits(65504), 0x7bff);
  assert.equal(float16Bits(70000), 0x7c00);
  assert.equal(float16Bits(0.1), 0x2e66);
  assert.equal(float16Bits(2 ** -24), 0x0001);
  assert.equal(float16Bits(2 ** -26), 0);
  assert.equal(float16Bits(1 + 2 ** -11), 0x3c00); // tie -> even
  assert.equal(float16Bits(1 + 3 * 2 ** -11), 0x3c02); // tie -> even (up)
  const q = toUint8(new Float32Array([-1, 0, 0.5, 2]));
  assert.equal(q.values[1]! * q.scale + q.min, 0); // zero stays exact
  for (const [i, v] of [-1, 0, 0.5, 2].entries()) assert.ok(Math.abs(q.values[i]! * q.scale + q.min - v) <= q.scale / 2 + 1e-9);
});

test('a small Flatten/Dense/Dropout/softmax model exports in many shards, loads and predicts; quantised variants load', async () => {
  await useWasm();
  const root = await mkdtemp(join(tmpdir(), 'graft-export-'));
  try {
    const head: HeadSpec = { layers: [{ kind: 'flatten' }, { kind: 'dense', units: 5, activation: 'relu' }, { kind: 'dropout', rate: 0.5 }, { kind: 'dense', units: 2, activation: 'softmax' }] };
    const graph = buildClassifierGraph(inputOnly(2), head);
    const rng = new Random(7);
    const weights: WeightMap = new Map([
      ['dense/kernel', randomTensor(rng, [24, 5], 0.5)],
      ['dense/bias', randomTensor(rng, [5], 0.1)],
      ['dense_1/kernel', randomTensor(rng, [5, 2], 0.5)],
      ['dense_1/bias', randomTensor(rng, [2], 0.1)],
    ]);
    const dir = join(root, 'tiny');
    await writeTfjsLayersModel(graph, weights, dir, { shardBytes: 100, inputSize: [3, 4] });
    const json = JSON.parse(await readFile(join(dir, 'model.json'), 'utf8'));
    assert.equal(json.format, 'layers-model');
    assert.equal(json.generatedBy, 'graft');
    const paths: string[] = json.weightsManifest[0].paths;
    assert.equal(paths.length, Math.ceil((24 * 5 + 5 + 5 * 2 + 2) * 4 / 100));
    assert.deepEqual(paths.slice(0, 2), [`group1-shard1of${paths.length}.bin`, `group1-shard2of${paths.length}.bin`]);
    assert.deepEqual((await readdir(dir)).sort(), ['model.json', ...paths].sort());
    for (const p of paths) assert.ok((await stat(join(dir, p))).size <= 100);

    const model = await loadLayersModelFromDir(dir);
    assert.deepEqual(model.inputs[0]!.shape, [null, 3, 4, 2]);
    const x = randomTensor(rng, [24], 1).data;
    const got = (model.predict(tf.tensor(x, [1, 3, 4, 2])) as tf.Tensor).dataSync();
    const h = dense(x, weights.get('dense/kernel')!.data, weights.get('dense/bias')!.data, 5, 'relu');
    const want = dense(h, weights.get('dense_1/kernel')!.data, weights.get('dense_1/bias')!.data, 2, 'softmax');
    for (let j = 0; j < 2; j++) assert.ok(Math.abs(got[j]! - want[j]!) < 1e-6, `${got[j]} vs ${want[j]}`);
    model.dispose();

    // Quantised exports: what tfjs dequantises is within half a step of the original weights.
    for (const quantize of ['float16', 'uint8'] as const) {
      await writeTfjsLayersModel(graph, weights, dir, { quantize, inputSize: [3, 4] }); // replaces the previous export
      assert.deepEqual(await readdir(dir), ['group1-shard1of1.bin', 'model.json']);
      const q = await loadLayersModelFromDir(dir);
      const k = weights.get('dense/kernel')!.data;
      const loaded = q.getLayer('dense').getWeights()[0]!.dataSync();
      const tol = quantize === 'float16' ? (v: number) => Math.abs(v) * 2 ** -11 + 1e-7 : () => (1 / 255) * 0.5 + 1e-6;
      for (let i = 0; i < k.length; i++) assert.ok(Math.abs(loaded[i]! - k[i]!) <= tol(k[i]!), `${quantize} ${loaded[i]} vs ${k[i]}`);
      q.dispose();
    }

    // A wrong kernel shape is named, and nothing is written.
    const bad = new Map(weights);
    bad.set('dense/kernel', randomTensor(rng, [25, 5], 1));
    await assert.rejects(writeTfjsLayersModel(graph, bad, join(root, 'bad'), { inputSize: [3, 4] }), (e: unknown) => e instanceof GraftError && /dense\/kernel|dense weight kernel/.test(e.message));
    await assert.rejects(stat(join(root, 'bad')));
    // A folder that holds other files is not replaced.
    const other = join(root, 'other');
    await writeTfjsLayersModel(graph, weights, other, { inputSize: [3, 4] });
    await writeFile(join(other, 'notes.txt'), 'keep me');
    await assert.rejects(writeTfjsLayersModel(graph, weights, other, { inputSize: [3, 4] }), GraftError);
    assert.equal(await readFile(join(other, 'notes.txt'), 'utf8'), 'keep me');
    assert.deepEqual((await readdir(root)).sort(), ['other', 'tiny']); // no staging folders left behind
  } finally {
    await rm(root, { recursive: true, force: true });
  }
});

test('InceptionV3 mixed7 + lab head and + GAP/softmax head export and load in tfjs, matching the original backbone + a JS head', async () => {
  await useWasm();
  const srcDir = sharedInceptionWeightsDir('fp32');
  const srcJson = JSON.parse(await readFile(join(srcDir, 'model.json'), 'utf8'));
  const backbone = parseKerasTopology(srcJson.modelTopology, join(srcDir, 'model.json'));
  const backboneWeights = await readFp32Weights(srcDir);

  // Reference features: the original backbone, loaded as shipped.
  const files = [join(sharedLabDataDir(), 'validation', 'cats', 'cat.2000.jpg'), join(sharedLabDataDir(), 'validation', 'cats', 'cat.2001.jpg'),
    join(sharedLabDataDir(), 'validation', 'dogs', 'dog.2000.jpg'), join(sharedLabDataDir(), 'validation', 'dogs', 'dog.2001.jpg')];
  const pixels = new Float32Array(files.length * 150 * 150 * 3);
  for (const [n, f] of files.entries()) {
    const raw = await sharp(f).removeAlpha().resize(150, 150, { fit: 'fill', kernel: 'nearest' }).raw().toBuffer();
    for (let i = 0; i < raw.length; i++) pixels[n * raw.length + i] = raw[i]! / 255;
  }
  const x = tf.tensor(pixels, [files.length, 150, 150, 3]);
  const original = await loadLayersModelFromDir(srcDir);
  const features = (original.predict(x) as tf.Tensor).dataSync() as Float32Array; // [n, 7, 7, 768]
  original.dispose();
  const per = 7 * 7 * 768;

  const root = await mkdtemp(join(tmpdir(), 'graft-export-'));
  try {
    const rng = new Random(2024);
    const limit = Math.sqrt(6 / (per + 1024));
    const head: WeightMap = new Map([
      ['dense/kernel', randomTensor(rng, [per, 1024], limit)],
      ['dense/bias', randomTensor(rng, [1024], 0.05)],
      ['dense_1/kernel', randomTensor(rng, [1024, 1], Math.sqrt(6 / 1025))],
      ['dense_1/bias', randomTensor(rng, [1], 0.05)],
    ]);
    const lab = join(root, 'lab');
    await writeTfjsLayersModel(buildClassifierGraph(backbone, LAB_HEAD), new Map([...backboneWeights, ...head]), lab, { inputSize: [150, 150] });
    const model = await loadLayersModelFromDir(lab);
    assert.equal(model.layers.length, backbone.layers.length + 4);
    assert.equal(model.getLayer('mixed7').trainable, false);
    const got = (model.predict(x) as tf.Tensor).dataSync();
    model.dispose();
    for (let n = 0; n < files.length; n++) {
      const h = dense(features.subarray(n * per, (n + 1) * per), head.get('dense/kernel')!.data, head.get('dense/bias')!.data, 1024, 'relu');
      const [p] = dense(h, head.get('dense_1/kernel')!.data, head.get('dense_1/bias')!.data, 1, 'sigmoid');
      assert.ok(Math.abs(got[n]! - p!) < 1e-4, `${files[n]}: exported ${got[n]} vs reference ${p}`);
    }
    const shardSizes = await Promise.all((await readdir(lab)).filter((f) => f.endsWith('.bin')).map(async (f) => (await stat(join(lab, f))).size));
    assert.ok(Math.max(...shardSizes) <= 4 * 1024 * 1024);

    const gapHead: HeadSpec = { layers: [{ kind: 'gap' }, { kind: 'dense', units: 3, activation: 'softmax' }] };
    const gapWeights: WeightMap = new Map([['dense/kernel', randomTensor(rng, [768, 3], 0.2)], ['dense/bias', randomTensor(rng, [3], 0.1)]]);
    const gap = join(root, 'gap');
    await writeTfjsLayersModel(buildClassifierGraph(backbone, gapHead), new Map([...backboneWeights, ...gapWeights]), gap, { inputSize: [150, 150] });
    const gapModel = await loadLayersModelFromDir(gap);
    const gotGap = (gapModel.predict(x) as tf.Tensor).dataSync();
    gapModel.dispose();
    for (let n = 0; n < files.length; n++) {
      const pooled = new Float64Array(768);
      for (let p = 0; p < 49; p++) for (let c = 0; c < 768; c++) pooled[c]! += features[n * per + p * 768 + c]! / 49;
      const want = dense(pooled, gapWeights.get('dense/kernel')!.data, gapWeights.get('dense/bias')!.data, 3, 'softmax');
      for (let c = 0; c < 3; c++) assert.ok(Math.abs(gotGap[n * 3 + c]! - want[c]!) < 1e-4, `${files[n]} class ${c}: ${gotGap[n * 3 + c]} vs ${want[c]}`);
    }
  } finally {
    x.dispose();
    await rm(root, { recursive: true, force: true });
  }
});

test("the README's browser resize (PIL nearest via tf.gather) reproduces graft's decoded pixels exactly", async () => {
  await useWasm();
  // The README's own snippet, read from it: the test follows any edit of the README.
  const readme = await readFile(new URL('../README.md', import.meta.url), 'utf8');
  const snippet = /^const nearest = \(from, to\) => \{\n[\s\S]*?\n\};$/m.exec(readme)?.[0];
  assert.ok(snippet, "the README's browser snippet defines nearest(from, to)");
  const nearest = new Function('tf', `${snippet}\nreturn nearest;`)(tf) as (from: number, to: number) => tf.Tensor1D;
  const dir = join(sharedLabDataDir(), 'validation', 'dogs');
  const files = (await readdir(dir)).sort().slice(0, 12);
  for (const [h, w] of [[150, 150], [224, 160]] as const) {
    for (const f of files) {
      const { data, info } = await sharp(join(dir, f)).removeAlpha().raw().toBuffer({ resolveWithObject: true });
      const pixels = tf.tensor3d(new Uint8Array(data), [info.height, info.width, 3], 'int32');
      const x = tf.tidy(() => pixels.gather(nearest(info.height, h), 0).gather(nearest(info.width, w), 1));
      const ours = await decodeImage(join(dir, f), { width: w, height: h });
      assert.deepEqual(Uint8Array.from(x.dataSync()), ours, `${f} at ${h}x${w}`);
      tf.dispose([pixels, x]);
    }
  }
});
