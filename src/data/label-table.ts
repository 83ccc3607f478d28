/**
 * Labels from a table (Keras's `flow_from_dataframe`): a CSV, TSV or JSON-lines file with a file
 * column (default `filename`) and a label column (default `class`), paths relative to the images
 * folder. Produces the same DatasetListing as a class-folder listing, with Keras 2.x's semantics:
 * classes are the sorted distinct labels of every row (a class whose files are all missing keeps
 * its output), rows stay in table order, rows whose file is missing or not an image are named and
 * skipped (validate_filenames) or, with onBadImage 'error', stop the run. Where Keras is silent,
 * graft reports: a file listed twice with the same label is kept once, a file listed with two
 * labels is left out, and a row without a label is skipped; each is named in a warning.
 */
import { readFile, stat } from 'node:fs/promises';
import { extname, isAbsolute, resolve } from 'node:path';
import { parse } from 'csv-parse/sync';
import { describeFsError, firstFew, GraftError } from '../util/errors.js';
import { emptyValidationProblem, isImageFileName, listValidationFolder, pythonSorted, splitListing, type DatasetListing, type LabelledFile, type SkippedFile } from './listing.js';
import { optionName, setting } from '../util/option-names.js';

export interface LabelTableOptions {
  /** The column holding image paths (default 'filename', Keras's x_col). */
  fileColumn?: string;
  /** The column holding class names (default 'class', Keras's y_col). */
  labelColumn?: string;
  /** Class names in label order (a model's, or training's for a validation table); default: the table's, sorted. */
  classes?: string[];
  /** Whose classes `classes` are, for messages ('training', 'the model'). */
  classesOf?: string;
  /** A missing file: 'skip' it with a warning (default) or stop with an 'error'. */
  onBadImage?: 'skip' | 'error';
}

export const DEFAULT_FILE_COLUMN = 'filename';
export const DEFAULT_LABEL_COLUMN = 'class';

/** The table's rows as objects by column name, and its columns. CSV/TSV have a header row; JSON lines are objects. */
export async function readLabelTable(file: string): Promise<{ rows: Record<string, unknown>[]; columns: string[] }> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    throw describeFsError(err, file, 'read');
  }
  text = text.replace(/^\uFEFF/, ''); // a BOM, as Excel writes
  const ext = extname(file).toLowerCase();
  if (['.jsonl', '.ndjson', '.json'].includes(ext)) {
    const rows: Record<string, unknown>[] = [];
    text.split(/\r?\n/).forEach((line, i) => {
      if (line.trim() === '') return;
      let row: unknown;
      try {
        row = JSON.parse(line);
      } catch {
        throw new GraftError(`${file} line ${i + 1}: not a JSON object (a JSON-lines table has one object per line)`, { file });
      }
      if (typeof row !== 'object' || row === null || Array.isArray(row)) throw new GraftError(`${file} line ${i + 1}: not a JSON object`, { file });
      rows.push(row as Record<string, unknown>);
    });
    return { rows, columns: [...new Set(rows.flatMap((r) => Object.keys(r)))] };
  }
  const firstLine = text.slice(0, text.indexOf('\n') >>> 0);
  const delimiter = ext === '.tsv' || ext === '.tab' || (ext !== '.csv' && firstLine.includes('\t') && !firstLine.includes(',')) ? '\t' : ',';
  let rows: Record<string, string>[];
  try {
    rows = parse(text, { columns: true, delimiter, skip_empty_lines: true, trim: true, relax_column_count: true });
  } catch (err) {
    throw new GraftError(`${file}: not a readable ${delimiter === '\t' ? 'TSV' : 'CSV'} table (${(err as Error).message})`, { file });
  }
  const header = parse(firstLine, { delimiter, trim: true, to_line: 1 })[0] as string[] | undefined;
  return { rows, columns: header ?? [] };
}

/** Whether a path exists as a file (any error: no). */
async function fileProblem(path: string): Promise<string | null> {
  try {
    return (await stat(path)).isFile() ? null : 'not a file';
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    return code === 'ENOENT' ? 'no such file' : `cannot be read (${code ?? String(err)})`;
  }
}

/** A table's rows as a listing of images in `dataDir` (see the module comment). */
export async function listLabelTable(tableFile: string, dataDir: string, opts: LabelTableOptions = {}): Promise<DatasetListing> {
  const fileCol = opts.fileColumn ?? DEFAULT_FILE_COLUMN, labelCol = opts.labelColumn ?? DEFAULT_LABEL_COLUMN;
  const root = resolve(dataDir);
  const { rows, columns } = await readLabelTable(tableFile);
  for (const [col, what] of [[fileCol, 'file'], [labelCol, 'label']] as const) {
    if (!columns.includes(col)) {
      throw new GraftError(`${tableFile} has no ${what} column '${col}' (its columns: ${columns.join(', ') || 'none'}); name it with ${optionName(what === 'file' ? 'fileColumn' : 'labelColumn')}`, { file: tableFile });
    }
  }
  if (rows.length === 0) throw new GraftError(`${tableFile} has no rows`, { file: tableFile });

  const warnings: string[] = [];
  const skipped: SkippedFile[] = [];
  const unlabelled: number[] = [];
  // Row number as a user counts them: the header is line 1 in CSV/TSV.
  const lineOf = (i: number) => i + 2;
  const entries: { path: string; label: string; line: number }[] = [];
  rows.forEach((row, i) => {
    const file = row[fileCol], label = row[labelCol];
    const labelText = label === undefined || label === null ? '' : String(label).trim();
    const fileText = file === undefined || file === null ? '' : String(file).trim();
    if (fileText === '' || labelText === '') {
      unlabelled.push(lineOf(i));
      return;
    }
    entries.push({ path: isAbsolute(fileText) ? fileText : resolve(root, fileText), label: labelText, line: lineOf(i) });
  });
  if (unlabelled.length > 0) warnings.push(`${unlabelled.length} row${unlabelled.length === 1 ? '' : 's'} of ${tableFile} without a file or a label, skipped (line ${firstFew(unlabelled.map(String))})`);

  // A file listed twice: once if the labels agree, not at all if they do not.
  const labelsOf = new Map<string, Set<string>>();
  for (const e of entries) (labelsOf.get(e.path) ?? labelsOf.set(e.path, new Set()).get(e.path)!).add(e.label);
  const seen = new Set<string>();
  const duplicates: string[] = [];
  const conflicting: string[] = [];
  const kept = entries.filter((e) => {
    if (labelsOf.get(e.path)!.size > 1) {
      if (!seen.has(e.path)) conflicting.push(`${e.path} (${[...labelsOf.get(e.path)!].join(' and ')})`);
      seen.add(e.path);
      return false;
    }
    if (seen.has(e.path)) {
      duplicates.push(`${e.path} (line ${e.line})`);
      return false;
    }
    seen.add(e.path);
    return true;
  });
  if (duplicates.length > 0) warnings.push(`${duplicates.length} duplicated row${duplicates.length === 1 ? '' : 's'} in ${tableFile}, kept once: ${firstFew(duplicates)}`);
  if (conflicting.length > 0) warnings.push(`${conflicting.length} file${conflicting.length === 1 ? '' : 's'} in ${tableFile} labelled two ways, left out: ${firstFew(conflicting)}`);

  // Classes: given (a model's, training's), or the table's own, sorted as Keras sorts them.
  const own = pythonSorted(new Set(kept.map((e) => e.label)));
  const classes = opts.classes ? [...opts.classes] : own;
  const unknown = own.filter((c) => !classes.includes(c));
  if (opts.classes) {
    if (own.every((c) => !classes.includes(c))) {
      throw new GraftError(`${tableFile} has no label that is a class of ${opts.classesOf ?? 'training'} (${opts.classesOf ?? 'training'}: ${classes.join(', ')}; found: ${firstFew(own)})`, { file: tableFile });
    }
    if (unknown.length > 0) warnings.push(`${tableFile} has labels not among the classes of ${opts.classesOf ?? 'training'}, their rows ignored: ${firstFew(unknown)}`);
  }

  const problems = await Promise.all(kept.map((e) => (isImageFileName(e.path) ? fileProblem(e.path) : Promise.resolve('not an image file name (.png .jpg .jpeg .bmp .ppm .tif .tiff)'))));
  const files: LabelledFile[] = [];
  kept.forEach((e, i) => {
    const label = classes.indexOf(e.label);
    if (label < 0) return;
    const problem = problems[i];
    if (problem) {
      if (opts.onBadImage === 'error') {
        throw new GraftError(`${e.path} (line ${e.line} of ${tableFile}): ${problem} (${setting('onBadImage', 'skip')} leaves such rows out)`, { file: e.path });
      }
      skipped.push({ path: e.path, reason: `${problem} (line ${e.line} of ${tableFile})` });
      return;
    }
    files.push({ path: e.path, label });
  });
  if (skipped.length > 0) {
    warnings.push(`${skipped.length} file${skipped.length === 1 ? '' : 's'} named in ${tableFile} ${skipped.length === 1 ? 'is' : 'are'} missing or unusable, skipped: ${firstFew(skipped.map((s) => `${s.path}: ${s.reason}`), '; ')}`);
  }
  return { root, classes, files, skipped, ignoredCount: 0, warnings };
}

/** What train and data need to read a dataset from tables. */
export interface TableDataOptions {
  labels: string;
  data: string;
  validationLabels?: string;
  validationData?: string;
  validationSplit?: number;
  splitOrder?: 'keras' | 'shuffled';
  seed?: number;
  fileColumn?: string;
  labelColumn?: string;
  onBadImage?: 'skip' | 'error';
}

/**
 * Training and validation listings from tables: a validation table (paths relative to
 * validationData, else data), class folders (validationData alone), or a per-class validation
 * split of the training table, as graft splits class folders. None: no validation listing.
 */
export async function resolveTableDataset(opts: TableDataOptions): Promise<{ train: DatasetListing; validation?: DatasetListing }> {
  const columns = { fileColumn: opts.fileColumn, labelColumn: opts.labelColumn, onBadImage: opts.onBadImage };
  const all = await listLabelTable(opts.labels, opts.data, columns);
  if (opts.validationLabels && opts.validationSplit !== undefined) {
    throw new GraftError(`${optionName('validationLabels')} and ${optionName('validationSplit')} both give validation data: use one of them`);
  }
  if (opts.validationLabels) {
    const validation = await listLabelTable(opts.validationLabels, opts.validationData ?? opts.data, { ...columns, classes: all.classes });
    return { train: all, validation };
  }
  if (opts.validationData !== undefined) {
    if (opts.validationSplit !== undefined) throw new GraftError(`${optionName('validationData')} and ${optionName('validationSplit')} both give validation data: use one of them`);
    // Class folders named like the table's classes.
    return { train: all, validation: await listValidationFolder(opts.validationData, all.classes) };
  }
  if (opts.validationSplit !== undefined) {
    const parts = splitListing(all, opts.validationSplit, opts.splitOrder ?? 'keras', opts.seed ?? 0);
    return parts;
  }
  return { train: all };
}

/** Training data from tables, as trainClassifier needs it: two classes or more, and validation data. */
export async function listTables(opts: TableDataOptions): Promise<{ train: DatasetListing; validation: DatasetListing }> {
  const { train, validation } = await resolveTableDataset(opts);
  const present = train.classes.filter((_, c) => train.files.some((f) => f.label === c));
  if (present.length < 2) {
    throw new GraftError(`${opts.labels} gives images of ${present.length} class${present.length === 1 ? '' : 'es'} (${present.join(', ') || 'none'}) in ${train.root}; training needs at least 2`, { file: opts.labels });
  }
  if (!validation) {
    throw new GraftError(`no validation data for ${opts.labels}: give ${setting('validationLabels', 'FILE')} or ${setting('validationSplit', 0.2)}`, { file: opts.labels });
  }
  const empty = emptyValidationProblem(validation, opts.validationSplit);
  if (empty) throw new GraftError(empty, { file: validation.root });
  return { train, validation };
}
