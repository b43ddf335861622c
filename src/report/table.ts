// `granule compare` as a terminal table: one line per configuration, numbers right-aligned, and a
// short summary a person can quote. The number formats here are shared with the HTML report so
// the two never disagree.
import type { CompareResult, CompareRow } from './types.ts';

/** Thousands separators, locale-independent so that tests and CI logs read the same everywhere. */
export function fmtInt(n: number): string {
  if (!Number.isFinite(n)) return '–';
  const s = Math.round(Math.abs(n)).toString().replace(/\B(?=(\d{3})+(?!\d))/g, ',');
  return n < 0 ? `-${s}` : s;
}

const UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];

/** Binary units with three significant digits: 512 B, 1.50 KiB, 24.1 MiB. */
export function fmtBytes(n: number): string {
  if (!Number.isFinite(n)) return '–';
  let v = n, u = 0;
  // 1023.7 KiB would round to "1024 KiB": move up a unit wherever the rounded value would reach 1024
  while (Math.abs(v) >= (u === 0 ? 1024 : 1023.5) && u < UNITS.length - 1) { v /= 1024; u++; }
  if (u === 0) return `${fmtInt(v)} B`;
  const digits = Math.abs(v) >= 99.95 ? 0 : Math.abs(v) >= 9.995 ? 1 : 2;
  return `${v.toFixed(digits)} ${UNITS[u]}`;
}

/** A ratio to about three significant digits; ratios far below 1 keep three decimals. */
export function fmtRatio(x: number): string {
  if (!Number.isFinite(x)) return '–';
  if (x === 0) return '0';
  if (x >= 99.95) return fmtInt(x);
  if (x >= 9.995) return x.toFixed(1);
  if (x >= 1) return x.toFixed(2);
  if (x < 0.0005) return '<0.001';
  return x.toFixed(3);
}

/** A share as a percentage with two significant digits: 9.9%, 14%, 0.52%. */
export function fmtPercent(x: number): string {
  if (!Number.isFinite(x)) return '–';
  const p = x * 100;
  if (p === 0) return '0%';
  if (p >= 9.95) return `${Math.round(p)}%`;
  if (p >= 0.995) return `${p.toFixed(1)}%`;
  return `${p.toFixed(2)}%`;
}

export function exitsTotal(exits: Record<string, number>): number {
  let s = 0;
  for (const v of Object.values(exits)) s += v;
  return s;
}

/** The most frequent exit reason (the first listed on a tie), or undefined when there were none. */
export function topExitReason(exits: Record<string, number>): string | undefined {
  let best: string | undefined, n = 0;
  for (const [k, v] of Object.entries(exits)) if (v > n) { best = k; n = v; }
  return best;
}

/** Rows computed from the trace alone have no MMU, so their MMU columns are not zero but absent. */
/** Rows computed from the trace alone (the byte ideal, idealized blocks) have no MMU costs. */
export const hasMmu = (row: CompareRow): boolean => row.mode !== 'ideal' && row.mode !== 'block';

export function granularityText(g: number | 'adaptive'): string {
  return g === 'adaptive' ? 'adaptive' : `${fmtInt(g)} B`;
}

/** Shell-like quoting, for showing a recorded command line. */
export function commandText(argv: string[]): string {
  return argv.map((a) => (/^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replace(/'/g, `'\\''`)}'`)).join(' ');
}

/**
 * The headline findings as sentences: the finest granularity against page level and the byte
 * ideal, page level against the ideal, and what adaptive granularity buys over the finest.
 */
export function summarizeCompare(r: CompareResult): string[] {
  const out: string[] = [];
  const page = r.rows.find((x) => x.mode === 'page');
  const fixed = r.rows.filter((x) => typeof x.granularity === 'number' && hasMmu(x) && x.mode !== 'page' && x.mode !== 'spp');
  const finestG = Math.min(...fixed.map((x) => x.granularity as number));
  const finest = fixed.filter((x) => x.granularity === finestG);
  if (finest.length) {
    const f = finest[0];
    // Modes that find the same dirty units copy the same bytes; name the mode only when they differ.
    const same = finest.every((x) => x.checkpointBytes === f.checkpointBytes);
    const at = same ? `At ${granularityText(finestG)}` : `At ${granularityText(finestG)} (${f.mode})`;
    const parts: string[] = [];
    if (page) parts.push(`holds ${fmtPercent(f.overPage)} of page level`);
    parts.push(`${fmtRatio(f.overIdeal)}× the byte ideal`);
    out.push(`${at} the checkpoint ${page ? parts.join(' and ') : `is ${parts[0]}`}.`);
  }
  if (page) out.push(`Page level copies ${fmtRatio(page.overIdeal)}× the byte ideal (${fmtBytes(page.checkpointBytes)} against ${fmtBytes(r.idealBytes)}).`);
  const adaptive = r.rows.find((x) => x.granularity === 'adaptive');
  if (adaptive) {
    const base = finest.find((x) => x.mode === adaptive.mode);
    const stops = (x: CompareRow) => x.faults + exitsTotal(x.exits);
    let s = `${adaptive.label} copies ${fmtRatio(adaptive.overIdeal)}× the byte ideal`;
    if (base) s += ` with ${fmtInt(stops(adaptive))} faults and exits, against ${fmtInt(stops(base))} at ${granularityText(finestG)}`;
    out.push(`${s.charAt(0).toUpperCase()}${s.slice(1)}.`);
  }
  return out;
}

interface Column {
  head: string;
  align: 'l' | 'r';
  cell: (row: CompareRow) => string;
  /** joins the previous column with one space instead of two (the exit reason after its count) */
  tight?: boolean;
}

/** A counter the backend may not have: a dash where it was not counted. */
const fmtCounted = (v: number | null) => (v === null ? '–' : fmtInt(v));
const dashUnlessMmu = (f: (row: CompareRow) => string) => (row: CompareRow) => (hasMmu(row) ? f(row) : '–');

export const COLUMNS: Column[] = [
  { head: 'configuration', align: 'l', cell: (x) => x.label },
  { head: 'checkpoint', align: 'r', cell: (x) => fmtBytes(x.checkpointBytes) },
  { head: 'x page', align: 'r', cell: (x) => fmtRatio(x.overPage) },
  { head: 'x ideal', align: 'r', cell: (x) => fmtRatio(x.overIdeal) },
  { head: 'faults', align: 'r', cell: dashUnlessMmu((x) => fmtInt(x.faults)) },
  { head: 'exits', align: 'r', cell: dashUnlessMmu((x) => fmtInt(exitsTotal(x.exits))) },
  { head: '', align: 'l', tight: true, cell: (x) => { const t = topExitReason(x.exits); return t ? `(${t})` : ''; } },
  { head: 'TLB misses', align: 'r', cell: dashUnlessMmu((x) => fmtCounted(x.tlbMisses)) },
  { head: 'walk refs', align: 'r', cell: dashUnlessMmu((x) => fmtCounted(x.walkRefs)) },
  { head: 'PT+EPT', align: 'r', cell: dashUnlessMmu((x) => (x.host ? '–' : fmtBytes(x.tableBytes))) },
  { head: 'VA', align: 'r', cell: dashUnlessMmu((x) => fmtBytes(x.vaBytes)) },
];

function palette(color: boolean) {
  const w = (a: number, b: number) => (s: string) => (color ? `\x1b[${a}m${s}\x1b[${b}m` : s);
  return { bold: w(1, 22), dim: w(2, 22), cyan: w(36, 39), green: w(32, 39) };
}

/** The header block, the table and the notes, with no trailing newline. */
export function formatCompareTable(r: CompareResult, opts: { color?: boolean } = {}): string {
  const p = palette(!!opts.color);
  const out: string[] = [];
  out.push(`${p.bold('granule compare')}  ${r.trace.path}`);
  const src = r.trace.source ? ` (${r.trace.source})` : '';
  out.push(`  ${fmtInt(r.trace.events)} events${src}${r.trace.command?.length ? `: ${commandText(r.trace.command)}` : ''}`);
  out.push(`  ${fmtInt(r.epochs)} epoch${r.epochs === 1 ? '' : 's'} of ${fmtInt(r.epochWrites)} writes; byte ideal ${fmtBytes(r.idealBytes)}`);
  if (r.machine) out.push(`  machine: ${r.machine.cpu}, node ${r.machine.node}`);
  if (r.backend && r.backend.name !== 'sim') out.push(`  backend: ${r.backend.reason.split('\n')[0]} (TLB misses and walk references are the CPU's, not counted; PT+EPT is the guest's tables only)`);
  out.push('');

  const cells = r.rows.map((row) => COLUMNS.map((c) => c.cell(row)));
  const widths = COLUMNS.map((c, i) => Math.max(c.head.length, ...cells.map((line) => line[i].length)));
  const pad = (s: string, i: number) => (COLUMNS[i].align === 'r' ? s.padStart(widths[i]) : s.padEnd(widths[i]));
  const join = (parts: string[]) => parts.map((s, i) => (i === 0 ? s : (COLUMNS[i].tight ? ' ' : '  ') + s)).join('').trimEnd();
  out.push(p.bold(join(COLUMNS.map((c, i) => pad(c.head, i)))));
  out.push(p.dim(join(widths.map((w, i) => (COLUMNS[i].head ? '-'.repeat(w) : ' '.repeat(w))))));
  // The smallest checkpoint any monitor achieved (the ideal row aside) is what the table is about.
  const monitored = r.rows.filter(hasMmu).map((x) => x.checkpointBytes);
  const best = monitored.length ? Math.min(...monitored) : NaN;
  // A blank line after each run of rows of one mode keeps thirty-odd lines scannable (the order
  // stays as given); single-row modes (the baselines) stay together.
  const runLength = (k: number) => { let n = 1; while (k - n >= 0 && r.rows[k - n].mode === r.rows[k].mode) n++; return n; };
  r.rows.forEach((row, k) => {
    if (k > 0 && row.mode !== r.rows[k - 1].mode && runLength(k - 1) > 1) out.push('');
    const parts = cells[k].map((s, i) => pad(s, i));
    if (row.mode === 'page' || row.mode === 'ideal') parts[0] = p.cyan(parts[0]);
    if (row.checkpointBytes === best && hasMmu(row)) parts[1] = p.green(parts[1]);
    out.push(join(parts.map((s) => (s.trim() === '–' ? p.dim(s) : s))));
  });

  const hosts = r.rows.filter((x) => x.host);
  if (hosts.length) out.push('', ...formatHostCosts(r, hosts).map((l, i) => (i === 0 ? p.bold(l) : l)));
  const summary = summarizeCompare(r);
  if (summary.length) {
    out.push('');
    for (const s of summary) out.push(s);
  }
  if (r.notes.length) {
    out.push('', p.bold('Notes'));
    for (const n of r.notes) out.push(`  - ${n}`);
  }
  return out.join('\n');
}

/** compare --live: what each host baseline cost per epoch after the base, as a caption, a header and rows of cells. */
export function hostCosts(r: CompareResult, hosts: CompareRow[]): { caption: string; head: string[]; rows: string[][] } {
  const epochs = Math.max(1, r.epochs - 1);
  const ms = (v: number) => (v / epochs).toFixed(3);
  return {
    caption: `Live costs per epoch, in ms (${fmtInt(epochs)} epochs after the base; µs/fault = run time per fault, accesses included)`,
    head: ['host baseline', 'faults', 'µs/fault', 'arm', 'run', 'harvest', 'copy', 'epoch'],
    rows: hosts.map((x) => {
      const h = x.host!;
      const perFault = h.faults ? ((h.runMs * 1000) / h.faults).toFixed(1) : '–';
      return [x.label, fmtInt(h.faults), perFault, ms(h.armMs), ms(h.runMs), ms(h.harvestMs), ms(h.copyMs), ms(h.armMs + h.runMs + h.harvestMs + h.copyMs)];
    }),
  };
}

function formatHostCosts(r: CompareResult, hosts: CompareRow[]): string[] {
  const t = hostCosts(r, hosts);
  const widths = t.head.map((h, i) => Math.max(h.length, ...t.rows.map((l) => l[i]!.length)));
  const row = (cells: string[]) => cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ').trimEnd();
  return [t.caption, row(t.head), ...t.rows.map(row)];
}
