import type { Command } from 'commander';
import { stat } from 'node:fs/promises';
import { listImageFiles } from '../../data/listing.js';
import { loadClassifier, predictFiles } from '../../model/saved-classifier.js';
import { describeFsError, GraftError } from '../../util/errors.js';

export function registerPredict(program: Command): void {
  program
    .command('predict')
    .description('Class and probability for each image')
    .requiredOption('--model <path>', 'a training run folder (--out of graft train/lab), its model/ folder, or model.onnx')
    .argument('<paths...>', 'image files or folders (searched recursively; .webp and .gif too, unlike training)')
    .option('--json', 'print one JSON object per image')
    .action(async (paths: string[], flags: { model: string; json?: boolean }) => {
      const files: string[] = [];
      for (const p of paths) {
        const st = await stat(p).catch((err: unknown) => {
          throw describeFsError(err, p);
        });
        if (st.isDirectory()) files.push(...(await listImageFiles(p, { allFormats: true, onWarning: (line) => console.error(`warning: ${line}`) })));
        else files.push(p);
      }
      if (files.length === 0) throw new GraftError(`no images found in ${paths.join(', ')}`);
      const model = await loadClassifier(flags.model);
      const unreadable = new Map<string, string>();
      try {
        const predictions = await predictFiles(model, files, {
          onBadImage: (file, reason) => {
            unreadable.set(file, reason);
            if (!flags.json) console.error(`warning: skipped ${file}: ${reason}`);
          },
        });
        // JSON: one line per image in the order given, the unreadable ones as error lines.
        let next = 0;
        for (const file of files) {
          const reason = unreadable.get(file);
          if (reason !== undefined) {
            if (flags.json) console.log(JSON.stringify({ file, error: reason }));
            continue;
          }
          const p = predictions[next++]!;
          if (flags.json) {
            const probabilities = Object.fromEntries(model.info.classes.map((c, i) => [c, p.probabilities[i]]));
            console.log(JSON.stringify({ file: p.file, class: p.className, probability: p.probability, probabilities }));
          } else {
            console.log(`${p.file}\t${p.className}\t${p.probability.toFixed(4)}`);
          }
        }
      } finally {
        await model.dispose();
      }
      const bad = files.filter((f) => unreadable.has(f)).length;
      if (bad === files.length) throw new GraftError(bad === 1 ? `${files[0]} could not be read as an image` : `none of the ${bad} images could be read`);
      if (bad > 0 && !flags.json) console.error(`${bad} of ${files.length} images could not be read`);
    });
}
