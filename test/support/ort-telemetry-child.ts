/**
 * Run in a fresh process by util.test.ts: loads graft's onnxruntime users and runs them, then
 * prints its pid and the telemetry variable it ended up with. 'matmul': one product on the main
 * thread; 'head': one step of a head trainer (onnxruntime in its worker threads only);
 * 'no-session': nothing run.
 */
// Imported per mode: each must opt out by itself.
const mode = process.argv[2] ?? 'matmul';
if (mode === 'matmul') {
  const { OrtMatMul } = await import('../../src/train/ort-matmul.js');
  const matmul = await OrtMatMul.create(1);
  await matmul.run(new Float32Array([1, 2]), new Float32Array([3, 4]), new Float32Array(1), 1, 2, 1);
  await matmul.dispose();
} else if (mode === 'head') {
  const { HeadTrainer } = await import('../../src/train/head-trainer.js');
  const { initHead } = await import('../../src/model/head.js');
  const { parseHeadSpec } = await import('../../src/model/head-spec-parse.js');
  const spec = parseHeadSpec('flatten,dense:4:relu,dense:1:sigmoid');
  const featureShape = [2, 2, 3];
  const trainer = await HeadTrainer.create(spec, initHead(spec, featureShape, 0), { kind: 'rmsprop', learningRate: 1e-3 }, { seed: 0, featureShape });
  await trainer.trainStep(new Float32Array(12).fill(0.5), new Float32Array([1]), 1);
  await trainer.dispose();
}
console.log(JSON.stringify({ pid: process.pid, value: process.env.ORT_DISABLE_TELEMETRY ?? null }));
