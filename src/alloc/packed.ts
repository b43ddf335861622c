// Packed layout: the traditional baseline. Segregated size classes (PACKED_CLASSES), cells packed
// contiguously in class pages, one frame per page mapped 1:1; objects up to a page never straddle
// one. Neighbours share a page, so page-level monitoring sees them together. docs/allocator.md.

import { PACKED_CLASSES, PAGE, packedClassOf, type HeapOptions, type Placement } from './classes.ts';
import { HeapBase } from './heap.ts';

export type PackedOptions = HeapOptions;

const classIndex = new Map<number, number>(PACKED_CLASSES.map((c, i) => [c, i]));

export class PackedAllocator extends HeapBase {
  readonly layout = 'packed' as const;

  /** Per class page (page i at heapBase + i * 4096): its class and frame. */
  private readonly pageClass: number[] = [];
  private readonly pageFrame: number[] = [];
  /** Per class: freed cell addresses, most recent last (LIFO). */
  private readonly freeCells: number[][] = PACKED_CLASSES.map(() => []);
  /** Per class: the page being filled (-1: none) and its next unused cell. */
  private readonly cur: number[] = new Array<number>(PACKED_CLASSES.length).fill(-1);
  private readonly next: number[] = new Array<number>(PACKED_CLASSES.length).fill(0);

  constructor(opts: PackedOptions) {
    super(opts);
  }

  /**
   * The smallest class that holds size and whose cells (at multiples of the class within a page)
   * are aligned: every class is a multiple of 16, so align <= 16 never bumps; 4096 always works.
   */
  protected smallClass(size: number, align: number): number | null {
    if (align > PAGE) return null;
    const cls = packedClassOf(size);
    if (cls === null) return null;
    for (let i = classIndex.get(cls)!; ; i++) if (PACKED_CLASSES[i]! % align === 0) return PACKED_CLASSES[i]!;
  }

  protected placeSmall(cls: number, size: number): Placement {
    const ci = classIndex.get(cls)!;
    const cells = Math.floor(PAGE / cls);
    let page: number, cell: number;
    const free = this.freeCells[ci]!;
    if (free.length > 0) {
      const addr = free.pop()!;
      page = Math.floor((addr - this.heapBase) / PAGE);
      cell = (addr - this.heapBase - page * PAGE) / cls;
    } else if (this.cur[ci]! >= 0 && this.next[ci]! < cells) {
      page = this.cur[ci]!;
      cell = this.next[ci]!++;
    } else {
      page = this.pageClass.length;
      const gva = this.heapBase + page * PAGE;
      const frame = this.freshSlab(cls, cells, () => [gva]);
      this.pageClass.push(cls);
      this.pageFrame.push(frame);
      this.cur[ci] = page;
      this.next[ci] = 1;
      cell = 0;
    }
    return { addr: this.heapBase + page * PAGE + cell * cls, size, cls, frame: this.pageFrame[page]!, slot: cell };
  }

  protected releaseSmall(p: Placement): void {
    this.freeCells[classIndex.get(p.cls!)!]!.push(p.addr);
  }

  protected smallSlotAt(addr: number): number {
    const page = Math.floor((addr - this.heapBase) / PAGE);
    if (page < 0 || page >= this.pageClass.length) return -1;
    const cls = this.pageClass[page]!;
    const off = addr - this.heapBase - page * PAGE;
    const cell = Math.floor(off / cls);
    // A page's tail past its last whole cell holds nothing.
    return cell < Math.floor(PAGE / cls) ? this.heapBase + page * PAGE + cell * cls : -1;
  }
}
