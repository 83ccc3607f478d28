import { GraftError } from '../util/errors.js';

/** Commander value parsers that fail with one clear line. */
/** A whole number written out in decimal digits ('' and '0x10', which Number() reads as 0 and 16, are not). */
const WHOLE = /^\s*[+-]?\d+\s*$/;
/** A decimal number ('', '0x1p3' and the like are not). */
const DECIMAL = /^\s*[+-]?(\d+\.?\d*|\.\d+)(e[+-]?\d+)?\s*$/i;

export function intOption(name: string, min: number, max = Number.MAX_SAFE_INTEGER) {
  return (v: string): number => {
    const n = WHOLE.test(v) ? Number(v) : NaN;
    if (!Number.isInteger(n) || n < min || n > max) throw new GraftError(`--${name} must be a whole number from ${min}${max < Number.MAX_SAFE_INTEGER ? ` to ${max}` : ''}, found '${v}'`);
    return n;
  };
}

export function floatOption(name: string, min: number, max: number, opts: { aboveMin?: boolean } = {}) {
  return (v: string): number => {
    const n = DECIMAL.test(v) ? Number(v) : NaN;
    const low = opts.aboveMin ? n <= min : n < min;
    if (!Number.isFinite(n) || low || n > max) {
      throw new GraftError(`--${name} must be a number ${opts.aboveMin ? `above ${min} and at most` : `from ${min} to`} ${max}, found '${v}'`);
    }
    return n;
  };
}

/** A fraction strictly between 0 and 1, such as --validation-split (Keras accepts the same). */
export function fractionOption(name: string) {
  return (v: string): number => {
    const n = DECIMAL.test(v) ? Number(v) : NaN;
    if (!Number.isFinite(n) || n <= 0 || n >= 1) throw new GraftError(`--${name} must be a fraction between 0 and 1 (exclusive), e.g. 0.2; found '${v}'`);
    return n;
  };
}

/** A size in bytes: `1G`, `512M`, `64k`, `2.5GiB` or a plain number of bytes (binary units). */
export function bytesOption(name: string) {
  return (v: string): number => {
    const m = /^(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?$/i.exec(v.trim());
    if (!m) throw new GraftError(`--${name} must be a size such as 1G, 512M or 300000000 (bytes), found '${v}'`);
    const power = ' kmgt'.indexOf((m[2] || ' ').toLowerCase());
    return Math.floor(Number(m[1]) * 1024 ** power);
  };
}

/** The largest image side graft takes (memory sets a lower bound still for a batch: see checkInputSizeFits). */
export const MAX_INPUT_SIDE = 4096;
/** The smallest the parser takes; too small for the network's cut is refused with the layer named (layer-shapes). */
export const MIN_INPUT_SIDE = 1;

/** `150` or `150x150` (height x width), each side from MIN_INPUT_SIDE to MAX_INPUT_SIDE. */
export function sizeOption(v: string): [number, number] {
  const m = /^(\d+)(?:x(\d+))?$/i.exec(v.trim());
  if (!m) throw new GraftError(`--input-size must look like 150 or 150x150, found '${v}'`);
  const h = Number(m[1]);
  const size: [number, number] = [h, m[2] === undefined ? h : Number(m[2])];
  if (size.some((d) => !(d >= MIN_INPUT_SIDE && d <= MAX_INPUT_SIDE))) {
    throw new GraftError(`--input-size sides must be from ${MIN_INPUT_SIDE} to ${MAX_INPUT_SIDE} pixels, found '${v}'`);
  }
  return size;
}

/** Seeds are used as 32-bit integers: a larger one would silently repeat a smaller one's draws. */
export const MAX_SEED = 2 ** 32 - 1;

export function choiceOption<T extends string>(name: string, choices: readonly T[]) {
  return (v: string): T => {
    if (!(choices as readonly string[]).includes(v)) throw new GraftError(`--${name} must be one of ${choices.join(', ')}, found '${v}'`);
    return v as T;
  };
}

/**
 * An AbortSignal raised by the first Ctrl-C (SIGINT) or SIGTERM, so long jobs stop between steps
 * and keep what they wrote; a second Ctrl-C quits at once. Two signals within half a second count
 * as one (the terminal and the launcher both deliver a Ctrl-C).
 */
export function interruptSignal(onFirst?: (signal: 'SIGINT' | 'SIGTERM') => void): { signal: AbortSignal; release: () => void } {
  const controller = new AbortController();
  let first = 0;
  const handler = (received: 'SIGINT' | 'SIGTERM') => {
    if (controller.signal.aborted) {
      if (Date.now() - first > 500) process.exit(130);
      return;
    }
    first = Date.now();
    onFirst?.(received);
    controller.abort();
  };
  process.on('SIGINT', handler);
  process.on('SIGTERM', handler);
  return {
    signal: controller.signal,
    release: () => {
      process.off('SIGINT', handler);
      process.off('SIGTERM', handler);
    },
  };
}
