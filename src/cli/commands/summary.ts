import { Option, type Command } from 'commander';
import { DEFAULT_CUT, checkInputSize } from '../../backbone/backbone.js';
import { inceptionV3Graph } from '../../backbone/architectures/inception-v3.js';
import { resolveWeights } from '../../backbone/weights/resolve.js';
import { cutGraph } from '../../backbone/cut.js';
import { validateWeights } from '../../backbone/validate-weights.js';
import { buildClassifierGraph } from '../../model/classifier-graph.js';
import { LAB_HEAD } from '../../model/head-spec.js';
import { parseHeadSpec } from '../../model/head-spec-parse.js';
import { hasOutputLayer, headForClasses, outputLayerNote } from '../../model/head.js';
import { intOption, sizeOption } from '../options.js';
import { summarizeModel } from '../../model/summary.js';
import { summarizeClassifier } from '../../model/saved-classifier.js';
import { firstTunedLayer } from '../../train/finetune/segment.js';
import { GraftError } from '../../util/errors.js';

interface SummaryOptions {
  model?: string;
  weights?: string;
  cut: string;
  inputSize: [number, number];
  head?: string;
  classes?: number;
  fineTune?: string;
}

export function registerSummary(program: Command): void {
  program
    .command('summary')
    .description('Print the model (backbone cut + head) as a Keras-style layer table')
    .option('--model <path>', 'summarise a trained classifier instead: a run folder (--out of graft train/lab) or its model/ folder')
    .option('--weights <spec>', "check these weights against the architecture too: 'imagenet', a Keras .h5 or .keras file or a TF.js folder (default: InceptionV3's architecture alone)")
    .option('--cut <layer>', 'backbone layer whose output feeds the head', DEFAULT_CUT)
    .addOption(new Option('--input-size <HxW>', 'input size, e.g. 150 or 150x150').argParser(sizeOption).default([150, 150], '"150x150"'))
    .option('--head <spec>', 'head layers, e.g. flatten,dense:1024:relu,dropout:0.2,dense:1:sigmoid (default: the Keras lab head)')
    .option('--classes <n>', 'number of classes: 2 -> Dense(1, sigmoid), more -> Dense(n, softmax), as graft train fits the output layer (default: the head\'s own sigmoid/softmax output, else 2)', intOption('classes', 2, 100_000))
    .option('--fine-tune <layer>', 'count parameters as graft train --fine-tune <layer> trains them: the backbone layers after <layer> trainable too')
    .action(async (opts: SummaryOptions) => {
      if (opts.model && opts.fineTune) throw new GraftError('--fine-tune applies to the architecture summary, not to --model');
      if (opts.model) {
        console.log(await summarizeClassifier(opts.model));
        return;
      }
      const [h, w] = opts.inputSize;
      checkInputSize([h, w]);
      const given = opts.head ? parseHeadSpec(opts.head) : LAB_HEAD;
      // A head without an output layer gets one, as training adds it; 2 classes unless told.
      const head = opts.classes !== undefined || !hasOutputLayer(given) ? headForClasses(opts.classes ?? 2, given) : given;
      const note = opts.head ? outputLayerNote(given, head) : null;
      if (note) console.error(note);
      let backbone;
      if (opts.weights) {
        // The architecture the weights come with (a TF.js topology or a full .h5 model), checked against them.
        const loaded = await resolveWeights(opts.weights, { cut: opts.cut });
        backbone = cutGraph(loaded.graph, opts.cut);
        validateWeights(backbone, loaded.weights, [h, w, 3], loaded.source);
      } else {
        backbone = cutGraph(inceptionV3Graph(), opts.cut);
      }
      const trainableFrom = opts.fineTune ? firstTunedLayer(backbone, opts.fineTune, [h, w, 3]) : undefined;
      console.log(summarizeModel(buildClassifierGraph(backbone, head), [h, w, 3], trainableFrom));
    });
}
