import type { Command } from 'commander';
import { stat } from 'node:fs/promises';
import { listImageFiles } from '../../data/listing.js';
import { loadClassifier, predictEach } from '../../model/saved-classifier.js';
import { Progbar } from '../../train/progbar.js';
import { answer, UNKNOWN } from '../../model/answers.js';
import { floatOption, intOption } from '../options.js';
import { describeFsError, GraftError } from '../../util/errors.js';

export function registerPredict(program: Command): void {
  program
    .command('predict')
    .description('Class and probability for each image')
    .requiredOption('--model <path>', 'a training run folder (--out of graft train/lab), its model/ folder, or model.onnx')
    .argument('<paths...>', 'image files or folders (searched recursively, linked folders too; .webp, .gif and .avif too, unlike training)')
    .option('--json', 'print one JSON object per image')
    .option('--top-k <k>', 'also list the k most probable classes', intOption('top-k', 1))
    .option('--tta', "test-time augmentation: average each image's probabilities with its mirror's (twice the work)")
    .option('--threshold <p>', `answer '${UNKNOWN}' when the best class's probability is below p`, floatOption('threshold', 0, 1))
    .action(async (paths: string[], flags: { model: string; json?: boolean; topK?: number; tta?: boolean; threshold?: number }) => {
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
      // Each line is written as its batch is done (a killed run keeps what it printed); a progress
      // bar on the terminal only while the lines go to a file or a pipe.
      const bar = process.stdout.isTTY ? null : new Progbar(files.length, 'Predicting ');
      const warn = (line: string) => {
        bar?.clear();
        console.error(line);
      };
      try {
        await predictEach(model, files, (p) => {
          const a = answer(p, model.info.classes, { topK: flags.topK, threshold: flags.threshold });
          if (flags.json) {
            const probabilities = Object.fromEntries(model.info.classes.map((c, i) => [c, p.probabilities[i]]));
            console.log(JSON.stringify({ ...a, probabilities, ...(flags.threshold !== undefined && { threshold: flags.threshold }), ...(flags.tta && { tta: true }) }));
          } else {
            const top = a.top ? `\t${a.top.map((t) => `${t.class} ${t.probability.toFixed(4)}`).join(', ')}` : '';
            const best = a.class === UNKNOWN ? ` (best ${a.bestClass})` : '';
            console.log(`${p.file}\t${a.class}\t${p.probability.toFixed(4)}${best}${top}`);
          }
        }, {
          onBadImage: (file, reason) => {
            unreadable.set(file, reason);
            // JSON: the unreadable ones as error lines, in the order given.
            if (flags.json) console.log(JSON.stringify({ file, error: reason }));
            // A lone image's reason goes into the error below instead.
            else if (files.length + unlisted > 1) warn(`warning: skipped ${file}: ${reason}`);
          },
          onProgress: (done) => bar?.update(done),
          tta: flags.tta,
        });
      } finally {
        bar?.clear();
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
