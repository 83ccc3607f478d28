/**
 * A new user's first run, online: no ../shared, an empty cache. `graft lab` downloads the lab's
 * zip and the Keras ImageNet .h5 (each once, md5-checked), unzips, loads and trains. The two
 * files are served from 127.0.0.1: a zip in the layout of cats_and_dogs_filtered.zip made from a
 * few of the shared images, and a .h5 in the layout and attribute encodings of Keras's notop file
 * (zero weights, compressed), which goes through the same loading code as the real one.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { zipSync } from 'fflate';
import { IMAGENET_WEIGHTS_FILE } from '../src/backbone/weights/imagenet.js';
import { planWeights } from '../src/backbone/weights/resolve.js';
import { cachedLabDatasetDir, resolveLabDataset } from '../src/data/lab-dataset.js';
import { sharedLabDataDir } from '../src/util/paths.js';
import { writeInceptionNotopH5 } from './support/keras-h5-fixture.js';

const bin = fileURLToPath(new URL('../bin/graft.js', import.meta.url));
const ZIP = '/mledu-datasets/cats_and_dogs_filtered.zip';
const H5 = `/keras-applications/inception_v3/${IMAGENET_WEIGHTS_FILE}`;
const files = new Map<string, Buffer>();
const requests: string[] = [];
let server: Server;
let base: string;
let work: string;

const md5 = (b: Buffer) => createHash('md5').update(b).digest('hex');

/**
 * cats_and_dogs_filtered.zip's layout (one top folder, train/ and validation/ class folders), with
 * some of its images: 60 to train on (the 3 batches of 20 that --steps 3 takes), 4 to validate.
 */
async function labZip(): Promise<Buffer> {
  const entries: Record<string, Uint8Array> = {};
  for (const [split, n] of [['train', 30], ['validation', 2]] as const) {
    for (const cls of ['cats', 'dogs']) {
      const from = join(sharedLabDataDir(), split, cls);
      for (const f of (await readdir(from)).sort().slice(0, n)) entries[`cats_and_dogs_filtered/${split}/${cls}/${f}`] = await readFile(join(from, f));
    }
  }
  return Buffer.from(zipSync(entries, { level: 0 }));
}

before(async () => {
  work = await mkdtemp(join(tmpdir(), 'graft-first-run-'));
  files.set(ZIP, await labZip());
  await writeInceptionNotopH5(join(work, 'notop.h5'));
  files.set(H5, readFileSync(join(work, 'notop.h5')));
  server = createServer((req, res) => {
    requests.push(req.url ?? '');
    const body = files.get(req.url ?? '');
    if (!body) return void res.writeHead(404).end();
    res.writeHead(200, { 'Content-Length': body.length });
    res.end(body);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

after(async () => {
  await new Promise<void>((r) => server.close(() => r()));
  await rm(work, { recursive: true, force: true });
});

/** The environment of a machine without ../shared, the downloads pointed at the local server. */
async function firstRunEnv(cache: string, md5s: { zip?: string; h5?: string } = {}): Promise<NodeJS.ProcessEnv> {
  const noShared = join(work, 'no-shared');
  await mkdir(noShared, { recursive: true });
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    GRAFT_SHARED: noShared,
    GRAFT_CACHE_DIR: cache,
    GRAFT_LAB_DATA_URL: `${base}${ZIP}`,
    GRAFT_LAB_DATA_MD5: md5s.zip ?? md5(files.get(ZIP)!),
    GRAFT_IMAGENET_URL: `${base}${H5}`,
    GRAFT_IMAGENET_MD5: md5s.h5 ?? md5(files.get(H5)!),
  };
  delete env.GRAFT_WEIGHTS_DIR;
  delete env.GRAFT_LAB_DATA;
  return env;
}

function graft(args: string[], env: NodeJS.ProcessEnv): Promise<{ code: number | null; out: string; err: string }> {
  const child = spawn(process.execPath, [bin, ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '', err = '';
  child.stdout.on('data', (d) => (out += d));
  child.stderr.on('data', (d) => (err += d));
  return new Promise((resolve) => child.on('close', (code) => resolve({ code, out, err })));
}

const count = (text: string, what: string) => text.split('\n').filter((l) => l.includes(what)).length;

test('first run online: graft lab downloads the dataset zip and the ImageNet .h5 once each, md5-checked, unzips, loads and trains', async () => {
  const cache = join(work, 'cache');
  const out = join(work, 'lab');
  const run = await graft(['lab', '--epochs', '1', '--steps', '3', '--out', out], await firstRunEnv(cache));
  assert.equal(run.code, 0, run.err);
  assert.deepEqual(requests.sort(), [H5, ZIP].sort(), 'each file fetched once');
  for (const path of [ZIP, H5]) {
    assert.equal(count(run.err, `downloading ${base}${path}`), 1, run.err);
  }
  assert.equal(count(run.err, 'md5 checked'), 2, run.err);

  // The cache: the .h5 as served, the zip unzipped (and gone).
  assert.equal(md5(readFileSync(join(cache, IMAGENET_WEIGHTS_FILE))), md5(files.get(H5)!));
  const data = cachedLabDatasetDir(cache);
  assert.deepEqual((await readdir(join(data, 'train', 'cats'))).length, 30);
  assert.ok(!existsSync(join(cache, 'cats_and_dogs_filtered.zip')));
  const history = JSON.parse(readFileSync(join(out, 'history.json'), 'utf8')) as { loss: number[]; val_accuracy: number[] };
  assert.equal(history.loss.length, 1);
  assert.ok(Number.isFinite(history.loss[0]) && Number.isFinite(history.val_accuracy[0]));

  // A second run needs no network: both come from the cache.
  const before = requests.length;
  assert.deepEqual(planWeights('imagenet', { cacheDir: cache }), { kind: 'h5', path: join(cache, IMAGENET_WEIGHTS_FILE) });
  assert.equal(await resolveLabDataset({ shared: false, cacheDir: cache, url: `${base}${ZIP}`, progressBar: false }), data);
  assert.equal(requests.length, before);
});

test('a download whose md5 differs from GRAFT_IMAGENET_MD5 is deleted and fails in one line', async () => {
  const cache = join(work, 'cache-bad-md5');
  const run = await graft(['weights', '--download'], await firstRunEnv(cache, { h5: '0'.repeat(32) }));
  assert.equal(run.code, 1);
  assert.match(run.err, new RegExp(`graft: error: ${base}${H5}: downloaded file has md5 ${md5(files.get(H5)!)}, expected 0{32}; it was deleted`));
  assert.equal(count(run.err, 'graft: error'), 1);
  assert.deepEqual(await readdir(cache), []);
});
