/**
 * Weight loading and download speed: a Keras .h5 the size of the ImageNet InceptionV3 notop file
 * (synthetic values, same layout and shapes) read whole and cut at mixed7, and a download of a
 * same-sized file from a local HTTP server (measures graft's own overhead: streaming, md5, rename).
 */
import { createHash } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Report } from '../bench.js';
import { inceptionV3Graph } from '../../src/backbone/architectures/inception-v3.js';
import { inferShapes, layerWeightSpecs } from '../../src/backbone/layer-shapes.js';
import { loadKerasH5Weights } from '../../src/backbone/weights/keras-h5.js';
import { downloadFile } from '../../src/util/download.js';
import { cutAt, writeKerasH5, type FixtureLayer } from '../../test/support/keras-h5-fixture.js';
import { statSync } from 'node:fs';
import { bestMs } from '../timing.js';

export async function run(report: Report): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'graft-bench-weights-'));
  try {
    const graph = inceptionV3Graph();
    const shapes = inferShapes(graph, [299, 299, 3]);
    const layers: FixtureLayer[] = graph.layers.map((l) => ({
      name: l.name,
      weights: layerWeightSpecs(l, shapes.inputs.get(l.name) ?? []).map((s) => {
        const data = new Float32Array(s.shape.reduce((a, b) => a * b, 1));
        for (let i = 0; i < data.length; i++) data[i] = ((i * 7919) % 1000) / 1000 - 0.5;
        return { name: s.name, shape: s.shape, data };
      }),
    }));
    const file = join(dir, 'notop.h5');
    await writeKerasH5(file, layers);
    const mb = statSync(file).size / 1e6;
    report({ name: 'weights_h5_notop_mb', value: mb, unit: 'MB' });
    report({ name: 'weights_h5_load_notop_ms', value: await bestMs(3, () => loadKerasH5Weights(file, graph)), unit: 'ms' });
    const cut = cutAt(graph, 'mixed7');
    report({ name: 'weights_h5_load_mixed7_ms', value: await bestMs(3, () => loadKerasH5Weights(file, cut)), unit: 'ms' });

    const body = Buffer.alloc(Math.round(mb * 1e6), 7);
    const md5 = createHash('md5').update(body).digest('hex');
    const server = createServer((_req, res) => {
      res.writeHead(200, { 'Content-Length': body.length });
      res.end(body);
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/w.h5`;
    let n = 0;
    const ms = await bestMs(3, () => downloadFile(url, join(dir, `dl${n++}.h5`), { md5, progressBar: false }));
    server.close();
    report({ name: 'weights_download_local_mb_s', value: body.length / 1e6 / (ms / 1000), unit: 'MB/s' });
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
