import { EXTRA_HISTORY_KEYS, type History } from '../train/history.js';
import { writeFileAtomic } from '../util/atomic.js';
import { GraftError } from '../util/errors.js';
import { readJsonFile } from '../util/json-file.js';

const KEYS = ['loss', 'accuracy', 'val_loss', 'val_accuracy'] as const;
/** Keras before 2.3 (and the original lab notebook) said acc / val_acc. */
const OLD_NAMES: Record<string, (typeof KEYS)[number]> = { acc: 'accuracy', val_acc: 'val_accuracy' };

/**
 * Writes history.json with Keras's History keys. JSON has no NaN or Infinity, so such values
 * (a diverged epoch) are written as null and read back as NaN.
 */
export async function writeHistory(file: string, history: History): Promise<void> {
  const out: Record<string, (number | null)[]> = {};
  for (const key of KEYS) out[key] = history[key].map((v) => (Number.isFinite(v) ? v : null));
  if (history.phase) out.phase = history.phase;
  for (const key of EXTRA_HISTORY_KEYS) if (history[key]) out[key] = history[key].map((v) => (Number.isFinite(v) ? v : null));
  await writeFileAtomic(file, JSON.stringify(out, null, 2) + '\n');
}

/** Reads a history.json written by graft or by Keras (json.dump(history.history)). */
export async function readHistory(file: string): Promise<History> {
  // Python's json.dump writes NaN/Infinity bare; make them JSON nulls first.
  const json = await readJsonFile(file, { prepare: (text) => text.replace(/(?<=[[,:\s])(-?Infinity|NaN)(?=\s*[,\]}])/g, 'null') });
  if (typeof json !== 'object' || json === null || Array.isArray(json)) {
    throw new GraftError(`${file}: expected an object of per-epoch lists (loss, accuracy, val_loss, val_accuracy)`, { file });
  }
  const history: History = { loss: [], accuracy: [], val_loss: [], val_accuracy: [] };
  for (const [name, value] of Object.entries(json)) {
    if (name === 'phase' && Array.isArray(value) && value.every((v) => v === 1 || v === 2)) {
      history.phase = value as number[];
      continue;
    }
    const key: keyof History | undefined = ([...KEYS, ...EXTRA_HISTORY_KEYS] as string[]).includes(name) ? (name as keyof History) : OLD_NAMES[name];
    if (!key) continue; // other metrics (lr, auc, ...) are not part of History
    if (!Array.isArray(value) || value.some((v) => v !== null && typeof v !== 'number')) {
      throw new GraftError(`${file}: "${name}" must be a list of numbers, one per epoch`, { file });
    }
    history[key] = value.map((v: number | null) => (v === null ? NaN : v));
  }
  if (history.loss.length === 0 && history.accuracy.length === 0) {
    throw new GraftError(`${file}: no "loss" or "accuracy" history in it`, { file });
  }
  return history;
}
