/**
 * A worker thread holding its own onnxruntime session of a feature extractor's network (see
 * ParallelExtractor in engine.ts): it runs the images it is given, from a shared input buffer, in
 * calls of at most `batchSize`, and writes their outputs into a shared output buffer.
 */
import { parentPort, workerData } from 'node:worker_threads';
import '../util/onnxruntime-telemetry.js'; // before onnxruntime-node: opts out of its telemetry
import * as ort from 'onnxruntime-node';

export interface ExtractorWorkerInit {
  inputShape: number[];
  outputShape: number[];
  batchSize: number;
  /** Intra-op threads of this worker's session. */
  threads: number;
}

export type ExtractorWorkerRequest =
  /** The network (first message; its bytes are dropped once the session holds them). */
  | { op: 'load'; onnx: Uint8Array }
  /** Images [first, first + n) of `input` (shared, NHWC float32 from byte inputOffset) into the same rows of `output`. */
  | { op: 'run'; input: SharedArrayBuffer; inputOffset: number; output: SharedArrayBuffer; first: number; n: number }
  | { op: 'close' };

const init = workerData as ExtractorWorkerInit;
const perIn = init.inputShape.reduce((a, b) => a * b, 1);
const perOut = init.outputShape.reduce((a, b) => a * b, 1);

let session: ort.InferenceSession | null = null;
let inputName = '', outputName = '';

async function load(onnx: Uint8Array): Promise<void> {
  session = await ort.InferenceSession.create(onnx, {
    executionProviders: ['cpu'],
    graphOptimizationLevel: 'all',
    executionMode: 'sequential',
    intraOpNumThreads: init.threads,
    interOpNumThreads: 1,
    // The arena stays on: without it each call's activations (one planned block, 60-90 MB at
    // 150x150 and 299x299) are fresh memory to fault in, measured 8-20% slower.
    extra: { session: { intra_op: { allow_spinning: '0' } } },
  });
  inputName = session.inputNames[0]!;
  outputName = session.outputNames[0]!;
}
// onnxruntime-node refuses tensors on a SharedArrayBuffer: each call goes through these.
const images = new Float32Array(init.batchSize * perIn);
const features = new Float32Array(init.batchSize * perOut);

async function run(input: Float32Array, output: Float32Array, first: number, n: number): Promise<void> {
  // Equal calls (20 -> 10 + 10, not 16 + 4): a small remainder would run inefficiently.
  const chunk = Math.ceil(n / Math.ceil(n / init.batchSize));
  for (let at = first; at < first + n; at += chunk) {
    const b = Math.min(chunk, first + n - at);
    images.set(input.subarray(at * perIn, (at + b) * perIn));
    const x = new ort.Tensor('float32', images.subarray(0, b * perIn), [b, ...init.inputShape]);
    const y = new ort.Tensor('float32', features.subarray(0, b * perOut), [b, ...init.outputShape]);
    await session!.run({ [inputName]: x }, { [outputName]: y });
    output.set(features.subarray(0, b * perOut), at * perOut);
  }
}

parentPort!.on('message', (req: ExtractorWorkerRequest) => {
  void (async () => {
    try {
      if (req.op === 'load') {
        await load(req.onnx);
        parentPort!.postMessage({ ok: true });
        return;
      }
      if (req.op === 'close') {
        await session?.release();
        parentPort!.postMessage({ ok: true });
        parentPort!.close();
        return;
      }
      await run(new Float32Array(req.input, req.inputOffset), new Float32Array(req.output), req.first, req.n);
      parentPort!.postMessage({ ok: true });
    } catch (err) {
      parentPort!.postMessage({ ok: false, error: (err as Error).message.split('\n')[0] });
    }
  })();
});
