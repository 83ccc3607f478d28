import type { Command } from 'commander';
import { evaluateFolder } from '../../evaluate/evaluate-folder.js';
import { evaluationJson, formatEvaluation } from '../../evaluate/report.js';
import { loadClassifier } from '../../model/saved-classifier.js';
import { Progbar } from '../../train/progbar.js';

export function registerEvaluate(program: Command): void {
  program
    .command('evaluate')
    .description('Accuracy, loss, confusion matrix, per-class precision/recall/F1, ROC AUC and the mistakes, on labelled folders')
    .requiredOption('--model <path>', 'a training run folder (--out of graft train/lab), its model/ folder, or model.onnx')
    .requiredOption('--data <dir>', "class folders named like the model's classes (a train/ + validation/ root: its validation part)")
    .option('--json', 'print one JSON object')
    .option('--follow-symlinks', 'descend into linked folders inside class folders')
    .option('--labels <file>', "labels from a .csv, .tsv or .jsonl table ('filename' relative to --data, 'class') instead of class folders")
    .option('--file-column <name>', 'the table column of image paths (default: filename)')
    .option('--label-column <name>', 'the table column of class names (default: class)')
    .option('--tta', "test-time augmentation: average each image's probabilities with its mirror's")
    .action(async (flags: { model: string; data: string; json?: boolean; followSymlinks?: boolean; labels?: string; fileColumn?: string; labelColumn?: string; tta?: boolean }) => {
      const model = await loadClassifier(flags.model);
      try {
        let bar: Progbar | null = null;
        const result = await evaluateFolder(model, flags.data, {
          followSymlinks: flags.followSymlinks,
          labels: flags.labels,
          fileColumn: flags.fileColumn,
          labelColumn: flags.labelColumn,
          tta: flags.tta,
          onProgress: (done, total) => (bar ??= new Progbar(total, 'Evaluating ')).update(done),
        }).finally(() => bar?.clear());
        const ctx = { classes: result.classes, files: result.files };
        if (flags.json) {
          console.log(JSON.stringify({ data: result.root, model: model.source, ...evaluationJson(result.metrics, ctx), skipped: result.skipped, warnings: result.warnings }));
        } else {
          for (const w of result.warnings) console.error(`warning: ${w}`);
          for (const s of result.skipped) console.error(`warning: skipped ${s.path}: ${s.reason}`);
          console.log(formatEvaluation(result.metrics, ctx));
        }
      } finally {
        await model.dispose();
      }
    });
}
