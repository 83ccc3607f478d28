import type { Command } from 'commander';
import { DEFAULT_CUT, checkInputSize, resolveWeights } from '../../backbone/backbone.js';
import { cutGraph } from '../../backbone/cut.js';
import { validateWeights } from '../../backbone/validate-weights.js';
import { buildClassifierGraph } from '../../model/classifier-graph.js';
import { LAB_HEAD } from '../../model/head-spec.js';
import { parseHeadSpec, withClasses } from '../../model/head-spec-parse.js';
import { summarizeModel } from '../../model/summary.js';
import { GraftError } from '../../util/errors.js';

/** "150" or "150x150" -> [h, w]. */
export function parseInputSize(text: string): [number, number] {
  const m = /^\s*(\d+)\s*(?:[x×,]\s*(\d+))?\s*$/i.exec(text);
  if (!m) throw new GraftError(`--input-size "${text}": expected a size like 150 or 150x150`);
  const h = Number(m[1]);
  return [h, m[2] ? Number(m[2]) : h];
}

interface SummaryOptions {
  weights?: string;
  cut: string;
  inputSize: string;
  head?: string;
  classes?: string;
}

export function registerSummary(program: Command): void {
  program
    .command('summary')
    .description('print the model (backbone cut + head) as a Keras-style layer table')
    .option('--weights <path>', 'backbone weights: a TF.js layers-model folder (default: the shared InceptionV3)')
    .option('--cut <layer>', 'backbone layer whose output feeds the head', DEFAULT_CUT)
    .option('--input-size <size>', 'input size, e.g. 150 or 150x150', '150')
    .option('--head <spec>', 'head layers, e.g. flatten,dense:1024:relu,dropout:0.2,dense:1:sigmoid (default: the Keras lab head)')
    .option('--classes <n>', 'number of classes: 2 -> Dense(1, sigmoid), more -> Dense(n, softmax)')
    .action(async (opts: SummaryOptions) => {
      const [h, w] = parseInputSize(opts.inputSize);
      checkInputSize([h, w]);
      let head = opts.head ? parseHeadSpec(opts.head) : LAB_HEAD;
      if (opts.classes !== undefined) head = withClasses(head, Number(opts.classes));
      const loaded = await resolveWeights(opts.weights);
      const backbone = cutGraph(loaded.graph, opts.cut);
      validateWeights(backbone, loaded.weights, [h, w, 3], loaded.source);
      console.log(summarizeModel(buildClassifierGraph(backbone, head), [h, w, 3]));
    });
}
