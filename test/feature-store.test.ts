/**
 * Feature store files: rows read back as written, a killed write resumes from its last verified
 * block, and a store of other settings, cut short or damaged is detected and rebuilt, never used.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readdir, readFile, rm, stat, symlink, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  checkDiskSpace,
  FeatureStoreFile,
  FeatureStoreWriter,
  MemoryFeatureRows,
  mergeFeatureStoreParts,
  obtainFeatureStore,
  type FeatureStoreSpec,
} from '../src/train/feature-store.js';
import { Random } from '../src/util/random.js';
import { GraftError } from '../src/util/errors.js';
import { bytesOption } from '../src/cli/options.js';

const dir = await mkdtemp(join(tmpdir(), 'graft-feature-store-'));
test.after(() => rm(dir, { recursive: true, force: true }));

const D = 6;
function values(rows: number, seed = 1): Float32Array {
  const rng = new Random(seed);
  const v = new Float32Array(rows * D);
  for (let i = 0; i < v.length; i++) v[i] = rng.normal();
  return v;
}
const spec = (rows: number, extra: Partial<FeatureStoreSpec> = {}): FeatureStoreSpec => ({
  fingerprint: { images: `${rows} images, digest abc`, preprocess: 'rescale' },
  rows,
  rowShape: [D],
  dtype: 'float32',
  ...extra,
});

/** Writes `data` in chunks of `chunk` rows through `write`, from row `from` (rounded down to a chunk). */
async function writeChunks(data: Float32Array, rows: number, chunk: number, from: number, write: (first: number, v: Float32Array, n: number) => Promise<void>, stopAt = rows) {
  for (let first = Math.floor(from / chunk) * chunk; first < stopAt; first += chunk) {
    const n = Math.min(chunk, rows - first);
    await write(first, data.slice(first * D, (first + n) * D), n);
  }
}

test('rows read back as written, by index and by range, float32 exactly and float16 as in memory', async () => {
  const rows = 23, data = values(rows);
  for (const dtype of ['float32', 'float16'] as const) {
    const file = join(dir, `round-${dtype}.features`);
    const writer = await FeatureStoreWriter.begin(file, spec(rows, { dtype }), { blockRows: 5 });
    await writeChunks(data, rows, 4, 0, (f, v, n) => writer.write(f, v, n));
    const store = await writer.finish();
    const memory = new MemoryFeatureRows(D, rows, dtype);
    memory.write(0, data, rows);
    try {
      assert.equal(store.count, rows);
      const picks = [22, 0, 7, 7, 13];
      const a = new Float32Array(picks.length * D), b = new Float32Array(picks.length * D);
      await store.read(picks, a);
      await memory.read(picks, b);
      assert.deepEqual(a, b);
      if (dtype === 'float32') assert.deepEqual(a.subarray(0, D), data.subarray(22 * D, 23 * D));
      const range = new Float32Array(4 * D), expected = new Float32Array(4 * D);
      await store.readRange(18, 4, range);
      await memory.readRange(18, 4, expected);
      assert.deepEqual(range, expected);
      assert.deepEqual(await readdir(dir).then((f) => f.filter((n) => n.startsWith(`round-${dtype}`))), [`round-${dtype}.features`], 'no partial files left');
    } finally {
      await store.close();
    }
    const verified = await FeatureStoreFile.open(file, spec(rows, { dtype }), { verify: true });
    assert.ok(verified instanceof FeatureStoreFile);
    await verified.close();
  }
});

test('a killed write resumes from its last verified block and ends as one written straight', async () => {
  const rows = 40, data = values(rows, 2);
  const straight = join(dir, 'straight.features'), killed = join(dir, 'killed.features');
  const w1 = await FeatureStoreWriter.begin(straight, spec(rows), { blockRows: 8 });
  await writeChunks(data, rows, 6, 0, (f, v, n) => w1.write(f, v, n));
  await (await w1.finish()).close();

  const w2 = await FeatureStoreWriter.begin(killed, spec(rows), { blockRows: 8 });
  await writeChunks(data, rows, 6, 0, (f, v, n) => w2.write(f, v, n), 30); // rows 0..29: blocks 0-2 finished
  await w2.close();
  assert.equal((await FeatureStoreFile.open(killed)).constructor, Object, 'no finished store yet');
  const notes: string[] = [];
  const w3 = await FeatureStoreWriter.begin(killed, spec(rows), { blockRows: 8, onNote: (l) => notes.push(l) });
  assert.equal(w3.rowsDone, 24, 'resumes after the third block');
  await writeChunks(data, rows, 6, w3.rowsDone, (f, v, n) => w3.write(f, v, n));
  await (await w3.finish()).close();
  assert.deepEqual(await readFile(killed), await readFile(straight));

  // A damaged finished block of an unfinished file is written again, not kept.
  const w4 = await FeatureStoreWriter.begin(killed + '2', spec(rows), { blockRows: 8 });
  await writeChunks(data, rows, 6, 0, (f, v, n) => w4.write(f, v, n), 30);
  await w4.close();
  const partial = `${killed}2.partial`;
  const bytes = await readFile(partial);
  bytes[bytes.length - 8 * D * 4 - 3]! ^= 0xff; // in row 21: block 2 (rows 16-23)
  await writeFile(partial, bytes);
  const w5 = await FeatureStoreWriter.begin(killed + '2', spec(rows), { blockRows: 8 });
  assert.equal(w5.rowsDone, 16, 'the block failing its checksum is written again');
  await writeChunks(data, rows, 6, w5.rowsDone, (f, v, n) => w5.write(f, v, n));
  await (await w5.finish()).close();
  assert.deepEqual(await readFile(killed + '2'), await readFile(straight));

  // An unfinished file of other settings is dropped.
  const w6 = await FeatureStoreWriter.begin(killed + '3', spec(rows), { blockRows: 8 });
  await writeChunks(data, rows, 6, 0, (f, v, n) => w6.write(f, v, n), 20);
  await w6.close();
  const w7 = await FeatureStoreWriter.begin(killed + '3', spec(rows, { fingerprint: { other: true } }), { blockRows: 8, onNote: (l) => notes.push(l) });
  assert.equal(w7.rowsDone, 0);
  await w7.close();
  assert.ok(notes.some((l) => /unfinished feature store .*killed\.features3\.partial was for other settings/.test(l)), notes.join('\n'));
});

test('obtainFeatureStore reuses a matching store; other settings, a cut-short or a damaged file are named and rebuilt', async () => {
  const rows = 30, data = values(rows, 3);
  const file = join(dir, 'obtain.features');
  let computed = 0;
  const compute = async (from: number, write: (f: number, v: Float32Array, n: number) => Promise<void>) => {
    computed++;
    await writeChunks(data, rows, 7, from, write);
  };
  const read = async (store: FeatureStoreFile) => {
    const out = new Float32Array(rows * D);
    await store.readRange(0, rows, out);
    await store.close();
    return out;
  };
  const notes: string[] = [];
  const onNote = (l: string) => notes.push(l);
  const first = await obtainFeatureStore(file, spec(rows), compute, { onNote, blockRows: 8 });
  assert.equal(first.reused, false);
  assert.deepEqual(await read(first.store), data);
  const again = await obtainFeatureStore(file, spec(rows), compute, { onNote, blockRows: 8 });
  assert.equal(again.reused, true);
  assert.equal(computed, 1, 'a matching store is not computed again');
  assert.deepEqual(await read(again.store), data);

  // Other settings: named, rebuilt.
  const other = spec(rows, { fingerprint: { images: `${rows} images, digest abc`, preprocess: 'inception' } });
  const rebuilt = await obtainFeatureStore(file, other, compute, { onNote, blockRows: 8 });
  assert.equal(rebuilt.reused, false);
  await rebuilt.store.close();
  assert.match(notes.at(-1)!, /obtain\.features cannot be used: it holds features of other settings \(preprocess rescale, now inception\); computing it again/);

  // One flipped bit in the rows: the checksum catches it.
  const bytes = await readFile(file);
  const { size } = await stat(file);
  bytes[size - 200]! ^= 0x01;
  await writeFile(file, bytes);
  const afterDamage = await obtainFeatureStore(file, other, compute, { onNote, blockRows: 8 });
  assert.equal(afterDamage.reused, false);
  assert.match(notes.at(-1)!, /cannot be used: it is damaged: rows \d+ to \d+ fail their checksum; computing it again/);
  assert.deepEqual(await read(afterDamage.store), data);

  // Cut short, and not a store at all.
  await truncate(file, size - 10);
  const afterCut = await obtainFeatureStore(file, other, compute, { onNote, blockRows: 8 });
  await afterCut.store.close();
  assert.match(notes.at(-1)!, /cannot be used: it is cut short/);
  await writeFile(file, 'hello');
  const afterJunk = await obtainFeatureStore(file, other, compute, { onNote, blockRows: 8 });
  assert.equal(afterJunk.reused, false);
  assert.deepEqual(await read(afterJunk.store), data);
  assert.match(notes.at(-1)!, /cannot be used: not a graft feature store/);
  assert.equal(computed, 5);
});

test('a store the disk has no room for is refused up front, saying how much it needs and where; a disk filling up says the same', async () => {
  await assert.rejects(checkDiskSpace(join(dir, 'huge.features'), 2 ** 62), (err: unknown) => {
    assert.ok(err instanceof GraftError);
    assert.match(err.message, /not enough disk space for the feature store .*huge\.features: it needs 4294967296\.0 GiB and .* has [\d.]+ [GMK]iB free/);
    return true;
  });
  // /dev/full answers every write with ENOSPC, as a disk running out mid-way does.
  const file = join(dir, 'full.features');
  await symlink('/dev/full', `${file}.partial`);
  await assert.rejects(FeatureStoreWriter.begin(file, spec(1000)), (err: unknown) => {
    assert.ok(err instanceof GraftError);
    assert.match(err.message, /^the disk is full: the feature store .*full\.features needs 28 KiB in .*graft-feature-store-\w+ \(0 KiB of it written, kept to continue from\); free space there, or choose another output folder$/);
    return true;
  });
});

test('--memory-budget reads sizes in binary units and refuses anything else in one line', () => {
  const parse = bytesOption('memory-budget');
  assert.equal(parse('1G'), 2 ** 30);
  assert.equal(parse('512M'), 512 * 2 ** 20);
  assert.equal(parse('2.5GiB'), 2.5 * 2 ** 30);
  assert.equal(parse('64k'), 65536);
  assert.equal(parse('300000000'), 300000000);
  assert.throws(() => parse('lots'), /^GraftError: --memory-budget must be a size such as 1G, 512M or 300000000 \(bytes\), found 'lots'$/);
});

test('part files of a sharded extraction merge into the very store one run writes', async () => {
  const rows = 31, data = values(rows, 4);
  for (const dtype of ['float32', 'float16'] as const) {
    const whole = join(dir, `whole-${dtype}.features`);
    const w = await FeatureStoreWriter.begin(whole, spec(rows, { dtype }), { blockRows: 8 });
    await writeChunks(data, rows, 5, 0, (f, v, n) => w.write(f, v, n));
    await (await w.finish()).close();
    // Shard I of 3 writes rows [floor(I*rows/3), floor((I+1)*rows/3)) into its own part file.
    const parts: string[] = [];
    for (let i = 2; i >= 0; i--) {
      const firstRow = Math.floor((i * rows) / 3), end = Math.floor(((i + 1) * rows) / 3);
      const part = join(dir, `part-${dtype}-${i}.features`);
      const pw = await FeatureStoreWriter.begin(part, spec(rows, { dtype }), { firstRow, partRows: end - firstRow, blockRows: 3 });
      for (let r = firstRow; r < end; r += 4) {
        const n = Math.min(4, end - r);
        await pw.write(r - firstRow, data.slice(r * D, (r + n) * D), n);
      }
      await (await pw.finish()).close();
      parts.push(part);
    }
    const merged = join(dir, `merged-${dtype}.features`);
    await (await mergeFeatureStoreParts(parts, merged, { blockRows: 8 })).close();
    assert.deepEqual(await readFile(merged), await readFile(whole), dtype);
    await assert.rejects(mergeFeatureStoreParts([parts[0]!, parts[2]!], join(dir, 'gap.features')), /the feature store parts leave rows 10 to 19 missing/);
  }
});
