import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import sharp from 'sharp';
import {
  IDENTITY_TRANSFORM,
  LAB_AUGMENTATION,
  affineMatrix,
  applyTransform,
  fromKerasOptions,
  randomTransform,
  type AugmentConfig,
  type FillMode,
  type TransformParams,
} from '../src/data/augment.js';
import { AugmentPool, sharedFloat32, sharedPackedImages } from '../src/data/augment-pool.js';
import { augmentPreview } from '../src/data/augment-preview.js';
import { preprocessParams } from '../src/data/preprocess.js';
import { GraftError } from '../src/util/errors.js';
import { Random } from '../src/util/random.js';

const N = 10;
// Linear in (row, col) per channel, so bilinear sampling inside the image returns the linear
// function itself at the sampled coordinate: expected values follow from the coordinate alone.
const R = (y: number, x: number) => 10 * y + x;
const G = (y: number, x: number) => 200 - 10 * x - y;
const B = (y: number, _x: number) => 5 * y + 20;

function gradient(h = N, w = N): Uint8Array {
  const img = new Uint8Array(h * w * 3);
  for (let r = 0; r < h; r++) {
    for (let c = 0; c < w; c++) {
      img[(r * w + c) * 3] = R(r, c);
      img[(r * w + c) * 3 + 1] = G(r, c);
      img[(r * w + c) * 3 + 2] = B(r, c);
    }
  }
  return img;
}

function params(p: Partial<TransformParams>): TransformParams {
  return { ...IDENTITY_TRANSFORM, ...p };
}

function run(img: Uint8Array, p: Partial<TransformParams>, fillMode: FillMode = 'nearest', cval = 0, h = N, w = N): Float32Array {
  const out = new Float32Array(h * w * 3).fill(NaN);
  applyTransform(img, h, w, params(p), { fillMode, cval }, out, 0, { scale: 1, offset: 0 });
  return out;
}

const at = (out: Float32Array, r: number, c: number, ch = 0, w = N) => out[(r * w + c) * 3 + ch]!;

function near(actual: number, expected: number, what: string, tol = 1e-4): void {
  assert.ok(Math.abs(actual - expected) <= tol, `${what}: expected ${expected}, found ${actual}`);
}

/** Asserts every pixel of out against expected(r, c) -> [row, col] of the input sampled (linear image). */
function expectSampled(out: Float32Array, coord: (r: number, c: number) => [number, number], what: string): void {
  for (let r = 0; r < N; r++) {
    for (let c = 0; c < N; c++) {
      const [y, x] = coord(r, c);
      near(at(out, r, c, 0), R(y, x), `${what} R(${r},${c})`);
      near(at(out, r, c, 1), G(y, x), `${what} G(${r},${c})`);
      near(at(out, r, c, 2), B(y, x), `${what} B(${r},${c})`);
    }
  }
}

test('identity transform reproduces the input exactly, with the fused scale/offset', () => {
  const img = gradient();
  const out = run(img, {});
  assert.deepEqual(Array.from(out), Array.from(img));
  const scaled = new Float32Array(img.length + 5);
  applyTransform(img, N, N, IDENTITY_TRANSFORM, LAB_AUGMENTATION, scaled, 5, preprocessParams('inception'));
  for (let i = 0; i < img.length; i++) assert.equal(scaled[5 + i], Math.fround(img[i]! / 127.5 - 1));
});

test('90-degree rotation turns the image CLOCKWISE as displayed: out[r][c] = in[9-c][r]', () => {
  // Keras's rotation [[cos, -sin], [sin, cos]] on (row, col), centred at (4.5, 4.5), maps OUTPUT to
  // INPUT: in = (9 - c, r). So the input's top row (in row 0) lands in the output's right column.
  const out = run(gradient(), { theta: 90 });
  expectSampled(out, (r, c) => [9 - c, r], 'rot90');
  // Spot check of the direction with plain numbers: top-left input pixel (R=0) is now top-right.
  near(at(out, 0, 9), 0, 'top-left goes to top-right');
  near(at(out, 9, 9), 9, 'top-right goes to bottom-right');
});

test('a 2-pixel shift: tx moves rows (content goes up), ty moves columns (content goes left)', () => {
  const img = gradient();
  // out[r][c] = in[r + 2][c]; rows 8, 9 read past the edge and are clamped ('nearest') to row 9.
  expectSampled(run(img, { tx: 2 }), (r, c) => [Math.min(r + 2, 9), c], 'tx=2');
  expectSampled(run(img, { ty: 2 }), (r, c) => [r, Math.min(c + 2, 9)], 'ty=2');
  expectSampled(run(img, { tx: -2, ty: 2 }), (r, c) => [Math.max(r - 2, 0), Math.min(c + 2, 9)], 'tx=-2, ty=2');
});

test('horizontal and vertical flips (after the affine step)', () => {
  const img = gradient();
  expectSampled(run(img, { flipHorizontal: true }), (r, c) => [r, 9 - c], 'flip h');
  expectSampled(run(img, { flipVertical: true }), (r, c) => [9 - r, c], 'flip v');
  // Flip composed with a shift: the shift is applied first, then the result is mirrored.
  expectSampled(run(img, { ty: 2, flipHorizontal: true }), (r, c) => [r, Math.min(9 - c + 2, 9)], 'shift then flip');
});

test('zoom zx = zy = 2 is a 2x zoom OUT (the matrix maps output to input)', () => {
  // in = 2 * (out - 4.5) + 4.5 = 2 * out - 4.5: output rows 3..6 cover input rows 1.5..7.5; the
  // rest reads outside the image and gets cval in 'constant' mode. The content shrinks.
  const out = run(gradient(), { zx: 2, zy: 2 }, 'constant', 7);
  for (let r = 0; r < N; r++) {
    for (let c = 0; c < N; c++) {
      const y = 2 * r - 4.5;
      const x = 2 * c - 4.5;
      const inside = y >= 0 && y <= 9 && x >= 0 && x <= 9;
      near(at(out, r, c), inside ? R(y, x) : 7, `zoom R(${r},${c})`);
    }
  }
  near(at(out, 3, 3), (R(1, 1) + R(1, 2) + R(2, 1) + R(2, 2)) / 4, 'half-way between four pixels');
  // zx scales rows only.
  expectSampled(run(gradient(), { zx: 0.5 }), (r, c) => [0.5 * r + 2.25, c], 'zx=0.5');
});

test('shear of 30 degrees: in = (r - sin(s)(c - 4.5), cos(s)(c - 4.5) + 4.5)', () => {
  const s = Math.PI / 6;
  const out = run(gradient(), { shear: 30 });
  const coord = (r: number, c: number): [number, number] => [r - Math.sin(s) * (c - 4.5), Math.cos(s) * (c - 4.5) + 4.5];
  const clamp = (v: number) => Math.min(9, Math.max(0, v));
  // Nearest mode: clamping the coordinate equals clamping the taps for a linear image.
  expectSampled(out, (r, c) => coord(r, c).map(clamp) as [number, number], 'shear');
  near(at(out, 5, 3), 10 * 5.75 + (4.5 - 1.5 * Math.cos(s)), 'shear (5,3) by hand');
});

test('matrix composition rotation · shift · shear · zoom, centred', () => {
  const m = affineMatrix(params({ theta: 30, tx: 1, ty: -2, shear: 10, zx: 1.1, zy: 0.9 }), 10, 20);
  const t = Math.PI / 6;
  const s = Math.PI / 18;
  // Linear part: R(t) · Shear(s) · Zoom.
  const l00 = Math.cos(t) * 1.1;
  const l01 = (Math.cos(t) * -Math.sin(s) - Math.sin(t) * Math.cos(s)) * 0.9;
  const l10 = Math.sin(t) * 1.1;
  const l11 = (Math.sin(t) * -Math.sin(s) + Math.cos(t) * Math.cos(s)) * 0.9;
  // Translation: R(t) · (tx, ty) + o - L · o, o = (4.5, 9.5).
  const sx = Math.cos(t) * 1 - Math.sin(t) * -2;
  const sy = Math.sin(t) * 1 + Math.cos(t) * -2;
  const o0 = sx + 4.5 - (l00 * 4.5 + l01 * 9.5);
  const o1 = sy + 9.5 - (l10 * 4.5 + l11 * 9.5);
  const expected = [l00, l01, o0, l10, l11, o1];
  expected.forEach((v, i) => near(m[i]!, v, `matrix[${i}]`, 1e-12));
});

test('bilinear at half-pixel offsets averages the four neighbours', () => {
  // A non-linear 2x2 pattern repeated: values 0, 100 / 40, 60 in R.
  const h = 4;
  const w = 4;
  const img = new Uint8Array(h * w * 3);
  const pat = [0, 100, 40, 60];
  for (let r = 0; r < h; r++) for (let c = 0; c < w; c++) img[(r * w + c) * 3] = pat[(r % 2) * 2 + (c % 2)]!;
  const out = run(img, { tx: 0.5, ty: 0.5 }, 'nearest', 0, h, w);
  near(at(out, 0, 0, 0, w), 50, 'mean of 0,100,40,60');
  near(at(out, 1, 1, 0, w), 50, 'same at (1,1)');
  // Quarter offsets: weights 0.75/0.25.
  const q = run(img, { tx: 0.25 }, 'nearest', 0, h, w);
  near(at(q, 0, 0, 0, w), 0.75 * 0 + 0.25 * 40, 'quarter row offset');
  near(at(q, 0, 1, 0, w), 0.75 * 100 + 0.25 * 60, 'quarter row offset, col 1');
});

test("fill 'nearest' clamps the taps", () => {
  // ty = -2.5: column c reads input column c - 2.5.
  const out = run(gradient(), { ty: -2.5 }, 'nearest');
  for (let r = 0; r < N; r++) {
    for (const [c, x] of [[0, 0], [1, 0], [2, 0], [3, 0.5], [9, 6.5]] as const) near(at(out, r, c), R(r, x), `nearest (${r},${c})`);
  }
});

test("fill 'constant': cval outside [0, n-1], no blending with cval (scipy 'constant', not 'grid-constant')", () => {
  const left = run(gradient(), { ty: -2.5 }, 'constant', 7);
  for (let r = 0; r < N; r++) {
    near(at(left, r, 0), 7, 'x=-2.5');
    near(at(left, r, 2), 7, 'x=-0.5 is cval, not a blend');
    near(at(left, r, 2, 1), 7, 'every channel gets cval');
    near(at(left, r, 3), R(r, 0.5), 'x=0.5');
  }
  const right = run(gradient(), { ty: 1 }, 'constant', 7);
  for (let r = 0; r < N; r++) {
    near(at(right, r, 8), R(r, 9), 'x = n-1 exactly is inside');
    near(at(right, r, 9), 7, 'x = n is cval');
  }
});

test("fill 'reflect': half-sample symmetric (d c b a | a b c d | d c b a)", () => {
  const left = run(gradient(), { ty: -2.5 }, 'reflect');
  const right = run(gradient(), { ty: 2.5 }, 'reflect');
  for (let r = 0; r < N; r++) {
    // x = -2.5 sits between ext[-3] = a2 and ext[-2] = a1; -1.5 between a1 and a0; -0.5 between a0 and a0.
    near(at(left, r, 0), R(r, 1.5), 'x=-2.5');
    near(at(left, r, 1), R(r, 0.5), 'x=-1.5');
    near(at(left, r, 2), R(r, 0), 'x=-0.5');
    // x = 9.5 between a9 and ext[10] = a9; 10.5 between a9 and a8; 11.5 between a8 and a7.
    near(at(right, r, 7), R(r, 9), 'x=9.5');
    near(at(right, r, 8), R(r, 8.5), 'x=10.5');
    near(at(right, r, 9), R(r, 7.5), 'x=11.5');
  }
});

test("fill 'wrap': scipy's 'wrap' (period n-1, first and last samples overlap), not 'grid-wrap'", () => {
  const left = run(gradient(), { ty: -2.5 }, 'wrap');
  const right = run(gradient(), { ty: 2.5 }, 'wrap');
  for (let r = 0; r < N; r++) {
    // x -> x + 9 for x < 0: -2.5 -> 6.5, -0.5 -> 8.5 (grid-wrap would blend a9 and a0 there).
    near(at(left, r, 0), R(r, 6.5), 'x=-2.5');
    near(at(left, r, 2), R(r, 8.5), 'x=-0.5');
    near(at(left, r, 3), R(r, 0.5), 'x=0.5');
    // x -> x - 9 for x > 9: 9.5 -> 0.5, 11.5 -> 2.5.
    near(at(right, r, 6), R(r, 8.5), 'x=8.5');
    near(at(right, r, 7), R(r, 0.5), 'x=9.5');
    near(at(right, r, 9), R(r, 2.5), 'x=11.5');
  }
});

test('matches scipy.ndimage.affine_transform(order=1) in every fill mode (fixture made with scipy)', () => {
  // test/fixtures/augment-scipy.json comes from tools/augment-scipy-fixture.py: Keras's matrix and
  // flips around scipy's resampling, on a random 9x8 image, values rounded to 4 decimals.
  const f = JSON.parse(readFileSync(new URL('./fixtures/augment-scipy.json', import.meta.url), 'utf8')) as {
    scipy: string; h: number; w: number; image: number[];
    cases: { fillMode: FillMode; cval: number; params: TransformParams; out: number[] }[];
  };
  const img = Uint8Array.from(f.image);
  assert.equal(f.cases.length, 20);
  for (const c of f.cases) {
    const out = new Float32Array(f.h * f.w * 3);
    applyTransform(img, f.h, f.w, c.params, c, out, 0, { scale: 1, offset: 0 });
    for (let i = 0; i < out.length; i++) near(out[i]!, c.out[i]!, `scipy ${f.scipy} ${c.fillMode} ${JSON.stringify(c.params)} [${i}]`, 1e-4);
  }
});

test('randomTransform draws Keras ranges; zero ranges draw nothing', () => {
  const rng = new Random(11);
  let flips = 0;
  for (let i = 0; i < 2000; i++) {
    const p = randomTransform(LAB_AUGMENTATION, rng, 150, 100);
    assert.ok(Math.abs(p.theta) <= 40);
    assert.ok(Math.abs(p.tx) <= 0.2 * 150, 'tx is a row shift, scaled by the height');
    assert.ok(Math.abs(p.ty) <= 0.2 * 100, 'ty is a column shift, scaled by the width');
    assert.ok(Math.abs(p.shear) <= 0.2);
    assert.ok(p.zx >= 0.8 && p.zx <= 1.2 && p.zy >= 0.8 && p.zy <= 1.2);
    assert.notEqual(p.zx, p.zy, 'zx and zy are drawn independently');
    assert.equal(p.flipVertical, false);
    if (p.flipHorizontal) flips++;
  }
  assert.ok(flips > 850 && flips < 1150, `about half flipped, found ${flips}`);
  const none = randomTransform(fromKerasOptions({}), new Random(1), 10, 10);
  assert.deepEqual(none, IDENTITY_TRANSFORM);
  // Pixel shifts (>= 1) and Keras's array form (random element, random sign).
  const cfg: AugmentConfig = { ...LAB_AUGMENTATION, rotationRange: 0, widthShiftRange: 3, heightShiftRange: [0, 1, 2] };
  const seen = new Set<number>();
  for (let i = 0; i < 300; i++) {
    const p = randomTransform(cfg, rng, 150, 150);
    assert.ok(Math.abs(p.ty) <= 3);
    seen.add(p.tx);
  }
  assert.deepEqual([...seen].sort((a, b) => a - b), [-2, -1, 0, 1, 2]);
});

test('fromKerasOptions: lab options give LAB_AUGMENTATION; bad values are GraftErrors', () => {
  const lab = fromKerasOptions({
    rotation_range: 40, width_shift_range: 0.2, height_shift_range: 0.2, shear_range: 0.2,
    zoom_range: 0.2, horizontal_flip: true, fill_mode: 'nearest',
  });
  assert.deepEqual(lab, { ...LAB_AUGMENTATION });
  assert.throws(() => fromKerasOptions({ fill_mode: 'mirror' }), (e: unknown) => e instanceof GraftError && /fill_mode/.test(e.message));
  assert.throws(() => fromKerasOptions({ zoom_range: [1] as unknown as [number, number] }), GraftError);
});

test('seeded: same seed gives the same parameters and pixels; another seed differs', () => {
  const h = 32;
  const w = 24;
  const img = new Uint8Array(h * w * 3);
  const fill = new Random(3);
  for (let i = 0; i < img.length; i++) img[i] = fill.int(256);
  const draw = (seed: number) => {
    const rng = new Random(seed);
    const ps = Array.from({ length: 4 }, () => randomTransform(LAB_AUGMENTATION, rng, h, w));
    const out = new Float32Array(4 * h * w * 3);
    ps.forEach((p, k) => applyTransform(img, h, w, p, LAB_AUGMENTATION, out, k * h * w * 3, preprocessParams('rescale')));
    return { ps, out };
  };
  const a = draw(42);
  const b = draw(42);
  const c = draw(43);
  assert.deepEqual(a.ps, b.ps);
  assert.deepEqual(a.out, b.out);
  assert.notDeepEqual(a.ps, c.ps);
  assert.notDeepEqual(a.out, c.out);
  for (const v of a.out) assert.ok(v >= 0 && v <= 1, 'rescaled values stay in [0, 1] with nearest fill');
});

test('the worker pool gives bit-identical output to the single-threaded path', async () => {
  const h = 40;
  const w = 30;
  const size = h * w * 3;
  const fill = new Random(9);
  const views = Array.from({ length: 7 }, () => {
    const v = new Uint8Array(size);
    for (let i = 0; i < size; i++) v[i] = fill.int(256);
    return v;
  });
  const rng = new Random(5);
  const indices = [6, 0, 3, 3, 1, 5, 2, 4, 0];
  const cfg: AugmentConfig = { ...LAB_AUGMENTATION, fillMode: 'reflect', verticalFlip: true };
  const ps = indices.map(() => randomTransform(cfg, rng, h, w));
  const pre = preprocessParams('inception');
  const expected = new Float32Array(indices.length * size);
  indices.forEach((i, k) => applyTransform(views[i]!, h, w, ps[k]!, cfg, expected, k * size, pre));

  const pool = AugmentPool.create({ threads: 2 });
  try {
    const out = sharedFloat32(indices.length * size + 3);
    await pool.augmentBatch(sharedPackedImages(views, h, w), indices, ps, out, { fillMode: cfg.fillMode, cval: cfg.cval, pre, outOffset: 3 });
    assert.deepEqual(out.subarray(3), expected);
    const out2 = sharedFloat32(indices.length * size);
    await pool.augmentBatch({ views, h, w }, indices, ps, out2, { fillMode: cfg.fillMode, cval: cfg.cval, pre });
    assert.deepEqual(out2, expected);
    const out3 = sharedFloat32(indices.length * size);
    await pool.augmentBatch({ views, h, w }, indices, ps, out3, { fillMode: cfg.fillMode, cval: cfg.cval, pre, useCallingThread: true });
    assert.deepEqual(out3, expected);
    await assert.rejects(pool.augmentBatch({ views, h, w }, [9], [ps[0]!], out2, { fillMode: 'nearest', cval: 0, pre }), GraftError);
  } finally {
    await pool.close();
  }
});

test('preprocess presets: rescale and inception; unknown names are GraftErrors', () => {
  assert.deepEqual(preprocessParams('rescale'), { scale: 1 / 255, offset: 0 });
  const inc = preprocessParams('inception');
  near(0 * inc.scale + inc.offset, -1, 'inception 0');
  near(255 * inc.scale + inc.offset, 1, 'inception 255');
  assert.throws(() => preprocessParams('caffe'), (e: unknown) => e instanceof GraftError && /rescale, inception/.test(e.message));
});

test('augmentPreview writes a PNG grid: the original first, then n tiles', async () => {
  const img = gradient();
  const png = await augmentPreview(img, N, N, LAB_AUGMENTATION, 3, 1, { gap: 2 });
  const { data, info } = await sharp(png).raw().toBuffer({ resolveWithObject: true });
  // 4 tiles -> 2 x 2 grid: 2*10 + 3*2 = 26 pixels square.
  assert.equal(info.width, 26);
  assert.equal(info.height, 26);
  assert.equal(info.channels, 3);
  for (let r = 0; r < N; r++) {
    for (let c = 0; c < N; c++) {
      const d = ((2 + r) * 26 + 2 + c) * 3;
      assert.deepEqual([data[d], data[d + 1], data[d + 2]], [R(r, c), G(r, c), B(r, c)], 'first tile is the original');
    }
  }
  assert.deepEqual([data[0], data[1], data[2]], [255, 255, 255], 'gaps are white');
});

test('graft augment-preview DIR --out FILE.png: first image of the folder, grid PNG; bad paths are one-line errors', async () => {
  const { mkdtemp, mkdir, rm, readFile: readFileBytes, writeFile: writeFileText } = await import('node:fs/promises');
  const { tmpdir } = await import('node:os');
  const { join } = await import('node:path');
  const { runGraft } = await import('./support/cli.js');
  const dir = await mkdtemp(join(tmpdir(), 'graft-augment-'));
  try {
    await mkdir(join(dir, 'cats'));
    await sharp(Buffer.from(gradient(20, 30)), { raw: { width: 30, height: 20, channels: 3 } }).png().toFile(join(dir, 'cats', 'a.png'));
    const out = join(dir, 'preview.png');
    const preview = await runGraft('augment-preview', dir, '--out', out, '--n', '2', '--seed', '4', '--size', '50');
    assert.equal(preview.code, 0);
    const meta = await sharp(out).metadata();
    // 3 tiles of 50x50 -> 2 x 2 grid with 4-pixel gaps: 2*50 + 3*4 = 112.
    assert.equal(meta.width, 112);
    assert.equal(meta.height, 112);
    const missing = await runGraft('augment-preview', join(dir, 'missing'), '--out', out);
    assert.equal(missing.code, 1);
    assert.match(missing.err, /cannot read .*missing: no such file or folder/);
    // The image shown is never written over, and the preview is a .png.
    const input = join(dir, 'cats', 'a.png');
    const before = await readFileBytes(input);
    const self = await runGraft('augment-preview', input, '--out', input);
    assert.equal(self.code, 1);
    assert.match(self.err, /^graft: error: --out .*a\.png is the image being previewed; choose another file name$/m);
    assert.ok((await readFileBytes(input)).equals(before));
    const jpg = await runGraft('augment-preview', input, '--out', join(dir, 'preview.jpg'));
    assert.equal(jpg.code, 1);
    assert.match(jpg.err, /--out .*preview\.jpg: the preview is a PNG image; give a file name ending in \.png/);
    // A folder whose first image is unreadable: the next readable one is shown, the bad one named.
    await writeFileText(join(dir, 'cats', '0-broken.png'), 'not a png');
    const skipping = await runGraft('augment-preview', dir, '--out', out, '--n', '1', '--size', '50');
    assert.equal(skipping.code, 0, skipping.err);
    assert.match(skipping.err, /warning: skipped .*0-broken\.png: /);
    assert.match(skipping.out, /cats\/a\.png and 1 augmented versions/);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
