/**
 * The README's "In the browser" snippet, run as written in headless Chromium on a classifier
 * trained here, against graft's own predictions (predictFiles), on the WebGL and CPU backends.
 * The classifier is trained with orientation 'exif' and one test photo carries an EXIF rotation,
 * so the check also covers turning photos upright as the browser does.
 *
 *   npm run check:browser               (needs Debian's chromium: apt-get install chromium)
 *   CHROMIUM=/path/to/chrome npm run check:browser
 *
 * Not part of `npm test`: CI machines have no browser. Exits 1 when a probability differs by
 * more than 1e-4 or a prediction leaves tensors behind, 2 when no Chromium is found.
 */
import { existsSync } from 'node:fs';
import { copyFile, mkdir, mkdtemp, readFile, readdir, rm } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { extname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import sharp from 'sharp';
import { loadClassifier, predictFiles } from '../src/model/saved-classifier.js';
import { parseHeadSpec } from '../src/model/head-spec-parse.js';
import { trainClassifier } from '../src/learner.js';
import { sharedInceptionWeightsDir, sharedLabDataDir } from '../src/util/paths.js';
import { relaunchWithMallocTunables } from '../src/util/malloc-tunables.js';

const TOLERANCE = 1e-4;
const repo = fileURLToPath(new URL('../..', import.meta.url));
const chromiumPath = process.env.CHROMIUM ?? '/usr/bin/chromium';

/** The README's browser snippet: the js block under "### In the browser". */
async function readmeSnippet(): Promise<string> {
  const readme = await readFile(join(repo, 'README.md'), 'utf8');
  const block = /```js\n([\s\S]*?)```/.exec(readme.slice(readme.indexOf('### In the browser')))?.[1];
  if (!block) throw new Error('README.md has no js block under "### In the browser"');
  return block;
}

/**
 * The page for one image: the snippet unchanged, but for the backend chosen after its import line
 * and, after its last line, the result published for the check to read.
 */
function page(snippet: string, image: string, backend: string): string {
  const importLine = "import * as tf from '@tensorflow/tfjs';\n";
  if (!snippet.startsWith(importLine)) throw new Error(`the README snippet no longer starts with ${importLine.trim()}`);
  const body = snippet.slice(importLine.length);
  return `<!doctype html><meta charset="utf-8">
<script type="importmap">{"imports":{"@tensorflow/tfjs":"/tfjs/tf.fesm.min.js"}}</script>
<img src="/images/${encodeURIComponent(image)}">
<script type="module">
window.addEventListener('unhandledrejection', (e) => { window.__error = String(e.reason?.stack ?? e.reason); });
window.addEventListener('error', (e) => { window.__error = String(e.message); });
${importLine}await tf.setBackend(${JSON.stringify(backend)});
${body}
window.__result = { probs, backend: tf.getBackend(), tensors: tf.memory().numTensors, weights: model.weights.length };
</script>`;
}

function serve(snippet: string, modelDir: string, images: Map<string, string>): Promise<Server> {
  const tfjs = join(repo, 'node_modules', '@tensorflow', 'tfjs', 'dist');
  const types: Record<string, string> = { '.js': 'text/javascript', '.json': 'application/json', '.jpg': 'image/jpeg', '.png': 'image/png' };
  const server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://localhost');
    const send = async (file: string | undefined) => {
      try {
        if (!file) throw new Error('not found');
        const bytes = await readFile(file);
        res.writeHead(200, { 'content-type': types[extname(file)] ?? 'application/octet-stream' }).end(bytes);
      } catch {
        res.writeHead(404).end();
      }
    };
    const path = decodeURIComponent(url.pathname);
    if (path === '/page.html') {
      res.writeHead(200, { 'content-type': 'text/html' }).end(page(snippet, url.searchParams.get('image')!, url.searchParams.get('backend')!));
    } else if (path.startsWith('/tfjs/') && !path.includes('..')) void send(join(tfjs, path.slice(6)));
    else if (path.startsWith('/model/') && !path.includes('..')) void send(join(modelDir, path.slice(7)));
    else if (path.startsWith('/images/')) void send(images.get(path.slice(8)));
    else res.writeHead(404).end();
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(server)));
}

/** A small two-class lab-layout folder from the shared dataset, and a classifier trained on it. */
async function trainSmall(work: string): Promise<string> {
  for (const [split, count] of [['train', 20], ['validation', 6]] as const) {
    for (const cls of ['cats', 'dogs']) {
      const from = join(sharedLabDataDir(), split, cls);
      await mkdir(join(work, 'data', split, cls), { recursive: true });
      for (const f of (await readdir(from)).sort().slice(0, count)) await copyFile(join(from, f), join(work, 'data', split, cls, f));
    }
  }
  const result = await trainClassifier({
    data: join(work, 'data'),
    out: join(work, 'run'),
    // The README's snippet resizes as Keras load_img does (nearest), the lab's way.
    recipe: 'lab',
    weights: sharedInceptionWeightsDir('fp32'),
    head: parseHeadSpec('gap,dense:16:relu'),
    mode: { kind: 'cached' },
    epochs: 2,
    batchSize: 10,
    optimizer: { kind: 'adam', learningRate: 1e-3 },
    orientation: 'exif',
    verbose: 0,
  });
  return result.out;
}

async function main(): Promise<number> {
  if (!existsSync(chromiumPath)) {
    console.error(`no Chromium at ${chromiumPath}: install Debian's (apt-get install chromium) or set CHROMIUM`);
    return 2;
  }
  const { chromium } = await import('playwright-core');
  const work = await mkdtemp(join(tmpdir(), 'graft-browser-check-'));
  try {
    console.log('training a small classifier (orientation exif)...');
    const run = await trainSmall(work);
    // The validation photos, plus one stored sideways with an EXIF tag that turns it upright.
    const images = new Map<string, string>();
    for (const cls of ['cats', 'dogs']) {
      const dir = join(work, 'data', 'validation', cls);
      for (const f of (await readdir(dir)).sort().slice(0, 3)) images.set(f, join(dir, f));
    }
    const rotated = join(work, 'rotated.jpg');
    await sharp(images.values().next().value!).rotate(-90).jpeg({ quality: 95 }).withMetadata({ orientation: 6 }).toFile(rotated);
    images.set('rotated.jpg', rotated);

    const model = await loadClassifier(run);
    const names = [...images.keys()];
    const ours = await predictFiles(model, names.map((n) => images.get(n)!));
    await model.dispose();

    const server = await serve(await readmeSnippet(), join(run, 'model'), images);
    const base = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
    const browser = await chromium.launch({ executablePath: chromiumPath });
    let failures = 0;
    try {
      for (const backend of ['webgl', 'cpu']) {
        let worst = 0;
        for (const [i, name] of names.entries()) {
          const tab = await browser.newPage();
          await tab.goto(`${base}/page.html?image=${encodeURIComponent(name)}&backend=${backend}`);
          // A string, evaluated in the page (this file is compiled without the DOM's types).
          const handle = await tab.waitForFunction('window.__result || window.__error', null, { timeout: 300_000 });
          const got = (await handle.jsonValue()) as { probs: number[]; backend: string; tensors: number; weights: number } | string;
          await tab.close();
          if (typeof got === 'string') {
            console.log(`${backend} ${name}: the page failed: ${got}`);
            failures++;
            continue;
          }
          const expected = ours[i]!.probabilities;
          // NaN, or a row of another length, fails too.
          const diff = got.probs.length === expected.length ? Math.max(...got.probs.map((p, c) => Math.abs(p - expected[c]!))) : NaN;
          worst = Math.max(worst, diff);
          const leaked = got.tensors - got.weights;
          if (!(diff <= TOLERANCE) || leaked !== 0 || got.backend !== backend) {
            console.log(`${backend} ${name}: max |browser - graft| ${diff.toExponential(2)}, tensors left ${leaked}, backend ${got.backend}`);
            failures++;
          }
        }
        console.log(`${backend}: ${names.length} images, max |browser - graft predict| ${worst.toExponential(2)}`);
      }
    } finally {
      await browser.close();
      server.close();
    }
    console.log(failures === 0 ? 'browser check passed' : `browser check FAILED (${failures})`);
    return failures === 0 ? 0 : 1;
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

await relaunchWithMallocTunables();
process.exitCode = await main();
