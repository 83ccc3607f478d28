import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { main } from '../src/cli/main.js';
import type { KerasGraph } from '../src/backbone/keras-graph.js';
import { writeKerasH5 } from './support/keras-h5-fixture.js';

/** Runs the CLI in-process, returning its exit code and what it printed. */
async function graft(...args: string[]): Promise<{ code: number; out: string; err: string }> {
  const out: string[] = [];
  const err: string[] = [];
  const log = console.log;
  const error = console.error;
  console.log = (...a: unknown[]) => void out.push(a.join(' '));
  console.error = (...a: unknown[]) => void err.push(a.join(' '));
  try {
    const code = await main(['node', 'graft', ...args]);
    return { code, out: out.join('\n'), err: err.join('\n') };
  } finally {
    console.log = log;
    console.error = error;
  }
}

test('graft weights <file.h5> --load: says what the file is and what it holds', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'graft-wcli-'));
  try {
    const graph: KerasGraph = {
      name: 'small',
      inputs: ['input_1'],
      outputs: ['dense_1'],
      layers: [
        { name: 'input_1', className: 'InputLayer', config: { batch_input_shape: [null, 2, 2, 1] }, inbound: [] },
        { name: 'flatten_1', className: 'Flatten', config: {}, inbound: ['input_1'] },
        { name: 'dense_1', className: 'Dense', config: { units: 3 }, inbound: ['flatten_1'] },
      ],
    };
    const file = join(dir, 'small.h5');
    await writeKerasH5(
      file,
      [
        { name: 'input_1', weights: [] },
        { name: 'flatten_1', weights: [] },
        { name: 'dense_1', weights: [{ name: 'kernel', shape: [4, 3], data: new Float32Array(12) }, { name: 'bias', shape: [3], data: new Float32Array(3) }] },
      ],
      { modelConfig: graph },
    );
    const ok = await graft('weights', file, '--load');
    assert.equal(ok.code, 0, ok.err);
    assert.match(ok.out, new RegExp(`small\\.h5: Keras HDF5 weights ${file.replace(/[.]/g, '\\.')}`));
    assert.match(ok.out, /small\.h5: 3 layers up to dense_1, 2 weight arrays, 15 parameters/);

    const bad = await graft('weights', join(dir, 'nope'));
    assert.equal(bad.code, 1);
    assert.match(bad.err, /^graft: error: .*nope: no such weights file or folder/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
