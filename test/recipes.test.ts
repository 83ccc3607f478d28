/**
 * Training recipes: `--recipe lab` is the lab's settings exactly (as `graft lab`), the default
 * recipe is the one docs/recipes.md documents, flags override single settings, and the run says
 * which recipe it runs. The CLI checks stop right after the run's first line (an output folder
 * inside the images is refused after it), so nothing is trained.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import sharp from 'sharp';
import {
  DEFAULT_RECIPE,
  LAB_AUGMENTATION,
  LAB_HEAD,
  LAB_RECIPE,
  NO_AUGMENTATION,
  RECIPES,
  describeRecipe,
  parseHeadSpec,
  recipeByName,
  resolveRecipe,
  trainClassifier,
  type TrainOptions,
} from '../src/index.js';
import { describeRecipes } from '../src/train/recipes.js';

const bin = fileURLToPath(new URL('../bin/graft.js', import.meta.url));
const docs = fileURLToPath(new URL('../docs/recipes.md', import.meta.url));

test("the lab recipe is the Keras lab's settings, field by field", () => {
  assert.deepEqual(RECIPES.lab, {
    cut: 'mixed7',
    inputSize: [150, 150],
    head: LAB_HEAD,
    optimizer: { kind: 'rmsprop', learningRate: 1e-4 },
    epochs: 20,
    batchSize: 20,
    mode: { kind: 'faithful' },
    augmentation: LAB_AUGMENTATION,
    preprocess: 'rescale',
    interpolation: 'nearest',
  });
  assert.equal(RECIPES.lab, LAB_RECIPE);
  const lab = resolveRecipe({ recipe: 'lab' });
  assert.deepEqual(lab.settings, LAB_RECIPE);
  assert.deepEqual(lab.changed, []);
});

test('no recipe named is the default recipe; fields set win over the recipe and are named as changed', () => {
  const plain = resolveRecipe({});
  assert.equal(plain.name, 'default');
  assert.deepEqual(plain.settings, DEFAULT_RECIPE);
  const r = resolveRecipe({ recipe: 'lab', epochs: 5, inputSize: [224, 224], mode: { kind: 'cached' }, augmentation: NO_AUGMENTATION });
  assert.deepEqual(r.settings, { ...LAB_RECIPE, epochs: 5, inputSize: [224, 224], mode: { kind: 'cached' }, augmentation: NO_AUGMENTATION });
  assert.deepEqual(r.changed, ['inputSize', 'epochs', 'mode', 'augmentation']);
  // The same values spelt out are no change: Keras's RMSprop defaults, the output layer for two classes.
  const same = resolveRecipe({ recipe: 'lab', optimizer: { kind: 'rmsprop', learningRate: 1e-4, rho: 0.9, legacy: false }, head: parseHeadSpec('flatten,dense:1024:relu,dropout:0.2'), epochs: 20 });
  assert.deepEqual(same.changed, []);
  assert.match(describeRecipe(r), /^Recipe: lab \(the Keras lab's recipe\): cut mixed7, 224x224, nearest, .*; changed: 224x224 \(recipe: 150x150\), 5 epochs \(recipe: 20 epochs\), mode cached \(features once, no augmentation\) \(recipe: mode faithful \(the lab's augmentation\)\), no augmentation \(recipe: the lab's augmentation\)$/);
});

test('an unknown recipe is a one-line error naming the known ones', async () => {
  assert.throws(() => recipeByName('best'), /^GraftError: unknown recipe 'best': use default \(graft's best measured recipe\) or lab \(the Keras lab's recipe\)$/);
  await assert.rejects(trainClassifier({ data: 'x', out: 'y', recipe: 'best' } as unknown as TrainOptions), /recipe must be one of 'default', 'lab', got "best"/);
});

test('docs/recipes.md shows each recipe as graft train --help does', async () => {
  const text = await readFile(docs, 'utf8');
  for (const line of describeRecipes()) assert.ok(text.includes(line), `docs/recipes.md lacks: ${line}`);
});

async function graft(args: string[]): Promise<{ code: number | null; out: string; err: string }> {
  const child = spawn(process.execPath, [bin, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '', err = '';
  child.stdout.on('data', (d) => (out += d));
  child.stderr.on('data', (d) => (err += d));
  return new Promise((resolve) => child.on('close', (code) => resolve({ code, out, err })));
}

test("graft train's first line names the recipe and its settings; graft lab's and --recipe lab's are the same", async () => {
  const root = await mkdtemp(join(tmpdir(), 'graft-recipes-'));
  try {
    for (const split of ['train', 'validation']) {
      for (const [cls, red] of [['a', 255], ['b', 0]] as const) {
        await mkdir(join(root, split, cls), { recursive: true });
        await sharp({ create: { width: 8, height: 8, channels: 3, background: { r: red, g: 0, b: 0 } } }).png().toFile(join(root, split, cls, 'x.png'));
      }
    }
    // An output folder inside the images is refused after the first line, before any work.
    const run = async (...args: string[]) => {
      const r = await graft([...args, '--data', root, '--out', join(root, 'train', 'run')]);
      assert.equal(r.code, 1, r.err);
      assert.match(r.err, /is inside the training images folder/);
      return r.out.split('\n')[0]!;
    };
    const labLine = `Recipe: lab (the Keras lab's recipe): ${describeRecipes()[1]!.replace(/^lab\s+the Keras lab's recipe: /, '')}`;
    assert.equal(await run('lab'), labLine);
    assert.equal(await run('train', '--recipe', 'lab'), labLine);
    assert.equal(await run('train'), `Recipe: default (graft's best measured recipe): ${describeRecipes()[0]!.replace(/^default\s+graft's best measured recipe: /, '')}`);
    const changed = await run('train', '--recipe', 'lab', '--epochs', '3', '--optimizer', 'adam', '--input-size', '160', '--mode', 'cached');
    assert.match(changed, /^Recipe: lab .*; changed: 160x160 \(recipe: 150x150\), adam lr 0\.0001 \(recipe: rmsprop lr 0\.0001\), 3 epochs \(recipe: 20 epochs\), mode cached \(features once, no augmentation\) \(recipe: mode faithful \(the lab's augmentation\)\)$/);
    // --lr alone keeps the recipe's optimiser.
    assert.match(await run('train', '--lr', '0.0001'), /; changed: adam lr 0\.0001 \(recipe: adam lr 0\.001\)$/);

    const bad = await graft(['train', '--data', root, '--recipe', 'best']);
    assert.equal(bad.code, 1);
    assert.equal(bad.err, "graft: error: --recipe must be one of default, lab, found 'best'\n");
    const help = await graft(['train', '--help']);
    for (const line of describeRecipes()) assert.ok(help.out.includes(line), `graft train --help lacks: ${line}`);
  } finally {
    await rm(root, { recursive: true, force: true });
  }
});
