import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readHistory, writeHistory } from '../src/export/history-io.js';
import { GraftError } from '../src/util/errors.js';

test('history.json round-trips, NaN as null, and reads Keras files (acc/val_acc, bare NaN)', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'graft-history-'));
  try {
    const file = join(dir, 'history.json');
    const h = { loss: [0.5, NaN], accuracy: [0.75, 0.8], val_loss: [0.4, 0.3], val_accuracy: [0.9, Infinity] };
    await writeHistory(file, h);
    assert.deepEqual(await readdir(dir), ['history.json']);
    const json = JSON.parse(await readFile(file, 'utf8'));
    assert.deepEqual(Object.keys(json), ['loss', 'accuracy', 'val_loss', 'val_accuracy']);
    assert.deepEqual(json.loss, [0.5, null]);
    assert.deepEqual(await readHistory(file), { loss: [0.5, NaN], accuracy: [0.75, 0.8], val_loss: [0.4, 0.3], val_accuracy: [0.9, NaN] });

    const keras = join(dir, 'keras.json');
    await writeFile(keras, '{"acc": [0.6, 0.7], "loss": [NaN, 0.5], "val_acc": [0.65, 0.72], "val_loss": [0.6, -Infinity], "lr": [0.001, 0.001]}');
    assert.deepEqual(await readHistory(keras), { loss: [NaN, 0.5], accuracy: [0.6, 0.7], val_loss: [0.6, NaN], val_accuracy: [0.65, 0.72] });

    await writeFile(join(dir, 'bad.json'), '{"loss": "high"}');
    await assert.rejects(readHistory(join(dir, 'bad.json')), (e: unknown) => e instanceof GraftError && e.message.includes('bad.json'));
    await writeFile(join(dir, 'broken.json'), '{"loss": [0.1');
    await assert.rejects(readHistory(join(dir, 'broken.json')), GraftError);
    await assert.rejects(readHistory(join(dir, 'missing.json')), (e: unknown) => e instanceof GraftError && /no such file/.test(e.message));
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
