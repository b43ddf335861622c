// `granule compare --html`: one self-contained page (charts, the table, the notes) that opens from
// disk with no network. Chart.js is inlined from node_modules at render time; the result itself is
// embedded as JSON so the page can be re-read by tools, and the charts are drawn from series
// computed here (typed and tested) rather than in the page script.
import { readFileSync, writeFileSync, renameSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { basename, dirname, join } from 'node:path';
import type { CompareResult, CompareRow } from './types.ts';
import {
  fmtBytes, fmtInt, fmtRatio, fmtPercent, exitsTotal, hasMmu, granularityText, commandText, summarizeCompare,
  hostCosts,
} from './table.ts';

/** The HTML report could not be written; the message names the path and what to do. */
export class ReportWriteError extends Error {}

/** Chart.js could not be found; the report cannot be drawn offline without it. */
export class ReportLibraryError extends Error {}

export function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);
}

/**
 * JSON that can sit inside a <script> element: '<' (so no "</script>" or "<!--") and the two line
 * separators JavaScript once treated as newlines are written as escapes, which JSON.parse undoes.
 */
export function jsonForScript(v: unknown): string {
  return JSON.stringify(v)
    .replace(/</g, '\\u003c').replace(/>/g, '\\u003e').replace(/&/g, '\\u0026')
    .replace(/\u2028/g, '\\u2028').replace(/\u2029/g, '\\u2029');
}

let chartJs: { source: string; version: string } | undefined;

/** Chart.js's UMD build, which defines the global `Chart` from a plain inline <script>. */
export function loadChartJs(): { source: string; version: string } {
  if (chartJs) return chartJs;
  // chart.js exports only its entry points, not dist/chart.umd.js; its CommonJS entry sits in the
  // same directory. A created require (not the global one) leaves esbuild's bundling alone.
  let entry: string;
  try {
    entry = createRequire(import.meta.url).resolve('chart.js');
  } catch {
    throw new ReportLibraryError('the HTML report needs the npm package chart.js (it is inlined so the page works offline), '
      + 'but it is not installed: run npm install in the granule directory');
  }
  const file = join(dirname(entry), 'chart.umd.js');
  let source: string;
  try {
    source = readFileSync(file, 'utf8');
  } catch (e) {
    throw new ReportLibraryError(`cannot read ${file} (${(e as Error).message}): reinstall chart.js 4 with npm install`);
  }
  let version = /Chart\.js v(\d+\.\d+\.\d+)/.exec(source.slice(0, 400))?.[1] ?? '';
  try {
    version = (JSON.parse(readFileSync(join(dirname(entry), '..', 'package.json'), 'utf8')) as { version: string }).version;
  } catch { /* the banner's version will do */ }
  // Inline, "</script" would end the element early; "<\/script" means the same inside JS strings.
  chartJs = { source: source.replace(/<\/(script)/gi, '<\\/$1'), version };
  return chartJs;
}

// ---------------------------------------------------------------------------------------------
// Chart series

/** One line (or a horizontal reference line) of a chart; y is null where there is no value. */
export interface SeriesSpec {
  label: string;
  color: string;
  dash: number[];
  point: string;
  /** 'ref': one value for every x, drawn as a thin horizontal line without points */
  kind: 'line' | 'ref';
  y: (number | null)[];
}

export interface ChartSpec {
  id: string;
  title: string;
  /** a sentence for screen readers (the canvas's aria-label) */
  aria: string;
  caption: string;
  xKind: 'granularity' | 'epoch';
  /** granularities in bytes, or epoch indexes */
  x: number[];
  yKind: 'bytes' | 'count';
  yTitle: string;
  /** log-axis bounds (powers of 2 for bytes, of 10 for counts); absent for a linear axis */
  yMin?: number;
  yMax?: number;
  series: SeriesSpec[];
}

// Okabe-Ito hues darkened where needed for 3:1 contrast against white, plus a dash and a point
// shape per mode so the lines stay apart without colour.
const MODE_STYLE: Record<string, { color: string; point: string; dash: number[] }> = {
  'gpt-wp': { color: '#0072b2', point: 'circle', dash: [] },
  'ept-wp': { color: '#c2410c', point: 'rect', dash: [] },
  'ept-dirty': { color: '#047857', point: 'triangle', dash: [] },
  pml: { color: '#7c3aed', point: 'rectRot', dash: [] },
  spp: { color: '#a16207', point: 'star', dash: [] },
  page: { color: '#525252', point: 'line', dash: [8, 4] },
  ideal: { color: '#111111', point: 'line', dash: [2, 3] },
};
const EPOCH_STYLES = [
  { color: '#0072b2', point: 'circle', dash: [] }, { color: '#c2410c', point: 'rect', dash: [] },
  { color: '#047857', point: 'triangle', dash: [] }, { color: '#7c3aed', point: 'rectRot', dash: [] },
  { color: '#be185d', point: 'crossRot', dash: [] },
];
const EXTRA_COLORS = ['#be185d', '#0e7490', '#4d7c0f', '#9333ea', '#b45309'];
const EXTRA_POINTS = ['crossRot', 'cross', 'rectRounded', 'triangle', 'circle'];

function styleOf(mode: string, modes: string[]) {
  if (MODE_STYLE[mode]) return MODE_STYLE[mode];
  const k = Math.max(0, modes.filter((m) => !MODE_STYLE[m]).indexOf(mode));
  return { color: EXTRA_COLORS[k % EXTRA_COLORS.length], point: EXTRA_POINTS[k % EXTRA_POINTS.length], dash: [] };
}

/** A mode drawn as a line over granularities: its fixed-granularity rows on one layout. */
interface Track { key: string; mode: string; name: string; rows: Map<number, CompareRow> }

function tracks(r: CompareResult): Track[] {
  const out = new Map<string, Track>();
  for (const row of r.rows) {
    if (typeof row.granularity !== 'number' || !hasMmu(row) || row.mode === 'page') continue;
    const key = `${row.mode}|${row.layout}`;
    if (!out.has(key)) out.set(key, { key, mode: row.mode, name: row.mode, rows: new Map() });
    out.get(key)!.rows.set(row.granularity, row);
  }
  // A mode on two layouts needs the layout in its name to tell the lines apart.
  const list = [...out.values()];
  for (const t of list) if (list.some((u) => u !== t && u.mode === t.mode)) t.name = `${t.mode} (${t.key.split('|')[1]})`;
  return list;
}

/** A candidate series before merging; suffix says which quantity ('faults', 'VA', '64 B'). */
interface Item { name: string; mode: string; y: (number | null)[]; kind: 'line' | 'ref'; suffix?: string; dash?: number[] }

/**
 * Series with identical values are drawn once under a joint label: the write-protection modes
 * find the same dirty units, so their checkpoint lines coincide and one would hide the other.
 */
function merge(items: Item[], modes: string[]): SeriesSpec[] {
  const groups = new Map<string, typeof items>();
  for (const it of items) {
    if (it.y.every((v) => v === null)) continue;
    const key = `${it.kind}:${JSON.stringify(it.y)}`;
    if (!groups.has(key)) groups.set(key, []);
    groups.get(key)!.push(it);
  }
  return [...groups.values()].map((g) => {
    const st = styleOf(g[0].mode, modes);
    return { label: jointLabel(g), color: st.color, point: g[0].kind === 'ref' ? 'line' : st.point,
      dash: g[0].dash ?? (g[0].kind === 'ref' && st.dash.length === 0 ? [6, 3] : st.dash), kind: g[0].kind, y: g[0].y };
  });
}

/** 'PT+EPT: gpt-wp, ept-wp' rather than 'gpt-wp PT+EPT, ept-wp PT+EPT'; single items keep their order. */
function jointLabel(items: { name: string; suffix?: string }[]): string {
  const parts: string[] = [];
  const done = new Set<string>();
  for (const it of items) {
    if (it.suffix === undefined) { parts.push(it.name); continue; }
    if (done.has(it.suffix)) continue;
    const same = items.filter((x) => x.suffix === it.suffix);
    if (same.length === 1) { parts.push(`${it.name} ${it.suffix}`); continue; }
    done.add(it.suffix);
    parts.push(`${it.suffix}: ${same.map((x) => x.name).join(', ')}`);
  }
  return parts.join(parts.some((p) => p.includes(', ')) ? '; ' : ', ');
}

function logBounds(values: (number | null)[], base: 2 | 10): { yMin?: number; yMax?: number } {
  const pos = values.filter((v): v is number => v !== null && v > 0);
  if (!pos.length) return {};
  const lg = base === 2 ? Math.log2 : Math.log10;
  let lo = Math.floor(lg(Math.min(...pos))), hi = Math.ceil(lg(Math.max(...pos)));
  if (hi <= lo) hi = lo + 1;
  if (base === 2 && hi - lo < 2) lo -= 1;
  return { yMin: base ** lo, yMax: base ** hi };
}

const seriesValues = (s: SeriesSpec[]) => s.flatMap((x) => x.y);
const positiveOrNull = (v: number | null) => (v !== null && v > 0 ? v : null);

function describeSeries(spec: ChartSpec): string {
  const fx = (v: number) => (spec.xKind === 'granularity' ? granularityText(v) : `epoch ${v}`);
  const fy = (v: number) => (spec.yKind === 'bytes' ? fmtBytes(v) : fmtInt(v));
  const parts = spec.series.map((s) => {
    const pts = s.y.map((y, i) => [spec.x[i], y] as const).filter(([, y]) => y !== null) as [number, number][];
    if (s.kind === 'ref' || pts.length === 1) return `${s.label} ${fy(pts[0][1])}${s.kind === 'line' ? ` at ${fx(pts[0][0])}` : ''}`;
    const a = pts[0], b = pts[pts.length - 1];
    return `${s.label} from ${fy(a[1])} at ${fx(a[0])} to ${fy(b[1])} at ${fx(b[0])}`;
  });
  return `${parts.join('; ')}.`;
}

/** The charts of the report, from the result alone. */
export function buildCharts(r: CompareResult): ChartSpec[] {
  const modes = [...new Set(r.rows.map((x) => x.mode))];
  const ts = tracks(r);
  const gs = [...new Set(ts.flatMap((t) => [...t.rows.keys()]))].sort((a, b) => a - b);
  const page = r.rows.find((x) => x.mode === 'page');
  const ideal = r.rows.find((x) => x.mode === 'ideal');
  const adaptive = r.rows.filter((x) => x.granularity === 'adaptive');
  const flat = (v: number | null) => gs.map(() => v);
  const along = (t: Track, f: (row: CompareRow) => number | null) => gs.map((g) => (t.rows.has(g) ? f(t.rows.get(g)!) : null));
  const charts: ChartSpec[] = [];
  const gRange = gs.length ? `from ${granularityText(gs[0])} to ${granularityText(gs[gs.length - 1])}` : '';
  /** Configurations without a fixed granularity, drawn as horizontal lines. */
  const refs = [...adaptive, ...(page ? [page] : [])];
  /** A log-log chart against granularity, when it has anything to draw; `what` names it for screen readers. */
  const granularityChart = (id: string, title: string, yKind: 'bytes' | 'count', yTitle: string, what: string, series: ChartSpec['series'], caption: string) => {
    if (!series.length) return;
    const spec: ChartSpec = {
      id, title, aria: '', xKind: 'granularity', x: gs, yKind, yTitle, ...logBounds(seriesValues(series), yKind === 'bytes' ? 2 : 10), series, caption,
    };
    spec.aria = `Line chart of ${what} against granularity ${gRange}, log scales. ${describeSeries(spec)}`;
    charts.push(spec);
  };

  if (gs.length) {
    // (a) checkpoint bytes
    const items = [
      ...ts.map((t) => ({ name: t.name, mode: t.mode, kind: 'line' as const, y: along(t, (x) => positiveOrNull(x.checkpointBytes)) })),
      ...adaptive.map((x) => ({ name: x.label, mode: x.mode, kind: 'ref' as const, y: flat(positiveOrNull(x.checkpointBytes)) })),
    ];
    if (page) items.push({ name: page.label, mode: 'page', kind: 'ref', y: flat(positiveOrNull(page.checkpointBytes)) });
    const idealBytes = ideal?.checkpointBytes ?? r.idealBytes;
    items.push({ name: ideal?.label ?? 'byte ideal', mode: 'ideal', kind: 'ref', y: flat(positiveOrNull(idealBytes)) });
    granularityChart('chart-bytes', 'Checkpoint bytes against granularity', 'bytes', 'checkpoint bytes (log scale)', 'checkpoint bytes', merge(items, modes),
      'Totals over all epochs; lower is better. The byte ideal is the floor no monitor can beat; page level is what page protection copies today. '
        + 'Modes that find the same dirty units copy the same bytes, so their lines coincide and are drawn once under a joint label. '
        + 'Horizontal lines are configurations without a fixed granularity.');

    // (b) faults and exits
    const stopItems: Item[] = [];
    const silent: string[] = [];
    for (const t of ts) {
      const faults = along(t, (x) => x.faults), exits = along(t, (x) => exitsTotal(x.exits));
      const anyF = faults.some((v) => v), anyE = exits.some((v) => v);
      if (anyF) stopItems.push({ name: t.name, mode: t.mode, kind: 'line', suffix: 'faults', y: faults.map((v) => (v ? v : null)) });
      if (anyE) stopItems.push({ name: t.name, mode: t.mode, kind: 'line', suffix: 'exits', y: exits.map((v) => (v ? v : null)) });
      if (!anyF && !anyE) silent.push(t.name);
    }
    for (const x of refs) {
      if (x.faults) stopItems.push({ name: x.label, mode: x.mode, kind: 'ref', suffix: 'faults', y: flat(x.faults) });
      if (exitsTotal(x.exits)) stopItems.push({ name: x.label, mode: x.mode, kind: 'ref', suffix: 'exits', y: flat(exitsTotal(x.exits)) });
    }
    granularityChart('chart-stops', 'Faults and VM exits against granularity', 'count', 'faults or exits (log scale)', 'faults and VM exits', merge(stopItems, modes),
      'Totals over all epochs. Each fault or exit interrupts the program; what one costs depends on the machine (see the Time column). '
        + `Finer units mean more of them.${silent.length ? ` ${silent.join(', ')}: no faults and no exits at any granularity (not drawn).` : ''}`
        + ' A zero cannot be drawn on a log scale and leaves a gap.');
  }

  // (c) per epoch: the baselines, the finest granularity and adaptive
  const epochs = Math.max(0, ...r.rows.map((x) => x.epochs.length));
  if (epochs > 0) {
    const xs = Array.from({ length: epochs }, (_, i) => i);
    const per = (row: CompareRow, f: (e: CompareRow['epochs'][number]) => number) => xs.map((i) => (row.epochs[i] ? positiveOrNull(f(row.epochs[i])) : null));
    const items: Item[] = [];
    if (page) items.push({ name: page.label, mode: 'page', kind: 'line', y: per(page, (e) => e.checkpointBytes) });
    const withEpochs = r.rows.find((x) => x.epochs.length === epochs)!;
    items.push({ name: ideal?.label ?? 'byte ideal', mode: 'ideal', kind: 'line', y: ideal ? per(ideal, (e) => e.checkpointBytes) : per(withEpochs, (e) => e.idealBytes) });
    if (gs.length) {
      for (const t of ts) {
        const row = t.rows.get(gs[0]);
        if (row && t.mode !== 'spp') items.push({ name: t.name, mode: t.mode, kind: 'line', suffix: granularityText(gs[0]), y: per(row, (e) => e.checkpointBytes) });
      }
    }
    for (const x of adaptive) items.push({ name: x.label, mode: x.mode, kind: 'line', y: per(x, (e) => e.checkpointBytes) });
    const series = merge(items, modes);
    // Here the lines are not modes but the picks above, so they get colours by position (two
    // groups of one mode would otherwise share a colour); page level and the ideal keep theirs.
    let k = 0;
    for (const s of series) {
      if (s.point === 'line') { s.point = 'circle'; continue; }
      Object.assign(s, EPOCH_STYLES[k++ % EPOCH_STYLES.length]);
    }
    const spec: ChartSpec = {
      id: 'chart-epochs', title: 'Checkpoint bytes per epoch', aria: '', xKind: 'epoch', x: xs,
      yKind: 'bytes', yTitle: 'bytes in the epoch (log scale)', ...logBounds(seriesValues(series), 2), series,
      caption: `Each epoch is ${fmtInt(r.epochWrites)} writes. Where the lines part, the program's writes were scattered `
        + '(fine units pay off); where they meet, it wrote whole pages. Adaptive granularity picks its unit size epoch by epoch.',
    };
    spec.aria = `Line chart of checkpoint bytes in each of ${fmtInt(epochs)} epochs, log scale. ${describeSeries(spec)}`;
    charts.push(spec);
  }

  if (gs.length) {
    // (d) translation costs: TLB misses, then page-table and address-space size
    const tlbItems: Item[] = ts.map((t) => ({ name: t.name, mode: t.mode, kind: 'line' as const, y: along(t, (x) => positiveOrNull(x.tlbMisses)) }));
    for (const x of refs) tlbItems.push({ name: x.label, mode: x.mode, kind: 'ref', y: flat(positiveOrNull(x.tlbMisses)) });
    granularityChart('chart-tlb', 'TLB misses against granularity', 'count', 'TLB misses (log scale)', 'TLB misses', merge(tlbItems, modes),
      'Totals over all epochs. A frame cut into K units is reached through K virtual pages, so finer units need more TLB entries and more page walks.');
    const memItems: Item[] = [];
    for (const t of ts) memItems.push({ name: t.name, mode: t.mode, kind: 'line', suffix: 'PT+EPT', y: along(t, (x) => positiveOrNull(x.tableBytes)) });
    // The address-space lines share their mode's colour; a dash tells them from the table lines.
    for (const t of ts) memItems.push({ name: t.name, mode: t.mode, kind: 'line', suffix: 'VA', dash: [5, 4], y: along(t, (x) => positiveOrNull(x.vaBytes)) });
    if (page) {
      memItems.push({ name: page.label, mode: 'page', kind: 'ref', suffix: 'PT+EPT', y: flat(positiveOrNull(page.tableBytes)) });
      memItems.push({ name: page.label, mode: 'page', kind: 'ref', suffix: 'VA', dash: [2, 3], y: flat(positiveOrNull(page.vaBytes)) });
    }
    granularityChart('chart-memory', 'Page-table + EPT bytes and address space against granularity', 'bytes', 'bytes (log scale)', 'page-table plus EPT bytes and virtual address space', merge(memItems, modes),
      'Solid: guest page tables plus EPT. Dashed: virtual address space mapped. Both grow as K = 4096 / granularity; no physical memory is duplicated.');
  }
  return charts;
}

// ---------------------------------------------------------------------------------------------
// HTML pieces

function chartDataTable(spec: ChartSpec): string {
  const fy = (v: number | null) => (v === null ? '–' : spec.yKind === 'bytes' ? fmtBytes(v) : fmtInt(v));
  if (spec.xKind === 'granularity') {
    // granularities across (a handful), series down
    const head = spec.x.map((g) => `<th scope="col">${escapeHtml(granularityText(g))}</th>`).join('');
    const body = spec.series.map((s) => {
      const cells = s.kind === 'ref'
        ? `<td colspan="${spec.x.length}" class="ref">${escapeHtml(fy(s.y[0]))} (one value)</td>`
        : s.y.map((v) => `<td>${escapeHtml(fy(v))}</td>`).join('');
      return `<tr><th scope="row">${escapeHtml(s.label)}</th>${cells}</tr>`;
    }).join('\n');
    return `<table class="data"><caption>${escapeHtml(spec.title)}</caption><thead><tr><th scope="col">series</th>${head}</tr></thead><tbody>\n${body}\n</tbody></table>`;
  }
  // epochs down (there may be hundreds), series across
  const head = spec.series.map((s) => `<th scope="col">${escapeHtml(s.label)}</th>`).join('');
  const body = spec.x.map((e, i) => `<tr><th scope="row">${e}</th>${spec.series.map((s) => `<td>${escapeHtml(fy(s.y[i]))}</td>`).join('')}</tr>`).join('\n');
  return `<table class="data"><caption>${escapeHtml(spec.title)}</caption><thead><tr><th scope="col">epoch</th>${head}</tr></thead><tbody>\n${body}\n</tbody></table>`;
}

function chartFigure(spec: ChartSpec, wide: boolean): string {
  return `<figure class="chart${wide ? ' wide' : ''}" id="${spec.id}-figure">
<h3>${escapeHtml(spec.title)}</h3>
<div class="canvas-box"><canvas id="${spec.id}" role="img" aria-label="${escapeHtml(spec.aria)}">${escapeHtml(spec.aria)}</canvas></div>
<figcaption>${escapeHtml(spec.caption)}</figcaption>
<details><summary>Values as a table</summary><div class="scroll">${chartDataTable(spec)}</div></details>
</figure>`;
}

interface HtmlColumn { head: string; title?: string; sortable?: false; cell: (x: CompareRow, i: number) => { text: string; v: number; html?: string } }

const mmu = (x: CompareRow, v: number | null, text: string) => (hasMmu(x) && v !== null ? { text, v } : { text: '–', v: NaN });

const HTML_COLUMNS: HtmlColumn[] = [
  { head: 'Configuration', title: 'sorting by this column restores the original order', cell: (x, i) => ({ text: x.label, v: i }) },
  { head: 'Checkpoint', cell: (x) => ({ text: fmtBytes(x.checkpointBytes), v: x.checkpointBytes }) },
  { head: '× page', title: 'checkpoint bytes over page level', cell: (x) => ({ text: fmtRatio(x.overPage), v: x.overPage }) },
  { head: '× ideal', title: 'checkpoint bytes over the byte ideal', cell: (x) => ({ text: fmtRatio(x.overIdeal), v: x.overIdeal }) },
  { head: 'Dirty units', cell: (x) => mmu(x, x.dirtyUnits, fmtInt(x.dirtyUnits)) },
  { head: 'Faults', cell: (x) => mmu(x, x.faults, fmtInt(x.faults)) },
  { head: 'Exits', cell: (x) => mmu(x, exitsTotal(x.exits), fmtInt(exitsTotal(x.exits))) },
  {
    head: 'Exit reasons', sortable: false,
    cell: (x) => {
      const reasons = Object.entries(x.exits).filter(([, n]) => n > 0).sort((a, b) => b[1] - a[1]);
      return { text: '', html: reasons.length === 1 ? escapeHtml(reasons[0][0]) : reasons.map(([k, n]) => `<span>${escapeHtml(`${k} ${fmtInt(n)}`)}</span>`).join(''), v: NaN };
    },
  },
  { head: 'TLB misses', cell: (x) => mmu(x, x.tlbMisses, fmtInt(x.tlbMisses ?? 0)) },
  { head: 'Walk refs', title: 'memory references made by page walks', cell: (x) => mmu(x, x.walkRefs, fmtInt(x.walkRefs ?? 0)) },
  { head: 'PT+EPT', title: 'guest page tables plus EPT', cell: (x) => mmu(x, x.tableBytes, fmtBytes(x.tableBytes)) },
  { head: 'VA', title: 'virtual address space mapped', cell: (x) => mmu(x, x.vaBytes, fmtBytes(x.vaBytes)) },
  { head: 'Time', title: 'wall time of the run', cell: (x) => ({ text: x.seconds < 10 ? `${x.seconds.toFixed(2)} s` : `${fmtInt(x.seconds)} s`, v: x.seconds }) },
];

function resultsTable(r: CompareResult): string {
  const head = HTML_COLUMNS.map((c, i) => {
    const title = c.title ? ` title="${escapeHtml(c.title)}"` : '';
    if (c.sortable === false) return `<th scope="col" class="text">${escapeHtml(c.head)}</th>`;
    return `<th scope="col" aria-sort="${i === 0 ? 'ascending' : 'none'}"${i ? ' class="num"' : ''}><button type="button" data-col="${i}"${title}>${escapeHtml(c.head)}</button></th>`;
  }).join('');
  const body = r.rows.map((x, i) => {
    const classes = [x.mode === 'page' || x.mode === 'ideal' ? 'baseline' : '', i > 0 && r.rows[i - 1].mode !== x.mode ? 'group-start' : ''].filter(Boolean);
    const cls = classes.length ? ` class="${classes.join(' ')}"` : '';
    const cells = HTML_COLUMNS.map((c, k) => {
      const { text, v, html } = c.cell(x, i);
      const dv = Number.isFinite(v) ? String(v) : '';
      if (c.sortable === false) return `<td class="text">${html ?? escapeHtml(text)}</td>`;
      return k === 0
        ? `<th scope="row" data-v="${dv}">${escapeHtml(text)}</th>`
        : `<td data-v="${dv}">${escapeHtml(text)}</td>`;
    }).join('');
    return `<tr${cls}>${cells}</tr>`;
  }).join('\n');
  return `<div class="scroll" tabindex="0" role="region" aria-labelledby="results-heading">
<table class="results sortable">
<caption>Every configuration, in the order compared. Sort by a column with its heading (a button); “–”: not applicable (the byte ideal comes from the trace, with no MMU).</caption>
<thead><tr>${head}</tr></thead>
<tbody>
${body}
</tbody>
</table>
</div>`;
}

function headlineCards(r: CompareResult): string {
  const cards: { title: string; value: string; sub: string }[] = [];
  const monitored = r.rows.filter((x) => hasMmu(x) && x.checkpointBytes > 0);
  const best = monitored.reduce<CompareRow | undefined>((b, x) => (!b || x.checkpointBytes < b.checkpointBytes ? x : b), undefined);
  const page = r.rows.find((x) => x.mode === 'page');
  const adaptive = r.rows.find((x) => x.granularity === 'adaptive');
  cards.push({ title: 'Byte ideal', value: fmtBytes(r.idealBytes), sub: `distinct bytes written in ${fmtInt(r.epochs)} epochs` });
  if (page) cards.push({ title: 'Page level', value: `${fmtRatio(page.overIdeal)}×`, sub: `the ideal: ${fmtBytes(page.checkpointBytes)}` });
  if (best) cards.push({ title: `Smallest: ${best.label}`, value: `${fmtRatio(best.overIdeal)}×`, sub: `the ideal; ${page ? `${fmtPercent(best.overPage)} of page level` : fmtBytes(best.checkpointBytes)}` });
  if (adaptive && adaptive !== best) cards.push({ title: adaptive.label, value: `${fmtRatio(adaptive.overIdeal)}×`, sub: `the ideal, with ${fmtInt(adaptive.faults + exitsTotal(adaptive.exits))} faults and exits` });
  return `<ul class="cards">${cards.map((c) => `<li><span class="card-title">${escapeHtml(c.title)}</span><span class="card-value">${escapeHtml(c.value)}</span><span class="card-sub">${escapeHtml(c.sub)}</span></li>`).join('')}</ul>`;
}

const CSS = `
:root { color-scheme: light; --fg: #1a1a1a; --muted: #4b5563; --line: #d4d4d8; --band: #f4f4f5; --accent: #0a5a8c; }
* { box-sizing: border-box; }
body { margin: 0; font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "Noto Sans", "DejaVu Sans", sans-serif; color: var(--fg); background: #fff; }
header, main, footer { max-width: 1320px; margin: 0 auto; padding: 0 24px; }
header { padding-top: 20px; }
h1 { font-size: 1.6rem; margin: 0 0 4px; }
h1 .trace { font-weight: 500; color: var(--muted); }
h2 { font-size: 1.2rem; margin: 28px 0 10px; padding-bottom: 4px; border-bottom: 1px solid var(--line); }
h3 { font-size: 1rem; margin: 0 0 6px; }
code { font: 0.9em/1.4 ui-monospace, "SFMono-Regular", Menlo, Consolas, "DejaVu Sans Mono", monospace; background: var(--band); padding: 1px 4px; border-radius: 3px; overflow-wrap: anywhere; }
dl.meta { display: grid; grid-template-columns: max-content 1fr; gap: 2px 14px; margin: 10px 0; font-size: 0.93rem; }
dl.meta dt { color: var(--muted); }
dl.meta dd { margin: 0; overflow-wrap: anywhere; }
.summary { font-size: 1.05rem; max-width: 80ch; margin: 12px 0; }
.cards { list-style: none; padding: 0; margin: 14px 0 4px; display: grid; grid-template-columns: repeat(auto-fit, minmax(210px, 1fr)); gap: 12px; }
.cards li { border: 1px solid var(--line); border-radius: 8px; padding: 10px 14px; background: #fafafa; display: flex; flex-direction: column; }
.card-title { color: var(--muted); font-size: 0.88rem; }
.card-value { font-size: 1.7rem; font-weight: 650; font-variant-numeric: tabular-nums; line-height: 1.25; }
.card-sub { font-size: 0.88rem; color: var(--muted); }
.charts { display: grid; grid-template-columns: repeat(auto-fit, minmax(540px, 1fr)); gap: 20px; }
figure.chart { margin: 0; border: 1px solid var(--line); border-radius: 8px; padding: 12px 14px 10px; min-width: 0; }
figure.chart.wide { grid-column: 1 / -1; }
.canvas-box { position: relative; height: 340px; }
figure.chart.wide .canvas-box { height: 320px; }
figcaption { font-size: 0.88rem; color: var(--muted); margin: 8px 0 4px; }
details summary { cursor: pointer; font-size: 0.88rem; color: var(--accent); }
.scroll { overflow-x: auto; }
.scroll:focus-visible, button:focus-visible, summary:focus-visible { outline: 3px solid #f59e0b; outline-offset: 2px; }
table { border-collapse: collapse; font-variant-numeric: tabular-nums; }
caption { text-align: left; color: var(--muted); font-size: 0.86rem; padding: 4px 0 6px; caption-side: top; }
table.data { font-size: 0.84rem; margin: 6px 0; }
table.data th, table.data td { padding: 2px 8px; border-bottom: 1px solid var(--band); text-align: right; white-space: nowrap; }
table.data th[scope=row] { text-align: left; font-weight: 500; white-space: normal; min-width: 12em; }
table.data td.ref { text-align: center; color: var(--muted); }
table.results { width: 100%; font-size: 0.9rem; }
table.results th, table.results td { padding: 4px 7px; border-bottom: 1px solid var(--line); white-space: nowrap; }
table.results td, table.results th.num { text-align: right; }
table.results th[scope=row] { text-align: left; font-weight: 500; position: sticky; left: 0; background: inherit; }
table.results thead th { position: sticky; top: 0; background: #fff; border-bottom: 2px solid #a1a1aa; vertical-align: bottom; }
table.results tbody tr { background: #fff; }
table.results tbody tr:nth-child(even) { background: #f8f8f9; }
table.results tr.baseline th[scope=row] { font-weight: 700; }
table.results .text { text-align: left; white-space: normal; font-size: 0.84rem; color: var(--muted); }
table.results thead th.text { color: var(--fg); font-weight: 600; padding-bottom: 6px; }
table.results td.text span { display: block; white-space: nowrap; }
table.results:not(.sorted) tr.group-start > * { border-top: 2px solid #a1a1aa; }
th button { font: inherit; font-weight: 600; color: inherit; background: none; border: 0; padding: 2px 0; cursor: pointer; text-align: inherit; }
th[aria-sort=ascending] button::after { content: " ▲"; font-size: 0.7em; }
th[aria-sort=descending] button::after { content: " ▼"; font-size: 0.7em; }
.notes li { margin: 2px 0; }
.error { border: 2px solid #b91c1c; color: #7f1d1d; background: #fef2f2; padding: 8px 12px; border-radius: 6px; }
footer { color: var(--muted); font-size: 0.84rem; margin-top: 28px; padding-bottom: 24px; }
@media (max-width: 640px) { .charts { grid-template-columns: 1fr; } header, main, footer { padding: 0 12px; } }
@media print { figure.chart, .cards li { break-inside: avoid; } .scroll { overflow: visible; } }
`;

// Runs in the page: draws the charts from the embedded specs and makes the table sortable. Kept
// to plain ES2017 so any current browser runs it from disk.
const PAGE_SCRIPT = String.raw`
(function () {
  'use strict';
  var UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  function fmtInt(n) { return Math.round(n).toString().replace(/\B(?=(\d{3})+(?!\d))/g, ','); }
  function fmtBytes(n) {
    var v = n, u = 0;
    while (Math.abs(v) >= (u === 0 ? 1024 : 1023.5) && u < UNITS.length - 1) { v /= 1024; u++; }
    if (u === 0) return fmtInt(v) + ' B';
    var d = Math.abs(v) >= 99.95 ? 0 : Math.abs(v) >= 9.995 ? 1 : 2;
    return v.toFixed(d) + ' ' + UNITS[u];
  }
  // Axis labels: powers of two are whole units (4 KiB, 1 MiB), so print them without decimals.
  function fmtBytesTick(n) { var s = fmtBytes(n); return s.replace(/\.0+ /, ' '); }
  function fmtCount(n) {
    if (n >= 1e9) return (n / 1e9) + 'G';
    if (n >= 1e6) return (n / 1e6) + 'M';
    if (n >= 1e3) return (n / 1e3) + 'k';
    return String(n);
  }
  function fail(err) {
    var box = document.getElementById('script-error');
    if (box) { box.hidden = false; box.textContent = 'The charts could not be drawn: ' + (err && err.message ? err.message : err); }
  }
  function logTicks(spec) {
    var out = [], lo, hi, k;
    if (spec.yKind === 'bytes') {
      lo = Math.round(Math.log2(spec.yMin)); hi = Math.round(Math.log2(spec.yMax));
      var step = Math.max(1, Math.ceil((hi - lo) / 8));
      for (k = hi; k >= lo; k -= step) out.unshift({ value: Math.pow(2, k) });
    } else {
      lo = Math.round(Math.log10(spec.yMin)); hi = Math.round(Math.log10(spec.yMax));
      for (k = lo; k <= hi; k++) {
        out.push({ value: Math.pow(10, k) });
        if (hi - lo <= 3 && k < hi) { out.push({ value: 2 * Math.pow(10, k) }); out.push({ value: 5 * Math.pow(10, k) }); }
      }
    }
    return out;
  }
  function draw(spec) {
    var isG = spec.xKind === 'granularity';
    var xs = spec.x.map(function (v) { return isG ? Math.log2(v) : v; });
    var fx = function (v) { return isG ? fmtInt(Math.pow(2, v)) + ' B' : 'epoch ' + v; };
    var fy = spec.yKind === 'bytes' ? fmtBytes : fmtInt;
    var log = spec.yMin !== undefined;
    var datasets = spec.series.map(function (s) {
      var ref = s.kind === 'ref';
      var dense = !isG && spec.x.length > 60;
      return {
        label: s.label,
        data: s.y.map(function (y, i) { return { x: xs[i], y: y }; }),
        borderColor: s.color, backgroundColor: s.color, borderDash: s.dash,
        borderWidth: ref ? 1.5 : 2.25, pointStyle: s.point,
        pointRadius: ref || dense ? 0 : 3.5, pointHoverRadius: ref ? 0 : 5, pointHitRadius: 6,
        spanGaps: false, tension: 0, order: ref ? 1 : 0
      };
    });
    var y = {
      type: log ? 'logarithmic' : 'linear',
      title: { display: true, text: spec.yTitle, color: '#374151' },
      grid: { color: '#e5e7eb' },
      ticks: { color: '#374151', autoSkip: false, callback: function (v) { return spec.yKind === 'bytes' ? fmtBytesTick(v) : fmtCount(v); } }
    };
    if (log) { y.min = spec.yMin; y.max = spec.yMax; y.afterBuildTicks = function (axis) { axis.ticks = logTicks(spec); }; }
    else { y.beginAtZero = true; }
    var lo = xs[0], hi = xs[xs.length - 1];
    if (hi === lo) { lo -= 1; hi += 1; }
    return new Chart(document.getElementById(spec.id), {
      type: 'line',
      data: { datasets: datasets },
      options: {
        animation: false, responsive: true, maintainAspectRatio: false,
        interaction: { mode: 'index', intersect: false },
        scales: {
          x: {
            type: 'linear', min: lo, max: hi,
            title: { display: true, text: isG ? 'granularity (unit size, log scale)' : 'epoch', color: '#374151' },
            grid: { color: '#e5e7eb' },
            ticks: { color: '#374151', stepSize: 1, precision: 0, callback: function (v) { return isG ? fmtInt(Math.pow(2, v)) + ' B' : String(v); } }
          },
          y: y
        },
        plugins: {
          legend: { position: 'bottom', labels: { usePointStyle: true, boxWidth: 7, boxHeight: 7, color: '#1f2937', padding: 14, font: { size: 12 } } },
          tooltip: {
            filter: function (item) { return item.parsed.y !== null && item.raw.y !== null; },
            callbacks: {
              title: function (items) { return items.length ? fx(items[0].parsed.x) : ''; },
              label: function (item) { return item.dataset.label + ': ' + fy(item.parsed.y); }
            }
          }
        }
      }
    });
  }
  function sortable(table) {
    var tbody = table.tBodies[0];
    var heads = table.querySelectorAll('thead th');
    Array.prototype.forEach.call(table.querySelectorAll('th button[data-col]'), function (btn) {
      btn.addEventListener('click', function () {
        var col = Number(btn.getAttribute('data-col'));
        var th = btn.parentNode;
        var dir = th.getAttribute('aria-sort') === 'ascending' ? 'descending' : 'ascending';
        Array.prototype.forEach.call(heads, function (h) { h.setAttribute('aria-sort', 'none'); });
        th.setAttribute('aria-sort', dir);
        // the mode-group rules only make sense in the original order
        table.classList.toggle('sorted', !(col === 0 && dir === 'ascending'));
        var rows = Array.prototype.slice.call(tbody.rows);
        var key = function (r) { var v = r.cells[col].getAttribute('data-v'); return v === '' ? NaN : Number(v); };
        rows.sort(function (a, b) {
          var va = key(a), vb = key(b);
          if (isNaN(va) || isNaN(vb)) return isNaN(va) ? (isNaN(vb) ? 0 : 1) : -1; // blanks last either way
          return dir === 'ascending' ? va - vb : vb - va;
        });
        rows.forEach(function (r) { tbody.appendChild(r); });
      });
    });
  }
  try {
    Array.prototype.forEach.call(document.querySelectorAll('table.sortable'), sortable);
    if (typeof Chart === 'undefined') throw new Error('Chart.js did not load');
    Chart.defaults.font.family = getComputedStyle(document.body).fontFamily;
    var specs = JSON.parse(document.getElementById('granule-charts').textContent);
    specs.forEach(draw);
    document.documentElement.setAttribute('data-charts', String(specs.length));
  } catch (e) { fail(e); }
})();
`;

/** The report as one HTML document that needs nothing but a browser. */
/** compare --live: the host baselines' costs per epoch as a table. */
function hostCostsTable(r: CompareResult, hosts: CompareRow[]): string {
  const t = hostCosts(r, hosts);
  return `<table class="data"><caption>${escapeHtml(t.caption)}</caption><thead><tr>${t.head.map((h) => `<th scope="col">${escapeHtml(h)}</th>`).join('')}</tr></thead><tbody>
${t.rows.map((c) => `<tr><th scope="row">${escapeHtml(c[0]!)}</th>${c.slice(1).map((v) => `<td>${escapeHtml(v)}</td>`).join('')}</tr>`).join('\n')}
</tbody></table>`;
}

export function renderCompareHtml(r: CompareResult): string {
  const lib = loadChartJs();
  const charts = buildCharts(r);
  const summary = summarizeCompare(r);
  const name = basename(r.trace.path) || r.trace.path;
  const meta: [string, string][] = [['Trace', `<code>${escapeHtml(r.trace.path)}</code>`]];
  if (r.trace.command?.length) meta.push(['Command', `<code>${escapeHtml(commandText(r.trace.command))}</code>`]);
  meta.push(['Events', `${escapeHtml(fmtInt(r.trace.events))}${r.trace.source ? ` (${escapeHtml(r.trace.source)})` : ''}`]);
  meta.push(['Epochs', `${escapeHtml(fmtInt(r.epochs))} of ${escapeHtml(fmtInt(r.epochWrites))} writes; byte ideal ${escapeHtml(fmtBytes(r.idealBytes))}`]);
  if (r.machine) meta.push(['Machine', `${escapeHtml(r.machine.cpu)}; node ${escapeHtml(r.machine.node)}`]);
  if (r.backend) meta.push(['Backend', escapeHtml(r.backend.reason.split('\n')[0])]);
  meta.push(['Generated', `<time datetime="${escapeHtml(r.generated)}">${escapeHtml(r.generated.replace('T', ' ').replace(/\.\d+Z$|Z$/, ' UTC'))}</time>`]);

  // (a) and (b) side by side, the per-epoch chart across the page, then (d) side by side.
  const figures = charts.map((c) => chartFigure(c, c.xKind === 'epoch')).join('\n');
  const hosts = r.rows.filter((x) => x.host);
  const hostSection = hosts.length ? `<section aria-labelledby="host-heading">
<h2 id="host-heading">Host baselines, live</h2>
${hostCostsTable(r, hosts)}
</section>` : '';
  const notes = r.notes.length
    ? `<section aria-labelledby="notes-heading"><h2 id="notes-heading">Notes</h2><ul class="notes">${r.notes.map((n) => `<li>${escapeHtml(n)}</li>`).join('')}</ul></section>`
    : '';
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="granule compare">
<title>granule compare: ${escapeHtml(name)}</title>
<style>${CSS}</style>
</head>
<body>
<header>
<h1>Checkpoint cost by granularity <span class="trace">· ${escapeHtml(name)}</span></h1>
<dl class="meta">
${meta.map(([k, v]) => `<dt>${k}</dt><dd>${v}</dd>`).join('\n')}
</dl>
${summary.length ? `<p class="summary">${summary.map(escapeHtml).join(' ')}</p>` : ''}
${headlineCards(r)}
</header>
<main>
<p id="script-error" class="error" role="alert" hidden></p>
<section aria-labelledby="charts-heading">
<h2 id="charts-heading">Charts</h2>
<div class="charts">
${figures}
</div>
</section>
<section aria-labelledby="results-heading">
<h2 id="results-heading">All configurations</h2>
${resultsTable(r)}
</section>
${hostSection}
${notes}
</main>
<footer>
<p>Made by <code>granule compare</code>. Charts drawn with Chart.js ${escapeHtml(lib.version)} (MIT licence), included in this file so it works offline.
The full result is embedded as JSON in the element <code>#granule-result</code>.</p>
</footer>
<script type="application/json" id="granule-result">${jsonForScript(r)}</script>
<script type="application/json" id="granule-charts">${jsonForScript(charts)}</script>
<script>${lib.source}</script>
<script>${PAGE_SCRIPT}</script>
</body>
</html>
`;
}

/** Writes the report beside its final name and renames it into place, so no half file is left. */
export function writeReport(path: string, html: string): void {
  const tmp = join(dirname(path), `.${basename(path)}.${process.pid}.${Date.now().toString(36)}.tmp`);
  try {
    writeFileSync(tmp, html);
    renameSync(tmp, path);
  } catch (e) {
    rmSync(tmp, { force: true });
    const err = e as NodeJS.ErrnoException;
    const hint = err.code === 'ENOENT' ? 'create its directory first or choose another --html path'
      : err.code === 'EACCES' || err.code === 'EPERM' ? 'choose a path you may write to'
      : err.code === 'EISDIR' ? 'give a file name, not a directory'
      : 'check the path and free space';
    throw new ReportWriteError(`cannot write the HTML report ${path}: ${err.code ?? err.message} (${hint})`);
  }
}
