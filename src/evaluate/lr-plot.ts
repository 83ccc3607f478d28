/** The range test's plot: smoothed loss against the learning rate (log scale), the suggested rate marked. */
import { createCanvas } from '@napi-rs/canvas';
import { niceTicks } from './plots.js';
import { writeFileAtomic } from '../util/atomic.js';

const WIDTH = 640, HEIGHT = 480;
const BOX = { left: 80, right: 576, top: 58, bottom: 427 };
const FONT = '"DejaVu Sans", sans-serif';

export function renderLrPlot(lrs: number[], losses: number[], suggestion: number): Buffer {
  const canvas = createCanvas(WIDTH, HEIGHT);
  const g = canvas.getContext('2d');
  g.fillStyle = '#ffffff';
  g.fillRect(0, 0, WIDTH, HEIGHT);
  const text = (s: string, x: number, y: number, align: 'left' | 'right' | 'center', baseline: 'top' | 'middle' | 'bottom', size = 12, color = '#000000') => {
    g.font = `${size}px ${FONT}`;
    g.textAlign = align;
    g.textBaseline = baseline;
    g.fillStyle = color;
    g.fillText(s, x, y);
  };
  const finite = losses.filter(Number.isFinite);
  // The y range of fastai's plot: the losses up to where they explode are what matter.
  let y0 = Math.min(...finite), y1 = Math.max(...finite);
  if (!(y1 > y0)) { y0 -= 0.05; y1 += 0.05; }
  const pad = (y1 - y0) * 0.05;
  y0 -= pad; y1 += pad;
  const lx0 = Math.log10(lrs[0]!), lx1 = Math.log10(Math.max(lrs.at(-1)!, lrs[0]! * 1.0001));
  const px = (lr: number) => BOX.left + ((Math.log10(lr) - lx0) / (lx1 - lx0)) * (BOX.right - BOX.left);
  const py = (y: number) => BOX.bottom - ((y - y0) / (y1 - y0)) * (BOX.bottom - BOX.top);
  g.strokeStyle = '#000000';
  g.lineWidth = 1;
  for (let e = Math.ceil(lx0); e <= Math.floor(lx1); e++) {
    const x = Math.round(px(10 ** e)) + 0.5;
    g.beginPath(); g.moveTo(x, BOX.bottom); g.lineTo(x, BOX.bottom + 4); g.stroke();
    text(`1e${e}`, x, BOX.bottom + 7, 'center', 'top');
  }
  const yt = niceTicks(y0, y1);
  for (const t of yt.ticks) {
    const y = Math.round(py(t)) + 0.5;
    g.beginPath(); g.moveTo(BOX.left - 4, y); g.lineTo(BOX.left, y); g.stroke();
    text(t.toFixed(yt.decimals), BOX.left - 7, py(t), 'right', 'middle');
  }
  text('Learning rate (log scale)', (BOX.left + BOX.right) / 2, BOX.bottom + 26, 'center', 'top');
  g.save(); g.translate(22, (BOX.top + BOX.bottom) / 2); g.rotate(-Math.PI / 2); text('Loss (smoothed)', 0, 0, 'center', 'middle'); g.restore();
  text('Learning-rate range test', (BOX.left + BOX.right) / 2, BOX.top - 10, 'center', 'bottom', 14);
  g.save();
  g.beginPath(); g.rect(BOX.left, BOX.top, BOX.right - BOX.left, BOX.bottom - BOX.top); g.clip();
  g.strokeStyle = '#1f77b4'; g.lineWidth = 1.5; g.beginPath();
  let drawing = false;
  lrs.forEach((lr, i) => {
    const v = losses[i]!;
    if (!Number.isFinite(v)) { drawing = false; return; }
    if (drawing) g.lineTo(px(lr), py(v)); else g.moveTo(px(lr), py(v));
    drawing = true;
  });
  g.stroke();
  // The suggestion: a red point on the curve and a dashed line down to the axis.
  const i = lrs.indexOf(suggestion);
  const sx = px(suggestion), sy = py(losses[i] ?? y0);
  g.strokeStyle = '#d62728'; g.setLineDash([4, 3]); g.beginPath(); g.moveTo(sx, sy); g.lineTo(sx, BOX.bottom); g.stroke(); g.setLineDash([]);
  g.fillStyle = '#d62728'; g.beginPath(); g.arc(sx, sy, 5, 0, 2 * Math.PI); g.fill();
  g.restore();
  text(`suggested: ${suggestion.toExponential(2)}`, Math.min(sx + 8, BOX.right - 120), BOX.top + 16, 'left', 'middle', 12, '#d62728');
  g.strokeStyle = '#000000'; g.lineWidth = 1;
  g.strokeRect(BOX.left + 0.5, BOX.top + 0.5, BOX.right - BOX.left - 1, BOX.bottom - BOX.top - 1);
  return canvas.toBuffer('image/png');
}

export async function writeLrPlot(file: string, lrs: number[], losses: number[], suggestion: number): Promise<void> {
  await writeFileAtomic(file, renderLrPlot(lrs, losses, suggestion));
}
