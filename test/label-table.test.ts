/** Labels from a table (flow_from_dataframe): CSV, TSV and JSON lines, in data, train and evaluate. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFile, mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { listLabelTable, resolveTableDataset } from '../src/data/label-table.js';
import { inspectDataset } from '../src/data/inspect.js';
import { trainClassifier } from '../src/learner.js';
import { parseHeadSpec } from '../src/model/head-spec-parse.js';
import { loadClassifier } from '../src/model/saved-classifier.js';
import { evaluateFolder } from '../src/evaluate/evaluate-folder.js';
import { sharedInceptionWeightsDir, sharedLabDataDir } from '../src/util/paths.js';

const root = await mkdtemp(join(tmpdir(), 'graft-table-'));
test.after(() => rm(root, { recursive: true, force: true }));
const images = join(root, 'images');
// 6 dogs in images/, 3 cats in images/cats/ (relative paths with a folder), 1 bird (a class with one image).
{
  await mkdir(join(images, 'cats'), { recursive: true });
  for (const [cls, n, to] of [['dogs', 6, ''], ['cats', 3, 'cats']] as const) {
    const from = join(sharedLabDataDir(), 'train', cls);
    const names = (await readdir(from)).sort().slice(0, n);
    for (const [i, f] of names.entries()) await copyFile(join(from, f), join(images, to, `${cls}-${i}.jpg`));
  }
  await copyFile(join(images, 'cats', 'cats-2.jpg'), join(images, 'bird.jpg'));
}
const CSV = [
  'filename,class,notes',
  'dogs-0.jpg,dog,',
  'dogs-1.jpg,dog,"a note, with a comma"',
  'dogs-2.jpg,dog,',
  'dogs-3.jpg,dog,',
  'dogs-4.jpg,dog,',
  'dogs-5.jpg,dog,',
  'dogs-5.jpg,dog,listed twice',
  'cats/cats-0.jpg,cat,',
  'cats/cats-1.jpg,cat,',
  'gone.jpg,cat,missing file',
  'bird.jpg,bird,',
  ',cat,no file',
].join('\n');

test('a CSV with relative paths, a missing file, a duplicated row and a class with one image', async () => {
  const file = join(root, 'labels.csv');
  await writeFile(file, CSV + '\n');
  const l = await listLabelTable(file, images);
  assert.deepEqual(l.classes, ['bird', 'cat', 'dog']);
  assert.equal(l.files.length, 9);
  // Table order, labels by sorted class.
  assert.deepEqual(l.files.slice(0, 2), [{ path: join(images, 'dogs-0.jpg'), label: 2 }, { path: join(images, 'dogs-1.jpg'), label: 2 }]);
  assert.deepEqual(l.files.at(-1), { path: join(images, 'bird.jpg'), label: 0 });
  assert.deepEqual(l.skipped, [{ path: join(images, 'gone.jpg'), reason: `no such file (line 11 of ${file})` }]);
  assert.ok(l.warnings.some((w) => w.includes('1 duplicated row') && w.includes('dogs-5.jpg (line 8)')), l.warnings.join('\n'));
  assert.ok(l.warnings.some((w) => w.includes('without a file or a label') && w.includes('line 13')));
  await assert.rejects(listLabelTable(file, images, { onBadImage: 'error' }), /gone\.jpg \(line 11 of .*labels\.csv\): no such file/);

  // A split per class: the one-image class has none to give, and says so.
  const split = await resolveTableDataset({ labels: file, data: images, validationSplit: 0.5 });
  assert.deepEqual(split.validation!.files.map((f) => f.path), [join(images, 'cats', 'cats-0.jpg'), join(images, 'dogs-0.jpg'), join(images, 'dogs-1.jpg'), join(images, 'dogs-2.jpg')]);
  assert.match(split.validation!.warnings.join(), /takes no image of bird/);

  // graft data shows it: counts, the bad row, the imbalance.
  const report = await inspectDataset(images, { labels: file, decode: false });
  assert.equal(report.layout, 'table');
  assert.deepEqual(report.splits[0]!.usable, { bird: 1, cat: 2, dog: 6 });
  assert.equal(report.bad.length, 1);
  assert.ok(report.warnings.some((w) => /unbalanced classes: dog has 6 training images, bird 1 \(6\.0x\)/.test(w)));
});

test('TSV and JSON lines with other column names; a file labelled two ways is left out; wrong columns are named', async () => {
  const tsv = join(root, 'labels.tsv');
  await writeFile(tsv, 'path\tlabel\ndogs-0.jpg\tdog\ncats/cats-0.jpg\tcat\ndogs-0.jpg\tcat\n');
  const t = await listLabelTable(tsv, images, { fileColumn: 'path', labelColumn: 'label' });
  assert.deepEqual(t.files, [{ path: join(images, 'cats', 'cats-0.jpg'), label: 0 }]);
  assert.match(t.warnings.join(), /labelled two ways, left out: .*dogs-0\.jpg \(dog and cat\)/);
  await assert.rejects(listLabelTable(tsv, images), /has no file column 'filename' \(its columns: path, label\)/);
  const jsonl = join(root, 'labels.jsonl');
  await writeFile(jsonl, '{"file": "dogs-1.jpg", "y": "dog"}\n\n{"file": "cats/cats-1.jpg", "y": "cat"}\n');
  const j = await listLabelTable(jsonl, images, { fileColumn: 'file', labelColumn: 'y', classes: ['cat', 'dog', 'fox'] });
  assert.deepEqual(j.files.map((f) => f.label), [1, 0]);
  assert.deepEqual(j.classes, ['cat', 'dog', 'fox']);
  await writeFile(jsonl, '{"file": "dogs-1.jpg", "y": "dog"}\nnot json\n');
  await assert.rejects(listLabelTable(jsonl, images, { fileColumn: 'file', labelColumn: 'y' }), /labels\.jsonl line 2: not a JSON object/);
});

test('train and evaluate read labels from tables', async () => {
  const train = join(root, 'train.csv'), val = join(root, 'val.csv');
  await writeFile(train, 'filename,class\n' + [0, 1, 2, 3].map((i) => `dogs-${i}.jpg,dog`).join('\n') + '\ncats/cats-0.jpg,cat\ncats/cats-1.jpg,cat\n');
  await writeFile(val, 'filename,class\ndogs-4.jpg,dog\ndogs-5.jpg,dog\ncats/cats-2.jpg,cat\nbird.jpg,bird\n');
  const lines: string[] = [];
  const out = join(root, 'run');
  const result = await trainClassifier({
    data: images,
    labels: train,
    validationLabels: val,
    out,
    weights: sharedInceptionWeightsDir('fp32'),
    inputSize: [75, 75],
    head: parseHeadSpec('gap,dense:4:relu'),
    mode: { kind: 'cached' },
    batchSize: 4,
    epochs: 1,
    classWeight: 'balanced',
    verbose: 2,
    log: (l) => lines.push(l),
  });
  assert.deepEqual(result.classes, ['cat', 'dog']);
  assert.ok(lines.includes('Found 6 images belonging to 2 classes.'));
  assert.ok(lines.includes('Found 3 images belonging to 2 classes.'));
  assert.ok(lines.some((l) => l.includes('labels not among the classes of training') && l.includes('bird')));
  assert.ok(lines.some((l) => l === 'Class weights (balanced): cat 1.5, dog 0.75'), lines.join('\n'));
  assert.match(lines.find((l) => l.startsWith('Epoch 1/1'))!, /val_balanced_accuracy: [\d.]+ - val_recall: cat [\d.]+, dog [\d.]+/);
  const model = await loadClassifier(out);
  try {
    const ev = await evaluateFolder(model, images, { labels: val });
    assert.equal(ev.metrics.count, 3);
    assert.deepEqual(ev.files, [join(images, 'dogs-4.jpg'), join(images, 'dogs-5.jpg'), join(images, 'cats', 'cats-2.jpg')]);
  } finally {
    await model.dispose();
  }
  // A table for training, class folders for validation.
  const valDirs = join(root, 'val-folders');
  await mkdir(join(valDirs, 'dog'), { recursive: true });
  await copyFile(join(images, 'dogs-5.jpg'), join(valDirs, 'dog', 'd.jpg'));
  const folders = await resolveTableDataset({ labels: train, data: images, validationData: valDirs });
  assert.deepEqual(folders.validation!.files, [{ path: join(valDirs, 'dog', 'd.jpg'), label: 1 }]);
  assert.match(folders.validation!.warnings.join(), /lacks classes of training: cat/);
  await assert.rejects(trainClassifier({ data: images, labels: train, out: join(root, 'run2') }), /no validation data for .*train\.csv: give validationLabels: 'FILE' or validationSplit: 0\.2/);
});
