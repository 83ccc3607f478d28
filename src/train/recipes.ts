/**
 * Training recipes: named sets of the settings that make a training run (input size, resize,
 * preprocessing, head, optimiser, epochs, batch size, feed mode, augmentation). `graft train`
 * runs DEFAULT_RECIPE, chosen by measurement on several datasets (docs/recipes.md);
 * `--recipe lab` (recipe: 'lab') runs the Keras lab's exactly, as `graft lab` does. A recipe is a
 * plain object of TrainOptions fields, so `{ ...LAB_RECIPE, epochs: 5 }` composes, and every field
 * the caller sets wins over the recipe's.
 */
import { LAB_AUGMENTATION, NO_AUGMENTATION, type AugmentConfig } from '../data/augment.js';
import type { Interpolation } from '../data/decode.js';
import type { PreprocessName } from '../data/preprocess.js';
import { LAB_HEAD, type HeadSpec } from '../model/head-spec.js';
import { formatHeadSpec } from '../model/head-spec-parse.js';
import { headForClasses } from '../model/head.js';
import { GraftError } from '../util/errors.js';
import type { FeedMode } from './feature-sources.js';
import { resolveOptimizer, type OptimizerConfig } from './optimizers.js';

/** The TrainOptions fields a recipe sets. */
export interface RecipeSettings {
  cut: string;
  inputSize: [number, number];
  /** The output layer is fitted to the number of classes (headForClasses). */
  head: HeadSpec;
  optimizer: OptimizerConfig;
  epochs: number;
  batchSize: number;
  mode: FeedMode;
  /** Used by the faithful and views feeds (cached mode does not augment). */
  augmentation: AugmentConfig;
  preprocess: PreprocessName;
  interpolation: Interpolation;
}

/** Fields of RecipeSettings in the order a run describes them. */
export const RECIPE_FIELDS = ['cut', 'inputSize', 'interpolation', 'preprocess', 'head', 'optimizer', 'epochs', 'batchSize', 'mode', 'augmentation'] as const satisfies readonly (keyof RecipeSettings)[];

/**
 * The Keras lab's recipe, usable on any dataset: what `graft lab` trains. (The lab's
 * steps_per_epoch=100 and validation_steps=50 are one pass over its 2000 and 1000 images,
 * which is the default anyway; see LAB_STEPS.)
 */
export const LAB_RECIPE = {
  cut: 'mixed7',
  inputSize: [150, 150] as [number, number],
  head: LAB_HEAD,
  optimizer: { kind: 'rmsprop', learningRate: 1e-4 } as OptimizerConfig,
  epochs: 20,
  batchSize: 20,
  mode: { kind: 'faithful' } as FeedMode,
  augmentation: LAB_AUGMENTATION,
  preprocess: 'rescale' as PreprocessName,
  interpolation: 'nearest' as Interpolation,
} satisfies RecipeSettings;

/**
 * graft's default: the best measured recipe over four datasets (pets, satellite land cover, leaf
 * disease, hand signs; table and commands in docs/recipes.md). InceptionV3 sees images at its own
 * size and scaling (299x299, x/127.5-1, resized smoothly); the head averages the cut's 17x17
 * features into a 3x3 grid (AveragePooling2D(7, strides 5): it keeps roughly where things are,
 * which a global average loses: hand signs 0.98 against GAP's 0.86, at a model a fifth of the
 * lab's size) and trains on features computed once, with Adam at Keras's default rate (RMSprop
 * at the lab's 1e-4 was still far from converged after 10 epochs on 10 classes).
 */
export const DEFAULT_RECIPE = {
  cut: 'mixed7',
  inputSize: [299, 299] as [number, number],
  head: {
    layers: [
      { kind: 'avgpool', pool: 7, stride: 5 },
      { kind: 'flatten' },
      { kind: 'dense', units: 256, activation: 'relu' },
      { kind: 'dropout', rate: 0.2 },
    ],
  } as HeadSpec,
  optimizer: { kind: 'adam', learningRate: 1e-3 } as OptimizerConfig,
  epochs: 10,
  batchSize: 20,
  mode: { kind: 'cached' } as FeedMode,
  augmentation: LAB_AUGMENTATION,
  preprocess: 'inception' as PreprocessName,
  interpolation: 'bilinear' as Interpolation,
} satisfies RecipeSettings;

export const RECIPES = { default: DEFAULT_RECIPE, lab: LAB_RECIPE } as const satisfies Record<string, RecipeSettings>;
export type RecipeName = keyof typeof RECIPES;
export const RECIPE_NAMES = Object.keys(RECIPES) as RecipeName[];

/** One line a recipe name is known by. */
export const RECIPE_TITLES: Readonly<Record<RecipeName, string>> = {
  default: "graft's best measured recipe",
  lab: "the Keras lab's recipe",
};

export function isRecipeName(name: unknown): name is RecipeName {
  return typeof name === 'string' && Object.hasOwn(RECIPES, name);
}

/** A recipe by name; an unknown name is a one-line GraftError listing the known ones. */
export function recipeByName(name: string): RecipeSettings {
  if (!isRecipeName(name)) throw new GraftError(`unknown recipe '${name}': use ${RECIPE_NAMES.map((n) => `${n} (${RECIPE_TITLES[n]})`).join(' or ')}`);
  return RECIPES[name];
}

export interface ResolvedRecipe {
  name: RecipeName;
  /** The recipe's settings with the caller's own in their place. */
  settings: RecipeSettings;
  /** Fields the caller set to something other than the recipe's value. */
  changed: (keyof RecipeSettings)[];
}

const same = (a: unknown, b: unknown) => JSON.stringify(a) === JSON.stringify(b);

/** The settings a run uses: the named recipe (default 'default'), each field the caller set in its place. */
export function resolveRecipe(opts: Partial<RecipeSettings> & { recipe?: RecipeName }): ResolvedRecipe {
  const name = opts.recipe ?? 'default';
  const recipe = recipeByName(name);
  const settings = { ...recipe };
  const changed: (keyof RecipeSettings)[] = [];
  for (const field of RECIPE_FIELDS) {
    const given = opts[field];
    // null as undefined: the recipe's value (as `??` reads it).
    if (given === undefined || given === null) continue;
    (settings as Record<string, unknown>)[field] = given;
    // Optimisers as they run: { kind: 'rmsprop' } is RMSprop with Keras's defaults spelt out.
    // Heads as built: the output layer follows the classes whether spelt out or not.
    const differs =
      field === 'optimizer' ? !same(resolveOptimizer(given as OptimizerConfig), resolveOptimizer(recipe.optimizer))
      : field === 'head' ? !same(headForClasses(2, given as HeadSpec), headForClasses(2, recipe.head))
      : !same(given, recipe[field]);
    if (differs) changed.push(field);
  }
  return { name, settings, changed };
}

function describeOptimizer(cfg: OptimizerConfig): string {
  const o = resolveOptimizer(cfg);
  const kind = o.kind === 'rmsprop' && o.legacy ? 'rmsprop-legacy' : o.kind;
  return `${kind} lr ${o.learningRate}${o.kind === 'sgd' && o.momentum ? ` momentum ${o.momentum}` : ''}`;
}

function describeAugmentation(a: AugmentConfig): string {
  return same(a, LAB_AUGMENTATION) ? "the lab's augmentation" : same(a, NO_AUGMENTATION) ? 'no augmentation' : 'custom augmentation';
}

function describeFeed(s: RecipeSettings): string {
  if (s.mode.kind === 'cached') return 'mode cached (features once, no augmentation)';
  return `mode ${s.mode.kind === 'views' ? `views=${s.mode.views}` : 'faithful'} (${describeAugmentation(s.augmentation)})`;
}

/** Each setting in words, by field (the head without its output layer, which follows the classes). */
export function describeSettings(s: RecipeSettings): Record<keyof RecipeSettings, string> {
  return {
    cut: `cut ${s.cut}`,
    inputSize: `${s.inputSize[0]}x${s.inputSize[1]}`,
    interpolation: s.interpolation,
    preprocess: `preprocess ${s.preprocess}`,
    head: `head ${formatHeadSpec(s.head)}`,
    optimizer: describeOptimizer(s.optimizer),
    epochs: `${s.epochs} epochs`,
    batchSize: `batch size ${s.batchSize}`,
    mode: describeFeed(s),
    augmentation: describeAugmentation(s.augmentation),
  };
}

/** The settings in words, in order; the augmentation is told with the mode that uses it. */
function settingWords(words: Record<keyof RecipeSettings, string>): string[] {
  return RECIPE_FIELDS.filter((f) => f !== 'augmentation').map((f) => words[f]);
}

/**
 * The run's recipe line, e.g. `Recipe: lab (the Keras lab's recipe): 150x150, nearest, preprocess
 * rescale, ...`, naming the settings the caller changed.
 */
export function describeRecipe(r: ResolvedRecipe): string {
  const words = describeSettings(r.settings);
  const parts = settingWords(words);
  const recipeWords = describeSettings(RECIPES[r.name]);
  const changes = r.changed.map((f) => `${words[f]} (recipe: ${recipeWords[f]})`);
  return `Recipe: ${r.name} (${RECIPE_TITLES[r.name]}): ${parts.join(', ')}${changes.length > 0 ? `; changed: ${changes.join(', ')}` : ''}`;
}

/** Every recipe, one line each: name, what it is, its settings (for `graft train --help`). */
export function describeRecipes(): string[] {
  const width = Math.max(...RECIPE_NAMES.map((n) => n.length));
  return RECIPE_NAMES.map((n) => {
    const parts = settingWords(describeSettings(RECIPES[n]));
    return `${n.padEnd(width)}  ${RECIPE_TITLES[n]}: ${parts.join(', ')}`;
  });
}
