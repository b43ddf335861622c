// Spread layout: a frame of class g holds K = 4096/g slots, and slot j of frame f is reached only
// through its own virtual page V(f, j), at offset j*g. Protecting V(f, j) watches that one slot.
// Reuse policy and its effect on monitoring: docs/allocator.md.

import { MAX_PLANES, MIN_CLASS, PAGE, SPREAD_CLASSES, spreadClassOf, type HeapOptions, type Placement } from './classes.ts';
import { HeapBase } from './heap.ts';

export type SpreadOptions = HeapOptions;

const NCLASSES = SPREAD_CLASSES.length;
const classIndex = (cls: number) => Math.log2(cls / MIN_CLASS);

export class SpreadAllocator extends HeapBase {
  readonly layout = 'spread' as const;

  /**
   * V(f, j) = heapBase + (f * MAX_PLANES + j) * 4096, whatever the frame's class: a fixed stride of
   * 64 virtual pages per frame keeps the arithmetic trivial and the address-space cost visible.
   * The object in slot j of a frame of class cls starts at V(f, j) + j * cls.
   */
  static vpage(heapBase: number, frame: number, slot: number): number {
    return heapBase + (frame * MAX_PLANES + slot) * PAGE;
  }

  /** Class of each frame (0: not a slab, e.g. a frame of a large object), by frame index. */
  private readonly frameClass: number[] = [];
  /** Per class: freed slots as frame * MAX_PLANES + j, most recent last (LIFO). */
  private readonly freeSlots: number[][] = Array.from({ length: NCLASSES }, () => []);
  /** Per class: the frame being filled (-1: none) and its next unused slot. */
  private readonly cur: number[] = new Array<number>(NCLASSES).fill(-1);
  private readonly next: number[] = new Array<number>(NCLASSES).fill(0);

  constructor(opts: SpreadOptions) {
    super(opts);
  }

  /** An alignment above the size's class bumps the class; above 4096 the object is large. */
  protected smallClass(size: number, align: number): number | null {
    if (align > PAGE) return null;
    const cls = spreadClassOf(size);
    return cls === null ? null : Math.max(cls, align);
  }

  protected placeSmall(cls: number, size: number): Placement {
    const ci = classIndex(cls);
    const k = PAGE / cls;
    let frame: number, slot: number;
    const free = this.freeSlots[ci]!;
    if (free.length > 0) {
      const id = free.pop()!;
      frame = Math.floor(id / MAX_PLANES);
      slot = id % MAX_PLANES;
    } else if (this.cur[ci]! >= 0 && this.next[ci]! < k) {
      frame = this.cur[ci]!;
      slot = this.next[ci]!++;
    } else {
      const base = this.heapBase;
      frame = this.freshSlab(cls, k, (f) => Array.from({ length: k }, (_, j) => SpreadAllocator.vpage(base, f, j)));
      this.frameClass[frame] = cls;
      this.cur[ci] = frame;
      this.next[ci] = 1;
      slot = 0;
    }
    return { addr: SpreadAllocator.vpage(this.heapBase, frame, slot) + slot * cls, size, cls, frame, slot };
  }

  protected releaseSmall(p: Placement): void {
    this.freeSlots[classIndex(p.cls!)]!.push(p.frame * MAX_PLANES + p.slot);
  }

  protected smallSlotAt(addr: number): number {
    const vp = Math.floor((addr - this.heapBase) / PAGE);
    if (vp < 0) return -1;
    const frame = Math.floor(vp / MAX_PLANES);
    const cls = this.frameClass[frame];
    if (cls === undefined || cls === 0) return -1;
    const slot = vp - frame * MAX_PLANES;
    if (slot >= PAGE / cls) return -1;
    // The rest of V(f, j) aliases the frame's other slots: no object is reachable there.
    const start = this.heapBase + vp * PAGE + slot * cls;
    return addr >= start && addr < start + cls ? start : -1;
  }
}
