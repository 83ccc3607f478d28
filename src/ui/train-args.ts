/**
 * The page's training form as a `graft train` command line: the run the page starts is that
 * command, run as its own process, and the page shows it for the user to copy.
 */
import { HttpError } from './http.js';

/** What the form sends. Absent fields take graft train's defaults. */
export interface TrainForm {
  data: string;
  /** The run's name: its folder inside the runs folder. */
  name: string;
  val?: string;
  validationSplit?: number;
  epochs?: number;
  batchSize?: number;
  steps?: number;
  mode?: string;
  head?: string;
  optimizer?: string;
  lr?: number;
  preprocess?: string;
  inputSize?: string;
  orientation?: string;
  seed?: number;
  augment?: boolean;
  weights?: string;
  earlyStopping?: number;
  overwrite?: boolean;
}

/** Form field -> flag, in the order the command line shows them. */
const FLAGS: [keyof TrainForm, string, 'string' | 'number' | 'boolean'][] = [
  ['val', '--val', 'string'],
  ['validationSplit', '--validation-split', 'number'],
  ['epochs', '--epochs', 'number'],
  ['batchSize', '--batch-size', 'number'],
  ['steps', '--steps', 'number'],
  ['mode', '--mode', 'string'],
  ['head', '--head', 'string'],
  ['optimizer', '--optimizer', 'string'],
  ['lr', '--lr', 'number'],
  ['preprocess', '--preprocess', 'string'],
  ['inputSize', '--input-size', 'string'],
  ['orientation', '--orientation', 'string'],
  ['seed', '--seed', 'number'],
  ['weights', '--weights', 'string'],
  ['earlyStopping', '--early-stopping', 'number'],
];

/** A run name is one plain folder name: letters, digits, '.', '_', '-' (not starting with '.'). */
export function checkRunName(name: unknown): string {
  if (typeof name !== 'string' || !/^[A-Za-z0-9_-][A-Za-z0-9._-]{0,99}$/.test(name)) {
    throw new HttpError(400, `run name ${JSON.stringify(name)}: use letters, digits, '.', '_' and '-' only (a folder inside the runs folder)`);
  }
  return name;
}

/** Checks the form's types and builds `graft train`'s arguments (after "train"); `out` is the run's folder. */
export function trainArgs(form: Record<string, unknown>, out: string): string[] {
  if (typeof form.data !== 'string' || form.data.length === 0) throw new HttpError(400, 'data: give the images folder');
  const args = ['--data', form.data, '--out', out];
  for (const [key, flag, type] of FLAGS) {
    const v = form[key];
    if (v === undefined || v === null || v === '') continue;
    if (typeof v !== type || (type === 'number' && !Number.isFinite(v))) throw new HttpError(400, `${key}: expected a ${type}, got ${JSON.stringify(v)}`);
    if (type === 'string' && (v as string).startsWith('-')) throw new HttpError(400, `${key}: ${JSON.stringify(v)} cannot start with '-'`);
    args.push(flag, String(v));
  }
  if (form.augment === false) args.push('--no-augment');
  if (form.overwrite === true) args.push('--overwrite');
  return args;
}

/** One argument as a POSIX shell reads it back. */
export function shellQuote(arg: string): string {
  return /^[A-Za-z0-9_./:=,@%+-]+$/.test(arg) ? arg : `'${arg.replace(/'/g, `'\\''`)}'`;
}

/** The command line a user would type: `graft train ...`. */
export function commandLine(args: string[]): string {
  return ['graft', ...args].map(shellQuote).join(' ');
}
