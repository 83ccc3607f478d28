/**
 * `npm run check:ui`: graft ui end to end in headless Chromium, as a user drives it. It starts
 * `graft ui` (the command), opens the page with the token, opens a small dataset, starts a 2-epoch
 * run and watches both curve points arrive live, opens the confusion matrix and a cell's images,
 * uploads an image and compares the probabilities shown with `graft predict --json`'s (1e-4),
 * and opens the heatmap. It prints the first page load time and the server's idle memory, and
 * saves screenshots.
 *
 *   npm run check:ui                  (needs Debian's chromium: apt-get install chromium)
 *   CHROMIUM=/path/to/chrome npm run check:ui -- --shots DIR
 *
 * Not part of `npm test`: CI machines have no browser. Exits 1 on a failed check, 2 without Chromium.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { copyFile, mkdir, mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import sharp from 'sharp';
import { sharedInceptionWeightsDir, sharedLabDataDir } from '../src/util/paths.js';
import { DEFAULT_RECIPE } from '../src/train/recipes.js';

// Browser-side code inside page.evaluate / waitForFunction (this project compiles without the DOM library).
/* eslint-disable @typescript-eslint/no-explicit-any */
declare const document: any;
declare const window: any;
declare const MutationObserver: any;

const TOLERANCE = 1e-4;
const repo = fileURLToPath(new URL('../..', import.meta.url));
const bin = join(repo, 'bin', 'graft.js');
const chromiumPath = process.env.CHROMIUM ?? '/usr/bin/chromium';
const shotsArg = process.argv.indexOf('--shots');
const shots = shotsArg >= 0 ? process.argv[shotsArg + 1]! : join(tmpdir(), 'graft-ui-check-shots');

const rssMb = (pid: number) => Math.round(Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0) / 1024);

async function makeDataset(dir: string): Promise<void> {
  for (const [split, count] of [['train', 20], ['validation', 6]] as const) {
    for (const cls of ['cats', 'dogs']) {
      const from = join(sharedLabDataDir(), split, cls);
      await mkdir(join(dir, split, cls), { recursive: true });
      for (const f of (await readdir(from)).sort().slice(0, count)) await copyFile(join(from, f), join(dir, split, cls, f));
    }
  }
}

function startUi(runs: string): Promise<{ child: ChildProcess; url: string }> {
  const child = spawn(process.execPath, [bin, 'ui', '--runs', runs], { stdio: ['ignore', 'pipe', 'inherit'] });
  return new Promise((resolve, reject) => {
    let out = '';
    child.stdout!.on('data', (d: Buffer) => {
      out += d;
      const url = /open (http:\/\/\S+)/.exec(out)?.[1];
      if (url) resolve({ child, url });
    });
    child.on('exit', (code) => reject(new Error(`graft ui exited (${code}): ${out}`)));
  });
}

function predictJson(run: string, image: string): Promise<number[]> {
  return new Promise((resolve, reject) =>
    execFile(process.execPath, [bin, 'predict', '--model', run, image, '--json'], (err, stdout) => {
      if (err) return reject(err);
      const line = JSON.parse(stdout.trim().split('\n')[0]!) as { probabilities: Record<string, number> };
      resolve(Object.values(line.probabilities));
    }),
  );
}

async function main(): Promise<number> {
  if (!existsSync(chromiumPath)) {
    console.error(`no Chromium at ${chromiumPath}: install Debian's (apt-get install chromium) or set CHROMIUM`);
    return 2;
  }
  const { chromium } = await import('playwright-core');
  const work = await mkdtemp(join(tmpdir(), 'graft-ui-check-'));
  const data = join(work, 'photos');
  const runs = join(work, 'runs');
  await makeDataset(data);
  await mkdir(shots, { recursive: true });
  const failures: string[] = [];
  const check = (ok: boolean, what: string) => {
    console.log(`${ok ? 'ok  ' : 'FAIL'} ${what}`);
    if (!ok) failures.push(what);
  };
  const { child, url } = await startUi(runs);
  const browser = await chromium.launch({ executablePath: chromiumPath });
  try {
    await new Promise((r) => setTimeout(r, 1500));
    const idleRss = rssMb(child.pid!);
    check(idleRss < 150, `graft ui idle RSS ${idleRss} MB (< 150)`);
    const page = await browser.newPage({ viewport: { width: 1280, height: 860 } });
    page.on('pageerror', (err) => failures.push(`page error: ${err.message}`));
    const t0 = performance.now();
    await page.goto(url, { waitUntil: 'load' });
    const loadMs = performance.now() - t0;
    check(loadMs < 1000, `first page load ${loadMs.toFixed(0)} ms (< 1000; the token URL, its redirect, HTML, JS, CSS, uPlot)`);
    check(!page.url().includes('token='), 'the token leaves the address bar once the cookie holds it');

    // Data: open the folder, see classes and counts, the grid and an augmentation preview.
    await page.fill('#folder-path', data);
    await page.click('#open-folder');
    await page.waitForSelector('#class-counts');
    const counts = await page.$$eval('#class-counts tbody tr', (rows) => rows.map((r) => [...r.querySelectorAll('td')].map((td) => td.textContent)));
    check(JSON.stringify(counts) === JSON.stringify([['cats', '20', '6'], ['dogs', '20', '6']]), `classes and counts shown: ${JSON.stringify(counts)}`);
    await page.waitForFunction(() => [...document.querySelectorAll('#grid img')].length === 20 && [...document.querySelectorAll('#grid img')].every((i) => i.complete && i.naturalWidth === 128));
    check(true, 'thumbnail grid: 20 thumbnails of 128 px');
    await page.click('#grid img');
    await page.waitForFunction(() => (document.querySelector('#augment-preview')?.naturalWidth ?? 0) > 400);
    check(true, 'augmentation preview shown');
    await page.waitForSelector('#bad-files');
    await page.screenshot({ path: join(shots, 'data.png') });

    // Train: the form with graft train's defaults, then a 2-epoch run watched live.
    await page.click('nav button[data-tab=train]');
    await page.waitForFunction(() => (document.querySelector('#train-form [name=epochs]')?.value ?? '') !== '');
    const defaults = await page.$eval('#train-form [name=epochs]', (i) => i.value);
    check(defaults === String(DEFAULT_RECIPE.epochs), `the form starts from graft train's defaults (epochs ${defaults})`);
    const set = async (name: string, value: string) => page.fill(`#train-form [name=${name}]`, value);
    await set('name', 'ui-check');
    await set('epochs', '2');
    await set('batchSize', '10');
    await set('head', 'gap,dense:16:relu');
    // Not the default recipe's optimiser, so the command line must name it.
    await page.selectOption('#train-form [name=optimizer]', 'rmsprop');
    await set('lr', '0.001');
    // Faithful: each epoch runs the backbone, seconds long, so the page can see each epoch's point
    // arrive on its own (cached epochs of 4 tiny steps can both land within one 500 ms poll).
    await set('mode', 'faithful');
    await set('weights', sharedInceptionWeightsDir('fp32'));
    await page.waitForFunction(() => /--epochs 2 .*--optimizer rmsprop/.test(document.querySelector('#train-command')?.textContent ?? ''));
    check(true, `command line shown: ${await page.textContent('#train-command')}`);
    // Every history event the page draws, in order: both points must arrive separately, while the run goes on.
    await page.evaluate(() => {
      const seen: string[] = [];
      window.__points = seen;
      new MutationObserver(() => {
        const n = document.querySelector('#live-chart-acc')?.dataset.points;
        if (n && seen.at(-1) !== n) seen.push(`${n}:${document.querySelector('#live-progress')?.dataset.state}`);
      }).observe(document.querySelector('#live-chart-acc')!, { attributes: true, childList: true, subtree: true });
    });
    await page.click('#train-start');
    await page.waitForFunction(() => document.querySelector('#live-progress')?.dataset.state === 'running', null, { timeout: 60_000 });
    await page.waitForFunction(() => /step \d+\/\d+/.test(document.querySelector('#live-progress')?.textContent ?? ''), null, { timeout: 120_000 }).catch(() => null);
    const progressLine = await page.textContent('#live-progress');
    await page.screenshot({ path: join(shots, 'train-running.png') });
    await page.waitForFunction(() => ['finished', 'failed'].includes(document.querySelector('#live-progress')?.dataset.state ?? ''), null, { timeout: 300_000 });
    const state = await page.$eval('#live-progress', (e) => e.dataset.state);
    check(state === 'finished', `the run finished (${await page.textContent('#live-progress')})`);
    check(/epoch \d\/2, step \d+\/\d+/.test(progressLine ?? ''), `live step progress: "${progressLine}"`);
    const points: string[] = await page.evaluate(() => window.__points);
    const one = points.findIndex((p) => p.startsWith('1:'));
    const two = points.findIndex((p) => p.startsWith('2:'));
    check(one >= 0 && two > one, `curve points arrived one by one: ${points.join(' ')}`);
    await page.screenshot({ path: join(shots, 'train.png') });

    // Runs: listed as finished.
    await page.click('nav button[data-tab=runs]');
    await page.waitForSelector('#runs-table tr[data-run=ui-check]');
    const runStatus = await page.textContent('#runs-table tr[data-run=ui-check] td:nth-child(3)');
    check(runStatus === 'finished', `runs list: ui-check ${runStatus}`);
    await page.click('#runs-table tr[data-run=ui-check] input[type=checkbox]');
    await page.waitForFunction(() => document.querySelector('#compare-chart-acc')?.dataset.points === '2');

    // Mistakes: the matrix, every image classified, a cell's images.
    await page.click('nav button[data-tab=mistakes]');
    await page.waitForSelector('#confusion td.cell');
    await page.click('#evaluate-all');
    await page.waitForFunction(() => /images from/.test(document.querySelector('#evaluate-status')?.textContent ?? ''), null, { timeout: 120_000 });
    const cell = await page.$$eval('#confusion td.cell', (cells) => {
      const c = cells.find((td) => Number(td.textContent) > 0)!;
      return { t: c.dataset.true, p: c.dataset.pred, n: Number(c.textContent) };
    });
    await page.click(`#confusion td.cell[data-true="${cell.t}"][data-pred="${cell.p}"]`);
    await page.waitForFunction((n) => {
      const imgs = [...document.querySelectorAll('#cell-images img')];
      return imgs.length === n && imgs.every((i) => i.complete && i.naturalWidth > 0);
    }, cell.n);
    check(true, `confusion cell (true ${cell.t}, predicted ${cell.p}) opens its ${cell.n} images`);
    check(!(await page.isHidden('#roc-chart canvas').catch(() => true)), 'ROC curve drawn');
    await page.screenshot({ path: join(shots, 'mistakes.png') });

    // Try it: an upload, its probabilities against graft predict's, and the heatmap.
    const image = join(data, 'validation', 'dogs', (await readdir(join(data, 'validation', 'dogs'))).sort()[0]!);
    await page.click('nav button[data-tab=try]');
    await page.waitForSelector('#try-run option', { state: 'attached' });
    await page.setInputFiles('#try-file', image);
    await page.waitForSelector('td.prob', { timeout: 120_000 });
    const shown = await page.$$eval('td.prob', (tds) => tds.map((td) => Number(td.dataset.value)));
    const expected = await predictJson(join(runs, 'ui-check'), image);
    const diff = Math.max(...expected.map((p, i) => Math.abs(p - shown[i]!)));
    check(shown.length === 2 && diff <= TOLERANCE, `probabilities shown ${shown.map((p) => p.toFixed(6)).join(', ')} vs graft predict ${expected.map((p) => p.toFixed(6)).join(', ')} (max diff ${diff.toExponential(1)})`);
    await page.waitForFunction(() => (document.querySelector('img.heatmap')?.naturalWidth ?? 0) > 0);
    check(true, 'heatmap shown');
    await page.screenshot({ path: join(shots, 'try.png') });
    // The README's picture: small.
    await sharp(join(shots, 'try.png')).resize({ width: 960 }).png({ palette: true, quality: 80 }).toFile(join(shots, 'ui-small.png'));

    const busyRss = rssMb(child.pid!);
    console.log(`graft ui RSS after all of it (models loaded): ${busyRss} MB`);
    console.log(`screenshots in ${shots}`);
  } finally {
    await browser.close();
    child.kill('SIGINT');
    await new Promise((r) => child.once('exit', r));
    await rm(work, { recursive: true, force: true });
  }
  if (failures.length > 0) {
    console.error(`check:ui failed: ${failures.join('; ')}`);
    return 1;
  }
  console.log('check:ui passed');
  return 0;
}

process.exitCode = await main();
