/**
 * Fault suite for run folders: graft removes only what it wrote, one run a folder, damage to any
 * saved file is named, and a failure while saving leaves the last complete set of results.
 * Training runs are few and tiny (cached features, a gap head, one or two epochs).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { copyFile, cp, mkdir, mkdtemp, open, readdir, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { trainClassifier, type TrainOptions } from '../src/learner.js';
import { parseHeadSpec } from '../src/model/head-spec-parse.js';
import { loadClassifier, predictFiles } from '../src/model/saved-classifier.js';
import { checkpointStatus, loadCheckpoint, saveCheckpoint } from '../src/train/checkpoint.js';
import { resolveOptimizer } from '../src/train/optimizers.js';
import { RunManifest } from '../src/train/run-manifest.js';
import { LOCK_NAME, readRunLock } from '../src/train/run-lock.js';
import { openRunSession, closeRunSession, startTraining } from '../src/train/run-session.js';
import { sharedInceptionWeightsDir, sharedLabDataDir } from '../src/util/paths.js';
import { sha256File } from '../src/util/checksum.js';

const root = await mkdtemp(join(tmpdir(), 'graft-run-folder-'));
test.after(() => rm(root, { recursive: true, force: true }));

async function makeDataset(): Promise<string> {
  for (const split of ['train', 'validation'] as const) {
    for (const cls of ['cats', 'dogs']) {
      const from = join(sharedLabDataDir(), split, cls);
      const to = join(root, 'data', split, cls);
      await mkdir(to, { recursive: true });
      for (const f of (await readdir(from)).sort().slice(0, split === 'train' ? 4 : 2)) await copyFile(join(from, f), join(to, f));
    }
  }
  return join(root, 'data');
}
const data = await makeDataset();

const options = (out: string, extra: Partial<TrainOptions> = {}): TrainOptions => ({
  data,
  out: join(root, out),
  weights: sharedInceptionWeightsDir('fp32'),
  head: parseHeadSpec('gap,dense:4:relu'),
  mode: { kind: 'cached' },
  batchSize: 4,
  epochs: 1,
  seed: 3,
  verbose: 0,
  ...extra,
});

/** Every file of a run folder but its record and checkpoint, with its checksum. */
async function digests(dir: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  const walk = async (d: string, prefix: string) => {
    for (const e of await readdir(d, { withFileTypes: true })) {
      const rel = prefix + e.name;
      if (e.isDirectory()) await walk(join(d, e.name), `${rel}/`);
      else out[rel] = (await sha256File(join(d, e.name))).sha256;
    }
  };
  await walk(dir, '');
  return out;
}

async function flipBytes(file: string, at = 0.5): Promise<void> {
  const handle = await open(file, 'r+');
  try {
    const size = (await handle.stat()).size;
    const pos = Math.min(size - 1, Math.floor(size * at));
    const b = Buffer.alloc(1);
    await handle.read(b, 0, 1, pos);
    b[0] = b[0]! ^ 0x5a;
    await handle.write(b, 0, 1, pos);
  } finally {
    await handle.close();
  }
}

const image = async () => join(data, 'validation', 'cats', (await readdir(join(data, 'validation', 'cats'))).sort()[0]!);

test('a second run into a folder in use is refused at once, naming the holder; the first finishes', async () => {
  const first = trainClassifier(options('base'));
  const lock = join(root, 'base', LOCK_NAME);
  while (!existsSync(lock)) await new Promise((r) => setTimeout(r, 20));
  const t0 = Date.now();
  await assert.rejects(trainClassifier(options('base')), new RegExp(`base is in use by another graft run \\(pid ${process.pid}, started .*\\): wait for it to end or stop it`));
  await assert.rejects(trainClassifier(options('base', { resume: true })), /is in use by another graft run/);
  assert.ok(Date.now() - t0 < 5000, 'refused before any work');
  await first;
  assert.equal(existsSync(lock), false, 'the lock goes with the run');
  const manifest = await RunManifest.open(join(root, 'base'));
  await manifest.verifyAll();
  assert.ok(manifest.owns('model.onnx') && manifest.owns('model/model.json') && manifest.owns('checkpoint/checkpoint.json'));
  assert.deepEqual(await checkpointStatus(join(root, 'base', 'checkpoint')).then((s) => s?.finished), true);
});

test('a lock left by a dead process is taken over with a note; a live one names its holder', async () => {
  const out = join(root, 'stale');
  await mkdir(out);
  await writeFile(join(out, LOCK_NAME), JSON.stringify({ pid: 2 ** 22 + 12345, startedAt: '2020-01-01T00:00:00.000Z', host: hostname(), command: 'graft train --out stale' }));
  const notes: string[] = [];
  const session = await openRunSession(out, { inputs: [], say: (l) => notes.push(l) });
  assert.match(notes.join('\n'), /stale was locked by a run that is no longer running \(pid \d+, started 2020-01-01T00:00:00.000Z: graft train --out stale\); taking it over/);
  assert.equal((await readRunLock(out))?.pid, process.pid);
  await closeRunSession(session);
  assert.equal(await readRunLock(out), null);
});

test('--overwrite removes exactly the files graft recorded; foreign files and links are refused, named', async () => {
  const out = join(root, 'reused');
  await cp(join(root, 'base'), out, { recursive: true });
  await writeFile(join(out, 'notes.md'), 'mine');
  // A file graft writes, put there by the user: neither a plain run nor --overwrite replaces it.
  const fresh = join(root, 'users-own');
  await mkdir(fresh);
  await writeFile(join(fresh, 'report.txt'), 'my report');
  for (const overwrite of [false, true]) {
    await assert.rejects(trainClassifier(options('users-own', { overwrite })), /users-own holds files graft did not write where it writes its own \(report\.txt; there is no graft-run\.json/);
  }
  assert.equal(await readFile(join(fresh, 'report.txt'), 'utf8'), 'my report');
  // model/ and checkpoint/ as links into another run: refused, and that run is untouched.
  const linked = join(root, 'linked');
  await mkdir(linked);
  await symlink(join(root, 'base', 'model'), join(linked, 'model'));
  await symlink(join(root, 'base', 'checkpoint'), join(linked, 'checkpoint'));
  const before = await digests(join(root, 'base'));
  await assert.rejects(trainClassifier(options('linked', { overwrite: true })), /linked holds files graft did not write .*\(checkpoint \(a symbolic link\), model \(a symbolic link\)/);
  // A recorded file replaced by a link to another run's file: not followed, refused.
  const swapped = join(root, 'swapped');
  await cp(join(root, 'base'), swapped, { recursive: true });
  await rm(join(swapped, 'history.json'));
  await symlink(join(root, 'base', 'history.json'), join(swapped, 'history.json'));
  await assert.rejects(trainClassifier(options('swapped', { overwrite: true })), /swapped holds files graft did not write .*\(history\.json\)/);
  assert.deepEqual(await digests(join(root, 'base')), before);
  // A user's file inside model/: refused too (the export would replace it).
  await writeFile(join(out, 'model', 'mine.txt'), 'x');
  await assert.rejects(trainClassifier(options('reused', { overwrite: true })), /\(model\/mine\.txt\)/);
  await rm(join(out, 'model', 'mine.txt'));
  // --overwrite as training starts: every recorded file goes, the user's stay.
  const session = await openRunSession(out, { overwrite: true, inputs: [], say: () => {} });
  await startTraining(session);
  await closeRunSession(session);
  assert.deepEqual((await readdir(out)).sort(), ['graft-run.json', 'notes.md']);
  assert.deepEqual((await RunManifest.open(out)).paths().filter((p) => !p.startsWith('checkpoint/')), []);
  // Nor may --out be the root, the home folder or the data folder.
  for (const bad of ['/', process.env.HOME ?? '/root', data]) await assert.rejects(trainClassifier({ ...options('x'), out: bad }), /choose a folder of its own for the run/);
});

test('damage that keeps the size is named in every saved file kind', async () => {
  const dir = join(root, 'damaged');
  await cp(join(root, 'base'), dir, { recursive: true });
  // (Intact, the same checks pass: verifyAll below, and the model loads in the next test.)
  const verifyAll = async (d: string) => (await RunManifest.open(d)).verifyAll();
  const shard = join('model', (await readdir(join(dir, 'model'))).find((f) => f.endsWith('.bin'))!);
  const cases: [string, (d: string) => Promise<unknown>][] = [
    ['model.onnx', async (d) => (await loadClassifier(d)).dispose()],
    [join('model', 'model.json'), async (d) => (await loadClassifier(join(d, 'model'))).dispose()],
    [shard, async (d) => (await loadClassifier(join(d, 'model'))).dispose()],
    [join('checkpoint', 'checkpoint.json'), (d) => checkpointStatus(join(d, 'checkpoint'))],
    [join('checkpoint', 'checkpoint-a.bin'), (d) => loadCheckpoint(join(d, 'checkpoint'))],
    ['history.json', verifyAll],
    ['metrics.json', verifyAll],
    ['report.txt', verifyAll],
    ['accuracy.png', verifyAll],
    ['loss.png', verifyAll],
  ];
  let injected = 0;
  for (const [rel, use] of cases) {
    const file = join(dir, rel);
    for (const at of [0, 0.37, 0.5, 0.99]) {
      // The same flip twice restores the file: no copy per case.
      await flipBytes(file, at);
      injected++;
      await assert.rejects(use(dir) as Promise<unknown>, (err: Error) => err.message.includes(file) && /damaged/.test(err.message), `${rel} at ${at}`);
      await flipBytes(file, at);
    }
  }
  assert.equal(injected, 40);
  await verifyAll(dir);
  await loadCheckpoint(join(dir, 'checkpoint'));
  // A damaged record itself is named too.
  await writeFile(join(dir, 'graft-run.json'), '{"format": "graft-run-1", "files": {');
  await assert.rejects(RunManifest.open(dir), /graft-run\.json is damaged/);
  await assert.rejects(loadClassifier(dir), /graft-run\.json is damaged/);
});

test('predict never reports a non-finite probability: a model that gives NaN fails, named', async () => {
  const model = await loadClassifier(join(root, 'base'));
  const nan = { ...model, run: async (_input: Float32Array, n: number) => new Float32Array(n).fill(NaN) };
  try {
    await assert.rejects(predictFiles(nan, [await image()]), /gave a probability that is not a number \(NaN, NaN\): the model is damaged or diverged/);
  } finally {
    await model.dispose();
  }
});

test('a full disk while writing a checkpoint removes the partial binary; the previous checkpoint stays', async () => {
  const dir = join(root, 'ck-full');
  const config = resolveOptimizer({ kind: 'rmsprop' });
  const dense = [{ inputSize: 4, units: 3, kernel: new Float32Array(12).fill(1), bias: new Float32Array(3) }];
  const ck = (epoch: number) => ({ epoch, seed: 1, fingerprint: 'f', history: { loss: [1], accuracy: [0.5], val_loss: [1], val_accuracy: [0.5] }, params: { dense }, optimizer: { config, iterations: epoch, slots: [[new Float32Array(12)], [new Float32Array(3)]] } });
  await saveCheckpoint(dir, ck(1));
  try {
    process.env.GRAFT_TEST_FULL_DISK = '^checkpoint-b\\.bin$';
    await assert.rejects(saveCheckpoint(dir, ck(2)), /cannot write .*checkpoint-b\.bin: no space left on the device/);
  } finally {
    delete process.env.GRAFT_TEST_FULL_DISK;
  }
  assert.deepEqual((await readdir(dir)).sort(), ['checkpoint-a.bin', 'checkpoint.json']);
  assert.equal((await loadCheckpoint(dir))!.epoch, 1);
});

/**
 * A full disk while exporting: a real one (a small tmpfs) where this process may mount one (root),
 * else a write failure injected into the export's first weight shard.
 */
test('a full disk while exporting leaves the earlier results whole, and nothing partial', async () => {
  const mnt = join(root, 'tmpfs');
  await mkdir(mnt);
  let mounted = false;
  try {
    // The earlier run's ~72 MB fit; the new export's staged copy does not.
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=100m', 'tmpfs', mnt], { stdio: 'ignore' });
    mounted = true;
  } catch {
    process.env.GRAFT_TEST_FULL_DISK = '^group1-shard';
  }
  try {
    const out = join(mnt, 'run');
    await cp(join(root, 'base'), out, { recursive: true });
    const before = await digests(out);
    await assert.rejects(trainClassifier({ ...options('x'), out, resume: true, epochs: 2 }), /no space left on the device/);
    const after = await digests(out);
    // History, plots, metrics, report and model: all still epoch 1's (the checkpoint moved on to epoch 2).
    for (const rel of Object.keys(before).filter((r) => !r.startsWith('checkpoint/') && r !== 'graft-run.json')) assert.equal(after[rel], before[rel], rel);
    assert.deepEqual((await readdir(out)).filter((n) => n.startsWith('.')), [], 'no staging folder, temporary file or lock left');
    await (await RunManifest.open(out)).verifyAll();
    assert.equal(JSON.parse(await readFile(join(out, 'history.json'), 'utf8')).loss.length, 1);
    assert.equal((await checkpointStatus(join(out, 'checkpoint')))?.epoch, 2);
  } finally {
    delete process.env.GRAFT_TEST_FULL_DISK;
    if (mounted) execFileSync('umount', [mnt]);
  }
});
