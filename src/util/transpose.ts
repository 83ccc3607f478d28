/**
 * dst[dstOffset + c * dstStride + r] = src[srcOffset + r * srcStride + c] for r < rows, c < cols:
 * a (sub)matrix transposed, by 32x32 tiles so that both sides are read and written a cache line
 * at a time even when a stride is a whole 37,632-float row.
 */
export function transposeInto(
  src: Float32Array, srcOffset: number, srcStride: number,
  dst: Float32Array, dstOffset: number, dstStride: number,
  rows: number, cols: number,
): void {
  const T = 32;
  for (let r0 = 0; r0 < rows; r0 += T) {
    const r1 = Math.min(rows, r0 + T);
    for (let c0 = 0; c0 < cols; c0 += T) {
      const c1 = Math.min(cols, c0 + T);
      for (let r = r0; r < r1; r++) {
        const s = srcOffset + r * srcStride;
        for (let c = c0; c < c1; c++) dst[dstOffset + c * dstStride + r] = src[s + c]!;
      }
    }
  }
}
