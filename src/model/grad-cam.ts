/**
 * Where a trained classifier looked (Grad-CAM at the cut layer): the backbone is rebuilt from the
 * saved model's own weights up to the cut (model.onnx gives only probabilities), runs on
 * onnxruntime for the feature map, and the head's gradient of the class score (head-gradient.ts)
 * weights its channels. The map is drawn over the picture as a PNG.
 */
import { existsSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import sharp from 'sharp';
import { cutGraph } from '../backbone/cut.js';
import { createOrtExtractor, type FeatureExtractor } from '../backbone/engine.js';
import { inferShapes } from '../backbone/layer-shapes.js';
import { kerasToOnnx } from '../backbone/onnx/convert.js';
import { loadTfjsLayersModel } from '../backbone/weights/tfjs-layers.js';
import { decodeBytesInto, decodeFullRgb, readImageFile } from '../data/decode.js';
import { preprocessParams } from '../data/preprocess.js';
import { GraftError } from '../util/errors.js';
import { readJsonFile } from '../util/json-file.js';
import { headLayerNames } from './classifier-graph.js';
import type { ClassifierInfo } from './classifier-info.js';
import { classScoreGradient, gradCamMap } from './head-gradient.js';
import { headFromWeightMap, type HeadParams } from './head.js';
import type { ImageInput } from './saved-classifier.js';

export interface Explanation {
  file: string;
  /** The class explained: the predicted one unless another was asked for. */
  classIndex: number;
  className: string;
  /** Class probabilities from this forward pass (equal to graft predict's up to float rounding). */
  probabilities: number[];
  /** The Grad-CAM map at the cut, [h, w] row-major, scaled to [0, 1] (all zeros when nothing counted for the class). */
  cam: Float32Array;
  camShape: [number, number];
  /** The picture as the model sees it (orientation as trained), at most `size` pixels a side, with the map over it. */
  overlay: Buffer;
}

export interface Explainer {
  info: ClassifierInfo;
  featureShape: number[];
  explain(image: ImageInput, opts?: { classIndex?: number; size?: number }): Promise<Explanation>;
  dispose(): Promise<void>;
}

/** The TF.js model folder of a run folder, a model/ folder or its model.json. */
function modelFolder(path: string): string {
  const target = resolve(path);
  if (basename(target) === 'model.json' && existsSync(target)) return dirname(target);
  for (const dir of [join(target, 'model'), target]) if (existsSync(join(dir, 'model.json'))) return dir;
  throw new GraftError(`${path}: no TF.js model here (Grad-CAM needs the weights in model/model.json, from graft train)`, { file: path });
}

/** Loads what Grad-CAM needs from a run folder (or its model/ folder): the backbone to the cut, and the head's weights. */
export async function loadExplainer(path: string, opts: { threads?: number } = {}): Promise<Explainer> {
  const dir = modelFolder(path);
  const modelJson = join(dir, 'model.json');
  const json = (await readJsonFile(modelJson)) as { userDefinedMetadata?: { graft?: ClassifierInfo } } | null;
  const info = json?.userDefinedMetadata?.graft;
  if (!info || info.format !== 'graft-classifier') throw new GraftError(`${modelJson}: not a classifier trained by graft (no graft metadata)`, { file: modelJson });
  const { graph, weights } = await loadTfjsLayersModel(dir);
  const backbone = cutGraph(graph, info.cut);
  const [h, w] = info.inputSize;
  const featureShape = inferShapes(backbone, [h, w, 3]).output.get(info.cut)!;
  const names = headLayerNames(info.head, new Set(backbone.layers.map((l) => l.name)));
  const params: HeadParams = headFromWeightMap(info.head, featureShape, weights, names, modelJson);
  const extractor: FeatureExtractor = await createOrtExtractor(kerasToOnnx(backbone, weights, { inputSize: [h, w] }), [h, w, 3], featureShape, {
    threads: opts.threads,
    batchSize: 1,
    label: `the backbone of ${dir}`,
  });
  const { scale, offset } = preprocessParams(info.preprocess);
  const pixels = new Uint8Array(h * w * 3);
  const input = new Float32Array(h * w * 3);
  return {
    info,
    featureShape,
    async explain(image, o = {}) {
      const name = typeof image === 'string' ? image : image.name;
      const bytes = typeof image === 'string' ? await readImageFile(image) : Buffer.from(image.bytes.buffer, image.bytes.byteOffset, image.bytes.byteLength);
      await decodeBytesInto(bytes, name, { width: w, height: h, interpolation: info.interpolation, orientation: info.orientation }, pixels);
      for (let i = 0; i < input.length; i++) input[i] = pixels[i]! * scale + offset;
      const features = (await extractor.extract(input, 1)).slice(0, featureShape.reduce((a, b) => a * b, 1));
      // The predicted class first (Keras's binary rule: class 1 only when p > 0.5), unless one was asked for.
      const probe = classScoreGradient(info.head, params, features, featureShape, 0);
      const p = probe.pass.probabilities;
      const predicted = p.length === 2 && info.classMode === 'binary' ? (p[1]! > 0.5 ? 1 : 0) : p.indexOf(Math.max(...p));
      const classIndex = o.classIndex ?? predicted;
      const { gradient } = classIndex === 0 ? probe : classScoreGradient(info.head, params, features, featureShape, classIndex);
      const cam = gradCamMap(features, gradient, featureShape);
      let max = 0;
      for (const v of cam) max = Math.max(max, v);
      if (max > 0) for (let i = 0; i < cam.length; i++) cam[i]! /= max;
      const camShape: [number, number] = [featureShape[0]!, featureShape[1]!];
      const overlay = await drawOverlay(bytes, name, info, cam, camShape, o.size ?? 448);
      return { file: name, classIndex, className: info.classes[classIndex]!, probabilities: p, cam, camShape, overlay };
    },
    dispose: () => extractor.dispose(),
  };
}

/** Jet colours (blue -> cyan -> yellow -> red) for t in [0, 1]. */
function jet(t: number): [number, number, number] {
  const c = (x: number) => Math.round(255 * Math.max(0, Math.min(1, x)));
  return [c(1.5 - Math.abs(4 * t - 3)), c(1.5 - Math.abs(4 * t - 2)), c(1.5 - Math.abs(4 * t - 1))];
}

/** The map upsampled bilinearly (pixel centres aligned) over the picture, half and half, as a PNG. */
export async function drawOverlay(bytes: Buffer, name: string, info: ClassifierInfo, cam: Float32Array, [ch, cw]: [number, number], size: number): Promise<Buffer> {
  const full = await decodeFullRgb(bytes, name, { orientation: info.orientation });
  const k = Math.min(1, size / Math.max(full.width, full.height));
  const W = Math.max(1, Math.round(full.width * k)), H = Math.max(1, Math.round(full.height * k));
  const picture = await sharp(full.data, { raw: { width: full.width, height: full.height, channels: 3 } }).resize(W, H, { fit: 'fill' }).raw().toBuffer();
  const out = Buffer.alloc(W * H * 3);
  for (let y = 0; y < H; y++) {
    const sy = Math.min(ch - 1, Math.max(0, ((y + 0.5) * ch) / H - 0.5));
    const y0 = Math.floor(sy), y1 = Math.min(ch - 1, y0 + 1), fy = sy - y0;
    for (let x = 0; x < W; x++) {
      const sx = Math.min(cw - 1, Math.max(0, ((x + 0.5) * cw) / W - 0.5));
      const x0 = Math.floor(sx), x1 = Math.min(cw - 1, x0 + 1), fx = sx - x0;
      const t = (cam[y0 * cw + x0]! * (1 - fx) + cam[y0 * cw + x1]! * fx) * (1 - fy) + (cam[y1 * cw + x0]! * (1 - fx) + cam[y1 * cw + x1]! * fx) * fy;
      const colour = jet(t);
      const i = (y * W + x) * 3;
      for (let c = 0; c < 3; c++) out[i + c] = Math.round(0.5 * picture[i + c]! + 0.5 * colour[c]!);
    }
  }
  return sharp(out, { raw: { width: W, height: H, channels: 3 } }).png().toBuffer();
}
