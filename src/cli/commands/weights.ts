import type { Command } from 'commander';
import { ensureImagenetWeights } from '../../backbone/weights/imagenet.js';
import { DEFAULT_WEIGHTS, planWeights, resolveWeights } from '../../backbone/weights/resolve.js';
import { readKerasH5Origin } from '../../backbone/weights/keras-h5.js';

const KIND = { tfjs: 'TF.js layers model', h5: 'Keras HDF5 weights', keras: 'Keras 3 .keras archive', download: 'download (not cached yet) to' } as const;

/** `graft weights [spec]`: where a --weights value takes weights from; optionally fetch or load them. */
export function registerWeights(program: Command): void {
  program
    .command('weights')
    .description('Show where --weights takes the backbone weights from (default "imagenet"); fetch them for offline use')
    .argument('[spec]', '"imagenet", a Keras .h5 / .weights.h5 / .keras file, or a TF.js model folder', DEFAULT_WEIGHTS)
    .option('--download', 'download the Keras ImageNet .h5 into the cache now (so later runs need no network)')
    .option('--load', 'load the weights and print what they hold')
    .action(async (spec: string, opts: { download?: boolean; load?: boolean }) => {
      if (opts.download) console.log(`cached: ${await ensureImagenetWeights()}`);
      const plan = planWeights(spec);
      console.log(`${spec}: ${KIND[plan.kind]} ${plan.path}`);
      if (opts.load) {
        const loaded = await resolveWeights(spec);
        let params = 0;
        for (const t of loaded.weights.values()) params += t.data.length;
        let origin = '';
        if (/\.(h5|hdf5)$/i.test(loaded.source)) {
          const { kerasVersion, backend } = await readKerasH5Origin(loaded.source);
          if (kerasVersion !== undefined) origin = `; saved by Keras ${kerasVersion}${backend ? ` (${backend})` : ''}`;
        }
        console.log(`${loaded.source}: ${loaded.graph.layers.length} layers up to ${loaded.graph.outputs.join(', ')}, ${loaded.weights.size} weight arrays, ${params.toLocaleString('en-US')} parameters${origin}`);
      }
    });
}
