import { join } from 'node:path';
import { createCanvas, type SKRSContext2D } from '@napi-rs/canvas';
import type { History } from '../train/history.js';
import { writeFileAtomic } from '../util/atomic.js';

/** One line of a plot: matplotlib's 'r' / 'b' colours, and its legend label. */
interface Series {
  values: number[];
  color: string;
  label: string;
}

// matplotlib's default figure: 6.4 x 4.8 inches at 100 dpi, axes from 12.5%..90% x 11%..88%.
const WIDTH = 640;
const HEIGHT = 480;
const BOX = { left: 80, right: 576, top: 58, bottom: 427 };
const FONT = '"DejaVu Sans", sans-serif'; // matplotlib's default face; installed with most Linux systems

/** Evenly spaced "nice" ticks (steps of 1, 2, 2.5 or 5 x 10^k) covering [lo, hi], about `target` of them. */
export function niceTicks(lo: number, hi: number, target = 6): { ticks: number[]; decimals: number } {
  const raw = (hi - lo) / Math.max(1, target - 1);
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= raw)!;
  const ticks: number[] = [];
  for (let v = Math.ceil(lo / step - 1e-9) * step; v <= hi + step * 1e-9; v += step) ticks.push(Math.abs(v) < step * 1e-9 ? 0 : v);
  let decimals = 0;
  while (decimals < 10 && Math.abs(Math.round(step * 10 ** decimals) - step * 10 ** decimals) > 1e-6) decimals++;
  return { ticks, decimals };
}

/** [min, max] of the finite values with matplotlib's 5% margins; a safe range when there are none or one. */
function range(values: number[]): [number, number] {
  const finite = values.filter(Number.isFinite);
  if (finite.length === 0) return [0, 1];
  const lo = Math.min(...finite);
  const hi = Math.max(...finite);
  if (hi - lo < 1e-12) {
    const pad = Math.max(Math.abs(lo) * 0.05, 0.05);
    return [lo - pad, hi + pad];
  }
  const pad = (hi - lo) * 0.05;
  return [lo - pad, hi + pad];
}

function text(g: SKRSContext2D, s: string, x: number, y: number, align: 'left' | 'right' | 'center', baseline: 'top' | 'middle' | 'bottom', size = 12): void {
  g.font = `${size}px ${FONT}`;
  g.textAlign = align;
  g.textBaseline = baseline;
  g.fillStyle = '#000000';
  g.fillText(s, x, y);
}

/** A matplotlib-style line plot of `series` against epochs 1..n, as PNG bytes. */
export function renderLinePlot(series: Series[], title: string, yLabel: string): Buffer {
  const canvas = createCanvas(WIDTH, HEIGHT);
  const g = canvas.getContext('2d');
  g.fillStyle = '#ffffff';
  g.fillRect(0, 0, WIDTH, HEIGHT);

  const epochs = Math.max(1, ...series.map((s) => s.values.length));
  const [x0, x1] = epochs === 1 ? [0.5, 1.5] : [1 - (epochs - 1) * 0.05, epochs + (epochs - 1) * 0.05];
  const [y0, y1] = range(series.flatMap((s) => s.values));
  const px = (x: number) => BOX.left + ((x - x0) / (x1 - x0)) * (BOX.right - BOX.left);
  const py = (y: number) => BOX.bottom - ((y - y0) / (y1 - y0)) * (BOX.bottom - BOX.top);

  // Ticks and their labels (epochs are whole numbers).
  g.strokeStyle = '#000000';
  g.lineWidth = 1;
  const xt = niceTicks(x0, x1, Math.min(epochs, 8));
  for (const t of xt.ticks.filter((t) => Number.isInteger(Math.round(t * 1e9) / 1e9) && t >= 1)) {
    g.beginPath();
    g.moveTo(Math.round(px(t)) + 0.5, BOX.bottom);
    g.lineTo(Math.round(px(t)) + 0.5, BOX.bottom + 4);
    g.stroke();
    text(g, String(Math.round(t)), px(t), BOX.bottom + 7, 'center', 'top');
  }
  const yt = niceTicks(y0, y1);
  for (const t of yt.ticks) {
    g.beginPath();
    g.moveTo(BOX.left - 4, Math.round(py(t)) + 0.5);
    g.lineTo(BOX.left, Math.round(py(t)) + 0.5);
    g.stroke();
    text(g, t.toFixed(yt.decimals), BOX.left - 7, py(t), 'right', 'middle');
  }
  text(g, 'Epoch', (BOX.left + BOX.right) / 2, BOX.bottom + 26, 'center', 'top');
  g.save();
  g.translate(22, (BOX.top + BOX.bottom) / 2);
  g.rotate(-Math.PI / 2);
  text(g, yLabel, 0, 0, 'center', 'middle');
  g.restore();
  text(g, title, (BOX.left + BOX.right) / 2, BOX.top - 10, 'center', 'bottom', 14);

  // The lines, clipped to the axes; NaN/Infinity values break a line rather than bending it.
  g.save();
  g.beginPath();
  g.rect(BOX.left, BOX.top, BOX.right - BOX.left, BOX.bottom - BOX.top);
  g.clip();
  g.lineWidth = 1.5;
  g.lineJoin = 'round';
  for (const s of series) {
    g.strokeStyle = s.color;
    g.fillStyle = s.color;
    g.beginPath();
    let drawing = false;
    s.values.forEach((v, i) => {
      if (!Number.isFinite(v)) {
        drawing = false;
        return;
      }
      if (drawing) g.lineTo(px(i + 1), py(v));
      else g.moveTo(px(i + 1), py(v));
      drawing = true;
    });
    g.stroke();
    // A point with no finite neighbour would be invisible as a line: mark it.
    s.values.forEach((v, i) => {
      if (Number.isFinite(v) && !Number.isFinite(s.values[i - 1] ?? NaN) && !Number.isFinite(s.values[i + 1] ?? NaN)) {
        g.beginPath();
        g.arc(px(i + 1), py(v), 3, 0, 2 * Math.PI);
        g.fill();
      }
    });
  }
  g.restore();

  // Axes frame (all four spines, as matplotlib draws them).
  g.strokeStyle = '#000000';
  g.lineWidth = 1;
  g.strokeRect(BOX.left + 0.5, BOX.top + 0.5, BOX.right - BOX.left - 1, BOX.bottom - BOX.top - 1);

  // Legend, framed, a short line sample per series, in the corner that hides the fewest data
  // (matplotlib's loc='best', tried in its order: upper right, upper left, lower left, lower right).
  const shown = series.filter((s) => s.values.some(Number.isFinite));
  if (shown.length > 0) {
    g.font = `12px ${FONT}`;
    const labelWidth = Math.max(...shown.map((s) => g.measureText(s.label).width));
    const w = 28 + 8 + labelWidth + 10;
    const h = 8 + shown.length * 18;
    const points: [number, number][] = [];
    for (const s of shown) {
      s.values.forEach((v, i) => {
        const next = s.values[i + 1];
        if (!Number.isFinite(v)) return;
        if (next === undefined || !Number.isFinite(next)) points.push([px(i + 1), py(v)]);
        else for (let t = 0; t < 1; t += 0.05) points.push([px(i + 1 + t), py(v + (next - v) * t)]);
      });
    }
    const corners: [number, number][] = [
      [BOX.right - 8 - w, BOX.top + 8],
      [BOX.left + 8, BOX.top + 8],
      [BOX.left + 8, BOX.bottom - 8 - h],
      [BOX.right - 8 - w, BOX.bottom - 8 - h],
    ];
    const hidden = corners.map(([cx, cy]) => points.filter(([x, y]) => x >= cx && x <= cx + w && y >= cy && y <= cy + h).length);
    const [lx, ly] = corners[hidden.indexOf(Math.min(...hidden))]!;
    g.fillStyle = 'rgba(255,255,255,0.8)';
    g.fillRect(lx, ly, w, h);
    g.strokeStyle = '#cccccc';
    g.strokeRect(lx + 0.5, ly + 0.5, w, h);
    shown.forEach((s, i) => {
      const y = ly + 4 + i * 18 + 9;
      g.strokeStyle = s.color;
      g.lineWidth = 1.5;
      g.beginPath();
      g.moveTo(lx + 8, y);
      g.lineTo(lx + 8 + 24, y);
      g.stroke();
      text(g, s.label, lx + 8 + 24 + 8, y, 'left', 'middle');
    });
  }
  return canvas.toBuffer('image/png');
}

/**
 * accuracy.png and loss.png in `dir`, like the Keras lab's matplotlib plots: training in red,
 * validation in blue, against the epoch. Returns their paths.
 */
export async function plotHistory(history: History, dir: string): Promise<{ accuracyFile: string; lossFile: string }> {
  const accuracyFile = join(dir, 'accuracy.png');
  const lossFile = join(dir, 'loss.png');
  const accuracy = renderLinePlot(
    [
      { values: history.accuracy, color: '#ff0000', label: 'Training accuracy' },
      { values: history.val_accuracy, color: '#0000ff', label: 'Validation accuracy' },
    ],
    'Training and validation accuracy',
    'Accuracy',
  );
  const loss = renderLinePlot(
    [
      { values: history.loss, color: '#ff0000', label: 'Training loss' },
      { values: history.val_loss, color: '#0000ff', label: 'Validation loss' },
    ],
    'Training and validation loss',
    'Loss',
  );
  await writeFileAtomic(accuracyFile, accuracy);
  await writeFileAtomic(lossFile, loss);
  return { accuracyFile, lossFile };
}
