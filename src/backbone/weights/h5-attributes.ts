/**
 * HDF5 attributes read the way h5py writes them, for the Keras 2 .h5 layout. Keras 2
 * (keras/saving/hdf5_format.py: save_weights_to_hdf5_group, save_attributes_to_hdf5_group) hands
 * h5py Python lists of bytes and bare bytes; what lands in the file depends on the h5py version:
 *
 *   - a list of names: h5py 2.x stores numpy's fixed-length byte strings (`S<n>`, NULL-padded,
 *     ASCII); h5py 3.x variable-length ASCII strings (base.guess_dtype: a list of bytes ->
 *     string_dtype('ascii')). Keras's published ImageNet files were made in 2017 (Keras 2.0),
 *     before h5py 3.0 (2020), so by h5py 2: fixed-length;
 *   - an empty list (a layer without weights: InputLayer, Activation, pooling, Concatenate): numpy
 *     makes `np.asarray([])`, an EMPTY FLOAT64 array of shape (0,), in every h5py version;
 *   - a list too big for an object header (64512 bytes) is split by Keras into `name0`, `name1`...,
 *     each a numpy fixed-length string array (np.array_split of the whole list);
 *   - a bare bytes value (`backend`, `keras_version`, `model_config`): a variable-length ASCII
 *     string, scalar (h5py 2 and 3 alike), or fixed-length from other writers.
 *
 * (Checked with h5dump on files that h5py 3.7 wrote through Keras's code: test/fixtures/keras2-h5py.)
 * Anything else is refused with the file, the group and the attribute named: a silently wrong
 * value (an empty float array read as one name "") is what this module exists to prevent.
 */
import type { Group } from 'h5wasm/node';
import { GraftError } from '../../util/errors.js';

/** HDF5 datatype classes (H5Tpublic.h), as h5wasm reports them in an attribute's metadata. */
const H5T_INTEGER = 0;
const H5T_FLOAT = 1;
const H5T_STRING = 3;

interface AttrMetadata {
  type: number;
  size: number;
  vlen?: boolean;
  /** null for an empty (H5S_NULL) dataspace. */
  shape: number[] | null;
  total_size: number;
}

/** "group /conv2d_1" or "the root group", for messages. */
function where(obj: Group): string {
  return obj.path === '/' ? 'the root group' : `group ${obj.path}`;
}

function describe(meta: AttrMetadata, dtype: unknown): string {
  const shape = meta.shape === null ? 'an empty dataspace' : meta.shape.length === 0 ? 'a scalar' : `shape [${meta.shape.join(',')}]`;
  return `${typeof dtype === 'string' ? dtype : JSON.stringify(dtype)} data with ${shape}`;
}

function unexpected(file: string, obj: Group, name: string, meta: AttrMetadata, dtype: unknown, wanted: string): GraftError {
  return new GraftError(`${file}: attribute ${name} of ${where(obj)} holds ${describe(meta, dtype)}, not ${wanted} as Keras writes it`, { file });
}

/** The attribute's strings (any string type, scalar or 1-D), [] for h5py's empty list, else an error. */
function namesOf(file: string, obj: Group, name: string): string[] {
  const attr = obj.attrs[name]!;
  const meta = attr.metadata as unknown as AttrMetadata;
  const wanted = 'a list of names (strings)';
  if (meta.shape === null || meta.shape.length > 1) throw unexpected(file, obj, name, meta, attr.dtype, wanted);
  if (meta.type === H5T_STRING) {
    const value = attr.value as unknown;
    const list = Array.isArray(value) ? value : [value];
    if (!list.every((v): v is string => typeof v === 'string')) throw unexpected(file, obj, name, meta, attr.dtype, wanted);
    // Fixed-length strings come back cut at their first NUL; a variable-length one has none.
    return list;
  }
  if ((meta.type === H5T_FLOAT || meta.type === H5T_INTEGER) && meta.total_size === 0) return []; // np.asarray([])
  throw unexpected(file, obj, name, meta, attr.dtype, wanted);
}

/** Whether `obj` has the list attribute `name`, whole or in Keras's chunks. */
export function hasNameList(obj: Group, name: string): boolean {
  const attrs = obj.attrs;
  return attrs[name] !== undefined || attrs[`${name}0`] !== undefined;
}

/**
 * A list-of-names attribute of `obj` (layer_names, weight_names): whole, or joined from Keras's
 * `name0`, `name1`, ... chunks (as Keras's load_attributes_from_hdf5_group joins them); undefined
 * when there is neither.
 */
export function readNameList(file: string, obj: Group, name: string): string[] | undefined {
  const attrs = obj.attrs;
  if (attrs[name] !== undefined) return namesOf(file, obj, name);
  if (attrs[`${name}0`] === undefined) return undefined;
  const all: string[] = [];
  for (let i = 0; attrs[`${name}${i}`] !== undefined; i++) all.push(...namesOf(file, obj, `${name}${i}`));
  return all;
}

/** A text attribute (backend, keras_version, model_config): one string, scalar or of shape [1]; undefined when absent. */
export function readText(file: string, obj: Group, name: string): string | undefined {
  const attr = obj.attrs[name];
  if (attr === undefined) return undefined;
  const meta = attr.metadata as unknown as AttrMetadata;
  const one = meta.shape !== null && (meta.shape.length === 0 || (meta.shape.length === 1 && meta.shape[0] === 1));
  const value = attr.value as unknown;
  const text = Array.isArray(value) ? value[0] : value;
  if (meta.type !== H5T_STRING || !one || typeof text !== 'string') throw unexpected(file, obj, name, meta, attr.dtype, 'one string');
  return text;
}

/** How h5py stores a list of bytes: h5py 2.x as fixed-length strings, h5py 3.x as variable-length ones. */
export type H5pyStrings = 'h5py2' | 'h5py3';

/** Keras's HDF5_OBJECT_HEADER_LIMIT: a list attribute bigger than this is split into chunks. */
export const KERAS_ATTRIBUTE_LIMIT = 64512;

/** numpy's fixed-length bytes dtype for `names` (`S<longest>`, at least S1), as h5wasm spells ASCII C strings. */
function fixedAscii(names: string[]): { dtype: string; itemsize: number } {
  const itemsize = Math.max(1, ...names.map((n) => Buffer.byteLength(n)));
  return { dtype: `A${itemsize}`, itemsize };
}

/** numpy.array_split(list, n): the first len % n parts one longer. */
function arraySplit<T>(list: T[], n: number): T[][] {
  const base = Math.floor(list.length / n);
  const extra = list.length % n;
  const parts: T[][] = [];
  for (let i = 0, at = 0; i < n; i++) {
    const size = base + (i < extra ? 1 : 0);
    parts.push(list.slice(at, at + size));
    at += size;
  }
  return parts;
}

/**
 * Writes `names` the way Keras 2's save_attributes_to_hdf5_group does through h5py: [] as an empty
 * float64 array; a list over `limit` bytes (as numpy's fixed-length array) in `name0`, `name1`...
 * fixed-length chunks; else whole, fixed-length (h5py 2) or variable-length (h5py 3) ASCII.
 * (h5wasm writes fixed-length strings NULL-terminated where h5py pads them with NULs; readers,
 * h5py's and graft's, read both alike.)
 */
export function writeNameList(obj: Group, name: string, names: string[], h5py: H5pyStrings, limit = KERAS_ATTRIBUTE_LIMIT): void {
  if (names.length === 0) {
    obj.create_attribute(name, new Float64Array(0), [0], '<d');
    return;
  }
  const { dtype, itemsize } = fixedAscii(names);
  let n = 1;
  while (arraySplit(names, n).some((part) => part.length * itemsize > limit)) n++;
  if (n > 1) {
    arraySplit(names, n).forEach((part, i) => obj.create_attribute(`${name}${i}`, part, [part.length], dtype));
    return;
  }
  obj.create_attribute(name, names, [names.length], h5py === 'h5py2' ? dtype : 'A');
}

/** Writes `text` as h5py writes a bare bytes value (Keras's backend, keras_version, model_config): a variable-length ASCII scalar. */
export function writeText(obj: Group, name: string, text: string): void {
  obj.create_attribute(name, text, null, 'A');
}
