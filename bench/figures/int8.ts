/**
 * The int8 backbone against fp32, InceptionV3 to mixed7 at 150x150 ([0,1] inputs, the lab's) and
 * 299x299 ([-1,1], the default recipe's): images/s of both, measured in interleaved windows in
 * the same run (so background load hits both alike; the median window counts), their ratio, and
 * the cosine similarity of int8 features to fp32 ones (mean and worst) over 300 validation photos,
 * calibrated on 300 training photos of the same set. Also the share of Convs onnxruntime fused
 * into int8 kernels (QLinearConv) in its optimised graph.
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import onnxProto from 'onnx-proto';
import * as ort from 'onnxruntime-node';
import type { Report } from '../bench.js';
import { calibrateRanges, type CalibrationMethod, type CalibrationSource } from '../../src/backbone/calibrate.js';
import { cutGraph } from '../../src/backbone/cut.js';
import { createOrtExtractor, type FeatureExtractor } from '../../src/backbone/engine.js';
import { inferShapes } from '../../src/backbone/layer-shapes.js';
import { kerasToOnnx } from '../../src/backbone/onnx/convert.js';
import { quantizeQdq } from '../../src/backbone/onnx/quantize-qdq.js';
import { loadTfjsLayersModel } from '../../src/backbone/weights/tfjs-layers.js';
import { sharedInceptionWeightsDir, sharedLabDataDir } from '../../src/util/paths.js';
import { loadImages } from '../../test/support/images.js';

const IMAGES = Number(process.env.GRAFT_BENCH_INT8_IMAGES ?? 300);
const METHODS = (process.env.GRAFT_BENCH_INT8_METHODS ?? 'minmax').split(',') as CalibrationMethod[];

/** `count` photos of the lab's `split`, cats and dogs alternately. */
function photos(split: 'train' | 'validation', count: number): string[] {
  const dir = join(sharedLabDataDir(), split);
  const lists = ['cats', 'dogs'].map((c) => readdirSync(join(dir, c)).sort().map((f) => join(dir, c, f)));
  return Array.from({ length: count }, (_, i) => lists[i % 2]![Math.floor(i / 2)]!);
}

async function preprocessed(paths: string[], size: number, signed: boolean): Promise<Float32Array> {
  const x = await loadImages(paths, size, size);
  if (signed) for (let i = 0; i < x.length; i++) x[i] = x[i]! * 2 - 1;
  return x;
}

function cosines(a: Float32Array, b: Float32Array, n: number): { mean: number; worst: number } {
  const per = a.length / n;
  let sum = 0, worst = 1;
  for (let i = 0; i < n; i++) {
    let ab = 0, aa = 0, bb = 0;
    for (let j = i * per; j < (i + 1) * per; j++) {
      ab += a[j]! * b[j]!;
      aa += a[j]! * a[j]!;
      bb += b[j]! * b[j]!;
    }
    const c = ab / Math.sqrt(aa * bb || 1);
    sum += c;
    worst = Math.min(worst, c);
  }
  return { mean: sum / n, worst };
}

/** Convs onnxruntime runs as QLinearConv in its optimised form of `bytes`, and all Convs. */
async function fusedConvs(bytes: Uint8Array): Promise<{ fused: number; convs: number }> {
  const dir = mkdtempSync(join(tmpdir(), 'graft-int8-'));
  try {
    const file = join(dir, 'optimized.onnx');
    const s = await ort.InferenceSession.create(bytes, { graphOptimizationLevel: 'all', optimizedModelFilePath: file, intraOpNumThreads: 1, logSeverityLevel: 3 });
    await s.release();
    const nodes = onnxProto.onnx.ModelProto.decode(readFileSync(file)).graph!.node!;
    return { fused: nodes.filter((n) => n.opType === 'QLinearConv').length, convs: nodes.filter((n) => n.opType === 'QLinearConv' || n.opType === 'Conv' || n.opType === 'FusedConv').length };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Median images/s of each extractor over interleaved windows. */
async function interleaved(runs: { ex: FeatureExtractor; images: Float32Array }[], batch: number, rounds: number, windowMs: number): Promise<number[]> {
  const rates: number[][] = runs.map(() => []);
  for (const r of runs) await r.ex.extract(r.images, batch);
  for (let k = 0; k < rounds; k++) {
    for (let i = 0; i < runs.length; i++) {
      const start = performance.now();
      let n = 0;
      while (performance.now() - start < windowMs) {
        await runs[i]!.ex.extract(runs[i]!.images, batch);
        n += batch;
      }
      rates[i]!.push(n / ((performance.now() - start) / 1000));
    }
  }
  return rates.map((r) => [...r].sort((a, b) => a - b)[Math.floor(r.length / 2)]!);
}

export async function run(report: Report): Promise<void> {
  const loaded = await loadTfjsLayersModel(sharedInceptionWeightsDir('fp32'));
  const graph = cutGraph(loaded.graph, 'mixed7');
  for (const { size, signed } of [{ size: 150, signed: false }, { size: 299, signed: true }]) {
    const shape: [number, number, number] = [size, size, 3];
    const out = inferShapes(graph, shape).output.get('mixed7')!;
    const fp32Bytes = kerasToOnnx(graph, loaded.weights, { inputSize: [size, size] });
    const calib = await preprocessed(photos('train', IMAGES), size, signed);
    const per = size * size * 3;
    const source: CalibrationSource = { count: IMAGES, read: async (s, n, into) => into.set(calib.subarray(s * per, (s + n) * per)) };
    const test = await preprocessed(photos('validation', IMAGES), size, signed);
    const fp32 = await createOrtExtractor(fp32Bytes, shape, out);
    const ref = await fp32.extract(test, IMAGES);
    let int8: FeatureExtractor | null = null;
    for (const method of METHODS) {
      const started = performance.now();
      const ranges = await calibrateRanges(fp32Bytes, shape, source, { method });
      const calibS = (performance.now() - started) / 1000;
      const bytes = quantizeQdq(fp32Bytes, ranges);
      const ex = await createOrtExtractor(bytes, shape, out);
      const { mean, worst } = cosines(ref, await ex.extract(test, IMAGES), IMAGES);
      const tag = METHODS.length > 1 ? `_${method}` : '';
      report({ name: `int8_cosine_mean_${size}${tag}`, value: mean, unit: 'cosine' });
      report({ name: `int8_cosine_worst_${size}${tag}`, value: worst, unit: 'cosine' });
      report({ name: `int8_calibration_s_${size}${tag}`, value: calibS, unit: 's' });
      if (int8) await ex.dispose();
      else {
        int8 = ex;
        const { fused, convs } = await fusedConvs(bytes);
        report({ name: `int8_fused_convs_${size}`, value: fused / convs, unit: `of ${convs} Convs` });
      }
    }
    const batch = 20;
    const [fp32S, int8S] = await interleaved([{ ex: fp32, images: test }, { ex: int8!, images: test }], batch, 6, size > 200 ? 2500 : 1500);
    report({ name: `backbone_img_s_fp32_${size}`, value: fp32S!, unit: 'images/s (median, interleaved)' });
    report({ name: `backbone_img_s_int8_${size}`, value: int8S!, unit: 'images/s (median, interleaved)' });
    report({ name: `int8_speedup_${size}`, value: int8S! / fp32S!, unit: 'x fp32' });
    await fp32.dispose();
    await int8!.dispose();
  }
}
