// The Granularity view: one trace swept over every monitoring mechanism and unit size, as
// `granule compare` does, in a web worker (sweep.worker.ts), with the results of the configuration
// the controls select, its checkpoint bytes per epoch against page level and the byte ideal, and a
// map of the frames it copied. Rows are cached by trace, epoch length and configuration, so moving
// a control shows a computed row at once; the sweep computes the selection first.
//
// data-testid (for test/explorer.test.ts):
//   gran-trace             <select> of the bundled traces (value = the trace's name; files you load: "file:NAME:SIZE:MTIME")
//   gran-file              <input type=file> to load a trace from disk (read in the page, nothing is uploaded)
//   gran-error             the inline message for a trace or input that cannot be used (hidden when there is none)
//   gran-mode              <select>: page | gpt-wp | ept-wp | ept-dirty | pml | spp (a compare row's `mode`)
//   gran-slider            <input type=range> 0..6: position i is GRANULARITIES[i] (0 = 4096 B ... 6 = 64 B);
//                          data-granularity holds the bytes, aria-valuetext e.g. "256 B"
//   gran-adaptive          <input type=checkbox>: the adaptive policy instead of a fixed unit
//   gran-epoch-writes      <input type=number>: writes per epoch (default 10000, compare's -e)
//   gran-status            data-state = checking | computing | idle | error; text "computing… (k of n): ..." or "idle: ..."
//   gran-checkpoint-bytes  the selected configuration's checkpoint bytes; data-bytes = the exact integer (absent
//                          until the row is computed), data-config = its key (e.g. "gpt-wp/spread/256"),
//                          data-epoch-writes, data-trace
//   gran-faults, gran-exits, gran-tlb-misses, gran-table-bytes, gran-dirty-units   data-value = the exact number
//   gran-over-page, gran-over-ideal                                                data-value = the ratio
//   gran-chart             the per-epoch chart's canvas
//   gran-map               the map's canvas (keyboard: arrows move over frames and slots); gran-map-epoch its
//                          epoch slider, gran-map-readout the cell under the cursor, gran-map-legend
//   gran-matrix            the table of every configuration (cells are buttons that select it)
import './granularity.css';
import { h, describe, errorLine, fetchOk } from './dom.ts';
import { Chart, LineController, LineElement, PointElement, LinearScale, CategoryScale, Legend, Tooltip } from 'chart.js';
import type { ExplorerContext, Mount, TraceEntry } from './context.ts';
import {
  GRANULARITIES, SPREAD_MODES, VIEW_MODES, DEFAULT_EPOCH_WRITES, MAX_FILE_BYTES, sweepJobs, jobKey, jobForSelection, orderJobs,
  hasGranularity, RowCache, sessionKey, partBase, dirtyCounts, epochMask, epochMapBytes, mapGeometry, partRect, hitTest, countBins, binOf,
  fileProblem, parseEpochWrites, progressText, describeSelection, MAX_PARTS, PAGE_KEY,
  type Selection, type ViewMode, type CompactMap, type RowEntry, type FailedEntry, type FromWorker, type ToWorker, type TraceFacts,
  type BaseFigures, type MapGeometry,
} from './sweep-model.ts';
import { MODE_LABEL } from '../src/monitor/sweep.ts';
import type { CompareRow } from '../src/report/types.ts';
import { fmtBytes, fmtInt, fmtRatio, exitsTotal } from '../src/report/table.ts';
import { TraceReader } from '../src/trace/reader.ts';

Chart.register(LineController, LineElement, PointElement, LinearScale, CategoryScale, Legend, Tooltip);

const ALL_JOBS = sweepJobs();

// ---------------------------------------------------------------------------------------------
// Small DOM helpers

const cssVar = (from: Element, name: string, fallback: string) => getComputedStyle(from).getPropertyValue(name).trim() || fallback;

// ---------------------------------------------------------------------------------------------
// Traces

interface TraceChoice {
  /** the select's value and the cache's trace id */
  id: string;
  name: string;
  /** a bundled trace's index entry */
  entry?: TraceEntry;
  /** a file's bytes (bundled traces are fetched on first use) */
  bytes?: Uint8Array;
}

/** The default trace: kvstore-wasm when bundled (the docs' example), else the smallest recorded one. */
export function defaultTrace(traces: readonly TraceEntry[]): TraceEntry | undefined {
  const kv = traces.find((t) => t.name === 'kvstore-wasm');
  if (kv) return kv;
  const recorded = traces.filter((t) => (t.source ?? '').startsWith('granule-record'));
  return [...(recorded.length ? recorded : traces)].sort((a, b) => a.bytes - b.bytes)[0];
}

// ---------------------------------------------------------------------------------------------
// Sessions: one trace at one epoch length, its sweep and its rows

interface Session {
  key: string;
  choice: TraceChoice;
  epochWrites: number;
  facts?: TraceFacts;
  ideal?: CompareRow;
  base?: BaseFigures;
  state: 'checking' | 'computing' | 'idle' | 'error';
  error?: string;
  progress?: { label: string; epoch: number; epochs: number };
  seconds?: number;
}

interface Sweep { worker: Worker; gen: number; session: Session; /** the session on show when it started */ previous: Session | null }

export const mountGranularity: Mount = (root: HTMLElement, ctx: ExplorerContext) => {
  root.classList.add('gran');
  const cache = new RowCache(4);
  const sessions = new Map<string, Session>();
  const bundled = new Map<string, Promise<Uint8Array>>();
  let gen = 0;
  /** the sweep of the session on show */
  let active: Sweep | null = null;
  /** a sweep of a trace being checked, not yet on show */
  let pending: Sweep | null = null;
  let current: Session | null = null;
  let sel: Selection = { mode: 'gpt-wp', granularity: 256 };
  let epochWrites = DEFAULT_EPOCH_WRITES;
  let mapMode: 'count' | 'epoch' = 'count';
  let mapEpoch = 1;
  let cursor: { frame: number; part: number } | null = null;

  // ---- the page ------------------------------------------------------------------------------

  const intro = h('p', { class: 'gran-intro' },
    'How finely can a monitor watch writes, and what does it cost? Pick a trace and a mechanism, then move the unit size: ',
    'the same trace is replayed here, in your browser, under every mechanism and unit size, exactly as ', h('code', { text: 'granule compare' }), ' does.');

  const traceSelect = h('select', { 'data-testid': 'gran-trace', id: 'gran-trace' });
  const fileInput = h('input', { type: 'file', 'data-testid': 'gran-file', id: 'gran-file', accept: '.grt,application/octet-stream' });
  const traceInfo = h('p', { class: 'gran-trace-info', id: 'gran-trace-info' });
  const errorBox = h('p', { class: 'gran-error', role: 'alert', 'data-testid': 'gran-error', hidden: true });

  const modeSelect = h('select', { 'data-testid': 'gran-mode', id: 'gran-mode', 'aria-describedby': 'gran-mode-help' });
  for (const m of VIEW_MODES) modeSelect.append(h('option', { value: m.value, text: m.label }));
  const modeHelp = h('p', { class: 'gran-help', id: 'gran-mode-help' });

  const slider = h('input', {
    type: 'range', min: 0, max: GRANULARITIES.length - 1, step: 1, 'data-testid': 'gran-slider', id: 'gran-slider',
    'aria-describedby': 'gran-slider-help',
  });
  const sliderOut = h('output', { for: 'gran-slider', class: 'gran-unit-value', id: 'gran-unit-value' });
  const ticks = h('div', { class: 'gran-ticks', 'aria-hidden': 'true' }, ...GRANULARITIES.map((g) => h('span', { text: String(g) })));
  const adaptive = h('input', { type: 'checkbox', 'data-testid': 'gran-adaptive', id: 'gran-adaptive' });
  const sliderHelp = h('p', { class: 'gran-help', id: 'gran-slider-help' });

  const epochInput = h('input', {
    type: 'number', min: 1, step: 1, value: DEFAULT_EPOCH_WRITES, 'data-testid': 'gran-epoch-writes', id: 'gran-epoch-writes', inputmode: 'numeric',
    'aria-describedby': 'gran-epoch-help',
  });
  const epochHelp = h('p', { class: 'gran-help', id: 'gran-epoch-help', text: 'An epoch ends after this many write events; its dirty units go to the checkpoint.' });

  const status = h('p', { class: 'gran-status', role: 'status', 'data-testid': 'gran-status', 'data-state': 'idle', 'aria-live': 'polite' });
  const progress = h('progress', { class: 'gran-progress', max: ALL_JOBS.length, value: 0, 'aria-label': 'sweep progress' });

  const controls = h('div', { class: 'gran-controls' },
    h('fieldset', { class: 'gran-trace' }, h('legend', { text: 'Trace' }),
      h('label', { for: 'gran-trace', text: 'Bundled trace' }), traceSelect,
      h('label', { for: 'gran-file', text: `or a trace file of your own (.grt, up to ${fmtBytes(MAX_FILE_BYTES)}; read here, not uploaded)` }), fileInput,
      traceInfo, errorBox),
    h('fieldset', { class: 'gran-config' }, h('legend', { text: 'Configuration' }),
      h('label', { for: 'gran-mode', text: 'Mechanism' }), modeSelect, modeHelp,
      h('div', { class: 'gran-unit' },
        h('label', { for: 'gran-slider', text: 'Unit size' }), sliderOut,
        h('div', { class: 'gran-slider-wrap' }, slider, ticks),
        h('label', { class: 'gran-check' }, adaptive, ' adaptive (split and merge per frame, epoch by epoch)')),
      sliderHelp,
      h('label', { for: 'gran-epoch-writes', text: 'Epoch length (writes)' }), epochInput, epochHelp));

  // Figures of the selected configuration
  const figure = (id: string, label: string) => {
    const value = h('dd', { 'data-testid': id, class: 'gran-value' });
    const note = h('span', { class: 'gran-note' });
    return { dt: h('dt', { text: label }), value, note };
  };
  const F = {
    bytes: figure('gran-checkpoint-bytes', 'Checkpoint bytes'),
    overPage: figure('gran-over-page', 'vs page level'),
    overIdeal: figure('gran-over-ideal', 'vs the byte ideal'),
    faults: figure('gran-faults', 'Faults'),
    exits: figure('gran-exits', 'VM exits'),
    tlb: figure('gran-tlb-misses', 'TLB misses'),
    table: figure('gran-table-bytes', 'Page-table memory'),
    units: figure('gran-dirty-units', 'Dirty units'),
  };
  const figuresTitle = h('h3', { class: 'gran-config-title' });
  const figures = h('dl', { class: 'gran-figures' });
  for (const f of Object.values(F)) figures.append(h('div', { class: 'gran-figure' }, f.dt, f.value, h('dd', { class: 'gran-sub' }, f.note)));

  const chartCanvas = h('canvas', { 'data-testid': 'gran-chart', role: 'img', 'aria-label': 'Checkpoint bytes per epoch' });
  const chartCaption = h('figcaption', {});
  const chartFig = h('figure', { class: 'gran-chart' }, h('div', { class: 'gran-chart-box' }, chartCanvas), chartCaption);

  // The map
  const mapCount = h('input', { type: 'radio', name: 'gran-map-mode', value: 'count', id: 'gran-map-count', checked: true });
  const mapOne = h('input', { type: 'radio', name: 'gran-map-mode', value: 'epoch', id: 'gran-map-one' });
  const mapSlider = h('input', { type: 'range', min: 0, max: 1, step: 1, value: 1, 'data-testid': 'gran-map-epoch', id: 'gran-map-epoch' });
  const mapSliderOut = h('output', { for: 'gran-map-epoch' });
  const mapCanvas = h('canvas', {
    'data-testid': 'gran-map', tabindex: 0, role: 'img', class: 'gran-map-canvas',
    'aria-label': 'Map of frames and slots coloured by dirtiness; use the arrow keys to read cells', 'aria-describedby': 'gran-map-readout',
  });
  const mapTip = h('div', { class: 'gran-tip', hidden: true, 'aria-hidden': 'true' });
  const mapBox = h('div', { class: 'gran-map-box' }, mapCanvas, mapTip);
  const mapReadout = h('p', { class: 'gran-readout', id: 'gran-map-readout', 'data-testid': 'gran-map-readout', 'aria-live': 'polite' });
  const mapLegend = h('ul', { class: 'gran-legend', 'data-testid': 'gran-map-legend' });
  const mapSummary = h('p', { class: 'gran-map-summary' });
  const mapFig = h('figure', { class: 'gran-map' },
    h('div', { class: 'gran-map-controls', role: 'radiogroup', 'aria-labelledby': 'gran-map-by' },
      h('span', { id: 'gran-map-by', text: 'Colour by:' }),
      h('label', {}, mapCount, ' epochs that dirtied it'),
      h('label', {}, mapOne, ' one epoch:'),
      mapSlider, mapSliderOut),
    mapBox, mapReadout, mapLegend, mapSummary);

  const matrix = h('table', { class: 'gran-matrix', 'data-testid': 'gran-matrix' });
  const matrixCells = new Map<string, HTMLButtonElement>();

  const results = h('div', { class: 'gran-results' },
    h('section', { class: 'gran-summary', 'aria-labelledby': 'gran-summary-h' }, h('h3', { id: 'gran-summary-h', class: 'visually-hidden', text: 'Results' }), figuresTitle, figures),
    h('section', { 'aria-labelledby': 'gran-chart-h' }, h('h3', { id: 'gran-chart-h', text: 'Checkpoint bytes per epoch' }), chartFig),
    h('section', { 'aria-labelledby': 'gran-map-h' }, h('h3', { id: 'gran-map-h', text: 'What the checkpoint copies: frames and slots' }), mapFig),
    h('section', { 'aria-labelledby': 'gran-matrix-h' }, h('h3', { id: 'gran-matrix-h', text: 'Every configuration' }),
      h('p', { class: 'gran-help', text: 'Checkpoint bytes after the base image, and the ratio to page level. Pick a cell to show it above.' }),
      h('div', { class: 'gran-matrix-wrap' }, matrix)));

  root.append(intro, controls, h('div', { class: 'gran-statusbar' }, status, progress), results);

  // ---- messages ------------------------------------------------------------------------------

  /** A trace or an input that cannot be used: said inline and in the page's error area. */
  const fail = errorLine(errorBox, ctx.report);
  const clearError = () => { errorBox.hidden = true; errorBox.textContent = ''; };

  // ---- the matrix ----------------------------------------------------------------------------

  function buildMatrix() {
    const head = h('tr', {}, h('th', { scope: 'col', text: 'Mechanism' }), ...GRANULARITIES.map((g) => h('th', { scope: 'col', text: `${g} B` })), h('th', { scope: 'col', text: 'adaptive' }));
    const body = h('tbody');
    const cell = (key: string, s: Selection, label: string) => {
      const b = h('button', { type: 'button', class: 'gran-cell', 'data-config': key, 'aria-label': label });
      // page level and SPP have a fixed unit: the slider keeps its place for the other mechanisms
      b.addEventListener('click', () => select(hasGranularity(s.mode) ? s : { mode: s.mode, granularity: sel.granularity }));
      matrixCells.set(key, b);
      return b;
    };
    body.append(h('tr', {}, h('th', { scope: 'row', text: 'Page level (packed)' }),
      h('td', { colspan: GRANULARITIES.length + 1 }, cell(PAGE_KEY, { mode: 'page', granularity: 4096 }, 'page level, 4096 B, packed layout'))));
    body.append(h('tr', {}, h('th', { scope: 'row', text: 'SPP 128 B (packed)' }),
      h('td', { colspan: GRANULARITIES.length + 1 }, cell('spp/packed/128', { mode: 'spp', granularity: 128 }, 'SPP, 128 B sub-pages, packed layout'))));
    for (const m of SPREAD_MODES) {
      const tr = h('tr', {}, h('th', { scope: 'row', text: `${MODE_LABEL[m]} (spread)` }));
      for (const g of [...GRANULARITIES, 'adaptive' as const]) {
        const s: Selection = { mode: m, granularity: g };
        tr.append(h('td', {}, cell(jobKey(jobForSelection(s)), s, `${MODE_LABEL[m]}, ${g === 'adaptive' ? 'adaptive' : `${g} B`}`)));
      }
      body.append(tr);
    }
    matrix.append(h('thead', {}, head), body);
  }

  function updateMatrixCell(key: string) {
    const b = matrixCells.get(key);
    if (!b || !current) return;
    const e = cache.get(current.key, key);
    b.replaceChildren();
    b.classList.toggle('failed', !!e && 'error' in e);
    b.classList.toggle('pending', !e);
    if (!e) b.append(h('span', { class: 'gran-cell-wait', text: '…' }));
    else if ('error' in e) { b.append(h('span', { text: 'failed' })); b.title = e.error; }
    else {
      b.append(h('span', { class: 'gran-cell-bytes', text: fmtBytes(e.row.checkpointBytes) }), h('span', { class: 'gran-cell-ratio', text: `${fmtRatio(e.row.overPage)}×` }));
      b.title = `${e.row.label}: ${fmtInt(e.row.checkpointBytes)} bytes, ${fmtRatio(e.row.overPage)} × page level, ${fmtRatio(e.row.overIdeal)} × the ideal`;
    }
    b.setAttribute('aria-pressed', String(key === jobKey(jobForSelection(sel))));
  }
  const updateMatrix = () => { for (const k of matrixCells.keys()) updateMatrixCell(k); };

  // ---- controls ------------------------------------------------------------------------------

  function syncControls() {
    modeSelect.value = sel.mode;
    const withUnit = hasGranularity(sel.mode);
    const g = sel.granularity;
    const pos = typeof g === 'number' ? GRANULARITIES.indexOf(g) : Number(slider.value);
    if (typeof g === 'number' && pos >= 0) slider.value = String(pos);
    const shown = GRANULARITIES[Number(slider.value)]!;
    slider.dataset.granularity = String(shown);
    slider.setAttribute('aria-valuetext', `${shown} B`);
    adaptive.checked = g === 'adaptive';
    slider.disabled = !withUnit || g === 'adaptive';
    adaptive.disabled = !withUnit;
    sliderOut.value = !withUnit ? (sel.mode === 'page' ? '4096 B (fixed)' : '128 B (fixed)') : g === 'adaptive' ? 'adaptive' : `${g} B`;
    modeHelp.textContent = VIEW_MODES.find((m) => m.value === sel.mode)!.help;
    sliderHelp.textContent = !withUnit
      ? `${sel.mode === 'page' ? 'Page level' : 'SPP'} runs on the packed layout at a fixed unit; the slider applies to the spread-layout mechanisms.`
      : g === 'adaptive'
        ? 'Each slab frame starts at one slot per unit; every epoch, frames written sparsely split their units, frames written whole merge them.'
        : 'A unit is never smaller than an object\'s slot: finer settings stop at the slot size of each frame.';
  }

  function select(s: Selection) {
    sel = s;
    syncControls();
    if (active && active.session === current) active.worker.postMessage({ type: 'prefer', gen: active.gen, sel } satisfies ToWorker);
    else if (current && !pending && current.state === 'idle' && !cache.has(current.key, jobKey(jobForSelection(sel)))) void open(current.choice); // a stopped sweep resumes
    renderSelection();
  }

  modeSelect.addEventListener('change', () => {
    const mode = modeSelect.value as ViewMode;
    const g = hasGranularity(mode) ? (adaptive.checked ? 'adaptive' : GRANULARITIES[Number(slider.value)]!) : sel.granularity;
    select({ mode, granularity: g });
  });
  const onSlider = () => {
    const g = GRANULARITIES[Number(slider.value)]!;
    if (sel.granularity !== g) select({ mode: sel.mode, granularity: g });
  };
  slider.addEventListener('input', onSlider);
  slider.addEventListener('change', onSlider);
  adaptive.addEventListener('change', () => select({ mode: sel.mode, granularity: adaptive.checked ? 'adaptive' : GRANULARITIES[Number(slider.value)]! }));

  let epochTimer = 0;
  const onEpochInput = (final: boolean) => {
    clearTimeout(epochTimer);
    let n: number;
    try {
      n = parseEpochWrites(epochInput.value);
    } catch (e) {
      epochInput.setAttribute('aria-invalid', 'true');
      epochHelp.textContent = describe(e);
      epochHelp.classList.add('gran-bad');
      if (final) ctx.report(describe(e));
      return;
    }
    epochInput.removeAttribute('aria-invalid');
    epochHelp.classList.remove('gran-bad');
    epochHelp.textContent = 'An epoch ends after this many write events; its dirty units go to the checkpoint.';
    const apply = () => {
      if (n === epochWrites) return;
      epochWrites = n;
      if (current) void open(current.choice);
    };
    if (final) apply();
    else epochTimer = window.setTimeout(apply, 600);
  };
  epochInput.addEventListener('input', () => onEpochInput(false));
  epochInput.addEventListener('change', () => onEpochInput(true));

  // ---- traces and sweeps ---------------------------------------------------------------------

  const filesGroup = h('optgroup', { label: 'Your files' });
  function fillTraces() {
    if (!ctx.traces.length) traceSelect.append(h('option', { value: '', disabled: true, text: 'no bundled traces: load a file' }));
    for (const t of ctx.traces) {
      traceSelect.append(h('option', { value: t.name, text: `${t.name} (${fmtBytes(t.bytes)}, ${fmtInt(t.events)} events)` }));
    }
  }

  const choiceOf = (id: string): TraceChoice | null => {
    const t = ctx.traces.find((x) => x.name === id);
    if (t) return { id: t.name, name: t.name, entry: t };
    return known.get(id) ?? null;
  };
  /** files loaded in this page, by id */
  const known = new Map<string, TraceChoice>();

  async function bytesOf(c: TraceChoice): Promise<Uint8Array> {
    if (c.bytes) return c.bytes;
    const t = c.entry!;
    let p = bundled.get(t.name);
    if (!p) {
      p = fetchOk(new URL(t.file, ctx.base), `the trace ${t.name}`).then(async (r) => new Uint8Array(await r.arrayBuffer()));
      bundled.set(t.name, p);
      p.catch(() => bundled.delete(t.name));
    }
    return p;
  }

  function stop(s: Sweep | null) {
    if (!s) return;
    s.worker.terminate();
    if (s.session.state === 'computing' || s.session.state === 'checking') {
      s.session.state = 'idle';
      s.session.progress = undefined;
    }
  }

  /** Shows a trace at the current epoch length: from the cache, and sweeps what is missing. */
  let opening = 0;
  async function open(choice: TraceChoice) {
    const my = ++opening;
    const key = sessionKey(choice.id, epochWrites);
    let session = sessions.get(key);
    if (!session) {
      session = { key, choice, epochWrites, state: 'checking' };
      sessions.set(key, session);
      // forget the sessions the row cache no longer holds
      for (const k of [...sessions.keys()]) if (k !== key && !cache.keys(k).length && k !== current?.key) sessions.delete(k);
    }
    stop(pending);
    pending = null;
    const missing = cache.missing(key, ALL_JOBS);
    if (!missing.length && session.facts) {
      // all rows known: show them, and stop the old sweep
      stop(active);
      active = null;
      clearError();
      show(session);
      return;
    }
    if (current === null) statusText('checking', `loading ${choice.name}…`);
    let bytes: Uint8Array;
    try {
      bytes = await bytesOf(choice);
    } catch (e) {
      if (my !== opening) return;
      fail(describe(e));
      revertSelect();
      if (current === null) statusText('error', `no trace: ${describe(e)}`);
      return;
    }
    if (my !== opening) return;
    // page level goes first unless its row is still cached (its figures are then the baseline)
    const base = cache.has(key, PAGE_KEY) ? session.base : undefined;
    const jobs = orderJobs(base ? missing.filter((j) => jobKey(j) !== PAGE_KEY) : missing, sel);
    let worker: Worker;
    try {
      worker = new Worker(new URL('./sweep.worker.js', import.meta.url), { type: 'module' });
    } catch (e) {
      fail(`The sweep worker could not start (${describe(e)}): the page must be served over HTTP, e.g. by granule explore.`);
      revertSelect();
      return;
    }
    const sweep: Sweep = { worker, gen: ++gen, session, previous: current };
    session.error = undefined;
    session.progress = undefined;
    // A bundled trace, or one checked before, is shown at once; a file of yours once the worker
    // has read it whole (until then, and if it fails, the trace on show stays, and its sweep runs on).
    if (session.facts || choice.entry) {
      stop(active);
      active = sweep;
      session.state = session.facts ? 'computing' : 'checking';
      clearError();
      show(session);
    } else {
      pending = sweep;
      session.state = 'checking';
      if (current === null) statusText('checking', `checking ${choice.name}…`);
      else statusText(statusState(), `${statusLine()} — checking ${choice.name}…`);
    }
    worker.addEventListener('message', (ev: MessageEvent<FromWorker>) => onMessage(sweep, ev.data));
    worker.addEventListener('error', (ev) => {
      ev.preventDefault();
      endSweep(sweep, `The sweep worker failed: ${ev.message || 'it could not be loaded (is sweep.worker.js next to explorer.js?)'}`);
    });
    worker.addEventListener('messageerror', () => endSweep(sweep, 'The sweep worker sent a message the page could not read'));
    const wasm = ctx.wasm.slice(0);
    const copy = bytes.slice();
    worker.postMessage({
      type: 'start', gen: sweep.gen, wasm, name: choice.name, bytes: copy.buffer, epochWrites, jobs, base,
    } satisfies ToWorker, [wasm, copy.buffer]);
  }

  /** A sweep that cannot go on. A trace that failed its check gives way to the one shown before. */
  function endSweep(s: Sweep, message: string) {
    s.worker.terminate();
    const session = s.session;
    const unchecked = !session.facts;
    if (s === pending) pending = null;
    else if (s === active) active = null;
    else return;
    session.progress = undefined;
    fail(message);
    if (unchecked) {
      // the trace cannot be used: forget it, and go back to what was shown
      sessions.delete(session.key);
      cache.drop(session.key);
      const back = s.previous && s.previous !== session && sessions.has(s.previous.key) ? s.previous : null;
      if (current === session) {
        current = null;
        if (back) show(back);
        else { traceSelect.value = ''; renderSelection(); statusText('error', `no trace: ${message}`); }
      } else revertSelect();
      if (current) renderStatus();
      return;
    }
    session.state = 'error';
    session.error = message;
    if (session === current) renderSelection();
  }

  function onMessage(s: Sweep, m: FromWorker) {
    if (m.gen !== s.gen || (s !== active && s !== pending)) return;
    const session = s.session;
    switch (m.type) {
      case 'facts':
        session.facts = m.facts;
        session.state = 'computing';
        if (s === pending) {
          stop(active);
          active = s;
          pending = null;
          clearError();
        }
        show(session);
        break;
      case 'ideal':
        session.ideal = m.row;
        session.base = m.base;
        if (session === current) renderChart();
        break;
      case 'row':
        cache.put(session.key, m.key, { row: m.row, map: m.map });
        if (session === current) onRow(m.key);
        break;
      case 'job-error':
        cache.put(session.key, m.key, { error: m.message });
        if (session === current) onRow(m.key);
        break;
      case 'progress':
        session.progress = { label: m.label, epoch: m.epoch, epochs: m.epochs };
        if (session === current) renderStatus();
        break;
      case 'done':
        session.state = 'idle';
        session.progress = undefined;
        session.seconds = m.seconds;
        s.worker.terminate();
        if (s === active) active = null;
        if (session === current) renderSelection();
        break;
      case 'error':
        endSweep(s, m.message.startsWith('the sweep stopped') ? `${session.choice.name}: ${m.message}` : `This trace cannot be used: ${m.message}`);
        break;
    }
  }

  function revertSelect() {
    traceSelect.value = current ? current.choice.id : '';
  }

  /** Puts a session on show. */
  function show(session: Session) {
    current = session;
    const c = session.choice;
    if (!c.entry && !filesGroup.querySelector(`option[value="${CSS.escape(c.id)}"]`)) {
      filesGroup.append(h('option', { value: c.id, text: `${c.name} (your file)` }));
      if (!filesGroup.parentElement) traceSelect.append(filesGroup);
    }
    traceSelect.value = c.id;
    const f = session.facts;
    traceInfo.textContent = [
      c.entry ? `${c.entry.description}.` : 'A trace file of your own.',
      f ? `${fmtInt(f.events)} events, ${fmtInt(f.writes)} writes: about ${fmtInt(Math.ceil(f.writes / session.epochWrites))} epochs of ${fmtInt(session.epochWrites)} writes.` : '',
    ].join(' ');
    updateMatrix();
    renderSelection();
  }

  traceSelect.addEventListener('change', () => {
    const c = choiceOf(traceSelect.value);
    if (c) void open(c);
  });

  fileInput.addEventListener('change', async () => {
    const file = fileInput.files?.[0];
    fileInput.value = ''; // picking the same file again is a new change
    if (!file) return;
    const problem = fileProblem(file.name, file.size);
    if (problem) return fail(problem);
    let bytes: Uint8Array;
    try {
      bytes = new Uint8Array(await file.arrayBuffer());
    } catch (e) {
      return fail(`${file.name} could not be read: ${describe(e)}`);
    }
    // The header now, for an immediate answer; the worker reads the rest (a cut file fails there).
    try {
      TraceReader.fromBytes(file.name, bytes).close();
    } catch (e) {
      return fail(`This file cannot be used: ${describe(e)}`);
    }
    const id = `file:${file.name}:${file.size}:${file.lastModified}`;
    const choice: TraceChoice = known.get(id) ?? { id, name: file.name, bytes };
    known.set(id, choice);
    void open(choice);
  });

  // ---- rendering -----------------------------------------------------------------------------

  function statusText(state: string, text: string) {
    status.dataset.state = state;
    status.textContent = text;
  }
  const statusState = () => current?.state ?? 'idle';
  function statusLine(): string {
    const s = current;
    if (!s) return 'no trace';
    const done = cache.keys(s.key).length;
    if (s.state === 'error') return `stopped: ${s.error}`;
    if (s.state === 'checking') return `checking ${s.choice.name}…`;
    if (s.state === 'computing' || done < ALL_JOBS.length) {
      if (s.state !== 'computing') return `idle: ${done} of ${ALL_JOBS.length} configurations computed (the sweep was stopped; selecting one not computed resumes it)`;
      return progressText({ done, total: ALL_JOBS.length, ...s.progress });
    }
    return `idle: all ${ALL_JOBS.length} configurations of ${s.choice.name} computed${s.seconds ? ` (${s.seconds.toFixed(1)} s)` : ''}`;
  }
  function renderStatus() {
    statusText(statusState(), statusLine());
    progress.value = current ? cache.keys(current.key).length : 0;
    progress.hidden = !current || current.state !== 'computing';
  }

  function onRow(key: string) {
    updateMatrixCell(key);
    renderStatus();
    const selected = jobKey(jobForSelection(sel));
    if (key === selected || key === PAGE_KEY) renderSelection();
  }

  const entryOf = (key: string): RowEntry | FailedEntry | undefined => (current ? cache.get(current.key, key) : undefined);
  const rowOfKey = (key: string): CompareRow | undefined => { const e = entryOf(key); return e && 'row' in e ? e.row : undefined; };

  function setFigure(f: ReturnType<typeof figure>, text: string, value: number | null | undefined, note = '') {
    f.value.textContent = text;
    if (value === undefined || value === null) f.value.removeAttribute('data-value');
    else f.value.dataset.value = String(value);
    f.note.textContent = note;
  }

  function renderFigures() {
    const key = jobKey(jobForSelection(sel));
    const e = entryOf(key);
    const page = rowOfKey(PAGE_KEY);
    figuresTitle.textContent = describeSelection(sel);
    const b = F.bytes.value;
    b.dataset.config = key;
    b.dataset.epochWrites = String(epochWrites);
    b.dataset.trace = current?.choice.name ?? '';
    figures.classList.toggle('waiting', !e || 'error' in e);
    if (!e || 'error' in e) {
      b.removeAttribute('data-bytes');
      const wait = !e ? (current?.state === 'error' ? 'not computed' : 'computing…') : 'this configuration failed';
      for (const f of Object.values(F)) setFigure(f, f === F.bytes ? wait : '…', undefined, f === F.bytes && e && 'error' in e ? e.error : '');
      return;
    }
    const r = e.row;
    b.dataset.bytes = String(r.checkpointBytes);
    const vsPage = (x: number | null, y: number | null | undefined, fmt: (n: number) => string) =>
      page && r !== page && x !== null && y !== null && y !== undefined ? `page level: ${fmt(y)}` : '';
    setFigure(F.bytes, fmtBytes(r.checkpointBytes), r.checkpointBytes, `${fmtInt(r.checkpointBytes)} bytes over ${Math.max(0, r.epochs.length - 1)} increments`);
    setFigure(F.overPage, `${fmtRatio(r.overPage)} ×`, r.overPage, page ? `page level copies ${fmtBytes(page.checkpointBytes)}` : '');
    setFigure(F.overIdeal, `${fmtRatio(r.overIdeal)} ×`, r.overIdeal, current?.ideal ? `the ideal is ${fmtBytes(current.ideal.checkpointBytes)}: the distinct bytes written` : '');
    setFigure(F.faults, fmtInt(r.faults), r.faults, vsPage(r.faults, page?.faults, fmtInt));
    const ex = exitsTotal(r.exits);
    const reasons = Object.entries(r.exits).map(([k, v]) => `${k} ${fmtInt(v)}`).join(', ');
    setFigure(F.exits, fmtInt(ex), ex, reasons || (r.faults && r.mode === 'gpt-wp' ? 'none: the #PF handler runs in the guest' : r.mode === 'page' ? 'none: the #PF handler runs in the guest' : ''));
    setFigure(F.tlb, r.tlbMisses === null ? '–' : fmtInt(r.tlbMisses), r.tlbMisses, vsPage(r.tlbMisses, page?.tlbMisses, fmtInt));
    setFigure(F.table, fmtBytes(r.tableBytes), r.tableBytes, r.layout === 'spread' ? 'guest tables and EPT: 64 V pages and up to 64 plane pages per frame' : vsPage(r.tableBytes, page?.tableBytes, fmtBytes));
    setFigure(F.units, fmtInt(r.dirtyUnits), r.dirtyUnits, vsPage(r.dirtyUnits, page?.dirtyUnits, fmtInt));
  }

  // The chart
  const chart = new Chart<'line', number[], string>(chartCanvas, {
    type: 'line',
    data: { labels: [], datasets: [] },
    options: {
      animation: false,
      responsive: true,
      maintainAspectRatio: false,
      interaction: { mode: 'index', intersect: false },
      scales: {
        x: { title: { display: true, text: 'epoch' } },
        y: { beginAtZero: true, title: { display: true, text: 'bytes copied in the epoch' }, ticks: { callback: (v) => fmtBytes(Number(v)) } },
      },
      plugins: {
        legend: { position: 'bottom' },
        tooltip: { callbacks: { label: (c) => `${c.dataset.label}: ${fmtBytes(c.parsed.y ?? 0)}` } },
      },
      onClick: (_ev, els) => {
        const i = els[0]?.index;
        if (i !== undefined) setMapEpoch(i);
      },
    },
  });

  function renderChart() {
    const key = jobKey(jobForSelection(sel));
    const row = rowOfKey(key);
    const page = rowOfKey(PAGE_KEY);
    const ideal = current?.ideal;
    const n = Math.max(row?.epochs.length ?? 0, page?.epochs.length ?? 0, ideal?.epochs.length ?? 0);
    const accent = cssVar(root, '--gran-current', '#0550ae');
    const muted = cssVar(root, '--gran-page', '#6e7781');
    const idealC = cssVar(root, '--gran-ideal', '#1a7f37');
    Chart.defaults.color = cssVar(root, '--muted', '#57606a');
    const series = (r: CompareRow | undefined) => (r ? r.epochs.map((e) => e.checkpointBytes) : []);
    chart.data.labels = Array.from({ length: n }, (_, i) => String(i));
    chart.data.datasets = [
      { label: row ? row.label : `${describeSelection(sel)} (computing…)`, data: series(row), borderColor: accent, backgroundColor: accent, borderWidth: 2.5, pointRadius: 0, pointHitRadius: 6 },
      { label: 'page level (packed)', data: series(page), borderColor: muted, backgroundColor: muted, borderDash: [6, 4], borderWidth: 1.5, pointRadius: 0 },
      { label: 'byte-exact ideal', data: ideal ? ideal.epochs.map((e) => e.checkpointBytes) : [], borderColor: idealC, backgroundColor: idealC, borderDash: [2, 3], borderWidth: 1.5, pointRadius: 0 },
    ];
    if (key === PAGE_KEY) chart.data.datasets.splice(1, 1);
    chart.options.scales!.x!.grid = { color: cssVar(root, '--line', '#d0d7de') };
    chart.options.scales!.y!.grid = { color: cssVar(root, '--line', '#d0d7de') };
    chart.update('none');
    chartCaption.textContent = row
      ? `Solid: ${row.label}; dashed: page level; dotted: the byte-exact ideal. Epoch 0 is the base image, not counted in the totals. Click an epoch to show it in the map.`
      : 'The selected configuration is being computed; page level (dashed) and the ideal (dotted) are shown as they arrive.';
  }

  // The map
  const derived = new WeakMap<CompactMap, { base: Uint32Array; counts: Uint16Array }>();
  const derive = (m: CompactMap) => {
    let d = derived.get(m);
    if (!d) {
      const base = partBase(m);
      d = { base, counts: dirtyCounts(m, base) };
      derived.set(m, d);
    }
    return d;
  };
  let geom: MapGeometry | null = null;
  let shownMap: CompactMap | null = null;

  function setMapEpoch(e: number) {
    mapEpoch = e;
    mapMode = 'epoch';
    mapOne.checked = true;
    mapSlider.value = String(e);
    renderMap();
  }
  mapSlider.addEventListener('input', () => setMapEpoch(Number(mapSlider.value)));
  mapCount.addEventListener('change', () => { if (mapCount.checked) { mapMode = 'count'; renderMap(); } });
  mapOne.addEventListener('change', () => { if (mapOne.checked) { mapMode = 'epoch'; renderMap(); } });

  function partInfo(m: CompactMap, f: number, p: number): string {
    const n = m.parts[f]!;
    const size = 4096 / n;
    const d = derive(m);
    const count = d.counts[d.base[f]! + p]!;
    const incs = Math.max(0, m.epochs.length - 1);
    const kind = m.slab[f] ? `slab frame of ${size}-byte slots` : n > 1 ? 'page in 128-byte sub-pages (SPP)' : 'plain page';
    const where = n > 1 ? `, ${m.slab[f] ? 'slot' : 'sub-page'} ${p} (bytes ${p * size}–${(p + 1) * size - 1})` : '';
    const inEpoch = mapMode === 'epoch'
      ? `; in epoch ${mapEpoch}${mapEpoch === 0 ? ' (the base)' : ''}: ${epochMask(m, mapEpoch, d.base)[d.base[f]! + p] ? 'dirty, copied' : 'clean'}`
      : '';
    return `Frame ${f}, ${kind}${where}: dirty in ${count} of ${incs} increments${inEpoch}.`;
  }

  function renderMap() {
    const key = jobKey(jobForSelection(sel));
    const e = entryOf(key);
    const m = e && 'map' in e ? e.map : null;
    shownMap = m;
    const width = mapBox.clientWidth || 800;
    const dpr = window.devicePixelRatio || 1;
    const c = mapCanvas.getContext('2d');
    if (!m || !c) {
      geom = null;
      mapCanvas.width = Math.round(width * dpr);
      mapCanvas.height = Math.round(60 * dpr);
      mapCanvas.style.height = '60px';
      if (c) {
        c.setTransform(dpr, 0, 0, dpr, 0, 0);
        c.clearRect(0, 0, width, 60);
        c.fillStyle = cssVar(root, '--muted', '#57606a');
        c.font = `14px ${getComputedStyle(root).fontFamily}`;
        c.fillText(e && 'error' in e ? 'This configuration failed.' : 'computing…', 8, 32);
      }
      mapReadout.textContent = '';
      mapSummary.textContent = '';
      mapLegend.replaceChildren();
      mapSlider.disabled = true;
      return;
    }
    const epochs = m.epochs.length;
    mapSlider.disabled = false;
    mapSlider.max = String(Math.max(0, epochs - 1));
    if (mapEpoch > epochs - 1) mapEpoch = Math.max(0, epochs - 1);
    mapSlider.value = String(mapEpoch);
    mapSliderOut.value = `${mapEpoch} of ${Math.max(0, epochs - 1)}${mapEpoch === 0 ? ' (base)' : ''}`;
    mapSlider.setAttribute('aria-valuetext', `epoch ${mapEpoch}`);
    const frames = m.parts.length;
    const g = mapGeometry(frames, width);
    geom = g;
    mapCanvas.width = Math.round(g.width * dpr);
    mapCanvas.height = Math.round(Math.max(g.height, 1) * dpr);
    mapCanvas.style.width = `${g.width}px`;
    mapCanvas.style.height = `${Math.max(g.height, 1)}px`;
    c.setTransform(dpr, 0, 0, dpr, 0, 0);
    c.clearRect(0, 0, g.width, g.height);
    const d = derive(m);
    const incs = Math.max(0, epochs - 1);
    const bins = countBins(incs);
    const ramp = [1, 2, 3, 4, 5].map((i) => cssVar(root, `--gran-c${i}`, ['#c6dbef', '#9ecae1', '#6baed6', '#3182bd', '#08519c'][i - 1]!));
    const hot = cssVar(root, '--gran-hot', '#bc4c00');
    const frameBg = cssVar(root, '--gran-frame', '#eef1f4');
    const frameLine = cssVar(root, '--gran-frame-line', '#8c959f');
    const mask = mapMode === 'epoch' ? epochMask(m, mapEpoch, d.base) : null;
    let dirtyParts = 0;
    for (let f = 0; f < frames; f++) {
      const n = m.parts[f]!;
      const [fx, fy] = partRect(g, 1, f, 0);
      c.fillStyle = frameBg;
      c.fillRect(fx, fy, g.cell, g.cell);
      for (let p = 0; p < n; p++) {
        const i = d.base[f]! + p;
        let fill: string | null = null;
        if (mask) { if (mask[i]) { fill = hot; dirtyParts++; } } else {
          const k = d.counts[i]!;
          if (k > 0) { fill = ramp[Math.min(ramp.length, binOf(bins, k)) - 1]!; dirtyParts++; }
        }
        if (!fill) continue;
        const [x, y, w, h] = partRect(g, n, f, p);
        c.fillStyle = fill;
        // a 1px inset inside big cells keeps slots apart; clean slots stay hollow
        const inset = w >= 5 && h >= 5 ? 0.5 : 0;
        c.fillRect(x + inset, y + inset, w - 2 * inset, h - 2 * inset);
      }
      // plain pages: a solid frame line; slab frames: a dashed one (not told apart by colour)
      c.strokeStyle = frameLine;
      c.lineWidth = 1;
      c.setLineDash(m.slab[f] ? [2, 2] : []);
      c.strokeRect(fx + 0.5, fy + 0.5, g.cell - 1, g.cell - 1);
    }
    c.setLineDash([]);
    if (cursor && cursor.frame < frames) {
      cursor.part = Math.min(cursor.part, m.parts[cursor.frame]! - 1);
      const [x, y, w, h] = partRect(g, m.parts[cursor.frame]!, cursor.frame, cursor.part);
      c.strokeStyle = cssVar(root, '--focus', '#0969da');
      c.lineWidth = 2;
      c.strokeRect(x - 1, y - 1, w + 2, h + 2);
      mapReadout.textContent = partInfo(m, cursor.frame, cursor.part);
    } else {
      cursor = null;
      mapReadout.textContent = 'Point at a cell, or focus the map and use the arrow keys, to read it.';
    }
    // legend: swatches with their numbers, so colour is not the only cue
    mapLegend.replaceChildren();
    const swatch = (cls: string, color: string | null, text: string) => {
      const s = h('span', { class: `gran-swatch ${cls}`, 'aria-hidden': 'true' });
      if (color) s.style.background = color;
      return h('li', {}, s, text);
    };
    if (mask) {
      mapLegend.append(swatch('hollow', null, 'clean in this epoch (hollow)'), swatch('', hot, `dirty in epoch ${mapEpoch}: copied to the checkpoint (filled)`));
    } else {
      mapLegend.append(swatch('hollow', null, `${bins[0]!.label} (hollow)`));
      bins.slice(1).forEach((b, i) => mapLegend.append(swatch('', ramp[i]!, `${b.label} of ${incs}`)));
    }
    mapLegend.append(swatch('dashed', null, 'dashed outline: a slab frame, drawn in its slots'), swatch('solid', null, 'solid outline: a plain page (packed page, large object, stack, globals)'));
    const slabs = m.slab.reduce((s, x) => s + x, 0);
    const bytesNote = mask ? `; ${fmtInt(dirtyParts)} cells dirty in epoch ${mapEpoch}: ${fmtBytes(epochMapBytes(m, mapEpoch))}, the epoch's checkpoint bytes` : `; ${fmtInt(dirtyParts)} cells dirty at least once after the base`;
    mapSummary.textContent = `${fmtInt(frames)} frames (${fmtInt(slabs)} slab frames, ${fmtInt(frames - slabs)} plain pages), ${fmtInt(d.base[frames]!)} cells${bytesNote}.`;
    mapCanvas.setAttribute('aria-label', `Map of ${frames} frames coloured by ${mask ? `dirtiness in epoch ${mapEpoch}` : 'the number of epochs that dirtied each cell'}. ${mapSummary.textContent} Use the arrow keys to read cells.`);
  }

  mapCanvas.addEventListener('mousemove', (ev) => {
    if (!geom || !shownMap) return;
    const r = mapCanvas.getBoundingClientRect();
    const hit = hitTest(geom, shownMap, ev.clientX - r.left, ev.clientY - r.top);
    if (!hit) { mapTip.hidden = true; return; }
    mapTip.textContent = partInfo(shownMap, hit.frame, hit.part);
    mapTip.hidden = false;
    const bx = mapBox.getBoundingClientRect();
    mapTip.style.left = `${Math.min(ev.clientX - bx.left + 14, bx.width - 260)}px`;
    mapTip.style.top = `${ev.clientY - bx.top + 14}px`;
  });
  mapCanvas.addEventListener('mouseleave', () => { mapTip.hidden = true; });
  mapCanvas.addEventListener('click', (ev) => {
    if (!geom || !shownMap) return;
    const r = mapCanvas.getBoundingClientRect();
    const hit = hitTest(geom, shownMap, ev.clientX - r.left, ev.clientY - r.top);
    if (hit) { cursor = hit; renderMap(); }
  });
  mapCanvas.addEventListener('focus', () => {
    if (!cursor && shownMap && shownMap.parts.length) {
      const first = shownMap.epochs.slice(1).find((e) => e.length)?.[0];
      cursor = first !== undefined ? { frame: Math.floor(first / MAX_PARTS), part: first % MAX_PARTS } : { frame: 0, part: 0 };
      renderMap();
    }
  });
  mapCanvas.addEventListener('keydown', (ev) => {
    if (!geom || !shownMap || !cursor) return;
    const m = shownMap;
    const last = m.parts.length - 1;
    let { frame, part } = cursor;
    switch (ev.key) {
      case 'ArrowRight': if (part + 1 < m.parts[frame]!) part++; else if (frame < last) { frame++; part = 0; } break;
      case 'ArrowLeft': if (part > 0) part--; else if (frame > 0) { frame--; part = m.parts[frame]! - 1; } break;
      case 'ArrowDown': frame = Math.min(last, frame + geom.perRow); break;
      case 'ArrowUp': frame = Math.max(0, frame - geom.perRow); break;
      case 'Home': frame = 0; part = 0; break;
      case 'End': frame = last; part = 0; break;
      default: return;
    }
    ev.preventDefault();
    cursor = { frame, part: Math.min(part, m.parts[frame]! - 1) };
    renderMap();
  });

  function renderSelection() {
    renderFigures();
    renderChart();
    renderMap();
    renderStatus();
    const key = jobKey(jobForSelection(sel));
    for (const [k, b] of matrixCells) b.setAttribute('aria-pressed', String(k === key));
  }

  new ResizeObserver(() => { if (shownMap || geom === null) renderMap(); }).observe(mapBox);

  // ---- start ---------------------------------------------------------------------------------

  buildMatrix();
  fillTraces();
  syncControls();
  renderSelection();
  const first = defaultTrace(ctx.traces);
  if (first) {
    traceSelect.value = first.name;
    void open({ id: first.name, name: first.name, entry: first });
  } else {
    statusText('idle', 'No bundled traces: load a trace file to start.');
  }
};
