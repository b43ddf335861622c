// Builds guest page tables and EPTs as real 8-byte entries in a simulated host memory.
// Table frames come from a bump allocator over a host-physical range; guest tables also get a
// guest-physical address, mapped 1:1 in the EPT so the guest can reach its own tables.
import { PTE_P, PTE_RW, PTE_US, PTE_PS, EPT_R, EPT_W, EPT_X, EPT_PS, EPTP_MT_WB, EPTP_PWL4, EPTP_AD } from './consts.ts';

export const PAGE_4K = 0x1000n;
export const PAGE_2M = 0x200000n;
export const PAGE_1G = 0x40000000n;
export type PageSize = typeof PAGE_4K | typeof PAGE_2M | typeof PAGE_1G;

/** What the builder needs of a host memory: the Sim, or a plain array in tests. */
export interface PhysMemory {
  read64(hpa: bigint): bigint;
  write64(hpa: bigint, v: bigint): void;
}

const hex = (v: bigint) => '0x' + v.toString(16);
const levelOf = (size: bigint) => (size === PAGE_4K ? 1 : size === PAGE_2M ? 2 : size === PAGE_1G ? 3 : 0);
const shiftOf = (level: number) => BigInt(3 + 9 * level);
/** EPT leaf memory type WB (6) in bits 5:3 */
export const EPT_MT_WB = 6n << 3n;
export const EPT_RWX = EPT_R | EPT_W | EPT_X;

export class FrameAllocator {
  private next: bigint;
  constructor(readonly base: bigint, readonly limit: bigint) {
    if (base % PAGE_4K !== 0n) throw new RangeError(`frame pool base ${hex(base)} is not 4 KiB aligned`);
    this.next = base;
  }
  alloc(): bigint {
    if (this.next + PAGE_4K > this.limit) throw new RangeError(`out of table frames: the pool ${hex(this.base)}..${hex(this.limit)} is full`);
    const f = this.next;
    this.next += PAGE_4K;
    return f;
  }
  get used(): bigint { return this.next - this.base; }
}

/** One 4-level radix table (guest PT or EPT) written through `write`, read through `read`. */
abstract class Radix {
  abstract readonly root: bigint;
  protected abstract read(tableAddr: bigint, index: bigint): bigint;
  protected abstract write(tableAddr: bigint, index: bigint, v: bigint): void;
  protected abstract newTable(): bigint;
  protected abstract isPresent(e: bigint): boolean;
  protected abstract isLeaf(e: bigint, level: number): boolean;
  protected abstract nonLeaf(table: bigint): bigint;
  protected abstract addr(e: bigint): bigint;
  abstract readonly name: string;

  /** Writes the leaf entry for `va` at the level of `size`, creating tables on the way. */
  protected setLeaf(va: bigint, size: bigint, entry: bigint): void {
    const leafLevel = levelOf(size);
    if (!leafLevel) throw new RangeError(`${this.name}: page size ${hex(size)} is not 4 KiB, 2 MiB or 1 GiB`);
    if (va % size !== 0n) throw new RangeError(`${this.name}: address ${hex(va)} is not aligned to its page size ${hex(size)}`);
    let table = this.root;
    for (let level = 4; level > leafLevel; level--) {
      const i = (va >> shiftOf(level)) & 511n;
      let e = this.read(table, i);
      if (!this.isPresent(e)) {
        e = this.nonLeaf(this.newTable());
        this.write(table, i, e);
      } else if (this.isLeaf(e, level)) {
        throw new RangeError(`${this.name}: ${hex(va)} overlaps a ${level === 3 ? '1 GiB' : '2 MiB'} page already mapped there`);
      }
      table = this.addr(e);
    }
    const i = (va >> shiftOf(leafLevel)) & 511n;
    const old = this.read(table, i);
    if (this.isPresent(old)) {
      throw new RangeError(this.isLeaf(old, leafLevel)
        ? `${this.name}: ${hex(va)} is already mapped (unmap it first)`
        : `${this.name}: ${hex(va)} (${hex(size)} page) overlaps smaller pages already mapped there`);
    }
    this.write(table, i, entry);
  }

  /** The leaf entry's location for `va`, or null where nothing maps it. */
  protected findLeaf(va: bigint): { table: bigint; index: bigint; level: number; entry: bigint } | null {
    let table = this.root;
    for (let level = 4; level >= 1; level--) {
      const index = (va >> shiftOf(level)) & 511n;
      const entry = this.read(table, index);
      if (!this.isPresent(entry)) return null;
      if (this.isLeaf(entry, level)) return { table, index, level, entry };
      table = this.addr(entry);
    }
    return null;
  }
}

export class EptBuilder extends Radix {
  readonly name = 'EPT';
  readonly root: bigint;
  constructor(private readonly mem: PhysMemory, private readonly frames: FrameAllocator, private readonly addrMask: bigint) {
    super();
    this.root = frames.alloc();
  }
  /** EPTP for this EPT: WB paging structures, 4-level walk, A/D as asked. */
  eptp(ad = true): bigint { return this.root | EPTP_MT_WB | EPTP_PWL4 | (ad ? EPTP_AD : 0n); }
  protected read(t: bigint, i: bigint) { return this.mem.read64(t + 8n * i); }
  protected write(t: bigint, i: bigint, v: bigint) { this.mem.write64(t + 8n * i, v); }
  protected newTable() { return this.frames.alloc(); }
  protected isPresent(e: bigint) { return (e & 7n) !== 0n; }
  protected isLeaf(e: bigint, level: number) { return level === 1 || (e & EPT_PS) !== 0n; }
  protected nonLeaf(t: bigint) { return t | EPT_RWX; }
  protected addr(e: bigint) { return e & this.addrMask; }

  /** Maps GPA [gpa, gpa+size) to HPA `hpa` with `flags` (R/W/X, memory type, SW bits). */
  map(gpa: bigint, hpa: bigint, size: PageSize = PAGE_4K, flags: bigint = EPT_RWX | EPT_MT_WB): void {
    if (hpa % size !== 0n) throw new RangeError(`EPT: HPA ${hex(hpa)} is not aligned to its page size ${hex(size)}`);
    this.setLeaf(gpa, size, hpa | flags | (size === PAGE_4K ? 0n : EPT_PS));
  }
  /** Maps a range with 4 KiB pages. */
  mapRange(gpa: bigint, hpa: bigint, bytes: bigint, flags?: bigint): void {
    for (let o = 0n; o < bytes; o += PAGE_4K) this.map(gpa + o, hpa + o, PAGE_4K, flags);
  }
  /** HPA for `gpa` through these tables (no rights checks), or null. */
  translate(gpa: bigint): bigint | null {
    const l = this.findLeaf(gpa);
    if (!l) return null;
    const size = 1n << shiftOf(l.level);
    return (l.entry & this.addrMask & ~(size - 1n)) | (gpa & (size - 1n));
  }
  /** HPA of the leaf entry for `gpa` (to edit its bits), or null. */
  leafEntry(gpa: bigint): { hpa: bigint; level: number; value: bigint } | null {
    const l = this.findLeaf(gpa);
    return l && { hpa: l.table + 8n * l.index, level: l.level, value: l.entry };
  }
}

/**
 * Guest page tables. Each table frame gets a GPA from `gpaFrames` and its HPA from `frames`, and
 * is mapped GPA -> HPA in the EPT (R/W) so the 2D walk can reach it.
 */
export class GuestPtBuilder extends Radix {
  readonly name = 'guest page table';
  readonly root: bigint;
  private readonly hpaOf = new Map<bigint, bigint>();
  constructor(
    private readonly mem: PhysMemory, private readonly frames: FrameAllocator,
    private readonly gpaFrames: FrameAllocator, private readonly ept: EptBuilder, private readonly addrMask: bigint,
  ) {
    super();
    this.root = this.newTable();
  }
  /** CR3 value for these tables. */
  get cr3(): bigint { return this.root; }
  protected newTable(): bigint {
    const gpa = this.gpaFrames.alloc();
    const hpa = this.frames.alloc();
    this.ept.map(gpa, hpa, PAGE_4K, EPT_R | EPT_W | EPT_MT_WB);
    this.hpaOf.set(gpa, hpa);
    return gpa;
  }
  private tableHpa(gpa: bigint): bigint {
    const h = this.hpaOf.get(gpa) ?? this.ept.translate(gpa);
    if (h == null) throw new RangeError(`guest page table: table GPA ${hex(gpa)} has no EPT mapping`);
    return h;
  }
  protected read(t: bigint, i: bigint) { return this.mem.read64(this.tableHpa(t) + 8n * i); }
  protected write(t: bigint, i: bigint, v: bigint) { this.mem.write64(this.tableHpa(t) + 8n * i, v); }
  protected isPresent(e: bigint) { return (e & PTE_P) !== 0n; }
  protected isLeaf(e: bigint, level: number) { return level === 1 || (e & PTE_PS) !== 0n; }
  protected nonLeaf(t: bigint) { return t | PTE_P | PTE_RW | PTE_US; }
  protected addr(e: bigint) { return e & this.addrMask; }

  /** Maps GVA [gva, gva+size) to GPA `gpa` with `flags` (P is implied). */
  map(gva: bigint, gpa: bigint, size: PageSize = PAGE_4K, flags: bigint = PTE_RW | PTE_US): void {
    if (gpa % size !== 0n) throw new RangeError(`guest page table: GPA ${hex(gpa)} is not aligned to its page size ${hex(size)}`);
    this.setLeaf(gva & 0xffff_ffff_ffffn, size, gpa | flags | PTE_P | (size === PAGE_4K ? 0n : PTE_PS));
  }
  /** HPA of the leaf entry for `gva` (to edit its bits), or null. */
  leafEntry(gva: bigint): { hpa: bigint; level: number; value: bigint } | null {
    const l = this.findLeaf(gva & 0xffff_ffff_ffffn);
    return l && { hpa: this.tableHpa(l.table) + 8n * l.index, level: l.level, value: l.entry };
  }
}

/** Mask of address bits MAXPHYADDR-1:12. */
export const addrMaskFor = (maxPhyAddr: number) => ((1n << BigInt(maxPhyAddr)) - 1n) & ~0xfffn;
