/**
 * The fine-tuning engine's gradients against @tensorflow/tfjs autograd (tf.variableGrads on the cpu
 * backend) on the same Keras graph segment, real photos and the ImageNet weights: every trainable
 * weight (conv kernels, BN betas) within 1e-4 relative. The segments cover every layer kind of
 * InceptionV3: strided/'valid'/'same' convolutions of 1x1, 3x3, 5x5, 1x7, 7x1; inference-mode BN;
 * ReLU; max pooling (stem, mixed3); average pooling; concatenation and fan-out.
 */
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import { loadBackbone } from '../src/backbone/backbone.js';
import type { WeightMap } from '../src/backbone/keras-graph.js';
import { windowParams } from '../src/backbone/layer-shapes.js';
import { firstTunedLayer, trainableSegment, trainableCounts, type Segment } from '../src/train/finetune/segment.js';
import { inceptionV3Graph } from '../src/backbone/architectures/inception-v3.js';
import { cutGraph } from '../src/backbone/cut.js';
import { buildClassifierGraph } from '../src/model/classifier-graph.js';
import { LAB_HEAD } from '../src/model/head-spec.js';
import { headForClasses } from '../src/model/head.js';
import { summarizeModel } from '../src/model/summary.js';
import { parseHeadSpec } from '../src/model/head-spec-parse.js';
import { initHead } from '../src/model/head.js';
import { HeadTrainer } from '../src/train/head-trainer.js';
import { SegmentEngine } from '../src/train/finetune/segment-engine.js';
import { Random } from '../src/util/random.js';
import { GraftError } from '../src/util/errors.js';
import { labImagePaths, loadImages } from './support/images.js';

before(async () => {
  await tf.setBackend('cpu');
  await tf.ready();
});

/** The segment run with tfjs ops (BN unfolded, as tf.keras with training=False), trainables as variables. */
function tfjsSegment(segment: Segment, weights: WeightMap, vars: Map<string, tf.Variable>, x: tf.Tensor4D): tf.Tensor4D {
  const vals = new Map<string, tf.Tensor4D>([[segment.from, x]]);
  const constant = (key: string) => tf.tensor(weights.get(key)!.data, weights.get(key)!.shape);
  for (const l of segment.layers) {
    const ins = l.inbound.map((n) => vals.get(n)!);
    const c = l.config;
    let y: tf.Tensor4D;
    switch (l.className) {
      case 'Conv2D': {
        const { strides, padding } = windowParams(l);
        y = tf.conv2d(ins[0]!, vars.get(`${l.name}/kernel`) as tf.Variable<tf.Rank.R4>, strides, padding);
        if (c.use_bias !== false) y = tf.add(y, vars.get(`${l.name}/bias`)!);
        if (c.activation === 'relu') y = tf.relu(y);
        break;
      }
      case 'BatchNormalization':
        // (x - mean) / sqrt(var + eps) + beta (tf.batchNorm has no gradient without a scale).
        y = tf.add(tf.mul(tf.sub(ins[0]!, constant(`${l.name}/moving_mean`)), tf.rsqrt(tf.add(constant(`${l.name}/moving_variance`), Number(c.epsilon)))), vars.get(`${l.name}/beta`)!);
        break;
      case 'Activation':
        y = tf.relu(ins[0]!);
        break;
      case 'MaxPooling2D': {
        const { kernel, strides, padding } = windowParams(l);
        y = tf.maxPool(ins[0]!, kernel, strides, padding);
        break;
      }
      case 'AveragePooling2D': {
        // TF's 'same' average divides by the unpadded count. tfjs's avgPool does so forward, but its
        // gradient divides by the whole window: a padded 'valid' pool over the explicit count is exact.
        const { kernel, strides, padding } = windowParams(l);
        assert.ok(padding === 'same' && strides[0] === 1 && strides[1] === 1);
        const [, h, w] = ins[0]!.shape;
        const [ry, rx] = [(kernel[0] - 1) / 2, (kernel[1] - 1) / 2];
        const count = tf.tensor(Array.from({ length: h * w }, (_, i) => {
          const yy = Math.floor(i / w), xx = i % w;
          return (Math.min(h - 1, yy + ry) - Math.max(0, yy - ry) + 1) * (Math.min(w - 1, xx + rx) - Math.max(0, xx - rx) + 1);
        }), [1, h, w, 1]);
        const sum = tf.mul(tf.avgPool(tf.pad(ins[0]!, [[0, 0], [ry, ry], [rx, rx], [0, 0]]), kernel, 1, 'valid'), kernel[0] * kernel[1]);
        y = tf.div(sum, count);
        break;
      }
      case 'Concatenate':
        y = tf.concat(ins, 3);
        break;
      default:
        throw new Error(`no reference for ${l.className}`);
    }
    vals.set(l.name, y);
  }
  return vals.get(segment.to)!;
}

function relError(ours: Float32Array, ref: Float32Array): number {
  assert.equal(ours.length, ref.length);
  let diff = 0, scale = 0;
  for (let i = 0; i < ref.length; i++) {
    diff = Math.max(diff, Math.abs(ours[i]! - ref[i]!));
    scale = Math.max(scale, Math.abs(ref[i]!));
  }
  assert.ok(scale > 0, 'the reference gradient is all zeros: the check would prove nothing');
  return diff / scale;
}

/**
 * Gradients of L = sum(R * segment(x)) (R fixed random, so dL/dy = R) for real photos, by the
 * engine and by tfjs; `from` is where the trainable part starts, `to` the cut.
 */
async function checkSegment(from: string, to: string, size: number, images: number): Promise<void> {
  const full = await loadBackbone({ cut: to, inputSize: [size, size], threads: 1 });
  const below = from === 'input_1' ? null : await loadBackbone({ cut: from, inputSize: [size, size], threads: 1 });
  try {
    const segment = trainableSegment(full.graph, from, [size, size, 3]);
    const pixels = await loadImages(labImagePaths(images), size, size);
    const x = below ? await below.extractor.extract(pixels, images) : pixels;
    const engine = await SegmentEngine.create(segment, full.weights, { threads: 2 });
    try {
      const y = await engine.forward(x, images, true);
      // The engine's forward is the converter's network (weights folded on the fly).
      const direct = await full.extractor.extract(pixels, images);
      assert.ok(relError(y, direct) < 1e-5, `${from}->${to} forward differs from the backbone's`);
      const rng = new Random(7);
      const r = Float32Array.from({ length: y.length }, () => rng.next() * 2 - 1);
      const grads = await engine.backward(r, images);

      const vars = new Map(segment.trainable.map((t) => [t.key, tf.variable(tf.tensor(full.weights.get(t.key)!.data, t.shape))]));
      const xt = tf.tensor4d(x, [images, ...segment.inputShape] as [number, number, number, number]);
      const rt = tf.tensor(r, [images, ...segment.outputShape]);
      const ref = tf.variableGrads(() => tf.sum(tf.mul(tfjsSegment(segment, full.weights, vars, xt), rt)) as tf.Scalar, [...vars.values()]);
      let worst = 0, worstKey = '';
      const kinds = new Set<string>();
      for (const [i, t] of segment.trainable.entries()) {
        const expected = ref.grads[vars.get(t.key)!.name]!.dataSync() as Float32Array;
        const e = relError(grads[i]!, expected);
        kinds.add(t.name);
        if (e > worst) [worst, worstKey] = [e, t.key];
      }
      console.log(`# ${from}->${to} at ${size}x${size}, ${images} photos: ${segment.trainable.length} trainable weights (${[...kinds].join(', ')}), worst relative error ${worst.toExponential(2)} (${worstKey})`);
      assert.ok(worst < 1e-4, `${worstKey}: relative error ${worst}`);
      assert.equal(segment.trainable.length, grads.length);
      tf.dispose([xt, rt, ref.value, ...Object.values(ref.grads), ...vars.values()]);
    } finally {
      await engine.dispose();
    }
  } finally {
    await full.dispose();
    await below?.dispose();
  }
}

test('stem and mixed0 (strided/valid/same 1x1, 3x3, 5x5 convs; max and average pooling backward): gradients match tfjs', async () => {
  await checkSegment('input_1', 'mixed0', 75, 1);
});

test('mixed3 (strided valid 3x3 convs in a block, fan-out of mixed2): gradients match tfjs', async () => {
  await checkSegment('mixed2', 'mixed3', 75, 1);
});

test('mixed7 (1x7 and 7x1 convs, chained, four branches): gradients match tfjs', async () => {
  await checkSegment('mixed6', 'mixed7', 150, 1);
});

test('a layer inside a block does not split the network; trainable counts as Keras counts them', async () => {
  const full = await loadBackbone({ cut: 'mixed7', inputSize: [150, 150], threads: 1 });
  try {
    assert.throws(() => trainableSegment(full.graph, 'conv2d_70', [150, 150, 3]), (e: unknown) => e instanceof GraftError && /does not split the network/.test(e.message));
    assert.throws(() => trainableSegment(full.graph, 'mixed7', [150, 150, 3]), GraftError);
    // Keras counts the 8,975,264 weights up to mixed7 this way too: unfrozen kernels and betas trainable, the rest (moving statistics too) not.
    const counts = trainableCounts(full.graph, [150, 150, 3], 'mixed6');
    const frozen = trainableCounts(full.graph, [150, 150, 3], null);
    assert.equal(frozen.trainable, 0);
    assert.equal(counts.trainable + counts.nonTrainable, frozen.nonTrainable);
    assert.equal(frozen.nonTrainable, 8_975_264); // Keras's "Total params" of InceptionV3 up to mixed7
    // mixed7's ten convs: four 1x1 768->192 and six 1x7/7x1 192->192 kernels, plus ten betas of 192.
    assert.equal(counts.trainable, 4 * 768 * 192 + 6 * 7 * 192 * 192 + 10 * 192);
    // graft summary --fine-tune mixed6: Keras's lab counts (47,512,481 total, 38,537,217 trainable) with mixed7's block unfrozen.
    const base = cutGraph(inceptionV3Graph(), 'mixed7');
    const table = summarizeModel(buildClassifierGraph(base, headForClasses(2, LAB_HEAD)), [150, 150, 3], firstTunedLayer(base, 'mixed6', [150, 150, 3]));
    assert.match(table, /Total params: 47,512,481\nTrainable params: 40,677,249\nNon-trainable params: 6,835,232$/);
    assert.equal(38_537_217 + counts.trainable, 40_677_249);
  } finally {
    await full.dispose();
  }
});

test("the head's gradient with respect to its input features (flatten and gap heads, sharded first Dense) matches tfjs autograd", async () => {
  const cases = [
    { spec: 'flatten,dense:16:relu,dense:1:sigmoid', shape: [3, 3, 8], k: 1 },
    { spec: 'gap,dense:12:relu,dense:3:softmax', shape: [3, 3, 8], k: 3 },
  ];
  for (const { spec, shape, k } of cases) {
    const head = parseHeadSpec(spec);
    const params = initHead(head, shape, 5);
    const n = 5, size = shape.reduce((a, b) => a * b, 1);
    const rng = new Random(11);
    const features = Float32Array.from({ length: n * size }, () => rng.next() * 2 - 1);
    const labels = new Float32Array(n * k);
    for (let i = 0; i < n; i++) labels[k === 1 ? i : i * k + (i % k)] = k === 1 ? i % 2 : 1;
    // The reference uses the weights before the step's update, as the trainer's input gradient does.
    const dense = params.dense.map((d) => ({ kernel: tf.tensor2d(d.kernel.slice(), [d.inputSize, d.units]), bias: tf.tensor1d(d.bias.slice()) })); // copies: tfjs may keep the array, which the step updates
    const trainer = await HeadTrainer.create(head, params, { kind: 'rmsprop', learningRate: 1e-3 }, { seed: 1, featureShape: shape, threads: 2, inputGradient: true });
    try {
      const ours = new Float32Array(n * size);
      await trainer.trainStep(features, labels, n, ours);
      const y = tf.tensor2d(labels, [n, k]);
      const loss = (x: tf.Tensor) => {
        let h: tf.Tensor = head.layers[0]!.kind === 'gap' ? tf.mean(tf.reshape(x, [n, -1, shape[2]!]), 1) : tf.reshape(x, [n, size]);
        dense.forEach((d, i) => {
          h = tf.add(tf.matMul(h as tf.Tensor2D, d.kernel), d.bias);
          if (i < dense.length - 1) h = tf.relu(h);
        });
        const p = k === 1 ? tf.sigmoid(h) : tf.softmax(h);
        return k === 1
          ? tf.neg(tf.mean(tf.add(tf.mul(y, tf.log(p)), tf.mul(tf.sub(1, y), tf.log(tf.sub(1, p))))))
          : tf.neg(tf.mean(tf.sum(tf.mul(y, tf.log(p)), 1)));
      };
      const expected = tf.grad(loss)(tf.tensor(features, [n, ...shape])).dataSync() as Float32Array;
      const e = relError(ours, expected);
      console.log(`# ${spec}: dL/dfeatures relative error ${e.toExponential(2)}`);
      assert.ok(e < 1e-4, `${spec}: relative error ${e}`);
    } finally {
      await trainer.dispose();
    }
  }
});
