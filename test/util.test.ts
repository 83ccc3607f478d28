import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, readdir, writeFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Random } from '../src/util/random.js';
import { writeFileAtomic } from '../src/util/atomic.js';
import { GraftError } from '../src/util/errors.js';

test('Random is reproducible from its seed and differs across seeds', () => {
  const a = new Random(42), b = new Random(42), c = new Random(43);
  const xa = Array.from({ length: 5 }, () => a.uint32());
  const xb = Array.from({ length: 5 }, () => b.uint32());
  const xc = Array.from({ length: 5 }, () => c.uint32());
  assert.deepEqual(xa, xb);
  assert.notDeepEqual(xa, xc);
});

test('Random.next is uniform on [0,1) and permutation is a permutation', () => {
  const r = new Random(1);
  let sum = 0;
  for (let i = 0; i < 20000; i++) {
    const x = r.next();
    assert.ok(x >= 0 && x < 1);
    sum += x;
  }
  assert.ok(Math.abs(sum / 20000 - 0.5) < 0.01);
  const p = Array.from(r.permutation(100)).sort((x, y) => x - y);
  assert.deepEqual(p, Array.from({ length: 100 }, (_, i) => i));
});

test('writeFileAtomic replaces the file whole and leaves no temp files', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'graft-atomic-'));
  const file = join(dir, 'a.json');
  await writeFile(file, 'old');
  await writeFileAtomic(file, 'new content');
  assert.equal(await readFile(file, 'utf8'), 'new content');
  assert.deepEqual(await readdir(dir), ['a.json']);
  await rm(dir, { recursive: true });
});

test('writeFileAtomic where the folder cannot exist fails with a GraftError naming the file', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'graft-atomic-'));
  const blocker = join(dir, 'not-a-folder');
  await writeFile(blocker, 'old');
  const file = join(blocker, 'a.json');
  await assert.rejects(writeFileAtomic(file, 'new'), (e: unknown) => e instanceof GraftError && e.message.includes(file));
  assert.equal(await readFile(blocker, 'utf8'), 'old');
  await rm(dir, { recursive: true });
});
