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
    .argument('<paths...>', 'image files or folders (searched recursively, linked folders too; .webp, .gif and .avif too, unlike training)')
    .option('--json', 'print one JSON object per image')
    .action(async (paths: string[], flags: { model: string; json?: boolean }) => {
      const files: string[] = [];
      // What a folder walk could not read (a broken link, say) counts as an unreadable image.
      let unlisted = 0;
      const onSkipped = (file: string, reason: string) => {
        unlisted++;
        if (flags.json) console.log(JSON.stringify({ file, error: reason }));
        else console.error(`warning: skipped ${file}: ${reason}`);
      };
      for (const p of paths) {
        const st = await stat(p).catch((err: unknown) => {
          throw describeFsError(err, p);
        });
        // Unlike training (Keras's follow_links=False), prediction takes every picture under a
        // folder, as `find -L` would; the walk's loop guard keeps links from cycling.
        if (st.isDirectory()) files.push(...(await listImageFiles(p, { allFormats: true, followSymlinks: true, onWarning: (line) => console.error(`warning: ${line}`), onSkipped })));
        else files.push(p);
      }
      if (files.length === 0) throw new GraftError(unlisted > 0 ? `none of the ${unlisted} images found in ${paths.join(', ')} could be read` : `no images found in ${paths.join(', ')}`);
      const model = await loadClassifier(flags.model);
      const unreadable = new Map<string, string>();
      try {
        const predictions = await predictFiles(model, files, {
          onBadImage: (file, reason) => {
            unreadable.set(file, reason);
            // A lone image's reason goes into the error below instead.
            if (!flags.json && files.length + unlisted > 1) console.error(`warning: skipped ${file}: ${reason}`);
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
      // Like cat or grep: any input that could not be read makes the exit status 1, after every
      // readable image has been classified, so that a script notices.
      const bad = files.filter((f) => unreadable.has(f)).length + unlisted;
      if (bad === 0) return;
      const total = files.length + unlisted;
      if (total === 1) throw new GraftError(`${files[0]} could not be read as an image: ${unreadable.get(files[0]!)}`, { file: files[0] });
      throw new GraftError(bad === total ? `none of the ${bad} images could be read` : `${bad} of ${total} images could not be read (the others are classified above)`);
    });
}
