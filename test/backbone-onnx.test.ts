import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync, rmSync, truncateSync, statSync } from 'node:fs';
import { join } from 'node:path';
import onnxProto from 'onnx-proto';
import { loadTfjsLayersModel } from '../src/backbone/weights/tfjs-layers.js';
import { cutGraph } from '../src/backbone/cut.js';
import { kerasToOnnx } from '../src/backbone/onnx/convert.js';
import { createOrtExtractor } from '../src/backbone/engine.js';
import { loadBackbone } from '../src/backbone/backbone.js';
import { inferShapes } from '../src/backbone/layer-shapes.js';
import { GraftError } from '../src/util/errors.js';
import type { KerasGraph } from '../src/backbone/keras-graph.js';
import { sharedInceptionWeightsDir } from '../src/util/paths.js';
import { loadTfjsModel, tfjsForward, tf } from './support/tfjs-reference.js';
import { labImagePaths, loadImages } from './support/images.js';
import { graphToTinyLayers, tinyLayers, tinyWeights, writeTinyModel } from './support/tiny-model.js';
import { buildClassifierGraph } from '../src/model/classifier-graph.js';
import { parseHeadSpec } from '../src/model/head-spec-parse.js';

const fp32 = sharedInceptionWeightsDir('fp32');
const temps: string[] = [];
after(() => temps.forEach((d) => rmSync(d, { recursive: true, force: true })));

/** The tiny fixture's graph, without writing it. */
function parseTiny(): KerasGraph {
  const layers = tinyLayers();
  return { name: 'tiny', layers: layers.map(({ weights: _w, ...l }) => l), inputs: ['input_1'], outputs: [layers[layers.length - 1]!.name] };
}

/** max|a-b| / max|b| and mean |a-b|. */
function compare(a: Float32Array, b: Float32Array): { rel: number; mean: number } {
  assert.equal(a.length, b.length);
  let maxDiff = 0;
  let maxRef = 0;
  let sum = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i]! - b[i]!);
    maxDiff = Math.max(maxDiff, d);
    maxRef = Math.max(maxRef, Math.abs(b[i]!));
    sum += d;
  }
  return { rel: maxDiff / maxRef, mean: sum / a.length };
}

function cosine(a: Float32Array, b: Float32Array): number {
  let ab = 0;
  let aa = 0;
  let bb = 0;
  for (let i = 0; i < a.length; i++) {
    ab += a[i]! * b[i]!;
    aa += a[i]! * a[i]!;
    bb += b[i]! * b[i]!;
  }
  return ab / Math.sqrt(aa * bb);
}

test('InceptionV3 on onnxruntime matches tfjs-wasm on real photos (mixed7, mixed5; 150 and 299)', async () => {
  const full = await loadTfjsModel(fp32);
  const paths = labImagePaths(2);
  for (const cut of ['mixed7', 'mixed5']) {
    const ref = tf.model({ inputs: full.inputs, outputs: full.getLayer(cut).output as tf.SymbolicTensor });
    for (const size of [150, 299]) {
      const backbone = await loadBackbone({ cut, inputSize: [size, size] });
      try {
        const images = await loadImages(paths, size, size);
        const ours = await backbone.extractor.extract(images, paths.length);
        const theirs = await tfjsForward(ref, images, paths.length, [size, size, 3]);
        const { rel, mean } = compare(ours, theirs);
        console.log(`# ${cut} ${size}x${size}: ${backbone.outputShape.join('x')}, max rel err ${rel.toExponential(2)}, mean abs err ${mean.toExponential(2)}`);
        assert.ok(rel < 1e-4, `${cut} at ${size}: relative error ${rel}`);
      } finally {
        await backbone.dispose();
      }
    }
  }
  full.dispose();
});

test('fp16 and uint8 copies decode like tfjs does; fp16 features match fp32 (cosine > 0.9999)', async () => {
  const size = 150;
  const images = await loadImages(labImagePaths(2), size, size);
  const features = new Map<string, Float32Array>();
  for (const variant of ['fp32', 'fp16', 'uint8'] as const) {
    const dir = sharedInceptionWeightsDir(variant);
    const loaded = await loadTfjsLayersModel(dir);
    // Our dequantization equals tfjs's own decoding of the same files.
    const ref = await loadTfjsModel(dir);
    for (const layer of ['conv2d_1', 'batch_normalization_40', 'conv2d_70']) {
      const theirs = ref.getLayer(layer).getWeights();
      const names = ref.getLayer(layer).weights.map((w) => w.originalName.replace(/^.*?\//, `${layer}/`).replace(/:0$/, ''));
      for (let i = 0; i < theirs.length; i++) {
        const ours = loaded.weights.get(names[i]!)!;
        const want = theirs[i]!.dataSync() as Float32Array;
        assert.ok(ours, `${variant}: ${names[i]} missing`);
        assert.ok(compare(ours.data, want).rel < 1e-6, `${variant}: ${names[i]} differs from tfjs`);
      }
    }
    ref.dispose();
    const backbone = await loadBackbone({ weights: dir });
    features.set(variant, await backbone.extractor.extract(images, 2));
    await backbone.dispose();
  }
  const c16 = cosine(features.get('fp16')!, features.get('fp32')!);
  const c8 = cosine(features.get('uint8')!, features.get('fp32')!);
  console.log(`# cosine vs fp32: fp16 ${c16.toFixed(7)}, uint8 ${c8.toFixed(4)}`);
  assert.ok(c16 > 0.9999, `fp16 cosine ${c16}`);
  assert.ok(c8 > 0.9 && c8 < c16, `uint8 cosine ${c8}`);
});

test('tiny synthetic graph (conv+BN+relu, concat, BN, same avg/max pool, add, dense head) matches tfjs, dynamic and fixed size', async () => {
  const layers = tinyLayers();
  const dir = writeTinyModel(layers, tinyWeights(layers, 7));
  temps.push(dir);
  const loaded = await loadTfjsLayersModel(dir);
  const n = 3;
  const input = new Float32Array(n * 9 * 9 * 3).map((_, i) => Math.sin(i * 0.37) * 2);
  const ref = await loadTfjsModel(dir);
  const theirs = await tfjsForward(ref, input, n, [9, 9, 3]);
  // Intermediate output too (NHWC order after the internal NCHW layout).
  const mid = tf.model({ inputs: ref.inputs, outputs: ref.getLayer('add_1').output as tf.SymbolicTensor });
  const theirsMid = await tfjsForward(mid, input, n, [9, 9, 3]);
  for (const [inputSize, opset] of [[undefined, 13], [[9, 9], 17]] as const) {
    const bytes = kerasToOnnx(loaded.graph, loaded.weights, { inputSize: inputSize && [...inputSize], opset });
    const model = onnxProto.onnx.ModelProto.decode(bytes);
    const ops = model.graph!.node!.map((x) => x.opType);
    // BN after conv2d_1 is folded; the other two BNs become Mul+Add.
    assert.equal(ops.filter((o) => o === 'Conv').length, 2);
    assert.equal(ops.filter((o) => o === 'Mul').length, 2);
    const ex = await createOrtExtractor(bytes, [9, 9, 3], [3], { batchSize: 2 }); // 3 images: a batch of 2, then 1
    const ours = await ex.extract(input, n);
    await ex.dispose();
    const { rel } = compare(ours, theirs);
    assert.ok(rel < 1e-5, `head output, inputSize ${String(inputSize)}: rel err ${rel}`);
    const cut = cutGraph(loaded.graph, 'add_1');
    const midShape = inferShapes(cut, [9, 9, 3]).output.get('add_1')!;
    assert.deepEqual(midShape, [5, 5, 6]);
    const exMid = await createOrtExtractor(kerasToOnnx(cut, loaded.weights, { inputSize: inputSize && [...inputSize] }), [9, 9, 3], midShape);
    const oursMid = await exMid.extract(input, n);
    await exMid.dispose();
    assert.ok(compare(oursMid, theirsMid).rel < 1e-5, `add_1 output: rel err ${compare(oursMid, theirsMid).rel}`);
  }
  ref.dispose();
});

test('a whole classifier (backbone + gap/flatten heads from buildClassifierGraph) converts and matches tfjs', async () => {
  const backbone = cutGraph(parseTiny(), 'add_1');
  for (const spec of ['gap,dense:4:relu,dropout:0.5,dense:1:sigmoid', 'flatten,dense:5:linear,dense:3:softmax']) {
    const layers = graphToTinyLayers(buildClassifierGraph(backbone, parseHeadSpec(spec), 'tiny'), [9, 9, 3]);
    const dir = writeTinyModel(layers, tinyWeights(layers, 3), 1);
    temps.push(dir);
    const loaded = await loadTfjsLayersModel(dir);
    const n = 2;
    const input = new Float32Array(n * 9 * 9 * 3).map((_, i) => Math.cos(i * 0.11));
    const ref = await loadTfjsModel(dir);
    const theirs = await tfjsForward(ref, input, n, [9, 9, 3]);
    ref.dispose();
    const out = inferShapes(loaded.graph, [9, 9, 3]).output.get(loaded.graph.outputs[0]!)!;
    const ex = await createOrtExtractor(kerasToOnnx(loaded.graph, loaded.weights), [9, 9, 3], out);
    const ours = await ex.extract(input, n);
    await ex.dispose();
    assert.ok(compare(ours, theirs).rel < 1e-5, `${spec}: rel err ${compare(ours, theirs).rel}`);
  }
});

test('cutGraph keeps the ancestors only, and names valid cut points for an unknown layer', async () => {
  const { graph } = await loadTfjsLayersModel(fp32);
  const cut = cutGraph(graph, 'mixed2');
  assert.deepEqual(cut.outputs, ['mixed2']);
  assert.equal(cut.layers[cut.layers.length - 1]!.name, 'mixed2');
  assert.ok(!cut.layers.some((l) => l.name === 'mixed3' || l.name === 'conv2d_30'));
  assert.ok(cut.layers.some((l) => l.name === 'conv2d_1'));
  assert.throws(() => cutGraph(graph, 'mixed9'), (e: unknown) => e instanceof GraftError && /mixed9/.test(e.message) && /mixed7/.test(e.message) && /mixed0/.test(e.message));
  const odd = parseTiny();
  odd.layers[1] = { ...odd.layers[1]!, className: 'LeakyReLU', config: { alpha: 0.3 } };
  assert.throws(() => kerasToOnnx(odd, new Map()), (e: unknown) => e instanceof GraftError && /layer conv2d_1: Keras layer type LeakyReLU is not supported/.test(e.message));
  await assert.rejects(loadBackbone({ inputSize: [60, 60] }), (e: unknown) => e instanceof GraftError && /60x60 is too small/.test(e.message));
  // A cut past where the shared weights stop says how to get the rest.
  await assert.rejects(
    loadBackbone({ weights: sharedInceptionWeightsDir('fp32'), cut: 'mixed9' }),
    /stop at mixed7, before "mixed9": for a later cut use the full Keras ImageNet weights \(graft weights --download, or weights: 'FILE\.h5'\)/,
  );
});

test('bad weight folders give a GraftError naming the file', async () => {
  const layers = tinyLayers();
  const good = () => {
    const d = writeTinyModel(layers, tinyWeights(layers));
    temps.push(d);
    return d;
  };
  const expectError = async (dir: string, pattern: RegExp) =>
    assert.rejects(loadTfjsLayersModel(dir), (e: unknown) => e instanceof GraftError && pattern.test(e.message));

  await expectError(join(good(), 'nope'), /nope.*no such file/);

  let dir = good();
  writeFileSync(join(dir, 'model.json'), '{"format": "layers-model", ');
  await expectError(dir, /model\.json: not valid JSON/);

  dir = good();
  writeFileSync(join(dir, 'model.json'), JSON.stringify({ format: 'graph-model', modelTopology: { node: [] }, weightsManifest: [] }));
  await expectError(dir, /model\.json: a TF\.js "graph-model" is not supported/);

  dir = good();
  const json = JSON.parse(readFileSync(join(dir, 'model.json'), 'utf8'));
  writeFileSync(join(dir, 'model.json'), JSON.stringify({ ...json, modelTopology: undefined }));
  await expectError(dir, /model\.json: not a TF\.js layers model \(no modelTopology\)/);

  dir = good();
  rmSync(join(dir, 'group1-shard2of2.bin'));
  await expectError(dir, /group1-shard2of2\.bin: no such file/);

  dir = good();
  const shard = join(dir, 'group1-shard2of2.bin');
  const size = statSync(shard).size;
  truncateSync(shard, size - 8);
  await expectError(dir, new RegExp(`group1-shard2of2\\.bin: truncated weight shard: weight dense_1/bias \\[3\\] does not fit; expected ${size} bytes, found ${size - 8}`));

  // A middle shard cut short: the other shards keep the converter's full size.
  dir = good();
  const big = JSON.parse(readFileSync(join(dir, 'model.json'), 'utf8'));
  const all = Buffer.concat(big.weightsManifest[0].paths.map((p: string) => readFileSync(join(dir, p))));
  for (const p of big.weightsManifest[0].paths) rmSync(join(dir, p));
  const third = 400;
  big.weightsManifest[0].paths = ['a.bin', 'b.bin', 'c.bin'];
  writeFileSync(join(dir, 'a.bin'), all.subarray(0, third));
  writeFileSync(join(dir, 'b.bin'), all.subarray(third, 2 * third - 100)); // 100 bytes short
  writeFileSync(join(dir, 'c.bin'), all.subarray(2 * third));
  writeFileSync(join(dir, 'model.json'), JSON.stringify(big));
  // The shard ends at byte 700; dense/kernel occupies bytes 680..2408 (after 170 floats of conv and BN weights).
  await expectError(dir, /b\.bin: truncated weight shard: weight dense\/kernel \[54,8\] does not fit; expected 400 bytes, found 300/);

  dir = good();
  const j2 = JSON.parse(readFileSync(join(dir, 'model.json'), 'utf8'));
  j2.weightsManifest[0].weights[0].quantization = { dtype: 'int4' };
  writeFileSync(join(dir, 'model.json'), JSON.stringify(j2));
  await expectError(dir, /model\.json: weight conv2d_1\/kernel has unsupported dtype int4/);
});
