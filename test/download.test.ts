import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse, type Server } from 'node:http';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { gzipSync } from 'node:zlib';
import { join } from 'node:path';
import { downloadFile, DownloadNetworkError } from '../src/util/download.js';
import { ensureImagenetWeights, IMAGENET_WEIGHTS_FILE } from '../src/backbone/weights/imagenet.js';
import { GraftError } from '../src/util/errors.js';

const fixture = randomBytes(300_000);
const md5 = createHash('md5').update(fixture).digest('hex');

type Mode = 'normal' | 'cut' | 'ignore-range' | 'unavailable-once' | 'missing' | 'gzip' | 'stall';
let mode: Mode = 'normal';
/** What the server does after it has cut a transfer. */
let afterCut: Mode = 'cut';
const requests: { range?: string; encoding?: string }[] = [];
let server: Server;
let base: string;
let dir: string;

function serve(req: IncomingMessage, res: ServerResponse): void {
  requests.push({ range: req.headers.range, encoding: req.headers['accept-encoding'] });
  if (mode === 'gzip') {
    // A server that compresses even when asked not to: lengths then count compressed bytes.
    const body = gzipSync(fixture);
    res.writeHead(200, { 'Content-Length': body.length, 'Content-Encoding': 'gzip' });
    res.end(body);
    return;
  }
  if (mode === 'missing') {
    res.writeHead(404).end();
    return;
  }
  if (mode === 'unavailable-once') {
    mode = 'normal';
    res.writeHead(503).end();
    return;
  }
  if (mode === 'stall') {
    // Send a third, then nothing more, keeping the connection open.
    mode = 'normal';
    res.writeHead(200, { 'Content-Length': fixture.length });
    res.write(fixture.subarray(0, 100_000));
    return;
  }
  if (mode === 'cut') {
    // Promise the whole file, send a third of it, then drop the connection.
    mode = afterCut;
    res.writeHead(200, { 'Content-Length': fixture.length });
    res.write(fixture.subarray(0, 100_000), () => setTimeout(() => res.socket?.destroy(), 50));
    return;
  }
  const m = req.headers.range?.match(/^bytes=(\d+)-$/);
  if (m && mode === 'normal') {
    const start = Number(m[1]);
    if (start >= fixture.length) {
      res.writeHead(416, { 'Content-Range': `bytes */${fixture.length}` }).end();
      return;
    }
    res.writeHead(206, { 'Content-Length': fixture.length - start, 'Content-Range': `bytes ${start}-${fixture.length - 1}/${fixture.length}` });
    res.end(fixture.subarray(start));
    return;
  }
  res.writeHead(200, { 'Content-Length': fixture.length });
  res.end(fixture);
}

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'graft-dl-'));
  server = createServer(serve);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
after(async () => {
  server.closeAllConnections();
  await new Promise((r) => server.close(r));
  rmSync(dir, { recursive: true, force: true });
});

const fast = { retryDelayMs: 10, progressBar: false };

test('downloads with a matching md5, then a second call uses the file without a request', async () => {
  mode = 'normal';
  requests.length = 0;
  const dest = join(dir, 'a', 'file.bin');
  const seen: number[] = [];
  assert.equal(await downloadFile(`${base}/file.bin`, dest, { ...fast, md5, onProgress: (p) => seen.push(p.received) }), dest);
  assert.ok(readFileSync(dest).equals(fixture));
  assert.equal(existsSync(`${dest}.part`), false);
  assert.equal(seen.at(-1), fixture.length);
  assert.equal(requests.length, 1);
  await downloadFile(`${base}/file.bin`, dest, { ...fast, md5 });
  assert.equal(requests.length, 1);
});

test('an interrupted transfer is resumed from the .part with a Range request', async () => {
  mode = 'cut';
  afterCut = 'cut';
  requests.length = 0;
  const dest = join(dir, 'resume.bin');
  await assert.rejects(downloadFile(`${base}/f`, dest, { ...fast, md5, retries: 0 }), (err: unknown) => {
    assert.ok(err instanceof DownloadNetworkError);
    assert.match(err.message, /after 1 attempt; resume\.bin\.part is kept and will be resumed\)$/);
    return true;
  });
  const partSize = statSync(`${dest}.part`).size;
  assert.ok(partSize > 0 && partSize < fixture.length, `part has ${partSize} bytes`);
  assert.ok(readFileSync(`${dest}.part`).equals(fixture.subarray(0, partSize)));
  mode = 'normal';
  await downloadFile(`${base}/f`, dest, { ...fast, md5 });
  assert.deepEqual(requests.map((r) => r.range), [undefined, `bytes=${partSize}-`]);
  assert.ok(readFileSync(dest).equals(fixture));
  assert.equal(existsSync(`${dest}.part`), false);
});

test('retries within one call: a dropped connection, then a 503, still end with the right file', async () => {
  mode = 'cut';
  afterCut = 'unavailable-once'; // after the cut the server answers 503 once, then serves ranges
  requests.length = 0;
  const dest = join(dir, 'retry.bin');
  await downloadFile(`${base}/f`, dest, { ...fast, md5, retries: 3 });
  assert.ok(readFileSync(dest).equals(fixture));
  assert.equal(requests.length, 3);
  assert.equal(requests[0]!.range, undefined);
  assert.match(requests[1]!.range!, /^bytes=[1-9]\d*-$/);
  assert.equal(requests[2]!.range, requests[1]!.range);
});

test('a stalled transfer is given up after the idle timeout and resumed', async () => {
  mode = 'stall';
  requests.length = 0;
  const dest = join(dir, 'stall.bin');
  await downloadFile(`${base}/f`, dest, { ...fast, md5, idleTimeoutMs: 500 });
  assert.ok(readFileSync(dest).equals(fixture));
  assert.ok(requests.length >= 2); // 2 unless the machine is too busy for the 0.5 s timeout
  assert.match(requests[1]!.range!, /^bytes=[1-9]\d*-$/);
});

test('a server that ignores Range (200) makes the download start over', async () => {
  mode = 'ignore-range';
  requests.length = 0;
  const dest = join(dir, 'norange.bin');
  writeFileSync(`${dest}.part`, randomBytes(5000)); // not even a prefix: must be replaced, not appended to
  await downloadFile(`${base}/f`, dest, { ...fast, md5 });
  assert.equal(requests[0]!.range, 'bytes=5000-');
  assert.ok(readFileSync(dest).equals(fixture));
});

test('a complete .part left by an earlier run is checked and renamed, not fetched again', async () => {
  mode = 'normal';
  requests.length = 0;
  const dest = join(dir, 'complete.bin');
  writeFileSync(`${dest}.part`, fixture);
  await downloadFile(`${base}/f`, dest, { ...fast, md5 });
  assert.deepEqual(requests.map((r) => r.range), [`bytes=${fixture.length}-`]);
  assert.ok(readFileSync(dest).equals(fixture));
});

test('an md5 mismatch fails clearly and leaves no file behind', async () => {
  mode = 'normal';
  const dest = join(dir, 'bad.bin');
  await assert.rejects(downloadFile(`${base}/f`, dest, { ...fast, md5: '0'.repeat(32) }), (err: unknown) => {
    assert.ok(err instanceof GraftError);
    assert.match(err.message, new RegExp(`md5 ${md5}, expected 0{32}; it was deleted`));
    return true;
  });
  assert.equal(existsSync(dest), false);
  assert.equal(existsSync(`${dest}.part`), false);
});

test('asks for identity encoding, and copes with a server that gzips anyway', async () => {
  mode = 'gzip';
  requests.length = 0;
  const dest = join(dir, 'gz.bin');
  await downloadFile(`${base}/f`, dest, { ...fast, md5 });
  assert.ok(readFileSync(dest).equals(fixture));
  assert.equal(requests[0]!.encoding, 'identity');
});

test('HTTP 404 fails at once, without retries', async () => {
  mode = 'missing';
  requests.length = 0;
  await assert.rejects(downloadFile(`${base}/nope`, join(dir, 'nope.bin'), { ...fast, retries: 3 }), /HTTP 404/);
  assert.equal(requests.length, 1);
});

test('a download in progress elsewhere (live lock) is waited for, a stale lock is taken over', async () => {
  mode = 'normal';
  requests.length = 0;
  const dest = join(dir, 'locked.bin');
  writeFileSync(`${dest}.lock`, String(process.pid)); // a live owner
  const waiting = downloadFile(`${base}/f`, dest, { ...fast, md5 });
  await new Promise((r) => setTimeout(r, 400));
  writeFileSync(dest, fixture); // the owner finishes
  rmSync(`${dest}.lock`);
  assert.equal(await waiting, dest);
  assert.equal(requests.length, 0);

  const dest2 = join(dir, 'stale.bin');
  const gone = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' });
  writeFileSync(`${dest2}.lock`, gone.stdout); // its process has exited
  await downloadFile(`${base}/f`, dest2, { ...fast, md5 });
  assert.ok(readFileSync(dest2).equals(fixture));
  assert.equal(existsSync(`${dest2}.lock`), false);
});

test('ensureImagenetWeights: GRAFT_IMAGENET_URL mirror into the cache, checked, cached', async () => {
  mode = 'normal';
  requests.length = 0;
  const cache = join(dir, 'cache');
  process.env.GRAFT_IMAGENET_URL = `${base}/mirror.h5`;
  try {
    const path = await ensureImagenetWeights({ cacheDir: cache, md5, ...fast });
    assert.equal(path, join(cache, IMAGENET_WEIGHTS_FILE));
    assert.ok(readFileSync(path).equals(fixture));
    assert.equal(await ensureImagenetWeights({ cacheDir: cache, md5, ...fast }), path);
    assert.equal(requests.length, 1);
    // The published md5 is checked by default: our fixture is not the real file.
    await assert.rejects(ensureImagenetWeights({ cacheDir: join(dir, 'cache2'), ...fast }), /expected bcbd6486424b2319ff4ef7d526e38f63/);
  } finally {
    delete process.env.GRAFT_IMAGENET_URL;
  }
});

test('ensureImagenetWeights offline: says how to point graft at a local file', async () => {
  const closed = createServer();
  await new Promise<void>((r) => closed.listen(0, '127.0.0.1', r));
  const port = (closed.address() as AddressInfo).port;
  await new Promise((r) => closed.close(r));
  const cache = join(dir, 'offline');
  await assert.rejects(ensureImagenetWeights({ url: `http://127.0.0.1:${port}/w.h5`, cacheDir: cache, retries: 1, ...fast }), (err: unknown) => {
    assert.ok(err instanceof GraftError);
    assert.match(err.message, /ECONNREFUSED/);
    assert.ok(err.message.includes(`weights: '/path/to/${IMAGENET_WEIGHTS_FILE}'`), err.message);
    assert.match(err.message, /GRAFT_WEIGHTS_DIR/);
    assert.ok(!err.message.includes('\n'));
    return true;
  });
  assert.equal(existsSync(join(cache, IMAGENET_WEIGHTS_FILE)), false);
});
