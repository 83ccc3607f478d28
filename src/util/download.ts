import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { open, readFile, rename, rm, stat } from 'node:fs/promises';
import { basename, dirname } from 'node:path';
import cliProgress from 'cli-progress';
import { GraftError, describeFsError } from './errors.js';
import { makeFolder } from './folders.js';

export interface DownloadProgress {
  /** Bytes of the file present so far (including a resumed part). */
  received: number;
  /** Full size when the server says it, else undefined. */
  total?: number;
}

export interface DownloadOptions {
  /** Expected md5 (hex) of the whole file; a mismatch deletes the download and fails. */
  md5?: string;
  onProgress?: (p: DownloadProgress) => void;
  /**
   * Draw a progress bar on stderr (true), or show nothing (false). Default: the bar when stderr is
   * a terminal, else a line as the download starts and one when it is done (logs, CI).
   */
  progressBar?: boolean;
  /** Attempts after the first on network errors and 5xx answers (default 4), resuming each time. */
  retries?: number;
  /** First wait between attempts, doubled each time (default 1000 ms). */
  retryDelayMs?: number;
  /** Give up an attempt when no bytes arrive for this long (default 60 s). */
  idleTimeoutMs?: number;
  fetch?: typeof globalThis.fetch;
}

/** Network trouble worth another attempt (as opposed to a 404 or a bad checksum). */
class RetryableError extends Error {}

/** The server could not be reached (or kept failing) after every retry; `cause` is the last error. */
export class DownloadNetworkError extends GraftError {
  constructor(
    message: string,
    /** The last network failure in a few words (ECONNREFUSED, HTTP 503 ...). */
    readonly reason: string,
    options: { file?: string; cause?: unknown },
  ) {
    super(message, options);
  }
}

/** Start of a `Content-Range: bytes start-end/total` header, and its total. */
function parseContentRange(header: string | null): { start: number; total?: number } | undefined {
  const m = header?.match(/^bytes (\d+)-\d+\/(\d+|\*)$/);
  if (!m) return undefined;
  return { start: Number(m[1]), total: m[2] === '*' ? undefined : Number(m[2]) };
}

async function fileSize(file: string): Promise<number> {
  try {
    return (await stat(file)).size;
  } catch {
    return 0;
  }
}

async function md5Of(file: string): Promise<string> {
  const hash = createHash('md5');
  for await (const chunk of createReadStream(file)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

function reasonOf(err: unknown): string {
  const cause = (err as { cause?: { code?: string; message?: string } }).cause;
  return cause?.code ?? cause?.message ?? (err as Error).message ?? String(err);
}

/**
 * Downloads `url` to `dest` once: an existing `dest` is returned untouched (it only ever appears
 * complete and checked, by rename). Bytes go to `dest.part` first; an interrupted transfer is
 * resumed with an HTTP Range request (or restarted when the server ignores Range), network errors
 * are retried with exponential backoff, and the md5 is checked before the rename. Calls for the
 * same `dest` (from any process on this machine) take turns through `dest.lock`.
 * Throws GraftError; DownloadNetworkError (cause: the last error) when the server could not be reached.
 */
export async function downloadFile(url: string, dest: string, opts: DownloadOptions = {}): Promise<string> {
  if ((await fileSize(dest)) > 0) return dest;
  await makeFolder(dirname(dest));
  const release = await lockDownload(dest);
  try {
    // Another process may have finished it while we waited for the lock.
    if ((await fileSize(dest)) > 0) return dest;
    return await downloadUnlocked(url, dest, opts);
  } finally {
    await release();
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * One download of `dest` at a time on this machine: two processes appending to the same .part
 * would corrupt it. `dest.lock` holds the owner's pid; a lock whose process is gone is stale.
 */
async function lockDownload(dest: string): Promise<() => Promise<void>> {
  const lock = `${dest}.lock`;
  for (;;) {
    try {
      const handle = await open(lock, 'wx');
      await handle.writeFile(String(process.pid));
      await handle.close();
      return () => rm(lock, { force: true });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw describeFsError(err, lock, 'create');
    }
    const text = (await readFile(lock, 'utf8').catch(() => '')).trim();
    const owner = Number(text);
    const justCreated = text === '' && Date.now() - ((await stat(lock).catch(() => undefined))?.mtimeMs ?? 0) < 5000;
    if (!justCreated && (!Number.isInteger(owner) || owner <= 0 || !isAlive(owner))) {
      await rm(lock, { force: true });
      continue;
    }
    await new Promise((r) => setTimeout(r, 250));
  }
}

async function downloadUnlocked(url: string, dest: string, opts: DownloadOptions): Promise<string> {
  const part = `${dest}.part`;
  const doFetch = opts.fetch ?? globalThis.fetch;
  const retries = opts.retries ?? 4;
  const delay = opts.retryDelayMs ?? 1000;
  const idleTimeout = opts.idleTimeoutMs ?? 60_000;
  const showBar = opts.progressBar ?? process.stderr.isTTY === true;
  const showLines = opts.progressBar === undefined && !showBar;
  const mb = (n: number) => (n / 1e6).toFixed(1);

  let bar: cliProgress.SingleBar | undefined;
  let announced = false;
  const progress = (p: DownloadProgress): void => {
    opts.onProgress?.(p);
    if (showLines && !announced) {
      announced = true;
      process.stderr.write(`downloading ${url} (${p.total === undefined ? 'size unknown' : `${mb(p.total)} MB`}) to ${dest}\n`);
    }
    if (!showBar) return;
    if (!bar) {
      bar = new cliProgress.SingleBar(
        { format: `${basename(dest)} [{bar}] {percentage}% {mb}/{totalMb} MB`, stream: process.stderr, hideCursor: true, clearOnComplete: false },
        cliProgress.Presets.shades_classic,
      );
      bar.start(p.total ?? 0, p.received, { mb: mb(p.received), totalMb: p.total ? mb(p.total) : '?' });
    } else {
      bar.update(p.received, { mb: mb(p.received) });
    }
  };

  let lastError: unknown;
  try {
    for (let attempt = 0; attempt <= retries; attempt++) {
      if (attempt > 0) await new Promise((r) => setTimeout(r, delay * 2 ** (attempt - 1)));
      try {
        await fetchInto(url, part, doFetch, idleTimeout, progress);
        lastError = undefined;
        break;
      } catch (err) {
        if (!(err instanceof RetryableError)) throw err;
        lastError = err.cause ?? err;
      }
    }
  } finally {
    bar?.stop();
  }
  if (lastError !== undefined) {
    const reason = reasonOf(lastError);
    const kept = (await fileSize(part)) > 0 ? `; ${basename(part)} is kept and will be resumed` : '';
    throw new DownloadNetworkError(`cannot download ${url}: ${reason} (after ${retries + 1} attempt${retries === 0 ? '' : 's'}${kept})`, reason, {
      file: dest,
      cause: lastError,
    });
  }

  if (opts.md5) {
    const got = await md5Of(part);
    if (got !== opts.md5.toLowerCase()) {
      await rm(part, { force: true });
      throw new GraftError(`${url}: downloaded file has md5 ${got}, expected ${opts.md5}; it was deleted (a broken mirror or proxy?), try again`, { file: dest });
    }
  }
  try {
    await rename(part, dest);
  } catch (err) {
    throw describeFsError(err, dest, 'write');
  }
  if (showLines) process.stderr.write(`downloaded ${basename(dest)} (${mb(await fileSize(dest))} MB${opts.md5 ? ', md5 checked' : ''})\n`);
  return dest;
}

/** One attempt: appends to `part` from its current size (or rewrites it when the server restarts). */
async function fetchInto(
  url: string,
  part: string,
  doFetch: typeof globalThis.fetch,
  idleTimeoutMs: number,
  progress: (p: DownloadProgress) => void,
): Promise<void> {
  let offset = await fileSize(part);
  const abort = new AbortController();
  let idle = setTimeout(() => abort.abort(new Error(`no data for ${idleTimeoutMs / 1000} s`)), idleTimeoutMs);
  const touch = () => {
    clearTimeout(idle);
    idle = setTimeout(() => abort.abort(new Error(`no data for ${idleTimeoutMs / 1000} s`)), idleTimeoutMs);
  };
  try {
    let res: Response;
    try {
      // identity: byte offsets (Range, Content-Length) must count file bytes, not compressed ones.
      const headers: Record<string, string> = { 'Accept-Encoding': 'identity' };
      if (offset > 0) headers.Range = `bytes=${offset}-`;
      res = await doFetch(url, { headers, signal: abort.signal });
    } catch (err) {
      throw new RetryableError('request failed', { cause: err });
    }
    if (res.status === 416 && offset > 0) {
      // "bytes */N" with N our size: the part is already complete (an earlier run stopped before
      // the rename). Otherwise our part is no prefix the server recognises: start over.
      const whole = res.headers.get('content-range')?.match(/^bytes \*\/(\d+)$/);
      await res.body?.cancel();
      if (whole && Number(whole[1]) === offset) {
        progress({ received: offset, total: offset });
        return;
      }
      await rm(part, { force: true });
      throw new RetryableError('range not satisfiable', { cause: new Error('HTTP 416, restarting') });
    }
    if (res.status >= 500 || res.status === 408 || res.status === 429) {
      await res.body?.cancel();
      throw new RetryableError(`HTTP ${res.status}`, { cause: new Error(`HTTP ${res.status} ${res.statusText}`) });
    }
    if (res.status !== 200 && res.status !== 206) {
      await res.body?.cancel();
      throw new GraftError(`cannot download ${url}: HTTP ${res.status} ${res.statusText}`.trim());
    }
    const range = res.status === 206 ? parseContentRange(res.headers.get('content-range')) : undefined;
    if (res.status === 200 || range?.start !== offset) offset = 0; // server ignored Range: take the whole file again
    const encoded = (res.headers.get('content-encoding') ?? 'identity') !== 'identity'; // sizes then count compressed bytes
    const length = Number(res.headers.get('content-length') ?? NaN);
    const total = encoded ? undefined : range?.total ?? (Number.isFinite(length) ? offset + length : undefined);
    if (!res.body) throw new RetryableError('empty body', { cause: new Error('empty response body') });

    let handle;
    try {
      handle = await open(part, offset > 0 ? 'a' : 'w');
    } catch (err) {
      throw describeFsError(err, part, 'write');
    }
    let received = offset;
    try {
      progress({ received, total });
      for await (const chunk of res.body) {
        touch();
        await handle.write(chunk);
        received += chunk.byteLength;
        progress({ received, total });
      }
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOSPC') throw describeFsError(err, part, 'write');
      throw new RetryableError('transfer interrupted', { cause: abort.signal.aborted ? abort.signal.reason : err });
    } finally {
      await handle.close();
    }
    if (total !== undefined && received !== total) {
      throw new RetryableError('short transfer', { cause: new Error(`transfer ended at ${received} of ${total} bytes`) });
    }
  } finally {
    clearTimeout(idle);
  }
}
