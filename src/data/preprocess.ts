/**
 * Named pixel preprocessing presets: each maps a 0-255 value v to v * scale + offset, so it can be
 * fused into augmentation (src/data/augment.ts) or plain conversion.
 */
import { GraftError } from '../util/errors.js';

export type PreprocessName = 'rescale' | 'inception';

export interface PreprocessParams {
  scale: number;
  offset: number;
}

const PRESETS: Record<PreprocessName, PreprocessParams> = {
  // The lab's ImageDataGenerator(rescale=1./255): values in [0, 1].
  rescale: { scale: 1 / 255, offset: 0 },
  // What InceptionV3 was trained with (keras.applications.inception_v3.preprocess_input): [-1, 1].
  inception: { scale: 1 / 127.5, offset: -1 },
};

export const PREPROCESS_NAMES: readonly PreprocessName[] = Object.keys(PRESETS) as PreprocessName[];

export function isPreprocessName(name: string): name is PreprocessName {
  return Object.prototype.hasOwnProperty.call(PRESETS, name);
}

/** The {scale, offset} of a preset; a GraftError naming the choices for anything else. */
export function preprocessParams(name: string): PreprocessParams {
  if (!isPreprocessName(name)) {
    throw new GraftError(`unknown preprocessing '${name}': expected one of ${PREPROCESS_NAMES.join(', ')}`);
  }
  return { ...PRESETS[name] };
}
