/**
 * `npm run bench [-- --json] [-- --only name,...]`: prints graft's speed figures. Each module in
 * bench/figures/ exports `run(report)` and measures one stage; they run one after another so
 * that they do not compete for the cores. Stages that export `optIn` (whole lab runs, ~20 min)
 * run only when named with --only.
 */
import { readdir } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { relaunchWithMallocTunables } from '../src/util/malloc-tunables.js';

export interface Figure {
  name: string;
  value: number;
  unit: string;
}
export type Report = (figure: Figure) => void;

// Figures as the graft command gets them: under its malloc settings (re-runs this script once).
await relaunchWithMallocTunables();

const json = process.argv.includes('--json');
const onlyArg = process.argv.indexOf('--only');
const only = onlyArg >= 0 ? new Set((process.argv[onlyArg + 1] ?? '').split(',')) : null;

const report: Report = (f) => {
  const digits = Math.abs(f.value) < 1 ? 4 : 2;
  if (json) console.log(JSON.stringify({ name: f.name, value: Number(f.value.toFixed(digits + 1)), unit: f.unit }));
  else console.log(`${f.name.padEnd(28)} ${f.value.toFixed(digits).padStart(10)} ${f.unit}`);
};

const dir = fileURLToPath(new URL('./figures/', import.meta.url));
const modules = (await readdir(dir)).filter((f) => /\.(js|ts)$/.test(f) && !f.endsWith('.d.ts')).sort();
for (const file of modules) {
  const stage = file.replace(/\.(js|ts)$/, '');
  if (only && !only.has(stage)) continue;
  const mod = (await import(new URL(`./figures/${file}`, import.meta.url).href)) as { run: (r: Report) => Promise<void>; optIn?: boolean };
  if (mod.optIn && !only) continue;
  if (!json) console.error(`# ${stage}`);
  await mod.run(report);
}
