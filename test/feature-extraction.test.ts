/**
 * graft features: a store written in shards and merged is the store one run writes; a killed
 * extraction continues where it stopped; graft train --features trains as --mode cached on the
 * same images; a store of other settings, a part, or a bad --shard is refused with a message.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFile, mkdir, mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { trainClassifier, type TrainOptions } from '../src/learner.js';
import { parseHeadSpec } from '../src/model/head-spec-parse.js';
import { extractFeatures, mergeFeatureShards, parseShard, shardPartFile, shardRows, type ExtractFeaturesOptions } from '../src/train/feature-extraction.js';
import { FeatureStoreFile } from '../src/train/feature-store.js';
import { sharedInceptionWeightsDir, sharedLabDataDir } from '../src/util/paths.js';
import { runGraft } from './support/cli.js';

const root = await mkdtemp(join(tmpdir(), 'graft-features-'));
test.after(() => rm(root, { recursive: true, force: true }));
// 48 training images (two chunks of 32: the shards get real slices), 6 validation images.
for (const split of ['train', 'validation'] as const) {
  for (const cls of ['cats', 'dogs']) {
    const from = join(sharedLabDataDir(), split, cls);
    await mkdir(join(root, 'data', split, cls), { recursive: true });
    for (const f of (await readdir(from)).sort().slice(0, split === 'train' ? 24 : 3)) await copyFile(join(from, f), join(root, 'data', split, cls, f));
  }
}
const weights = sharedInceptionWeightsDir('fp32');
// Small and quick: mixed0 at 75x75, pooled by a gap head (256 floats an image).
const settings = { recipe: 'lab' as const, weights, cut: 'mixed0', inputSize: [75, 75] as [number, number], head: parseHeadSpec('gap,dense:8:relu,dropout:0.2') };
const extract = (out: string, extra: Partial<ExtractFeaturesOptions> = {}) => extractFeatures({ data: join(root, 'data', 'train'), out: join(root, out), ...settings, ...extra });

async function allRows(file: string): Promise<Float32Array> {
  const store = await FeatureStoreFile.open(file);
  assert.ok(store instanceof FeatureStoreFile, `${file}: ${(store as { problem?: string }).problem}`);
  const rows = new Float32Array(store.count * store.rowFloats);
  await store.readRange(0, store.count, rows);
  await store.close();
  return rows;
}

test('shards: slices of whole chunks covering every row once; bad --shard values refused', () => {
  for (const [rows, n] of [[48, 2], [48, 3], [1000, 7], [5, 4], [0, 2]] as const) {
    let next = 0;
    for (let i = 0; i < n; i++) {
      const s = shardRows(rows, { index: i, count: n });
      assert.equal(s.first, s.count > 0 ? next : s.first);
      if (s.count > 0) assert.equal(s.first % 32, 0);
      next += s.count;
    }
    assert.equal(next, rows);
  }
  assert.deepEqual(parseShard('3/16'), { index: 3, count: 16 });
  for (const bad of ['2/2', '-1/3', '1/0', 'a/b', '3', '1/2/3', '']) assert.throws(() => parseShard(bad), /bad shard .*: use I\/N with N at least 1 and I from 0 to N-1/, bad);
});

test('two or three shards merged give the bytes of one run; a killed extraction continues where it stopped', async () => {
  const whole = await extract('whole.features');
  assert.equal(whole.rows, 48);
  assert.deepEqual(whole.classes, ['cats', 'dogs']);
  const wholeBytes = await readFile(join(root, 'whole.features'));

  for (const n of [2, 3]) {
    const store = join(root, `sharded${n}.features`);
    // Shards run in any order (independent workers); the merge waits for all of them.
    for (const i of [...Array(n).keys()].reverse()) {
      if (i === 0) await assert.rejects(mergeFeatureShards(store), new RegExp(`1 of ${n} shards are not finished \\(0/${n}\\)`));
      const part = await extract(`sharded${n}.features`, { shard: { index: i, count: n } });
      assert.equal(part.file, shardPartFile(store, { index: i, count: n }));
    }
    const notes: string[] = [];
    const merged = await mergeFeatureShards(store, { onNote: (l) => notes.push(l) });
    assert.equal(merged.rows, 48);
    assert.ok((await readFile(store)).equals(wholeBytes), `${n} shards merged are the bytes of one run`);
    assert.deepEqual((await readdir(root)).filter((f) => f.startsWith(`sharded${n}.features.part`)), [], 'the parts are removed');
  }

  // Killed after its first chunk of 32 (blocks of 16 rows, windows of 32 images): 32 rows are kept.
  const notes: string[] = [];
  const abort = new AbortController();
  const small = { blockRows: 16, memoryBudget: 75 * 75 * 3 * 32, onNote: (l: string) => notes.push(l) };
  await assert.rejects(
    extract('killed.features', { ...small, signal: abort.signal, onProgress: () => abort.abort() }),
    /interrupted: 32 of 48 rows of .*killed\.features are kept; run the same command again to continue/,
  );
  const resumed = await extract('killed.features', small);
  assert.equal(resumed.resumedFrom, 32);
  assert.ok(notes.some((l) => /Continuing the unfinished .*killed\.features from row 32 \(32 of its 48 rows verified\)/.test(l)), notes.join('\n'));
  assert.deepEqual(await allRows(join(root, 'killed.features')), await allRows(join(root, 'whole.features')));
  // Run again: complete, nothing computed.
  assert.equal((await extract('killed.features', small)).reused, true);
});

function trainOptions(out: string, extra: Partial<TrainOptions> = {}): TrainOptions & { lines: string[] } {
  const lines: string[] = [];
  return { data: '', out: join(root, out), ...settings, batchSize: 8, epochs: 2, seed: 5, optimizer: { kind: 'adam', learningRate: 1e-3 }, verbose: 2, lines, log: (l) => lines.push(l), ...extra };
}

test('graft train --features trains as --mode cached on the same images; a store of other settings or a part is refused', async () => {
  const store = join(root, 'train.features');
  if (!(await readdir(root)).includes('train.features')) await extract('train.features');
  await extractFeatures({ data: join(root, 'data', 'validation'), out: join(root, 'val.features'), ...settings });

  const cached = await trainClassifier(trainOptions('cached', { data: join(root, 'data'), mode: { kind: 'cached' } }));
  const fromStore = await trainClassifier(trainOptions('from-store', { features: store, validationData: join(root, 'data', 'validation') }));
  assert.deepEqual(fromStore.history, cached.history);
  assert.deepEqual(fromStore.metrics, cached.metrics);
  assert.deepEqual(fromStore.classes, ['cats', 'dogs']);
  const bothStores = await trainClassifier(trainOptions('both-stores', { features: store, validationFeatures: join(root, 'val.features') }));
  assert.deepEqual(bothStores.history, cached.history);

  // The CLI: the same run; then refusals, one line each.
  const cli = await runGraft('train', '--features', store, '--val-features', join(root, 'val.features'), '--out', join(root, 'cli'), '--recipe', 'lab', '--weights', weights,
    '--cut', 'mixed0', '--input-size', '75', '--head', 'gap,dense:8:relu,dropout:0.2', '--batch-size', '8', '--epochs', '2', '--seed', '5', '--optimizer', 'adam', '--lr', '0.001', '--quiet');
  assert.equal(cli.code, 0, cli.err);
  assert.deepEqual(JSON.parse(await readFile(join(root, 'cli', 'history.json'), 'utf8')).val_accuracy, cached.history.val_accuracy);

  const other = await runGraft('train', '--features', store, '--val', join(root, 'data', 'validation'), '--out', join(root, 'other'), '--recipe', 'lab', '--weights', weights,
    '--cut', 'mixed0', '--input-size', '75', '--head', 'gap,dense:8:relu', '--preprocess', 'inception');
  assert.equal(other.code, 1);
  assert.match(other.err, /^graft: error: the feature store .*train\.features holds features of other settings than this run's \(preprocess rescale, now inception\): train with the settings it was written with, or write it again with graft features$/);
  const flatten = await trainClassifier(trainOptions('x', { features: store, validationData: join(root, 'data', 'validation'), head: parseHeadSpec('flatten,dense:8:relu') })).catch((e: Error) => e);
  assert.match(String(flatten), /other settings than this run's \(pooling avg, now none; row shape \[256\], now \[7, 7, 256\]\)/);
  // A grid-pooled head, as the default recipe's (avgpool:7:5 there): the store names its pooling
  // as a string, the run's backbone holds it as an object; the same pooling must be accepted.
  const gridHead = parseHeadSpec('avgpool:3:2,flatten,dense:8:relu');
  await extract('grid.features', { head: gridHead });
  await extractFeatures({ data: join(root, 'data', 'validation'), out: join(root, 'grid-val.features'), ...settings, head: gridHead });
  const grid = await trainClassifier(trainOptions('grid', { data: join(root, 'data'), head: gridHead, mode: { kind: 'cached' } }));
  const gridFromStore = await trainClassifier(trainOptions('grid-from-store', { features: join(root, 'grid.features'), validationFeatures: join(root, 'grid-val.features'), head: gridHead }));
  assert.deepEqual(gridFromStore.history, grid.history);
  const gridOther = await trainClassifier(trainOptions('x', { features: join(root, 'grid.features'), validationFeatures: join(root, 'grid-val.features'), head: parseHeadSpec('avgpool:2:2,flatten,dense:8:relu') })).catch((e: Error) => e);
  assert.match(String(gridOther), /other settings than this run's \(pooling avgpool:3:2, now avgpool:2:2\)/);
  const faithful = await trainClassifier(trainOptions('x', { features: store, validationData: join(root, 'data', 'validation'), mode: { kind: 'faithful' } })).catch((e: Error) => e);
  assert.match(String(faithful), /reads cached features: use (--mode cached|mode: \{ kind: 'cached' \}), not faithful/);

  await extract('part.features', { shard: { index: 1, count: 2 } });
  const part = await runGraft('train', '--features', join(root, 'part.features.part-1-of-2'), '--val', join(root, 'data', 'validation'), '--out', join(root, 'part-run'));
  assert.match(part.err, /is one part \(rows 32 to 47 of 48\) of a sharded store: merge the parts first \(graft features --merge STORE\)/);
  const badShard = await runGraft('features', '--data', join(root, 'data', 'train'), '--out', join(root, 'x.features'), '--shard', '4/4');
  assert.match(badShard.err, /^graft: error: bad shard '4\/4'/);
  const noData = await runGraft('train', '--out', join(root, 'none'));
  assert.match(noData.err, /give the images \(--data DIR\) or their features \(--features STORE\)/);
});
