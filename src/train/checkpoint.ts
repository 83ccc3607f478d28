import { createHash } from 'node:crypto';
import { mkdir, readFile, readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { describeFsError, GraftError } from '../util/errors.js';
import { writeFileAtomic } from '../util/atomic.js';
import type { HeadParams } from '../model/head.js';
import type { History } from './history.js';
import type { OptimizerState } from './optimizers.js';

/**
 * A training checkpoint in `<dir>`: checkpoint.json (small) naming checkpoint-<generation>.bin
 * (every float array, concatenated). The binary of a new generation is written first, then the
 * json is replaced atomically, then older binaries are removed: a crash at any point leaves the
 * json naming a complete binary.
 */
export interface Checkpoint {
  /** Epochs finished (training resumes at this 0-based epoch). */
  epoch: number;
  seed: number;
  fingerprint: string;
  history: History;
  params: HeadParams;
  optimizer: OptimizerState;
}

const FORMAT = 'graft-head-checkpoint-1';
const JSON_NAME = 'checkpoint.json';

interface Meta {
  format: string;
  generation: number;
  binary: string;
  bytes: number;
  epoch: number;
  seed: number;
  fingerprint: string;
  history: History;
  dense: { inputSize: number; units: number }[];
  optimizer: { config: OptimizerState['config']; iterations: number; slotsPerParam: number };
}

/** A short stable hash of a JSON-able description of the training setup. */
export function configFingerprint(config: unknown): string {
  return createHash('sha256').update(JSON.stringify(config)).digest('hex').slice(0, 16);
}

function arrays(ck: Pick<Checkpoint, 'params' | 'optimizer'>): Float32Array[] {
  const params = ck.params.dense.flatMap((d) => [d.kernel, d.bias]);
  return [...params, ...ck.optimizer.slots.flat()];
}

async function readMeta(dir: string): Promise<Meta | null> {
  const file = join(dir, JSON_NAME);
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw describeFsError(err, file);
  }
  let meta: Meta;
  try {
    meta = JSON.parse(text) as Meta;
  } catch {
    throw new GraftError(`${file} is not valid JSON`, { file });
  }
  if (meta.format !== FORMAT) throw new GraftError(`${file} is not a graft head checkpoint (format ${String(meta.format)})`, { file });
  return meta;
}

export async function saveCheckpoint(dir: string, ck: Checkpoint): Promise<void> {
  try {
    await mkdir(dir, { recursive: true });
  } catch (err) {
    throw describeFsError(err, dir, 'create');
  }
  const previous = await readMeta(dir).catch(() => null);
  const generation = (previous?.generation ?? 0) + 1;
  const binary = `checkpoint-${generation}.bin`;
  const data = arrays(ck);
  const chunks = data.map((a) => new Uint8Array(a.buffer, a.byteOffset, a.byteLength));
  await writeFileAtomic(join(dir, binary), chunks);
  const meta: Meta = {
    format: FORMAT,
    generation,
    binary,
    bytes: chunks.reduce((s, c) => s + c.length, 0),
    epoch: ck.epoch,
    seed: ck.seed,
    fingerprint: ck.fingerprint,
    history: ck.history,
    dense: ck.params.dense.map((d) => ({ inputSize: d.inputSize, units: d.units })),
    optimizer: { config: ck.optimizer.config, iterations: ck.optimizer.iterations, slotsPerParam: ck.optimizer.slots[0]?.length ?? 0 },
  };
  await writeFileAtomic(join(dir, JSON_NAME), JSON.stringify(meta, null, 1));
  // Older generations are no longer named by the json.
  for (const f of await readdir(dir).catch(() => [] as string[])) {
    if (/^checkpoint-\d+\.bin$/.test(f) && f !== binary) await rm(join(dir, f), { force: true }).catch(() => {});
  }
}

/** The checkpoint in `dir`, or null when there is none. */
export async function loadCheckpoint(dir: string): Promise<Checkpoint | null> {
  const meta = await readMeta(dir);
  if (!meta) return null;
  const file = join(dir, meta.binary);
  let bytes: Buffer;
  try {
    bytes = await readFile(file);
  } catch (err) {
    throw describeFsError(err, file);
  }
  if (bytes.length !== meta.bytes) throw new GraftError(`${file} holds ${bytes.length} bytes, expected ${meta.bytes}`, { file });
  let offset = 0;
  const take = (n: number) => {
    const a = new Float32Array(n);
    new Uint8Array(a.buffer).set(bytes.subarray(offset, offset + n * 4));
    offset += n * 4;
    return a;
  };
  const params: HeadParams = {
    dense: meta.dense.map(({ inputSize, units }) => ({ inputSize, units, kernel: take(inputSize * units), bias: take(units) })),
  };
  const sizes = params.dense.flatMap((d) => [d.kernel.length, d.bias.length]);
  const slots = sizes.map((n) => Array.from({ length: meta.optimizer.slotsPerParam }, () => take(n)));
  return {
    epoch: meta.epoch,
    seed: meta.seed,
    fingerprint: meta.fingerprint,
    history: meta.history,
    params,
    optimizer: { config: meta.optimizer.config, iterations: meta.optimizer.iterations, slots },
  };
}
