/**
 * A faithful fine-tuning epoch against a frozen faithful one, as a user runs them (opt-in:
 * `npm run bench -- --only finetune-lab`, ~10 min on 2 cores): `graft lab --epochs 1 --fine-tune
 * mixed6 --fine-tune-epochs 1` (2,000 images, 150x150, mixed7's block trainable); the epochs'
 * seconds as printed, their ratio (target <= 1.5) and the run's peak resident memory (target <= 2.5 GB).
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Report } from '../bench.js';
import { runGraft } from '../graft-process.js';

export const optIn = true;

export async function run(report: Report): Promise<void> {
  const out = await mkdtemp(join(tmpdir(), 'graft-bench-finetune-'));
  const { code, stdout: text, peakRssMb: peak } = await runGraft(['lab', '--out', out, '--quiet', '--mode', 'faithful', '--epochs', '1', '--fine-tune', 'mixed6', '--fine-tune-epochs', '1'], { stdout: 'capture' });
  await rm(out, { recursive: true, force: true });
  if (code !== 0) throw new Error(`graft lab --fine-tune failed (exit ${code})`);
  const seconds = [...text.matchAll(/^Epoch 1\/1 - (\d+)s/gm)].map((m) => Number(m[1]));
  if (seconds.length !== 2) throw new Error(`expected two epoch lines, got:\n${text}`);
  report({ name: 'faithful_frozen_epoch_s', value: seconds[0]!, unit: 's' });
  report({ name: 'faithful_finetune_epoch_s', value: seconds[1]!, unit: 's' });
  report({ name: 'finetune_over_frozen_epoch', value: seconds[1]! / seconds[0]!, unit: 'x' });
  report({ name: 'finetune_peak_rss_mb', value: peak, unit: 'MB' });
}
