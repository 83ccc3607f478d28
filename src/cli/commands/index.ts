import type { Command } from 'commander';
import { registerAugmentPreview } from './augment-preview.js';
import { registerLrFind } from './lr-find.js';
import { registerData } from './data.js';
import { registerExplain } from './explain.js';
import { registerFeatures } from './features.js';
import { registerEvaluate } from './evaluate.js';
import { registerPredict } from './predict.js';
import { registerSummary } from './summary.js';
import { registerUi } from './ui.js';
import { registerWeights } from './weights.js';
import { registerLab, registerTrain } from './train.js';

/** Every subcommand registers itself here; each lives in its own module beside this one. */
export function registerCommands(program: Command): void {
  registerLab(program);
  registerTrain(program);
  registerEvaluate(program);
  registerPredict(program);
  registerSummary(program);
  registerWeights(program);
  registerData(program);
  registerAugmentPreview(program);
  registerExplain(program);
  registerUi(program);
  registerLrFind(program);
  registerFeatures(program);
}
