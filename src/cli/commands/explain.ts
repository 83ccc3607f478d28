import type { Command } from 'commander';
import { basename, extname, join } from 'node:path';
import { loadExplainer } from '../../model/grad-cam.js';
import { listImageFiles } from '../../data/listing.js';
import { BadImageError } from '../../data/decode.js';
import { GraftError, describeFsError } from '../../util/errors.js';
import { writeFileAtomic } from '../../util/atomic.js';
import { makeFolder } from '../../util/folders.js';
import { stat } from 'node:fs/promises';
import { intOption } from '../options.js';

/** `graft explain`: Grad-CAM heatmaps at the cut layer, drawn over each image as PNG files. */
export function registerExplain(program: Command): void {
  program
    .command('explain')
    .description('Where the model looked: a Grad-CAM heatmap at the cut layer over each image, written as PNG')
    .argument('<images...>', 'image files or folders (their images)')
    .requiredOption('--model <run>', 'the run folder (or its model/ folder)')
    .requiredOption('--out <dir>', 'folder for the PNG overlays (NAME.gradcam.png)')
    .option('--class <name>', 'explain this class (default: the predicted one)')
    .option('--size <pixels>', 'longest side of the overlays', intOption('size', 16, 4096), 448)
    .action(async (images: string[], opts: { model: string; out: string; class?: string; size: number }) => {
      const files: string[] = [];
      for (const path of images) {
        const st = await stat(path).catch((err: unknown) => {
          throw describeFsError(err, path);
        });
        files.push(...(st.isDirectory() ? await listImageFiles(path, { allFormats: true }) : [path]));
      }
      const explainer = await loadExplainer(opts.model);
      let failed = 0;
      try {
        const classes = explainer.info.classes;
        const classIndex = opts.class === undefined ? undefined : classes.indexOf(opts.class);
        if (classIndex === -1) throw new GraftError(`--class ${opts.class}: the model's classes are ${classes.join(', ')}`);
        await makeFolder(opts.out);
        const used = new Set<string>();
        for (const file of files) {
          try {
            const e = await explainer.explain(file, { classIndex, size: opts.size });
            let name = `${basename(file, extname(file))}.gradcam.png`;
            for (let k = 2; used.has(name); k++) name = `${basename(file, extname(file))}-${k}.gradcam.png`;
            used.add(name);
            await writeFileAtomic(join(opts.out, name), e.overlay);
            const p = e.probabilities.map((v, i) => `${classes[i]} ${v.toFixed(4)}`).join(', ');
            console.log(`${file}: ${e.className} (${p}) -> ${join(opts.out, name)}`);
          } catch (err) {
            if (!(err instanceof BadImageError)) throw err;
            failed++;
            console.error(`warning: skipped ${file}: ${err.reason}`);
          }
        }
      } finally {
        await explainer.dispose();
      }
      if (failed > 0) throw new GraftError(`${failed} of ${files.length} images could not be read`);
    });
}
