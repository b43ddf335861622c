// The monitoring run: a trace replayed under a heap layout and a monitoring mechanism, epoch by
// epoch: arm, run the epoch's accesses through the MMU of either backend (with data: recorded values, or a
// deterministic value derived from the event), collect the dirty units, hand their bytes to a
// checkpoint, re-arm, and let the adaptive policy regroup frames.
import { ACC_READ, ACC_WRITE, ACC_FETCH, ACC_USER, FAULT_PF, PFEC_P } from '../consts.ts';
import type { BackendChoice } from '../backend.ts';
import type { BackendName } from '../mmu.ts';
import { EV_READ, EV_WRITE, EV_MODIFY, EV_FETCH, EV_ALLOC, EV_FREE, EV_REALLOC, EV_EPOCH, type EventBlock, type TraceMeta } from '../trace/events.ts';
import { TraceReader } from '../trace/reader.ts';
import { SpreadAllocator } from '../alloc/spread.ts';
import { PackedAllocator } from '../alloc/packed.ts';
import { Retargeter } from '../alloc/retarget.ts';
import type { HeapAllocator, MapRequest } from '../alloc/classes.ts';
import { EpochBitmap } from '../replay/units.ts';
import { MonitoredSpace, SPP_UNIT, type MonitorMode, type DirtyUnit } from '../layout/space.ts';
import { AdaptivePolicy } from './adaptive.ts';

export type Layout = 'spread' | 'packed' | 'trace';

/** Where the replayed heap lives: far from anything a user-space trace uses on Linux or in wasm. */
export const HEAP_BASE = 0x6000_0000_0000;
export const LARGE_BASE = 0x6800_0000_0000;
const REGION_END = 0x7000_0000_0000;
const USER_LIMIT = 2 ** 47;
const PAGE = 4096;
const PIECE = 64;

export interface MonitorOptions {
  mode: MonitorMode;
  layout: Layout;
  /** unit size in bytes for every frame, or 'adaptive' */
  granularity: number | 'adaptive';
  epochWrites: number;
  frames?: number;
  /** the MMU to run on (default sim) */
  backend?: BackendChoice;
  /** stop after this epoch (restore --verify re-runs up to the epoch it restores) */
  stopAfter?: number;
  /** called with every access as it is queued (after re-targeting; writes with their bytes) */
  onAccess?: (gva: number, size: number, acc: number, vals: Uint8Array | null, voff: number) => void;
  /** called at the end of each epoch with its dirty units (bytes readable through `space`) */
  onEpoch?: (e: EpochStats, units: DirtyUnit[], space: MonitoredSpace) => void;
  /** the simulator module's bytes, for the simulator backend (the explorer's worker); default: build/sim.release.wasm */
  wasm?: BufferSource;
}

export interface EpochStats {
  index: number;
  writes: number;
  idealBytes: number;
  dirtyUnits: number;
  checkpointBytes: number;
  /** the part of checkpointBytes in spread-layout slabs (the rest: large objects and the trace's own pages, page-granular) */
  slabBytes: number;
  faults: number;
  exits: Record<string, number>;
  /** null on the kvm backend, where the TLB and the walks are the CPU's */
  tlbMisses: number | null;
  walkRefs: number | null;
  /** adaptive: PTEs rewritten by granularity changes at the end of the epoch */
  regrouped: number;
  /** paging structures (guest tables, EPT, SPP table) and virtual address space at the epoch's end */
  tableBytes: number;
  vaBytes: number;
}

export interface MonitorResult {
  options: MonitorOptions;
  meta: TraceMeta;
  epochs: EpochStats[];
  tableBytes: number;
  vaBytes: number;
  framesUsed: number;
  retarget: { inObject: number; outside: number; straddling: number; unknownFrees: number } | null;
  seconds: number;
  /** which MMU ran, and why (createMmu's reason) */
  backend: { name: BackendName; reason: string };
  /** the space at the end of the run (frame bytes for restore --verify); close() it when done */
  space: MonitoredSpace;
}

export class MonitorError extends Error {}

const hex = (n: number) => '0x' + n.toString(16);

/** Bytes stored by a write that carries no value: derived from the event, so runs are repeatable. */
function fillValue(buf: Uint8Array, eventIndex: number, size: number): void {
  let x = (eventIndex * 0x9e3779b1) >>> 0;
  for (let k = 0; k < size; k++) {
    if ((k & 3) === 0) x = Math.imul(x ^ (x >>> 15), 0x2c1b3c6d) >>> 0;
    buf[k] = (x >>> ((k & 3) * 8)) & 0xff;
  }
}

/** A trace in memory (the explorer, tests); `name` stands for its path in messages. */
export interface TraceBytes { name: string; bytes: Uint8Array }
/** A trace file's path, or a trace in memory. */
export type TraceInput = string | TraceBytes;

function openTrace(t: TraceInput): TraceReader {
  return typeof t === 'string' ? TraceReader.open(t) : TraceReader.fromBytes(t.name, t.bytes);
}

/** The rules a run's options must follow; the CLI checks them before it touches a checkpoint directory. */
export function checkMonitorOptions(o: Pick<MonitorOptions, 'mode' | 'layout' | 'granularity' | 'epochWrites'>): void {
  const g = o.granularity;
  if (g !== 'adaptive' && (!Number.isInteger(g) || g < 64 || g > PAGE || (g & (g - 1)) !== 0)) {
    throw new MonitorError(`granularity ${String(g)} is not a power of two from 64 to 4096 bytes (or adaptive)`);
  }
  if (!Number.isSafeInteger(o.epochWrites) || o.epochWrites < 1) throw new MonitorError(`epoch length ${o.epochWrites} is not a positive number of writes`);
  if (o.mode === 'spp' && g !== SPP_UNIT) throw new MonitorError('SPP monitors 128-byte sub-pages: give --granularity 128 with --mode spp');
  if (o.layout === 'trace' && g !== PAGE && o.mode !== 'spp') {
    throw new MonitorError('the trace\'s own layout is monitored at page level only (give --granularity 4096), or use the spread layout');
  }
}

export async function runMonitor(trace: TraceInput, o: MonitorOptions): Promise<MonitorResult> {
  const tracePath = typeof trace === 'string' ? trace : trace.name;
  const t0 = performance.now();
  checkMonitorOptions(o);
  const reader = openTrace(trace);
  const space = await MonitoredSpace.create({ mode: o.mode, frames: o.frames, backend: o.backend, trackSlots: o.granularity === 'adaptive', wasm: o.wasm });
  try {
    return await monitorIn(space, reader, tracePath, o, t0);
  } catch (e) {
    await space.close();
    throw e;
  } finally {
    reader.close();
  }
}

async function monitorIn(space: MonitoredSpace, reader: TraceReader, tracePath: string, o: MonitorOptions, t0: number): Promise<MonitorResult> {
  const meta = reader.meta;
  const unit = o.granularity === 'adaptive' ? AdaptivePolicy.START : o.granularity;
  const onMap = (r: MapRequest) => space.onMap(r, unit);
  let alloc: HeapAllocator | null = null;
  if (o.layout === 'spread') alloc = new SpreadAllocator({ heapBase: HEAP_BASE, largeBase: LARGE_BASE, onMap });
  else if (o.layout === 'packed') alloc = new PackedAllocator({ heapBase: HEAP_BASE, largeBase: LARGE_BASE, onMap });
  const retarget = alloc ? new Retargeter(alloc) : null;
  const policy = o.granularity === 'adaptive' ? new AdaptivePolicy(space) : null;

  const bitmap = new EpochBitmap();
  const epochs: EpochStats[] = [];
  let writes = 0;
  let eventIndex = 0;
  let sawAlloc = false;
  const value = new Uint8Array(1 << 16);
  const batch = space.mmu.batch;
  const stopAfter = o.stopAfter ?? Infinity;
  let stopped = false;

  const onFault = (f: { kind: number; code: number; gva: bigint }) => {
    const page = Number(f.gva) - (Number(f.gva) % PAGE);
    if (f.kind === FAULT_PF && (f.code & PFEC_P) === 0 && !space.isMapped(page / PAGE)) {
      if (page >= HEAP_BASE && page < REGION_END) {
        throw new MonitorError(`the trace touches ${hex(Number(f.gva))}, inside the region granule's replayed heap uses (${hex(HEAP_BASE)}..${hex(REGION_END)}), outside any live object`);
      }
      space.mapOwnPage(page);
      return;
    }
    throw new MonitorError(`unexpected fault at ${hex(Number(f.gva))} (kind ${f.kind}, code ${hex(f.code)}); this is a bug in granule, please report it with the trace`);
  };
  const flush = () => space.runBatch(onFault);
  const onAccess = o.onAccess;
  /** Whether `records` records holding `bytes` value bytes fit the batch. Callers flush when they
   *  do not: an await only then, not one per access. */
  const fits = (records: number, bytes: number) => batch.hasRoom(records, bytes);
  const records = (size: number) => Math.ceil(size / PIECE);

  /** Queues an access that fits(). */
  const pushAccess = (addr: number, size: number, acc: number, vals: Uint8Array | null, voff: number) => {
    if (addr + size > USER_LIMIT) throw new MonitorError(`access at ${hex(addr)} (${size} bytes) is above the 47-bit user half; granule replays user-space traces`);
    onAccess?.(addr, size, acc, vals, voff);
    for (let off = 0; off < size; off += PIECE) {
      const n = Math.min(PIECE, size - off);
      const ok = vals ? batch.pushAddrValue(addr + off, acc, n, vals, voff + off) : batch.pushAddr(addr + off, acc, n);
      if (!ok) throw new MonitorError(`the batch has no room for the access at ${hex(addr + off)}; this is a bug in granule, please report it with the trace`);
    }
  };

  /** Copies a reallocated object's bytes to its new place, as writes the monitor sees. */
  /** writes that are not trace events (realloc copies) since the last epoch ended */
  let copies = 0;
  const copyObject = async (from: number, to: number, size: number) => {
    copies++;
    await flush();
    const bytes = space.readGva(from, size);
    for (let off = 0; off < size; off += PIECE) {
      const n = Math.min(PIECE, size - off);
      if (!fits(1, n)) await flush();
      pushAccess(to + off, n, ACC_WRITE | ACC_USER, bytes, off);
    }
  };

  const endEpoch = async () => {
    await flush();
    const { units, counters } = space.harvest();
    const e: EpochStats = {
      index: epochs.length, writes, idealBytes: bitmap.idealBytes(), dirtyUnits: units.length,
      checkpointBytes: units.reduce((s, u) => s + u.len, 0), slabBytes: units.reduce((s, u) => s + (space.isSlab(u.frame) ? u.len : 0), 0),
      faults: counters.faults, exits: counters.exits,
      tlbMisses: counters.tlbMisses, walkRefs: counters.walkRefs, regrouped: 0,
      tableBytes: space.tableBytes, vaBytes: space.vaBytes,
    };
    o.onEpoch?.(e, units, space);
    if (policy) e.regrouped = policy.endEpoch();
    epochs.push(e);
    bitmap.clear();
    writes = 0;
    copies = 0;
    if (epochs.length > stopAfter) stopped = true;
  };

  const block = async (b: EventBlock) => {
    for (let i = 0; i < b.count && !stopped; i++, eventIndex++) {
      const k = b.kind[i]!;
      if (k <= EV_FETCH) {
        const a = b.addr[i]!;
        const s = b.size[i]!;
        const isWrite = k === EV_WRITE || k === EV_MODIFY;
        const acc = (k === EV_READ ? ACC_READ : k === EV_FETCH ? ACC_FETCH : ACC_WRITE) | ACC_USER;
        let vals: Uint8Array | null = null;
        let voff = 0;
        if (isWrite) {
          if (b.valueOff[i]! >= 0) { vals = b.values; voff = b.valueOff[i]!; } else { fillValue(value, eventIndex, Math.min(s, value.length)); vals = s <= value.length ? value : null; }
          bitmap.write(a, s);
        }
        // An access may straddle several objects: count its records once it is placed.
        const to = retarget ? retarget.map(a, s) : a;
        let recs = records(s);
        if (typeof to !== 'number') { recs = 0; for (const p of to) recs += records(p.size); }
        if (!fits(recs, vals ? s : 0)) await flush();
        if (typeof to === 'number') pushAccess(to, s, acc, vals, voff);
        else {
          let off = 0;
          for (const p of to) { pushAccess(p.addr, p.size, acc, vals, voff + off); off += p.size; }
        }
        if (isWrite && ++writes === o.epochWrites) await endEpoch();
      } else if (k === EV_ALLOC || k === EV_FREE || k === EV_REALLOC) {
        sawAlloc = true;
        if (!retarget) continue;
        if (k === EV_ALLOC) retarget.onAlloc(b.addr[i]!, b.size[i]!, b.arg[i]! || 16);
        else if (k === EV_FREE) retarget.onFree(b.addr[i]!);
        else {
          const { from, to } = retarget.onRealloc(b.addr[i]!, b.arg[i]!, b.size[i]!);
          if (from && to && from.addr !== to.addr) await copyObject(from.addr, to.addr, Math.min(from.size, to.size));
        }
      } else if (k === EV_EPOCH) {
        // Epochs here are counted in writes; marks are kept for replay --epoch-marks.
      }
    }
  };

  for (const b of reader.blocks()) {
    await block(b);
    if (stopped) break;
  }
  // The last epoch may be partial, or hold only a realloc's copy; its accesses still run.
  if (!stopped && (writes > 0 || copies > 0 || epochs.length === 0)) await endEpoch();
  else if (!stopped) await flush();
  if (alloc && !sawAlloc) {
    throw new MonitorError(`${tracePath} has no allocation events, so its objects cannot be placed in the ${o.layout} layout: record it with granule record (which reports allocations), or monitor its own layout with --layout trace`);
  }
  return {
    options: o, meta, epochs, tableBytes: space.tableBytes, vaBytes: space.vaBytes, framesUsed: space.framesUsed,
    retarget: retarget ? { ...retarget.stats } : null, seconds: (performance.now() - t0) / 1000,
    backend: { name: space.mmu.backend, reason: space.mmu.reason }, space,
  };
}
