/**
 * The head's forward pass for one image in plain JS, and the gradient of a class score with
 * respect to the features at the cut (the head's input): what Grad-CAM needs. The head is Flatten,
 * GlobalAveragePooling2D or a grid pooling and Flatten, then Dense layers (Dropout is the
 * identity at inference).
 */
import { GraftError } from '../util/errors.js';
import { gridPoolBackward, gridPoolForward, gridShape } from './grid-pool.js';
import { headGridPool, headInputSize, type HeadParams } from './head.js';
import type { Activation, HeadSpec } from './head-spec.js';

export interface HeadPass {
  /** The output layer before its activation: the class scores Grad-CAM differentiates. */
  logits: Float32Array;
  /** Class probabilities (two classes: [1 - p, p] from the sigmoid). */
  probabilities: number[];
}

function activate(z: Float32Array, activation: Activation): Float32Array {
  const a = new Float32Array(z.length);
  if (activation === 'relu') for (let i = 0; i < z.length; i++) a[i] = z[i]! > 0 ? z[i]! : 0;
  else if (activation === 'sigmoid') for (let i = 0; i < z.length; i++) a[i] = 1 / (1 + Math.exp(-z[i]!));
  else if (activation === 'softmax') {
    let max = -Infinity, sum = 0;
    for (const v of z) max = Math.max(max, v);
    for (let i = 0; i < z.length; i++) sum += a[i] = Math.exp(z[i]! - max);
    for (let i = 0; i < z.length; i++) a[i]! /= sum;
  } else a.set(z);
  return a;
}

/** dL/dz from dL/da for an activation a = f(z) (`a` its output). */
function activationBackward(g: Float32Array, a: Float32Array, activation: Activation): Float32Array {
  const out = new Float32Array(g.length);
  if (activation === 'relu') for (let i = 0; i < g.length; i++) out[i] = a[i]! > 0 ? g[i]! : 0;
  else if (activation === 'sigmoid') for (let i = 0; i < g.length; i++) out[i] = g[i]! * a[i]! * (1 - a[i]!);
  else if (activation === 'softmax') {
    let dot = 0;
    for (let i = 0; i < g.length; i++) dot += g[i]! * a[i]!;
    for (let i = 0; i < g.length; i++) out[i] = a[i]! * (g[i]! - dot);
  } else out.set(g);
  return out;
}

interface Trace {
  pooled: Float32Array;
  /** Per Dense layer: its input, and its output after the activation. */
  dense: { input: Float32Array; output: Float32Array; activation: Activation }[];
  logits: Float32Array;
}

function checkShape(spec: HeadSpec, features: Float32Array, featureShape: number[]): void {
  const size = featureShape.reduce((a, b) => a * b, 1);
  if (features.length !== size) throw new GraftError(`head: ${features.length} feature values for shape [${featureShape.join(', ')}]`);
  if (spec.layers[0]?.kind === 'gap' && featureShape.length !== 3) throw new GraftError('head: global average pooling needs features [h, w, c]');
  const grid = headGridPool(spec);
  if (grid) gridShape(grid, featureShape);
}

function forward(spec: HeadSpec, params: HeadParams, features: Float32Array, featureShape: number[]): Trace {
  checkShape(spec, features, featureShape);
  let x: Float32Array;
  if (spec.layers[0]?.kind === 'gap') {
    const c = featureShape[2]!, positions = features.length / c;
    x = new Float32Array(c);
    for (let p = 0; p < positions; p++) for (let k = 0; k < c; k++) x[k]! += features[p * c + k]!;
    for (let k = 0; k < c; k++) x[k]! /= positions;
  } else if (headGridPool(spec)) {
    x = new Float32Array(headInputSize(spec, featureShape));
    gridPoolForward(headGridPool(spec)!, featureShape, features, 1, x);
  } else x = features; // Flatten of channels-last features is the same row-major order.
  const pooled = x;
  const dense: Trace['dense'] = [];
  let logits = new Float32Array(0);
  let d = 0;
  for (const layer of spec.layers) {
    if (layer.kind !== 'dense') continue;
    const p = params.dense[d++];
    if (!p || p.inputSize !== x.length) throw new GraftError(`head: Dense layer ${d} expects ${p?.inputSize} inputs, got ${x.length}`);
    const z = new Float32Array(p.units);
    z.set(p.bias);
    // Kernel [inputSize, units] row-major: z[j] = sum_i x[i] W[i, j].
    for (let i = 0; i < p.inputSize; i++) {
      const xi = x[i]!;
      if (xi === 0) continue;
      const row = i * p.units;
      for (let j = 0; j < p.units; j++) z[j]! += xi * p.kernel[row + j]!;
    }
    logits = z;
    const output = activate(z, layer.activation);
    dense.push({ input: x, output, activation: layer.activation });
    x = output;
  }
  if (dense.length === 0) throw new GraftError('the head has no Dense layer');
  return { pooled, dense, logits };
}

/** The head's output for one image's features (shape `featureShape`, channels last). */
export function headForward(spec: HeadSpec, params: HeadParams, features: Float32Array, featureShape: number[]): HeadPass {
  const t = forward(spec, params, features, featureShape);
  const out = t.dense.at(-1)!.output;
  return { logits: t.logits, probabilities: out.length === 1 ? [1 - out[0]!, out[0]!] : Array.from(out) };
}

/**
 * The gradient of class `classIndex`'s score with respect to the features (same shape). The score
 * is the output layer's value before its activation: the class's logit for softmax; for one
 * sigmoid unit, its logit z for class 1 and -z for class 0 (the logit of class 0's probability).
 */
export function classScoreGradient(
  spec: HeadSpec,
  params: HeadParams,
  features: Float32Array,
  featureShape: number[],
  classIndex: number,
): { gradient: Float32Array; pass: HeadPass } {
  const t = forward(spec, params, features, featureShape);
  const outUnits = t.logits.length;
  const classes = outUnits === 1 ? 2 : outUnits;
  if (!Number.isInteger(classIndex) || classIndex < 0 || classIndex >= classes) throw new GraftError(`class ${classIndex} is not one of the ${classes} classes`);
  // d score / d logits.
  let g: Float32Array = new Float32Array(outUnits);
  if (outUnits === 1) g[0] = classIndex === 1 ? 1 : -1;
  else g[classIndex] = 1;
  for (let l = t.dense.length - 1; l >= 0; l--) {
    const p = params.dense[l]!;
    if (l < t.dense.length - 1) g = activationBackward(g, t.dense[l]!.output, t.dense[l]!.activation);
    // d/d input: gx[i] = sum_j W[i, j] g[j].
    const gx = new Float32Array(p.inputSize);
    for (let i = 0; i < p.inputSize; i++) {
      const row = i * p.units;
      let s = 0;
      for (let j = 0; j < p.units; j++) s += p.kernel[row + j]! * g[j]!;
      gx[i] = s;
    }
    g = gx;
  }
  let gradient: Float32Array;
  if (spec.layers[0]?.kind === 'gap') {
    const c = featureShape[2]!, positions = features.length / c;
    gradient = new Float32Array(features.length);
    for (let p = 0; p < positions; p++) for (let k = 0; k < c; k++) gradient[p * c + k] = g[k]! / positions;
  } else if (headGridPool(spec)) {
    gradient = new Float32Array(features.length);
    gridPoolBackward(headGridPool(spec)!, featureShape, features, g, 1, gradient);
  } else gradient = g;
  const out = t.dense.at(-1)!.output;
  return { gradient, pass: { logits: t.logits, probabilities: out.length === 1 ? [1 - out[0]!, out[0]!] : Array.from(out) } };
}

/**
 * Grad-CAM over a [h, w, c] feature map: each channel weighted by the spatial mean of the class
 * score's gradient, summed, and ReLU'd. Returns h*w values (row-major), not normalised.
 */
export function gradCamMap(features: Float32Array, gradient: Float32Array, featureShape: number[]): Float32Array {
  if (featureShape.length !== 3) throw new GraftError(`Grad-CAM needs features [h, w, c], found [${featureShape.join(', ')}]`);
  const [h, w, c] = featureShape as [number, number, number];
  const positions = h * w;
  const weights = new Float64Array(c);
  for (let p = 0; p < positions; p++) for (let k = 0; k < c; k++) weights[k]! += gradient[p * c + k]!;
  for (let k = 0; k < c; k++) weights[k]! /= positions;
  const cam = new Float32Array(positions);
  for (let p = 0; p < positions; p++) {
    let s = 0;
    for (let k = 0; k < c; k++) s += weights[k]! * features[p * c + k]!;
    cam[p] = s > 0 ? s : 0;
  }
  return cam;
}
