/**
 * The few pieces of the WebAssembly binary format that graft's hand-assembled SIMD kernels
 * (simd-rmsprop.ts, simd-adam.ts) are written in: f32x4 opcodes, local access, and a module of one
 * exported function over an imported memory. No library ships fused optimiser kernels for Node.
 */
export const I32 = 0x7f, F32 = 0x7d, V128 = 0x7b;
const simd = (op: number) => (op < 128 ? [0xfd, op] : [0xfd, (op & 0x7f) | 0x80, op >> 7]);
/** v128.load / v128.store with 4-byte alignment hint, offset 0. */
export const LOAD = [...simd(0x00), 0x02, 0x00];
export const STORE = [...simd(0x0b), 0x02, 0x00];
export const SPLAT = simd(0x13), SQRT = simd(227), ADD = simd(228), SUB = simd(229), MUL = simd(230), DIV = simd(231);
export const ABS = simd(224), LT = simd(0x43), ANDNOT = simd(0x4f);
/** f32.const x */
export const f32const = (x: number) => [0x43, ...new Uint8Array(new Float32Array([x]).buffer)];
export const get = (i: number) => [0x20, i], set = (i: number) => [0x21, i], tee = (i: number) => [0x22, i];
/** local i += by (an i32 byte offset). */
export const bump = (i: number, by: number) => [...get(i), 0x41, by, 0x6a, ...set(i)];
/** Locals to, to+1, ...: f32x4 splats of the function's scalar arguments first .. first+count-1. */
export const splatArguments = (first: number, count: number, to: number) =>
  Array.from({ length: count }, (_, i) => [...get(first + i), ...SPLAT, ...set(to + i)]).flat();
/** Locals to, to+1: splats of the optimisers' flush thresholds (gradients, then slots; optimizers.ts). */
export const splatFlushThresholds = (gradientBelow: number, slotBelow: number, to: number) =>
  [...f32const(gradientBelow), ...SPLAT, ...set(to), ...f32const(slotBelow), ...SPLAT, ...set(to + 1)];
/**
 * `while (count--) { body; each pointer += 16 }`: the loop over groups of 4 floats every kernel
 * runs, `count` and `pointers` being i32 locals (byte offsets into the memory).
 */
export const loopOverGroups = (count: number, pointers: number[], body: number[]) => [
  0x02, 0x40, 0x03, 0x40, // block, loop
  ...get(count), 0x45, 0x0d, 1, // if count == 0 break
  ...body,
  ...pointers.flatMap((p) => bump(p, 16)),
  ...get(count), 0x41, 1, 0x6b, ...set(count),
  0x0c, 0, // continue
  0x0b, 0x0b, // end loop, end block
];
/** x = x & ~(|x| < threshold): flushes values too small to matter to zero, keeps NaN. */
export const flushAbsBelow = (x: number, threshold: number) => [...get(x), ...get(x), ...ABS, ...get(threshold), ...LT, ...ANDNOT, ...set(x)];

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

/**
 * A module exporting one function `name(params...)` whose code is `body` (its local declarations
 * first, then its instructions, without the final `end`), over memory imported as env.mem.
 */
export function kernelModule(name: string, params: number[], body: number[]): Uint8Array {
  const code = [...body, 0x0b];
  return new Uint8Array([
    0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,
    ...section(1, [1, 0x60, params.length, ...params, 0]),
    ...section(2, [1, ...str('env'), ...str('mem'), 0x02, 0x00, 1]),
    ...section(3, [1, 0]),
    ...section(7, [1, ...str(name), 0x00, 0]),
    ...section(10, [1, ...leb(code.length), ...code]),
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

/** Bytes an array of n floats takes in a kernel memory: rounded up to whole groups of 4, 16-byte aligned. */
export const alignedBytes = (n: number) => Math.ceil(n / 4) * 16;

/** Consecutive 16-byte aligned float arrays carved out of `memory`, in the order asked for. */
export function arrayAllocator(memory: WasmMemory): (n: number) => Float32Array {
  let offset = 0;
  return (n) => {
    const a = new Float32Array(memory.buffer, offset, n);
    offset += alignedBytes(n);
    return a;
  };
}

/** The module's exported function, bound to `memory`, or null where the engine lacks WebAssembly SIMD. */
export function instantiateKernel<F>(bytes: Uint8Array, name: string, memory: WasmMemory): F | null {
  if (!wasm.validate(bytes)) return null;
  return new wasm.Instance(new wasm.Module(bytes), { env: { mem: memory } }).exports[name] as F;
}

/**
 * A 2-D block of weights that a kernel updates row by row: `rows` rows of `cols` floats, row r of
 * the weights (and of their optimiser slots) starting at r * stride, of the gradient at
 * r * gradientStride. The head's workers update a column band of their [cols, inputs] kernel from
 * one gradient product, whose rows are packed.
 */
export interface RowBlock {
  rows: number;
  cols: number;
  stride: number;
  gradientStride: number;
}

/** The whole of an array of n floats as a block of one row. */
export const wholeArray = (n: number): RowBlock => ({ rows: 1, cols: n, stride: n, gradientStride: n });

/**
 * Calls `simd(lo, gradientLo, n4)` for each row's groups of 4 floats and `tail(lo, hi, gradientLo)`
 * for the 1-3 floats past them (indices into the weights' and the gradient's views).
 */
export function forEachRow(block: RowBlock, simd: (lo: number, gradientLo: number, n4: number) => void, tail: (lo: number, hi: number, gradientLo: number) => void): void {
  const { rows, cols, stride, gradientStride } = block, n4 = cols >>> 2, rest = n4 * 4;
  for (let r = 0; r < rows; r++) {
    const lo = r * stride, gLo = r * gradientStride;
    simd(lo, gLo, n4);
    if (rest < cols) tail(lo + rest, lo + cols, gLo + rest);
  }
}

/** Throws unless every array is a view of `memory` (the kernels address it by byte offset). */
export function checkInMemory(kernel: string, memory: WasmMemory, arrays: Float32Array[]): void {
  if (arrays.some((a) => a.buffer !== memory.buffer)) throw new Error(`${kernel}: arrays must lie in the kernel memory`);
}
