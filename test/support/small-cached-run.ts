/**
 * Options for a small cached run on a labSubset folder: the shared InceptionV3 at 100x100 under
 * the lab's preprocessing, a GAP head (its features at the cut are pooled in the graph, 768 floats
 * an image), batches of 4. `lines` collects what the run logs.
 */
import { join } from 'node:path';
import type { TrainOptions } from '../../src/learner.js';
import { parseHeadSpec } from '../../src/model/head-spec-parse.js';
import { sharedInceptionWeightsDir } from '../../src/util/paths.js';

export function smallCachedRun(root: string, out: string, extra: Partial<TrainOptions> = {}): TrainOptions & { lines: string[] } {
  const lines: string[] = [];
  return {
    data: join(root, 'data'),
    out: join(root, out),
    recipe: 'lab',
    weights: sharedInceptionWeightsDir('fp32'),
    inputSize: [100, 100],
    head: parseHeadSpec('gap,dense:8:relu,dropout:0.2'),
    mode: { kind: 'cached' },
    batchSize: 4,
    epochs: 2,
    seed: 3,
    optimizer: { kind: 'adam', learningRate: 1e-3 },
    verbose: 2,
    lines,
    log: (l) => lines.push(l),
    ...extra,
  };
}
