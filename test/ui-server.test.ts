/**
 * graft ui's server: every route, and its security model (token, Host, Origin, real-path
 * containment, upload limits), on a small dataset and real `graft train` processes.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { copyFile, mkdir, mkdtemp, readdir, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import sharp from 'sharp';
import { startUiServer, type UiServer } from '../src/ui/server.js';
import { loadClassifier, predictFiles } from '../src/model/saved-classifier.js';
import { sharedInceptionWeightsDir, sharedLabDataDir } from '../src/util/paths.js';

const root = await mkdtemp(join(tmpdir(), 'graft-ui-test-'));
const data = join(root, 'data');
const runs = join(root, 'runs');
const secret = join(root, 'secret');
let ui: UiServer;
let base: string;

before(async () => {
  for (const [split, n] of [['train', 6], ['validation', 3]] as const) {
    for (const cls of ['cats', 'dogs']) {
      const from = join(sharedLabDataDir(), split, cls);
      await mkdir(join(data, split, cls), { recursive: true });
      for (const f of (await readdir(from)).sort().slice(0, n)) await copyFile(join(from, f), join(data, split, cls, f));
    }
  }
  await mkdir(secret, { recursive: true });
  await sharp({ create: { width: 8, height: 8, channels: 3, background: '#f00' } }).png().toFile(join(secret, 'secret.png'));
  await writeFile(join(secret, 'secret.txt'), 'not for the page');
  // A page or a script inside an opened folder would run as the page's origin: never served.
  await mkdir(join(data, 'web'), { recursive: true });
  await writeFile(join(data, 'web', 'evil.html'), '<script>alert(1)</script>');
  await writeFile(join(data, 'web', 'evil.js'), 'alert(1)');
  // Links inside the opened folder: one escaping it (refused), one staying inside (served).
  await symlink(join(secret, 'secret.png'), join(data, 'escape.png'));
  await symlink(secret, join(data, 'escape-dir'));
  await symlink(join(data, 'train', 'cats'), join(data, 'inside-link'));
  // A small upload limit, so the oversize test needs no big file.
  ui = await startUiServer({ runsDir: runs, maxUpload: 200_000 });
  base = `http://127.0.0.1:${ui.port}`;
});

after(async () => {
  await ui?.close();
  await rm(root, { recursive: true, force: true });
});

interface Reply {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
  json: () => any; // eslint-disable-line @typescript-eslint/no-explicit-any
}

/** A raw request (node:http, so that Host and Origin are exactly what the test sets). */
function call(method: string, path: string, opts: { headers?: Record<string, string>; body?: Buffer | string; token?: boolean; origin?: boolean } = {}): Promise<Reply> {
  const headers: Record<string, string> = { host: `127.0.0.1:${ui.port}`, ...(opts.token !== false && { 'x-graft-token': ui.token }), ...(opts.origin !== false && method !== 'GET' && { origin: base }), ...opts.headers };
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port: ui.port, method, path, headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const body = Buffer.concat(chunks);
        resolve({ status: res.statusCode!, headers: res.headers, body, json: () => JSON.parse(body.toString('utf8')) });
      });
    });
    req.on('error', reject);
    if (opts.body !== undefined) req.write(opts.body);
    req.end();
  });
}
const get = (path: string, opts = {}) => call('GET', path, opts);
const post = (path: string, body: unknown, opts: { headers?: Record<string, string>; token?: boolean; origin?: boolean } = {}) =>
  call('POST', path, { ...opts, body: Buffer.isBuffer(body) ? body : JSON.stringify(body), headers: { 'content-type': Buffer.isBuffer(body) ? 'application/octet-stream' : 'application/json', ...opts.headers } });

/** Server-Sent Events of a run until `until` holds for the events so far. */
function events(run: string, until: (evs: { event: string; data: any }[]) => boolean, timeoutMs = 120_000): Promise<{ event: string; data: any }[]> { // eslint-disable-line @typescript-eslint/no-explicit-any
  return new Promise((resolve, reject) => {
    const evs: { event: string; data: unknown }[] = [];
    const timer = setTimeout(() => {
      req.destroy();
      reject(new Error(`timed out; events: ${evs.map((e) => e.event).join(', ')}`));
    }, timeoutMs);
    const req = request({ host: '127.0.0.1', port: ui.port, path: `/api/runs/${run}/events`, headers: { host: `127.0.0.1:${ui.port}`, 'x-graft-token': ui.token } }, (res) => {
      let buf = '';
      res.on('data', (c: Buffer) => {
        buf += c.toString('utf8');
        for (let i; (i = buf.indexOf('\n\n')) >= 0; ) {
          const block = buf.slice(0, i);
          buf = buf.slice(i + 2);
          const event = /^event: (.*)$/m.exec(block)?.[1];
          const dataLine = /^data: (.*)$/m.exec(block)?.[1];
          if (event && dataLine) evs.push({ event, data: JSON.parse(dataLine) });
        }
        if (until(evs as { event: string; data: any }[])) { // eslint-disable-line @typescript-eslint/no-explicit-any
          clearTimeout(timer);
          req.destroy();
          resolve(evs as { event: string; data: any }[]); // eslint-disable-line @typescript-eslint/no-explicit-any
        }
      });
    });
    req.on('error', (err) => {
      if (!req.destroyed) reject(err);
    });
    req.end();
  });
}

const trainForm = (name: string, extra: Record<string, unknown> = {}) => ({
  data,
  name,
  epochs: 2,
  batchSize: 4,
  mode: 'cached',
  head: 'gap,dense:8:relu',
  optimizer: 'adam',
  lr: 0.001,
  weights: sharedInceptionWeightsDir('fp32'),
  ...extra,
});

test('the token: required on every request; the printed URL sets an HttpOnly SameSite=Strict cookie that then suffices', async () => {
  for (const path of ['/', '/app.js', '/api/info', '/api/runs', '/vendor/uPlot.esm.js', '/api/nothing']) {
    const r = await get(path, { token: false });
    assert.equal(r.status, 403, path);
    assert.match(r.json().error, /token/);
  }
  assert.equal((await get('/api/info', { token: false, headers: { 'x-graft-token': `${ui.token}x` } })).status, 403);
  assert.equal((await get('/api/info?token=wrong', { token: false })).status, 403);
  const first = await get(`/?token=${ui.token}`, { token: false });
  assert.equal(first.status, 303);
  assert.equal(first.headers.location, '/');
  const cookie = String(first.headers['set-cookie']);
  assert.match(cookie, /HttpOnly/);
  assert.match(cookie, /SameSite=Strict/);
  const pair = cookie.split(';')[0]!;
  const page = await get('/', { token: false, headers: { cookie: pair } });
  assert.equal(page.status, 200);
  assert.match(page.body.toString(), /<script type="module" src="\/app.js">/);
  assert.equal((await get('/api/info', { token: false, headers: { cookie: `${pair}x` } })).status, 403);
  assert.match(String(page.headers['content-security-policy']), /default-src 'self'/);
  assert.equal(page.headers['x-frame-options'], 'DENY');
});

test('the Host header must name this server (DNS rebinding), even with the token', async () => {
  for (const host of ['evil.example', `evil.example:${ui.port}`, `127.0.0.1:${ui.port + 1}`, '127.0.0.1']) {
    const r = await get('/api/info', { headers: { host } });
    assert.equal(r.status, 403, host);
    assert.match(r.json().error, /Host/);
  }
  assert.equal((await get('/api/info', { headers: { host: `localhost:${ui.port}` } })).status, 200);
});

test('state-changing requests need this server as their Origin', async () => {
  const body = { path: data };
  assert.equal((await post('/api/folders', body, { origin: false })).status, 403);
  for (const origin of ['http://evil.example', `http://127.0.0.1:${ui.port + 1}`, 'null', `https://127.0.0.1:${ui.port}`]) {
    const r = await post('/api/folders', body, { origin: false, headers: { origin } });
    assert.equal(r.status, 403, origin);
    assert.match(r.json().error, /cross-origin/);
  }
  assert.equal((await post('/api/jobs/1/stop', {}, { origin: false, headers: { origin: 'http://evil.example' } })).status, 403);
  assert.equal((await post('/api/folders', body)).status, 200);
});

test('static files and the chart library come from the package', async () => {
  for (const [path, type] of [['/app.js', 'javascript'], ['/style.css', 'css'], ['/vendor/uPlot.esm.js', 'javascript'], ['/vendor/uPlot.min.css', 'css']] as const) {
    const r = await get(path);
    assert.equal(r.status, 200, path);
    assert.match(String(r.headers['content-type']), new RegExp(type));
    assert.ok(r.body.length > 100);
  }
  assert.equal((await get('/nothing-here')).status, 404);
  assert.equal((await call('DELETE', '/api/runs')).status, 405);
  const info = (await get('/api/info')).json();
  assert.equal(info.runsDir, runs);
});

test('data: a folder opened by path shows its classes and counts, its report, a paged grid, thumbnails and the augmentation preview', async () => {
  const opened = await post('/api/folders', { path: data });
  assert.equal(opened.status, 200);
  const s = opened.json();
  assert.equal(s.layout, 'lab');
  assert.deepEqual(s.classes, ['cats', 'dogs']);
  assert.deepEqual(s.splits.map((x: { name: string; counts: unknown }) => [x.name, x.counts]), [['train', { cats: 6, dogs: 6 }], ['validation', { cats: 3, dogs: 3 }]]);
  assert.equal((await post('/api/folders', { path: join(root, 'nope') })).status, 404);
  assert.equal((await post('/api/folders', { path: join(secret, 'secret.txt') })).status, 400);
  for (const decode of [0, 1]) {
    const report = (await get(`/api/folders/${s.id}/report?decode=${decode}`)).json();
    assert.deepEqual(report.classes, ['cats', 'dogs']);
    assert.equal(report.formats.jpeg, 18);
    assert.deepEqual(report.bad, []);
  }
  const page = (await get(`/api/folders/${s.id}/images?split=train&class=dogs&offset=2&limit=3`)).json();
  assert.equal(page.total, 6);
  assert.equal(page.items.length, 3);
  assert.match(page.items[0].path, /^train\/dogs\/dog\.\d+\.jpg$/);
  assert.equal((await get(`/api/folders/${s.id}/images?split=train&class=birds`)).status, 404);
  const thumb = await get(`/api/thumb?folder=${s.id}&path=${encodeURIComponent(page.items[0].path)}`);
  assert.equal(thumb.status, 200);
  const meta = await sharp(thumb.body).metadata();
  assert.deepEqual([meta.format, meta.width, meta.height], ['jpeg', 128, 128]);
  // Made once: the second is the cached bytes.
  assert.deepEqual((await get(`/api/thumb?folder=${s.id}&path=${encodeURIComponent(page.items[0].path)}`)).body, thumb.body);
  const file = await get(`/api/file?folder=${s.id}&path=${encodeURIComponent(page.items[0].path)}`);
  assert.equal(file.status, 200);
  assert.deepEqual(file.body, await readFile(join(data, page.items[0].path)));
  const preview = await get(`/api/augment?folder=${s.id}&path=${encodeURIComponent(page.items[0].path)}&seed=1`);
  assert.equal(preview.status, 200);
  const pm = await sharp(preview.body).metadata();
  assert.deepEqual([pm.format, pm.width, pm.height], ['png', 3 * 150 + 4 * 4, 3 * 150 + 4 * 4]);
  // Through a link that stays inside the opened folder: served.
  const inside = (await readdir(join(data, 'train', 'cats')))[0]!;
  assert.equal((await get(`/api/file?folder=${s.id}&path=inside-link/${inside}`)).status, 200);
});

test('traversal: no .., encoded or not, no absolute path, no escape through a link, no unknown folder', async () => {
  const id = (await post('/api/folders', { path: data })).json().id;
  const attempts = [
    '../secret/secret.png',
    'train/../../secret/secret.png',
    encodeURIComponent('../secret/secret.png'),
    '%2e%2e%2fsecret%2fsecret.png',
    '%252e%252e%252fsecret%252fsecret.png',
    '..%5csecret%5csecret.png',
    encodeURIComponent(join(secret, 'secret.png')),
    '/etc/passwd',
    'escape.png',
    'escape-dir/secret.png',
    'escape-dir/secret.txt',
    'train%00/cats',
  ];
  for (const route of ['file', 'thumb', 'augment']) {
    for (const p of attempts) {
      const r = await get(`/api/${route}?folder=${id}&path=${p}`);
      assert.ok([400, 403, 404].includes(r.status), `${route} ${p}: ${r.status}`);
      assert.ok(!r.body.includes('not for the page'));
      assert.notEqual(r.headers['content-type'], 'image/png');
    }
  }
  assert.equal((await get(`/api/file?folder=${id}&path=escape.png`)).status, 403);
  assert.equal((await get(`/api/file?folder=${id}&path=${encodeURIComponent('../secret/secret.png')}`)).status, 403);
  for (const p of ['web/evil.html', 'web/evil.js']) {
    const r = await get(`/api/file?folder=${id}&path=${p}`);
    assert.equal(r.status, 403, p);
    assert.match(r.json().error, /only images/);
  }
  assert.equal((await get(`/api/file?folder=99&path=x.png`)).status, 404);
  assert.equal((await get(`/api/file?folder=..&path=x.png`)).status, 404);
  // Run names are plain folder names.
  for (const name of ['..', '.hidden', 'a%2Fb', '%2e%2e']) assert.ok([400, 404].includes((await get(`/api/runs/${name}`)).status), name);
  assert.equal((await post('/api/train', trainForm('../escape'))).status, 400);
  assert.equal((await post('/api/train', trainForm('a/b'))).status, 400);
});

test('train: the form as a command line; a run as its own process, watched live (SSE) to the end; runs, metrics, evaluation', async () => {
  const defaults = (await get('/api/train/defaults')).json();
  // graft train's default recipe.
  assert.equal(defaults.epochs, 10);
  assert.equal(defaults.head, 'avgpool:7:5,flatten,dense:256:relu,dropout:0.2');
  assert.equal(defaults.inputSize, '299x299');
  const cmd = (await post('/api/train/command', { data: '/my photos', name: 'mine', epochs: 3, augment: false })).json();
  assert.equal(cmd.command, `graft train --data '/my photos' --out ${join(runs, 'mine')} --epochs 3 --no-augment`);
  assert.equal((await post('/api/train/command', { data: '/x', name: 'mine', epochs: 'three' })).status, 400);
  assert.equal((await post('/api/train/command', { data: '/x', name: 'mine', head: '--evil' })).status, 400);

  const started = await post('/api/train', trainForm('first'));
  assert.equal(started.status, 202);
  assert.equal(started.json().run, 'first');
  // A second run waits its turn, and leaves the queue when stopped there.
  const queued = (await post('/api/train', trainForm('second'))).json();
  assert.equal(queued.state, 'queued');
  assert.equal((await post('/api/train', trainForm('first'))).status, 409);
  assert.equal((await post(`/api/jobs/${queued.id}/stop`, {})).json().state, 'stopped');
  const evs = await events('first', (e) => e.some((x) => x.event === 'job' && x.data.state === 'finished') && e.some((x) => x.event === 'history' && x.data.val_accuracy?.length === 2));
  const histories = evs.filter((e) => e.event === 'history').map((e) => e.data.val_accuracy?.length ?? 0);
  assert.ok(histories.includes(2), `history events: ${histories}`);
  assert.ok(evs.some((e) => e.event === 'log' && /^Epoch 2\/2/.test(e.data.line)));
  assert.ok(evs.some((e) => e.event === 'job' && e.data.progress?.epoch === 2));
  const jobs = (await get('/api/jobs')).json();
  assert.deepEqual(jobs.map((j: { run: string; state: string }) => [j.run, j.state]), [['first', 'finished'], ['second', 'stopped']]);

  const list = (await get('/api/runs')).json();
  const first = list.find((r: { name: string }) => r.name === 'first');
  assert.equal(first.status, 'finished');
  assert.equal(first.epochs, 2);
  assert.equal(first.recipe.mode, 'cached');
  assert.deepEqual(first.classes, ['cats', 'dogs']);
  assert.ok(first.hasModel);
  const detail = (await get('/api/runs/first')).json();
  assert.equal(detail.history.loss.length, 2);
  assert.equal((await get('/api/runs/nope')).status, 404);
  // The run's plots and reports come from the runs folder.
  assert.equal((await get('/api/file?folder=runs&path=first/accuracy.png')).status, 200);
  assert.equal((await get('/api/file?folder=runs&path=first/report.txt')).status, 200);

  const metrics = (await get('/api/runs/first/metrics')).json();
  assert.deepEqual(metrics.classes, ['cats', 'dogs']);
  assert.equal(metrics.confusion.flat().reduce((a: number, b: number) => a + b, 0), 6);
  for (const m of metrics.misclassified) assert.equal(m.served.folder, (await post('/api/folders', { path: data })).json().id);
  const evaluation = (await post('/api/runs/first/evaluate', {})).json();
  assert.equal(evaluation.items.length, 6);
  assert.deepEqual(evaluation.metrics.confusion, metrics.confusion);
  assert.ok(Math.abs(evaluation.metrics.accuracy - metrics.accuracy) < 1e-9);
  assert.equal(evaluation.roc.fpr[0], 0);
  assert.equal(evaluation.roc.tpr.at(-1), 1);
  assert.ok(evaluation.items.every((it: { served: unknown }) => it.served));
});

test('try it: probabilities equal graft predict\'s, with a Grad-CAM heatmap; non-images and oversize uploads refused clearly', async () => {
  const image = join(data, 'validation', 'dogs', (await readdir(join(data, 'validation', 'dogs')))[0]!);
  const r = await post('/api/runs/first/predict', await readFile(image), { headers: { 'content-type': 'image/jpeg', 'x-file-name': encodeURIComponent('my dog.jpg') } });
  assert.equal(r.status, 200);
  const result = r.json();
  const model = await loadClassifier(join(runs, 'first'));
  const [expected] = await predictFiles(model, [image]);
  await model.dispose();
  assert.equal(result.prediction.file, 'my dog.jpg');
  result.prediction.probabilities.forEach((p: number, i: number) => assert.ok(Math.abs(p - expected!.probabilities[i]!) < 1e-6));
  const heat = result.heatmap;
  assert.equal(heat.classIndex, expected!.classIndex);
  heat.probabilities.forEach((p: number, i: number) => assert.ok(Math.abs(p - expected!.probabilities[i]!) < 1e-4, `head in JS: ${p} vs ${expected!.probabilities[i]}`));
  // mixed7's map at the default recipe's 299x299 input (the run was started with the form's defaults).
  assert.deepEqual(heat.camShape, [17, 17]);
  // Normalised to [0, 1]: its peak is 1, unless nothing in the image speaks for the class (all 0:
  // this test's tiny dense:8 head, trained 2 epochs at the default recipe's Adam 1e-3, can leave
  // every hidden ReLU off for an image; the map's arithmetic is checked in head-gradient.test.ts).
  assert.ok(heat.cam.every((v: number) => v >= 0 && v <= 1) && [0, 1].includes(Math.max(...heat.cam)));
  const png = Buffer.from(heat.png.replace(/^data:image\/png;base64,/, ''), 'base64');
  const pm = await sharp(png).metadata();
  assert.equal(pm.format, 'png');
  const original = await sharp(image).metadata();
  assert.deepEqual([pm.width, pm.height], [original.width, original.height].map((d) => Math.round(d! * Math.min(1, 448 / Math.max(original.width!, original.height!)))));
  const other = (await post(`/api/runs/first/predict?class=${1 - expected!.classIndex}`, await readFile(image))).json();
  assert.equal(other.heatmap.classIndex, 1 - expected!.classIndex);
  assert.equal((await post('/api/runs/first/predict?class=7', await readFile(image))).status, 400);

  const text = await post('/api/runs/first/predict', Buffer.from('hello, this is text'), { headers: { 'x-file-name': 'notes.jpg' } });
  assert.equal(text.status, 415);
  assert.match(text.json().error, /^notes\.jpg: .*not an image/);
  // Declared too large (Content-Length), and found too large while read (chunked).
  for (const headers of [{ 'content-length': '300000' }, {}] as Record<string, string>[]) {
    const big = await post('/api/runs/first/predict', Buffer.alloc(300_000, 1), { headers });
    assert.equal(big.status, 413);
    assert.match(big.json().error, /too large/);
  }
  assert.equal((await post('/api/runs/first/predict', Buffer.alloc(0))).status, 400);
  assert.equal((await post('/api/runs/second/predict', await readFile(image))).status, 404);
});

test('graft explain writes a PNG overlay per image', async () => {
  const out = join(root, 'explained');
  const image = join(data, 'validation', 'cats', (await readdir(join(data, 'validation', 'cats')))[0]!);
  const bin = join(import.meta.dirname, '..', 'bin', 'graft.js');
  const run = await new Promise<{ code: number | null; out: string; err: string }>((resolve) => {
    const child = spawn(process.execPath, [bin, 'explain', '--model', join(runs, 'first'), image, join(secret, 'secret.txt'), '--out', out, '--size', '200'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let o = '', e = '';
    child.stdout.on('data', (d) => (o += d));
    child.stderr.on('data', (d) => (e += d));
    child.on('close', (code) => resolve({ code, out: o, err: e }));
  });
  assert.equal(run.code, 1, run.err);
  assert.match(run.err, /secret\.txt: .*not an image/);
  assert.match(run.out, /cat\.\d+\.jpg: (cats|dogs) \(cats 0\.\d{4}, dogs 0\.\d{4}\) -> /);
  const written = join(out, image.split('/').at(-1)!.replace('.jpg', '.gradcam.png'));
  assert.ok(existsSync(written));
  const m = await sharp(written).metadata();
  assert.equal(Math.max(m.width!, m.height!), 200);
});

test('stop sends a clean interrupt (checkpoint kept); resume continues the run to the end', async () => {
  const job = (await post('/api/train', trainForm('long', { epochs: 200 }))).json();
  await events('long', (e) => e.some((x) => x.event === 'history' && (x.data.loss?.length ?? 0) >= 1));
  assert.equal((await post(`/api/jobs/${job.id}/stop`, {})).status, 200);
  await events('long', (e) => e.some((x) => x.event === 'job' && x.data.state === 'stopped'));
  const stopped = (await get('/api/runs/long')).json();
  assert.equal(stopped.status, 'stopped');
  assert.ok(existsSync(join(runs, 'long', 'checkpoint', 'checkpoint.json')));
  const done = stopped.epochs;
  assert.equal((await post('/api/runs/nope/resume', {})).status, 409);
  const resumed = await post('/api/runs/long/resume', { epochs: done + 1 });
  assert.equal(resumed.status, 202);
  assert.ok(resumed.json().args.includes('--resume'));
  await events('long', (e) => e.some((x) => x.event === 'job' && x.data.id === resumed.json().id && x.data.state === 'finished'));
  const finished = (await get('/api/runs/long')).json();
  assert.equal(finished.status, 'finished');
  assert.equal(finished.epochs, done + 1);
});
