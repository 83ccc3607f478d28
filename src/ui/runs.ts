/**
 * The runs under the runs folder, as graft ui lists them: status, recipe and figures, read from
 * what each run writes (history.json, checkpoint/checkpoint.json, metrics.json, model/model.json)
 * and from the training queue for the runs this page started.
 */
import { readdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { TrainingQueue } from './jobs.js';
import { runningHolder } from '../train/run-lock.js';

export type RunStatus = 'queued' | 'running' | 'finished' | 'stopped' | 'failed' | 'empty';

export interface RunSummary {
  name: string;
  status: RunStatus;
  /** Epochs done, and planned when known. */
  epochs: number;
  /** The run's settings as its checkpoint records them (head, optimizer, mode, ...). */
  recipe: Record<string, unknown> | null;
  classes: string[] | null;
  best: { epoch: number; val_accuracy: number } | null;
  final: { loss?: number; accuracy?: number; val_loss?: number; val_accuracy?: number } | null;
  /** From metrics.json, when the run finished its evaluation. */
  evaluation: { accuracy: number; loss: number; auc: number | null } | null;
  hasModel: boolean;
  /** When its files last changed (ms). */
  modified: number;
  /** A run started elsewhere (a terminal) whose files changed lately: likely still training. */
  external?: boolean;
}

type History = Record<string, number[]>;

async function readJson<T>(file: string): Promise<T | null> {
  try {
    return JSON.parse(await readFile(file, 'utf8')) as T;
  } catch {
    return null;
  }
}

const mtime = async (file: string) => (await stat(file).catch(() => null))?.mtimeMs ?? 0;

/** Settings worth showing from the checkpoint's setup (the image lists are left out). */
function recipeOf(setup: Record<string, unknown> | undefined): Record<string, unknown> | null {
  if (!setup) return null;
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(setup)) {
    if (k === 'classes') continue;
    out[k] = typeof v === 'object' && v !== null && 'summary' in v ? (v as { summary: unknown }).summary : v;
  }
  return out;
}

export async function runSummary(runsDir: string, name: string, queue: TrainingQueue): Promise<RunSummary | null> {
  const dir = join(runsDir, name);
  if (!(await stat(dir).catch(() => null))?.isDirectory()) return null;
  const history = await readJson<History>(join(dir, 'history.json'));
  const checkpoint = await readJson<{ epoch?: number; finished?: boolean; setup?: Record<string, unknown>; history?: History }>(join(dir, 'checkpoint', 'checkpoint.json'));
  const metrics = await readJson<{ accuracy: number; loss: number; auc: number | null; classes: string[] }>(join(dir, 'metrics.json'));
  const model = await readJson<{ userDefinedMetadata?: { graft?: { classes?: string[] } } }>(join(dir, 'model', 'model.json'));
  const hist = longerHistory(history, checkpoint?.history);
  const epochs = hist?.loss?.length ?? checkpoint?.epoch ?? 0;
  const modified = Math.max(await mtime(join(dir, 'history.json')), await mtime(join(dir, 'checkpoint', 'checkpoint.json')), await mtime(dir));
  const job = queue.latest(name);
  let status: RunStatus;
  let external = false;
  if (job && (job.state === 'queued' || job.state === 'running')) status = job.state;
  else if (checkpoint?.finished || (!checkpoint && model)) status = 'finished';
  else if (job) status = job.state;
  else if (checkpoint) {
    // The run's lock names a live process while it trains (started here or from a terminal).
    external = (await runningHolder(dir)) !== null;
    status = external ? 'running' : 'stopped';
  } else status = 'empty';
  const va = hist?.val_accuracy ?? [];
  let best: RunSummary['best'] = null;
  va.forEach((v, i) => {
    if (best === null || v > best.val_accuracy) best = { epoch: i + 1, val_accuracy: v };
  });
  const last = (k: string) => hist?.[k]?.at(-1);
  return {
    name,
    status,
    epochs,
    recipe: recipeOf(checkpoint?.setup),
    classes: metrics?.classes ?? model?.userDefinedMetadata?.graft?.classes ?? (checkpoint?.setup?.classes as string[] | undefined) ?? null,
    best,
    final: hist ? { loss: last('loss'), accuracy: last('accuracy'), val_loss: last('val_loss'), val_accuracy: last('val_accuracy') } : null,
    evaluation: metrics ? { accuracy: metrics.accuracy, loss: metrics.loss, auc: metrics.auc } : null,
    hasModel: model !== null,
    modified,
    ...(external && { external }),
  };
}

/** Every run folder under `runsDir` (and the runs the queue holds but which have no folder yet), newest first. */
export async function listRuns(runsDir: string, queue: TrainingQueue): Promise<RunSummary[]> {
  const names = new Set<string>();
  for (const e of await readdir(runsDir, { withFileTypes: true }).catch(() => [])) if (e.isDirectory() && !e.name.startsWith('.')) names.add(e.name);
  for (const j of queue.list()) names.add(j.run);
  const out: RunSummary[] = [];
  for (const name of names) {
    const s = await runSummary(runsDir, name, queue);
    if (s) out.push(s);
    else {
      const job = queue.latest(name)!;
      out.push({ name, status: job.state, epochs: 0, recipe: null, classes: null, best: null, final: null, evaluation: null, hasModel: false, modified: job.startedAt ?? 0 });
    }
  }
  return out.sort((a, b) => b.modified - a.modified || a.name.localeCompare(b.name));
}

/**
 * A run's history: history.json or the checkpoint's, whichever has more epochs (history.json is
 * written with the model when a run ends; during a run the epochs done are in the checkpoint).
 */
export async function readRunHistory(runsDir: string, name: string): Promise<History> {
  const dir = join(runsDir, name);
  const saved = await readJson<History>(join(dir, 'history.json'));
  const checkpoint = await readJson<{ history?: History }>(join(dir, 'checkpoint', 'checkpoint.json'));
  return longerHistory(saved, checkpoint?.history) ?? {};
}

function longerHistory(a: History | null | undefined, b: History | null | undefined): History | null {
  if (!a) return b ?? null;
  if (!b) return a;
  return (b.loss?.length ?? 0) > (a.loss?.length ?? 0) ? b : a;
}

export { readJson };
