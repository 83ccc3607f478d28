/**
 * `graft ui`'s server: node:http on 127.0.0.1, every request checked (Host, token, Origin; see
 * security.ts), files served only from the runs folder and the folders the user opened
 * (served-folders.ts). Heavy modules (sharp, onnxruntime, the training code) load on first use,
 * so an idle server stays small.
 */
import { execFile } from 'node:child_process';
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createRequire } from 'node:module';
import type { AddressInfo } from 'node:net';
import { dirname, extname, join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { GraftError } from '../util/errors.js';
import { packageRoot } from '../util/paths.js';
import { HttpError, readBody, readJson, sendError, sendJson } from './http.js';
import { TrainingQueue, type Job, type QueueOptions } from './jobs.js';
import { listRuns, readJson as readJsonFile, readRunHistory, runSummary } from './runs.js';
import { allowedHosts, hostAllowed, newToken, originAllowed, SECURITY_HEADERS, tokenCookie, tokenSource } from './security.js';
import { ServedFolders } from './served-folders.js';
import { checkRunName, commandLine, trainArgs } from './train-args.js';

export interface UiOptions {
  /** Where runs live (default "runs"); created when missing. */
  runsDir?: string;
  /** Default 127.0.0.1. */
  host?: string;
  /** Default 0: any free port. */
  port?: number;
  /** Default: a fresh random token. */
  token?: string;
  /** Largest image upload in bytes (default 20 MB). */
  maxUpload?: number;
  /** How training processes are started (tests). */
  queue?: QueueOptions;
}

export interface UiServer {
  url: string;
  token: string;
  port: number;
  server: Server;
  close(): Promise<void>;
}

export const DEFAULT_MAX_UPLOAD = 20 << 20;

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json',
  '.png': 'image/png',
  '.jpg': 'image/jpeg',
  '.jpeg': 'image/jpeg',
  '.gif': 'image/gif',
  '.webp': 'image/webp',
  '.bmp': 'image/bmp',
  '.avif': 'image/avif',
  '.tif': 'image/tiff',
  '.tiff': 'image/tiff',
  '.txt': 'text/plain; charset=utf-8',
};

const IMAGE_TYPES = new Set(['.png', '.jpg', '.jpeg', '.gif', '.webp', '.bmp', '.avif', '.tif', '.tiff']);

/** The page's own files and the chart library, from the package (works offline). */
function staticFiles(): Map<string, string> {
  const ui = join(packageRoot(), 'src', 'ui', 'static');
  const uplot = join(dirname(createRequire(import.meta.url).resolve('uplot')));
  return new Map([
    ['/', join(ui, 'index.html')],
    ['/app.js', join(ui, 'app.js')],
    ['/style.css', join(ui, 'style.css')],
    ['/vendor/uPlot.esm.js', join(uplot, 'uPlot.esm.js')],
    ['/vendor/uPlot.min.css', join(uplot, 'uPlot.min.css')],
  ]);
}

async function sendFile(res: ServerResponse, file: string, cache = 'no-cache'): Promise<void> {
  const st = await stat(file).catch(() => null);
  if (!st?.isFile()) throw new HttpError(404, 'not found');
  res.writeHead(200, { 'content-type': TYPES[extname(file).toLowerCase()] ?? 'application/octet-stream', 'content-length': st.size, 'cache-control': cache });
  await new Promise<void>((done, fail) => createReadStream(file).on('error', fail).on('end', done).pipe(res));
}

type Handler = (req: IncomingMessage, res: ServerResponse, url: URL, params: string[]) => Promise<void> | void;

/** Starts the server; resolves once it listens. */
export async function startUiServer(opts: UiOptions = {}): Promise<UiServer> {
  const host = opts.host ?? '127.0.0.1';
  const token = opts.token ?? newToken();
  const maxUpload = opts.maxUpload ?? DEFAULT_MAX_UPLOAD;
  const runsDir = resolve(opts.runsDir ?? 'runs');
  const { mkdir } = await import('node:fs/promises');
  await mkdir(runsDir, { recursive: true });
  const folders = new ServedFolders();
  await folders.addRuns(runsDir);
  const queue = new TrainingQueue(opts.queue);
  const files = staticFiles();
  let port = 0;
  let hosts = new Set<string>();

  // Heavy parts, loaded on first use.
  const datasets = lazy(async () => new (await import('./datasets.js')).DatasetViews(folders));
  const models = lazy(async () => new (await import('./try-it.js')).ModelCache(runsDir));

  const runDir = (name: string) => join(runsDir, checkRunName(name));
  const startTraining = async (form: Record<string, unknown>, resume: boolean) => {
    const name = checkRunName(form.name);
    if (queue.active(name)) throw new HttpError(409, `run ${name} is already queued or running`);
    const args = trainArgs(form, join(runsDir, name));
    if (resume) args.push('--resume');
    const job = queue.add(name, args);
    return job;
  };

  const routes: [string, RegExp, Handler][] = [
    ['GET', /^\/api\/info$/, (_q, res) => sendJson(res, { runsDir, folders: folders.list().map(({ id, path }) => ({ id, path })), maxUpload })],
    ['POST', /^\/api\/folders$/, async (req, res) => {
      const body = await readJson(req);
      const folder = await folders.open(String(body.path ?? ''));
      const split = typeof body.validationSplit === 'number' ? body.validationSplit : undefined;
      sendJson(res, { id: folder.id, path: folder.path, ...(await (await datasets()).summary(folder.id, { validationSplit: split })) });
    }],
    ['GET', /^\/api\/folders\/([^/]+)\/report$/, async (_q, res, url, [id]) => {
      sendJson(res, await (await datasets()).report(id!, url.searchParams.get('decode') === '1'));
    }],
    ['GET', /^\/api\/folders\/([^/]+)\/images$/, async (_q, res, url, [id]) => {
      const p = url.searchParams;
      sendJson(res, await (await datasets()).images(id!, p.get('split') ?? 'train', p.get('class') ?? '', Number(p.get('offset') ?? 0), Number(p.get('limit') ?? 100)));
    }],
    ['GET', /^\/api\/thumb$/, async (_q, res, url) => {
      const file = await folders.resolveFile(url.searchParams.get('folder') ?? '', url.searchParams.get('path') ?? '');
      const jpeg = await (await datasets()).thumbnail(file);
      res.writeHead(200, { 'content-type': 'image/jpeg', 'cache-control': 'private, max-age=3600' }).end(jpeg);
    }],
    ['GET', /^\/api\/file$/, async (_q, res, url) => {
      const id = url.searchParams.get('folder') ?? '';
      const file = await folders.resolveFile(id, url.searchParams.get('path') ?? '');
      // Pictures only (and a run's JSON and text reports): never a page or a script, which would run as this origin.
      const ext = extname(file).toLowerCase();
      if (!IMAGE_TYPES.has(ext) && !(id === 'runs' && (ext === '.json' || ext === '.txt'))) throw new HttpError(403, `only images are served (not ${ext || 'files without an extension'})`);
      await sendFile(res, file);
    }],
    ['GET', /^\/api\/augment$/, async (_q, res, url) => {
      const file = await folders.resolveFile(url.searchParams.get('folder') ?? '', url.searchParams.get('path') ?? '');
      const png = await (await datasets()).augmentPreview(file, Number(url.searchParams.get('seed') ?? 0));
      res.writeHead(200, { 'content-type': 'image/png', 'cache-control': 'no-store' }).end(png);
    }],
    ['GET', /^\/api\/train\/defaults$/, async (_q, res) => sendJson(res, await trainDefaults())],
    ['POST', /^\/api\/train\/command$/, async (req, res) => {
      const form = await readJson(req);
      const args = ['train', ...trainArgs(form, join(runsDir, checkRunName(form.name)))];
      sendJson(res, { args, command: commandLine(args) });
    }],
    ['POST', /^\/api\/train$/, async (req, res) => sendJson(res, await startTraining(await readJson(req), false), 202)],
    ['GET', /^\/api\/jobs$/, (_q, res) => sendJson(res, queue.list())],
    ['POST', /^\/api\/jobs\/(\d+)\/stop$/, (_q, res, _u, [id]) => {
      const job = queue.stop(Number(id));
      if (!job) throw new HttpError(404, `no job ${id}`);
      sendJson(res, job);
    }],
    ['GET', /^\/api\/runs$/, async (_q, res) => sendJson(res, await listRuns(runsDir, queue))],
    ['GET', /^\/api\/runs\/([^/]+)$/, async (_q, res, _u, [name]) => {
      const summary = await runSummary(runsDir, checkRunName(name), queue);
      if (!summary) throw new HttpError(404, `no run ${name}`);
      sendJson(res, { ...summary, history: await readRunHistory(runsDir, name!), job: queue.latest(name!) ?? null });
    }],
    ['POST', /^\/api\/runs\/([^/]+)\/resume$/, async (req, res, _u, [name]) => {
      const earlier = queue.latest(checkRunName(name));
      if (!earlier) throw new HttpError(409, `run ${name} was not started from this page: resume it with its own command line and --resume`);
      if (queue.active(name!)) throw new HttpError(409, `run ${name} is already queued or running`);
      const body = await readJson(req);
      const args = earlier.args.slice(1).filter((a) => a !== '--resume' && a !== '--overwrite');
      const at = args.indexOf('--epochs');
      if (typeof body.epochs === 'number') at >= 0 ? (args[at + 1] = String(body.epochs)) : args.push('--epochs', String(body.epochs));
      sendJson(res, queue.add(name!, [...args, '--resume']), 202);
    }],
    ['GET', /^\/api\/runs\/([^/]+)\/events$/, (req, res, _u, [name]) => runEvents(req, res, runsDir, checkRunName(name), queue)],
    ['GET', /^\/api\/runs\/([^/]+)\/metrics$/, async (_q, res, _u, [name]) => {
      const metrics = await readJsonFile<Record<string, unknown>>(join(runDir(name!), 'metrics.json'));
      if (!metrics) throw new HttpError(404, `run ${name} has no metrics.json yet (written when training ends)`);
      const items = (metrics.misclassified as { file?: string }[] | undefined) ?? [];
      const located = await Promise.all(items.map(async (m) => ({ ...m, served: m.file ? await folders.locate(m.file) : null })));
      sendJson(res, { ...metrics, misclassified: located });
    }],
    ['POST', /^\/api\/runs\/([^/]+)\/evaluate$/, async (_q, res, _u, [name]) => {
      // Where the page's own run read its validation images: --val, or the data folder's validation part, or the data folder.
      const args = queue.latest(checkRunName(name))?.args ?? [];
      const flag = (f: string) => (args.includes(f) ? args[args.indexOf(f) + 1]! : null);
      const data = flag('--data');
      const hints = [flag('--val'), ...(data ? [join(data, 'validation'), join(data, 'val'), data] : [])].filter((h): h is string => h !== null);
      sendJson(res, await (await models()).evaluateRun(name!, folders, hints));
    }],
    ['POST', /^\/api\/runs\/([^/]+)\/predict$/, async (req, res, url, [name]) => {
      const image = await readUpload(req, maxUpload);
      const cls = url.searchParams.get('class');
      sendJson(res, await (await models()).tryImage(checkRunName(name), image, { explain: url.searchParams.get('explain') !== '0', classIndex: cls === null ? undefined : Number(cls) }));
    }],
  ];

  const server = createServer((req, res) => {
    for (const [k, v] of Object.entries(SECURITY_HEADERS)) res.setHeader(k, v);
    void handle(req, res).catch((err: unknown) => {
      if (err instanceof HttpError) sendError(res, err.status, err.message);
      else if (err instanceof GraftError) sendError(res, 400, err.message);
      else {
        sendError(res, 500, `internal error: ${err instanceof Error ? err.message : String(err)}`);
        if (process.env.GRAFT_DEBUG) console.error(err);
      }
    });
  });

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    // DNS rebinding: a page on another name that resolves here must not reach the server.
    if (!hostAllowed(req, hosts)) return sendError(res, 403, 'unknown Host header');
    const url = new URL(req.url ?? '/', `http://${req.headers.host}`);
    const source = tokenSource(req, url, token, port);
    if (!source) return sendError(res, 403, 'missing or wrong token: open the URL graft ui printed');
    if (!originAllowed(req, hosts)) return sendError(res, 403, 'cross-origin request refused');
    if (source === 'query') {
      res.setHeader('set-cookie', tokenCookie(token, port));
      // The page itself: drop the token from the address bar (and so from history) once the cookie holds it.
      if (req.method === 'GET' && url.pathname === '/') {
        res.writeHead(303, { location: '/' }).end();
        return;
      }
    }
    const page = files.get(url.pathname);
    if (page && (req.method === 'GET' || req.method === 'HEAD')) return sendFile(res, page);
    for (const [method, pattern, handler] of routes) {
      const m = pattern.exec(url.pathname);
      if (!m) continue;
      if (req.method !== method) continue;
      return handler(req, res, url, m.slice(1).map(decodeURIComponent));
    }
    const known = routes.some(([, p]) => p.test(url.pathname));
    sendError(res, known ? 405 : 404, known ? `${req.method} is not allowed here` : 'not found');
  }

  await new Promise<void>((ok, fail) => {
    server.once('error', fail);
    server.listen(opts.port ?? 0, host, () => ok());
  });
  port = (server.address() as AddressInfo).port;
  hosts = allowedHosts(host, port);
  const shownHost = host.includes(':') ? `[${host}]` : host;
  return {
    url: `http://${shownHost}:${port}/?token=${token}`,
    token,
    port,
    server,
    async close() {
      await queue.close();
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
      const m = models.loaded();
      if (m) await m.dispose();
    },
  };
}

/** An uploaded image: the raw body, its name in X-File-Name (URL-encoded). */
async function readUpload(req: IncomingMessage, limit: number): Promise<{ name: string; bytes: Uint8Array }> {
  const bytes = await readBody(req, limit);
  if (bytes.length === 0) throw new HttpError(400, 'no image in the request');
  let name = 'upload';
  try {
    name = decodeURIComponent(String(req.headers['x-file-name'] ?? 'upload')).replace(/[\\/\0]/g, '_') || 'upload';
  } catch {
    // A name that is not valid URL encoding: keep the neutral one.
  }
  return { name, bytes };
}

/**
 * graft train's defaults (the library's recipe), for the form. Read in a child process: the
 * training code brings onnxruntime and the rest, which the idle server does without.
 */
let defaultsCache: Promise<Record<string, unknown>> | undefined;
function trainDefaults(): Promise<Record<string, unknown>> {
  return (defaultsCache ??= new Promise((ok, fail) => {
    // The compiled library (also when this server runs from source under tsx).
    const learner = pathToFileURL(join(packageRoot(), 'dist', 'src', 'learner.js')).href;
    const script = `const { DEFAULT_RECIPE: r } = await import(${JSON.stringify(learner)});
const head = r.head.layers.map((l) => (l.kind === 'dense' ? 'dense:' + l.units + ':' + l.activation : l.kind === 'dropout' ? 'dropout:' + l.rate : l.kind === 'avgpool' || l.kind === 'maxpool' ? l.kind + ':' + l.pool + ':' + l.stride : l.kind)).join(',');
process.stdout.write(JSON.stringify({ epochs: r.epochs, batchSize: r.batchSize, mode: r.mode.kind === 'views' ? 'views=' + r.mode.views : r.mode.kind, head,
  optimizer: r.optimizer.kind === 'rmsprop' && r.optimizer.legacy ? 'rmsprop-legacy' : r.optimizer.kind, lr: r.optimizer.learningRate ?? 1e-4, preprocess: r.preprocess,
  inputSize: r.inputSize.join('x'), orientation: 'ignore', seed: 0, augment: true, weights: 'imagenet' }));`;
    execFile(process.execPath, ['--input-type=module', '-e', script], { env: { ...process.env, ORT_DISABLE_TELEMETRY: process.env.ORT_DISABLE_TELEMETRY ?? '1' } }, (err, stdout) => {
      if (err) {
        defaultsCache = undefined;
        fail(new Error(`could not read graft train's defaults: ${err.message}`));
      } else ok(JSON.parse(stdout) as Record<string, unknown>);
    });
  }));
}

/**
 * Server-Sent Events for one run: 'history' whenever the run's history changes (polled: the
 * checkpoint's grows epoch by epoch, history.json comes at the end), 'job' when the page's process for it changes (progress, state), 'log' for its
 * output lines.
 */
async function runEvents(req: IncomingMessage, res: ServerResponse, runsDir: string, name: string, queue: TrainingQueue): Promise<void> {
  res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-store', connection: 'keep-alive' });
  const send = (event: string, data: unknown) => res.write(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
  let lastMtime = -1;
  let lastStatus = '';
  let ticks = 0;
  const poll = async () => {
    // history.json comes with the model at the end; the epochs so far come with each checkpoint.
    const mtimeOf = async (file: string) => (await stat(join(runsDir, name, file)).catch(() => null))?.mtimeMs ?? 0;
    const m = Math.max(await mtimeOf('history.json'), await mtimeOf(join('checkpoint', 'checkpoint.json')));
    const changed = m !== lastMtime;
    if (changed) {
      lastMtime = m;
      send('history', await readRunHistory(runsDir, name));
    }
    // The status (it reads the checkpoint, which lists every image) when the history moved, else every 2 s.
    if (!changed && ++ticks % 4 !== 0) return;
    const summary = await runSummary(runsDir, name, queue);
    const status = summary?.status ?? queue.latest(name)?.state ?? 'empty';
    if (status !== lastStatus) {
      lastStatus = status;
      send('status', { status, summary });
    }
  };
  // The job without its log: the log lines come as 'log' events.
  const onJob = (job: Job) => {
    if (job.run === name) send('job', { ...job, log: undefined });
  };
  const onLog = ({ id, line }: { id: number; line: string }) => {
    if (queue.get(id)?.run === name) send('log', { id, line });
  };
  queue.on('job', onJob);
  queue.on('log', onLog);
  const job = queue.latest(name);
  if (job) send('job', job);
  await poll();
  const timer = setInterval(() => void poll().catch(() => undefined), 500);
  const keepAlive = setInterval(() => res.write(': keep-alive\n\n'), 15000);
  req.on('close', () => {
    clearInterval(timer);
    clearInterval(keepAlive);
    queue.off('job', onJob);
    queue.off('log', onLog);
  });
}

/** A value made on first use (once, even when asked for twice at once). */
function lazy<T>(make: () => Promise<T>): (() => Promise<T>) & { loaded(): T | undefined } {
  let promise: Promise<T> | undefined;
  let value: T | undefined;
  const get = () => (promise ??= make().then((v) => (value = v)));
  return Object.assign(get, { loaded: () => value });
}
