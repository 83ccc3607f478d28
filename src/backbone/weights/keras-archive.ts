/**
 * Keras 3 `.keras` archives (`model.save('x.keras')`): a zip holding config.json (the model's
 * topology), metadata.json and model.weights.h5 (the weights in Keras 3's layout, keras3-h5.ts).
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GraftError } from '../../util/errors.js';
import { parseJsonText } from '../../util/json-file.js';
import { BadZipError, readZipEntries } from '../../util/zip.js';
import type { KerasGraph, WeightMap } from '../keras-graph.js';
import { parseKerasTopology } from '../topology.js';
import { loadKerasH5Weights } from './keras-h5.js';

const CONFIG = 'config.json';
const WEIGHTS = 'model.weights.h5';

/** The archive's topology and weights file, read out of the zip. */
async function readArchive(file: string): Promise<{ graph: KerasGraph; weights: Uint8Array }> {
  let entries: Record<string, Uint8Array>;
  try {
    entries = await readZipEntries(file, (name) => name === CONFIG || name === WEIGHTS);
  } catch (err) {
    if (!(err instanceof BadZipError)) throw err;
    throw new GraftError(`${file}: not a Keras .keras archive (cannot read it as a zip: ${err.message})`, { file });
  }
  const config = entries[CONFIG];
  const weights = entries[WEIGHTS];
  if (!config || !weights) {
    throw new GraftError(`${file}: a .keras archive needs ${CONFIG} and ${WEIGHTS}; this one lacks ${[!config && CONFIG, !weights && WEIGHTS].filter(Boolean).join(' and ')}`, { file });
  }
  const where = `${file} (${CONFIG})`;
  return { graph: parseKerasTopology(parseJsonText(Buffer.from(config).toString('utf8'), where), where), weights };
}

/**
 * Loads a .keras archive: its whole topology (`full`) and, for `pick(full)` (the whole model or a
 * cut of it), the weights. The weights file is staged in a temporary folder, as the HDF5 reader
 * reads from disk; errors name the archive, not the staged copy.
 */
export async function loadKerasArchive(file: string, pick: (full: KerasGraph) => KerasGraph): Promise<{ full: KerasGraph; graph: KerasGraph; weights: WeightMap }> {
  const { graph: full, weights: h5 } = await readArchive(file);
  const graph = pick(full);
  const dir = await mkdtemp(join(tmpdir(), 'graft-keras-'));
  const staged = join(dir, WEIGHTS);
  try {
    await writeFile(staged, h5);
    const weights = await loadKerasH5Weights(staged, graph, { match: 'name', layerOrder: full });
    return { full, graph, weights };
  } catch (err) {
    if (err instanceof GraftError) throw new GraftError(err.message.split(staged).join(`${file} (${WEIGHTS})`), { file, cause: err });
    throw err;
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
