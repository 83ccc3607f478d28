import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { copyFile, mkdtemp, mkdir, readdir, readFile, rm, writeFile, symlink } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { crc32 } from 'node:zlib';
import { execFileSync } from 'node:child_process';
import sharp from 'sharp';
import { GraftError } from '../src/util/errors.js';
import { listImageFolder, listImageFiles, listValidationFolder, resolveDataset, classCounts, splitListing } from '../src/data/listing.js';
import { decodeImage, BadImageError, pilNearestIndices } from '../src/data/decode.js';
import { buildImageStore, type BuildStoreOptions } from '../src/data/image-store.js';
import { BatchOrder, batchIndices, encodeLabels, readBatches, stepsPerEpoch } from '../src/data/batches.js';
import { formatDatasetReport, inspectDataset } from '../src/data/inspect.js';
import { sharedLabDataDir } from '../src/util/paths.js';
import { runGraft } from './support/cli.js';

let dir: string;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'graft-data-'));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

const raw = (data: number[], width: number, height: number, channels: 1 | 2 | 3 | 4) =>
  sharp(Buffer.from(data), { raw: { width, height, channels } });

async function expectBad(path: string, pattern: RegExp, opts: { maxPixels?: number } = {}) {
  await assert.rejects(decodeImage(path, { width: 4, height: 4, ...opts }), (err: unknown) => {
    assert.ok(err instanceof BadImageError, String(err));
    assert.ok(err instanceof GraftError);
    assert.match(err.reason, pattern);
    assert.ok(err.message.includes(path));
    return true;
  });
}

/** A real 8x8 PNG whose header is rewritten to claim width x height (CRC fixed). */
async function pngClaiming(width: number, height: number): Promise<Buffer> {
  const b = Buffer.from(await sharp({ create: { width: 8, height: 8, channels: 3, background: 'red' } }).png().toBuffer());
  b.writeUInt32BE(width, 16);
  b.writeUInt32BE(height, 20);
  b.writeUInt32BE(crc32(b.subarray(12, 29)), 29);
  return b;
}

/** A bottom-up BMP (24-bit, or 8-bit with a palette) written by hand. */
function bmp(width: number, height: number, bpp: 24 | 8, rgbRows: number[][], palette: number[][] = []): Buffer {
  const stride = Math.floor((bpp * width + 31) / 32) * 4;
  const paletteBytes = bpp === 8 ? 256 * 4 : 0;
  const offset = 14 + 40 + paletteBytes;
  const buf = Buffer.alloc(offset + stride * height);
  buf.write('BM', 0, 'latin1');
  buf.writeUInt32LE(buf.length, 2);
  buf.writeUInt32LE(offset, 10);
  buf.writeUInt32LE(40, 14);
  buf.writeInt32LE(width, 18);
  buf.writeInt32LE(height, 22);
  buf.writeUInt16LE(1, 26);
  buf.writeUInt16LE(bpp, 28);
  palette.forEach(([r, g, b], i) => buf.set([b!, g!, r!, 0], 54 + i * 4));
  for (let y = 0; y < height; y++) {
    const row = offset + (height - 1 - y) * stride;
    const px = rgbRows[y]!;
    if (bpp === 8) px.forEach((v, x) => (buf[row + x] = v));
    else for (let x = 0; x < width; x++) buf.set([px[x * 3 + 2]!, px[x * 3 + 1]!, px[x * 3]!], row + x * 3);
  }
  return buf;
}

test('nearest resize picks the same pixels as PIL (accumulated scale/2 + k*scale, truncated)', async () => {
  // PIL 12: Image.frombytes('RGB', (2, 1), black, white).resize((7, 1), NEAREST) -> 0,0,0,0,255,255,255
  // and to 15 wide -> 8 black then 7 white. floor((x + 0.5) * in / out) would give 3 and 7 black.
  assert.deepEqual([...pilNearestIndices(2, 7)], [0, 0, 0, 0, 1, 1, 1]);
  assert.deepEqual([...pilNearestIndices(2, 15)], [...new Array(8).fill(0), ...new Array(7).fill(1)]);
  const p = join(dir, 'bw.png');
  await raw([0, 0, 0, 255, 255, 255], 2, 1, 3).png().toFile(p);
  const out = await decodeImage(p, { width: 7, height: 1 });
  assert.deepEqual([...out].filter((_, i) => i % 3 === 0), [0, 0, 0, 0, 255, 255, 255]);

  // A 7x5 pattern shrunk to 3x2 picks columns 1, 3, 5 and rows 1, 3.
  const pattern: number[] = [];
  for (let y = 0; y < 5; y++) for (let x = 0; x < 7; x++) pattern.push(x * 30, y * 50, 7);
  const pp = join(dir, 'pattern.png');
  await raw(pattern, 7, 5, 3).png().toFile(pp);
  const small = await decodeImage(pp, { width: 3, height: 2 });
  const picked = [];
  for (let i = 0; i < 6; i++) picked.push([small[i * 3]! / 30, small[i * 3 + 1]! / 50]);
  assert.deepEqual(picked, [[1, 1], [3, 1], [5, 1], [1, 3], [3, 3], [5, 3]]);
});

test('decodes the formats a dataset holds into RGB HWC', async () => {
  // Alpha is dropped, not composited: the RGB of a fully transparent pixel stays as stored.
  const alpha = join(dir, 'alpha.png');
  await raw([200, 100, 50, 0, 10, 20, 30, 128], 2, 1, 4).png().toFile(alpha);
  assert.deepEqual([...(await decodeImage(alpha, { width: 2, height: 1 }))], [200, 100, 50, 10, 20, 30]);

  const grey = join(dir, 'grey.png');
  await raw([0, 50, 100, 150], 2, 2, 1).png().toFile(grey);
  assert.deepEqual([...(await decodeImage(grey, { width: 2, height: 2 }))], [0, 0, 0, 50, 50, 50, 100, 100, 100, 150, 150, 150]);

  const colours = [255, 0, 0, 0, 255, 0, 0, 0, 255, 255, 255, 0];
  const palette = join(dir, 'palette.png');
  await raw(colours, 2, 2, 3).png({ palette: true, colours: 4, dither: 0 }).toFile(palette);
  assert.equal((await sharp(palette).metadata()).isPalette, true);
  assert.deepEqual([...(await decodeImage(palette, { width: 2, height: 2 }))], colours);

  const png16 = join(dir, 'deep.png');
  await raw([0, 50, 100, 150, 1, 2, 3, 4, 5, 6, 7, 255], 2, 2, 3).toColourspace('rgb16').png().toFile(png16);
  assert.equal((await sharp(png16).metadata()).depth, 'ushort');
  assert.deepEqual([...(await decodeImage(png16, { width: 2, height: 2 }))], [0, 50, 100, 150, 1, 2, 3, 4, 5, 6, 7, 255]);

  const tiff = join(dir, 'img.tiff');
  await raw(colours, 2, 2, 3).tiff({ compression: 'lzw' }).toFile(tiff); // sharp's default TIFF compression is JPEG (lossy)
  assert.deepEqual([...(await decodeImage(tiff, { width: 2, height: 2 }))], colours);

  // Solid colours survive JPEG closely; progressive and baseline decode alike.
  const solid = () => sharp({ create: { width: 16, height: 16, channels: 3, background: { r: 200, g: 40, b: 90 } } });
  const base = join(dir, 'base.jpg');
  const prog = join(dir, 'prog.jpg');
  await solid().jpeg({ quality: 95 }).toFile(base);
  await solid().jpeg({ quality: 95, progressive: true }).toFile(prog);
  assert.equal((await sharp(prog).metadata()).isProgressive, true);
  for (const p of [base, prog]) {
    const px = await decodeImage(p, { width: 8, height: 8 });
    assert.equal(px.length, 8 * 8 * 3);
    assert.ok(Math.abs(px[0]! - 200) <= 3 && Math.abs(px[1]! - 40) <= 3 && Math.abs(px[2]! - 90) <= 3, `${p}: ${px.slice(0, 3)}`);
  }

  // CMYK JPEG comes out as RGB; red stays red.
  const cmyk = join(dir, 'cmyk.jpg');
  await sharp({ create: { width: 8, height: 8, channels: 3, background: { r: 255, g: 0, b: 0 } } }).toColourspace('cmyk').jpeg().toFile(cmyk);
  assert.equal((await sharp(cmyk).metadata()).space, 'cmyk');
  const red = await decodeImage(cmyk, { width: 2, height: 2 });
  assert.ok(red[0]! > 180 && red[1]! < 60 && red[2]! < 60, `cmyk red decoded as ${red.slice(0, 3)}`);

  // A tiny image is upscaled: 2x2 -> 4x4 nearest repeats each pixel in a 2x2 block.
  const up = await decodeImage(palette, { width: 4, height: 4 });
  assert.deepEqual([...up.slice(0, 12)], [255, 0, 0, 255, 0, 0, 0, 255, 0, 0, 255, 0]);
  assert.deepEqual([...up.slice(36, 48)], [0, 0, 255, 0, 0, 255, 255, 255, 0, 255, 255, 0]);

  // BMP (24-bit and 8-bit palette) and PPM, which sharp does not read.
  const bmp24 = join(dir, 'img24.bmp');
  await writeFile(bmp24, bmp(3, 2, 24, [[1, 2, 3, 4, 5, 6, 7, 8, 9], [10, 11, 12, 13, 14, 15, 16, 17, 18]]));
  assert.deepEqual([...(await decodeImage(bmp24, { width: 3, height: 2 }))], [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18]);
  const bmp8 = join(dir, 'img8.bmp');
  await writeFile(bmp8, bmp(2, 2, 8, [[0, 1], [1, 2]], [[255, 0, 0], [0, 255, 0], [9, 8, 7]]));
  assert.deepEqual([...(await decodeImage(bmp8, { width: 2, height: 2 }))], [255, 0, 0, 0, 255, 0, 0, 255, 0, 9, 8, 7]);
  const ppm = join(dir, 'img.ppm');
  await writeFile(ppm, Buffer.concat([Buffer.from('P6\n# comment\n2 1\n255\n'), Buffer.from([1, 2, 3, 4, 5, 6])]));
  assert.deepEqual([...(await decodeImage(ppm, { width: 2, height: 1 }))], [1, 2, 3, 4, 5, 6]);

  // Area (PIL BOX) of a 2x2 block is its mean.
  const mean = await decodeImage(grey, { width: 1, height: 1, interpolation: 'area' });
  assert.deepEqual([...mean], [75, 75, 75]);
});

test('bilinear, box/area, bicubic and lanczos resize give the bytes PIL gives', async () => {
  const p = join(dir, 'five.png');
  const pixels = [0, 10, 20, 50, 60, 70, 100, 110, 120, 200, 210, 220, 255, 1, 2, 9, 8, 7, 30, 40, 50, 90, 80, 70, 130, 140, 150, 250, 240, 230];
  await raw(pixels, 5, 2, 3).png().toFile(p);
  // Pillow 12: Image.frombytes('RGB', (5, 2), pixels).resize(size, filter).tobytes()
  assert.deepEqual([...(await decodeImage(p, { width: 3, height: 1, interpolation: 'bilinear' }))], [20, 27, 33, 99, 103, 107, 215, 144, 146]);
  assert.deepEqual([...(await decodeImage(p, { width: 3, height: 1, interpolation: 'area' }))], [23, 30, 37, 95, 95, 95, 209, 148, 151]);
  const up = await decodeImage(p, { width: 7, height: 3, interpolation: 'bilinear' });
  assert.deepEqual([...up.subarray(0, 21)], [0, 10, 20, 29, 39, 49, 64, 74, 84, 100, 110, 120, 171, 181, 191, 224, 120, 127, 255, 1, 2]);
  assert.deepEqual([...(await decodeImage(p, { width: 3, height: 1, interpolation: 'bicubic' }))], [16, 22, 29, 96, 106, 111, 220, 147, 149]);
  const lz = await decodeImage(p, { width: 8, height: 3, interpolation: 'lanczos' });
  assert.deepEqual([...lz.subarray(0, 24)], [0, 6, 18, 16, 27, 38, 55, 66, 76, 82, 85, 97, 130, 169, 181, 203, 226, 237, 246, 74, 79, 255, 0, 0]);
});

test('EXIF orientation is ignored by default (like Keras) and honoured on request', async () => {
  // Stored 2 wide x 1 high: red, blue. Orientation 6 means "rotate 90 clockwise to display".
  const p = join(dir, 'rotated.jpg');
  // 16x8 blocks so JPEG's chroma subsampling keeps the colours apart.
  const px: number[] = [];
  for (let y = 0; y < 8; y++) for (let x = 0; x < 16; x++) px.push(...(x < 8 ? [255, 0, 0] : [0, 0, 255]));
  await raw(px, 16, 8, 3).jpeg({ quality: 100 }).withMetadata({ orientation: 6 }).toFile(p);
  assert.equal((await sharp(p).metadata()).orientation, 6);
  const stored = await decodeImage(p, { width: 2, height: 1 });
  assert.ok(stored[0]! > 200 && stored[2]! < 50 && stored[5]! > 200 && stored[3]! < 50, `stored: red left, blue right: ${stored}`);
  const shown = await decodeImage(p, { width: 1, height: 2, orientation: 'exif' });
  assert.ok(shown[0]! > 200 && shown[2]! < 50 && shown[5]! > 200 && shown[3]! < 50, `rotated: red on top, blue below: ${shown}`);
});

test('bad files are refused with a reason', async () => {
  const empty = join(dir, 'empty.jpg');
  await writeFile(empty, '');
  await expectBad(empty, /empty file/);
  const text = join(dir, 'notes.jpg');
  await writeFile(text, 'these are my notes about the cats\n');
  await expectBad(text, /text file/);
  const html = join(dir, 'page.png');
  await writeFile(html, '<!DOCTYPE html>\n<html><head><title>cat</title></head></html>');
  await expectBad(html, /HTML/);
  const full = await sharp({ create: { width: 64, height: 64, channels: 3, background: 'red' } }).jpeg().toBuffer();
  const trunc = join(dir, 'truncated.jpg');
  await writeFile(trunc, full.subarray(0, Math.floor(full.length / 2)));
  await expectBad(trunc, /truncated|corrupt/);
  const huge = join(dir, 'huge.png');
  await writeFile(huge, await pngClaiming(12_000, 10_000)); // 120 MP, over the 100 MP default
  await expectBad(huge, /too many pixels: 12000x10000 is over the limit of 100000000/);
  await expectBad(join(dir, 'alpha.png'), /too many pixels/, { maxPixels: 1 });
  await expectBad(join(dir, 'missing.png'), /unreadable: no such file/);
  // An iPhone's HEIC is named as such (under any extension); AVIF decodes.
  const heic = join(dir, 'phone.jpg');
  await writeFile(heic, Buffer.concat([Buffer.from([0, 0, 0, 24]), Buffer.from('ftypheic\0\0\0\0mif1heic', 'latin1'), Buffer.alloc(64)]));
  await expectBad(heic, /^a HEIC\/HEIF image \(as iPhones take\), which graft cannot decode: convert it to JPEG or PNG$/);
  const avif = join(dir, 'x.avif');
  await sharp({ create: { width: 4, height: 3, channels: 3, background: { r: 200, g: 10, b: 10 } } }).avif({ lossless: true }).toFile(avif);
  const img = await decodeImage(avif, { width: 4, height: 3 });
  assert.deepEqual([...img.subarray(0, 3)], [200, 10, 10]);
  // An AVIF may name 'mif1' first and 'avif' among its compatible brands: still AVIF, not HEIC.
  const mif1 = Buffer.from(await readFile(avif));
  mif1.write('mif1', 8, 'latin1');
  await writeFile(join(dir, 'mif1.avif'), mif1);
  assert.deepEqual([...(await decodeImage(join(dir, 'mif1.avif'), { width: 4, height: 3 })).subarray(0, 3)], [200, 10, 10]);
});

/** cats: 3 images + a note; dogs: nested folders; empty/: nothing; .hidden/: not a class. */
async function makeClassTree(root: string): Promise<void> {
  const px = (v: number) => raw([v, v, v, v, v, v, v, v, v, v, v, v], 2, 2, 3);
  await mkdir(join(root, 'cats'), { recursive: true });
  await mkdir(join(root, 'dogs', 'sub', 'deeper'), { recursive: true });
  await mkdir(join(root, 'dogs', 'sub-b'), { recursive: true });
  await mkdir(join(root, 'empty'), { recursive: true });
  await mkdir(join(root, '.hidden'), { recursive: true });
  await px(10).png().toFile(join(root, 'cats', 'a.jpg.png'));
  await px(20).png().toFile(join(root, 'cats', 'B.PNG'));
  await px(30).jpeg().toFile(join(root, 'cats', 'c.JPEG'));
  await writeFile(join(root, 'cats', 'notes.txt'), 'x');
  await px(40).png().toFile(join(root, 'dogs', 'z.png'));
  await px(50).png().toFile(join(root, 'dogs', 'sub', 'a.png'));
  await px(60).png().toFile(join(root, 'dogs', 'sub', 'deeper', 'a.png'));
  await px(70).png().toFile(join(root, 'dogs', 'sub-b', 'a.png'));
  await px(80).png().toFile(join(root, '.hidden', 'x.png'));
}

test('listing follows Keras: sorted classes, os.walk folders sorted by path, files sorted', async () => {
  const root = join(dir, 'tree');
  await makeClassTree(root);
  const l = await listImageFolder(root);
  assert.deepEqual(l.classes, ['cats', 'dogs', 'empty']);
  const rel = l.files.map((f) => [f.path.slice(root.length + 1), f.label]);
  assert.deepEqual(rel, [
    ['cats/B.PNG', 0], // upper case sorts first, as in Python
    ['cats/a.jpg.png', 0],
    ['cats/c.JPEG', 0],
    ['dogs/z.png', 1],
    ['dogs/sub/a.png', 1],
    ['dogs/sub-b/a.png', 1], // "sub-b" < "sub/deeper" because '-' < '/'
    ['dogs/sub/deeper/a.png', 1],
  ]);
  assert.equal(l.ignoredCount, 1);
  assert.deepEqual(l.ignoredExamples, [join(root, 'cats', 'notes.txt')]);
  // graft data names what it ignored (a lone .DS_Store, say), not just how many.
  assert.match(formatDatasetReport(await inspectDataset(root, { decode: false })), new RegExp(`^1 file ignored for its extension \\(not \\.png .*\\): ${join(root, 'cats', 'notes.txt')}$`, 'm'));
  assert.ok(l.warnings.some((w) => w.includes(join(root, 'empty')) && /no images/.test(w)));
  assert.ok(l.warnings.some((w) => w.includes('.hidden')));
  assert.deepEqual(classCounts(l), [3, 4, 0]);
  // Explicit classes fix the label order.
  const l2 = await listImageFolder(root, { classes: ['dogs', 'cats'] });
  assert.equal(l2.files[0]!.label, 0);
  assert.ok(l2.files[0]!.path.includes('dogs'));
});

test('pictures in formats Keras does not read are left out, and the listing says which', async () => {
  const root = join(dir, 'formats');
  const px = (v: number) => raw([v, v, v, v, v, v, v, v, v, v, v, v], 2, 2, 3);
  await mkdir(join(root, 'cats', 'sub'), { recursive: true });
  await mkdir(join(root, 'dogs'), { recursive: true });
  await px(10).png().toFile(join(root, 'cats', 'a.png'));
  await px(20).webp().toFile(join(root, 'cats', 'b.webp'));
  await px(30).webp().toFile(join(root, 'cats', 'sub', 'c.WEBP'));
  await px(40).gif().toFile(join(root, 'dogs', 'd.gif'));
  await px(50).jpeg().toFile(join(root, 'dogs', 'e.jpg'));
  await writeFile(join(root, 'dogs', 'notes.txt'), 'not a picture');
  const l = await listImageFolder(root);
  assert.deepEqual(l.files.map((f) => f.path.slice(root.length + 1)), ['cats/a.png', 'dogs/e.jpg']);
  assert.equal(l.ignoredCount, 4);
  const warning = l.warnings.find((w) => w.includes('ignored'));
  assert.ok(warning, `warnings: ${l.warnings.join(' | ')}`);
  assert.match(warning, /3 images in .* ignored \(2 \.webp, 1 \.gif\)/);
  assert.doesNotMatch(warning, /txt/);
  // For prediction every decodable format is listed (the .txt stays out).
  const all = await listImageFiles(root, { allFormats: true, onWarning: () => assert.fail('nothing is left out') });
  assert.equal(all.length, 5);
  assert.ok(all.some((f) => f.endsWith('.gif')) && all.filter((f) => f.toLowerCase().endsWith('.webp')).length === 2);
  // What even prediction cannot read is named with what it can.
  await mkdir(join(dir, 'formats-heic'), { recursive: true });
  await writeFile(join(dir, 'formats-heic', 'x.heic'), 'not decoded here');
  const heic: string[] = [];
  assert.deepEqual(await listImageFiles(join(dir, 'formats-heic'), { allFormats: true, onWarning: (l) => heic.push(l) }), []);
  assert.match(heic[0]!, /1 image in .*formats-heic ignored \(1 \.heic\): graft reads \.png .*\.tiff \.webp \.gif \.avif .*; convert them/);
  // Keras's formats only: the rest is left out with a warning.
  const lines: string[] = [];
  const files = await listImageFiles(join(root, 'cats'), { onWarning: (line) => lines.push(line) });
  assert.deepEqual(files.map((f) => f.slice(root.length + 1)), ['cats/a.png']);
  assert.equal(lines.length, 1);
  assert.match(lines[0]!, /2 images in .*cats ignored \(2 \.webp\)/);
  // Only ordinary non-image files: nothing to say.
  const quiet = await listImageFiles(join(root, 'dogs'), { onWarning: (line) => lines.push(line) });
  assert.equal(quiet.length, 1);
  assert.equal(lines.length, 2); // the .gif, not the .txt
  assert.match(lines[1]!, /1 image in .*dogs ignored \(1 \.gif\)/);
});

test('symlink loops do not hang, broken links are skipped with a reason', async () => {
  const root = join(dir, 'links');
  await makeClassTree(root);
  await symlink(join(root, 'dogs'), join(root, 'dogs', 'sub', 'loop'));
  await symlink(join(root, 'nowhere.png'), join(root, 'cats', 'broken.png'));
  execFileSync('mkfifo', [join(root, 'dogs', 'pipe.jpg')]);
  const plain = await listImageFolder(root);
  assert.equal(plain.files.length, 7); // folder links not followed by default, like Keras
  assert.deepEqual(plain.skipped.map((s) => [s.path.slice(root.length + 1), s.reason]), [
    ['cats/broken.png', 'broken symbolic link'],
    ['dogs/pipe.jpg', 'not a regular file'],
  ]);
  await expectBad(join(root, 'dogs', 'pipe.jpg'), /not a regular file/);
  await expectBad(join(root, 'dogs'), /^a folder, not an image file$/);
  const followed = await listImageFolder(root, { followSymlinks: true });
  assert.equal(followed.files.length, 7);
  assert.ok(followed.skipped.some((s) => s.path.endsWith('loop') && /already visited/.test(s.reason)));
});

test("a Mac's zip: __MACOSX and ._ files are left out with one warning; linked folders not followed are named", async () => {
  const root = join(dir, 'mac-zip');
  await makeClassTree(root);
  await mkdir(join(root, '__MACOSX', 'cats'), { recursive: true });
  await writeFile(join(root, '__MACOSX', 'cats', '._B.PNG'), 'AppleDouble');
  await writeFile(join(root, 'cats', '._B.PNG'), 'AppleDouble');
  await writeFile(join(root, 'dogs', 'sub', '._a.png'), 'AppleDouble');
  const outside = join(dir, 'mac-zip-outside');
  await mkdir(outside, { recursive: true });
  for (const v of [1, 2, 3]) await raw([v, v, v, v, v, v, v, v, v, v, v, v], 2, 2, 3).png().toFile(join(outside, `o${v}.png`));
  await symlink(outside, join(root, 'dogs', 'linked'));
  const l = await listImageFolder(root);
  assert.deepEqual(l.classes, ['cats', 'dogs', 'empty']);
  assert.equal(l.files.length, 7);
  assert.deepEqual(l.skipped, []);
  assert.ok(l.warnings.includes(`folders in ${root} that are not classes: .hidden (hidden), __MACOSX (macOS metadata)`), l.warnings.join(' | '));
  assert.ok(l.warnings.includes(`2 macOS metadata entries (._ files, __MACOSX folders) in ${root} left out: not images`), l.warnings.join(' | '));
  assert.ok(l.warnings.some((w) => w.startsWith(`1 linked folder not followed, as Keras does not (${join(root, 'dogs', 'linked')})`)), l.warnings.join(' | '));
  // Followed on request: the link's images count, and nothing is said of it.
  const followed = await listImageFolder(root, { followSymlinks: true });
  assert.equal(followed.files.length, 10);
  assert.ok(!followed.warnings.some((w) => /linked folder/.test(w)));
  // graft data warns of a class whose listed images all fail, and flags validation with none readable.
  const split = join(dir, 'bad-class');
  await mkdir(join(split, 'cats'), { recursive: true });
  await mkdir(join(split, 'dogs'), { recursive: true });
  const px = (v: number) => raw([v, v, v, v, v, v, v, v, v, v, v, v], 2, 2, 3);
  for (let i = 0; i < 4; i++) {
    await px(10 + i).png().toFile(join(split, 'dogs', `d${i}.png`));
    if (i === 0) await writeFile(join(split, 'cats', 'c0.png'), 'not a picture');
    else await px(50 + i).png().toFile(join(split, 'cats', `c${i}.png`));
  }
  const report = await inspectDataset(split, { validationSplit: 0.25 });
  assert.deepEqual(report.splits[1]!.usable, { cats: 0, dogs: 1 });
  assert.ok(report.warnings.includes(`no readable validation images of cats in ${split}`), report.warnings.join(' | '));
  assert.deepEqual(report.problems, []);
  const none = await inspectDataset(split, { validationSplit: 0.1 });
  assert.deepEqual(none.problems, [`a validation split of 0.1 takes no images from ${split}: every class has fewer than 10 images; use a larger split, or train with validationData: 'DIR'`]);
});

test('resolveDataset: layouts, class checks, Keras and shuffled validation splits', async () => {
  const lab = join(dir, 'lab');
  await makeClassTree(join(lab, 'train'));
  await makeClassTree(join(lab, 'val'));
  await rm(join(lab, 'val', 'empty'), { recursive: true });
  const r = await resolveDataset(lab);
  assert.equal(r.layout, 'lab');
  assert.deepEqual(r.validation!.classes, ['cats', 'dogs', 'empty']);
  assert.deepEqual(classCounts(r.validation!), [3, 4, 0]);
  assert.ok(r.validation!.warnings.some((w) => /lacks classes of training: empty$/.test(w)));
  await assert.rejects(resolveDataset(lab, { validationSplit: 0.5 }), /already has a val\/ folder/);

  // A separate validation folder: labels follow the training classes; extra classes are ignored
  // with a warning; none in common is an error that names both sides.
  const val = join(dir, 'val-folder');
  await mkdir(join(val, 'dogs'), { recursive: true });
  await mkdir(join(val, 'birds'), { recursive: true });
  await raw([1, 2, 3], 1, 1, 3).png().toFile(join(val, 'dogs', 'd.png'));
  await raw([1, 2, 3], 1, 1, 3).png().toFile(join(val, 'birds', 'b.png'));
  const v = await listValidationFolder(val, ['cats', 'dogs']);
  assert.deepEqual(v.classes, ['cats', 'dogs']);
  assert.deepEqual(v.files.map((f) => [f.path.slice(val.length + 1), f.label]), [['dogs/d.png', 1]]);
  assert.ok(v.warnings.some((w) => /classes not in training, ignored: birds/.test(w)));
  assert.ok(v.warnings.some((w) => /lacks classes of training: cats/.test(w)));
  assert.ok(!v.warnings.some((w) => /normalization/.test(w)));
  // A class folder named on a Mac (decomposed accents) looks like the training class, but is not it.
  await mkdir(join(val, 'cafe\u0301'));
  await raw([1, 2, 3], 1, 1, 3).png().toFile(join(val, 'cafe\u0301', 'c.png'));
  const mac = await listValidationFolder(val, ['caf\u00e9', 'dogs']);
  assert.ok(mac.warnings.includes(`"cafe\u0301" in ${val} differs from the class of training of the same look only in Unicode normalization (a folder named on a Mac?): rename it; it is ignored`), mac.warnings.join(' | '));
  // Named once as such, not also as a class ignored (birds still is) and a class lacking.
  assert.ok(mac.warnings.includes(`${val} has classes not in training, ignored: birds`), mac.warnings.join(' | '));
  assert.ok(!mac.warnings.some((w) => /lacks classes/.test(w)), mac.warnings.join(' | '));
  await rm(join(val, 'cafe\u0301'), { recursive: true });
  await assert.rejects(listValidationFolder(val, ['cars', 'trucks']), (err: unknown) =>
    err instanceof GraftError && err.message.includes(val) && /no class folder named like a class of training \(training: cars, trucks; found: birds, dogs\)/.test(err.message));

  const classesRoot = join(lab, 'train');
  const c = await resolveDataset(classesRoot);
  assert.equal(c.layout, 'classes');
  assert.equal(c.validation, undefined);

  // Keras: validation = the first floor(f * n) files of each class in listing order.
  const k = await resolveDataset(classesRoot, { validationSplit: 0.5 });
  assert.deepEqual(k.validation!.files.map((f) => f.path.slice(classesRoot.length + 1)), ['cats/B.PNG', 'dogs/z.png', 'dogs/sub/a.png']);
  assert.equal(k.train.files.length, 4);

  const many = { root: '/x', classes: ['a', 'b'], skipped: [], ignoredCount: 0, warnings: [],
    files: Array.from({ length: 100 }, (_, i) => ({ path: `/x/${i < 60 ? 'a' : 'b'}/${i}`, label: i < 60 ? 0 : 1 })) };
  const s1 = splitListing(many, 0.2, 'shuffled', 7);
  const s2 = splitListing(many, 0.2, 'shuffled', 7);
  const s3 = splitListing(many, 0.2, 'shuffled', 8);
  assert.deepEqual(s1.validation.files, s2.validation.files);
  assert.notDeepEqual(s1.validation.files, s3.validation.files);
  assert.deepEqual(classCounts(s1.validation), [12, 8]); // stratified
  assert.equal(s1.train.files.length, 80);
  const all = new Set([...s1.train.files, ...s1.validation.files].map((f) => f.path));
  assert.equal(all.size, 100);
  assert.deepEqual(s1.validation.warnings, []);
  // A class too small for the fraction gets no validation image, and the split says so.
  const lopsided = { ...many, files: many.files.filter((f) => f.label === 0 || f.path.endsWith('/60') || f.path.endsWith('/61')) };
  const s4 = splitListing(lopsided, 0.2);
  assert.deepEqual(classCounts(s4.validation), [12, 0]);
  assert.deepEqual(s4.validation.warnings, ['a validation split of 0.2 takes no image of b (too few images), so validation does not see that class']);

  const one = join(dir, 'one');
  await mkdir(join(one, 'only'), { recursive: true });
  await raw([1, 2, 3], 1, 1, 3).png().toFile(join(one, 'only', 'x.png'));
  await assert.rejects(resolveDataset(one), (err: unknown) => err instanceof GraftError && err.message.includes(one) && /at least 2/.test(err.message));
  await assert.rejects(resolveDataset(join(one, 'only')), /has 1 image but no class sub-folders/);
  await assert.rejects(resolveDataset(join(dir, 'nope')), /no such file/);
});

test('image store: decoded once, bad files skipped or fatal, streaming matches memory', async () => {
  const root = join(dir, 'store');
  await makeClassTree(root);
  await writeFile(join(root, 'cats', 'bad.jpg'), 'not an image at all');
  await writeFile(join(root, 'dogs', 'zero.png'), '');
  const listing = await listImageFolder(root);
  const warnings: string[] = [];
  let progress = 0;
  const store = await buildImageStore(listing, { width: 3, height: 2, onWarning: (w) => warnings.push(w), onProgress: (d) => (progress = d) });
  assert.equal(progress, 9);
  assert.equal(store.count, 7);
  assert.deepEqual([...store.labels], [0, 0, 0, 1, 1, 1, 1]);
  assert.deepEqual(store.bad.map((b) => b.reason), ['a text file, not an image', 'empty file (0 bytes)']);
  assert.equal(warnings.length, 3);
  assert.match(warnings[2]!, /2 of 9 images .* skipped/);
  assert.ok(store.inMemory);
  // Pixel values follow listing order (each fixture is a flat grey level).
  assert.deepEqual([0, 1, 3, 4, 5, 6].map((i) => store.get(i)[0]), [20, 10, 40, 50, 70, 60]);
  assert.equal(store.get(0).length, 18);

  const streamed = await buildImageStore(listing, { width: 3, height: 2, memoryBudgetBytes: 10, onWarning: () => {} });
  assert.equal(streamed.inMemory, false);
  assert.equal(streamed.count, 7);
  const a = new Uint8Array(3 * 18);
  const b = new Uint8Array(3 * 18);
  await store.load([6, 0, 3], a);
  await streamed.load([6, 0, 3], b);
  assert.deepEqual(a, b);

  await assert.rejects(buildImageStore(listing, { width: 3, height: 2, onBadImage: 'error' }), (err: unknown) =>
    err instanceof GraftError && /bad\.jpg|zero\.png/.test(err.message) && /\(leave bad images out with onBadImage: 'skip'\)/.test(err.message));

  // The report of `graft data` lists the same bad files.
  const report = await inspectDataset(root);
  assert.deepEqual(report.bad.map((x) => x.reason).sort(), ['a text file, not an image', 'empty file (0 bytes)']);
  assert.deepEqual(report.splits[0]!.usable, { cats: 3, dogs: 4, empty: 0 });
  assert.deepEqual(report.width, { min: 2, median: 2, max: 2 });
  const run = await runGraft('data', root, '--on-bad-image', 'error');
  assert.equal(run.code, 1);
  assert.equal(run.errLines.length, 1);
  assert.match(run.errLines[0]!, /^graft: error: bad image .*cats\/bad\.jpg: a text file, not an image \(2 bad files in all\)$/);
});


test('image store on decode workers: the same pixels, order and bad files as on the calling thread alone', { skip: !existsSync(sharedLabDataDir()) }, async () => {
  const root = join(dir, 'store-workers');
  for (const cls of ['cats', 'dogs']) {
    await mkdir(join(root, cls), { recursive: true });
    const from = join(sharedLabDataDir(), 'train', cls);
    for (const f of (await readdir(from)).sort().slice(0, 12)) await copyFile(join(from, f), join(root, cls, f));
  }
  await writeFile(join(root, 'cats', 'cat.broken.jpg'), 'not an image at all');
  await writeFile(join(root, 'dogs', 'dog.empty.jpg'), '');
  const listing = await listImageFolder(root);
  const build = async (decodeWorkers: number, extra: Partial<BuildStoreOptions> = {}) => {
    const warnings: string[] = [];
    const store = await buildImageStore(listing, { width: 40, height: 30, interpolation: 'bilinear', decodeWorkers, onWarning: (w) => warnings.push(w), ...extra });
    return { store, warnings };
  };
  const alone = await build(0);
  for (const workers of [1, 2]) {
    const pooled = await build(workers);
    assert.equal(pooled.store.count, 24);
    assert.deepEqual(pooled.store.pixels, alone.store.pixels, `${workers} workers`);
    assert.deepEqual(pooled.store.labels, alone.store.labels);
    assert.deepEqual(pooled.store.bad, alone.store.bad);
    assert.deepEqual(pooled.warnings.sort(), alone.warnings.sort());
  }
  assert.deepEqual(alone.store.bad.map((b) => b.reason), ['a text file, not an image', 'empty file (0 bytes)']);
  // Streaming (over the budget): the check pass runs on the workers too; loads give the same images.
  const streamed = await build(2, { memoryBudgetBytes: 1000 });
  assert.equal(streamed.store.inMemory, false);
  const a = new Uint8Array(3 * 3600), b = new Uint8Array(3 * 3600);
  await alone.store.load([23, 0, 11], a);
  await streamed.store.load([23, 0, 11], b);
  assert.deepEqual(a, b);
  // A bad file met on a worker stops the build with its name, as on the calling thread.
  await assert.rejects(build(2, { onBadImage: 'error' }), (err: unknown) =>
    err instanceof GraftError && /^bad image .*(cat\.broken|dog\.empty)\.jpg: (a text file, not an image|empty file \(0 bytes\)) \(leave bad images out/.test(err.message));
});
test('batch order: per-epoch deterministic shuffle, partial last batch, label encodings', async () => {
  assert.equal(stepsPerEpoch(10, 4), 3);
  const e0 = batchIndices(10, 4, 0, { seed: 3 });
  assert.deepEqual(e0.map((b) => b.length), [4, 4, 2]);
  assert.deepEqual([...e0.flatMap((b) => [...b])].sort((x, y) => x - y), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
  assert.deepEqual(batchIndices(10, 4, 0, { seed: 3 }), e0);
  const flat = (bs: Uint32Array[]) => bs.flatMap((b) => [...b]);
  assert.notDeepEqual(flat(batchIndices(10, 4, 1, { seed: 3 })), flat(e0));
  assert.notDeepEqual(flat(batchIndices(10, 4, 0, { seed: 4 })), flat(e0));
  assert.deepEqual(flat(batchIndices(5, 2, 2, { shuffle: false })), [0, 1, 2, 3, 4]);
  const order = new BatchOrder(10, 4, { seed: 3 });
  assert.deepEqual([...order.batch(0, 2)], [...e0[2]!]);

  const labels = [0, 2, 1];
  const buf = new Float32Array(16);
  assert.deepEqual([...encodeLabels(labels, [1, 0], 'categorical', 3, buf)], [0, 0, 1, 1, 0, 0]);
  assert.deepEqual([...encodeLabels(labels, [2, 0, 1], 'sparse', 3, buf)], [1, 0, 2]);
  assert.deepEqual([...encodeLabels([0, 1], [1, 1, 0], 'binary', 2, buf)], [1, 1, 0]);

  const root = join(dir, 'batches');
  await makeClassTree(root);
  await rm(join(root, 'empty'), { recursive: true });
  const store = await buildImageStore(await listImageFolder(root), { width: 2, height: 2 });
  const bo = new BatchOrder(store.count, 3, { seed: 1 });
  const seen: number[] = [];
  for await (const batch of readBatches(store, bo, 0, 'binary')) {
    assert.equal(batch.images.length, batch.indices.length * 12);
    batch.indices.forEach((idx, k) => {
      assert.equal(batch.images[k * 12], store.get(idx)[0]);
      assert.equal(batch.labels[k], store.labels[idx]);
    });
    seen.push(...batch.indices);
  }
  assert.deepEqual(seen.sort(), [0, 1, 2, 3, 4, 5, 6]);
});

test('graft data --json reports the lab dataset (2000 train, 1000 validation)', { skip: !existsSync(sharedLabDataDir()) }, async () => {
  const lab = sharedLabDataDir();
  const r = await resolveDataset(lab);
  assert.equal(r.layout, 'lab');
  assert.deepEqual(r.train.classes, ['cats', 'dogs']);
  assert.deepEqual(classCounts(r.train), [1000, 1000]);
  assert.deepEqual(classCounts(r.validation!), [500, 500]);
  assert.ok(r.train.files[0]!.path.endsWith('cats/cat.0.jpg'));
  assert.ok(r.train.files[1]!.path.endsWith('cats/cat.1.jpg'));
  assert.ok(r.train.files[2]!.path.endsWith('cats/cat.10.jpg')); // string order, as Keras sorts

  const run = await runGraft('data', join(lab, 'validation'), '--json', '--headers-only', '--validation-split', '0.2');
  assert.equal(run.code, 0);
  const report = JSON.parse(run.out);
  assert.equal(report.layout, 'classes');
  assert.deepEqual(report.splits.map((s: { total: number }) => s.total), [800, 200]);
  assert.deepEqual(report.formats, { jpeg: 1000 });
  assert.deepEqual(report.bad, []);
});

test('the graft data report names the layout it found: train/ alone, train/ + validation/, or loose images', async () => {
  const png = (path: string) => sharp({ create: { width: 4, height: 4, channels: 3, background: '#808080' } }).png().toFile(path);
  const lab = join(dir, 'report-layouts');
  for (const cls of ['cats', 'dogs']) {
    await mkdir(join(lab, 'train', cls), { recursive: true });
    await png(join(lab, 'train', cls, 'a.png'));
  }
  assert.match(formatDatasetReport(await inspectDataset(lab, { decode: false })), /^dataset .*report-layouts \(train\/ layout\)$/m);
  for (const cls of ['cats', 'dogs']) {
    await mkdir(join(lab, 'validation', cls), { recursive: true });
    await png(join(lab, 'validation', cls, 'b.png'));
  }
  assert.match(formatDatasetReport(await inspectDataset(lab, { decode: false })), /^dataset .*report-layouts \(train\/ \+ validation\/ layout\)$/m);
  const loose = join(dir, 'report-loose');
  await mkdir(loose, { recursive: true });
  await png(join(loose, 'x.png'));
  const text = formatDatasetReport(await inspectDataset(loose, { decode: false }));
  assert.match(text, /^train: 0 images {2}\S*report-loose$/m);
  assert.match(text, /^problem: .*report-loose holds 1 image but no class sub-folders/m);
  // The command prints the whole report, and fails the check.
  const run = await runGraft('data', loose, '--headers-only');
  assert.equal(run.code, 1);
  assert.match(run.out, /^problem: .*report-loose holds 1 image but no class sub-folders/m);
  assert.match(run.err, /^graft: error: .*report-loose cannot be used for training as it is \(the problem above\)$/m);
  assert.equal((await runGraft('data', lab, '--headers-only')).code, 0);
});
