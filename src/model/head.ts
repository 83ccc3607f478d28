import type { WeightMap } from '../backbone/keras-graph.js';
import { GraftError } from '../util/errors.js';
import { Random } from '../util/random.js';
import { headLayerNames } from './classifier-graph.js';
import { gridShape } from './grid-pool.js';
import { LAB_HEAD, type GridPoolSpec, type HeadLayerSpec, type HeadSpec } from './head-spec.js';

/**
 * `base` with its output layer set for `numClasses`: Dense(1, sigmoid) for two classes,
 * Dense(k, softmax) for more. A final output layer (see hasOutputLayer) is replaced, otherwise the
 * output is appended (so 'gap,dense:256:relu' gains an output layer).
 */
export function headForClasses(numClasses: number, base: HeadSpec = LAB_HEAD): HeadSpec {
  if (!Number.isInteger(numClasses) || numClasses < 2) throw new GraftError(`a classifier needs at least 2 classes, found ${numClasses}`);
  const output: HeadLayerSpec = numClasses === 2
    ? { kind: 'dense', units: 1, activation: 'sigmoid' }
    : { kind: 'dense', units: numClasses, activation: 'softmax' };
  return { layers: [...(hasOutputLayer(base) ? base.layers.slice(0, -1) : base.layers), output] };
}

/**
 * Whether the head ends in an output layer, which headForClasses replaces: a softmax Dense, or a
 * one-unit sigmoid Dense. A wider sigmoid Dense is a hidden layer (it is no output of a
 * single-label classifier), and the output follows it.
 */
export function hasOutputLayer(spec: HeadSpec): boolean {
  const last = spec.layers.at(-1);
  return last?.kind === 'dense' && (last.activation === 'softmax' || (last.activation === 'sigmoid' && last.units === 1));
}

/**
 * What a user should hear when the head they gave does not end as trained (`fitted`, from
 * headForClasses): an output layer changed to fit the classes, or a last layer that looks like an
 * output but stays hidden; null when it ends as written or simply gains its output layer.
 */
export function outputLayerNote(given: HeadSpec, fitted: HeadSpec): string | null {
  const last = given.layers.at(-1);
  const output = fitted.layers.at(-1);
  if (last?.kind !== 'dense' || output?.kind !== 'dense') return null;
  const spell = (d: { units: number; activation: string }) => `dense:${d.units}:${d.activation}`;
  const classes = output.activation === 'sigmoid' ? 2 : output.units;
  if (hasOutputLayer(given)) {
    if (last.units === output.units && last.activation === output.activation) return null;
    return `note: the head's output layer ${spell(last)} is fitted to the ${classes} classes: ${spell(output)}`;
  }
  if (last.activation === 'linear') {
    // Likely meant as the output (e.g. dense:3 for 3 classes): a linear layer straight before the output adds nothing.
    return `warning: the head ends with dense:${last.units} (linear), so the output layer ${spell(output)} is added after it; to make it the output layer, write ${spell(output)}`;
  }
  if (last.activation === 'sigmoid') {
    return `note: the head's last layer ${spell(last)} stays a hidden layer (a sigmoid output has 1 unit), and the output layer ${spell(output)} is added after it`;
  }
  return null;
}

/** One Dense layer's weights in Keras layout: kernel [inputSize, units] row-major, bias [units]. */
export interface DenseParams {
  inputSize: number;
  units: number;
  kernel: Float32Array;
  bias: Float32Array;
}

/** The head's trainable weights: one entry per Dense layer, in the spec's order. */
export interface HeadParams {
  dense: DenseParams[];
}

/** The head's grid pooling (avgpool/maxpool, its first layer), or undefined. */
export function headGridPool(spec: HeadSpec): GridPoolSpec | undefined {
  const first = spec.layers[0];
  return first?.kind === 'avgpool' || first?.kind === 'maxpool' ? first : undefined;
}

/**
 * The pooling the backbone can run for this head (loadBackbone's pool): 'avg' when the head starts
 * with GlobalAveragePooling2D, its grid pooling when it starts with AveragePooling2D or
 * MaxPooling2D: all the head reads of the features; else undefined (a Flatten head reads every
 * position).
 */
export function backbonePooling(spec: HeadSpec): 'avg' | GridPoolSpec | undefined {
  return spec.layers[0]?.kind === 'gap' ? 'avg' : headGridPool(spec);
}

/**
 * Length of the vector the first Dense layer sees, from the cut's feature shape: the flattened
 * features, the channels after GAP, or the flattened grid after a grid pooling.
 */
export function headInputSize(spec: HeadSpec, featureShape: number[]): number {
  if (featureShape.length === 0 || featureShape.some((d) => !Number.isInteger(d) || d <= 0)) {
    throw new GraftError(`bad feature shape [${featureShape.join(', ')}]`);
  }
  const first = spec.layers[0];
  if (first?.kind === 'gap') {
    if (featureShape.length !== 3) throw new GraftError(`GlobalAveragePooling2D needs features [h, w, c], found [${featureShape.join(', ')}]`);
    return featureShape[2]!;
  }
  if (first?.kind === 'avgpool' || first?.kind === 'maxpool') return gridShape(first, featureShape).reduce((a, b) => a * b, 1);
  return featureShape.reduce((a, b) => a * b, 1);
}

/** The Dense layers' [inputSize, units] in order, checking the spec's structure. */
export function denseShapes(spec: HeadSpec, featureShape: number[]): { inputSize: number; units: number }[] {
  let size = headInputSize(spec, featureShape);
  const out: { inputSize: number; units: number }[] = [];
  spec.layers.forEach((l, i) => {
    const afterGrid = l.kind === 'flatten' && i === 1 && headGridPool(spec) !== undefined;
    if ((l.kind === 'flatten' || l.kind === 'gap' || l.kind === 'avgpool' || l.kind === 'maxpool') && i !== 0 && !afterGrid) throw new GraftError(`head layer ${i + 1} (${l.kind}) must come first`);
    if (l.kind === 'dense') {
      out.push({ inputSize: size, units: l.units });
      size = l.units;
    }
  });
  if (out.length === 0) throw new GraftError('the head has no Dense layer');
  return out;
}

/**
 * Fresh weights as Keras initialises them: glorot_uniform kernels, U(±sqrt(6 / (fan_in + fan_out))),
 * and zero biases. Big kernels live on a SharedArrayBuffer so worker threads can read them.
 */
export function initHead(spec: HeadSpec, featureShape: number[], seed: number): HeadParams {
  const rng = new Random(seed);
  return {
    dense: denseShapes(spec, featureShape).map(({ inputSize, units }) => {
      const layerRng = rng.fork();
      const limit = Math.sqrt(6 / (inputSize + units));
      const kernel = new Float32Array(new SharedArrayBuffer(inputSize * units * 4));
      for (let i = 0; i < kernel.length; i++) kernel[i] = layerRng.uniform(-limit, limit);
      return { inputSize, units, kernel, bias: new Float32Array(units) };
    }),
  };
}

/** The Dense layers' names as Keras would give them (dense, dense_1, ...). */
function denseNames(spec: HeadSpec, names?: string[]): string[] {
  const all = names ?? headLayerNames(spec);
  return spec.layers.flatMap((l, i) => (l.kind === 'dense' ? [all[i]!] : []));
}

/** The head's weights under Keras names ("dense/kernel", "dense/bias", "dense_1/kernel", ...). */
export function headToWeightMap(spec: HeadSpec, params: HeadParams, names?: string[]): WeightMap {
  const map: WeightMap = new Map();
  denseNames(spec, names).forEach((name, i) => {
    const p = params.dense[i]!;
    map.set(`${name}/kernel`, { shape: [p.inputSize, p.units], data: p.kernel });
    map.set(`${name}/bias`, { shape: [p.units], data: p.bias });
  });
  return map;
}

/** The inverse of headToWeightMap, checking every shape; `sourceFile` names the file in errors. */
export function headFromWeightMap(
  spec: HeadSpec,
  featureShape: number[],
  map: WeightMap,
  names?: string[],
  sourceFile = 'the weights',
): HeadParams {
  const shapes = denseShapes(spec, featureShape);
  return {
    dense: denseNames(spec, names).map((name, i) => {
      const { inputSize, units } = shapes[i]!;
      const get = (key: string, shape: number[]) => {
        const t = map.get(key);
        if (!t) throw new GraftError(`${sourceFile}: missing weight ${key}`, { file: sourceFile });
        if (t.shape.length !== shape.length || t.shape.some((d, j) => d !== shape[j]) || t.data.length !== shape.reduce((a, b) => a * b, 1)) {
          throw new GraftError(`${sourceFile}: ${key} has shape [${t.shape.join(', ')}], expected [${shape.join(', ')}]`, { file: sourceFile });
        }
        return t.data;
      };
      return { inputSize, units, kernel: get(`${name}/kernel`, [inputSize, units]), bias: get(`${name}/bias`, [units]) };
    }),
  };
}
