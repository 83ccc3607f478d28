/**
 * Property test of the command line: every command, driven with many generated bad values of each
 * of its options, exits 1 with a one-line error, never "internal error" or a stack trace. Runs in
 * process (commander's parsing and graft's checks only: every case fails before any real work).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { main } from '../src/cli/main.js';

const root = await mkdtemp(join(tmpdir(), 'graft-cli-options-'));
test.after(() => rm(root, { recursive: true, force: true }));
const missing = join(root, 'no-such-folder');
const aFile = join(root, 'a-file.txt');
await writeFile(aFile, 'not an image, not a folder');

/** Runs graft in process; what it printed to stderr (console.error and commander's own writes), as lines. */
async function run(args: string[]): Promise<{ code: number; lines: string[] }> {
  const printed: string[] = [];
  const { log, error } = console;
  const write = process.stderr.write.bind(process.stderr);
  const outWrite = process.stdout.write.bind(process.stdout);
  console.log = () => {};
  console.error = (...a: unknown[]) => void printed.push(a.join(' '));
  process.stderr.write = ((chunk: string | Uint8Array) => (printed.push(String(chunk)), true)) as typeof process.stderr.write;
  process.stdout.write = (() => true) as typeof process.stdout.write;
  try {
    const code = await main(['node', 'graft', ...args]);
    return { code, lines: printed.join('\n').split('\n').filter((l) => l.trim() !== '') };
  } finally {
    Object.assign(console, { log, error });
    process.stderr.write = write;
    process.stdout.write = outWrite;
  }
}

/** Values a parser of each kind must refuse. */
const notWhole = fc.oneof(
  fc.string().filter((s) => !/^\s*[+-]?\d+\s*$/.test(s)),
  fc.double({ noInteger: true }).map(String),
  fc.constantFrom('', ' ', '0x10', '1e3', '1.5', 'NaN', 'Infinity', '-Infinity', '1_000', '٣'),
);
const wholeOutside = (min: number, max: number) => fc.oneof(fc.bigInt({ min: -(10n ** 30n), max: BigInt(min) - 1n }), fc.bigInt({ min: BigInt(max) + 1n, max: 10n ** 30n })).map(String);
const badWhole = (min: number, max: number) => fc.oneof(notWhole, wholeOutside(min, max));
const notNumber = fc.oneof(fc.string().filter((s) => !Number.isFinite(Number(s)) || s.trim() === ''), fc.constantFrom('', '0x1', 'NaN', 'Infinity', '1e999', '--1'));
const badNumber = (min: number, max: number, aboveMin = false) =>
  fc.oneof(notNumber, fc.double({ noNaN: true }).filter((x) => (aboveMin ? x <= min : x < min) || x > max).map((x) => x.toExponential()));
const badChoice = (choices: string[]) => fc.string().filter((s) => !choices.includes(s));
const badSize = fc.oneof(
  fc.string().filter((s) => !/^\s*\d+(x\d+)?\s*$/i.test(s)),
  fc.integer({ min: 75, max: 4096 }).map((b) => `${b}x0`),
  fc.integer({ min: 4097, max: 10 ** 9 }).map(String),
  fc.constantFrom('99999', '0', '0x0', '150x', 'x150', '-150'),
);
const badHead = fc.oneof(
  fc.string().filter((s) => s.trim() !== ''),
  fc.constantFrom('dense:0', 'dense:-1:relu', 'dense:1e12', 'dropout:2', 'flatten,flatten', 'dense:4:nonsense', 'gap,gap'),
);
const badPath = fc.oneof(fc.string({ minLength: 1 }).map((s) => join(missing, s)), fc.constant(aFile), fc.constant(missing));

interface Case {
  command: string[];
  option: string;
  values: fc.Arbitrary<string>;
}
const training = (command: string): Case[] => {
  const base = [command, '--data', missing, '--out', join(root, 'out')];
  const c = (option: string, values: fc.Arbitrary<string>) => ({ command: base, option, values });
  return [
    c('--epochs', badWhole(1, 100_000)),
    c('--early-stopping', badWhole(0, 100_000)),
    c('--batch-size', badWhole(1, 256)),
    c('--steps', badWhole(1, 1e9)),
    c('--validation-steps', badWhole(1, 1e9)),
    c('--seed', badWhole(0, 2 ** 32 - 1)),
    c('--lr', badNumber(0, 10, true)),
    c('--momentum', badNumber(0, 1)),
    c('--min-delta', badNumber(0, Number.MAX_VALUE)),
    c('--optimizer', badChoice(['rmsprop', 'rmsprop-legacy', 'adam', 'sgd'])),
    c('--monitor', badChoice(['val_loss', 'val_accuracy', 'loss', 'accuracy'])),
    c('--preprocess', badChoice(['rescale', 'inception'])),
    c('--interpolation', badChoice(['nearest', 'bilinear', 'bicubic', 'lanczos', 'box', 'hamming'])),
    c('--orientation', badChoice(['ignore', 'exif'])),
    c('--on-bad-image', badChoice(['skip', 'error'])),
    c('--input-size', badSize),
    c('--head', badHead),
    c('--mode', badChoice(['faithful', 'cached']).filter((s) => !/^\s*views\s*=\s*([1-9]|[1-5]\d|6[0-4])\s*$/i.test(s))),
    c('--out', fc.oneof(fc.constant('/'), fc.constant(aFile), fc.constant(process.env.HOME ?? '/root'))),
    c('--weights', badPath),
    c('--data', badPath),
    ...(command === 'train' ? [c('--val', badPath), c('--validation-split', badNumber(0, 1, true).filter((s) => !(Number(s) > 0 && Number(s) < 1))), c('--split-order', badChoice(['keras', 'shuffled']))] : []),
  ];
};
const cases: Case[] = [
  ...training('train'),
  ...training('lab'),
  { command: ['predict', aFile], option: '--model', values: badPath },
  { command: ['predict', '--model', missing], option: '--json', values: badPath }, // extra paths after a switch
  { command: ['evaluate', '--data', missing], option: '--model', values: badPath },
  { command: ['evaluate', '--model', missing], option: '--data', values: badPath },
  { command: ['summary'], option: '--input-size', values: badSize },
  { command: ['summary'], option: '--classes', values: badWhole(2, 100_000) },
  { command: ['summary'], option: '--head', values: badHead },
  { command: ['summary'], option: '--model', values: badPath },
  { command: ['summary'], option: '--cut', values: fc.string().filter((s) => !/^mixed\d+$/.test(s)) },
  { command: ['data', missing], option: '--seed', values: badWhole(0, 2 ** 32 - 1) },
  { command: ['data', missing], option: '--validation-split', values: badNumber(0, 1, true).filter((s) => !(Number(s) > 0 && Number(s) < 1)) },
  { command: ['data', missing], option: '--split-order', values: badChoice(['keras', 'shuffled']) },
  { command: ['data'], option: '--json', values: badPath },
  { command: ['augment-preview', aFile, '--out', join(root, 'p.png')], option: '--n', values: badWhole(1, 64) },
  { command: ['augment-preview', aFile, '--out', join(root, 'p.png')], option: '--size', values: badWhole(1, 2048) },
  { command: ['augment-preview', aFile, '--out', join(root, 'p.png')], option: '--seed', values: badWhole(0, 2 ** 32 - 1) },
  { command: ['augment-preview', '--out', join(root, 'p.png')], option: '--n', values: badPath.map(() => '3') },
  { command: ['weights'], option: '--load', values: badPath },
];

test('every command refuses generated bad option values with exit 1 and a one-line error', async () => {
  let runs = 0;
  for (const { command, option, values } of cases) {
    await fc.assert(
      fc.asyncProperty(values, async (value) => {
        runs++;
        // `--opt=value` so that a value starting with '-' is the option's value, not another flag.
        const args = option === '--json' || option === '--load' ? [...command, option, value] : [...command, `${option}=${value}`];
        const { code, lines } = await run(args);
        const message = lines.filter((l) => !l.startsWith('(run with --help'));
        assert.equal(code, 1, `${args.join(' ')}: exit ${code}\n${lines.join('\n')}`);
        assert.equal(message.length, 1, `${args.join(' ')}: one line expected:\n${lines.join('\n')}`);
        assert.match(message[0]!, /^(graft: )?error: /, `${args.join(' ')}`);
        assert.doesNotMatch(message[0]!, /internal error|^\s+at /, `${args.join(' ')}`);
      }),
      { numRuns: 25, seed: 21, includeErrorInReport: true },
    );
  }
  assert.ok(runs >= cases.length * 25);
});
