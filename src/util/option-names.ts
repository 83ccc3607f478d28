/**
 * Messages name a setting the way their reader gives it: `--steps 4` on the command line,
 * `stepsPerEpoch: 4` to trainClassifier. The library speaks in option names; the CLI switches to
 * its flags as it starts (useFlagNames).
 */

/** TrainOptions' names and the CLI flags that set them. */
const FLAGS = {
  data: '--data',
  validationData: '--val',
  validationSplit: '--validation-split',
  out: '--out',
  weights: '--weights',
  epochs: '--epochs',
  stepsPerEpoch: '--steps',
  mode: '--mode',
  resume: '--resume',
  overwrite: '--overwrite',
  onBadImage: '--on-bad-image',
  followSymlinks: '--follow-symlinks',
  orientation: '--orientation',
  memoryBudget: '--memory-budget',
  inputSize: '--input-size',
  batchSize: '--batch-size',
  classWeight: '--class-weight',
  labels: '--labels',
  validationLabels: '--val-labels',
  lrSchedule: '--lr-schedule',
  fileColumn: '--file-column',
  labelColumn: '--label-column',
  backbonePrecision: '--backbone-precision',
  features: '--features',
  validationFeatures: '--val-features',
} as const;

export type OptionName = keyof typeof FLAGS;

let flags = false;

/** From now on, messages name settings by their CLI flags (the graft command calls this first). */
export function useFlagNames(): void {
  flags = true;
}

/** The setting's name: `--val` or `validationData`. */
export function optionName(name: OptionName): string {
  return flags ? FLAGS[name] : name;
}

/**
 * The setting with a value: `--steps 4` or `stepsPerEpoch: 4`; without one, a switch turned on:
 * `--overwrite` or `overwrite: true`. A string value is quoted for the library unless `asOption`
 * gives its spelling there (`{ kind: 'faithful' }` for `--mode faithful`).
 */
export function setting(name: OptionName, value?: string | number, asOption?: string): string {
  if (flags) return value === undefined ? FLAGS[name] : `${FLAGS[name]} ${value}`;
  const literal = asOption ?? (value === undefined ? 'true' : typeof value === 'number' ? String(value) : `'${value}'`);
  return `${name}: ${literal}`;
}
