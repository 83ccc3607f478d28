/**
 * Run by train.test.ts: trains a small head with fit() and never calls dispose(); the process must
 * still end on its own (idle head-trainer workers do not hold it), printing the epoch losses.
 */
import { HeadTrainer } from '../../src/train/head-trainer.js';
import { arrayBatchSource, fit } from '../../src/train/fit.js';
import { headForClasses, initHead } from '../../src/model/head.js';
import { parseHeadSpec } from '../../src/model/head-spec-parse.js';

const head = headForClasses(3, parseHeadSpec('flatten,dense:16:relu'));
const featureShape = [2, 2, 4];
const trainer = await HeadTrainer.create(head, initHead(head, featureShape, 0), { kind: 'adam', learningRate: 1e-3 }, { seed: 0, featureShape });
const n = 24, d = 16;
const features = Float32Array.from({ length: n * d }, (_, i) => Math.sin(i));
const labels = new Float32Array(n * 3);
for (let i = 0; i < n; i++) labels[i * 3 + (i % 3)] = 1;
const data = { features, labels, count: n };
const history = await fit(trainer, arrayBatchSource(data, 8, { seed: 0 }), data, { epochs: 2, verbose: 0 });
console.log(JSON.stringify(history.loss));
