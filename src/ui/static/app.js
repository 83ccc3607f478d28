// graft ui's page: plain ES module, no build step. Talks to the server's /api routes (same origin;
// the token travels in an HttpOnly cookie).
import uPlot from '/vendor/uPlot.esm.js';

const $ = (sel, root = document) => root.querySelector(sel);
const el = (tag, attrs = {}, ...children) => {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === 'class') e.className = v;
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else if (v !== undefined && v !== null) e.setAttribute(k, v);
  }
  for (const c of children.flat()) if (c !== null && c !== undefined) e.append(c instanceof Node ? c : String(c));
  return e;
};
const fmt = (v, d = 4) => (typeof v === 'number' && Number.isFinite(v) ? v.toFixed(d) : '–');

async function api(path, opts = {}) {
  const res = await fetch(path, {
    method: opts.method ?? (opts.body !== undefined ? 'POST' : 'GET'),
    headers: opts.headers ?? (opts.body !== undefined && !(opts.body instanceof Blob) ? { 'content-type': 'application/json' } : {}),
    body: opts.body === undefined ? undefined : opts.body instanceof Blob ? opts.body : JSON.stringify(opts.body),
  });
  const type = res.headers.get('content-type') ?? '';
  const value = type.includes('json') ? await res.json() : await res.text();
  if (!res.ok) throw new Error(value?.error ?? `${res.status} ${res.statusText}`);
  return value;
}
const fileUrl = (folder, path) => `/api/file?folder=${encodeURIComponent(folder)}&path=${encodeURIComponent(path)}`;
const thumbUrl = (folder, path) => `/api/thumb?folder=${encodeURIComponent(folder)}&path=${encodeURIComponent(path)}`;
const status = (text) => ($('#status-line').textContent = text);

// ---- tabs
const tabs = { data: null, train: refreshJobs, runs: refreshRuns, mistakes: loadMistakesRuns, try: loadTryRuns };
for (const b of document.querySelectorAll('nav button')) {
  b.addEventListener('click', () => showTab(b.dataset.tab));
}
function showTab(name) {
  for (const b of document.querySelectorAll('nav button')) b.classList.toggle('active', b.dataset.tab === name);
  for (const s of document.querySelectorAll('.tab')) s.classList.toggle('active', s.id === `tab-${name}`);
  tabs[name]?.().catch((e) => status(e.message));
}

// ---- charts
function lineChart(container, title, series, width = 460) {
  container.replaceChildren();
  const xs = series[0]?.values.map((_, i) => i + 1) ?? [];
  const longest = Math.max(0, ...series.map((s) => s.values.length));
  const x = Array.from({ length: longest }, (_, i) => i + 1);
  const colours = ['#2f6fed', '#e8772e', '#2d8a4e', '#c23b3b', '#8a4fd1', '#1aa3a3', '#b08a00', '#666'];
  const data = [x, ...series.map((s) => x.map((_, i) => s.values[i] ?? null))];
  container.dataset.points = String(xs.length);
  return new uPlot(
    {
      title,
      width,
      height: 260,
      scales: { x: { time: false } },
      axes: [{ label: 'epoch' }, {}],
      series: [{ label: 'epoch' }, ...series.map((s, i) => ({ label: s.label, stroke: colours[i % colours.length], width: 2, points: { show: true }, dash: s.dash }))],
    },
    data,
    container,
  );
}
function historyCharts(history, lossEl, accEl, prefix = '') {
  lineChart(lossEl, `${prefix}loss`, [{ label: 'loss', values: history.loss ?? [] }, { label: 'val_loss', values: history.val_loss ?? [] }]);
  lineChart(accEl, `${prefix}accuracy`, [{ label: 'accuracy', values: history.accuracy ?? [] }, { label: 'val_accuracy', values: history.val_accuracy ?? [] }]);
}

// ---- data
const data = { folder: null, summary: null, split: 'train', cls: null, offset: 0, page: 100, picked: null, seed: 0 };
$('#folder-form').addEventListener('submit', async (e) => {
  e.preventDefault();
  const split = $('#validation-split').value;
  try {
    status('opening…');
    const summary = await api('/api/folders', { body: { path: $('#folder-path').value.trim(), ...(split ? { validationSplit: Number(split) } : {}) } });
    data.folder = summary.id;
    data.summary = summary;
    showSummary(summary);
    const form = $('#train-form');
    form.data.value = summary.path;
    if (split) form.validationSplit.value = split;
    if (!form.name.value) form.name.value = summary.path.split('/').filter(Boolean).at(-1).replace(/[^A-Za-z0-9._-]/g, '_');
    updateCommand();
    status(`opened ${summary.path}`);
    loadReport(false);
  } catch (err) {
    status(err.message);
    $('#data-summary').replaceChildren(el('p', { class: 'error' }, err.message));
  }
});
function showSummary(s) {
  const rows = s.classes.map((c) => el('tr', {}, el('td', {}, c), ...s.splits.map((sp) => el('td', { class: 'num' }, sp.counts[c] ?? 0))));
  $('#data-summary').replaceChildren(
    el('p', {}, `${s.layout === 'lab' ? 'train/ + validation/ layout' : 'class folders'}: ${s.classes.length} classes`),
    el('table', { id: 'class-counts' }, el('thead', {}, el('tr', {}, el('th', {}, 'class'), ...s.splits.map((sp) => el('th', {}, sp.name)))), el('tbody', {}, rows)),
    ...s.warnings.map((w) => el('p', { class: 'hint' }, `warning: ${w}`)),
  );
  $('#grid-split').replaceChildren(...s.splits.map((sp) => el('option', { value: sp.name }, sp.name)));
  $('#grid-class').replaceChildren(...s.classes.map((c) => el('option', { value: c }, c)));
  $('#grid-controls').hidden = false;
  data.split = s.splits[0].name;
  data.cls = s.classes[0];
  data.offset = 0;
  loadGrid();
}
async function loadReport(decode) {
  const box = $('#data-report');
  box.replaceChildren(el('p', { class: 'hint' }, decode ? 'reading every image…' : 'reading image headers…'));
  try {
    const r = await api(`/api/folders/${data.folder}/report?decode=${decode ? 1 : 0}`);
    const size = (s) => (s ? `${s.min}–${s.max} (median ${s.median})` : '–');
    box.replaceChildren(
      el('p', {}, `widths ${size(r.width)}, heights ${size(r.height)}; formats ${Object.entries(r.formats).map(([k, v]) => `${k} ${v}`).join(', ') || '–'}${r.rotated ? `; ${r.rotated} carry an EXIF rotation` : ''}`),
      el('p', { id: 'bad-files' }, r.bad.length ? `${r.bad.length} bad files${decode ? '' : ' (headers only)'}:` : `no bad files${decode ? '' : ' in the headers'}`, ' ',
        decode ? null : el('button', { type: 'button', onclick: () => loadReport(true) }, 'Decode every image')),
      r.bad.length ? el('ul', {}, r.bad.slice(0, 50).map((b) => el('li', {}, `${b.path}: ${b.reason}`))) : null,
      ...r.problems.map((p) => el('p', { class: 'error' }, p)),
    );
  } catch (err) {
    box.replaceChildren(el('p', { class: 'error' }, err.message));
  }
}
async function loadGrid() {
  const page = await api(`/api/folders/${data.folder}/images?split=${encodeURIComponent(data.split)}&class=${encodeURIComponent(data.cls)}&offset=${data.offset}&limit=${data.page}`);
  $('#grid').replaceChildren(
    ...page.items.map((it) => el('img', { src: thumbUrl(data.folder, it.path), loading: 'lazy', alt: it.name, title: it.path, 'data-path': it.path, onclick: () => pickAugment(it.path) })),
  );
  const pages = Math.max(1, Math.ceil(page.total / data.page));
  $('#grid-page').textContent = ` page ${Math.floor(data.offset / data.page) + 1} of ${pages} (${page.total} images) `;
  $('#grid-prev').disabled = data.offset === 0;
  $('#grid-next').disabled = data.offset + data.page >= page.total;
}
$('#grid-split').addEventListener('change', (e) => { data.split = e.target.value; data.offset = 0; loadGrid(); });
$('#grid-class').addEventListener('change', (e) => { data.cls = e.target.value; data.offset = 0; loadGrid(); });
$('#grid-prev').addEventListener('click', () => { data.offset = Math.max(0, data.offset - data.page); loadGrid(); });
$('#grid-next').addEventListener('click', () => { data.offset += data.page; loadGrid(); });
function pickAugment(path) {
  data.picked = path;
  data.seed = 0;
  showAugment();
}
function showAugment() {
  $('#augment').hidden = false;
  $('#augment-preview').src = `/api/augment?folder=${data.folder}&path=${encodeURIComponent(data.picked)}&seed=${data.seed}`;
  $('#augment-caption').textContent = `${data.picked}: the image, then 8 draws of the lab's augmentation (seed ${data.seed})`;
}
$('#augment-again').addEventListener('click', () => { data.seed++; showAugment(); });

// ---- train
const form = $('#train-form');
let defaults = {};
/** The form's values, leaving out those equal to graft train's defaults (the command line stays short). */
function formValues() {
  const v = {};
  for (const input of form.elements) {
    if (!input.name) continue;
    const value = input.type === 'checkbox' ? input.checked : input.value === '' ? undefined : input.type === 'number' ? Number(input.value) : input.value;
    if (value === undefined || (input.name in defaults && String(defaults[input.name]) === String(value))) continue;
    v[input.name] = value;
  }
  return v;
}
let commandTimer = null;
function updateCommand() {
  clearTimeout(commandTimer);
  commandTimer = setTimeout(async () => {
    try {
      const { command } = await api('/api/train/command', { body: formValues() });
      $('#train-command').textContent = command;
      $('#train-error').textContent = '';
    } catch (err) {
      $('#train-command').textContent = '';
      $('#train-error').textContent = err.message;
    }
  }, 150);
}
form.addEventListener('input', updateCommand);
form.addEventListener('submit', async (e) => {
  e.preventDefault();
  try {
    const job = await api('/api/train', { body: formValues() });
    $('#train-error').textContent = '';
    watchRun(job.run);
    refreshJobs();
  } catch (err) {
    $('#train-error').textContent = err.message;
  }
});
async function loadDefaults() {
  const d = await api('/api/train/defaults');
  defaults = d;
  for (const [k, v] of Object.entries(d)) {
    const input = form.elements[k];
    if (!input) continue;
    if (input.type === 'checkbox') input.checked = Boolean(v);
    else input.value = v;
  }
  updateCommand();
}
function progressText(job) {
  const p = job.progress;
  if (!p) return job.state === 'running' ? 'starting…' : '';
  if (p.label === 'epoch done') return `epoch ${p.epoch}/${p.epochs} done`;
  if (p.label) return `${p.label} ${p.done}/${p.total}`;
  return `epoch ${p.epoch}/${p.epochs}, step ${p.done}/${p.total}${p.eta !== undefined ? `, ETA ${Math.floor(p.eta / 60)}m${String(p.eta % 60).padStart(2, '0')}s` : ''}${p.loss !== undefined ? ` - loss ${fmt(p.loss)}` : ''}`;
}
async function refreshJobs() {
  const jobs = await api('/api/jobs');
  $('#jobs tbody').replaceChildren(
    ...jobs.slice().reverse().map((j) =>
      el('tr', { 'data-job': j.id },
        el('td', {}, j.id), el('td', {}, el('a', { href: '#', onclick: (e) => { e.preventDefault(); watchRun(j.run); } }, j.run)),
        el('td', { class: `status-${j.state}` }, j.state), el('td', {}, j.error ? el('span', { class: 'error' }, j.error) : progressText(j)),
        el('td', {}, j.state === 'running' || j.state === 'queued' ? el('button', { type: 'button', class: 'stop', onclick: () => api(`/api/jobs/${j.id}/stop`, { body: {} }).then(refreshJobs) }, 'Stop') : null),
      ),
    ),
  );
}
let live = null;
function watchRun(name) {
  live?.close();
  $('#live-run').textContent = name;
  $('#live-log').textContent = '';
  $('#live-progress').textContent = '';
  historyCharts({}, $('#live-chart-loss'), $('#live-chart-acc'));
  live = new EventSource(`/api/runs/${encodeURIComponent(name)}/events`);
  live.addEventListener('history', (e) => historyCharts(JSON.parse(e.data), $('#live-chart-loss'), $('#live-chart-acc')));
  live.addEventListener('job', (e) => {
    const job = JSON.parse(e.data);
    $('#live-progress').textContent = `${job.state}: ${progressText(job)}${job.error ? ` — ${job.error}` : ''}`;
    $('#live-progress').dataset.state = job.state;
    refreshJobs();
  });
  live.addEventListener('status', (e) => ($('#live-progress').dataset.status = JSON.parse(e.data).status));
  live.addEventListener('log', (e) => {
    const log = $('#live-log');
    log.textContent += `${JSON.parse(e.data).line}\n`;
    log.scrollTop = log.scrollHeight;
  });
}

// ---- runs
const compare = new Set();
async function refreshRuns() {
  const runs = await api('/api/runs');
  const recipe = (r) => (r ? ['head', 'mode', 'optimizer', 'batch size', 'input size', 'preprocess'].filter((k) => r[k] !== undefined).map((k) => `${k}: ${typeof r[k] === 'object' ? JSON.stringify(r[k]) : r[k]}`).join('; ') : '');
  $('#runs-table tbody').replaceChildren(
    ...runs.map((r) =>
      el('tr', { 'data-run': r.name },
        el('td', {}, el('input', { type: 'checkbox', ...(compare.has(r.name) ? { checked: '' } : {}), onchange: (e) => { e.target.checked ? compare.add(r.name) : compare.delete(r.name); drawCompare(); } })),
        el('td', {}, r.name), el('td', { class: `status-${r.status}` }, r.status + (r.external ? ' (elsewhere)' : '')),
        el('td', { class: 'num' }, r.epochs), el('td', { class: 'num' }, r.best ? `${fmt(r.best.val_accuracy)} (epoch ${r.best.epoch})` : '–'),
        el('td', { class: 'num' }, fmt(r.final?.val_accuracy)), el('td', { class: 'num' }, fmt(r.final?.val_loss)),
        el('td', { class: 'hint' }, el('details', {}, el('summary', {}, 'recipe'), recipe(r.recipe))),
        el('td', {},
          el('button', { type: 'button', onclick: () => { showTab('train'); watchRun(r.name); } }, 'Watch'),
          r.status === 'stopped' || r.status === 'failed' ? el('button', { type: 'button', onclick: () => api(`/api/runs/${encodeURIComponent(r.name)}/resume`, { body: {} }).then(() => { showTab('train'); watchRun(r.name); }).catch((e) => status(e.message)) }, 'Resume') : null,
          r.hasModel ? el('button', { type: 'button', onclick: () => { mistakesRun = r.name; showTab('mistakes'); } }, 'Mistakes') : null,
          r.hasModel ? el('button', { type: 'button', onclick: () => { tryRun = r.name; showTab('try'); } }, 'Try it') : null),
      ),
    ),
  );
  drawCompare();
}
async function drawCompare() {
  const runs = await Promise.all([...compare].map((n) => api(`/api/runs/${encodeURIComponent(n)}`)));
  lineChart($('#compare-chart-acc'), 'val_accuracy', runs.map((r) => ({ label: r.name, values: r.history.val_accuracy ?? [] })), 560);
  lineChart($('#compare-chart-loss'), 'val_loss', runs.map((r) => ({ label: r.name, values: r.history.val_loss ?? [] })), 560);
}

// ---- mistakes
let mistakesRun = null;
let metrics = null;
let evaluation = null;
async function runsWithModels(select, current) {
  const runs = (await api('/api/runs')).filter((r) => r.hasModel);
  select.replaceChildren(...runs.map((r) => el('option', { value: r.name }, r.name)));
  if (current && runs.some((r) => r.name === current)) select.value = current;
  return select.value || null;
}
async function loadMistakesRuns() {
  mistakesRun = await runsWithModels($('#mistakes-run'), mistakesRun);
  if (mistakesRun) await loadMistakes();
}
$('#mistakes-run').addEventListener('change', (e) => { mistakesRun = e.target.value; loadMistakes(); });
async function loadMistakes() {
  evaluation = null;
  $('#evaluate-status').textContent = '';
  $('#roc').hidden = true;
  $('#cell-images').replaceChildren();
  $('#cell-title').textContent = '';
  metrics = await api(`/api/runs/${encodeURIComponent(mistakesRun)}/metrics`);
  drawMatrix(metrics);
}
function drawMatrix(m) {
  const classes = m.classes;
  $('#confusion').replaceChildren(
    el('tr', {}, el('th', {}, 'true \\ predicted'), ...classes.map((c) => el('th', {}, c))),
    ...m.confusion.map((row, t) =>
      el('tr', {}, el('th', {}, classes[t]), ...row.map((n, p) => el('td', { class: `cell${t === p ? ' diag' : ''}`, 'data-true': t, 'data-pred': p, onclick: (e) => openCell(t, p, e.target) }, n))),
    ),
  );
  $('#perclass').replaceChildren(
    el('tr', {}, ...['class', 'precision', 'recall', 'F1', 'support'].map((h) => el('th', {}, h))),
    ...m.perClass.map((c, i) => el('tr', {}, el('td', {}, classes[i]), el('td', { class: 'num' }, fmt(c.precision)), el('td', { class: 'num' }, fmt(c.recall)), el('td', { class: 'num' }, fmt(c.f1)), el('td', { class: 'num' }, c.support))),
    el('tr', {}, el('td', {}, `accuracy ${fmt(m.accuracy)}`), el('td', { colspan: 4 }, m.auc === null ? '' : `ROC AUC ${fmt(m.auc)}`)),
  );
}
function openCell(t, p, td) {
  for (const c of document.querySelectorAll('#confusion td.selected')) c.classList.remove('selected');
  td?.classList.add('selected');
  const classes = metrics.classes;
  let items;
  if (evaluation) {
    items = evaluation.items.filter((it) => it.label === t && it.predicted === p).map((it) => ({ file: it.file, served: it.served, probability: it.probabilities[p], trueProbability: it.probabilities[t] }));
  } else if (t !== p) {
    items = metrics.misclassified.filter((m) => m.trueLabel === t && m.predicted === p);
  } else {
    $('#cell-title').textContent = `${classes[t]} classified right: press “Classify every validation image” to see them`;
    $('#cell-images').replaceChildren();
    return;
  }
  // Most confident first.
  items.sort((a, b) => b.probability - a.probability);
  $('#cell-title').textContent = `true ${classes[t]}, predicted ${classes[p]}: ${items.length} image${items.length === 1 ? '' : 's'}`;
  $('#cell-images').replaceChildren(
    ...items.map((it) =>
      el('figure', { class: 'cell-image' },
        it.served ? el('img', { src: thumbUrl(it.served.folder, it.served.path), alt: it.file, title: it.file, onclick: () => window.open(fileUrl(it.served.folder, it.served.path)) }) : el('p', { class: 'hint' }, 'open its folder on the Data tab to see it'),
        el('figcaption', {}, `p(${classes[p]}) ${fmt(it.probability)}`, el('br'), it.file.split('/').at(-1))),
    ),
  );
}
$('#evaluate-all').addEventListener('click', async () => {
  $('#evaluate-status').textContent = ' classifying…';
  try {
    evaluation = await api(`/api/runs/${encodeURIComponent(mistakesRun)}/evaluate`, { body: {} });
    $('#evaluate-status').textContent = ` ${evaluation.items.length} images from ${evaluation.root}`;
    drawMatrix({ ...evaluation.metrics, classes: evaluation.classes });
    metrics = { ...metrics, ...evaluation.metrics, classes: evaluation.classes, misclassified: metrics.misclassified };
    if (evaluation.roc) {
      $('#roc').hidden = false;
      $('#roc-auc').textContent = `(AUC ${fmt(evaluation.metrics.auc)}; ${evaluation.classes[1]} positive)`;
      const roc = evaluation.roc;
      $('#roc-chart').replaceChildren();
      new uPlot({ width: 360, height: 300, scales: { x: { time: false, range: [0, 1] }, y: { range: [0, 1] } }, axes: [{ label: 'false positive rate' }, { label: 'true positive rate' }], series: [{}, { label: 'ROC', stroke: '#2f6fed', width: 2 }, { label: 'chance', stroke: '#bbb', dash: [4, 4] }] },
        [roc.fpr, roc.tpr, roc.fpr], $('#roc-chart'));
    }
  } catch (err) {
    $('#evaluate-status').textContent = ` ${err.message}`;
  }
});

// ---- try it
let tryRun = null;
async function loadTryRuns() {
  tryRun = await runsWithModels($('#try-run'), tryRun);
  if (!tryRun) return;
  const run = await api(`/api/runs/${encodeURIComponent(tryRun)}`);
  $('#heatmap-class').replaceChildren(el('option', { value: '' }, 'the predicted class'), ...(run.classes ?? []).map((c, i) => el('option', { value: i }, c)));
}
$('#try-run').addEventListener('change', (e) => { tryRun = e.target.value; loadTryRuns(); });
async function tryImages(files) {
  for (const file of files) await tryImage(file, file.name);
}
async function tryImage(blob, name) {
  const box = el('div', { class: 'result' }, el('p', {}, `${name}: classifying…`));
  $('#try-results').prepend(box);
  const cls = $('#heatmap-class').value;
  try {
    const r = await api(`/api/runs/${encodeURIComponent(tryRun)}/predict${cls === '' ? '' : `?class=${cls}`}`, { body: blob, headers: { 'content-type': blob.type || 'application/octet-stream', 'x-file-name': encodeURIComponent(name) } });
    const p = r.prediction;
    box.replaceChildren(
      el('div', {},
        el('h3', {}, `${name}: ${p.className} (${fmt(p.probability)})`),
        el('table', { class: 'probabilities' }, r.classes.map((c, i) => el('tr', {}, el('td', {}, c), el('td', { class: 'num prob', 'data-class': c, 'data-value': String(p.probabilities[i]) }, fmt(p.probabilities[i], 6)), el('td', {}, el('span', { class: 'bar', style: `width:${Math.round(p.probabilities[i] * 160)}px` }))))),
      ),
      r.heatmap ? el('figure', {}, el('img', { class: 'heatmap', src: r.heatmap.png, alt: 'Grad-CAM heatmap' }), el('figcaption', { class: 'hint' }, `where the model looked for ${r.heatmap.className} (Grad-CAM at the cut layer)`)) : null,
    );
  } catch (err) {
    box.replaceChildren(el('p', { class: 'error' }, `${name}: ${err.message}`));
  }
}
$('#try-file').addEventListener('change', (e) => tryImages([...e.target.files]));
const drop = $('#drop');
drop.addEventListener('dragover', (e) => { e.preventDefault(); drop.classList.add('over'); });
drop.addEventListener('dragleave', () => drop.classList.remove('over'));
drop.addEventListener('drop', (e) => { e.preventDefault(); drop.classList.remove('over'); tryImages([...e.dataTransfer.files]); });
$('#webcam-start').addEventListener('click', async () => {
  try {
    const stream = await navigator.mediaDevices.getUserMedia({ video: true });
    $('#webcam-video').srcObject = stream;
    $('#webcam').hidden = false;
  } catch (err) {
    status(`webcam: ${err.message}`);
  }
});
$('#webcam-snap').addEventListener('click', () => {
  const video = $('#webcam-video');
  const canvas = el('canvas', { width: video.videoWidth, height: video.videoHeight });
  canvas.getContext('2d').drawImage(video, 0, 0);
  canvas.toBlob((blob) => tryImage(blob, `webcam-${new Date().toISOString().slice(11, 19)}.png`), 'image/png');
});

// ---- start
loadDefaults().catch((e) => status(e.message));
refreshJobs().catch(() => undefined);
setInterval(() => { if ($('#tab-train').classList.contains('active')) refreshJobs().catch(() => undefined); }, 3000);
