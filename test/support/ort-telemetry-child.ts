/**
 * Run in a fresh process by util.test.ts: loads graft's onnxruntime wrapper, runs one tiny
 * session unless told not to, and prints its pid and the telemetry variable it ended up with.
 */
import { OrtMatMul } from '../../src/train/ort-matmul.js';

if (process.argv[2] !== 'no-session') {
  const matmul = await OrtMatMul.create(1);
  await matmul.run(new Float32Array([1, 2]), new Float32Array([3, 4]), new Float32Array(1), 1, 2, 1);
  await matmul.dispose();
}
console.log(JSON.stringify({ pid: process.pid, value: process.env.ORT_DISABLE_TELEMETRY ?? null }));
