/**
 * RMSprop's fused update as a tiny hand-assembled WebAssembly SIMD function (f32x4): V8 runs the
 * plain JS loop at ~4 ns/element (scalar f64 sqrt and divide), which makes the optimiser, not the
 * matrix products, the bottleneck of the head's step. No library ships such a kernel for Node.
 *
 * rmsprop(w, ms, g, n4, lr, rho, 1-rho, eps): for n4 groups of 4 floats at byte offsets w, ms, g:
 *   ms = rho*ms + (1-rho)*g*g;  w = w - (lr*g) / sqrt(ms + eps)     (legacy: (lr*g) / (sqrt(ms) + eps))
 * with gradients and ms values too small to matter flushed to zero (see FLUSH_GRADIENT_BELOW).
 */
import { applyUpdate, FLUSH_GRADIENT_BELOW, FLUSH_SLOT_BELOW } from './optimizers.js';

const I32 = 0x7f, F32 = 0x7d, V128 = 0x7b;
const simd = (op: number) => (op < 128 ? [0xfd, op] : [0xfd, (op & 0x7f) | 0x80, op >> 7]);
const LOAD = [...simd(0x00), 0x02, 0x00];
const STORE = [...simd(0x0b), 0x02, 0x00];
const SPLAT = simd(0x13), SQRT = simd(227), ADD = simd(228), SUB = simd(229), MUL = simd(230), DIV = simd(231);
const ABS = simd(224), LT = simd(0x43), ANDNOT = simd(0x4f);
/** f32.const x */
const f32const = (x: number) => [0x43, ...new Uint8Array(new Float32Array([x]).buffer)];
const get = (i: number) => [0x20, i], set = (i: number) => [0x21, i], tee = (i: number) => [0x22, i];
const bump = (i: number, by: number) => [...get(i), 0x41, by, 0x6a, ...set(i)];

function section(id: number, bytes: number[]): number[] {
  return [id, ...leb(bytes.length), ...bytes];
}
function leb(n: number): number[] {
  const out: number[] = [];
  do {
    let b = n & 0x7f;
    n >>>= 7;
    if (n !== 0) b |= 0x80;
    out.push(b);
  } while (n !== 0);
  return out;
}
const str = (s: string) => [s.length, ...Array.from(s, (c) => c.charCodeAt(0))];

function moduleBytes(legacy: boolean): Uint8Array {
  // params: 0 w, 1 ms, 2 g, 3 n4, 4 lr, 5 rho, 6 omr, 7 eps;
  // locals: 8 vlr, 9 vrho, 10 vomr, 11 veps, 12 g, 13 ms, 14 flush-g threshold, 15 flush-ms threshold
  const body = [
    1, 8, V128,
    ...f32const(FLUSH_GRADIENT_BELOW), ...SPLAT, ...set(14),
    ...f32const(FLUSH_SLOT_BELOW), ...SPLAT, ...set(15),
    ...get(4), ...SPLAT, ...set(8),
    ...get(5), ...SPLAT, ...set(9),
    ...get(6), ...SPLAT, ...set(10),
    ...get(7), ...SPLAT, ...set(11),
    0x02, 0x40, 0x03, 0x40,
    ...get(3), 0x45, 0x0d, 1,
    ...get(2), ...LOAD, ...set(12),
    // g = g & ~(|g| < flush): keeps NaN, drops values whose square would be subnormal
    ...get(12), ...get(12), ...ABS, ...get(14), ...LT, ...ANDNOT, ...set(12),
    ...get(1),
    ...get(9), ...get(1), ...LOAD, ...MUL,
    ...get(10), ...get(12), ...get(12), ...MUL, ...MUL,
    ...ADD, ...tee(13),
    // ms = ms & ~(ms < flush)
    ...get(13), ...get(15), ...LT, ...ANDNOT, ...tee(13),
    ...STORE,
    ...get(0),
    ...get(0), ...LOAD,
    ...get(8), ...get(12), ...MUL,
    ...(legacy ? [...get(13), ...SQRT, ...get(11), ...ADD] : [...get(13), ...get(11), ...ADD, ...SQRT]),
    ...DIV, ...SUB,
    ...STORE,
    ...bump(0, 16), ...bump(1, 16), ...bump(2, 16),
    ...get(3), 0x41, 1, 0x6b, ...set(3),
    0x0c, 0,
    0x0b, 0x0b, 0x0b,
  ];
  return new Uint8Array([
    0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,
    ...section(1, [1, 0x60, 8, I32, I32, I32, I32, F32, F32, F32, F32, 0]),
    ...section(2, [1, ...str('env'), ...str('mem'), 0x02, 0x00, 1]),
    ...section(3, [1, 0]),
    ...section(7, [1, ...str('rmsprop'), 0x00, 0]),
    ...section(10, [1, ...leb(body.length), ...body]),
  ]);
}

/** The slice of the WebAssembly API used here (TypeScript's ES libs do not declare it). */
export interface WasmMemory {
  readonly buffer: ArrayBuffer;
}
interface WasmApi {
  Memory: new (d: { initial: number; maximum?: number }) => WasmMemory;
  Module: new (bytes: Uint8Array) => object;
  Instance: new (m: object, imports: object) => { exports: Record<string, unknown> };
  validate(bytes: Uint8Array): boolean;
}
const wasm = (globalThis as unknown as { WebAssembly: WasmApi }).WebAssembly;

/** A fixed-size WebAssembly memory of at least `bytes` bytes (never grown, so views stay valid). */
export function wasmMemory(bytes: number): WasmMemory {
  return new wasm.Memory({ initial: Math.max(1, Math.ceil(bytes / 65536)) });
}

export type RmspropKernel = (w: Float32Array, ms: Float32Array, g: Float32Array, lr: number, rho: number, eps: number) => void;

/**
 * A kernel over arrays that all lie in `memory` (views of memory.buffer), or null where the
 * engine lacks WebAssembly SIMD; `legacy` selects tf.keras's legacy epsilon placement. Lengths
 * need not be multiples of 4 (the tail runs in JS).
 */
export function simdRmsprop(memory: WasmMemory, legacy = false): RmspropKernel | null {
  const bytes = moduleBytes(legacy);
  if (!wasm.validate(bytes)) return null;
  const instance = new wasm.Instance(new wasm.Module(bytes), { env: { mem: memory } });
  const fn = instance.exports.rmsprop as (w: number, m: number, g: number, n4: number, lr: number, rho: number, omr: number, eps: number) => void;
  return (w, ms, g, lr, rho, eps) => {
    if (w.buffer !== memory.buffer || ms.buffer !== memory.buffer || g.buffer !== memory.buffer) throw new Error('simdRmsprop: arrays must lie in the kernel memory');
    const n = w.length, n4 = n >>> 2;
    fn(w.byteOffset, ms.byteOffset, g.byteOffset, n4, lr, rho, 1 - rho, eps);
    const tail = n4 * 4;
    if (tail < n) applyUpdate({ kind: 'rmsprop', learningRate: lr, rho, epsilon: eps, legacy }, 0, w, g, [ms], tail, n, tail);
  };
}
