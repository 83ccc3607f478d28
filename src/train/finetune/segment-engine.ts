/**
 * Runs the trainable segment's forward and backward graphs (segment-onnx.ts) on onnxruntime-node,
 * with the live trainable weights fed as graph inputs each call (no copy: onnxruntime reads them
 * where they are). Outputs land in buffers allocated once and reused (first touch of fresh memory
 * costs ~11 us a page): the saved tensors, y and the gradients are valid until the next call.
 */
import { availableParallelism } from 'node:os';
import '../../util/onnxruntime-telemetry.js'; // before onnxruntime-node: opts out of its telemetry
import * as ort from 'onnxruntime-node';
import { GraftError } from '../../util/errors.js';
import type { WeightMap } from '../../backbone/keras-graph.js';
import { shapeSize } from '../../backbone/layer-shapes.js';
import { buildSegmentGraphs, type SegmentGraphs } from './segment-onnx.js';
import { trainableValues, type Segment } from './segment.js';

export interface SegmentEngineOptions {
  /** Intra-op threads (default: the number of cores). */
  threads?: number;
}

async function session(bytes: Uint8Array, threads: number, what: string): Promise<ort.InferenceSession> {
  try {
    return await ort.InferenceSession.create(bytes, {
      executionProviders: ['cpu'],
      graphOptimizationLevel: 'all',
      executionMode: 'sequential',
      intraOpNumThreads: threads,
      interOpNumThreads: 1,
      extra: { session: { intra_op: { allow_spinning: '0' }, set_denormal_as_zero: '1' } },
    });
  } catch (err) {
    throw new GraftError(`onnxruntime could not load the fine-tuning ${what} graph: ${(err as Error).message.split('\n')[0]}`, { cause: err });
  }
}

export class SegmentEngine {
  /** The trainable weights, in segment.trainable order (Keras layouts); updated in place by the optimiser. */
  readonly params: Float32Array[];
  readonly inputSize: number;
  readonly outputSize: number;
  /** The last training forward's saved tensors and input, for backward. */
  private kept: { n: number; x: Float32Array | null; saved: Record<string, ort.Tensor> } | null = null;
  private released = false;
  /** Reused output buffers, by output name, grown to the largest batch seen. */
  private readonly buffers = new Map<string, Float32Array | BigInt64Array>();
  /** Where the gradients' buffers come from (adoptMemory), else ordinary arrays. */
  private gradientAlloc: ((n: number) => Float32Array) | null = null;

  private constructor(
    readonly segment: Segment,
    private readonly graphs: SegmentGraphs,
    private readonly fwd: ort.InferenceSession,
    private readonly bwd: ort.InferenceSession,
    params: Float32Array[],
  ) {
    this.params = params;
    this.inputSize = shapeSize(segment.inputShape);
    this.outputSize = shapeSize(segment.outputShape);
  }

  /** Builds and loads both graphs; the trainable weights start as copies of those in `weights`. */
  static async create(segment: Segment, weights: WeightMap, opts: SegmentEngineOptions = {}): Promise<SegmentEngine> {
    const threads = opts.threads ?? availableParallelism();
    const graphs = buildSegmentGraphs(segment, weights);
    const fwd = await session(graphs.forward, threads, 'forward');
    const bwd = await session(graphs.backward, threads, 'backward').catch(async (err) => {
      await fwd.release();
      throw err;
    });
    return new SegmentEngine(segment, graphs, fwd, bwd, trainableValues(segment, weights));
  }

  /**
   * Moves the trainable weights, and the buffers backward writes their gradients into, to arrays
   * from `alloc` (a WebAssembly memory, where the SIMD optimiser kernel can update them in place).
   */
  adoptMemory(alloc: (n: number) => Float32Array): void {
    this.params.forEach((p, i) => {
      const moved = alloc(p.length);
      moved.set(p);
      this.params[i] = moved;
    });
    this.gradientAlloc = alloc;
    for (const name of this.graphs.gradOutputs) this.buffers.delete(name);
  }

  private paramFeeds(which: Iterable<number>): Record<string, ort.Tensor> {
    const feeds: Record<string, ort.Tensor> = {};
    for (const i of which) feeds[this.graphs.paramInputs[i]!] = new ort.Tensor('float32', this.params[i]!, this.segment.trainable[i]!.shape);
    return feeds;
  }

  /** A tensor of `dims` over the reused buffer `name` (grown when too small). */
  private output(name: string, dims: number[], type: 'float32' | 'int64' = 'float32'): ort.Tensor {
    const size = dims.reduce((p, q) => p * q, 1);
    let buf = this.buffers.get(name);
    if (!buf || buf.length < size) {
      const alloc = this.gradientAlloc && this.graphs.gradOutputs.includes(name) ? this.gradientAlloc : (k: number) => new Float32Array(k);
      buf = type === 'int64' ? new BigInt64Array(size) : alloc(size);
      this.buffers.set(name, buf);
    }
    return type === 'int64' ? new ort.Tensor('int64', (buf as BigInt64Array).subarray(0, size), dims) : new ort.Tensor('float32', (buf as Float32Array).subarray(0, size), dims);
  }

  private check(x: Float32Array, n: number, per: number, what: string): void {
    if (this.released) throw new GraftError('the fine-tuning engine was disposed');
    if (!Number.isInteger(n) || n < 1 || x.length < n * per) throw new GraftError(`fine-tuning: ${n} examples need ${n * per} ${what} values, got ${x.length}`);
  }

  /**
   * The segment's output for n inputs (NHWC). With `keep`, what backward needs is kept until the
   * next forward (training); without, nothing is (inference).
   */
  async forward(x: Float32Array, n: number, keep: boolean): Promise<Float32Array> {
    this.check(x, n, this.inputSize, 'input');
    this.kept = null;
    const input = x.subarray(0, n * this.inputSize);
    // onnxruntime-node refuses SharedArrayBuffer views; backward may read the input after the caller reuses it.
    let owned = input;
    if (input.buffer instanceof SharedArrayBuffer || (keep && this.graphs.backwardNeedsInput)) {
      owned = this.output('x', [n, ...this.segment.inputShape]).data as Float32Array;
      owned.set(input);
    }
    const feeds = { x: new ort.Tensor('float32', owned, [n, ...this.segment.inputShape]), ...this.paramFeeds(this.params.keys()) };
    const fetches: Record<string, ort.Tensor> = { y: this.output('y', [n, ...this.segment.outputShape]) };
    if (keep) for (const s of this.graphs.saved) fetches[s.name] = this.output(s.name, [n, ...s.shape], s.type);
    await this.fwd.run(feeds, fetches);
    if (keep) {
      const saved: Record<string, ort.Tensor> = {};
      for (const s of this.graphs.saved) saved[s.name] = fetches[s.name]!;
      this.kept = { n, x: this.graphs.backwardNeedsInput ? owned : null, saved };
    }
    return fetches.y!.data as Float32Array;
  }

  /** Gradients of the loss for every trainable weight (segment.trainable order), from dL/dy of the last kept forward. */
  async backward(dy: Float32Array, n: number): Promise<Float32Array[]> {
    this.check(dy, n, this.outputSize, 'output-gradient');
    const kept = this.kept;
    if (!kept || kept.n !== n) throw new GraftError('fine-tuning: backward needs the forward of the same batch run with keep');
    const d = dy.subarray(0, n * this.outputSize);
    const feeds: Record<string, ort.Tensor> = {
      dy: new ort.Tensor('float32', d.buffer instanceof SharedArrayBuffer ? d.slice() : d, [n, ...this.segment.outputShape]),
      ...this.paramFeeds(this.graphs.backwardParams),
      ...kept.saved,
    };
    if (kept.x) feeds.x = new ort.Tensor('float32', kept.x, [n, ...this.segment.inputShape]);
    const fetches: Record<string, ort.Tensor> = {};
    this.graphs.gradOutputs.forEach((name, i) => (fetches[name] = this.output(name, this.segment.trainable[i]!.shape)));
    await this.bwd.run(feeds, fetches);
    this.kept = null;
    // The preallocated buffers (onnxruntime-node fills them, and returns copies besides).
    return this.graphs.gradOutputs.map((name) => fetches[name]!.data as Float32Array);
  }

  async dispose(): Promise<void> {
    if (this.released) return;
    this.released = true;
    this.kept = null;
    await this.fwd.release();
    await this.bwd.release();
  }
}
