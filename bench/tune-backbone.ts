/**
 * Finds the fastest feature-extractor settings on this machine: each configuration runs in short
 * interleaved windows (so background load hits all alike); its best, 25th-percentile-from-top and
 * median images/s are printed.
 *   node --import tsx bench/tune-backbone.ts '[{"batch":32},{"batch":32,"threads":1},{"batch":32,"spin":true}]' [rounds] [ms]
 */
import { loadTfjsLayersModel } from '../src/backbone/weights/tfjs-layers.js';
import { cutGraph } from '../src/backbone/cut.js';
import { kerasToOnnx } from '../src/backbone/onnx/convert.js';
import { createOrtExtractor, type FeatureExtractor } from '../src/backbone/engine.js';
import { inferShapes } from '../src/backbone/layer-shapes.js';
import { sharedInceptionWeightsDir } from '../src/util/paths.js';
import { labImagePaths, loadImages } from '../test/support/images.js';

interface Config {
  batch: number;
  threads?: number;
  spin?: boolean;
  fixed?: boolean;
  size?: number;
}

const configs = JSON.parse(process.argv[2] ?? '[{"batch":32}]') as Config[];
const rounds = Number(process.argv[3] ?? 8);
const windowMs = Number(process.argv[4] ?? 1000);
const loaded = await loadTfjsLayersModel(sharedInceptionWeightsDir('fp32'));
const graph = cutGraph(loaded.graph, 'mixed7');
const runs: { config: Config; ex: FeatureExtractor; images: Float32Array; rates: number[] }[] = [];
for (const config of configs) {
  const size = config.size ?? 150;
  const out = inferShapes(graph, [size, size, 3]).output.get('mixed7')!;
  const bytes = kerasToOnnx(graph, loaded.weights, config.fixed ? { inputSize: [size, size] } : {});
  const ex = await createOrtExtractor(bytes, [size, size, 3], out, { threads: config.threads, batchSize: config.batch, spin: config.spin });
  const images = await loadImages(labImagePaths(config.batch), size, size);
  await ex.extract(images, config.batch);
  runs.push({ config, ex, images, rates: [] });
}
for (let r = 0; r < rounds; r++) {
  for (const run of runs) {
    const start = performance.now();
    let n = 0;
    while (performance.now() - start < windowMs) {
      await run.ex.extract(run.images, run.config.batch);
      n += run.config.batch;
    }
    run.rates.push(n / ((performance.now() - start) / 1000));
  }
}
for (const run of runs) {
  const sorted = [...run.rates].sort((a, b) => b - a);
  const at = (q: number): string => sorted[Math.floor(q * (sorted.length - 1))]!.toFixed(1);
  console.log(`${JSON.stringify(run.config).padEnd(40)} best ${at(0)}  p25 ${at(0.25)}  median ${at(0.5)} images/s`);
  await run.ex.dispose();
}
