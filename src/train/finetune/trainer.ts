/**
 * Fine-tuning's trainer: the backbone's unfrozen segment (SegmentEngine) under the head
 * (HeadTrainer), trained together as one model on the segment's input (features at the layer the
 * segment starts after). One optimiser of the given kind and rate covers both, as Keras's guide
 * recompiles the model before the second fit; the segment's weights update with the same fused
 * per-element kernel as the head's small layers.
 */
import { GraftError } from '../../util/errors.js';
import type { HeadSpec } from '../../model/head-spec.js';
import type { HeadParams } from '../../model/head.js';
import { HeadTrainer, type StepResult } from '../head-trainer.js';
import { applyUpdate, resolveOptimizer, slotCount, type OptimizerConfig, type OptimizerState, type ResolvedOptimizer } from '../optimizers.js';
import type { ParamShapes, SavedOptimizerState, SavedParams, TrainedParams } from '../checkpoint.js';
import type { FitTrainer } from '../fit.js';
import { binaryAccuracy, binaryCrossentropy, categoricalAccuracy, categoricalCrossentropy } from '../losses.js';
import type { SegmentEngine } from './segment-engine.js';
import { hasSimdUpdate, simdUpdate, type SimdUpdate } from '../simd-update.js';
import { alignedBytes, arrayAllocator, wasmMemory } from '../wasm-simd.js';

export interface FineTuneTrainerOptions {
  seed: number;
  /** Largest training batch (default HeadTrainer.DEFAULT_MAX_BATCH). */
  maxBatch?: number;
  /** Epochs already trained (the head phase's): epoch k's dropout masks are drawn as epoch offset + k's. */
  epochOffset?: number;
  /** Keras's class_weight, as the head phase's (HeadTrainerOptions.classWeights). */
  classWeights?: readonly number[];
}

export class FineTuneTrainer implements FitTrainer {
  private opt: ResolvedOptimizer;
  /** Optimiser slots of each segment weight. */
  private readonly slots: Float32Array[][];
  private iterations = 0;
  private readonly featureGrad: Float32Array;
  private pending: Promise<unknown> = Promise.resolve();
  /** The SIMD update of the segment's weights (RMSprop, Adam), or null: the JS loop. */
  private readonly update: SimdUpdate | null = null;

  private constructor(
    readonly head: HeadTrainer,
    readonly engine: SegmentEngine,
    optimizer: OptimizerConfig,
    private readonly maxBatch: number,
    private readonly epochOffset: number,
  ) {
    this.opt = resolveOptimizer(optimizer);
    // RMSprop (the lab's) and Adam update the 2M+ segment weights in place with their SIMD kernels,
    // ~8 ms a step faster than the JS loop: weights, gradients and slots then live in one
    // WebAssembly memory.
    let alloc: (n: number) => Float32Array = (n) => new Float32Array(n);
    if (hasSimdUpdate(this.opt)) {
      const arrays = 2 + slotCount(this.opt); // weights, gradients, slots
      const memory = wasmMemory(engine.params.reduce((a, p) => a + alignedBytes(p.length), 0) * arrays);
      this.update = simdUpdate(this.opt, memory);
      if (this.update) {
        alloc = arrayAllocator(memory);
        engine.adoptMemory(alloc);
      }
    }
    this.slots = engine.params.map((p) => Array.from({ length: slotCount(this.opt) }, () => alloc(p.length)));
    this.featureGrad = new Float32Array(maxBatch * engine.outputSize);
  }

  /** The head starts from `headParams` (the first phase's weights), the segment from the engine's weights. */
  static async create(spec: HeadSpec, headParams: HeadParams, engine: SegmentEngine, optimizer: OptimizerConfig, opts: FineTuneTrainerOptions): Promise<FineTuneTrainer> {
    const maxBatch = opts.maxBatch ?? HeadTrainer.DEFAULT_MAX_BATCH;
    const head = await HeadTrainer.create(spec, headParams, optimizer, { seed: opts.seed, featureShape: engine.segment.outputShape, maxBatch, inputGradient: true, classWeights: opts.classWeights });
    return new FineTuneTrainer(head, engine, optimizer, maxBatch, opts.epochOffset ?? 0);
  }

  describe(): { seed: number; head: ReturnType<HeadTrainer['describe']>; fineTune: { from: string; to: string; weights: string[] } } {
    const s = this.engine.segment;
    return { seed: this.head.describe().seed, head: this.head.describe(), fineTune: { from: s.from, to: s.to, weights: s.trainable.map((t) => t.key) } };
  }

  /** The rate of the next steps (head and segment alike). */
  get learningRate(): number {
    return this.opt.learningRate;
  }

  /** Trains the next steps of head and segment at another rate (a schedule's); the optimiser's slots are unchanged. */
  setLearningRate(rate: number): void {
    this.head.setLearningRate(rate);
    this.opt = { ...this.opt, learningRate: rate };
  }

  beginEpoch(epoch: number): void {
    this.head.beginEpoch(this.epochOffset + epoch);
  }

  /** Forward through the segment and the head, backward through both, and one update of every weight. */
  async trainStep(x: Float32Array, labels: Float32Array, n: number): Promise<StepResult> {
    return this.serial(async () => {
      if (!Number.isInteger(n) || n < 1 || n > this.maxBatch) throw new GraftError(`batch size ${n} is outside 1..${this.maxBatch}`);
      const features = await this.engine.forward(x, n, true);
      const result = await this.head.trainStep(features, labels, n, this.featureGrad);
      const grads = await this.engine.backward(this.featureGrad, n);
      const step = ++this.iterations;
      const opt = this.opt;
      grads.forEach((g, i) => {
        (this.update ?? applyUpdate)(opt, step, this.engine.params[i]!, g, this.slots[i]!);
      });
      return result;
    });
  }

  /** Loss, accuracy and probabilities in inference mode, in chunks of maxBatch inputs. */
  async evaluate(x: Float32Array, labels: Float32Array, n: number): Promise<StepResult & { probabilities: Float32Array }> {
    const probabilities = await this.predict(x, n);
    const k = this.head.outputUnits;
    const loss = k === 1 ? binaryCrossentropy(probabilities, labels, n) : categoricalCrossentropy(probabilities, labels, n, k);
    const accuracy = k === 1 ? binaryAccuracy(probabilities, labels, n) : categoricalAccuracy(probabilities, labels, n, k);
    return { loss, accuracy, probabilities };
  }

  async predict(x: Float32Array, n: number): Promise<Float32Array> {
    return this.serial(async () => {
      const per = this.engine.inputSize, k = this.head.outputUnits, out = new Float32Array(n * k);
      for (let b0 = 0; b0 < n; b0 += this.maxBatch) {
        const m = Math.min(this.maxBatch, n - b0);
        const features = await this.engine.forward(x.subarray(b0 * per, (b0 + m) * per), m, false);
        out.set(await this.head.predict(features, m), b0 * k);
      }
      return out;
    });
  }

  get batchLimit(): number {
    return this.maxBatch;
  }

  get outputUnits(): number {
    return this.head.outputUnits;
  }

  score(probabilities: Float32Array, labels: Float32Array, n: number): StepResult {
    return this.head.score(probabilities, labels, n);
  }

  paramShapes(): ParamShapes {
    return { ...this.head.paramShapes(), backbone: this.engine.params.map((p) => p.length) };
  }

  paramsToSave(): SavedParams {
    return { ...this.head.paramsToSave(), backbone: this.engine.params };
  }

  async syncParams(): Promise<TrainedParams> {
    const head = await this.head.syncParams();
    return { ...head, backbone: this.engine.params };
  }

  async setParams(params: TrainedParams): Promise<void> {
    if (!params.backbone || params.backbone.length !== this.engine.params.length || params.backbone.some((a, i) => a.length !== this.engine.params[i]!.length)) {
      throw new GraftError('the saved weights do not match the fine-tuned backbone layers');
    }
    await this.head.setParams(params);
    params.backbone.forEach((a, i) => this.engine.params[i]!.set(a));
  }

  optimizerStateToSave(): SavedOptimizerState {
    const head = this.head.optimizerStateToSave();
    return { ...head, iterations: this.iterations, slots: [...head.slots, ...this.slots] };
  }

  async setOptimizerState(state: OptimizerState): Promise<void> {
    const headArrays = state.slots.length - this.slots.length;
    if (headArrays < 0) throw new GraftError('the saved optimiser state does not match the fine-tuned model');
    await this.head.setOptimizerState({ ...state, slots: state.slots.slice(0, headArrays) });
    state.slots.slice(headArrays).forEach((s, i) => s.forEach((a, j) => this.slots[i]![j]!.set(a)));
    this.iterations = state.iterations;
  }

  async dispose(): Promise<void> {
    await this.pending.catch(() => {});
    await this.head.dispose();
  }

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.pending.then(fn, fn);
    this.pending = run.catch(() => {});
    return run;
  }
}
