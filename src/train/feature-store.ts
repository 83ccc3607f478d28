/**
 * Feature rows that need not fit in memory: a feature store file holds one fixed-size row per
 * image (or per augmented view) behind a header saying exactly what they are features of, so that
 * a later run (a resume, the same data again) reuses them only when they are the features it would
 * compute, and rebuilds them, saying why, otherwise.
 *
 * File layout (little-endian):
 *   0   "GRAFTFS\0"                       magic
 *   8   u32 version (1), u32 header bytes
 *   16  header JSON (FeatureStoreHeader), padded with spaces to dataOffset (a multiple of 4096)
 *   dataOffset  partRows rows of rowBytes (float32 or float16, row-major)
 *   then one SHA-256 (32 bytes) per block of blockRows rows (the last block may be shorter)
 *   then "GRAFTFSE"                       tail magic: the file is complete
 * A part file of a sharded extraction (`graft features --shard I/N`) is the same format holding
 * rows [firstRow, firstRow + partRows) of the whole store; a whole store is the one part 0..rows.
 *
 * Writing goes to FILE.partial, with the checksum of each finished (and synced) block appended to
 * FILE.partial.sums: a killed write resumes from its last verified block. The finished file is
 * renamed to FILE, so FILE is always complete.
 */
import { createHash } from 'node:crypto';
import { open, readFile, rename, rm, stat, statfs, writeFile, type FileHandle } from 'node:fs/promises';
import { dirname } from 'node:path';
import { describeFsError, GraftError } from '../util/errors.js';
import { FLOAT16_TO_FLOAT32, float16Bits } from '../util/float16.js';
import { makeFolder } from '../util/folders.js';

const MAGIC = Buffer.from('GRAFTFS\0', 'latin1');
const TAIL = Buffer.from('GRAFTFSE', 'latin1');
const VERSION = 1;
const PREAMBLE = 16;
const ALIGN = 4096;
const SUM_BYTES = 32;
/** Bytes per checksummed block, about: big enough that syncs are rare, small enough to lose little to a kill. */
const BLOCK_BYTES = 8 << 20;

export type FeatureDtype = 'float32' | 'float16';

/** What a store file says about itself. */
export interface FeatureStoreHeader {
  format: 'graft-feature-store';
  /**
   * Everything that changes the features, by name (images, weights, cut, input size, resize filter,
   * preprocessing, orientation, pooling, feed): a store is used only for the same fingerprint.
   */
  fingerprint: Record<string, unknown>;
  /** Rows of the whole store. */
  rows: number;
  /** Shape of one row, e.g. [768] (pooled mixed7) or [7, 7, 768]. */
  rowShape: number[];
  /** float16 halves the size of features that need no more precision (augmented views). */
  dtype: FeatureDtype;
  /** This file holds rows [firstRow, firstRow + partRows) of the store (a shard's part; a whole store: 0 and rows). */
  firstRow: number;
  partRows: number;
  /** Rows per checksummed block. */
  blockRows: number;
}

/** What a caller expects of a store: everything in the header but the layout details. */
export interface FeatureStoreSpec {
  fingerprint: Record<string, unknown>;
  rows: number;
  rowShape: number[];
  dtype: FeatureDtype;
}

/** Rows of features, read by row index into a float32 batch buffer: held in memory or in a store file. */
export interface FeatureRows {
  readonly count: number;
  /** Floats a row. */
  readonly rowFloats: number;
  /** Copies rows `rows` one after another into `into` as float32. */
  read(rows: ArrayLike<number>, into: Float32Array): Promise<void>;
  /** Rows [first, first + n) into `into`. */
  readRange(first: number, n: number, into: Float32Array): Promise<void>;
  close(): Promise<void>;
}

const rowFloatsOf = (shape: number[]) => shape.reduce((a, b) => a * b, 1);
const bytesPerFloat = (dtype: FeatureDtype) => (dtype === 'float16' ? 2 : 4);

/** Bytes the rows of `spec` take (data only). */
export function featureBytes(spec: Pick<FeatureStoreSpec, 'rows' | 'rowShape' | 'dtype'>): number {
  return spec.rows * rowFloatsOf(spec.rowShape) * bytesPerFloat(spec.dtype);
}

/** Rows held in memory (float32, or float16 bits), read like a store file. */
export class MemoryFeatureRows implements FeatureRows {
  readonly count: number;
  readonly data: Float32Array | Uint16Array;

  constructor(readonly rowFloats: number, count: number, dtype: FeatureDtype) {
    this.count = count;
    this.data = dtype === 'float16' ? new Uint16Array(count * rowFloats) : new Float32Array(count * rowFloats);
  }

  /** Stores rows [first, first + n) from float32 `values`. */
  write(first: number, values: Float32Array, n: number): void {
    const d = this.rowFloats, len = n * d;
    if (this.data instanceof Float32Array) this.data.set(values.subarray(0, len), first * d);
    else for (let i = 0, at = first * d; i < len; i++) this.data[at + i] = float16Bits(values[i]!);
  }

  async read(rows: ArrayLike<number>, into: Float32Array): Promise<void> {
    const d = this.rowFloats;
    for (let k = 0; k < rows.length; k++) this.copyRow(rows[k]!, into, k * d);
  }

  async readRange(first: number, n: number, into: Float32Array): Promise<void> {
    for (let k = 0; k < n; k++) this.copyRow(first + k, into, k * this.rowFloats);
  }

  async close(): Promise<void> {}

  private copyRow(row: number, into: Float32Array, at: number): void {
    const d = this.rowFloats, from = row * d;
    if (this.data instanceof Float32Array) into.set(this.data.subarray(from, from + d), at);
    else for (let j = 0; j < d; j++) into[at + j] = FLOAT16_TO_FLOAT32[this.data[from + j]!]!;
  }
}

/** Keys whose values differ between two fingerprints, as "key a, now b" (values shortened). */
export function fingerprintChanges(stored: Record<string, unknown>, wanted: Record<string, unknown>): string[] {
  const show = (v: unknown) => {
    const s = v === undefined ? 'none' : typeof v === 'string' ? v : JSON.stringify(v);
    return s.length > 60 ? `${s.slice(0, 57)}...` : s;
  };
  const keys = [...new Set([...Object.keys(wanted), ...Object.keys(stored)])];
  return keys.filter((k) => JSON.stringify(stored[k]) !== JSON.stringify(wanted[k])).map((k) => `${k} ${show(stored[k])}, now ${show(wanted[k])}`);
}

function headerFor(spec: FeatureStoreSpec, firstRow = 0, partRows = spec.rows, blockRows?: number): FeatureStoreHeader {
  const rowBytes = rowFloatsOf(spec.rowShape) * bytesPerFloat(spec.dtype);
  return {
    format: 'graft-feature-store',
    fingerprint: spec.fingerprint,
    rows: spec.rows,
    rowShape: spec.rowShape,
    dtype: spec.dtype,
    firstRow,
    partRows,
    blockRows: blockRows ?? Math.max(1, Math.floor(BLOCK_BYTES / rowBytes)),
  };
}

function encodeHeader(header: FeatureStoreHeader): Buffer {
  const json = Buffer.from(JSON.stringify(header), 'utf8');
  const dataOffset = Math.ceil((PREAMBLE + json.length) / ALIGN) * ALIGN;
  const out = Buffer.alloc(dataOffset, 0x20);
  MAGIC.copy(out, 0);
  out.writeUInt32LE(VERSION, 8);
  out.writeUInt32LE(json.length, 12);
  json.copy(out, PREAMBLE);
  return out;
}

/** Layout figures of a header. */
function layout(header: FeatureStoreHeader, dataOffset: number) {
  const rowFloats = rowFloatsOf(header.rowShape);
  const rowBytes = rowFloats * bytesPerFloat(header.dtype);
  const blocks = Math.ceil(header.partRows / header.blockRows);
  const sumsOffset = dataOffset + header.partRows * rowBytes;
  return { rowFloats, rowBytes, blocks, sumsOffset, fileBytes: sumsOffset + blocks * SUM_BYTES + TAIL.length };
}

/** The header and data offset of an open store file, or why it is not one. */
async function readHeader(handle: FileHandle): Promise<{ header: FeatureStoreHeader; dataOffset: number } | string> {
  const pre = Buffer.alloc(PREAMBLE);
  const { bytesRead } = await handle.read(pre, 0, PREAMBLE, 0);
  if (bytesRead < PREAMBLE || !pre.subarray(0, 8).equals(MAGIC)) return 'not a graft feature store';
  if (pre.readUInt32LE(8) !== VERSION) return `a feature store of another version (${pre.readUInt32LE(8)})`;
  const length = pre.readUInt32LE(12);
  if (length > 64 << 20) return 'its header is damaged';
  const json = Buffer.alloc(length);
  if ((await handle.read(json, 0, length, PREAMBLE)).bytesRead < length) return 'it is cut short';
  try {
    const header = JSON.parse(json.toString('utf8')) as FeatureStoreHeader;
    if (header.format !== 'graft-feature-store' || !Array.isArray(header.rowShape) || !(header.blockRows >= 1)) return 'its header is damaged';
    return { header, dataOffset: Math.ceil((PREAMBLE + length) / ALIGN) * ALIGN };
  } catch {
    return 'its header is damaged';
  }
}

/** Why `header` is not a store of `spec` (the settings that changed), or null when it is. */
function mismatch(header: FeatureStoreHeader, spec: FeatureStoreSpec): string | null {
  const changes = fingerprintChanges(header.fingerprint ?? {}, spec.fingerprint);
  if (header.rows !== spec.rows) changes.push(`rows ${header.rows}, now ${spec.rows}`);
  if (JSON.stringify(header.rowShape) !== JSON.stringify(spec.rowShape)) changes.push(`row shape [${header.rowShape.join(', ')}], now [${spec.rowShape.join(', ')}]`);
  if (header.dtype !== spec.dtype) changes.push(`type ${header.dtype}, now ${spec.dtype}`);
  return changes.length > 0 ? `it holds features of other settings (${changes.join('; ')})` : null;
}

/** Reads `length` bytes at `position` (throwing on a short read). */
async function readExactly(handle: FileHandle, into: Uint8Array, position: number): Promise<void> {
  let done = 0;
  while (done < into.length) {
    const { bytesRead } = await handle.read(into, done, into.length - done, position + done);
    if (bytesRead === 0) throw new Error('unexpected end of file');
    done += bytesRead;
  }
}

async function writeExactly(handle: FileHandle, data: Uint8Array, position: number): Promise<void> {
  let done = 0;
  while (done < data.length) done += (await handle.write(data, done, data.length - done, position + done)).bytesWritten;
}

/** Index of the first block of rows [0, rows) in `handle` whose SHA-256 differs from `sums`, or -1. */
async function firstBadBlock(handle: FileHandle, header: FeatureStoreHeader, dataOffset: number, sums: Buffer, blocks: number): Promise<number> {
  const { rowBytes } = layout(header, dataOffset);
  const buf = Buffer.allocUnsafe(header.blockRows * rowBytes);
  for (let b = 0; b < blocks; b++) {
    const rows = Math.min(header.blockRows, header.partRows - b * header.blockRows);
    const chunk = buf.subarray(0, rows * rowBytes);
    await readExactly(handle, chunk, dataOffset + b * header.blockRows * rowBytes);
    const digest = createHash('sha256').update(chunk).digest();
    if (!digest.equals(sums.subarray(b * SUM_BYTES, (b + 1) * SUM_BYTES))) return b;
  }
  return -1;
}

/** A finished store file, open for reading rows. */
export class FeatureStoreFile implements FeatureRows {
  readonly count: number;
  readonly rowFloats: number;
  private readonly rowBytes: number;
  private scratch: Buffer;

  private constructor(readonly file: string, private readonly handle: FileHandle, readonly header: FeatureStoreHeader, private readonly dataOffset: number) {
    const l = layout(header, dataOffset);
    this.count = header.partRows;
    this.rowFloats = l.rowFloats;
    this.rowBytes = l.rowBytes;
    this.scratch = Buffer.allocUnsafe(0);
  }

  /**
   * Opens `file` as a store of `spec` (any spec when omitted). `verify` reads it whole and checks
   * every block's checksum. Returns why it cannot be used (missing, another format, other
   * settings, damaged) instead of throwing, so the caller can rebuild it.
   */
  static async open(file: string, spec?: FeatureStoreSpec, opts: { verify?: boolean } = {}): Promise<FeatureStoreFile | { problem: string }> {
    const handle = await open(file, 'r').catch((err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT') return null;
      throw describeFsError(err, file);
    });
    if (!handle) return { problem: 'there is no such file' };
    let ok = false;
    try {
      const read = await readHeader(handle);
      if (typeof read === 'string') return { problem: read };
      const { header, dataOffset } = read;
      const why = spec && mismatch(header, spec);
      if (why) return { problem: why };
      const l = layout(header, dataOffset);
      const { size } = await handle.stat();
      const tail = Buffer.alloc(TAIL.length);
      if (size !== l.fileBytes || ((await handle.read(tail, 0, TAIL.length, size - TAIL.length)).bytesRead, !tail.equals(TAIL))) {
        return { problem: `it is ${size < l.fileBytes ? 'cut short' : 'damaged'} (${size} bytes, expected ${l.fileBytes})` };
      }
      if (opts.verify) {
        const sums = Buffer.alloc(l.blocks * SUM_BYTES);
        await readExactly(handle, sums, l.sumsOffset);
        const bad = await firstBadBlock(handle, header, dataOffset, sums, l.blocks);
        if (bad >= 0) return { problem: `it is damaged: rows ${bad * header.blockRows} to ${Math.min(header.partRows, (bad + 1) * header.blockRows) - 1} fail their checksum` };
      }
      ok = true;
      return new FeatureStoreFile(file, handle, header, dataOffset);
    } finally {
      if (!ok) await handle.close();
    }
  }

  async read(rows: ArrayLike<number>, into: Float32Array): Promise<void> {
    const n = rows.length, rb = this.rowBytes;
    if (this.scratch.length < n * rb) this.scratch = Buffer.allocUnsafe(n * rb);
    // Reads in flight at once: libuv's threads fetch rows not in the page cache side by side.
    await Promise.all(Array.from({ length: n }, (_, k) => this.readAt(this.scratch.subarray(k * rb, (k + 1) * rb), rows[k]!)));
    this.decode(this.scratch, n, into);
  }

  async readRange(first: number, n: number, into: Float32Array): Promise<void> {
    const rb = this.rowBytes;
    if (this.scratch.length < n * rb) this.scratch = Buffer.allocUnsafe(n * rb);
    await this.readAt(this.scratch.subarray(0, n * rb), first);
    this.decode(this.scratch, n, into);
  }

  async close(): Promise<void> {
    await this.handle.close().catch(() => undefined);
  }

  private async readAt(into: Buffer, row: number): Promise<void> {
    if (!(row >= 0 && row < this.count)) throw new Error(`row ${row} outside the store's ${this.count}`);
    try {
      await readExactly(this.handle, into, this.dataOffset + row * this.rowBytes);
    } catch (err) {
      throw new GraftError(`cannot read the feature store ${this.file}: ${(err as Error).message}`, { file: this.file, cause: err });
    }
  }

  private decode(bytes: Buffer, n: number, into: Float32Array): void {
    const floats = n * this.rowFloats;
    if (this.header.dtype === 'float32') {
      // Byte copy: the scratch buffer's offset need not be 4-aligned for a view.
      new Uint8Array(into.buffer, into.byteOffset, floats * 4).set(bytes.subarray(0, floats * 4));
    } else {
      for (let i = 0; i < floats; i++) into[i] = FLOAT16_TO_FLOAT32[bytes.readUInt16LE(2 * i)]!;
    }
  }
}

export interface StoreWriteOptions {
  /** A shard's part: rows [firstRow, firstRow + partRows) of the store (default the whole store). */
  firstRow?: number;
  partRows?: number;
  /** Rows per checksummed block (default: about 8 MiB of rows). */
  blockRows?: number;
  /** Hears why an unfinished file was dropped or continued. */
  onNote?: (line: string) => void;
}

/** Writes a store file's rows in order, resumably (see the module comment). */
export class FeatureStoreWriter {
  /** Rows [firstRow, firstRow + rowsDone) are in the file (verified, when resumed). */
  rowsDone: number;
  private readonly l: ReturnType<typeof layout>;
  private hash = createHash('sha256');
  private readonly sums: Buffer[] = [];
  private pending: Buffer | null = null;

  private constructor(
    readonly file: string,
    private readonly handle: FileHandle,
    readonly header: FeatureStoreHeader,
    private readonly dataOffset: number,
    rowsDone: number,
    sums: Buffer[],
  ) {
    this.l = layout(header, dataOffset);
    this.rowsDone = rowsDone;
    this.sums = sums;
  }

  /**
   * Starts (or, when FILE.partial holds the start of the same store, continues) writing the store
   * of `spec` to `file`; rows [firstRow, firstRow + partRows) for a shard's part. `onNote` hears
   * why a partial file was dropped.
   */
  static async begin(file: string, spec: FeatureStoreSpec, opts: StoreWriteOptions = {}): Promise<FeatureStoreWriter> {
    const header = headerFor(spec, opts.firstRow ?? 0, opts.partRows ?? spec.rows - (opts.firstRow ?? 0), opts.blockRows);
    const partial = `${file}.partial`, sumsFile = `${partial}.sums`;
    await makeFolder(dirname(file), file);
    const encoded = encodeHeader(header);
    const resumed = await FeatureStoreWriter.resume(partial, sumsFile, header, encoded, opts.onNote);
    if (resumed) return resumed;
    await rm(sumsFile, { force: true });
    const handle = await open(partial, 'w').catch((err: unknown) => {
      throw describeFsError(err, partial, 'write');
    });
    try {
      await writeExactly(handle, encoded, 0);
      await writeFile(sumsFile, '');
    } catch (err) {
      await handle.close();
      throw writeError(err, file, layout(header, encoded.length).fileBytes, 0);
    }
    return new FeatureStoreWriter(file, handle, header, encoded.length, 0, []);
  }

  /** The writer continuing `partial` when its header is `header` and its finished blocks verify; else null. */
  private static async resume(partial: string, sumsFile: string, header: FeatureStoreHeader, encoded: Buffer, onNote?: (line: string) => void): Promise<FeatureStoreWriter | null> {
    const handle = await open(partial, 'r+').catch(() => null);
    if (!handle) return null;
    try {
      const read = await readHeader(handle);
      if (typeof read === 'string' || JSON.stringify(read.header) !== JSON.stringify(header) || read.dataOffset !== encoded.length) {
        onNote?.(`The unfinished feature store ${partial} was for other settings: computing the features afresh`);
        await handle.close();
        return null;
      }
      const text = await readFile(sumsFile, 'latin1').catch(() => '');
      const sums = text.split('\n').filter((line) => /^[0-9a-f]{64}$/.test(line)).map((line) => Buffer.from(line, 'hex'));
      const l = layout(header, encoded.length);
      const { size } = await handle.stat();
      // Blocks both checksummed and wholly in the file; a block failing its checksum ends them.
      const blockEnd = (b: number) => encoded.length + Math.min(header.partRows, (b + 1) * header.blockRows) * l.rowBytes;
      let blocks = 0;
      while (blocks < Math.min(sums.length, l.blocks) && blockEnd(blocks) <= size) blocks++;
      const bad = await firstBadBlock(handle, { ...header, partRows: Math.min(header.partRows, blocks * header.blockRows) }, encoded.length, Buffer.concat(sums), blocks);
      if (bad >= 0) blocks = bad;
      const rowsDone = Math.min(header.partRows, blocks * header.blockRows);
      await handle.truncate(encoded.length + rowsDone * l.rowBytes);
      await writeFile(sumsFile, sums.slice(0, blocks).map((s) => `${s.toString('hex')}\n`).join(''));
      return new FeatureStoreWriter(partial.slice(0, -'.partial'.length), handle, header, encoded.length, rowsDone, sums.slice(0, blocks));
    } catch (err) {
      await handle.close();
      throw describeFsError(err, partial);
    }
  }

  /**
   * Writes rows [first, first + n) of the part from float32 `values`. Rows must come in order;
   * those before rowsDone (already in a resumed file) are skipped.
   */
  async write(first: number, values: Float32Array, n: number): Promise<void> {
    const d = this.l.rowFloats;
    if (first > this.rowsDone) throw new Error(`feature store rows must come in order: row ${first} after ${this.rowsDone}`);
    const skip = Math.min(n, this.rowsDone - first);
    if (skip === n) return;
    const rows = n - skip;
    const src = values.subarray(skip * d, n * d);
    let bytes: Buffer;
    if (this.header.dtype === 'float32') bytes = Buffer.from(src.buffer, src.byteOffset, rows * d * 4);
    else {
      bytes = this.pending && this.pending.length >= rows * d * 2 ? this.pending : (this.pending = Buffer.allocUnsafe(rows * d * 2));
      for (let i = 0; i < rows * d; i++) bytes.writeUInt16LE(float16Bits(src[i]!), 2 * i);
      bytes = bytes.subarray(0, rows * d * 2);
    }
    const position = this.dataOffset + this.rowsDone * this.l.rowBytes;
    try {
      await writeExactly(this.handle, bytes, position);
    } catch (err) {
      throw this.diskError(err);
    }
    // Checksums block by block; a finished block is synced before its sum is recorded.
    let at = 0;
    let row = this.rowsDone;
    while (at < rows) {
      const inBlock = Math.min(rows - at, this.header.blockRows - (row % this.header.blockRows));
      this.hash.update(bytes.subarray(at * this.l.rowBytes, (at + inBlock) * this.l.rowBytes));
      at += inBlock;
      row += inBlock;
      if (row % this.header.blockRows === 0 || row === this.header.partRows) await this.finishBlock();
    }
    this.rowsDone = row;
  }

  /** Completes the file (checksums, tail), renames it into place and returns it open for reading. */
  async finish(): Promise<FeatureStoreFile> {
    if (this.rowsDone !== this.header.partRows) throw new Error(`feature store ${this.file}: ${this.rowsDone} of ${this.header.partRows} rows written`);
    const partial = `${this.file}.partial`;
    try {
      await writeExactly(this.handle, Buffer.concat([...this.sums, TAIL]), this.l.sumsOffset);
      await this.handle.truncate(this.l.fileBytes);
      await this.handle.sync();
      await this.handle.close();
      await rename(partial, this.file);
      await rm(`${partial}.sums`, { force: true });
    } catch (err) {
      throw this.diskError(err);
    }
    const opened = await FeatureStoreFile.open(this.file);
    if (!(opened instanceof FeatureStoreFile)) throw new GraftError(`the feature store ${this.file} just written cannot be read back: ${opened.problem}`, { file: this.file });
    return opened;
  }

  /** Stops writing, keeping what is done for a later resume. */
  async close(): Promise<void> {
    await this.handle.close().catch(() => undefined);
  }

  private async finishBlock(): Promise<void> {
    const sum = this.hash.digest();
    this.hash = createHash('sha256');
    await this.handle.datasync();
    this.sums.push(sum);
    await writeFile(`${this.file}.partial.sums`, `${sum.toString('hex')}\n`, { flag: 'a' });
  }

  private diskError(err: unknown): GraftError {
    return writeError(err, this.file, this.l.fileBytes, this.rowsDone * this.l.rowBytes);
  }
}

/** A failed write of the store `file` (of `needed` bytes, `written` done) in words: a full disk says how much and where. */
function writeError(err: unknown, file: string, needed: number, written: number): GraftError {
  const code = (err as NodeJS.ErrnoException).code;
  if (code === 'ENOSPC' || code === 'EDQUOT') {
    return new GraftError(
      `the disk is full: the feature store ${file} needs ${formatBytes(needed)} in ${dirname(file)} (${formatBytes(written)} of it written, kept to continue from); free space there, or choose another output folder`,
      { file, cause: err },
    );
  }
  return describeFsError(err, `${file}.partial`, 'write');
}

export function formatBytes(bytes: number): string {
  return bytes >= 2 ** 30 ? `${(bytes / 2 ** 30).toFixed(1)} GiB` : bytes >= 2 ** 20 ? `${(bytes / 2 ** 20).toFixed(0)} MiB` : `${Math.ceil(bytes / 1024)} KiB`;
}

/** Refuses, before any work, a store that the disk under `file` has no room for (what is there already counts). */
export async function checkDiskSpace(file: string, bytes: number): Promise<void> {
  const dir = dirname(file);
  const fs = await statfs(dir).catch(() => null);
  if (!fs) return;
  const free = fs.bavail * fs.bsize;
  const have = (await stat(`${file}.partial`).catch(() => null))?.size ?? 0;
  if (bytes - have > free) {
    throw new GraftError(`not enough disk space for the feature store ${file}: it needs ${formatBytes(bytes)} and ${dir} has ${formatBytes(free)} free; free space there, choose another output folder, or use a smaller cut or a gap head`, { file });
  }
}

/** Bytes the whole store file of `spec` takes. */
export function featureStoreFileBytes(spec: FeatureStoreSpec): number {
  const header = headerFor(spec);
  return layout(header, encodeHeader(header).length).fileBytes;
}

/**
 * The store of `spec` at `file`: reused when a finished one is there and verifies, otherwise
 * (after saying why the one there cannot be used) computed by `compute`, which must write rows
 * from `from` on (earlier ones are skipped: it may start at an earlier row) in order.
 */
export async function obtainFeatureStore(
  file: string,
  spec: FeatureStoreSpec,
  compute: (from: number, write: (first: number, values: Float32Array, n: number) => Promise<void>) => Promise<void>,
  opts: { onNote?: (line: string) => void; blockRows?: number } = {},
): Promise<{ store: FeatureStoreFile; reused: boolean }> {
  const found = await FeatureStoreFile.open(file, spec, { verify: true });
  if (found instanceof FeatureStoreFile) return { store: found, reused: true };
  if (found.problem !== 'there is no such file') {
    opts.onNote?.(`The feature store ${file} cannot be used: ${found.problem}; computing it again`);
    await rm(file, { force: true });
  }
  await checkDiskSpace(file, featureStoreFileBytes(spec));
  const writer = await FeatureStoreWriter.begin(file, spec, { onNote: opts.onNote, blockRows: opts.blockRows });
  try {
    if (writer.rowsDone > 0) opts.onNote?.(`Continuing the unfinished feature store ${file} from row ${writer.rowsDone} of ${spec.rows}`);
    await compute(writer.rowsDone, (first, values, n) => writer.write(first, values, n));
    return { store: await writer.finish(), reused: false };
  } finally {
    await writer.close();
  }
}

/**
 * Joins the part files of a sharded extraction (each a FeatureStoreWriter with firstRow/partRows,
 * all of one spec, together covering every row once) into the store one whole run writes at
 * `file`: the same bytes. Each part is verified first; a missing, overlapping or damaged part is
 * named.
 */
export async function mergeFeatureStoreParts(parts: string[], file: string, opts: { blockRows?: number } = {}): Promise<FeatureStoreFile> {
  const opened: FeatureStoreFile[] = [];
  try {
    for (const part of parts) {
      const p = await FeatureStoreFile.open(part, undefined, { verify: true });
      if (!(p instanceof FeatureStoreFile)) throw new GraftError(`the feature store part ${part} cannot be used: ${p.problem}`, { file: part });
      opened.push(p);
    }
    if (opened.length === 0) throw new GraftError(`no feature store parts to merge into ${file}`, { file });
    opened.sort((a, b) => a.header.firstRow - b.header.firstRow);
    const first = opened[0]!.header;
    const spec: FeatureStoreSpec = { fingerprint: first.fingerprint, rows: first.rows, rowShape: first.rowShape, dtype: first.dtype };
    let next = 0;
    for (const p of opened) {
      const why = mismatch(p.header, spec);
      if (why) throw new GraftError(`the feature store part ${p.file} is not a part of the same store as ${opened[0]!.file}: ${why}`, { file: p.file });
      if (p.header.firstRow !== next) throw new GraftError(`the feature store parts leave rows ${Math.min(next, p.header.firstRow)} to ${Math.max(next, p.header.firstRow) - 1} ${p.header.firstRow > next ? 'missing' : 'twice'} (at ${p.file})`, { file: p.file });
      next += p.header.partRows;
    }
    if (next !== spec.rows) throw new GraftError(`the feature store parts hold rows 0 to ${next - 1} of ${spec.rows}: rows ${next} to ${spec.rows - 1} are missing`, { file });
    const writer = await FeatureStoreWriter.begin(file, spec, { blockRows: opts.blockRows });
    try {
      const chunkRows = Math.max(1, Math.floor(BLOCK_BYTES / (rowFloatsOf(spec.rowShape) * 4)));
      const buffer = new Float32Array(chunkRows * rowFloatsOf(spec.rowShape));
      for (const p of opened) {
        for (let at = 0; at < p.count; at += chunkRows) {
          const n = Math.min(chunkRows, p.count - at);
          await p.readRange(at, n, buffer);
          await writer.write(p.header.firstRow + at, buffer, n);
        }
      }
      return await writer.finish();
    } finally {
      await writer.close();
    }
  } finally {
    for (const p of opened) await p.close();
  }
}
