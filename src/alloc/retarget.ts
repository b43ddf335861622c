// Replaying an object-aware trace under another heap layout: the trace's allocation events go to a
// HeapAllocator, and every access is moved to where its object now lives (same offset inside the
// object). Accesses that hit no live object (stack, globals, libc internals) keep their address.
// A trace is data, so its mistakes (frees of unknown pointers, overlapping objects) are counted,
// never thrown.

import { MALLOC_ALIGN, PAGE, type HeapAllocator, type Placement } from './classes.ts';
import { EV_ALLOC, EV_NAMES, TraceError, type KindCounts } from '../trace/events.ts';

/** A live object of the trace: its range in the trace's address space and where it lives now. */
interface Obj {
  start: number;
  end: number;
  /** layout address - trace address */
  delta: number;
  placement: Placement;
}

/**
 * Live objects overlapping one trace page. Live objects never overlap each other (a new one
 * replaces any it overlaps), so at most one object that began on an earlier page reaches into
 * this one (carry), and the objects starting here are ordered by start.
 */
interface PageEntry {
  carry: Obj | null;
  /** Start addresses of `starts`, in a plain array of doubles: the binary search reads only these. */
  keys: number[];
  starts: Obj[];
}

export interface RetargetStats {
  /** Accesses wholly inside one live object. */
  inObject: number;
  /** Accesses touching no live object. */
  outside: number;
  /** Accesses split into pieces: they cross an object's end or start. */
  straddling: number;
  /** Frees of addresses that start no live object (ignored). */
  unknownFrees: number;
  /** Reallocs of addresses that start no live object (taken as an alloc of the new one). */
  unknownReallocs: number;
  /** Live objects dropped because a newer alloc or realloc overlapped them. */
  replaced: number;
}

const CACHE_SLOTS = 4096;

export interface Piece { addr: number; size: number }

export class Retargeter {
  readonly stats: RetargetStats = { inObject: 0, outside: 0, straddling: 0, unknownFrees: 0, unknownReallocs: 0, replaced: 0 };
  /** Live objects by trace start address, including zero-size ones (which cover no page). */
  private readonly byStart = new Map<number, Obj>();
  private readonly pages = new Map<number, PageEntry>();
  // The last object hit: accesses cluster, so most calls end here.
  private last: Obj | null = null;
  // A direct-mapped cache of page lookups, hits and misses alike: trace pages are numbers above
  // 2^31, which V8 hashes slowly as Map keys. A slot is reset when its page's entry comes or goes.
  private readonly cacheTag = new Float64Array(CACHE_SLOTS).fill(-1);
  private readonly cacheEntry: (PageEntry | undefined)[] = new Array<PageEntry | undefined>(CACHE_SLOTS).fill(undefined);
  private readonly out: Piece[] = [];

  constructor(readonly alloc: HeapAllocator) {}

  /** Live objects of the trace. */
  get liveObjects(): number { return this.byStart.size; }

  onAlloc(oldAddr: number, size: number, align: number): Placement {
    this.dropOverlaps(oldAddr, size);
    const p = this.alloc.alloc(size, align);
    this.add({ start: oldAddr, end: oldAddr + size, delta: p.addr - oldAddr, placement: p });
    return p;
  }

  onFree(oldAddr: number): void {
    const o = this.byStart.get(oldAddr);
    if (o === undefined) {
      this.stats.unknownFrees++;
      return;
    }
    this.remove(o);
    this.alloc.free(o.placement.addr);
  }

  /**
   * The object at oldAddr now lives at newOldAddr in the trace with size bytes. from is its layout
   * placement before (null when the trace never allocated oldAddr: nothing to copy), to after; when
   * to.addr differs from from.addr the caller copies min(from.size, to.size) bytes.
   */
  onRealloc(oldAddr: number, newOldAddr: number, size: number): { from: Placement | null; to: Placement } {
    const o = this.byStart.get(oldAddr);
    if (o === undefined) {
      this.stats.unknownReallocs++;
      return { from: null, to: this.onAlloc(newOldAddr, size, MALLOC_ALIGN) };
    }
    const from = o.placement;
    const to = this.alloc.realloc(from.addr, size);
    this.remove(o);
    this.dropOverlaps(newOldAddr, size);
    this.add({ start: newOldAddr, end: newOldAddr + size, delta: to.addr - newOldAddr, placement: to });
    return { from, to };
  }

  /**
   * Where the access [addr, addr + size) of the trace goes in the layout: a number when it lies in
   * one live object (moved, offset kept) or in none (unchanged); pieces, in address order, when it
   * crosses an object's end or start. The pieces array is reused by the next call: copy to keep.
   */
  map(addr: number, size: number): number | Piece[] {
    const end = addr + (size > 0 ? size : 1);
    const o = this.last;
    if (o !== null && addr >= o.start && end <= o.end) {
      this.stats.inObject++;
      return addr + o.delta;
    }
    const page = Math.floor(addr / PAGE);
    const slot = page & (CACHE_SLOTS - 1);
    let e: PageEntry | undefined;
    if (this.cacheTag[slot] === page) e = this.cacheEntry[slot];
    else {
      e = this.pages.get(page);
      this.cacheTag[slot] = page;
      this.cacheEntry[slot] = e;
    }
    if (e === undefined) {
      // No object on this page: done unless the access runs onto the next one.
      if (end <= (page + 1) * PAGE) {
        this.stats.outside++;
        return addr;
      }
    } else {
      const i = lastStartAtOrBefore(e.keys, addr);
      const hit = i >= 0 ? e.starts[i]! : e.carry;
      if (hit !== null && addr < hit.end) {
        if (end <= hit.end) {
          this.last = hit;
          this.stats.inObject++;
          return addr + hit.delta;
        }
      } else if (end <= (page + 1) * PAGE && (i + 1 >= e.keys.length || e.keys[i + 1]! >= end)) {
        this.stats.outside++;
        return addr;
      }
    }
    return this.split(addr, end);
  }

  /** The slow path: walk the access, one piece per object or gap. */
  private split(addr: number, end: number): number | Piece[] {
    const out = this.out;
    out.length = 0;
    let pos = addr;
    let first = 0;
    while (pos < end) {
      const o = this.objectAt(pos);
      let to: number;
      if (o !== null) {
        to = Math.min(end, o.end);
        out.push({ addr: pos + o.delta, size: to - pos });
        if (pos === addr) first = 1;
      } else {
        to = this.nextStart(pos, end);
        out.push({ addr: pos, size: to - pos });
        if (pos === addr) first = 2;
      }
      pos = to;
    }
    if (out.length === 1) {
      // A page crossing that met nothing new.
      if (first === 1) this.stats.inObject++;
      else this.stats.outside++;
      return out[0]!.addr;
    }
    this.stats.straddling++;
    return out;
  }

  /** The live object holding byte pos, or null. */
  private objectAt(pos: number): Obj | null {
    const e = this.pages.get(Math.floor(pos / PAGE));
    if (e === undefined) return null;
    const i = lastStartAtOrBefore(e.keys, pos);
    const o = i >= 0 ? e.starts[i]! : e.carry;
    return o !== null && pos < o.end ? o : null;
  }

  /** The first object start in (pos, end), or end. pos lies in no object. */
  private nextStart(pos: number, end: number): number {
    const last = Math.floor((end - 1) / PAGE);
    for (let p = Math.floor(pos / PAGE); p <= last; p++) {
      const e = this.pages.get(p);
      if (e === undefined) continue;
      const i = lastStartAtOrBefore(e.keys, pos) + 1;
      if (i < e.keys.length) return Math.min(end, e.keys[i]!);
    }
    return end;
  }

  /** Drops (frees) every live object that [start, start + size) overlaps: the trace reused its bytes. */
  private dropOverlaps(start: number, size: number): void {
    const same = this.byStart.get(start);
    if (same !== undefined) this.drop(same);
    if (size === 0) return;
    const end = start + size;
    const last = Math.floor((end - 1) / PAGE);
    for (let p = Math.floor(start / PAGE); p <= last; p++) {
      const e = this.pages.get(p);
      if (e === undefined) continue;
      if (e.carry !== null && e.carry.end > start) this.drop(e.carry);
      // Backwards: drop() takes the object out of e.starts, which only shifts the ones after it.
      for (let i = e.starts.length - 1; i >= 0; i--) {
        const o = e.starts[i]!;
        if (o.start < end && o.end > start) this.drop(o);
      }
    }
  }

  private drop(o: Obj): void {
    this.stats.replaced++;
    this.remove(o);
    this.alloc.free(o.placement.addr);
  }

  private add(o: Obj): void {
    this.byStart.set(o.start, o);
    if (o.end === o.start) return;
    const first = Math.floor(o.start / PAGE);
    const last = Math.floor((o.end - 1) / PAGE);
    const e = this.entry(first);
    const i = lastStartAtOrBefore(e.keys, o.start) + 1;
    e.keys.splice(i, 0, o.start);
    e.starts.splice(i, 0, o);
    for (let p = first + 1; p <= last; p++) this.entry(p).carry = o;
  }

  private remove(o: Obj): void {
    this.byStart.delete(o.start);
    if (this.last === o) this.last = null;
    if (o.end === o.start) return;
    const first = Math.floor(o.start / PAGE);
    const last = Math.floor((o.end - 1) / PAGE);
    const e = this.pages.get(first)!;
    const i = lastStartAtOrBefore(e.keys, o.start);
    e.keys.splice(i, 1);
    e.starts.splice(i, 1);
    this.prune(first, e);
    for (let p = first + 1; p <= last; p++) {
      const c = this.pages.get(p)!;
      c.carry = null;
      this.prune(p, c);
    }
  }

  private entry(page: number): PageEntry {
    let e = this.pages.get(page);
    if (e === undefined) {
      e = { carry: null, keys: [], starts: [] };
      this.pages.set(page, e);
      this.cacheTag[page & (CACHE_SLOTS - 1)] = -1;
    }
    return e;
  }

  private prune(page: number, e: PageEntry): void {
    if (e.carry === null && e.starts.length === 0) {
      this.pages.delete(page);
      this.cacheTag[page & (CACHE_SLOTS - 1)] = -1;
    }
  }
}

/** Index of the last object starting at or before addr, or -1. */
function lastStartAtOrBefore(keys: number[], addr: number): number {
  let lo = 0, hi = keys.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (keys[mid]! <= addr) lo = mid + 1; else hi = mid;
  }
  return lo - 1;
}

/**
 * Layouts other than the trace's own place the trace's objects anew, so they need its alloc
 * events. counts are the trace's events per kind (TraceMeta header counts or a reader's tally).
 */
export function requireObjectAware(counts: KindCounts, file: string, layout: string): void {
  if ((counts[EV_ALLOC] ?? 0) > 0) return;
  throw new TraceError(file, {}, `the trace has no ${EV_NAMES[EV_ALLOC]} events, so the ${layout} layout has no objects to place`,
    'Record it object-aware (granule record: native programs through the preload shim, or an instrumented wasm module), or replay it in its own layout');
}
