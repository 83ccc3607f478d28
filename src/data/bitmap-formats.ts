/**
 * BMP and PPM/PGM readers. Keras accepts both extensions, but sharp 0.35 (libvips without
 * ImageMagick) decodes neither from a buffer and no maintained library is installed, so these two
 * simple formats are read here: uncompressed BMP (1/4/8-bit palette, 24-bit, 32-bit incl.
 * bit-fields) and binary/ASCII netpbm (P2, P3, P5, P6). Output: RGB uint8, top row first; a
 * 32-bit BMP's alpha/padding byte is dropped like PIL's convert('RGB').
 */

export interface RgbImage {
  width: number;
  height: number;
  /** width * height * 3 bytes, HWC RGB. */
  data: Uint8Array;
}

/** A problem with the file's contents; the caller turns it into a BadImageError. */
export class BitmapFormatError extends Error {}

function checkPixels(width: number, height: number, maxPixels: number): void {
  if (!(width > 0 && height > 0)) throw new BitmapFormatError(`invalid dimensions ${width}x${height}`);
  if (width * height > maxPixels) {
    throw new BitmapFormatError(`too many pixels: ${width}x${height} is over the limit of ${maxPixels}`);
  }
}

export function isBmp(buf: Uint8Array): boolean {
  return buf.length >= 2 && buf[0] === 0x42 && buf[1] === 0x4d;
}

export function isNetpbm(buf: Uint8Array): boolean {
  return buf.length >= 2 && buf[0] === 0x50 && buf[1]! >= 0x32 && buf[1]! <= 0x36 && buf[1] !== 0x34;
}

/** Width and height from a BMP header without decoding it. */
export function bmpSize(buf: Uint8Array): { width: number; height: number } {
  if (buf.length < 26) throw new BitmapFormatError('truncated BMP header');
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const dib = dv.getUint32(14, true);
  if (dib === 12) return { width: dv.getUint16(18, true), height: dv.getUint16(20, true) };
  return { width: dv.getInt32(18, true), height: Math.abs(dv.getInt32(22, true)) };
}

export function decodeBmp(buf: Uint8Array, maxPixels: number): RgbImage {
  if (buf.length < 26) throw new BitmapFormatError('truncated BMP header');
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const dataOffset = dv.getUint32(10, true);
  const dib = dv.getUint32(14, true);
  let width: number, rawHeight: number, bpp: number, compression = 0, colours = 0;
  if (dib === 12) {
    width = dv.getUint16(18, true);
    rawHeight = dv.getUint16(20, true);
    bpp = dv.getUint16(24, true);
  } else if (dib >= 40 && buf.length >= 54) {
    width = dv.getInt32(18, true);
    rawHeight = dv.getInt32(22, true);
    bpp = dv.getUint16(28, true);
    compression = dv.getUint32(30, true);
    colours = dv.getUint32(46, true);
  } else {
    throw new BitmapFormatError(`unsupported BMP header (size ${dib})`);
  }
  const topDown = rawHeight < 0;
  const height = Math.abs(rawHeight);
  checkPixels(width, height, maxPixels);

  // Channel masks for 32-bit images; BI_RGB means BGRX.
  let masks = [0x00ff0000, 0x0000ff00, 0x000000ff];
  if (compression === 3 && (bpp === 32 || bpp === 16)) {
    const at = 54; // right after a 40-byte header, and the same offset inside V4/V5 headers
    if (buf.length < at + 12) throw new BitmapFormatError('truncated BMP bit-field masks');
    masks = [dv.getUint32(at, true), dv.getUint32(at + 4, true), dv.getUint32(at + 8, true)];
  } else if (compression !== 0) {
    throw new BitmapFormatError(`unsupported BMP compression (${compression}); only uncompressed BMP is read`);
  }
  if (![1, 4, 8, 24, 32].includes(bpp) && !(bpp === 16 && compression === 3)) {
    throw new BitmapFormatError(`unsupported BMP bit depth ${bpp}`);
  }

  let palette: Uint8Array | undefined;
  if (bpp <= 8) {
    const entry = dib === 12 ? 3 : 4;
    const n = colours || 1 << bpp;
    const start = 14 + dib;
    if (buf.length < start + n * entry) throw new BitmapFormatError('truncated BMP palette');
    palette = new Uint8Array(256 * 3);
    for (let i = 0; i < Math.min(n, 256); i++) {
      palette[i * 3] = buf[start + i * entry + 2]!;
      palette[i * 3 + 1] = buf[start + i * entry + 1]!;
      palette[i * 3 + 2] = buf[start + i * entry]!;
    }
  }
  const stride = Math.floor((bpp * width + 31) / 32) * 4;
  if (buf.length < dataOffset + stride * height) throw new BitmapFormatError('truncated BMP pixel data');

  const shifts = masks.map((m) => (m === 0 ? 0 : 31 - Math.clz32(m & -m)));
  const scales = masks.map((m, i) => (m === 0 ? 0 : 255 / (m >>> shifts[i]!)));
  const out = new Uint8Array(width * height * 3);
  for (let y = 0; y < height; y++) {
    const row = dataOffset + (topDown ? y : height - 1 - y) * stride;
    let o = y * width * 3;
    for (let x = 0; x < width; x++, o += 3) {
      if (bpp === 24) {
        const p = row + x * 3;
        out[o] = buf[p + 2]!;
        out[o + 1] = buf[p + 1]!;
        out[o + 2] = buf[p]!;
      } else if (bpp === 32 || bpp === 16) {
        const v = bpp === 32 ? dv.getUint32(row + x * 4, true) : dv.getUint16(row + x * 2, true);
        for (let c = 0; c < 3; c++) out[o + c] = Math.round(((v & masks[c]!) >>> shifts[c]!) * scales[c]!);
      } else {
        const bit = x * bpp;
        const byte = buf[row + (bit >> 3)]!;
        const idx = (byte >> (8 - bpp - (bit & 7))) & ((1 << bpp) - 1);
        out[o] = palette![idx * 3]!;
        out[o + 1] = palette![idx * 3 + 1]!;
        out[o + 2] = palette![idx * 3 + 2]!;
      }
    }
  }
  return { width, height, data: out };
}

interface NetpbmHeader {
  kind: number;
  width: number;
  height: number;
  maxval: number;
  /** Offset of the first pixel byte (binary) or of the first sample token (ASCII). */
  dataOffset: number;
}

function readNetpbmHeader(buf: Uint8Array): NetpbmHeader {
  let pos = 2;
  const token = (): number => {
    for (;;) {
      while (pos < buf.length && /\s/.test(String.fromCharCode(buf[pos]!))) pos++;
      if (buf[pos] === 0x23) {
        while (pos < buf.length && buf[pos] !== 0x0a) pos++;
        continue;
      }
      break;
    }
    const start = pos;
    while (pos < buf.length && buf[pos]! >= 0x30 && buf[pos]! <= 0x39) pos++;
    if (start === pos) throw new BitmapFormatError('malformed PPM/PGM header');
    return Number(String.fromCharCode(...buf.subarray(start, pos)));
  };
  const kind = buf[1]! - 0x30;
  const width = token();
  const height = token();
  const maxval = token();
  if (maxval < 1 || maxval > 65535) throw new BitmapFormatError(`invalid PPM/PGM maxval ${maxval}`);
  return { kind, width, height, maxval, dataOffset: pos + 1 };
}

export function netpbmSize(buf: Uint8Array): { width: number; height: number } {
  const h = readNetpbmHeader(buf);
  return { width: h.width, height: h.height };
}

export function decodeNetpbm(buf: Uint8Array, maxPixels: number): RgbImage {
  const { kind, width, height, maxval, dataOffset } = readNetpbmHeader(buf);
  checkPixels(width, height, maxPixels);
  const channels = kind === 3 || kind === 6 ? 3 : 1;
  const n = width * height * channels;
  const samples = new Uint16Array(n);
  if (kind === 5 || kind === 6) {
    const bytes = maxval > 255 ? 2 : 1;
    if (buf.length < dataOffset + n * bytes) throw new BitmapFormatError('truncated PPM/PGM pixel data');
    for (let i = 0; i < n; i++) {
      samples[i] = bytes === 2 ? (buf[dataOffset + 2 * i]! << 8) | buf[dataOffset + 2 * i + 1]! : buf[dataOffset + i]!;
    }
  } else {
    const text = new TextDecoder('latin1').decode(buf.subarray(dataOffset - 1)).replace(/#[^\n]*/g, '');
    const values = text.trim().split(/\s+/);
    if (values.length < n) throw new BitmapFormatError('truncated PPM/PGM pixel data');
    for (let i = 0; i < n; i++) samples[i] = Number(values[i]);
  }
  const out = new Uint8Array(width * height * 3);
  for (let p = 0; p < width * height; p++) {
    for (let c = 0; c < 3; c++) {
      const v = samples[channels === 3 ? p * 3 + c : p]!;
      out[p * 3 + c] = maxval === 255 ? v : Math.min(255, Math.round((v * 255) / maxval));
    }
  }
  return { width, height, data: out };
}
