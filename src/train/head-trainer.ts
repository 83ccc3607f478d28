import { availableParallelism } from 'node:os';
import type { Worker } from 'node:worker_threads';
import { GraftError } from '../util/errors.js';
import { Random } from '../util/random.js';
import { mallocTunablesSet } from '../util/malloc-tunables.js';
import { callWorker, nextReply, startWorker, type WorkerReply } from '../util/worker-calls.js';
// Its workers load onnxruntime; a worker's process.env is its own copy, so the opt-out must be
// made here, in the process environment, before they start.
import '../util/onnxruntime-telemetry.js';
import type { HeadParams } from '../model/head.js';
import { gridPoolBackward, gridPoolForward } from '../model/grid-pool.js';
import { denseShapes, headGridPool } from '../model/head.js';
import type { Activation, GridPoolSpec, HeadSpec } from '../model/head-spec.js';
import { applyUpdate, resolveOptimizer, slotCount, type OptimizerConfig, type OptimizerState, type ResolvedOptimizer } from './optimizers.js';
import { binaryAccuracy, binaryCrossentropy, categoricalAccuracy, categoricalCrossentropy } from './losses.js';
import { sampleWeights } from './class-weights.js';
import { deriveSeed, STREAM_DROPOUT } from './seeds.js';
import type { ShardInit, ShardRequest } from './dense-shard-worker.js';
import type { SavedOptimizerState, SavedParams, StreamedArray } from './checkpoint.js';
import { transposeInto } from '../util/transpose.js';

export interface HeadTrainerOptions {
  seed: number;
  /** Worker threads sharing the first Dense kernel (default: available cores). */
  threads?: number;
  /** Shape of one sample's features, e.g. [7, 7, 768]; needed for a GlobalAveragePooling2D head. */
  featureShape?: number[];
  /**
   * Features arrive already pooled by the backbone (its pool option): a head starting with
   * GlobalAveragePooling2D then takes `channels` floats a sample and skips its own pooling.
   * featureShape stays the cut layer's shape: the weights and the checkpoint fingerprint are
   * those of the same head.
   */
  pooledFeatures?: boolean;
  /** onnxruntime intra-op threads per worker (default 1: the workers already use every core). */
  ortThreads?: number;
  /** Largest batch trainStep accepts (default DEFAULT_MAX_BATCH, 64); evaluate/predict split bigger inputs. */
  maxBatch?: number;
  /**
   * Inputs per dWᵀ product in the workers: each product is the gradient of that many rows of the
   * kernel over a worker's columns, updated at once. onnxruntime-node allocates every output afresh
   * (a preallocated output is copied into), so the block size is about the allocator and the cache:
   * under graft's malloc settings (util/malloc-tunables.ts) outputs of ~2 MiB are recycled from
   * the heap and still in cache when the update reads them; otherwise each block's memory is
   * faulted in anew and one product per step is fastest. Default: ~2 MiB of output under those
   * settings, else all inputs.
   */
  blockInputs?: number;
  /** Floats per block when the first kernel's optimiser slots are streamed to a checkpoint (default 1M, 4 MB). */
  checkpointBlockFloats?: number;
  /** trainStep can also give dL/d(features), for fine-tuning the backbone beneath (default false). */
  inputGradient?: boolean;
  /**
   * Keras's class_weight, one weight per class (resolveClassWeights): scales each training sample's
   * loss and gradient; the training loss is then sum(w * loss) / n, as Keras reports it. Evaluation is unweighted.
   */
  classWeights?: readonly number[];
}

export interface StepResult {
  loss: number;
  accuracy: number;
}

type Step = { kind: 'dense'; index: number; activation: Activation } | { kind: 'dropout'; rate: number };

interface Shard {
  worker: Worker;
  col0: number;
  cols: number;
  /** Its part of the first Dense layer's input gradient [maxBatch, inputSize], if asked for. */
  dx: Float32Array | null;
}

/**
 * Trains a head on backbone features. The first Dense layer (37632x1024 in the lab: 99.7% of the
 * weights) is split by columns over worker threads, each running its products on onnxruntime and
 * its optimiser update in SIMD WebAssembly; everything after it is small and runs here in JS.
 */
export class HeadTrainer {
  readonly outputUnits: number;
  /** Largest batch trainStep takes unless options.maxBatch says more. */
  static readonly DEFAULT_MAX_BATCH = 64;
  /** Keras's optimizer.iterations: updates applied so far. */
  iterations = 0;
  private readonly opt: ResolvedOptimizer;
  private readonly steps: Step[];
  private readonly pooling: 'flatten' | 'gap' | 'grid';
  /** The head's grid pooling (avgpool/maxpool), run here when the features come unpooled. */
  private readonly grid: GridPoolSpec | undefined;
  private readonly inputSize: number;
  private readonly featureSize: number;
  private readonly maxBatch: number;
  private dropoutRng: Random;
  /** Optimiser slots of every param array except dense[0].kernel (whose slots live in the workers); index 2*i kernel, 2*i+1 bias. */
  private readonly slots: Float32Array[][];
  private readonly x: Float32Array;
  private readonly h: Float32Array;
  private readonly dh: Float32Array;
  /** Per dense layer: its output activations; per dropout: its mask. */
  private readonly acts: Float32Array[];
  private readonly masks: (Float32Array | null)[];
  private readonly grads: { kernel: Float32Array; bias: Float32Array }[];
  private readonly probs: Float32Array;
  /** Per-class weights of training samples (null: all 1) and the batch's sample weights. */
  private readonly classWeights: readonly number[] | null;
  private readonly weights: Float32Array;
  /** The rate updates use now: the optimiser's, unless a schedule set another (setLearningRate). */
  private lr: number;
  private pending: Promise<unknown> = Promise.resolve();
  /** Rows of the first kernel or its slots on their way to a checkpoint (one block at a time). */
  private streamBlock: Float32Array | null = null;
  private disposed = false;

  private constructor(
    readonly spec: HeadSpec,
    /**
     * The head's weights. The first kernel lives in the workers: here it is empty until syncParams()
     * gathers it (a whole copy held during training would add its size, 154 MB in the lab, to
     * every run's memory).
     */
    readonly params: HeadParams,
    optimizer: OptimizerConfig,
    private readonly seed: number,
    private readonly shards: Shard[],
    shared: { x: SharedArrayBuffer; h: SharedArrayBuffer; dh: SharedArrayBuffer },
    readonly featureShape: number[],
    maxBatch: number,
    private readonly checkpointBlockFloats: number,
    pooledFeatures: boolean,
    classWeights: readonly number[] | undefined,
  ) {
    this.opt = resolveOptimizer(optimizer);
    this.inputSize = params.dense[0]!.inputSize;
    // Pooled by the backbone: the features are the first Dense layer's input as they come.
    this.grid = headGridPool(spec);
    this.pooling = pooledFeatures ? 'flatten' : spec.layers[0]?.kind === 'gap' ? 'gap' : this.grid ? 'grid' : 'flatten';
    this.featureSize = pooledFeatures ? this.inputSize : featureShape.reduce((a, b) => a * b, 1);
    this.maxBatch = maxBatch;
    this.dropoutRng = new Random(deriveSeed(seed, 0, STREAM_DROPOUT));
    let dense = 0;
    this.steps = [];
    for (const l of spec.layers) {
      if (l.kind === 'dense') this.steps.push({ kind: 'dense', index: dense++, activation: l.activation });
      else if (l.kind === 'dropout') this.steps.push({ kind: 'dropout', rate: l.rate });
    }
    this.outputUnits = params.dense.at(-1)!.units;
    HeadTrainer.checkSpec(spec);
    const n = slotCount(this.opt);
    this.slots = params.dense.flatMap((p, i) => [
      i === 0 ? [] : Array.from({ length: n }, () => new Float32Array(p.kernel.length)),
      Array.from({ length: n }, () => new Float32Array(p.bias.length)),
    ]);
    this.x = new Float32Array(shared.x);
    this.h = new Float32Array(shared.h);
    this.dh = new Float32Array(shared.dh);
    this.acts = params.dense.map((p) => new Float32Array(maxBatch * p.units));
    this.masks = this.steps.map((s, i) => (s.kind === 'dropout' ? new Float32Array(maxBatch * this.widthBefore(i)) : null));
    this.grads = params.dense.map((p, i) => ({ kernel: new Float32Array(i === 0 ? 0 : p.kernel.length), bias: new Float32Array(p.bias.length) }));
    this.probs = new Float32Array(maxBatch * this.outputUnits);
    this.classWeights = classWeights ? [...classWeights] : null;
    this.weights = new Float32Array(maxBatch);
    this.lr = this.opt.learningRate;
  }

  /** The learning rate of the next steps. */
  get learningRate(): number {
    return this.lr;
  }

  /** Trains the next steps at another rate (a schedule's); the optimiser's slots are unchanged. */
  setLearningRate(rate: number): void {
    if (!(rate > 0 && Number.isFinite(rate))) throw new GraftError(`learning rate must be a positive number, got ${rate}`);
    this.lr = rate;
  }

  /** Refuses heads the trainer cannot train (checked before any weights or features exist). */
  static checkSpec(spec: HeadSpec): void {
    const dense = spec.layers.filter((l) => l.kind === 'dense');
    const last = dense.at(-1);
    if (!last || !(last.activation === 'sigmoid' && last.units === 1) && last.activation !== 'softmax') {
      throw new GraftError('the head must end in Dense(1, sigmoid) or Dense(k, softmax)');
    }
    if (dense.slice(0, -1).some((l) => l.activation === 'softmax')) throw new GraftError('softmax is only supported on the last Dense layer');
  }

  static async create(spec: HeadSpec, params: HeadParams, optimizer: OptimizerConfig, options: HeadTrainerOptions): Promise<HeadTrainer> {
    const featureShape = options.featureShape ?? (spec.layers[0]?.kind === 'gap' ? undefined : [params.dense[0]!.inputSize]);
    if (!featureShape) throw new GraftError('a GlobalAveragePooling2D head needs options.featureShape');
    if (options.pooledFeatures && spec.layers[0]?.kind !== 'gap' && !headGridPool(spec)) throw new GraftError('pooledFeatures: the head must start with gap, avgpool or maxpool');
    const shapes = denseShapes(spec, featureShape);
    shapes.forEach((s, i) => {
      const p = params.dense[i];
      if (!p || p.inputSize !== s.inputSize || p.units !== s.units || p.kernel.length !== s.inputSize * s.units || p.bias.length !== s.units) {
        throw new GraftError(`head weights do not match the head: Dense layer ${i + 1} should be [${s.inputSize}, ${s.units}]`);
      }
    });
    if (params.dense.length !== shapes.length) throw new GraftError('head weights do not match the head: wrong number of Dense layers');
    const classes = shapes.at(-1)!.units === 1 ? 2 : shapes.at(-1)!.units;
    const cw = options.classWeights;
    if (cw && !(cw.length === classes && cw.every((w) => Number.isFinite(w) && w >= 0))) {
      throw new GraftError(`class weights must be ${classes} numbers from 0 (one per class), got ${JSON.stringify(cw)}`);
    }
    const opt = resolveOptimizer(optimizer);
    const maxBatch = options.maxBatch ?? HeadTrainer.DEFAULT_MAX_BATCH;
    const { inputSize: K, units: N } = shapes[0]!;
    const shared = {
      x: new SharedArrayBuffer(maxBatch * K * 4),
      h: new SharedArrayBuffer(maxBatch * N * 4),
      dh: new SharedArrayBuffer(maxBatch * N * 4),
    };
    const count = Math.max(1, Math.min(options.threads ?? availableParallelism(), N));
    const ext = import.meta.url.endsWith('.ts') ? '.ts' : '.js';
    const url = new URL(`./dense-shard-worker${ext}`, import.meta.url);
    const shards: Shard[] = [];
    const initial = params.dense[0]!.kernel;
    for (let s = 0; s < count; s++) {
      const col0 = Math.round((s * N) / count), cols = Math.round(((s + 1) * N) / count) - col0;
      const dx = options.inputGradient ? new SharedArrayBuffer(maxBatch * K * 4) : undefined;
      const data: ShardInit = { inputSize: K, units: N, col0, cols, maxBatch, optimizer: opt, blockInputs: options.blockInputs ?? defaultBlockInputs(K, cols), ortThreads: options.ortThreads ?? 1, ...shared, dx };
      const worker = startWorker(url, data);
      shards.push({ worker, col0, cols, dx: dx ? new Float32Array(dx) : null });
    }
    try {
      await Promise.all(shards.map((s) => reply(s.worker)));
      // One shard at a time, its columns transferred rather than cloned: a shard's copy is 77 MB
      // in the lab, which would otherwise exist three times over at once, at the run's peak.
      for (const s of shards) {
        const kernel = columnsTransposed(initial, K, N, s.col0, s.cols);
        await call(s.worker, { op: 'set', kernel, slots: [] }, [kernel.buffer as ArrayBuffer]);
      }
    } catch (err) {
      await Promise.all(shards.map((s) => s.worker.terminate()));
      throw err;
    }
    const held: HeadParams = { dense: params.dense.map((p, i) => (i === 0 ? { ...p, kernel: new Float32Array(0) } : p)) };
    return new HeadTrainer(spec, held, optimizer, options.seed, shards, shared, featureShape, maxBatch, options.checkpointBlockFloats ?? 1 << 20, options.pooledFeatures ?? false, cw);
  }

  /** What identifies this training setup (for checkpoint fingerprints). */
  describe(): { spec: HeadSpec; featureShape: number[]; optimizer: ResolvedOptimizer; seed: number; classWeights?: number[] } {
    // Class weights only when set: checkpoints of unweighted runs keep their fingerprint.
    return { spec: this.spec, featureShape: this.featureShape, optimizer: this.opt, seed: this.seed, ...(this.classWeights && { classWeights: [...this.classWeights] }) };
  }

  /** Shapes of the weights, as checkpoints read them back. */
  paramShapes(): { dense: { inputSize: number; units: number }[] } {
    return { dense: this.params.dense.map((d) => ({ inputSize: d.inputSize, units: d.units })) };
  }

  /** Dropout masks of epoch e are drawn from a stream seeded by (seed, e): resuming at e repeats them. */
  beginEpoch(epoch: number): void {
    this.dropoutRng = new Random(deriveSeed(this.seed, epoch, STREAM_DROPOUT));
  }

  /**
   * One training step (forward with dropout, backward, optimiser update) on n samples. With
   * `inputGradient` (n x feature size; the trainer created with options.inputGradient), it also
   * receives dL/d(features), from the weights before this step's update.
   */
  async trainStep(features: Float32Array, labels: Float32Array, n: number, inputGradient?: Float32Array): Promise<StepResult> {
    return this.serial(async () => {
      this.checkBatch(features, labels, n, this.maxBatch);
      if (inputGradient && (!this.shards[0]!.dx || inputGradient.length < n * this.featureSize)) {
        throw new GraftError(`an input gradient needs a trainer created with inputGradient and ${n * this.featureSize} values`);
      }
      const probs = await this.forward(features, n, true);
      const result = this.trainingMetrics(probs, labels, n);
      this.backward(labels, n);
      const step = this.iterations + 1;
      const big = Promise.all(this.shards.map((s) => call(s.worker, { op: 'backward', n, step, inputGradient: inputGradient !== undefined, learningRate: this.lr })));
      this.updateSmall(step);
      await big;
      if (inputGradient) this.featureGradient(inputGradient, n, features);
      this.iterations = step;
      return result;
    });
  }

  /** dL/d(features) from the shards' parts of the first Dense layer's input gradient: summed, through any dropout on the features, and spread back over the pooled cells. */
  private featureGradient(into: Float32Array, n: number, features: Float32Array): void {
    const K = this.inputSize;
    const dx = this.x; // the layer input is no longer needed this step: reuse it for the sum
    dx.set(this.shards[0]!.dx!.subarray(0, n * K));
    for (let s = 1; s < this.shards.length; s++) {
      const part = this.shards[s]!.dx!;
      for (let i = 0; i < n * K; i++) dx[i]! += part[i]!;
    }
    // Dropout layers before the first Dense act on its input (the pooled or flattened features).
    for (let si = 0; si < this.steps.length && this.steps[si]!.kind === 'dropout'; si++) {
      const mask = this.masks[si]!;
      if ((this.steps[si] as { rate: number }).rate > 0) for (let i = 0; i < n * K; i++) dx[i]! *= mask[i]!;
    }
    if (this.pooling === 'flatten') {
      into.set(dx.subarray(0, n * K));
      return;
    }
    if (this.pooling === 'grid') {
      gridPoolBackward(this.grid!, this.featureShape, features, dx, n, into);
      return;
    }
    const cells = this.featureSize / K;
    for (let b = 0; b < n; b++) {
      const base = b * this.featureSize;
      for (let p = 0; p < cells; p++) for (let c = 0; c < K; c++) into[base + p * K + c] = dx[b * K + c]! / cells;
    }
  }

  /**
   * Gradients of the mean loss for one batch without updating anything (for tests and tools).
   * `masks` fixes the dropout masks (keep/scale values, one array per Dropout layer).
   */
  async gradients(features: Float32Array, labels: Float32Array, n: number, masks?: Float32Array[]): Promise<{ loss: number; dense: { kernel: Float32Array; bias: Float32Array }[] }> {
    return this.serial(async () => {
      this.checkBatch(features, labels, n, this.maxBatch);
      const probs = await this.forward(features, n, true, masks);
      const { loss } = this.trainingMetrics(probs, labels, n);
      this.backward(labels, n);
      const parts = await Promise.all(this.shards.map((s) => call(s.worker, { op: 'gradient', n })));
      const K = this.inputSize, N = this.params.dense[0]!.units;
      const k0 = new Float32Array(K * N);
      parts.forEach((p, s) => {
        const g = p.gradient as Float32Array, { col0, cols } = this.shards[s]!;
        transposeInto(g, 0, K, k0, col0, N, cols, K);
      });
      return { loss, dense: this.grads.map((g, i) => ({ kernel: i === 0 ? k0 : g.kernel.slice(), bias: g.bias.slice() })) };
    });
  }

  /** Loss, accuracy and probabilities in inference mode (no dropout), in chunks of maxBatch. */
  async evaluate(features: Float32Array, labels: Float32Array, n: number): Promise<StepResult & { probabilities: Float32Array }> {
    const probabilities = await this.predict(features, n);
    return { ...this.score(probabilities, labels, n), probabilities };
  }

  /** Loss and accuracy of output probabilities [n, outputUnits] against `labels`. */
  score(probabilities: Float32Array, labels: Float32Array, n: number): StepResult {
    const k = this.outputUnits;
    if (labels.length < n * k) throw new GraftError(`labels hold ${labels.length} values, expected ${n * k}`);
    const loss = k === 1 ? binaryCrossentropy(probabilities, labels, n) : categoricalCrossentropy(probabilities, labels, n, k);
    const accuracy = k === 1 ? binaryAccuracy(probabilities, labels, n) : categoricalAccuracy(probabilities, labels, n, k);
    return { loss, accuracy };
  }

  /** Largest batch trainStep takes; predict and evaluate work through bigger inputs in chunks of it. */
  get batchLimit(): number {
    return this.maxBatch;
  }

  /** Output probabilities [n, outputUnits] in inference mode. */
  async predict(features: Float32Array, n: number): Promise<Float32Array> {
    return this.serial(async () => {
      if (features.length < n * this.featureSize) throw new GraftError(`features hold ${features.length} values, expected ${n} x ${this.featureSize}`);
      const k = this.outputUnits, out = new Float32Array(n * k);
      for (let b0 = 0; b0 < n; b0 += this.maxBatch) {
        const m = Math.min(this.maxBatch, n - b0);
        const probs = await this.forward(features.subarray(b0 * this.featureSize, (b0 + m) * this.featureSize), m, false);
        out.set(probs.subarray(0, m * k), b0 * k);
      }
      return out;
    });
  }

  /** Copies the workers' shards of the first kernel back into `params` (allocating it the first time) and returns it. */
  async syncParams(): Promise<HeadParams> {
    return this.serial(async () => {
      const first = this.params.dense[0]!;
      if (first.kernel.length === 0) first.kernel = new Float32Array(new SharedArrayBuffer(first.inputSize * first.units * 4));
      await this.gatherFirst(null, first.kernel);
      return this.params;
    });
  }

  /**
   * The weights for a checkpoint, without a whole copy of the first kernel: it is streamed in row
   * blocks through one reused buffer, so it must be consumed before the next training step.
   */
  paramsToSave(): SavedParams {
    return { dense: this.params.dense.map((p, i) => (i === 0 ? { ...p, kernel: this.streamedFirst(null) } : p)) };
  }

  /** Replaces all weights (e.g. from a checkpoint). */
  async setParams(params: HeadParams): Promise<void> {
    return this.serial(async () => {
      params.dense.forEach((p, i) => {
        const mine = this.params.dense[i]!;
        if (i > 0 || mine.kernel.length > 0) mine.kernel.set(p.kernel);
        mine.bias.set(p.bias);
      });
      await this.scatterFirst(params.dense[0]!.kernel, null);
    });
  }

  /** The optimiser's state, copied whole: iterations and slots per param array (dense i: kernel at 2i, bias at 2i+1). */
  async getOptimizerState(): Promise<OptimizerState> {
    return this.serial(async () => {
      const K = this.inputSize, N = this.params.dense[0]!.units;
      const first: Float32Array[] = [];
      for (let j = 0; j < slotCount(this.opt); j++) {
        first.push(new Float32Array(new SharedArrayBuffer(K * N * 4)));
        await this.gatherFirst(j, first[j]!);
      }
      return { config: this.opt, iterations: this.iterations, slots: this.slots.map((s, i) => (i === 0 ? first : s.map((a) => a.slice()))) };
    });
  }

  /**
   * The optimiser's state for a checkpoint, without a whole copy of the first kernel's slots (each
   * as big as the kernel): those are streamed in row blocks through one reused buffer, so they
   * must be consumed before the next training step.
   */
  optimizerStateToSave(): SavedOptimizerState {
    const first = Array.from({ length: slotCount(this.opt) }, (_, j) => this.streamedFirst(j));
    return { config: this.opt, iterations: this.iterations, slots: this.slots.map((s, i) => (i === 0 ? first : s)) };
  }

  async setOptimizerState(state: OptimizerState): Promise<void> {
    return this.serial(async () => {
      if (JSON.stringify(state.config) !== JSON.stringify(this.opt)) throw new GraftError('the saved optimiser state belongs to a different optimiser configuration');
      if (state.slots.length !== this.slots.length) throw new GraftError('the saved optimiser state does not match the head');
      state.slots.forEach((s, i) => {
        if (i !== 0) s.forEach((a, j) => this.slots[i]![j]!.set(a));
      });
      this.iterations = state.iterations;
      await this.scatterFirst(null, state.slots[0]!);
    });
  }

  async dispose(): Promise<void> {
    if (this.disposed) return;
    this.disposed = true;
    await this.pending.catch(() => {});
    await Promise.all(this.shards.map(async (s) => {
      await call(s.worker, { op: 'close' }).catch(() => {});
      await s.worker.terminate();
    }));
  }

  // ---- internals ----

  /** Runs calls one after another: the shared buffers hold one batch at a time. */
  private serial<T>(fn: () => Promise<T>): Promise<T> {
    if (this.disposed) return Promise.reject(new GraftError('the head trainer was disposed'));
    const run = this.pending.then(fn, fn);
    this.pending = run.catch(() => {});
    return run;
  }

  private checkBatch(features: Float32Array, labels: Float32Array, n: number, max: number): void {
    if (!Number.isInteger(n) || n < 1 || n > max) throw new GraftError(`batch size ${n} is outside 1..${max} (HeadTrainer maxBatch)`);
    if (features.length < n * this.featureSize) throw new GraftError(`features hold ${features.length} values, expected ${n} x ${this.featureSize}`);
    if (labels.length < n * this.outputUnits) throw new GraftError(`labels hold ${labels.length} values, expected ${n * this.outputUnits}`);
  }

  private widthBefore(stepIndex: number): number {
    for (let i = stepIndex - 1; i >= 0; i--) {
      const s = this.steps[i]!;
      if (s.kind === 'dense') return this.params.dense[s.index]!.units;
    }
    return this.inputSize;
  }

  /** Writes the layer input (pooled features) into the shared x buffer. */
  private loadInput(features: Float32Array, n: number): void {
    const K = this.inputSize;
    if (this.pooling === 'flatten') {
      this.x.set(features.subarray(0, n * K));
      return;
    }
    if (this.pooling === 'grid') {
      gridPoolForward(this.grid!, this.featureShape, features, n, this.x);
      return;
    }
    const cells = this.featureSize / K, acc = new Float64Array(K);
    for (let b = 0; b < n; b++) {
      acc.fill(0);
      const base = b * this.featureSize;
      for (let p = 0; p < cells; p++) for (let c = 0; c < K; c++) acc[c]! += features[base + p * K + c]!;
      for (let c = 0; c < K; c++) this.x[b * K + c] = acc[c]! / cells;
    }
  }

  private async forward(features: Float32Array, n: number, training: boolean, fixedMasks?: Float32Array[]): Promise<Float32Array> {
    this.loadInput(features, n);
    let input = this.x, width = this.inputSize, dropoutNo = 0;
    for (let si = 0; si < this.steps.length; si++) {
      const s = this.steps[si]!;
      if (s.kind === 'dropout') {
        if (!training || s.rate === 0) continue;
        const mask = this.masks[si]!, scale = 1 / (1 - s.rate), fixed = fixedMasks?.[dropoutNo++];
        for (let i = 0; i < n * width; i++) {
          mask[i] = fixed ? fixed[i]! : this.dropoutRng.next() >= s.rate ? scale : 0;
        }
        // In place: on the shared input (dropout on the features) or on the previous layer's output.
        for (let i = 0; i < n * width; i++) input[i]! *= mask[i]!;
        continue;
      }
      const p = this.params.dense[s.index]!, out = this.acts[s.index]!, U = p.units;
      if (s.index === 0) {
        if (input !== this.x) throw new GraftError('the first Dense layer must come right after pooling or dropout');
        await Promise.all(this.shards.map((sh) => call(sh.worker, { op: 'forward', n })));
        out.set(this.h.subarray(0, n * U));
      } else {
        matmul(input, p.kernel, out, n, width, U);
      }
      for (let b = 0; b < n; b++) for (let u = 0; u < U; u++) out[b * U + u]! += p.bias[u]!;
      activate(s.activation, out, n, U);
      input = out;
      width = U;
    }
    this.probs.set(input.subarray(0, n * this.outputUnits));
    return this.probs;
  }

  /** The batch's loss (class-weighted when weights are set, as Keras's) and plain accuracy; fills this.weights. */
  private trainingMetrics(probs: Float32Array, labels: Float32Array, n: number): StepResult {
    const k = this.outputUnits;
    const w = this.classWeights ? sampleWeights(labels, n, k, this.classWeights, this.weights) : undefined;
    return k === 1
      ? { loss: binaryCrossentropy(probs, labels, n, w), accuracy: binaryAccuracy(probs, labels, n) }
      : { loss: categoricalCrossentropy(probs, labels, n, k, w), accuracy: categoricalAccuracy(probs, labels, n, k) };
  }

  /**
   * Gradients of the mean loss. The output layer's dz is (p - y) / n for sigmoid+BCE and
   * softmax+CCE alike: what Keras back-propagates, as it computes these losses from the logits.
   * With class weights each sample's dz is scaled by its weight (set by trainingMetrics).
   * Fills this.grads for dense layers 1.., dense[0]'s bias gradient, and dz of dense[0] into dh.
   */
  private backward(labels: Float32Array, n: number): void {
    const last = this.params.dense.length - 1;
    const k = this.outputUnits;
    let dz = new Float32Array(n * k);
    for (let i = 0; i < n * k; i++) dz[i] = (this.probs[i]! - labels[i]!) / n;
    if (this.classWeights) for (let i = 0; i < n * k; i++) dz[i]! *= this.weights[Math.floor(i / k)]!;
    for (let si = this.steps.length - 1; si >= 0; si--) {
      const s = this.steps[si]!;
      if (s.kind !== 'dense') continue;
      const p = this.params.dense[s.index]!, U = p.units;
      if (s.index !== last) {
        // dz currently holds dL/d(output activation, after dropout); undo dropout and activation.
        const act = this.acts[s.index]!;
        for (let sj = si + 1; sj < this.steps.length && this.steps[sj]!.kind === 'dropout'; sj++) {
          const mask = this.masks[sj]!;
          if ((this.steps[sj] as { rate: number }).rate > 0) for (let i = 0; i < n * U; i++) dz[i]! *= mask[i]!;
        }
        derive(s.activation, act, dz, n, U);
      }
      const g = this.grads[s.index]!;
      g.bias.fill(0);
      for (let b = 0; b < n; b++) for (let u = 0; u < U; u++) g.bias[u]! += dz[b * U + u]!;
      if (s.index === 0) {
        this.dh.set(dz.subarray(0, n * U));
        break;
      }
      const inW = p.inputSize, input = this.acts[s.index - 1]!;
      // Layer input = previous dense output after dropout (dropout was applied in place).
      g.kernel.fill(0);
      for (let b = 0; b < n; b++) {
        for (let i = 0; i < inW; i++) {
          const a = input[b * inW + i]!;
          if (a === 0) continue;
          const row = i * U;
          for (let u = 0; u < U; u++) g.kernel[row + u]! += a * dz[b * U + u]!;
        }
      }
      const dIn = new Float32Array(n * inW);
      for (let b = 0; b < n; b++) {
        for (let i = 0; i < inW; i++) {
          let sum = 0;
          const row = i * U;
          for (let u = 0; u < U; u++) sum += p.kernel[row + u]! * dz[b * U + u]!;
          dIn[b * inW + i] = sum;
        }
      }
      dz = dIn;
    }
  }

  private updateSmall(step: number): void {
    const opt = this.lr === this.opt.learningRate ? this.opt : { ...this.opt, learningRate: this.lr };
    this.params.dense.forEach((p, i) => {
      if (i > 0) applyUpdate(opt, step, p.kernel, this.grads[i]!.kernel, this.slots[2 * i]!);
      applyUpdate(opt, step, p.bias, this.grads[i]!.bias, this.slots[2 * i + 1]!);
    });
  }

  /** The first kernel (slot null) or its optimiser slot `slot`, as a StreamedArray for a checkpoint. */
  private streamedFirst(slot: number | null): StreamedArray {
    return { length: this.inputSize * this.params.dense[0]!.units, blocks: () => this.firstBlocks(slot) };
  }

  /** The first kernel (slot null) or its optimiser slot `slot`, row block by row block, in one reused shared buffer. */
  private async *firstBlocks(slot: number | null): AsyncGenerator<Float32Array> {
    const K = this.inputSize, N = this.params.dense[0]!.units;
    const rowsPerBlock = Math.max(1, Math.min(K, Math.floor(this.checkpointBlockFloats / N)));
    this.streamBlock ??= new Float32Array(new SharedArrayBuffer(rowsPerBlock * N * 4));
    for (let row0 = 0; row0 < K; row0 += rowsPerBlock) {
      const rows = Math.min(rowsPerBlock, K - row0);
      const block = this.streamBlock.subarray(0, rows * N);
      await this.serial(() => this.gatherFirst(slot, block, row0, rows));
      yield block;
    }
  }

  /**
   * Rows [row0, row0 + rows) of the first kernel (slot null) or of its optimiser slot, whole-width,
   * into `into` (on shared memory): the workers write their columns straight into it.
   */
  private async gatherFirst(slot: number | null, into: Float32Array, row0 = 0, rows = this.inputSize): Promise<void> {
    if (!(into.buffer instanceof SharedArrayBuffer)) throw new Error('gatherFirst needs an array on shared memory (the workers write into it)');
    await Promise.all(this.shards.map((s) => call(s.worker, { op: 'gather', slot, row0, rows, into })));
  }

  /** Sends the first kernel and/or its slots to the workers (null: they keep theirs). */
  private async scatterFirst(kernel: Float32Array | null, slots: Float32Array[] | null): Promise<void> {
    const K = this.inputSize, N = this.params.dense[0]!.units;
    for (const s of this.shards) {
      const part = kernel && columnsTransposed(kernel, K, N, s.col0, s.cols);
      const slotParts = (slots ?? []).map((a) => columnsTransposed(a, K, N, s.col0, s.cols));
      await call(s.worker, { op: 'set', kernel: part, slots: slotParts }, [...(part ? [part.buffer as ArrayBuffer] : []), ...slotParts.map((a) => a.buffer as ArrayBuffer)]);
    }
  }
}

function defaultBlockInputs(inputs: number, cols: number): number {
  // Measured with glibc only; elsewhere the allocator is another one. 2^19 floats of gradient:
  // 1024 inputs a block for the lab's 512 columns a worker (512 measured 10% slower, 2048 level).
  return process.platform === 'linux' && mallocTunablesSet() ? Math.min(inputs, Math.max(4, Math.floor(2 ** 19 / cols / 4) * 4)) : inputs;
}

/** Columns [col0, col0+cols) of a row-major [rows, width] matrix, transposed: a contiguous [cols, rows] copy (a worker's layout). */
function columnsTransposed(m: Float32Array, rows: number, width: number, col0: number, cols: number): Float32Array {
  const out = new Float32Array(rows * cols);
  transposeInto(m, col0, width, out, 0, rows, rows, cols);
  return out;
}

/** out[n,u] = a[n,k] · w[k,u] (small layers only). */
function matmul(a: Float32Array, w: Float32Array, out: Float32Array, n: number, k: number, u: number): void {
  out.fill(0, 0, n * u);
  for (let b = 0; b < n; b++) {
    for (let i = 0; i < k; i++) {
      const x = a[b * k + i]!;
      if (x === 0) continue;
      const row = i * u, o = b * u;
      for (let j = 0; j < u; j++) out[o + j]! += x * w[row + j]!;
    }
  }
}

function activate(act: Activation, z: Float32Array, n: number, u: number): void {
  const len = n * u;
  if (act === 'relu') for (let i = 0; i < len; i++) z[i] = z[i]! > 0 ? z[i]! : 0;
  else if (act === 'sigmoid') for (let i = 0; i < len; i++) z[i] = 1 / (1 + Math.exp(-z[i]!));
  else if (act === 'softmax') {
    for (let b = 0; b < n; b++) {
      let max = -Infinity, sum = 0;
      for (let j = 0; j < u; j++) max = Math.max(max, z[b * u + j]!);
      for (let j = 0; j < u; j++) sum += z[b * u + j] = Math.exp(z[b * u + j]! - max);
      for (let j = 0; j < u; j++) z[b * u + j]! /= sum;
    }
  }
}

/** dz *= activation'(z), from the activation's output a. */
function derive(act: Activation, a: Float32Array, dz: Float32Array, n: number, u: number): void {
  const len = n * u;
  if (act === 'relu') for (let i = 0; i < len; i++) { if (!(a[i]! > 0)) dz[i] = 0; }
  else if (act === 'sigmoid') for (let i = 0; i < len; i++) dz[i]! *= a[i]! * (1 - a[i]!);
}

type Reply = WorkerReply;
const SHARD_WORKER = 'head trainer worker';

/** The worker's next reply; the worker is ref'd until it comes. */
function reply(worker: Worker): Promise<Reply> {
  return nextReply(worker, SHARD_WORKER);
}

function call(worker: Worker, req: ShardRequest, transfer?: ArrayBuffer[]): Promise<Reply> {
  return callWorker(worker, req, SHARD_WORKER, transfer);
}
