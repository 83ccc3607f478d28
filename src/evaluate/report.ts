import { join } from 'node:path';
import { writeFileAtomic } from '../util/atomic.js';
import { GraftError } from '../util/errors.js';
import type { EvaluationMetrics } from './metrics.js';
import { imbalanceRatio, UNBALANCED_RATIO } from '../train/class-weights.js';

export interface EvaluationContext {
  /** Class names, in class-index order. */
  classes: string[];
  /** The evaluated files, in the order of the metrics' items (for naming misclassified ones). */
  files?: string[];
  /** Training images per class, when known: the report then says how unbalanced training was. */
  trainingCounts?: number[];
}

/**
 * Which of accuracy and balanced accuracy to read, in a sentence or two: accuracy when the
 * evaluated classes are about the same size, balanced accuracy (and each class's recall) when not.
 */
export function howToReadAccuracy(metrics: EvaluationMetrics, ctx: EvaluationContext): string[] {
  const support = metrics.perClass.map((m) => m.support);
  const lines: string[] = [];
  if (imbalanceRatio(support) > UNBALANCED_RATIO) {
    const big = support.indexOf(Math.max(...support));
    lines.push(
      `The evaluated classes are unbalanced (${support.map((n, c) => `${ctx.classes[c]} ${n}`).join(', ')}): read balanced accuracy (the mean of the classes' recalls), not accuracy;` +
        ` a model that always answered ${ctx.classes[big]} would score accuracy ${fixed(support[big]! / metrics.count)} but balanced accuracy ${fixed(1 / support.filter((n) => n > 0).length)}.`,
    );
  } else {
    lines.push('The evaluated classes are about the same size: accuracy and balanced accuracy read alike.');
  }
  if (ctx.trainingCounts && imbalanceRatio(ctx.trainingCounts) > UNBALANCED_RATIO) {
    lines.push(`Training was unbalanced (${ctx.trainingCounts.map((n, c) => `${ctx.classes[c]} ${n}`).join(', ')}): a class the model learned too little shows as low recall below.`);
  }
  return lines;
}

/** How many misclassified items report.txt and the console list. */
export const MAX_LISTED_MISTAKES = 20;

const fixed = (v: number) => v.toFixed(4);

/** Left-aligned text columns, two spaces apart. */
function table(rows: string[][], indent = '  '): string[] {
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => (r[c] ?? '').length)));
  return rows.map((r) => indent + r.map((cell, c) => (c === r.length - 1 ? cell : cell.padEnd(widths[c]!))).join('  ').trimEnd());
}

function checkClasses(metrics: EvaluationMetrics, ctx: EvaluationContext): void {
  if (ctx.classes.length !== metrics.numClasses) {
    throw new GraftError(`evaluation: ${ctx.classes.length} class names for ${metrics.numClasses} classes`);
  }
  if (ctx.files && ctx.files.length !== metrics.count) {
    throw new GraftError(`evaluation: ${ctx.files.length} file names for ${metrics.count} evaluated items`);
  }
}

/** The evaluation as text: what `graft evaluate` prints and report.txt holds. */
export function formatEvaluation(metrics: EvaluationMetrics, ctx: EvaluationContext): string {
  checkClasses(metrics, ctx);
  const { classes } = ctx;
  const lines: string[] = [];
  lines.push(`Evaluated ${metrics.count} images in ${metrics.numClasses} classes (${classes.join(', ')})`);
  const summary = [['accuracy', fixed(metrics.accuracy)], ['balanced accuracy', fixed(metrics.balancedAccuracy)], ['loss', fixed(metrics.loss)]];
  const aucName = metrics.numClasses === 2 ? 'ROC AUC' : 'ROC AUC (one-vs-rest, macro)';
  if (metrics.auc !== null) summary.push([aucName, fixed(metrics.auc)]);
  else summary.push([aucName, metrics.numClasses === 2 ? 'n/a (needs images of both classes)' : 'n/a (needs a class with images of it and of others)']);
  lines.push(...table(summary, ''), ...howToReadAccuracy(metrics, ctx), '');

  lines.push('Confusion matrix (rows: true class, columns: predicted class)');
  const right = (rows: string[][]) => {
    const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => r[c]!.length)));
    return rows.map((r) => '  ' + r.map((cell, c) => (c === 0 ? cell.padEnd(widths[c]!) : cell.padStart(widths[c]!))).join('  '));
  };
  lines.push(...right([['', ...classes], ...metrics.confusion.map((row, i) => [classes[i]!, ...row.map(String)])]), '');

  lines.push('Per class');
  lines.push(
    ...table([
      ['class', 'precision', 'recall', 'f1', 'support'],
      ...metrics.perClass.map((m, i) => [classes[i]!, fixed(m.precision), fixed(m.recall), fixed(m.f1), String(m.support)]),
      ['macro avg', fixed(metrics.macro.precision), fixed(metrics.macro.recall), fixed(metrics.macro.f1), String(metrics.count)],
    ]),
    '',
  );

  const mistakes = [...metrics.misclassified].sort((a, b) => b.probability - a.probability || a.index - b.index);
  const shown = mistakes.slice(0, MAX_LISTED_MISTAKES);
  lines.push(
    `Misclassified: ${mistakes.length}` +
      (mistakes.length === 0 ? '' : mistakes.length > shown.length ? ` (the ${shown.length} most confident shown)` : ' (most confident first)'),
  );
  if (shown.length > 0) {
    lines.push(
      ...table([
        ['file', 'true', 'predicted', 'p(predicted)'],
        ...shown.map((m) => [ctx.files?.[m.index] ?? `#${m.index}`, classes[m.trueLabel]!, classes[m.predicted]!, fixed(m.probability)]),
      ]),
    );
  }
  return lines.join('\n') + '\n';
}

/** metrics.json: the metrics with class names, and misclassified items with their files. */
export function evaluationJson(metrics: EvaluationMetrics, ctx: EvaluationContext): Record<string, unknown> {
  checkClasses(metrics, ctx);
  return {
    classes: ctx.classes,
    ...metrics,
    ...(ctx.trainingCounts && { trainingCounts: ctx.trainingCounts }),
    perClass: metrics.perClass.map((m, i) => ({ class: ctx.classes[i], ...m })),
    // In file order (report.txt lists the most confident first), with class names beside the indices.
    misclassified: metrics.misclassified.map((m) => ({
      ...(ctx.files ? { file: ctx.files[m.index] } : {}),
      ...m,
      trueClass: ctx.classes[m.trueLabel],
      predictedClass: ctx.classes[m.predicted],
    })),
  };
}

/** Writes metrics.json and report.txt into `dir` (atomically each). Returns their paths. */
export async function writeEvaluation(dir: string, metrics: EvaluationMetrics, ctx: EvaluationContext): Promise<{ metricsFile: string; reportFile: string }> {
  const metricsFile = join(dir, 'metrics.json');
  const reportFile = join(dir, 'report.txt');
  await writeFileAtomic(metricsFile, JSON.stringify(evaluationJson(metrics, ctx), null, 2) + '\n');
  await writeFileAtomic(reportFile, formatEvaluation(metrics, ctx));
  return { metricsFile, reportFile };
}
