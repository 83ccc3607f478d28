/**
 * Output-stage figures: writing the lab head (Flatten 7x7x768 -> Dense 1024 -> Dense 1, 154 MB of
 * float32) as a TF.js layers model, the two history plots, and metrics + report for 1000 items.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Report } from '../bench.js';
import type { KerasGraph, WeightMap } from '../../src/backbone/keras-graph.js';
import { buildClassifierGraph } from '../../src/model/classifier-graph.js';
import { LAB_HEAD } from '../../src/model/head-spec.js';
import { writeTfjsLayersModel } from '../../src/export/tfjs-layers.js';
import { plotHistory } from '../../src/evaluate/plots.js';
import { computeMetrics } from '../../src/evaluate/metrics.js';
import { writeEvaluation } from '../../src/evaluate/report.js';
import { Random } from '../../src/util/random.js';
import { bestMs } from '../timing.js';

function filled(rng: Random, shape: number[]) {
  const data = new Float32Array(shape.reduce((a, b) => a * b, 1));
  for (let i = 0; i < data.length; i++) data[i] = rng.uniform(-0.01, 0.01);
  return { shape, data };
}

export async function run(report: Report): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'graft-bench-export-'));
  try {
    // The backbone's output stands in for mixed7 (7x7x768), so only the head's weights are written.
    const features: KerasGraph = {
      name: 'features',
      layers: [{ name: 'mixed7', className: 'InputLayer', config: { name: 'mixed7', batch_input_shape: [null, 7, 7, 768] }, inbound: [] }],
      inputs: ['mixed7'],
      outputs: ['mixed7'],
    };
    const rng = new Random(1);
    const weights: WeightMap = new Map([
      ['dense/kernel', filled(rng, [7 * 7 * 768, 1024])],
      ['dense/bias', filled(rng, [1024])],
      ['dense_1/kernel', filled(rng, [1024, 1])],
      ['dense_1/bias', filled(rng, [1])],
    ]);
    const graph = buildClassifierGraph(features, LAB_HEAD);
    const ms = await bestMs(3, () => writeTfjsLayersModel(graph, weights, join(dir, 'tfjs')));
    report({ name: 'export_tfjs_lab_head_fp32_s', value: ms / 1000, unit: 's' });
    const ms16 = await bestMs(3, () => writeTfjsLayersModel(graph, weights, join(dir, 'tfjs'), { quantize: 'float16' }));
    report({ name: 'export_tfjs_lab_head_fp16_s', value: ms16 / 1000, unit: 's' });

    const epochs = 20;
    const series = () => Array.from({ length: epochs }, () => rng.next());
    const history = { loss: series(), accuracy: series(), val_loss: series(), val_accuracy: series() };
    report({ name: 'plot_history_ms', value: await bestMs(3, () => plotHistory(history, dir)), unit: 'ms' });

    const n = 1000;
    const probs = Float32Array.from({ length: n }, () => rng.next());
    const labels = Array.from({ length: n }, () => rng.int(2));
    const files = labels.map((y, i) => `${y ? 'dogs' : 'cats'}/${i}.jpg`);
    const evalMs = await bestMs(3, () => writeEvaluation(dir, computeMetrics(probs, labels), { classes: ['cats', 'dogs'], files }));
    report({ name: 'metrics_report_1000_ms', value: evalMs, unit: 'ms' });
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
