/**
 * graft ui's model side, loaded on first use (it brings onnxruntime): a run's classifier for
 * "try it" (predictImages, the very code graft predict runs) with a Grad-CAM heatmap, and the
 * evaluation of a run's validation images image by image (for every confusion-matrix cell and the
 * ROC curve).
 */
import { existsSync } from 'node:fs';
import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import { BadImageError } from '../data/decode.js';
import { computeMetrics, type Probabilities } from '../evaluate/metrics.js';
import { rocCurve } from '../evaluate/roc-curve.js';
import { loadExplainer, type Explainer } from '../model/grad-cam.js';
import { loadClassifier, predictImages, type LoadedClassifier } from '../model/saved-classifier.js';
import { GraftError } from '../util/errors.js';
import { HttpError } from './http.js';
import { readJson } from './runs.js';
import type { ServedFolders } from './served-folders.js';

interface Loaded {
  stamp: number;
  classifier: LoadedClassifier;
  explainer?: Promise<Explainer>;
}

export class ModelCache {
  private readonly models = new Map<string, Promise<Loaded>>();

  constructor(private readonly runsDir: string) {}

  private async load(name: string): Promise<Loaded> {
    const dir = join(this.runsDir, name);
    const onnx = join(dir, 'model.onnx');
    const stamp = (await stat(onnx).catch(() => null))?.mtimeMs;
    if (stamp === undefined) throw new HttpError(404, `run ${name} has no trained model yet (model.onnx is written when training ends)`);
    const cached = this.models.get(name);
    if (cached) {
      const m = await cached.catch(() => null);
      if (m && m.stamp === stamp) return m;
      this.models.delete(name);
      if (m) await this.release(m);
    }
    const loading = loadClassifier(dir).then((classifier) => ({ stamp, classifier }));
    this.models.set(name, loading);
    loading.catch(() => this.models.delete(name));
    return loading;
  }

  private async release(m: Loaded): Promise<void> {
    await m.classifier.dispose();
    await (await m.explainer?.catch(() => null))?.dispose();
  }

  /** Class probabilities as graft predict gives them, and (explain) the Grad-CAM overlay of the predicted class or `classIndex`. */
  async tryImage(name: string, image: { name: string; bytes: Uint8Array }, opts: { explain: boolean; classIndex?: number }) {
    const m = await this.load(name);
    let prediction;
    try {
      [prediction] = await predictImages(m.classifier, [image]);
    } catch (err) {
      if (err instanceof BadImageError) throw new HttpError(415, `${image.name}: ${err.reason}`);
      throw err;
    }
    const { classes } = m.classifier.info;
    const out: Record<string, unknown> = { classes, prediction };
    if (opts.explain) {
      if (!existsSync(join(this.runsDir, name, 'model', 'model.json'))) throw new HttpError(404, `run ${name} has no model/ folder: Grad-CAM needs its weights`);
      m.explainer ??= loadExplainer(join(this.runsDir, name));
      const explainer = await m.explainer;
      const classIndex = opts.classIndex ?? prediction!.classIndex;
      if (!Number.isInteger(classIndex) || classIndex < 0 || classIndex >= classes.length) throw new HttpError(400, `class ${opts.classIndex}: not one of the ${classes.length} classes`);
      const e = await explainer.explain(image, { classIndex });
      out.heatmap = {
        classIndex: e.classIndex,
        className: e.className,
        // The head's own forward pass in JS, on features from the model's weights: equal to the prediction's up to float rounding.
        probabilities: e.probabilities,
        cam: Array.from(e.cam, (v) => Math.round(v * 1000) / 1000),
        camShape: e.camShape,
        png: `data:image/png;base64,${e.overlay.toString('base64')}`,
      };
    }
    return out;
  }

  /**
   * Every validation image of a run, classified by its model: the files come from the run's
   * checkpoint (relative to the validation folder), the folder from a misclassified file's path
   * or the page's own command line.
   */
  async evaluateRun(name: string, folders: ServedFolders, hint: string[] = []) {
    const dir = join(this.runsDir, name);
    const setup = (await readJson<{ setup?: Record<string, { files?: string[] }> }>(join(dir, 'checkpoint', 'checkpoint.json')))?.setup;
    const files = setup?.['validation images']?.files;
    if (!files?.length) throw new HttpError(404, `run ${name}: its checkpoint does not list the validation images`);
    const metrics = await readJson<{ misclassified?: { file?: string }[] }>(join(dir, 'metrics.json'));
    const candidates = [...hint];
    for (const m of metrics?.misclassified ?? []) {
      const rel = files.find((f) => m.file?.endsWith(`/${f}`));
      if (m.file && rel) candidates.push(m.file.slice(0, m.file.length - rel.length - 1));
    }
    const root = candidates.find((c) => existsSync(join(c, files[0]!)));
    if (!root) throw new HttpError(404, `run ${name}: cannot tell where its validation images are (open the run from this page's training, or keep them where they were)`);
    const m = await this.load(name);
    const { classes } = m.classifier.info;
    const labelled = files.map((f) => ({ path: join(root, f), label: classes.indexOf(f.split('/')[0]!) }));
    if (labelled.some((f) => f.label < 0)) throw new GraftError(`run ${name}: a validation image's folder is not one of the model's classes`);
    const skipped: { path: string; reason: string }[] = [];
    const predictions = await predictImages(m.classifier, labelled.map((f) => f.path), { onBadImage: (path, reason) => skipped.push({ path, reason }) });
    const label = new Map(labelled.map((f) => [f.path, f.label]));
    const labels = predictions.map((p) => label.get(p.file)!);
    const binary = m.classifier.info.classMode === 'binary';
    const metricsNow = computeMetrics((binary ? predictions.map((p) => p.probabilities[1]!) : predictions.map((p) => p.probabilities)) as Probabilities, labels, classes.length);
    const items = await Promise.all(
      predictions.map(async (p, i) => ({ file: p.file, served: await folders.locate(p.file), label: labels[i]!, predicted: p.classIndex, probabilities: p.probabilities })),
    );
    const roc = classes.length === 2 ? rocCurve(predictions.map((p) => p.probabilities[1]!), labels.map((l) => l === 1)) : null;
    return { root, classes, metrics: { ...metricsNow, misclassified: undefined }, items, roc, skipped };
  }

  async dispose(): Promise<void> {
    for (const p of this.models.values()) {
      const m = await p.catch(() => null);
      if (m) await this.release(m);
    }
    this.models.clear();
  }
}
