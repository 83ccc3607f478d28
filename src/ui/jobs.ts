/**
 * graft ui's training queue: each run is `graft train ...` as its own process, one at a time, the
 * others queued. Its output is kept (a tail) and its progress lines parsed; stop sends SIGINT,
 * graft's clean interrupt (the checkpoint stays; --resume continues).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { EventEmitter } from 'node:events';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { PROGRESS_PREFIX } from '../train/progbar.js';
import { MALLOC_TUNABLES } from '../util/malloc-tunables.js';
import { packageRoot } from '../util/paths.js';
import { commandLine } from './train-args.js';

export type JobState = 'queued' | 'running' | 'finished' | 'stopped' | 'failed';

export interface Progress {
  /** What the process is doing: '' (training steps), 'Decoding', 'Features', 'Views'. */
  label: string;
  done: number;
  total: number;
  /** Training: the epoch running (1-based) and how many. */
  epoch?: number;
  epochs?: number;
  /** Seconds left in the whole run, estimated from the epochs and steps so far. */
  eta?: number;
  loss?: number;
  accuracy?: number;
}

export interface Job {
  id: number;
  run: string;
  args: string[];
  command: string;
  state: JobState;
  exitCode?: number | null;
  /** The last lines the process printed (progress lines aside). */
  log: string[];
  progress?: Progress;
  /** The last line of a failed run's error output: what went wrong. */
  error?: string;
  startedAt?: number;
  endedAt?: number;
}

const LOG_LINES = 300;

export interface QueueOptions {
  /** The command that trains: [executable, ...leading args]; default: this node running graft's bin/graft.js. */
  command?: string[];
}

/** Emits 'job' (a Job, after any change) and 'log' ({ id, line }). */
export class TrainingQueue extends EventEmitter {
  private readonly jobs: Job[] = [];
  private child: ChildProcess | null = null;
  private running: Job | null = null;
  private readonly stopping = new Set<number>();
  private nextId = 1;
  private readonly command: string[];
  private epochStart = 0;
  private epochSeconds: number[] = [];

  constructor(opts: QueueOptions = {}) {
    super();
    this.command = opts.command ?? [process.execPath, join(packageRoot(), 'bin', 'graft.js')];
  }

  list(): Job[] {
    return this.jobs;
  }

  get(id: number): Job | undefined {
    return this.jobs.find((j) => j.id === id);
  }

  /** The job of this run that is queued or running, if any. */
  active(run: string): Job | undefined {
    return this.jobs.find((j) => j.run === run && (j.state === 'queued' || j.state === 'running'));
  }

  /** The latest job of this run. */
  latest(run: string): Job | undefined {
    return this.jobs.filter((j) => j.run === run).at(-1);
  }

  /** Queues `graft train ARGS` for `run`; it starts at once when nothing else runs. */
  add(run: string, args: string[]): Job {
    const job: Job = { id: this.nextId++, run, args: ['train', ...args], command: commandLine(['train', ...args]), state: 'queued', log: [] };
    this.jobs.push(job);
    this.emit('job', job);
    this.startNext();
    return job;
  }

  /** Stops a job: a queued one leaves the queue, a running one gets SIGINT (graft stops cleanly). */
  stop(id: number): Job | undefined {
    const job = this.get(id);
    if (!job) return undefined;
    if (job.state === 'queued') {
      job.state = 'stopped';
      job.endedAt = Date.now();
      this.emit('job', job);
    } else if (job.state === 'running' && this.child) {
      this.stopping.add(id);
      this.child.kill('SIGINT');
    }
    return job;
  }

  /** Stops the running job and empties the queue; resolves once the process has ended. */
  async close(): Promise<void> {
    for (const j of this.jobs) if (j.state === 'queued') this.stop(j.id);
    const child = this.child;
    if (!child || !this.running) return;
    const ended = new Promise<void>((r) => child.once('close', () => r()));
    this.stop(this.running.id);
    await ended;
  }

  private startNext(): void {
    if (this.running) return;
    const job = this.jobs.find((j) => j.state === 'queued');
    if (!job) return;
    const [exe, ...lead] = this.command;
    const child = spawn(exe!, [...lead, ...job.args], {
      stdio: ['ignore', 'pipe', 'pipe'],
      // The malloc tunables up front: the launcher then trains in this very process (no relaunch), so SIGINT reaches it directly.
      env: { ...process.env, GLIBC_TUNABLES: process.env.GLIBC_TUNABLES ?? MALLOC_TUNABLES, GRAFT_PROGRESS: 'json' },
    });
    this.child = child;
    this.running = job;
    this.epochStart = Date.now();
    this.epochSeconds = [];
    job.state = 'running';
    job.startedAt = Date.now();
    this.emit('job', job);
    const onLine = (line: string) => this.onLine(job, line);
    createInterface({ input: child.stdout! }).on('line', onLine);
    createInterface({ input: child.stderr! }).on('line', onLine);
    child.on('error', (err) => {
      job.error = `could not start graft: ${err.message}`;
    });
    child.on('close', (code) => {
      job.exitCode = code;
      job.endedAt = Date.now();
      job.state = code === 0 ? 'finished' : this.stopping.has(job.id) ? 'stopped' : 'failed';
      if (job.state === 'failed' && !job.error) job.error = [...job.log].reverse().find((l) => /error/.test(l)) ?? job.log.at(-1) ?? `exit status ${code}`;
      this.stopping.delete(job.id);
      this.child = null;
      this.running = null;
      this.emit('job', job);
      this.startNext();
    });
  }

  private onLine(job: Job, line: string): void {
    if (line.startsWith(PROGRESS_PREFIX)) {
      try {
        this.onProgress(job, JSON.parse(line.slice(PROGRESS_PREFIX.length)) as Progress);
      } catch {
        // A progress line cut short: the next one follows.
      }
      return;
    }
    const epoch = /^Epoch (\d+)\/(\d+) - /.exec(line) ?? /^Resuming from the checkpoint of epoch (\d+)\/(\d+)/.exec(line);
    if (epoch) {
      this.epochSeconds.push((Date.now() - this.epochStart) / 1000);
      this.epochStart = Date.now();
      job.progress = { label: 'epoch done', done: 0, total: 0, epoch: Number(epoch[1]), epochs: Number(epoch[2]) };
      this.emit('job', job);
    }
    job.log.push(line);
    if (job.log.length > LOG_LINES) job.log.splice(0, job.log.length - LOG_LINES);
    this.emit('log', { id: job.id, line });
  }

  private onProgress(job: Job, p: Progress): void {
    const previous = job.progress;
    const epochs = previous?.epochs ?? epochsOf(job.args);
    // Training steps: the epoch is the one after the last finished.
    if (p.label === '') {
      if (previous?.label !== '') this.epochStart = Date.now();
      const epoch = previous?.label === 'epoch done' ? previous.epoch! + 1 : (previous?.epoch ?? 1);
      const elapsed = (Date.now() - this.epochStart) / 1000;
      const perEpoch = this.epochSeconds.length > 0 ? this.epochSeconds.reduce((a, b) => a + b, 0) / this.epochSeconds.length : p.done > 0 ? (elapsed * p.total) / p.done : undefined;
      const thisLeft = p.done > 0 ? (elapsed * (p.total - p.done)) / p.done : perEpoch;
      const eta = perEpoch !== undefined && thisLeft !== undefined && epochs !== undefined ? thisLeft + perEpoch * Math.max(0, epochs - epoch) : undefined;
      job.progress = { ...p, epoch, epochs, ...(eta !== undefined && { eta: Math.round(eta) }) };
    } else {
      job.progress = { ...p, epochs };
    }
    this.emit('job', job);
  }
}

function epochsOf(args: string[]): number | undefined {
  const i = args.indexOf('--epochs');
  return i >= 0 ? Number(args[i + 1]) : 20;
}
