// The granularity view's logic, free of the DOM and of the Worker API so that the page, the sweep
// worker and the Node tests (test/explorer-sweep.test.ts) share it: which configurations a sweep
// runs and in what order, the keys rows are cached under, the sweep itself (runMonitor per job,
// rowOf against the page-level baseline: the rows `granule compare --json` prints), the dirty-unit
// map compacted per epoch, and the map's geometry and legend.
import { planJobs, rowOf, idealRow, baseFigures, MODE_LABEL, type Job } from '../src/monitor/sweep.ts';
import { runMonitor, type MonitorResult } from '../src/monitor/engine.ts';
import { OutOfFramesError, type MonitorMode, type DirtyUnit } from '../src/layout/space.ts';
import type { CompareRow } from '../src/report/types.ts';
import { traceInfoBytes } from '../src/trace/reader.ts';
import { EV_ALLOC, EV_WRITE, EV_MODIFY } from '../src/trace/events.ts';
import { DEFAULT_EPOCH_WRITES } from '../src/replay/replay.ts';
import { fmtBytes } from '../src/report/table.ts';

export { DEFAULT_EPOCH_WRITES };
export type { Job };

const PAGE = 4096;
/** Parts a frame is drawn in at most: 64 slots of 64 bytes. */
export const MAX_PARTS = 64;

// ---------------------------------------------------------------------------------------------
// Configurations

/** The unit sizes the slider offers, coarse to fine (slider position 0 = 4096 B). */
export const GRANULARITIES: readonly number[] = [4096, 2048, 1024, 512, 256, 128, 64];
/** The mechanisms that run on the spread layout at every unit size. */
export const SPREAD_MODES: readonly MonitorMode[] = ['gpt-wp', 'ept-wp', 'ept-dirty', 'pml'];

/** The mode control's values: a CompareRow's `mode` ('page' and 'spp' are the packed-layout rows). */
export type ViewMode = 'page' | 'spp' | 'gpt-wp' | 'ept-wp' | 'ept-dirty' | 'pml';

export const VIEW_MODES: readonly { value: ViewMode; label: string; help: string }[] = [
  { value: 'page', label: 'Page level (packed, 4096 B)', help: 'The traditional baseline: objects packed in pages, guest page-table write protection at 4 KiB.' },
  { value: 'gpt-wp', label: 'Guest page-table WP (spread)', help: 'The in-guest #PF handler records a unit and lifts the protection of its group: faults, no VM exits.' },
  { value: 'ept-wp', label: 'EPT write protection (spread)', help: 'Each first write to a unit is an EPT violation: one VM exit per fault.' },
  { value: 'ept-dirty', label: 'EPT dirty bits (spread)', help: 'No faults at all: the CPU sets EPT D flags, harvested and cleared at each epoch\'s end.' },
  { value: 'pml', label: 'PML (spread)', help: 'The CPU logs GPAs as it sets EPT D flags; a full 512-entry log is a PML-full exit.' },
  { value: 'spp', label: 'SPP 128 B (packed)', help: 'Sub-page write permissions on the packed layout: an EPT violation per 128-byte sub-page.' },
];

/** What the controls select. `granularity` is ignored by the page and SPP rows (fixed at 4096 and 128). */
export interface Selection { mode: ViewMode; granularity: number | 'adaptive' }

/** Whether the granularity control applies to a mode. */
export const hasGranularity = (mode: ViewMode) => mode !== 'page' && mode !== 'spp';

/** Every configuration a sweep runs, in `granule compare`'s order: page level, SPP, then mode x unit. */
export function sweepJobs(): Job[] {
  return planJobs(true, { modes: [...SPREAD_MODES], granularities: [...GRANULARITIES, 'adaptive'], spp: true });
}

/** A configuration's key: the row's mode, layout and unit (what identifies a compare row). */
export function jobKey(j: { rowMode?: string; mode?: string; layout: string; granularity: number | 'adaptive' }): string {
  return `${j.rowMode ?? j.mode}/${j.layout}/${j.granularity}`;
}

/** The page-level baseline's job key: every row is measured against it. */
export const PAGE_KEY = 'page/packed/4096';

/** The job the controls select. */
export function jobForSelection(sel: Selection): Job {
  const all = sweepJobs();
  const want = sel.mode === 'page' ? PAGE_KEY : sel.mode === 'spp' ? 'spp/packed/128' : jobKey({ mode: sel.mode, layout: 'spread', granularity: sel.granularity });
  const j = all.find((x) => jobKey(x) === want);
  if (!j) throw new RangeError(`no configuration ${want}: the unit must be one of ${GRANULARITIES.join(', ')} or adaptive`);
  return j;
}

export const selectionKey = (sel: Selection) => jobKey(jobForSelection(sel));

/** Slider position of a unit size (adaptive: one past the finest). */
const gpos = (g: number | 'adaptive') => (g === 'adaptive' ? GRANULARITIES.length : GRANULARITIES.indexOf(g));

/**
 * The order a sweep runs its jobs: page level first (every row is measured against it), then the
 * selection, then the selection's mechanism at the nearest unit sizes, then the other mechanisms
 * at the selected unit size and outwards; ties keep `granule compare`'s order.
 */
export function orderJobs(jobs: readonly Job[], sel: Selection): Job[] {
  const selKey = selectionKey(sel);
  const plan = sweepJobs().map(jobKey);
  const selMode = sel.mode;
  const selPos = hasGranularity(selMode) ? gpos(sel.granularity) : gpos(4096);
  const rank = (j: Job): number[] => {
    const k = jobKey(j);
    if (k === PAGE_KEY) return [0, 0, 0];
    if (k === selKey) return [1, 0, 0];
    const same = j.rowMode === selMode ? 0 : 1;
    const dist = j.layout === 'spread' ? Math.abs(gpos(j.granularity) - selPos) : 2;
    return [2 + same, dist, plan.indexOf(k)];
  };
  return [...jobs].map((j) => ({ j, r: rank(j) })).sort((a, b) => a.r[0]! - b.r[0]! || a.r[1]! - b.r[1]! || a.r[2]! - b.r[2]!).map((x) => x.j);
}

/** The jobs waiting in a sweep; `prefer` reorders what is left when the selection changes. */
export class JobQueue {
  private jobs: Job[];
  constructor(jobs: readonly Job[]) { this.jobs = [...jobs]; }
  get size(): number { return this.jobs.length; }
  take(): Job | undefined { return this.jobs.shift(); }
  prefer(sel: Selection): void { this.jobs = orderJobs(this.jobs, sel); }
  keys(): string[] { return this.jobs.map(jobKey); }
}

// ---------------------------------------------------------------------------------------------
// The row cache

/** Rows of one trace at one epoch length. */
export const sessionKey = (traceId: string, epochWrites: number) => `${traceId}|e${epochWrites}`;

export interface RowEntry { row: CompareRow; map: CompactMap }
export interface FailedEntry { error: string }

/**
 * Rows by session (trace and epoch length) and configuration. The most recent `maxSessions`
 * sessions are kept, so going back to a trace seen a moment ago is instant.
 */
export class RowCache {
  private readonly sessions = new Map<string, Map<string, RowEntry | FailedEntry>>();
  constructor(readonly maxSessions = 4) {}
  private session(s: string, create: boolean) {
    let m = this.sessions.get(s);
    if (!m && create) {
      m = new Map();
      this.sessions.set(s, m);
      while (this.sessions.size > this.maxSessions) this.sessions.delete(this.sessions.keys().next().value!);
    } else if (m) {
      // most recently used last
      this.sessions.delete(s);
      this.sessions.set(s, m);
    }
    return m;
  }
  put(s: string, key: string, e: RowEntry | FailedEntry): void { this.session(s, true)!.set(key, e); }
  get(s: string, key: string): RowEntry | FailedEntry | undefined { return this.session(s, false)?.get(key); }
  has(s: string, key: string): boolean { return this.sessions.get(s)?.has(key) ?? false; }
  /** Keys of a session's finished configurations (rows and failures). */
  keys(s: string): string[] { return [...(this.sessions.get(s)?.keys() ?? [])]; }
  /** The jobs of `jobs` a session has no row for yet. */
  missing(s: string, jobs: readonly Job[]): Job[] { return jobs.filter((j) => !this.has(s, jobKey(j))); }
  drop(s: string): void { this.sessions.delete(s); }
}

// ---------------------------------------------------------------------------------------------
// The map: dirty parts of frames, per epoch

/**
 * Dirty units of a run, compacted for drawing. Frame f is drawn in parts[f] equal parts: a slab
 * frame in its slots, a plain page whole (in SPP runs, in its 32 sub-pages). Each epoch is a sorted
 * list of codes f * 64 + part, one per part some dirty unit covered. Plain data, so it crosses
 * postMessage (the arrays' buffers can be transferred).
 */
export interface CompactMap {
  /** parts per frame, frames 0 .. framesUsed-1 */
  parts: Uint8Array;
  /** per frame: 1 for a slab of the spread layout, 0 for a plain page */
  slab: Uint8Array;
  /** per epoch, the dirty codes */
  epochs: Uint32Array[];
}

/** What the map needs to know of a MonitoredSpace. */
export interface SpaceShape {
  isSlab(f: number): boolean;
  unitOf(f: number): number;
  groupOf(f: number): number;
  readonly framesUsed: number;
}

/** Parts a frame is drawn in: its slots (slab), its 128-byte sub-pages (SPP) or one. */
export function framePartsOf(space: SpaceShape, f: number, spp: boolean): number {
  if (space.isSlab(f)) return PAGE / (space.unitOf(f) / space.groupOf(f));
  return spp ? PAGE / 128 : 1;
}

/** Collects a run's dirty units epoch by epoch (runMonitor's onEpoch) into a CompactMap. */
export class MapRecorder {
  private readonly epochs: Uint32Array[] = [];
  private readonly parts: number[] = [];
  private readonly slab: number[] = [];
  constructor(private readonly spp: boolean) {}

  /** One epoch's dirty units. */
  record(units: readonly DirtyUnit[], space: SpaceShape): void {
    const codes: number[] = [];
    for (const u of units) {
      const n = this.frame(u.frame, space);
      const size = PAGE / n;
      const first = Math.floor(u.offset / size);
      const last = Math.floor((u.offset + u.len - 1) / size);
      for (let p = first; p <= last && p < n; p++) codes.push(u.frame * MAX_PARTS + p);
    }
    codes.sort((a, b) => a - b);
    const out: number[] = [];
    for (const c of codes) if (out[out.length - 1] !== c) out.push(c);
    this.epochs.push(Uint32Array.from(out));
  }

  private frame(f: number, space: SpaceShape): number {
    let n = this.parts[f];
    if (n === undefined) {
      n = framePartsOf(space, f, this.spp);
      this.parts[f] = n;
      this.slab[f] = space.isSlab(f) ? 1 : 0;
    }
    return n;
  }

  /** The map, with every frame the run used (frames never written are drawn clean). */
  finish(space: SpaceShape): CompactMap {
    const n = space.framesUsed;
    for (let f = 0; f < n; f++) this.frame(f, space);
    return { parts: Uint8Array.from(this.parts.slice(0, n)), slab: Uint8Array.from(this.slab.slice(0, n)), epochs: this.epochs };
  }
}

/** Offsets of each frame's first part in a dense part index (length frames + 1). */
export function partBase(map: CompactMap): Uint32Array {
  const base = new Uint32Array(map.parts.length + 1);
  for (let f = 0; f < map.parts.length; f++) base[f + 1] = base[f]! + map.parts[f]!;
  return base;
}

const denseIndex = (base: Uint32Array, code: number) => base[Math.floor(code / MAX_PARTS)]! + (code % MAX_PARTS);

/** Per part: the epochs from `from` on that dirtied it (from = 1: the increments after the base image). */
export function dirtyCounts(map: CompactMap, base = partBase(map), from = 1): Uint16Array {
  const out = new Uint16Array(base[base.length - 1]!);
  for (let e = from; e < map.epochs.length; e++) for (const c of map.epochs[e]!) out[denseIndex(base, c)]++;
  return out;
}

/** Per part: 1 when epoch `e` dirtied it. */
export function epochMask(map: CompactMap, e: number, base = partBase(map)): Uint8Array {
  const out = new Uint8Array(base[base.length - 1]!);
  for (const c of map.epochs[e] ?? []) out[denseIndex(base, c)] = 1;
  return out;
}

/** Bytes the dirty parts of epoch `e` stand for: equal to the epoch's checkpointBytes. */
export function epochMapBytes(map: CompactMap, e: number): number {
  let s = 0;
  for (const c of map.epochs[e] ?? []) s += PAGE / map.parts[Math.floor(c / MAX_PARTS)]!;
  return s;
}

/** The ArrayBuffers of a map, to transfer with postMessage. */
export const mapBuffers = (m: CompactMap): ArrayBuffer[] => [m.parts.buffer, m.slab.buffer, ...m.epochs.map((e) => e.buffer)] as ArrayBuffer[];

/** How a frame of n parts is drawn: a grid of cols x rows parts (64 -> 8 x 8, 32 -> 8 x 4, 2 -> 2 x 1). */
export function partGrid(n: number): { cols: number; rows: number } {
  const cols = 2 ** Math.ceil(Math.log2(Math.max(1, n)) / 2);
  return { cols, rows: Math.max(1, Math.ceil(n / cols)) };
}

export interface MapGeometry {
  /** frames per row of the map */
  perRow: number;
  /** a frame's cell size and the gap after it, in CSS pixels */
  cell: number;
  gap: number;
  width: number;
  height: number;
}

/** Lays out `frames` square cells in `width` pixels: as large as fits `targetHeight`, 6 to 72 px. */
export function mapGeometry(frames: number, width: number, targetHeight = 420): MapGeometry {
  const w = Math.max(120, Math.floor(width));
  const n = Math.max(1, frames);
  let cell = Math.floor(Math.sqrt((w * targetHeight) / n)) - 2;
  cell = Math.max(6, Math.min(72, cell));
  const gap = cell >= 16 ? 2 : 1;
  const perRow = Math.max(1, Math.floor((w + gap) / (cell + gap)));
  const rows = Math.ceil(n / perRow);
  return { perRow, cell, gap, width: w, height: rows * (cell + gap) };
}

/** Where frame f's part p is drawn: x, y, width, height in CSS pixels. */
export function partRect(g: MapGeometry, parts: number, f: number, p: number): [number, number, number, number] {
  const fx = (f % g.perRow) * (g.cell + g.gap);
  const fy = Math.floor(f / g.perRow) * (g.cell + g.gap);
  const { cols, rows } = partGrid(parts);
  const x0 = Math.round(((p % cols) * g.cell) / cols), x1 = Math.round((((p % cols) + 1) * g.cell) / cols);
  const y0 = Math.round((Math.floor(p / cols) * g.cell) / rows), y1 = Math.round(((Math.floor(p / cols) + 1) * g.cell) / rows);
  return [fx + x0, fy + y0, x1 - x0, y1 - y0];
}

/** The frame and part under a point of the map, or null. */
export function hitTest(g: MapGeometry, map: CompactMap, x: number, y: number): { frame: number; part: number } | null {
  if (x < 0 || y < 0) return null;
  const col = Math.floor(x / (g.cell + g.gap)), row = Math.floor(y / (g.cell + g.gap));
  if (col >= g.perRow) return null;
  const fx = x - col * (g.cell + g.gap), fy = y - row * (g.cell + g.gap);
  if (fx >= g.cell || fy >= g.cell) return null;
  const frame = row * g.perRow + col;
  if (frame >= map.parts.length) return null;
  const n = map.parts[frame]!;
  const { cols, rows } = partGrid(n);
  const part = Math.min(n - 1, Math.floor((fy * rows) / g.cell) * cols + Math.floor((fx * cols) / g.cell));
  return { frame, part };
}

/**
 * Bins of the count legend, for `epochs` increments: 0 (never dirty), then doubling ranges up to
 * the total. Each bin has a label with its numbers, so the legend does not rely on colour alone.
 */
export function countBins(epochs: number): { lo: number; hi: number; label: string }[] {
  const bins = [{ lo: 0, hi: 0, label: 'never dirty' }];
  if (epochs <= 0) return bins;
  let lo = 1;
  while (lo <= epochs && bins.length < 6) {
    const hi = bins.length === 5 ? epochs : Math.min(epochs, lo * 2 - 1);
    bins.push({ lo, hi, label: lo === hi ? `${lo} epoch${lo === 1 ? '' : 's'}` : `${lo}–${hi} epochs` });
    lo = hi + 1;
  }
  return bins;
}

export const binOf = (bins: readonly { lo: number; hi: number }[], n: number) => {
  for (let i = 0; i < bins.length; i++) if (n <= bins[i]!.hi) return i;
  return bins.length - 1;
};

// ---------------------------------------------------------------------------------------------
// Checking a trace and running a sweep (the worker; also Node, for the tests)

/** A trace the sweep cannot use; the message says why and what to do. */
export class SweepError extends Error {}

/** The largest trace file the page reads (checked from File.size before reading). */
export const MAX_FILE_BYTES = 64 * 1024 * 1024;

/** Why a picked file cannot be read, or null: too large, or empty. */
export function fileProblem(name: string, size: number, limit = MAX_FILE_BYTES): string | null {
  if (size === 0) return `${name} is empty (0 bytes), not a granule trace: pick a .grt file written by granule record or granule import`;
  if (size > limit) {
    return `${name} is ${fmtBytes(size)}, over the explorer's limit of ${fmtBytes(limit)} for a trace read in the page: `
      + `run \`granule compare ${name}\` on the command line instead (same rows, no limit), or record a shorter run`;
  }
  return null;
}

/** An epoch length as typed: a whole number of writes, 1 to 10^9. */
export function parseEpochWrites(text: string): number {
  const t = text.trim().replace(/[_,\s]/g, '');
  if (!/^\d+$/.test(t)) throw new RangeError(`epoch length '${text.trim()}' is not a whole number of writes (e.g. ${DEFAULT_EPOCH_WRITES})`);
  const n = Number(t);
  if (n < 1 || n > 1e9) throw new RangeError(`epoch length ${n} is outside 1 to 1,000,000,000 writes`);
  return n;
}

export interface TraceFacts { events: number; writes: number }

/**
 * Reads the whole trace once (every checksum, every event: a cut or damaged file fails here with
 * the reader's message naming the offset) and refuses one without allocation events, as
 * `granule compare` does.
 */
export function checkTrace(name: string, bytes: Uint8Array): TraceFacts {
  const info = traceInfoBytes(name, bytes);
  if (!(info.counts[EV_ALLOC] ?? 0)) {
    throw new SweepError(`${name} has no allocation events, so its objects cannot be placed in the spread layout (nor packed for the page-level baseline): `
      + 'record it with granule record, which reports allocations (traces imported from a plain address log have none); '
      + `on the command line, granule compare ${name} --block compares it in its own layout`);
  }
  return { events: info.events, writes: (info.counts[EV_WRITE] ?? 0) + (info.counts[EV_MODIFY] ?? 0) };
}

/** Epochs a run will have (a progress estimate: reallocs' copies add writes the trace does not count). */
export const expectedEpochs = (writes: number, epochWrites: number) => Math.max(1, Math.ceil(writes / epochWrites));

export interface BaseFigures { idealBytes: number; pageBytes: number }

export interface SweepHooks {
  /** the trace checked: before any run */
  onFacts?(f: TraceFacts): void;
  /** the byte-exact ideal, once the page-level run is done */
  onIdeal?(row: CompareRow, base: BaseFigures): void;
  onRow(key: string, row: CompareRow, map: CompactMap, done: number, total: number): void;
  /** a job failed; the sweep goes on with the others (unless it was page level) */
  onJobError?(key: string, message: string): void;
  /** the job running and its epoch, as it goes */
  onProgress?(p: { key: string; label: string; done: number; total: number; epoch: number; epochs: number }): void;
  /** awaited between jobs: where a worker lets messages in (a prioritize) */
  between?(): Promise<void>;
}

export interface SweepInput {
  name: string;
  bytes: Uint8Array;
  epochWrites: number;
  /** the jobs, in the order to run them; the page-level job must be first unless `base` is given */
  queue: JobQueue;
  /** the page-level figures, when a previous sweep of this trace computed them */
  base?: BaseFigures;
  /** the simulator module's bytes (the worker); default: build/sim.release.wasm */
  wasm?: BufferSource;
  /** pool frames to start with (default 8192, 32 MiB); a run that needs more is retried with 4 times as many */
  frames?: number;
}

/** The CLI's pool is 65536 frames (256 MiB of simulated memory per run); most traces need far fewer. */
const FIRST_POOL = 8192;
const MAX_POOL = 1 << 18;

/**
 * Runs the queued jobs one by one as `granule compare` does and hands each row over as it is
 * done. Checkpoint bytes and ratios are measured against the page-level run, which goes first.
 */
export async function runSweep(input: SweepInput, hooks: SweepHooks): Promise<void> {
  const facts = checkTrace(input.name, input.bytes);
  hooks.onFacts?.(facts);
  const trace = { name: input.name, bytes: input.bytes };
  let base = input.base;
  const total = input.queue.size;
  const epochs = expectedEpochs(facts.writes, input.epochWrites);
  let done = 0;
  let lastProgress = 0;
  // A smaller pool than the CLI's keeps the browser's memory down; it changes no figure, only
  // whether the run fits, and a run that does not is run again with a larger one.
  let frames = input.frames ?? FIRST_POOL;
  for (let job = input.queue.take(); job; job = input.queue.take()) {
    const key = jobKey(job);
    const isPage = key === PAGE_KEY;
    if (!base && !isPage) throw new Error(`the sweep must run page level first (it ran ${key} with no baseline): this is a bug in the explorer`);
    const label = job.label;
    let r!: MonitorResult;
    let map!: CompactMap;
    hooks.onProgress?.({ key, label, done, total, epoch: 0, epochs });
    try {
      for (;;) {
        const rec = new MapRecorder(job.mode === 'spp');
        try {
          r = await runMonitor(trace, {
            mode: job.mode, layout: job.layout, granularity: job.granularity, epochWrites: input.epochWrites, frames, backend: 'sim', wasm: input.wasm,
            onEpoch: (e, units, space) => {
              rec.record(units, space);
              const now = Date.now();
              if (hooks.onProgress && now - lastProgress > 100) {
                lastProgress = now;
                hooks.onProgress({ key, label, done, total, epoch: e.index + 1, epochs });
              }
            },
          });
          map = rec.finish(r.space);
          break;
        } catch (e) {
          if (!(e instanceof OutOfFramesError) || frames >= MAX_POOL) throw e;
          frames = Math.min(MAX_POOL, frames * 4);
        }
      }
    } catch (e) {
      const message = `${label}: ${(e as Error).message}`;
      if (isPage) throw new SweepError(message);
      hooks.onJobError?.(key, message);
      done++;
      await hooks.between?.();
      continue;
    }
    await r.space.close();
    if (isPage && !base) {
      base = baseFigures(r);
      hooks.onIdeal?.(idealRow(r, base.idealBytes, base.pageBytes), base);
    }
    done++;
    hooks.onRow(key, rowOf(job, r, base!.idealBytes, base!.pageBytes), map, done, total);
    await hooks.between?.();
  }
}

// ---------------------------------------------------------------------------------------------
// Worker messages

export type ToWorker =
  | { type: 'start'; gen: number; wasm: ArrayBuffer; name: string; bytes: ArrayBuffer; epochWrites: number; jobs: Job[]; base?: BaseFigures }
  | { type: 'prefer'; gen: number; sel: Selection };

export type FromWorker =
  | { type: 'facts'; gen: number; facts: TraceFacts }
  | { type: 'ideal'; gen: number; row: CompareRow; base: BaseFigures }
  | { type: 'row'; gen: number; key: string; row: CompareRow; map: CompactMap; done: number; total: number }
  | { type: 'job-error'; gen: number; key: string; message: string }
  | { type: 'progress'; gen: number; key: string; label: string; done: number; total: number; epoch: number; epochs: number }
  | { type: 'error'; gen: number; message: string }
  | { type: 'done'; gen: number; seconds: number };

// ---------------------------------------------------------------------------------------------
// Text

/** A configuration in words: 'guest-PT WP, 256 B units (spread)'. */
export function describeSelection(sel: Selection): string {
  if (sel.mode === 'page') return 'page level: guest-PT WP at 4096 B on the packed layout';
  if (sel.mode === 'spp') return 'SPP at 128 B on the packed layout';
  return `${MODE_LABEL[sel.mode]}, ${sel.granularity === 'adaptive' ? 'adaptive units' : `${sel.granularity} B units`} (spread layout)`;
}

/** Status line while a sweep runs: 'computing… (3 of 34): EPT WP 256 B, epoch 12 of 43'. */
export function progressText(p: { done: number; total: number; label?: string; epoch?: number; epochs?: number }): string {
  const run = p.label ? `: ${p.label}${p.epoch ? `, epoch ${Math.min(p.epoch, p.epochs ?? p.epoch)} of ${p.epochs ?? '?'}` : ''}` : '';
  return `computing… (${Math.min(p.done + 1, p.total)} of ${p.total})${run}`;
}
