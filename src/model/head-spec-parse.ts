/**
 * The text form of a head, for the command line: comma-separated layers, e.g.
 * `flatten,dense:1024:relu,dropout:0.2,dense:1:sigmoid` or `gap,dense:256:relu,dense:5:softmax`.
 */
import { GraftError } from '../util/errors.js';
import type { Activation, HeadLayerSpec, HeadSpec } from './head-spec.js';

const ACTIVATIONS: readonly Activation[] = ['relu', 'linear', 'sigmoid', 'softmax'];

/**
 * Parses a head spec; the first layer must be the pooling step: flatten, gap, or a grid pooling
 * (`avgpool:POOL[:STRIDE]` or `maxpool:...`, Keras's AveragePooling2D/MaxPooling2D with padding
 * 'valid', strides defaulting to the pool size) followed by flatten.
 */
export function parseHeadSpec(text: string): HeadSpec {
  const items = text.split(',').map((s) => s.trim());
  const bad = (i: number, why: string): GraftError =>
    new GraftError(`head spec "${text}": item ${i + 1} "${items[i]}": ${why} (expected flatten, gap, avgpool:POOL[:STRIDE], maxpool:POOL[:STRIDE], dense:UNITS[:ACTIVATION], dropout:RATE)`);
  if (text.trim() === '') throw new GraftError('head spec is empty (e.g. flatten,dense:1024:relu,dropout:0.2,dense:1:sigmoid)');
  const layers: HeadLayerSpec[] = items.map((item, i) => {
    const [kind, ...args] = item.split(':').map((s) => s.trim().toLowerCase());
    switch (kind) {
      case 'flatten':
      case 'gap':
        if (args.length > 0) throw bad(i, `${kind} takes no arguments`);
        if (kind === 'flatten' && i === 1 && isGridPool(items[0]!)) return { kind };
        if (i > 0) throw bad(i, `${kind} must be the first layer${kind === 'flatten' ? ' (or follow avgpool/maxpool)' : ''}`);
        return { kind };
      case 'avgpool':
      case 'maxpool': {
        if (i > 0) throw bad(i, `${kind} must be the first layer`);
        if (args.length < 1 || args.length > 2) throw bad(i, `${kind} needs a pool size and an optional stride`);
        const [pool, stride] = [Number(args[0]), Number(args[1] ?? args[0])];
        if (![pool, stride].every((v) => Number.isInteger(v) && v >= 1)) throw bad(i, 'pool size and stride must be positive integers');
        if (items[1]?.trim().toLowerCase() !== 'flatten') throw bad(i, `${kind} must be followed by flatten (e.g. ${kind}:7:5,flatten,dense:256:relu)`);
        return { kind, pool, stride };
      }
      case 'dense': {
        if (args.length < 1 || args.length > 2) throw bad(i, 'dense needs units and an optional activation');
        const units = Number(args[0]);
        if (!Number.isInteger(units) || units < 1) throw bad(i, `units must be a positive integer, got "${args[0]}"`);
        const activation = (args[1] ?? 'linear') as Activation;
        if (!ACTIVATIONS.includes(activation)) throw bad(i, `unknown activation "${args[1]}" (use ${ACTIVATIONS.join(', ')})`);
        return { kind, units, activation };
      }
      case 'dropout': {
        if (args.length !== 1) throw bad(i, 'dropout needs a rate');
        const rate = Number(args[0]);
        if (!(rate >= 0 && rate < 1) || args[0] === '') throw bad(i, `rate must be in [0, 1), got "${args[0]}"`);
        return { kind, rate };
      }
      default:
        throw bad(i, `unknown layer "${kind}"`);
    }
  });
  if (layers[0]!.kind === 'dense' || layers[0]!.kind === 'dropout') {
    throw new GraftError(`head spec "${text}": must start with flatten, gap, avgpool or maxpool (the backbone's output is an image-shaped map)`);
  }
  return { layers };
}

/** The text form of a head, as parseHeadSpec reads it (e.g. `gap,dense:1024:relu,dropout:0.2`). */
export function formatHeadSpec(spec: HeadSpec): string {
  return spec.layers
    .map((l) =>
      l.kind === 'dense' ? `dense:${l.units}:${l.activation}`
        : l.kind === 'dropout' ? `dropout:${l.rate}`
        : l.kind === 'avgpool' || l.kind === 'maxpool' ? `${l.kind}:${l.pool}:${l.stride}`
        : l.kind,
    )
    .join(',');
}

function isGridPool(item: string): boolean {
  const kind = item.split(':')[0]!.trim().toLowerCase();
  return kind === 'avgpool' || kind === 'maxpool';
}
