// What the spread and packed allocators share: the frame pool, the table of live objects, error
// reporting for bad frees, realloc's stay-or-move rule, and large objects (ordinary page runs).
// A layout only decides where small objects go (placeSmall/releaseSmall/smallSlotAt).

import { GVA_LIMIT, PAGE, hex, isPow2, type HeapAllocator, type HeapOptions, type MapRequest, type Placement } from './classes.ts';

interface Rec {
  p: Placement;
  /** The alignment the object was allocated with; realloc keeps it (see docs/allocator.md). */
  align: number;
}

export abstract class HeapBase implements HeapAllocator {
  abstract readonly layout: 'spread' | 'packed';
  protected readonly heapBase: number;
  protected readonly onMap: (r: MapRequest) => void;
  private readonly maxFrames: number;
  private nextFrame = 0;
  private vpages = 0;
  /** End (exclusive) of the small-object virtual pages mapped so far. */
  private smallEnd: number;
  private bytes = 0;
  /** Live objects by layout address (small and large). */
  private readonly recs = new Map<number, Rec>();
  /** Addresses freed and not handed out again: tells a double free from a wild pointer. */
  private readonly freed = new Set<number>();
  private readonly large: LargeRuns<Rec>;

  constructor(opts: HeapOptions) {
    const name = this.constructor.name;
    for (const k of ['heapBase', 'largeBase'] as const) {
      const v = opts[k];
      if (!(Number.isInteger(v) && v >= 0 && v < GVA_LIMIT && v % PAGE === 0)) {
        throw new RangeError(`${name}: ${k} must be a 4 KiB-aligned address below 2^47, got ${String(v)}`);
      }
    }
    if (opts.heapBase === opts.largeBase) throw new RangeError(`${name}: heapBase and largeBase must differ (small and large objects need separate regions), both are ${hex(opts.heapBase)}`);
    if (typeof opts.onMap !== 'function') throw new TypeError(`${name}: onMap must be a function`);
    const max = opts.maxFrames ?? Infinity;
    if (!(max === Infinity || (Number.isInteger(max) && max >= 0))) {
      throw new RangeError(`${name}: maxFrames must be a non-negative integer, got ${String(max)}`);
    }
    this.heapBase = opts.heapBase;
    this.smallEnd = opts.heapBase;
    this.onMap = opts.onMap;
    this.maxFrames = max;
    this.large = new LargeRuns<Rec>(opts.largeBase);
  }

  get framesUsed(): number { return this.nextFrame; }
  get vpagesUsed(): number { return this.vpages; }
  get liveObjects(): number { return this.recs.size; }
  get liveBytes(): number { return this.bytes; }

  // ---- what a layout provides -------------------------------------------------------------------

  /** The small class for this request, or null for a large object. */
  protected abstract smallClass(size: number, align: number): number | null;
  /** Places a small object of class cls (emitting onMap for a fresh frame first). */
  protected abstract placeSmall(cls: number, size: number): Placement;
  /** Makes the object's slot or cell reusable. */
  protected abstract releaseSmall(p: Placement): void;
  /** The start of the slot or cell whose bytes include addr, or -1 when addr is in none. */
  protected abstract smallSlotAt(addr: number): number;

  // ---- frames -----------------------------------------------------------------------------------

  /**
   * A fresh frame for a slab of class cls whose virtual pages vpagesOf(frame) gives. Everything is
   * checked before the space maps it, and committed only after onMap returns, so a refusal (ours or
   * the space's) leaves the heap as it was.
   */
  protected freshSlab(cls: number, slots: number, vpagesOf: (frame: number) => number[]): number {
    this.checkFrames(1, `a fresh frame for class ${cls}`);
    const frame = this.nextFrame;
    const vpages = vpagesOf(frame);
    const end = Math.max(this.smallEnd, vpages[vpages.length - 1]! + PAGE);
    this.checkRegions(end, this.large.end());
    this.onMap({ kind: 'slab', frame, cls, slots, vpages });
    this.nextFrame++;
    this.vpages += vpages.length;
    this.smallEnd = end;
    return frame;
  }

  private checkFrames(n: number, what: string): void {
    if (this.nextFrame + n > this.maxFrames) {
      throw new RangeError(`${this.layout} heap: out of frames: ${what} needs ${n} more, and ${this.nextFrame} of the pool's ${this.maxFrames} are in use; give the heap a larger frame pool (maxFrames)`);
    }
  }

  /** Throws when small region [heapBase, smallEnd) and large region [largeBase, largeEnd) would meet. */
  private checkRegions(smallEnd: number, largeEnd: number): void {
    const lb = this.large.base;
    if (this.heapBase < largeEnd && lb < smallEnd) {
      throw new RangeError(`${this.layout} heap: the small-object region [${hex(this.heapBase)}, ${hex(smallEnd)}) would meet the large-object region [${hex(lb)}, ${hex(largeEnd)}); place heapBase and largeBase further apart`);
    }
    if (smallEnd > GVA_LIMIT || largeEnd > GVA_LIMIT) {
      throw new RangeError(`${this.layout} heap: the heap would pass 2^47, the end of the user half of a 48-bit address space; use a lower heapBase or largeBase`);
    }
  }

  // ---- the HeapAllocator interface --------------------------------------------------------------

  alloc(size: number, align: number): Placement {
    checkSize(size, 'alloc');
    if (!(isPow2(align) && align < GVA_LIMIT)) throw new RangeError(`alloc: alignment must be a power of two below 2^47, got ${String(align)}`);
    return this.place(size, align);
  }

  private place(size: number, align: number): Placement {
    const cls = this.smallClass(size, align);
    const p = cls !== null ? this.placeSmall(cls, size) : this.placeLarge(size, align);
    const rec: Rec = { p, align };
    this.recs.set(p.addr, rec);
    this.freed.delete(p.addr);
    if (cls === null) this.large.own(p.addr, pagesOf(size), rec);
    this.bytes += size;
    return p;
  }

  private placeLarge(size: number, align: number): Placement {
    const { gva, frames } = this.large.place(pagesOf(size), Math.max(1, align / PAGE), this.growLarge);
    return { addr: gva, size, cls: null, frame: frames[0]!, slot: -1 };
  }

  /** Fresh frames for a new run of large pages at gva: checked, mapped, then committed. */
  private readonly growLarge = (gva: number, pages: number): number[] => {
    this.checkFrames(pages, `a large object of ${pages} pages`);
    this.checkRegions(this.smallEnd, gva + pages * PAGE);
    const first = this.nextFrame;
    const frames = Array.from({ length: pages }, (_, i) => first + i);
    this.onMap({ kind: 'large', gva, frames });
    this.nextFrame += pages;
    this.vpages += pages;
    return frames;
  };

  free(addr: number): void {
    this.release(this.live(addr, 'free'));
  }

  private release(rec: Rec): void {
    const p = rec.p;
    this.recs.delete(p.addr);
    this.freed.add(p.addr);
    this.bytes -= p.size;
    if (p.cls === null) this.large.release(p.addr, pagesOf(p.size));
    else this.releaseSmall(p);
  }

  realloc(addr: number, size: number): Placement {
    checkSize(size, 'realloc');
    const rec = this.live(addr, 'realloc');
    const p = rec.p;
    const cls = this.smallClass(size, rec.align);
    const stays = cls === null ? p.cls === null && pagesOf(size) === pagesOf(p.size) : cls === p.cls;
    if (stays) {
      rec.p = { addr: p.addr, size, cls: p.cls, frame: p.frame, slot: p.slot };
      this.bytes += size - p.size;
      return rec.p;
    }
    // Place first, release after: both must stay live while the caller copies the bytes.
    const q = this.place(size, rec.align);
    this.release(rec);
    return q;
  }

  lookup(addr: number): Placement | undefined {
    const s = this.smallSlotAt(addr);
    const rec = s >= 0 ? this.recs.get(s) : this.large.ownerAt(addr);
    return rec !== undefined && addr >= rec.p.addr && addr < rec.p.addr + rec.p.size ? rec.p : undefined;
  }

  private live(addr: number, op: string): Rec {
    const rec = this.recs.get(addr);
    if (rec !== undefined) return rec;
    const at = `${op}(${hex(addr)})`;
    const inside = this.lookup(addr);
    if (inside) throw new Error(`${this.layout} heap: ${at}: the address is inside the live object at ${hex(inside.addr)} (${inside.size} bytes), not its start`);
    if (this.freed.has(addr)) throw new Error(`${this.layout} heap: ${at}: double free: the object at this address was already freed`);
    throw new Error(`${this.layout} heap: ${at}: no object was allocated at this address`);
  }
}

function checkSize(size: number, op: string): void {
  if (!(Number.isInteger(size) && size >= 0 && size < GVA_LIMIT)) throw new RangeError(`${op}: size must be an integer in [0, 2^47), got ${String(size)}`);
}

/** Pages a large object of this size takes (at least one: a zero-size object with a huge alignment). */
export function pagesOf(size: number): number {
  return Math.max(1, Math.ceil(size / PAGE));
}

interface Run { start: number; frames: number[] }

/**
 * Large objects: runs of ordinary pages at base + bump. Freed runs keep their frames and mappings
 * and are reused first-fit (lowest address whose aligned start fits), split on reuse and coalesced
 * with free neighbours on release; only when none fits does the bump grow, with fresh frames.
 */
class LargeRuns<T> {
  private bump = 0; // pages from base in use or free
  private readonly free: Run[] = []; // sorted by start (page index from base), never adjacent
  private readonly owner: (T | undefined)[] = [];
  private readonly frameOf: number[] = [];

  constructor(readonly base: number) {}

  end(): number { return this.base + this.bump * PAGE; }

  place(pages: number, alignPages: number, grow: (gva: number, pages: number) => number[]): { gva: number; frames: number[] } {
    const basePage = this.base / PAGE;
    const up = (i: number) => Math.ceil((basePage + i) / alignPages) * alignPages - basePage;
    for (let k = 0; k < this.free.length; k++) {
      const r = this.free[k]!;
      const a = up(r.start);
      const end = r.start + r.frames.length;
      if (a + pages > end) continue;
      const rest: Run[] = [];
      if (a > r.start) rest.push({ start: r.start, frames: r.frames.slice(0, a - r.start) });
      if (a + pages < end) rest.push({ start: a + pages, frames: r.frames.slice(a - r.start + pages) });
      this.free.splice(k, 1, ...rest);
      const frames = r.frames.slice(a - r.start, a - r.start + pages);
      return { gva: this.base + a * PAGE, frames };
    }
    const a = up(this.bump);
    const gva = this.base + a * PAGE;
    const frames = grow(gva, pages);
    for (let i = 0; i < pages; i++) this.frameOf[a + i] = frames[i]!;
    this.bump = a + pages;
    return { gva, frames };
  }

  own(gva: number, pages: number, who: T | undefined): void {
    const a = (gva - this.base) / PAGE;
    for (let i = 0; i < pages; i++) this.owner[a + i] = who;
  }

  ownerAt(addr: number): T | undefined {
    const i = Math.floor((addr - this.base) / PAGE);
    return i >= 0 && i < this.bump ? this.owner[i] : undefined;
  }

  release(gva: number, pages: number): void {
    this.own(gva, pages, undefined);
    const start = (gva - this.base) / PAGE;
    const frames = this.frameOf.slice(start, start + pages);
    let lo = 0, hi = this.free.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (this.free[mid]!.start < start) lo = mid + 1; else hi = mid;
    }
    const run: Run = { start, frames };
    const prev = this.free[lo - 1];
    const next = this.free[lo];
    if (next && next.start === start + pages) {
      run.frames = run.frames.concat(next.frames);
      this.free.splice(lo, 1);
    }
    if (prev && prev.start + prev.frames.length === start) prev.frames = prev.frames.concat(run.frames);
    else this.free.splice(lo, 0, run);
  }
}
