// Builds address spaces (guest page tables, EPT, SPPT, PML page) into a byte image of host memory.
// Used by the hand-written reference-walker tests and by the random generator. It only writes
// entries; it knows nothing about how they are interpreted (that is ref-walker.ts's job).

import {
  PTE_P, PTE_RW, PTE_US, PTE_PS,
  EPT_R, EPT_W, EPT_X, EPT_PS, EPT_MT_SHIFT,
  EPTP_MT_WB, EPTP_PWL4, SPPT_P,
} from '../../src/consts.ts';
import { RefMemory, addrMask, type RefCpu } from './ref-walker.ts';

export const K4 = 0x1000n;
export const M2 = 0x200000n;
export const G1 = 0x40000000n;

/** Default bits of an EPT leaf: RWX, memory type WB. */
export const EPT_LEAF_RWX_WB = EPT_R | EPT_W | EPT_X | (6n << EPT_MT_SHIFT);
/** Default bits of an EPT non-leaf entry. */
export const EPT_NONLEAF_RWX = EPT_R | EPT_W | EPT_X;
/** Default bits of a guest non-leaf entry. */
export const PTE_NONLEAF_URW = PTE_P | PTE_RW | PTE_US;

export type PageSize = 4096n | 2097152n | 1073741824n;

function levelOfSize(size: bigint): number {
  return size === K4 ? 1 : size === M2 ? 2 : 3;
}

function indexAt(a: bigint, level: number): bigint {
  return (a >> BigInt(12 + 9 * (level - 1))) & 511n;
}

/** Where an entry was written, for later mutation. */
export interface EntryRecord {
  structure: 'guest' | 'ept' | 'spp';
  level: number;
  hpa: bigint;
  leaf: boolean;
}

export interface BuilderOptions {
  physBytes: number;
  maxPhyAddr: number;
  /** Host memory [tableBase, tableLimit) is used for tables. */
  tableBase?: bigint;
  tableLimit?: bigint;
  /**
   * How guest page-table pages get their GPA and their EPT mapping:
   *  'identity-4k': GPA = HPA, each table page mapped by its own 4K EPT leaf (default);
   *  'identity-none': GPA = HPA, the caller maps the table region in the EPT itself;
   *  'offset-4k': GPA = HPA + tableGpaOffset, each mapped by a 4K EPT leaf.
   */
  guestTableMode?: 'identity-4k' | 'identity-none' | 'offset-4k';
  tableGpaOffset?: bigint;
  /** EPT leaf bits for guest page-table pages (default RWX WB). */
  guestTableEptBits?: bigint;
}

export class SpaceBuilder {
  readonly image: Uint8Array;
  readonly mem: RefMemory;
  readonly maxPhyAddr: number;
  readonly physBytes: number;
  readonly entries: EntryRecord[] = [];
  /** Host page numbers (hpa >> 12) holding tables or the PML log: data must never be written there. */
  readonly guarded = new Set<number>();
  readonly eptRoot: bigint;
  readonly guestRoot: { gpa: bigint; hpa: bigint };
  sppRoot: bigint | null = null;
  private nextTable: bigint;
  private readonly tableLimit: bigint;
  private readonly guestTableMode: NonNullable<BuilderOptions['guestTableMode']>;
  private readonly tableGpaOffset: bigint;
  private readonly guestTableEptBits: bigint;
  /** GPA page -> HPA page of guest page tables, as built (independent of later EPT edits). */
  private readonly guestTableHpa = new Map<bigint, bigint>();

  constructor(o: BuilderOptions) {
    this.physBytes = o.physBytes;
    this.maxPhyAddr = o.maxPhyAddr;
    this.image = new Uint8Array(o.physBytes);
    this.mem = new RefMemory(this.image);
    this.nextTable = o.tableBase ?? 0x1000n;
    this.tableLimit = o.tableLimit ?? BigInt(o.physBytes);
    this.guestTableMode = o.guestTableMode ?? 'identity-4k';
    this.tableGpaOffset = o.tableGpaOffset ?? 0n;
    this.guestTableEptBits = o.guestTableEptBits ?? EPT_LEAF_RWX_WB;
    this.eptRoot = this.allocTable();
    this.guestRoot = this.newGuestTable();
  }

  /** A zeroed, guarded 4 KiB page from the table region. */
  allocTable(): bigint {
    const p = this.nextTable;
    if (p + K4 > this.tableLimit) throw new Error('table region exhausted');
    this.nextTable += K4;
    this.guarded.add(Number(p >> 12n));
    return p;
  }

  read(hpa: bigint): bigint {
    return this.mem.read64(hpa);
  }

  write(hpa: bigint, v: bigint): void {
    this.mem.write64(hpa, v);
  }

  /** OR / clear bits of the 8-byte entry at hpa. */
  set(hpa: bigint, orBits: bigint, clearBits = 0n): void {
    this.write(hpa, (this.read(hpa) & ~clearBits) | orBits);
  }

  // ------------------------------------------------------------------------------------------
  // EPT

  /**
   * HPA of the EPT entry at `level` for `gpa`, creating non-leaf tables (bits `nonLeaf`) above it.
   * Returns null if a leaf or a non-present-but-nonzero entry blocks the path.
   */
  eptEntry(gpa: bigint, level: number, nonLeaf = EPT_NONLEAF_RWX): bigint | null {
    let table = this.eptRoot;
    for (let l = 4; l > level; l--) {
      const hpa = table + 8n * indexAt(gpa, l);
      let e = this.read(hpa);
      if (e === 0n) {
        const t = this.allocTable();
        e = t | nonLeaf;
        this.write(hpa, e);
        this.entries.push({ structure: 'ept', level: l, hpa, leaf: false });
      } else if ((e & EPT_PS) !== 0n && l < 4) {
        return null; // a large page is mapped here
      }
      table = e & addrMask(this.maxPhyAddr);
    }
    return table + 8n * indexAt(gpa, level);
  }

  /** Map GPA page `gpa` (aligned to size) to HPA `hpa` with leaf `bits`. False on conflict. */
  mapEpt(gpa: bigint, hpa: bigint, size: PageSize, bits = EPT_LEAF_RWX_WB, nonLeaf = EPT_NONLEAF_RWX): boolean {
    const level = levelOfSize(size);
    const at = this.eptEntry(gpa, level, nonLeaf);
    if (at === null || this.read(at) !== 0n) return false;
    this.write(at, (hpa & ~(size - 1n)) | bits | (level > 1 ? EPT_PS : 0n));
    this.entries.push({ structure: 'ept', level, hpa: at, leaf: true });
    return true;
  }

  // ------------------------------------------------------------------------------------------
  // Guest page tables (they live in guest-physical memory)

  /** A new guest page-table page: its GPA, its HPA, and (per mode) its EPT mapping. */
  newGuestTable(): { gpa: bigint; hpa: bigint } {
    const hpa = this.allocTable();
    const gpa = this.guestTableMode === 'offset-4k' ? hpa + this.tableGpaOffset : hpa;
    this.guestTableHpa.set(gpa, hpa);
    if (this.guestTableMode !== 'identity-none') {
      if (!this.mapEpt(gpa, hpa, K4, this.guestTableEptBits)) throw new Error(`cannot map guest table GPA ${gpa.toString(16)}`);
    }
    return { gpa, hpa };
  }

  /** HPA of a guest table page given its GPA (as built). */
  guestTableAt(gpa: bigint): bigint {
    const h = this.guestTableHpa.get(gpa & ~0xfffn);
    if (h === undefined) throw new Error(`no guest table at GPA ${gpa.toString(16)}`);
    return h;
  }

  /** Every guest page-table page built so far. */
  guestTables(): { gpa: bigint; hpa: bigint }[] {
    return [...this.guestTableHpa].map(([gpa, hpa]) => ({ gpa, hpa }));
  }

  /** CR3 value for the guest PML4. */
  get cr3(): bigint {
    return this.guestRoot.gpa;
  }

  /** GPA and HPA of the guest entry at `level` for `gva`, creating guest tables above it. */
  guestEntry(gva: bigint, level: number, nonLeaf = PTE_NONLEAF_URW): { gpa: bigint; hpa: bigint } | null {
    let table = this.guestRoot;
    for (let l = 4; l > level; l--) {
      const off = 8n * indexAt(gva, l);
      const hpa = table.hpa + off;
      let e = this.read(hpa);
      if (e === 0n) {
        const t = this.newGuestTable();
        e = t.gpa | nonLeaf;
        this.write(hpa, e);
        this.entries.push({ structure: 'guest', level: l, hpa, leaf: false });
      } else if ((e & PTE_PS) !== 0n && l < 4) {
        return null;
      }
      const gpa = e & addrMask(this.maxPhyAddr);
      table = { gpa, hpa: this.guestTableAt(gpa) };
    }
    const off = 8n * indexAt(gva, level);
    return { gpa: table.gpa + off, hpa: table.hpa + off };
  }

  /** Map GVA page `gva` to GPA `gpa` with leaf `bits` (P etc. included by caller). False on conflict. */
  mapGuest(gva: bigint, gpa: bigint, size: PageSize, bits: bigint, nonLeaf = PTE_NONLEAF_URW): boolean {
    const level = levelOfSize(size);
    const at = this.guestEntry(gva, level, nonLeaf);
    if (at === null || this.read(at.hpa) !== 0n) return false;
    this.write(at.hpa, (gpa & ~(size - 1n)) | bits | (level > 1 ? PTE_PS : 0n));
    this.entries.push({ structure: 'guest', level, hpa: at.hpa, leaf: true });
    return true;
  }

  // ------------------------------------------------------------------------------------------
  // SPPT (Vol. 3C 29.3.4)

  /** HPA of the SPPT entry at `level` for `gpa`, creating valid non-leaf entries above it. */
  sppEntry(gpa: bigint, level: number): bigint {
    if (this.sppRoot === null) this.sppRoot = this.allocTable();
    let table = this.sppRoot;
    for (let l = 4; l > level; l--) {
      const hpa = table + 8n * indexAt(gpa, l);
      let e = this.read(hpa);
      if (e === 0n) {
        e = this.allocTable() | SPPT_P;
        this.write(hpa, e);
        this.entries.push({ structure: 'spp', level: l, hpa, leaf: false });
      }
      table = e & addrMask(this.maxPhyAddr);
    }
    return table + 8n * indexAt(gpa, level);
  }

  /** Set the SPP write-permission vector for the 4 KiB GPA page; `grant` bit i = sub-page i. */
  setSpp(gpa: bigint, grant: number): void {
    const at = this.sppEntry(gpa, 1);
    let v = 0n;
    for (let i = 0; i < 32; i++) if ((grant >>> i) & 1) v |= 1n << BigInt(2 * i);
    const fresh = this.read(at) === 0n;
    this.write(at, v);
    if (fresh) this.entries.push({ structure: 'spp', level: 1, hpa: at, leaf: true });
  }

  // ------------------------------------------------------------------------------------------

  /** A default vCPU for this space: 4-level EPT (WB), no A/D, no PML, no SPP. */
  cpu(over: Partial<RefCpu> = {}): RefCpu {
    return {
      maxPhyAddr: this.maxPhyAddr,
      cr3: this.cr3,
      wp: true,
      nxe: true,
      gbPages: true,
      eptp: this.eptRoot | EPTP_PWL4 | EPTP_MT_WB,
      eptExecOnly: true,
      eptGbPages: true,
      vpid: 1,
      pml: { enabled: false, address: 0n, index: 0 },
      spp: { enabled: false, spptp: this.sppRoot ?? 0n },
      ...over,
    };
  }
}
