// `granule compare`: one trace under every layout, monitoring mechanism and granularity asked
// for, side by side, with what only Node has: the own-layout block rows, the host baselines
// (--live), the machine and the backend. The configurations and rows are sweep.ts's.
import { cpuModel } from '../host.ts';
import { runMonitor, type MonitorResult, type TraceInput } from './engine.ts';
import { planJobs, rowOf, idealRow, baseFigures, ratios, DEFAULT_COMPARE_GRANULARITIES, type Job } from './sweep.ts';
import { mmuNeeds, type MonitorMode } from '../layout/space.ts';
import { kvmLacks, type BackendChoice } from '../backend.ts';
import type { CompareResult, CompareRow } from '../report/types.ts';
import { traceInfo, traceInfoBytes } from '../trace/reader.ts';
import { EV_ALLOC } from '../trace/events.ts';
import { replayFile } from '../replay/run.ts';
import { LiveRecorder, hostRows } from './live.ts';

export { DEFAULT_COMPARE_GRANULARITIES, DEFAULT_COMPARE_MODES, MODE_LABEL } from './sweep.ts';

export interface CompareOptions {
  modes?: MonitorMode[];
  granularities?: (number | 'adaptive')[];
  epochWrites: number;
  frames?: number;
  /** add SPP at 128 B on the packed layout (default true) */
  spp?: boolean;
  /**
   * Block mode: also (or, for a trace without allocation events, only) the trace's own layout:
   * page level and SPP there, and idealized block-granular units of every fixed granularity
   * (a unit is a g-aligned block of the address space, as granule replay counts them).
   */
  block?: boolean;
  onRun?: (label: string, k: number, of: number) => void;
  /** the MMU every monitored row runs on (default sim) */
  backend?: BackendChoice;
  /** add the host baselines (mprotect, userfaultfd WP, WP_ASYNC, soft-dirty) as rows, run live in this process */
  live?: boolean;
}

export class CompareError extends Error {}

export async function compareTrace(trace: TraceInput, o: CompareOptions): Promise<CompareResult> {
  const tracePath = typeof trace === 'string' ? trace : trace.name;
  const info = typeof trace === 'string' ? traceInfo(trace) : traceInfoBytes(trace.name, trace.bytes);
  const gs = o.granularities ?? DEFAULT_COMPARE_GRANULARITIES;
  const objectAware = (info.counts[EV_ALLOC] ?? 0) > 0;
  if (!objectAware && !o.block) {
    throw new CompareError(`${tracePath} has no allocation events, so its objects cannot be placed in the spread or packed layouts: record it with granule record (which reports allocations), or compare it in its own layout with --block`);
  }
  const jobs: Job[] = planJobs(objectAware, o);
  // Modes the backend of the first run (page level) cannot run are left out with a note, rather
  // than mixing backends in one table.
  const skipped: string[] = [];
  if (o.live && !objectAware) throw new CompareError(`--live replays the page-level row on the packed layout, which needs allocation events; ${tracePath} has none`);
  const runs: { job: Job; r: MonitorResult }[] = [];
  // --live: the page-level run (the first job) is recorded for the host baselines.
  const rec = o.live ? new LiveRecorder() : null;
  let pageFrames: Uint8Array[] = [];
  for (const [k, job] of jobs.entries()) {
    const lacks = runs[0]?.r.backend.name === 'kvm' ? kvmLacks(mmuNeeds(job.mode)) : null;
    if (lacks) {
      if (!skipped.includes(lacks)) skipped.push(lacks);
      continue;
    }
    o.onRun?.(job.label, k, jobs.length);
    const tap = rec && k === 0;
    const r = await runMonitor(trace, {
      mode: job.mode, layout: job.layout, granularity: job.granularity, epochWrites: o.epochWrites, frames: o.frames, backend: o.backend,
      onAccess: tap ? rec.onAccess : undefined, onEpoch: tap ? (_e, units, space) => rec.onEpoch(units, space) : undefined,
    });
    if (tap) pageFrames = Array.from({ length: r.space.framesUsed }, (_, f) => r.space.frameBytes(f));
    await r.space.close();
    runs.push({ job, r });
  }
  const base = runs[0]!.r;
  const { idealBytes, pageBytes } = baseFigures(base);
  const rows: CompareRow[] = runs.map(({ job, r }) => rowOf(job, r, idealBytes, pageBytes));
  const liveNotes: string[] = [];
  if (rec) {
    o.onRun?.('host baselines', jobs.length, jobs.length + 1);
    const live = hostRows(rec, pageFrames.length, (f) => pageFrames[f]!, idealBytes, pageBytes);
    live.rows.forEach((row, k) => {
      row.epochs.forEach((e, i) => { e.writes = base.epochs[i]!.writes; e.idealBytes = base.epochs[i]!.idealBytes; });
      rows.splice(1 + k, 0, row); // after the page-level row they replay
    });
    liveNotes.push(...live.notes);
  }
  if (o.block) {
    // Block-granular units in the trace's own layout, counted from the bytes written (no
    // mechanism could deliver them under page protection but SPP's 128 B; they bound what one could).
    const fixed = gs.filter((g): g is number => typeof g === 'number');
    if (typeof trace !== 'string') throw new CompareError(`${tracePath}: --block replays a trace file; give its path`);
    const rp = await replayFile(trace, { granularities: fixed, epochWrites: o.epochWrites });
    for (const g of fixed) {
      const cb = rp.epochs.slice(1).reduce((a, e) => a + e.volumeBytes[g]!, 0);
      rows.push({
        mode: 'block', layout: 'trace', granularity: g, label: `block ${g} B (own layout)`, checkpointBytes: cb,
        ...ratios(cb, idealBytes, pageBytes), dirtyUnits: rp.epochs.slice(1).reduce((a, e) => a + e.units[g]!, 0),
        faults: 0, exits: {}, tlbMisses: 0, walkRefs: 0, tableBytes: 0, vaBytes: 0, seconds: rp.seconds,
        epochs: rp.epochs.map((e) => ({ index: e.index, writes: e.writes, idealBytes: e.idealBytes, checkpointBytes: e.volumeBytes[g]!, dirtyUnits: e.units[g]!, faults: 0, exits: 0, tlbMisses: 0, walkRefs: 0 })),
      });
    }
  }
  rows.push(idealRow(base, idealBytes, pageBytes));
  const notes = [
    ...skipped.map((why) => `Left out on the kvm backend: ${why}.`),
    ...liveNotes,
    'Checkpoint bytes count the increments after the base image (the first epoch), the same epochs in every row.',
    'Pages outside the heap (stack, globals, libraries) keep the trace\'s own layout and are monitored at page level in every row.',
  ];
  const rt = runs.find((x) => x.job.layout === 'spread')?.r.retarget;
  if (rt) notes.push(`Re-targeting: ${rt.inObject.toLocaleString('en-US')} accesses inside live objects, ${rt.outside.toLocaleString('en-US')} outside (own layout), ${rt.straddling} straddling an object's end, ${rt.unknownFrees} frees of unknown addresses ignored.`);
  return {
    trace: { path: tracePath, events: info.events, source: info.meta.source, command: info.meta.command },
    epochWrites: o.epochWrites, epochs: base.epochs.length, idealBytes,
    machine: { cpu: cpuModel(), node: process.version },
    backend: { name: base.backend.name, reason: base.backend.reason },
    rows, notes, generated: new Date().toISOString(),
  };
}
