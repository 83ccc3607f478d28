import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { niceTicks, plotHistory } from '../src/evaluate/plots.js';
import type { History } from '../src/train/history.js';

/** Size and the mean (x, y) of pure-red and pure-blue pixels (matplotlib 'r' and 'b') left of `maxX`. */
async function colours(file: string, maxX = Infinity) {
  const { data, info } = await sharp(file).removeAlpha().raw().toBuffer({ resolveWithObject: true });
  const acc = { red: { n: 0, y: 0 }, blue: { n: 0, y: 0 } };
  for (let y = 0; y < info.height; y++) {
    for (let x = 0; x < Math.min(info.width, maxX); x++) {
      const i = (y * info.width + x) * 3;
      const [r, g, b] = [data[i]!, data[i + 1]!, data[i + 2]!];
      if (r > 200 && g < 60 && b < 60) (acc.red.n++, (acc.red.y += y));
      if (b > 200 && r < 60 && g < 60) (acc.blue.n++, (acc.blue.y += y));
    }
  }
  return { width: info.width, height: info.height, red: acc.red.n, blue: acc.blue.n, redY: acc.red.y / acc.red.n, blueY: acc.blue.y / acc.blue.n };
}

test('nice ticks', () => {
  const u = niceTicks(0, 1, 6);
  assert.equal(u.decimals, 1);
  assert.deepEqual(u.ticks.map((v) => v.toFixed(1)), ['0.0', '0.2', '0.4', '0.6', '0.8', '1.0']);
  const t = niceTicks(0.845, 0.9605);
  assert.equal(t.decimals, 3);
  assert.deepEqual(t.ticks.map((v) => v.toFixed(3)), ['0.850', '0.875', '0.900', '0.925', '0.950']);
});

test('plotHistory draws training in red and validation in blue, where the values are', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'graft-plots-'));
  try {
    // Training accuracy rises, validation falls: at the left, red is low and blue high.
    const h: History = { accuracy: [0.5, 0.75, 1.0], val_accuracy: [1.0, 0.75, 0.5], loss: [0.9, 0.5, 0.2], val_loss: [0.2, 0.5, 0.9] };
    const out = await plotHistory(h, dir);
    assert.deepEqual((await readdir(dir)).sort(), ['accuracy.png', 'loss.png']);
    for (const file of [out.accuracyFile, out.lossFile]) {
      const all = await colours(file);
      assert.equal(all.width, 640);
      assert.equal(all.height, 480);
      assert.ok(all.red > 200 && all.blue > 200, `${file}: ${all.red} red, ${all.blue} blue pixels`);
    }
    const leftAcc = await colours(out.accuracyFile, 160);
    assert.ok(leftAcc.redY > leftAcc.blueY + 100, `accuracy: red at y ${leftAcc.redY}, blue at y ${leftAcc.blueY}`);
    const leftLoss = await colours(out.lossFile, 160);
    assert.ok(leftLoss.redY < leftLoss.blueY - 100, `loss: red at y ${leftLoss.redY}, blue at y ${leftLoss.blueY}`);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('single-epoch, NaN/Infinity and empty histories still give valid plots', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'graft-plots-'));
  try {
    const one = await plotHistory({ accuracy: [0.8], val_accuracy: [0.9], loss: [0.5], val_loss: [0.4] }, join(dir, 'one'));
    const c1 = await colours(one.accuracyFile);
    assert.ok(c1.red > 20 && c1.blue > 20, `single epoch: ${c1.red} red, ${c1.blue} blue`);

    const nan = await plotHistory(
      { accuracy: [0.5, NaN, 0.7, 0.8], val_accuracy: [0.6, 0.65, Infinity, 0.7], loss: [NaN, NaN, NaN, NaN], val_loss: [1, 0.8, 0.7, 0.6] },
      join(dir, 'nan'),
    );
    const c2 = await colours(nan.accuracyFile);
    assert.ok(c2.red > 50 && c2.blue > 50);
    const c3 = await colours(nan.lossFile);
    assert.equal(c3.red, 0); // no finite training loss: no red line and no red legend entry
    assert.ok(c3.blue > 100);

    const empty = await plotHistory({ accuracy: [], val_accuracy: [], loss: [], val_loss: [] }, join(dir, 'empty'));
    const c4 = await colours(empty.lossFile);
    assert.equal(c4.width, 640);
    assert.equal(c4.red + c4.blue, 0);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
