/**
 * One image file -> RGB uint8 HWC of exactly height x width, the way Keras' `load_img` does it:
 * PIL opens the file, `convert('RGB')` (grey and palette expanded, alpha DROPPED, not composited),
 * then `resize((w, h), NEAREST)` unless the size already matches.
 *
 * Choices (see also the report in the data branch):
 * - EXIF orientation is ignored by default, as PIL's load_img ignores it, so graft sees the same
 *   pixels as the Keras lab; `orientation: 'exif'` honours it.
 * - 'nearest' is PIL's rule, computed here from the full-size decode: PIL's ImagingScaleAffine
 *   samples source column trunc(x0) with x0 = scale/2 accumulated by += scale (scale = in/out) in
 *   doubles, which we replicate step for step. sharp's nearest kernel (libvips shrink + reduce)
 *   picks other pixels, so it is only used with `fast: true` (JPEG shrink-on-load, faster, not exact).
 * - 'bilinear', 'bicubic', 'hamming', 'lanczos' and 'box' (= 'area') are PIL's convolution
 *   resize, replicated in pil-resample.ts (bit-exact with Pillow 12 in our checks).
 * - CMYK JPEGs go through sharp's colour management to sRGB (PIL uses a naive formula; colours
 *   differ slightly). 16-bit RGB PNGs give PIL's bytes (the high byte); 16-bit grey PNGs are
 *   scaled to 8 bits, where PIL (mode I;16 -> RGB) clips every value above 255 to white.
 */
import { readFileSync, statSync } from 'node:fs';
import sharp, { type Sharp } from 'sharp';
import { GraftError, describeFsError } from '../util/errors.js';
import { resizePil } from './pil-resample.js';
import { BitmapFormatError, bmpSize, decodeBmp, decodeNetpbm, isBmp, isNetpbm, netpbmSize, type RgbImage } from './bitmap-formats.js';

/**
 * Keras' interpolation names, each computed as PIL computes it. 'area' is another name for 'box'
 * (PIL's BOX filter: the mean of the source pixels each output pixel covers).
 */
export type Interpolation = 'nearest' | 'bilinear' | 'bicubic' | 'hamming' | 'lanczos' | 'box' | 'area';
export const INTERPOLATIONS: readonly Interpolation[] = ['nearest', 'bilinear', 'bicubic', 'hamming', 'lanczos', 'box', 'area'];

/**
 * The EXIF Orientation tag: 'ignore' it and read the pixels as stored (Keras/PIL, graft's
 * default), or honour it, 'exif', turning phone photos upright as browsers and viewers show them.
 */
export type Orientation = 'ignore' | 'exif';
export const ORIENTATIONS: readonly Orientation[] = ['ignore', 'exif'];

export interface DecodeOptions {
  width: number;
  height: number;
  /** Default 'nearest', like Keras load_img. */
  interpolation?: Interpolation;
  /** Images with more pixels than this are refused (default 100 megapixels). */
  maxPixels?: number;
  /** 'ignore' (default, like Keras/PIL) or 'exif' (rotate/flip by the EXIF Orientation tag). */
  orientation?: Orientation;
  /**
   * Faster, not Keras-exact: for 'nearest', let sharp resize with JPEG shrink-on-load and its own
   * nearest kernel. Default false.
   */
  fast?: boolean;
}

export const DEFAULT_MAX_PIXELS = 100_000_000;
/** Image files above this size are refused before reading (no sane training image is this big). */
export const MAX_FILE_BYTES = 1 << 30;

/** A file that cannot be used as an image; `reason` is a short phrase ("empty file (0 bytes)"). */
export class BadImageError extends GraftError {
  readonly reason: string;
  constructor(file: string, reason: string, cause?: unknown) {
    super(`bad image ${file}: ${reason}`, { file, cause });
    this.name = 'BadImageError';
    this.reason = reason;
  }
}

// Sharp keeps a cache of opened files and operations; graft decodes each file once, so it only
// costs memory.
sharp.cache(false);

/** Reads a whole image file; unreadable or empty files become BadImageError. */
export async function readImageFile(path: string): Promise<Buffer> {
  let buf: Buffer;
  try {
    // A FIFO or device named .jpg would block or never end; a giant file would fill memory.
    // Synchronous on purpose: async readFile is four thread-pool jobs (open, fstat, read, close)
    // queued behind sharp's decodes on libuv's 4 threads, which cut decode throughput ~1.4x;
    // reading a 30 KB image from the page cache takes tens of microseconds.
    const st = statSync(path);
    if (st.isDirectory()) throw new BadImageError(path, 'a folder, not an image file');
    if (!st.isFile()) throw new BadImageError(path, 'not a regular file');
    if (st.size > MAX_FILE_BYTES) throw new BadImageError(path, `file too large (${st.size} bytes; the limit is ${MAX_FILE_BYTES})`);
    buf = readFileSync(path);
  } catch (err) {
    if (err instanceof BadImageError) throw err;
    throw new BadImageError(path, `unreadable: ${describeFsError(err, path).message.replace(/^cannot read [^:]*: /, '')}`, err);
  }
  if (buf.length === 0) throw new BadImageError(path, 'empty file (0 bytes)');
  return buf;
}

export type SniffedFormat = 'jpeg' | 'png' | 'gif' | 'tiff' | 'webp' | 'bmp' | 'netpbm' | 'avif';

/** The brands an ISO-BMFF file's leading ftyp box names (major, then compatible), or [] for other files. */
function isoBrands(b: Uint8Array): string[] {
  if (b.length < 16 || Buffer.from(b.subarray(4, 8)).toString('latin1') !== 'ftyp') return [];
  const size = Math.min(b.length, new DataView(b.buffer, b.byteOffset, b.byteLength).getUint32(0));
  const brands = [Buffer.from(b.subarray(8, 12)).toString('latin1')];
  for (let at = 16; at + 4 <= size; at += 4) brands.push(Buffer.from(b.subarray(at, at + 4)).toString('latin1'));
  return brands;
}

/** The format the first bytes announce, or a BadImageError explaining what the file seems to be instead. */
export function sniffFormat(buf: Uint8Array, path: string): SniffedFormat {
  const b = buf;
  if (b[0] === 0xff && b[1] === 0xd8 && b[2] === 0xff) return 'jpeg';
  if (b[0] === 0x89 && b[1] === 0x50 && b[2] === 0x4e && b[3] === 0x47) return 'png';
  if (b[0] === 0x47 && b[1] === 0x49 && b[2] === 0x46) return 'gif';
  if ((b[0] === 0x49 && b[1] === 0x49 && b[2] === 0x2a) || (b[0] === 0x4d && b[1] === 0x4d && b[3] === 0x2a)) return 'tiff';
  if (b[0] === 0x52 && b[1] === 0x49 && b[2] === 0x46 && b[3] === 0x46 && b[8] === 0x57 && b[9] === 0x45) return 'webp';
  if (isBmp(b)) return 'bmp';
  if (isNetpbm(b)) return 'netpbm';
  // ISO-BMFF images, 'ftyp' and a brand after the box size: AVIF (sharp decodes it) and HEIC, as
  // iPhones take (HEVC, which sharp's prebuilt libvips does not decode).
  const brands = isoBrands(b);
  if (brands.some((x) => x === 'avif' || x === 'avis')) return 'avif';
  if (brands.some((x) => /^(hei[cmsx]|hev[cmsx]|mif1|msf1)$/.test(x))) {
    throw new BadImageError(path, 'a HEIC/HEIF image (as iPhones take), which graft cannot decode: convert it to JPEG or PNG');
  }
  const head = Buffer.from(b.subarray(0, 512)).toString('latin1');
  const text = head.replace(/^\uFEFF|^\xEF\xBB\xBF/, '').trimStart().toLowerCase();
  if (text.startsWith('<!doctype html') || text.startsWith('<html') || (text.startsWith('<') && text.includes('<html'))) {
    throw new BadImageError(path, 'an HTML page, not an image (a saved web page?)');
  }
  if (text.startsWith('<?xml') || text.startsWith('<svg')) throw new BadImageError(path, 'an XML/SVG document, not a raster image');
  let printable = 0;
  for (let i = 0; i < head.length; i++) {
    const c = head.charCodeAt(i);
    if ((c >= 0x20 && c < 0x7f) || c === 9 || c === 10 || c === 13) printable++;
  }
  if (head.length > 0 && printable / head.length > 0.95) throw new BadImageError(path, 'a text file, not an image');
  const hex = Buffer.from(b.subarray(0, 4)).toString('hex');
  throw new BadImageError(path, `not a known image format (starts with bytes ${hex})`);
}

/** Turns a sharp/libvips error into a reason phrase. */
function sharpReason(err: unknown): string {
  const msg = String((err as Error)?.message ?? err);
  const first = msg.split('\n').map((l) => l.trim()).filter((l) => l.length > 0);
    if (/unsupported image format/i.test(msg)) return 'not a known image format';
  if (/premature end|truncat|corrupt|bogus|not enough data|read error|invalid|unexpected end/i.test(msg)) {
    return `truncated or corrupt image data (${first.slice(-1)[0] ?? msg})`;
  }
  return `cannot decode: ${first[0] ?? msg}`;
}

/**
 * The reason for a failed sharp decode. Decoding starts without a separate header read (it costs
 * a thread-pool round trip per image); only when sharp refuses the pixel count is the header
 * read again, without the limit, to name the size.
 */
async function sharpFailure(err: unknown, buf: Buffer, path: string, maxPixels: number): Promise<BadImageError> {
  if (err instanceof BadImageError) return err;
  if (/pixel limit/i.test(String((err as Error)?.message))) {
    const meta = await sharp(buf, { limitInputPixels: false }).metadata().catch(() => undefined);
    const size = meta?.width && meta.height ? `${meta.width}x${meta.height} is ` : '';
    return new BadImageError(path, `too many pixels: ${size}over the limit of ${maxPixels}`, err);
  }
  return new BadImageError(path, sharpReason(err), err);
}

/** Full-size RGB decode of an image file's bytes, alpha dropped. */
export async function decodeFullRgb(
  buf: Buffer,
  path: string,
  opts: { maxPixels?: number; orientation?: Orientation } = {},
): Promise<RgbImage> {
  const maxPixels = opts.maxPixels ?? DEFAULT_MAX_PIXELS;
  const format = sniffFormat(buf, path);
  if (format === 'bmp' || format === 'netpbm') {
    try {
      return format === 'bmp' ? decodeBmp(buf, maxPixels) : decodeNetpbm(buf, maxPixels);
    } catch (err) {
      if (err instanceof BitmapFormatError) throw new BadImageError(path, err.message, err);
      throw err;
    }
  }
  let img = openSharp(buf, path, maxPixels);
  if (opts.orientation === 'exif') img = img.autoOrient();
  try {
    const { data, info } = await img.removeAlpha().toColourspace('srgb').raw({ depth: 'uchar' }).toBuffer({ resolveWithObject: true });
    if (info.channels !== 3) throw new BadImageError(path, `decoded to ${info.channels} channels, expected 3`);
    return { width: info.width, height: info.height, data: new Uint8Array(data.buffer, data.byteOffset, data.length) };
  } catch (err) {
    throw await sharpFailure(err, buf, path, maxPixels);
  }
}

function openSharp(buf: Buffer, path: string, maxPixels: number): Sharp {
  try {
    // failOn 'truncated': a cut-off JPEG is an error, not a half-grey picture.
    return sharp(buf, { failOn: 'truncated', limitInputPixels: maxPixels, sequentialRead: true });
  } catch (err) {
    throw new BadImageError(path, sharpReason(err), err);
  }
}

/**
 * Image size from the header only (fast; a header can lie, decoding is the real test), and the
 * EXIF Orientation tag (1, upright, when there is none).
 */
export async function readImageSize(path: string): Promise<{ width: number; height: number; format: string; orientation: number }> {
  const buf = await readImageFile(path);
  const format = sniffFormat(buf, path);
  try {
    if (format === 'bmp') return { ...bmpSize(buf), format, orientation: 1 };
    if (format === 'netpbm') return { ...netpbmSize(buf), format, orientation: 1 };
  } catch (err) {
    throw new BadImageError(path, (err as Error).message, err);
  }
  try {
    const meta = await sharp(buf).metadata();
    return { width: meta.width ?? 0, height: meta.height ?? 0, format: meta.format ?? format, orientation: meta.orientation ?? 1 };
  } catch (err) {
    throw new BadImageError(path, sharpReason(err), err);
  }
}

/** The EXIF Orientation tag of an image's bytes: 1 (upright) when there is none or it cannot be read. */
export async function readOrientation(buf: Buffer): Promise<number> {
  let format: SniffedFormat;
  try {
    format = sniffFormat(buf, '');
  } catch {
    return 1;
  }
  if (format === 'bmp' || format === 'netpbm') return 1;
  return (await sharp(buf).metadata().catch(() => undefined))?.orientation ?? 1;
}

/** Per-axis source indices of PIL's nearest resize (ImagingScaleAffine), replicated in doubles. */
export function pilNearestIndices(inSize: number, outSize: number): Int32Array {
  const idx = new Int32Array(outSize);
  const scale = inSize / outSize;
  let pos = scale * 0.5;
  for (let i = 0; i < outSize; i++) {
    const v = pos < 0 ? -1 : Math.trunc(pos);
    idx[i] = Math.min(inSize - 1, Math.max(0, v));
    pos += scale;
  }
  return idx;
}

/** Nearest-neighbour resize of RGB HWC with PIL's sampling rule, into `out`. */
export function resizeNearest(src: RgbImage, width: number, height: number, out: Uint8Array): void {
  const xs = pilNearestIndices(src.width, width);
  const ys = pilNearestIndices(src.height, height);
  const s = src.data;
  let o = 0;
  for (let y = 0; y < height; y++) {
    const row = ys[y]! * src.width * 3;
    for (let x = 0; x < width; x++) {
      const p = row + xs[x]! * 3;
      out[o++] = s[p]!;
      out[o++] = s[p + 1]!;
      out[o++] = s[p + 2]!;
    }
  }
}

/** Decodes and resizes the image at `path` into `out` (height*width*3 bytes). */
export async function decodeImageInto(path: string, opts: DecodeOptions, out: Uint8Array): Promise<void> {
  await decodeBytesInto(await readImageFile(path), path, opts, out);
}

/**
 * Decodes and resizes an image held in memory (the bytes of a JPEG, PNG...; errors name it `path`,
 * a file name or any label) into `out` (height*width*3 bytes), exactly as decodeImageInto does a file.
 */
export async function decodeBytesInto(bytes: Uint8Array, path: string, opts: DecodeOptions, out: Uint8Array): Promise<void> {
  const { width, height } = opts;
  if (out.length !== width * height * 3) throw new Error(`decode target holds ${out.length} bytes, expected ${width * height * 3}`);
  if (bytes.length === 0) throw new BadImageError(path, 'empty file (0 bytes)');
  const buf = Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const interpolation = opts.interpolation ?? 'nearest';
  if (!INTERPOLATIONS.includes(interpolation)) throw new GraftError(`unknown interpolation '${interpolation}' (one of ${INTERPOLATIONS.join(', ')})`);
  const maxPixels = opts.maxPixels ?? DEFAULT_MAX_PIXELS;

  if (opts.fast && interpolation === 'nearest' && sniffFormat(buf, path) === 'jpeg') {
    let img = openSharp(buf, path, maxPixels);
    if (opts.orientation === 'exif') img = img.autoOrient();
    try {
      const { data } = await img
        .removeAlpha()
        .toColourspace('srgb')
        .resize(width, height, { fit: 'fill', kernel: 'nearest', fastShrinkOnLoad: true })
        .raw({ depth: 'uchar' })
        .toBuffer({ resolveWithObject: true });
      out.set(data);
      return;
    } catch (err) {
      throw await sharpFailure(err, buf, path, maxPixels);
    }
  }

  const full = await decodeFullRgb(buf, path, { maxPixels, orientation: opts.orientation });
  if (full.width === width && full.height === height) {
    out.set(full.data); // Keras skips the resize when the size already matches.
  } else if (interpolation === 'nearest') {
    resizeNearest(full, width, height, out);
  } else {
    resizePil(full, width, height, interpolation === 'area' ? 'box' : interpolation, out);
  }
}

/** Decodes and resizes the image at `path`: RGB uint8 HWC, height*width*3 bytes. */
export async function decodeImage(path: string, opts: DecodeOptions): Promise<Uint8Array> {
  const out = new Uint8Array(opts.width * opts.height * 3);
  await decodeImageInto(path, opts, out);
  return out;
}
