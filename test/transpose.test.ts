import { test } from 'node:test';
import assert from 'node:assert/strict';
import { transposeInto } from '../src/util/transpose.js';

test('transposeInto transposes a sub-matrix between strided layouts, tiles and edges included', () => {
  // A 70x45 block (not a multiple of the 32x32 tiles) at column 3 of a 100-wide source, into a
  // destination whose rows are 80 wide, starting at offset 5.
  const rows = 70, cols = 45, srcStride = 100, srcOffset = 3, dstStride = 80, dstOffset = 5;
  const src = Float32Array.from({ length: rows * srcStride + srcOffset }, (_, i) => i);
  const dst = new Float32Array(dstOffset + cols * dstStride).fill(-1);
  transposeInto(src, srcOffset, srcStride, dst, dstOffset, dstStride, rows, cols);
  for (let c = 0; c < cols; c++) {
    for (let r = 0; r < dstStride; r++) {
      const got = dst[dstOffset + c * dstStride + r];
      assert.equal(got, r < rows ? src[srcOffset + r * srcStride + c] : -1, `row ${r}, column ${c}`);
    }
  }
  assert.equal(dst.slice(0, dstOffset).every((v) => v === -1), true, 'nothing written before the offset');
});
