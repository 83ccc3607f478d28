/**
 * Backbone throughput: InceptionV3 cut at mixed7 on 150x150 real photos, images per second in
 * steady state, for graft's engine (onnxruntime) and for the tfjs-wasm reference.
 */
import { availableParallelism } from 'node:os';
import type { Report } from '../bench.js';
import { loadBackbone } from '../../src/backbone/backbone.js';
import { sharedInceptionWeightsDir } from '../../src/util/paths.js';
import { labImagePaths, loadImages } from '../../test/support/images.js';
import { loadTfjsModel, tfjsForward, useWasm } from '../../test/support/tfjs-reference.js';

const SIZE = 150;
const CUT = 'mixed7';

/** Best images/s over `rounds` windows of `seconds` each, after one warm-up call. */
async function throughput(run: () => Promise<unknown>, perCall: number, rounds: number, seconds: number): Promise<number> {
  await run();
  let best = 0;
  for (let r = 0; r < rounds; r++) {
    const start = performance.now();
    let images = 0;
    while (performance.now() - start < seconds * 1000) {
      await run();
      images += perCall;
    }
    best = Math.max(best, images / ((performance.now() - start) / 1000));
  }
  return best;
}

export async function run(report: Report): Promise<void> {
  const batch = 64;
  const images = await loadImages(labImagePaths(batch), SIZE, SIZE);

  const backbone = await loadBackbone({ cut: CUT, inputSize: [SIZE, SIZE] });
  try {
    const imgS = await throughput(() => backbone.extractor.extract(images, batch), batch, 6, 2.5);
    report({ name: 'backbone_img_s', value: imgS, unit: 'images/s' });
  } finally {
    await backbone.dispose();
  }

  await useWasm(availableParallelism());
  const model = await loadTfjsModel(sharedInceptionWeightsDir('fp32'), CUT);
  const small = 8;
  const tfjsS = await throughput(() => tfjsForward(model, images.subarray(0, small * SIZE * SIZE * 3), small, [SIZE, SIZE, 3]), small, 1, 4);
  report({ name: 'backbone_img_s_tfjs_wasm', value: tfjsS, unit: 'images/s' });
  model.dispose();
}
