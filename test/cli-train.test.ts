/**
 * `graft train` as a user runs it: Ctrl-C and kill -9 in the middle of a run leave the last
 * checkpoint intact, and --resume finishes with the same history as an uninterrupted run.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { copyFile, mkdir, mkdtemp, readFile, readdir, rm, symlink, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { sharedInceptionWeightsDir, sharedLabDataDir } from '../src/util/paths.js';
import { MALLOC_TUNABLES } from '../src/util/malloc-tunables.js';

const bin = fileURLToPath(new URL('../bin/graft.js', import.meta.url));

async function makeDataset(): Promise<string> {
  const root = await mkdtemp(join(tmpdir(), 'graft-cli-'));
  for (const [split, n] of [['train', 6], ['validation', 2]] as const) {
    for (const cls of ['cats', 'dogs']) {
      const from = join(sharedLabDataDir(), split, cls);
      await mkdir(join(root, 'data', split, cls), { recursive: true });
      for (const f of (await readdir(from)).sort().slice(0, n)) await copyFile(join(from, f), join(root, 'data', split, cls, f));
    }
  }
  return root;
}

const root = await makeDataset();
test.after(() => rm(root, { recursive: true, force: true }));

function graft(args: string[]): { child: ChildProcess; done: Promise<{ code: number | null; out: string; err: string }> } {
  const child = spawn(process.execPath, [bin, 'train', '--data', join(root, 'data'), '--weights', sharedInceptionWeightsDir('fp32'),
    '--recipe', 'lab', '--head', 'flatten,dense:4:relu', '--batch-size', '4', '--seed', '3', '--quiet', ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
    // The tunables up front, so the launcher runs training itself and kill -9 hits the training process.
    env: { ...process.env, GLIBC_TUNABLES: MALLOC_TUNABLES },
  });
  let out = '', err = '';
  child.stdout!.on('data', (d) => (out += d));
  child.stderr!.on('data', (d) => (err += d));
  const done = new Promise<{ code: number | null; out: string; err: string }>((resolve) => child.on('close', (code) => resolve({ code, out, err })));
  return { child, done };
}

/** Resolves once `file` exists and `predicate` holds for its text. */
async function waitFor(file: string, predicate: (text: string) => boolean): Promise<void> {
  for (let i = 0; i < 1200; i++) {
    if (existsSync(file) && predicate(await readFile(file, 'utf8').catch(() => ''))) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`timed out waiting for ${file}`);
}

const epochOf = (text: string) => (JSON.parse(text) as { epoch: number }).epoch;

test('Ctrl-C stops with one clear line and keeps the checkpoint; kill -9 then --resume matches an uninterrupted run', async () => {
  const straight = graft(['--epochs', '3', '--out', join(root, 'straight')]);
  const s = await straight.done;
  assert.equal(s.code, 0, s.err);
  const expected = JSON.parse(await readFile(join(root, 'straight', 'history.json'), 'utf8'));
  assert.equal(expected.loss.length, 3);

  // SIGINT after the first checkpoint: a clean stop, no stack trace, checkpoint readable.
  const ckpt = join(root, 'interrupted', 'checkpoint', 'checkpoint.json');
  const interrupted = graft(['--epochs', '50', '--out', join(root, 'interrupted')]);
  await waitFor(ckpt, (t) => epochOf(t) >= 1);
  interrupted.child.kill('SIGINT');
  const i = await interrupted.done;
  assert.equal(i.code, 1);
  assert.match(i.err, /graft: error: training interrupted in epoch \d+; the checkpoint of epoch \d+ in .* is intact/);
  assert.doesNotMatch(i.err, /\n\s+at /, 'no stack trace');
  assert.ok(epochOf(await readFile(ckpt, 'utf8')) >= 1);

  // Running it again without --resume would throw that progress away: refused, checkpoint untouched.
  const saved = await readFile(ckpt, 'utf8');
  const again = await graft(['--epochs', '1', '--out', join(root, 'interrupted')]).done;
  assert.equal(again.code, 1);
  assert.match(again.err, /^graft: error: .*interrupted holds the checkpoint of a run that did not finish \(\d+ epochs? done\): pass --resume to continue it, --overwrite to start afresh/m);
  assert.equal(await readFile(ckpt, 'utf8'), saved);
  // --overwrite starts afresh.
  const fresh = await graft(['--epochs', '1', '--out', join(root, 'interrupted'), '--overwrite']).done;
  assert.equal(fresh.code, 0, fresh.err);
  assert.equal(epochOf(await readFile(ckpt, 'utf8')), 1);
  assert.equal(JSON.parse(await readFile(ckpt, 'utf8')).finished, true);
  // A finished run is not replaced by a plain run either: refused, the folder as it was.
  const finished = await readFile(join(root, 'interrupted', 'history.json'), 'utf8');
  const over = await graft(['--epochs', '2', '--out', join(root, 'interrupted')]).done;
  assert.equal(over.code, 1);
  assert.match(
    over.err,
    /^graft: error: .*interrupted holds the outputs of an earlier run \(history\.json, accuracy\.png, loss\.png, metrics\.json, report\.txt, model\.onnx, checkpoint\/, model\/\): pass --overwrite to replace them, --resume with more --epochs to train that run further, or choose another output folder \(--out\)$/m,
  );
  assert.equal(await readFile(join(root, 'interrupted', 'history.json'), 'utf8'), finished);

  // kill -9 mid-run, then resume: the same history as the uninterrupted run.
  const killedCkpt = join(root, 'killed', 'checkpoint', 'checkpoint.json');
  const killed = graft(['--epochs', '3', '--out', join(root, 'killed')]);
  await waitFor(killedCkpt, (t) => epochOf(t) >= 1);
  killed.child.kill('SIGKILL');
  await killed.done;
  const resumed = graft(['--epochs', '3', '--out', join(root, 'killed'), '--resume']);
  const r = await resumed.done;
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /Resuming from the checkpoint of epoch [12]\/3/);
  assert.deepEqual(JSON.parse(await readFile(join(root, 'killed', 'history.json'), 'utf8')), expected);
});

/** Runs a graft command to the end; its exit code and output. */
async function graftRun(args: string[]): Promise<{ code: number | null; out: string; err: string }> {
  const child = spawn(process.execPath, [bin, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '', err = '';
  child.stdout.on('data', (d) => (out += d));
  child.stderr.on('data', (d) => (err += d));
  return new Promise((resolve) => child.on('close', (code) => resolve({ code, out, err })));
}

test('predict and evaluate use the trained run folder; their JSON agrees with training', async () => {
  const run = join(root, 'straight');
  assert.ok(existsSync(join(run, 'model.onnx')), 'the first test trained this run');
  const valCats = join(root, 'data', 'validation', 'cats');
  const p = await graftRun(['predict', '--model', run, '--json', valCats, join(root, 'missing.jpg')]);
  assert.equal(p.code, 1, 'a missing input is an error');
  assert.match(p.err, /graft: error: cannot read .*missing\.jpg/);
  const ok = await graftRun(['predict', '--model', run, '--json', valCats]);
  assert.equal(ok.code, 0, ok.err);
  const rows = ok.out.trim().split('\n').map((l) => JSON.parse(l) as { file: string; class: string; probability: number; probabilities: Record<string, number> });
  assert.equal(rows.length, 2);
  // A file that is not an image is reported, once named, and the others are still classified.
  const junk = join(root, 'junk.jpg');
  await writeFile(junk, 'not a picture');
  const withJunk = await graftRun(['predict', '--model', run, '--json', junk, valCats]);
  assert.equal(withJunk.code, 1, 'an unreadable input makes the exit status 1');
  assert.equal(withJunk.err, 'graft: error: 1 of 3 images could not be read (the others are classified above)\n');
  const junkRows = withJunk.out.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
  assert.deepEqual(junkRows[0], { file: junk, error: 'a text file, not an image' });
  assert.equal(junkRows.length, 3);
  // JSON lines follow the order given, unreadable files included.
  const junkLast = await graftRun(['predict', '--model', run, '--json', valCats, junk]);
  assert.deepEqual(junkLast.out.trim().split('\n').map((l) => (JSON.parse(l) as { file: string }).file), [...rows.map((r) => r.file), junk]);
  // Nothing readable at all is an error.
  const onlyJunk = await graftRun(['predict', '--model', run, junk]);
  assert.equal(onlyJunk.code, 1);
  assert.equal(onlyJunk.err, `graft: error: ${junk} could not be read as an image: a text file, not an image\n`);
  const plain = await graftRun(['predict', '--model', run, junk, valCats]);
  assert.equal(plain.code, 1);
  assert.equal(plain.out.trim().split('\n').length, 2);
  assert.equal(plain.err, `warning: skipped ${junk}: a text file, not an image\ngraft: error: 1 of 3 images could not be read (the others are classified above)\n`);
  // Folders are walked through links (a linked class folder, say), unlike training's listing.
  const linked = join(root, 'linked');
  await mkdir(linked);
  await symlink(valCats, join(linked, 'cats'));
  const viaLink = await graftRun(['predict', '--model', run, linked]);
  assert.equal(viaLink.code, 0, viaLink.err);
  assert.equal(viaLink.out.trim().split('\n').length, 2);
  // A broken link found in a folder counts as an unreadable image: named, and the exit status 1.
  await symlink(join(root, 'nowhere.jpg'), join(linked, 'broken.jpg'));
  const broken = await graftRun(['predict', '--model', run, '--json', linked]);
  assert.equal(broken.code, 1);
  assert.deepEqual(JSON.parse(broken.out.trim().split('\n')[0]!), { file: join(linked, 'broken.jpg'), error: 'broken symbolic link' });
  assert.equal(broken.out.trim().split('\n').length, 3);
  assert.equal(broken.err, 'graft: error: 1 of 3 images could not be read (the others are classified above)\n');
  for (const r of rows) {
    assert.ok(['cats', 'dogs'].includes(r.class));
    assert.ok(Math.abs(r.probabilities.cats! + r.probabilities.dogs! - 1) < 1e-6);
    assert.equal(r.probability, Math.max(r.probabilities.cats!, r.probabilities.dogs!));
  }
  // The trained classifier as Keras prints it: the frozen backbone's exact count, the head trainable.
  const summary = await graftRun(['summary', '--model', run]);
  assert.equal(summary.code, 0, summary.err);
  assert.match(summary.out, /^dense \(Dense\) +\(None, 4\) +150532 +flatten\[0\]\[0\]$/m);
  assert.match(summary.out, /Total params: 9,125,801\nTrainable params: 150,537\nNon-trainable params: 8,975,264\n?$/);
  const noModel = await graftRun(['summary', '--model', join(root, 'data')]);
  assert.equal(noModel.code, 1);
  assert.match(noModel.err, /no classifier here/);
  // The model/ folder alone prints the same table; model.onnx has none to print.
  assert.equal((await graftRun(['summary', '--model', join(run, 'model')])).out, summary.out);
  const onnx = await graftRun(['summary', '--model', join(run, 'model.onnx')]);
  assert.equal(onnx.code, 1);
  assert.match(onnx.err, /model\.onnx: an ONNX model has no Keras layer table/);
  const e = await graftRun(['evaluate', '--model', run, '--data', join(root, 'data'), '--json']);
  assert.equal(e.code, 0, e.err);
  const report = JSON.parse(e.out) as { data: string; model: string; count: number; accuracy: number; loss: number; confusion: number[][] };
  // Both paths absolute: the validation part of the train/ + validation/ folder given, and the model file.
  assert.equal(report.data, join(root, 'data', 'validation'));
  assert.equal(report.model, join(run, 'model.onnx'));
  const metrics = JSON.parse(await readFile(join(run, 'metrics.json'), 'utf8')) as { accuracy: number; loss: number };
  assert.equal(report.count, 4);
  assert.equal(report.accuracy, metrics.accuracy);
  assert.ok(Math.abs(report.loss - metrics.loss) < 1e-4);
  // A folder of nothing readable: one line naming the folder and each bad file.
  const junkDir = join(root, 'all-junk');
  await mkdir(join(junkDir, 'cats'), { recursive: true });
  await mkdir(join(junkDir, 'dogs'), { recursive: true });
  await writeFile(join(junkDir, 'cats', 'x.jpg'), '');
  await writeFile(join(junkDir, 'dogs', 'y.png'), 'hello');
  const none = await graftRun(['evaluate', '--model', run, '--data', junkDir]);
  assert.equal(none.code, 1);
  assert.match(none.err, /^graft: error: none of the 2 images in .*all-junk could be read \(.*cats\/x\.jpg: empty file \(0 bytes\); .*dogs\/y\.png: a text file, not an image\)$/m);
});

test('bad input is one line naming the problem, exit 1', async () => {
  const missing = graft(['--out', join(root, 'x'), '--data', join(root, 'nope')]);
  const m = await missing.done;
  assert.equal(m.code, 1);
  assert.match(m.err, /^graft: error: .*nope/m);
  assert.doesNotMatch(m.err, /\n\s+at /);
  const badMode = graft(['--out', join(root, 'x'), '--mode', 'sometimes']);
  const b = await badMode.done;
  assert.equal(b.code, 1);
  assert.match(b.err, /unknown feed mode 'sometimes'/);
  // Flags that would be silently ignored are refused.
  const momentum = await graft(['--out', join(root, 'x'), '--momentum', '0.9']).done;
  assert.equal(momentum.code, 1);
  assert.match(momentum.err, /^graft: error: --momentum applies to --optimizer sgd only \(this run uses rmsprop\)$/m);
  const monitor = await graft(['--out', join(root, 'x'), '--monitor', 'val_accuracy', '--restore-best-weights']).done;
  assert.equal(monitor.code, 1);
  assert.match(monitor.err, /^graft: error: --monitor and --restore-best-weights apply to --early-stopping only \(e\.g\. --early-stopping 3\)$/m);
  const patience = await graft(['--out', join(root, 'x'), '--early-stopping', 'soon']).done;
  assert.equal(patience.code, 1);
  assert.match(patience.err, /--early-stopping must be a whole number from 0 to 100000, found 'soon'/);
  const order = await graft(['--out', join(root, 'x'), '--split-order', 'shuffled']).done;
  assert.equal(order.code, 1);
  assert.match(order.err, /^graft: error: --split-order applies to --validation-split only$/m);
  const sameViews = await graft(['--out', join(root, 'x'), '--mode', 'views=3', '--no-augment']).done;
  assert.equal(sameViews.code, 1);
  assert.match(sameViews.err, /--mode views=3 with --no-augment: the views would all be the same image; use --mode cached/);
  // A head the trainer cannot train is refused before any decoding or feature work.
  const badHead = await graft(['--out', join(root, 'x'), '--head', 'flatten,dense:8:softmax,dense:3']).done;
  assert.equal(badHead.code, 1);
  assert.match(badHead.err, /^graft: error: softmax is only supported on the last Dense layer$/m);
  assert.doesNotMatch(badHead.out, /Backbone:/);
  // --out naming a file is refused in words about --out, before any work.
  const outFile = join(root, 'out-file');
  await writeFile(outFile, 'x');
  const o = await graft(['--out', outFile]).done;
  assert.equal(o.code, 1);
  assert.match(o.err, /^graft: error: the output folder .*out-file is a file, not a folder: choose another output folder \(--out\)$/m);
  assert.doesNotMatch(o.out, /Backbone:/);
  // 6 images a class: a 0.1 split holds out none of them.
  const tinySplit = graft(['--out', join(root, 'x'), '--data', join(root, 'data', 'train'), '--validation-split', '0.1']);
  const t = await tinySplit.done;
  assert.equal(t.code, 1);
  assert.match(t.err, /^graft: error: a validation split of 0\.1 takes no images from .*train: every class has fewer than 10 images/m);
  assert.doesNotMatch(t.err, /\n\s+at /);
});
