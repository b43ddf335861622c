// The portable core of `granule compare` (it also runs in the explorer's web worker): which
// configurations a comparison runs, and how one monitoring run becomes a row. Checkpoint bytes
// are the increments after the base image (the first epoch is the base in every run), so all
// rows count the same epochs.
import type { Layout, EpochStats, MonitorResult } from './engine.ts';
import type { MonitorMode } from '../layout/space.ts';
import type { CompareRow } from '../report/types.ts';
import { exitsTotal } from '../report/table.ts';

export const DEFAULT_COMPARE_GRANULARITIES: (number | 'adaptive')[] = [4096, 1024, 256, 64, 'adaptive'];
export const DEFAULT_COMPARE_MODES: MonitorMode[] = ['gpt-wp', 'ept-wp', 'ept-dirty', 'pml'];

export const MODE_LABEL: Record<string, string> = {
  'gpt-wp': 'guest-PT WP',
  'ept-wp': 'EPT WP',
  'ept-dirty': 'EPT dirty bits',
  pml: 'PML',
  spp: 'SPP',
};

/** One configuration: a monitoring run and the row it becomes. */
export interface Job { mode: MonitorMode; layout: Layout; granularity: number | 'adaptive'; label: string; rowMode: string }

export interface PlanOptions {
  modes?: MonitorMode[];
  granularities?: (number | 'adaptive')[];
  /** SPP at 128 B on the packed layout (default true) */
  spp?: boolean;
  /** also the trace's own layout (page level, SPP) */
  block?: boolean;
}

/** The runs of a comparison, the page-level baseline first (when the trace has allocation events). */
export function planJobs(objectAware: boolean, o: PlanOptions): Job[] {
  const modes = o.modes ?? DEFAULT_COMPARE_MODES;
  const gs = o.granularities ?? DEFAULT_COMPARE_GRANULARITIES;
  const jobs: Job[] = [];
  if (objectAware) {
    jobs.push({ mode: 'gpt-wp', layout: 'packed', granularity: 4096, label: 'page level (packed)', rowMode: 'page' });
    if (o.spp ?? true) jobs.push({ mode: 'spp', layout: 'packed', granularity: 128, label: 'SPP 128 B (packed)', rowMode: 'spp' });
  }
  if (o.block) {
    jobs.push({ mode: 'gpt-wp', layout: 'trace', granularity: 4096, label: 'page level (own layout)', rowMode: objectAware ? 'gpt-wp' : 'page' });
    if (o.spp ?? true) jobs.push({ mode: 'spp', layout: 'trace', granularity: 128, label: 'SPP 128 B (own layout)', rowMode: 'spp' });
  }
  for (const mode of objectAware ? modes.filter((m) => m !== 'spp') : []) {
    for (const g of gs) {
      jobs.push({ mode, layout: 'spread', granularity: g, rowMode: mode, label: `${MODE_LABEL[mode]} ${g === 'adaptive' ? 'adaptive' : `${g} B`}` });
    }
  }
  return jobs;
}

/** A row's checkpoint bytes against page level and the byte ideal (0 where there is no baseline). */
export const ratios = (bytes: number, idealBytes: number, pageBytes: number) =>
  ({ overPage: pageBytes ? bytes / pageBytes : 0, overIdeal: idealBytes ? bytes / idealBytes : 0 });

export const sumAfterBase = (epochs: EpochStats[], f: (e: EpochStats) => number) => epochs.slice(1).reduce((s, e) => s + f(e), 0);
/** sumAfterBase for counters a backend may not have (null: not counted there) */
export const sumCounted = (epochs: EpochStats[], f: (e: EpochStats) => number | null) =>
  epochs.some((e) => f(e) === null) ? null : sumAfterBase(epochs, (e) => f(e) ?? 0);

/** The baseline figures rows are measured against: the byte ideal and page level (the first run). */
export function baseFigures(base: MonitorResult): { idealBytes: number; pageBytes: number } {
  return { idealBytes: sumAfterBase(base.epochs, (e) => e.idealBytes), pageBytes: sumAfterBase(base.epochs, (e) => e.checkpointBytes) };
}

export function rowOf(job: Job, r: MonitorResult, idealBytes: number, pageBytes: number): CompareRow {
  const cb = sumAfterBase(r.epochs, (e) => e.checkpointBytes);
  const exits: Record<string, number> = {};
  for (const e of r.epochs.slice(1)) for (const [k, v] of Object.entries(e.exits)) exits[k] = (exits[k] ?? 0) + v;
  return {
    mode: job.rowMode, layout: job.layout, granularity: job.granularity, label: job.label,
    checkpointBytes: cb, ...ratios(cb, idealBytes, pageBytes),
    dirtyUnits: sumAfterBase(r.epochs, (e) => e.dirtyUnits), faults: sumAfterBase(r.epochs, (e) => e.faults), exits,
    tlbMisses: sumCounted(r.epochs, (e) => e.tlbMisses), walkRefs: sumCounted(r.epochs, (e) => e.walkRefs),
    tableBytes: r.tableBytes, vaBytes: r.vaBytes, seconds: r.seconds,
    epochs: r.epochs.map((e) => ({
      index: e.index, writes: e.writes, idealBytes: e.idealBytes, checkpointBytes: e.checkpointBytes, dirtyUnits: e.dirtyUnits,
      faults: e.faults, exits: exitsTotal(e.exits), tlbMisses: e.tlbMisses, walkRefs: e.walkRefs,
      tableBytes: e.tableBytes, vaBytes: e.vaBytes,
    })),
  };
}

/** The byte-exact ideal as a row: what a checkpoint of exactly the bytes written would copy. */
export function idealRow(base: MonitorResult, idealBytes: number, pageBytes: number): CompareRow {
  return {
    mode: 'ideal', layout: 'trace', granularity: 1, label: 'byte-exact ideal', checkpointBytes: idealBytes,
    ...ratios(idealBytes, idealBytes, pageBytes), dirtyUnits: 0, faults: 0, exits: {}, tlbMisses: 0, walkRefs: 0,
    tableBytes: 0, vaBytes: 0, seconds: 0,
    epochs: base.epochs.map((e) => ({ index: e.index, writes: e.writes, idealBytes: e.idealBytes, checkpointBytes: e.idealBytes, dirtyUnits: 0, faults: 0, exits: 0, tlbMisses: 0, walkRefs: 0 })),
  };
}
