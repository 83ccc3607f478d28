import onnxProto from 'onnx-proto';
import '../util/onnxruntime-telemetry.js'; // before onnxruntime-node: opts out of its telemetry
import * as ort from 'onnxruntime-node';

const { onnx } = onnxProto;

/** An ONNX model of one product, c[m,n] = a[m,k] · b[k,n] (or, transposed, a[m,k] · b[n,k]ᵀ), with symbolic dimensions. */
function matmulModel(transposeB: boolean): Uint8Array {
  const f = onnx.TensorProto.DataType.FLOAT;
  const vi = (name: string, dims: string[]) =>
    onnx.ValueInfoProto.create({ name, type: { tensorType: { elemType: f, shape: { dim: dims.map((d) => ({ dimParam: d })) } } } });
  const graph = onnx.GraphProto.create({
    name: 'matmul',
    node: [
      transposeB
        ? onnx.NodeProto.create({ opType: 'Gemm', input: ['a', 'b'], output: ['c'], attribute: [{ name: 'transB', type: onnx.AttributeProto.AttributeType.INT, i: 1 }] })
        : onnx.NodeProto.create({ opType: 'MatMul', input: ['a', 'b'], output: ['c'] }),
    ],
    input: [vi('a', ['m', 'k']), vi('b', transposeB ? ['n', 'k'] : ['k', 'n'])],
    output: [vi('c', ['m', 'n'])],
  });
  const model = onnx.ModelProto.create({ irVersion: 8, opsetImport: [{ domain: '', version: 17 }], graph });
  return onnx.ModelProto.encode(model).finish();
}

/**
 * Matrix products on onnxruntime's MLAS kernels, written into arrays the caller owns (no fresh
 * output per call). Arrays must be ordinary (not SharedArrayBuffer) memory: onnxruntime-node
 * rejects shared buffers.
 */
export class OrtMatMul {
  private constructor(private readonly session: ort.InferenceSession, private readonly transposeB: boolean) {}

  /** With transposeB, run(a, b, ...) takes b as [n, k] and computes a · bᵀ. */
  static async create(threads: number, transposeB = false): Promise<OrtMatMul> {
    const session = await ort.InferenceSession.create(matmulModel(transposeB), {
      intraOpNumThreads: threads,
      interOpNumThreads: 1,
      executionMode: 'sequential',
      graphOptimizationLevel: 'all',
      // Tiny gradients late in training would otherwise run as slow subnormal arithmetic.
      extra: { session: { set_denormal_as_zero: '1' } },
    });
    return new OrtMatMul(session, transposeB);
  }

  /** c[m,n] = a[m,k] · b[k,n] (transposeB: b is [n,k]); a, b, c are exactly m*k, k*n, m*n long. */
  async run(a: Float32Array, b: Float32Array, c: Float32Array, m: number, k: number, n: number): Promise<void> {
    await this.session.run(
      { a: new ort.Tensor('float32', a, [m, k]), b: new ort.Tensor('float32', b, this.transposeB ? [n, k] : [k, n]) },
      { c: new ort.Tensor('float32', c, [m, n]) },
    );
  }

  async dispose(): Promise<void> {
    await this.session.release();
  }
}
