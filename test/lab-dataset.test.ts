import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { zipSync } from 'fflate';
import { resolveLabDataset, cachedLabDatasetDir } from '../src/data/lab-dataset.js';
import { resolveDataset } from '../src/data/listing.js';
import { GraftError } from '../src/util/errors.js';

let server: Server;
let base: string;
let work: string;
const zips = new Map<string, Uint8Array>();
const requests: string[] = [];

async function jpeg(r: number, g: number, b: number): Promise<Uint8Array> {
  return new Uint8Array(await sharp({ create: { width: 8, height: 8, channels: 3, background: { r, g, b } } }).jpeg().toBuffer());
}

/** A lab-layout zip: `prefix`train/{cats,dogs} with 2 images each, validation/ with 1 each. */
async function labZip(prefix: string, extra: Record<string, Uint8Array> = {}): Promise<Uint8Array> {
  const cat = await jpeg(200, 100, 50);
  const dog = await jpeg(50, 100, 200);
  return zipSync({
    [`${prefix}train/cats/cat.0.jpg`]: cat,
    [`${prefix}train/cats/cat.1.jpg`]: cat,
    [`${prefix}train/dogs/dog.0.jpg`]: dog,
    [`${prefix}train/dogs/dog.1.jpg`]: dog,
    [`${prefix}validation/cats/cat.2.jpg`]: cat,
    [`${prefix}validation/dogs/dog.2.jpg`]: dog,
    ...extra,
  });
}

before(async () => {
  delete process.env.GRAFT_LAB_DATA;
  delete process.env.GRAFT_LAB_DATA_URL;
  delete process.env.GRAFT_LAB_DATA_MD5;
  work = await mkdtemp(join(tmpdir(), 'graft-labdata-'));
  zips.set('/lab.zip', await labZip('cats_and_dogs_filtered/', { 'cats_and_dogs_filtered/vectorize.py': new TextEncoder().encode('# lab\n') }));
  zips.set('/flat.zip', await labZip(''));
  zips.set('/slip.zip', await labZip('cats_and_dogs_filtered/', { '../evil.txt': new TextEncoder().encode('x') }));
  zips.set('/abs.zip', await labZip('cats_and_dogs_filtered/', { '/tmp/graft-abs-evil.txt': new TextEncoder().encode('x') }));
  zips.set('/corrupt.zip', new TextEncoder().encode('this is not a zip file at all'));
  server = createServer((req, res) => {
    requests.push(req.url ?? '');
    const body = zips.get(req.url ?? '');
    if (!body) {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { 'Content-Type': 'application/zip', 'Content-Length': body.byteLength });
    res.end(body);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

after(async () => {
  await new Promise<void>((r) => server.close(() => r()));
  await rm(work, { recursive: true, force: true });
});

const quiet = { shared: false as const, progressBar: false, retries: 0, retryDelayMs: 1 };

test('downloads the lab zip once, unzips it into the cache, and a second call makes no request', async () => {
  const cache = join(work, 'cache-lab');
  const before = requests.length;
  const dir = await resolveLabDataset({ ...quiet, url: `${base}/lab.zip`, cacheDir: cache });
  assert.equal(dir, cachedLabDatasetDir(cache));
  assert.equal(requests.length, before + 1);
  const resolved = await resolveDataset(dir);
  assert.equal(resolved.layout, 'lab');
  assert.deepEqual(resolved.train.classes, ['cats', 'dogs']);
  assert.equal(resolved.train.files.length, 4);
  assert.equal(resolved.validation?.files.length, 2);
  assert.ok(existsSync(join(dir, 'vectorize.py')));
  // Only the dataset folder is left: the zip and the temporary folder are gone.
  assert.deepEqual(await readdir(cache), ['cats_and_dogs_filtered']);

  const again = await resolveLabDataset({ ...quiet, url: `${base}/lab.zip`, cacheDir: cache });
  assert.equal(again, dir);
  assert.equal(requests.length, before + 1);
});

test('a zip whose root holds train/ directly works too; GRAFT_LAB_DATA_URL picks the URL', async () => {
  const cache = join(work, 'cache-flat');
  process.env.GRAFT_LAB_DATA_URL = `${base}/flat.zip`;
  try {
    const dir = await resolveLabDataset({ ...quiet, cacheDir: cache });
    assert.equal(requests.at(-1), '/flat.zip');
    const resolved = await resolveDataset(dir);
    assert.deepEqual(resolved.train.classes, ['cats', 'dogs']);
    assert.equal(resolved.validation?.files.length, 2);
  } finally {
    delete process.env.GRAFT_LAB_DATA_URL;
  }
});

test('with an md5 (option or GRAFT_LAB_DATA_MD5) the zip must match it, else it is deleted and nothing is unzipped', async () => {
  const cache = join(work, 'cache-md5');
  const good = createHash('md5').update(zips.get('/lab.zip')!).digest('hex');
  process.env.GRAFT_LAB_DATA_MD5 = '0'.repeat(32);
  try {
    await assert.rejects(resolveLabDataset({ ...quiet, url: `${base}/lab.zip`, cacheDir: cache }), (err: unknown) => {
      assert.ok(err instanceof GraftError);
      assert.match(err.message, new RegExp(`lab\\.zip: downloaded file has md5 ${good}, expected 0{32}; it was deleted`));
      return true;
    });
    assert.deepEqual(await readdir(cache), []);
    process.env.GRAFT_LAB_DATA_MD5 = good;
    assert.equal(await resolveLabDataset({ ...quiet, url: `${base}/lab.zip`, cacheDir: cache }), cachedLabDatasetDir(cache));
  } finally {
    delete process.env.GRAFT_LAB_DATA_MD5;
  }
  const other = join(work, 'cache-md5-option');
  await assert.rejects(resolveLabDataset({ ...quiet, url: `${base}/lab.zip`, cacheDir: other, md5: '1'.repeat(32) }), /expected 1{32}/);
});

test('a zip entry leading outside the folder is refused, naming the entry', async () => {
  const cache = join(work, 'cache-slip');
  await assert.rejects(resolveLabDataset({ ...quiet, url: `${base}/slip.zip`, cacheDir: cache }), (err: unknown) => {
    assert.ok(err instanceof GraftError);
    assert.match(err.message, /"\.\.\/evil\.txt"/);
    return true;
  });
  assert.equal(existsSync(join(work, 'evil.txt')), false);
  assert.equal(existsSync(join(cache, 'cats_and_dogs_filtered.zip')), false);
  assert.equal(existsSync(cachedLabDatasetDir(cache)), false);
  await assert.rejects(resolveLabDataset({ ...quiet, url: `${base}/abs.zip`, cacheDir: cache }), /"\/tmp\/graft-abs-evil\.txt"/);
  assert.equal(existsSync('/tmp/graft-abs-evil.txt'), false);
});

test('a corrupt zip fails naming the file and is deleted, so the next run downloads again', async () => {
  const cache = join(work, 'cache-corrupt');
  const zip = join(cache, 'cats_and_dogs_filtered.zip');
  const before = requests.length;
  for (let run = 1; run <= 2; run++) {
    await assert.rejects(resolveLabDataset({ ...quiet, url: `${base}/corrupt.zip`, cacheDir: cache }), (err: unknown) => {
      assert.ok(err instanceof GraftError);
      assert.ok(err.message.includes(zip), err.message);
      assert.match(err.message, /not a readable zip/);
      return true;
    });
    assert.equal(existsSync(zip), false);
    assert.equal(requests.length, before + run);
  }
});

test('offline with nothing cached: says to pass --data, set GRAFT_LAB_DATA, or where to put the folder', async () => {
  const closed = createServer();
  await new Promise<void>((r) => closed.listen(0, '127.0.0.1', r));
  const port = (closed.address() as AddressInfo).port;
  await new Promise<void>((r) => closed.close(() => r()));
  const cache = join(work, 'cache-offline');
  await assert.rejects(resolveLabDataset({ ...quiet, url: `http://127.0.0.1:${port}/lab.zip`, cacheDir: cache }), (err: unknown) => {
    assert.ok(err instanceof GraftError);
    assert.match(err.message, /Pass data: 'DIR'/);
    assert.match(err.message, /GRAFT_LAB_DATA/);
    assert.ok(err.message.includes(cachedLabDatasetDir(cache)), err.message);
    assert.match(err.message, /ECONNREFUSED/);
    return true;
  });
});

test('an unzipped folder put into the cache by hand with the marker is used without a request', async () => {
  const cache = join(work, 'cache-manual');
  const dir = cachedLabDatasetDir(cache);
  await mkdir(join(dir, 'train', 'cats'), { recursive: true });
  await writeFile(join(dir, '.complete'), '');
  const before = requests.length;
  assert.equal(await resolveLabDataset({ ...quiet, url: `${base}/missing.zip`, cacheDir: cache }), dir);
  assert.equal(requests.length, before);
});

test('an explicit --data folder must exist and hold train/ and validation/; so must GRAFT_LAB_DATA', async () => {
  const missing = join(work, 'no-such-folder');
  await assert.rejects(resolveLabDataset({ ...quiet, data: missing }), (err: unknown) => {
    assert.ok(err instanceof GraftError);
    assert.ok(err.message.includes(missing), err.message);
    return true;
  });
  const noTrain = join(work, 'no-train');
  await mkdir(join(noTrain, 'validation'), { recursive: true });
  await assert.rejects(resolveLabDataset({ ...quiet, data: noTrain }), /no-train has no train\/ folder/);
  const good = join(work, 'good');
  await mkdir(join(good, 'train'), { recursive: true });
  // train/ and test/ only: the lab has nothing to validate on (other layouts are graft train's).
  await mkdir(join(good, 'test'), { recursive: true });
  await assert.rejects(resolveLabDataset({ ...quiet, data: good }), /good has no validation\/ folder beside train\/ \(the lab validates on it; other layouts train with validationData or validationSplit\)/);
  await mkdir(join(good, 'val'), { recursive: true });
  assert.equal(await resolveLabDataset({ ...quiet, data: good }), good);

  process.env.GRAFT_LAB_DATA = missing;
  try {
    await assert.rejects(resolveLabDataset({ ...quiet, cacheDir: join(work, 'unused') }), (err: unknown) => {
      assert.ok(err instanceof GraftError);
      assert.match(err.message, /^GRAFT_LAB_DATA /);
      assert.ok(err.message.includes(missing));
      return true;
    });
    process.env.GRAFT_LAB_DATA = good;
    assert.equal(await resolveLabDataset({ ...quiet, cacheDir: join(work, 'unused') }), good);
  } finally {
    delete process.env.GRAFT_LAB_DATA;
  }
});
