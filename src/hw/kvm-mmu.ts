// The Mmu on real hardware: a KVM VM running the tiny guest of hw/guest (docs/guest.md). The
// guest's CPL3 player performs each batch record as a real load or store through page tables the
// host writes in the system region; its CPL0 #PF handler is the in-guest write-protect monitor.
// Alias planes are memslots over one memfd frame pool, each with KVM dirty logging, which is the
// hardware's own per-plane dirty tracking (the KVM counterpart of EPT D flags).
//
// Host page-table edits need care on shadow-paging hosts (PVM, tdp_mmu=N): the hypervisor does not
// see host writes to guest page tables, so every changed entry is listed in the sync list and the
// guest re-stores it (its own write, which the hypervisor does see) before the next batch.
import { existsSync, readFileSync } from 'node:fs';
import { release } from 'node:os';
import { join } from 'node:path';
import { BatchWriter } from '../batch.ts';
import {
  PTE_P, PTE_RW, PTE_US, PTE_A, PTE_D, PTE_XD, PTE_SW_WP, PTE_SW_GROUP, PTE_ADDR, FAULT_PF, FAULT_GP, REC_SIZE, REC_KIND, ACC_VALUE,
} from '../consts.ts';
import { packageRoot } from '../record/toolchain.ts';
import type { Sim, FaultRecord } from '../sim.ts';
import type { Counters } from '../counters.ts';
import { groupField, checkPages, checkCanonicalRange, checkFrameRange, type Mmu, type PlaneOptions, type GuestPageFlags, type Handlers, type RunResult, type DirtyEntry } from '../mmu.ts';
import { FramePool, GuestMemory, KvmSystem, WriteWatch, DEFAULT_RUN_TIMEOUT_MS, PAGE_SIZE, type PoolView, type KvmVm, type KvmVcpu, type ExitInfo } from './kvm.ts';
import { DEFAULT_KVM_DEVICE } from './native.ts';

/** Numbers of hw/include/granule_guest.h (the authority; test/hw-kvm-mmu.test.ts checks these against it). */
export const GG = {
  ABI_VERSION: 2,
  MAGIC: 0x47656c756e617267n,
  SYS_SIZE: 0x1000000,
  /** GVA of system-region GPA 0: the guest lives in the upper half, the lower half is the trace's */
  KBASE: 0xffffffff80000000n,
  CB_GPA: 0x1000,
  IMAGE_GPA: 0x10000,
  IMAGE_MAX: 0x20000,
  PLAYER_GPA: 0x20000,
  TABLES_GPA: 0x30000,
  GDT_GPA: 0x30000,
  IDT_GPA: 0x30040,
  TSS_GPA: 0x30280,
  TSS_LIMIT: 261,
  KSTACK_GPA: 0x40000,
  KSTACK_TOP: 0x44000,
  USTACK_GPA: 0x48000,
  USTACK_TOP: 0x4c000,
  SYNC_GPA: 0x80000,
  SYNC_MAX: 0x10000,
  RING_GPA: 0x100000,
  RING_MAX: 0x20000,
  REC_GPA: 0x200000,
  REC_MAX: 0x40000,
  VAL_GPA: 0x600000,
  VAL_SIZE: 0x200000,
  PT_GPA: 0x800000,
  PT_SELF_SLOT: 510,
  SEL_KCODE: 0x08,
  SEL_KDATA: 0x10,
  SEL_TSS: 0x28,
  IDT_VECTORS: 32,
  VEC_PF: 14,
  EXIT_PORT: 0x4e0,
  EXIT_BATCH_DONE: 1,
  EXIT_RING_FULL: 2,
  EXIT_FAULT: 3,
  EXIT_INIT: 4,
  EXIT_BAD_BATCH: 5,
  FILL_BYTE: 0x5a,
} as const;

/** Control block field offsets (GC_* of granule_guest.h). */
export const GC = {
  MAGIC: 0, ABI: 8, START: 16, COUNT: 24, REPEAT: 32, NEXT: 40, LOAD_XOR: 48, SYNC: 56, RING_HEAD: 64, RING_CAP: 72,
  PF_COUNT: 80, FAULT_VECTOR: 88, FAULT_ERROR: 96, FAULT_CR2: 104, FAULT_RIP: 112, FAULT_CS: 120, FAULT_RFLAGS: 128,
  FAULT_RSP: 136, FAULT_SS: 144, SYNC_COUNT: 152,
} as const;

/** Alias plane p lives at GPA PLANE_BASE + p * PLANE_STRIDE (hw/README.md), one memslot each. */
export const KVM_PLANE_BASE = 0x1_0000_0000n;
export const KVM_PLANE_STRIDE = 1n << 30n;
/** GPA of alias plane `p` on the kvm backend: layouts that run on both backends place planes here. */
export const kvmPlaneGpa = (p: number): bigint => KVM_PLANE_BASE + BigInt(p) * KVM_PLANE_STRIDE;

/** Where scripts/build-guest.ts writes the guest image. */
export function guestImagePath(): string {
  return join(packageRoot(), 'build', 'hw', 'guest.bin');
}

export const KVM_UNSUPPORTED = 'not supported by the kvm backend yet: use --backend sim';

/** An operation the KVM backend cannot do (yet); the message ends in what to use instead. */
export class KvmUnsupportedError extends Error {
  override name = 'KvmUnsupportedError';
  constructor(what: string) {
    super(`${what}: ${KVM_UNSUPPORTED}`);
  }
}

/** The guest did not finish within runTimeoutMs; the VM has been closed. */
export class KvmRunTimeoutError extends Error {
  override name = 'KvmRunTimeoutError';
}

export interface KvmMmuOptions {
  /** data frames in the pool (default 4096 = 16 MiB); at most 2^18, one plane's 1 GiB */
  frames?: number;
  /** longest a run() may keep the guest running (default 10 s); past it the VM is closed */
  runTimeoutMs?: number;
  /** the guest image (default build/hw/guest.bin) */
  image?: string;
  /** dirty ring entries before a ring-full exit (default and maximum 131072) */
  ringCapacity?: number;
  /** batch records (default and maximum 262144) */
  batchCapacity?: number;
  /** batch value bytes (default and maximum 2 MiB) */
  valueCapacity?: number;
  /** the KVM device (default /dev/kvm) */
  device?: string;
  /**
   * How writes to the alias planes are tracked: 'dirty-log' (default: KVM_GET/CLEAR_DIRTY_LOG per
   * plane, harvestEptDirty), 'write-watch' (each plane on its own mapping of the pool under a
   * userfaultfd write watch: protectGpa and its EPT-violation counterpart) or 'dirty-ring' (KVM's
   * dirty ring: harvestPml, and ring-full exits as PML-full; it excludes the dirty log).
   */
  planeTracking?: PlaneTracking;
  /** dirty-ring entries (default 4096, at most the host's KVM_CAP_DIRTY_LOG_RING) */
  dirtyRingEntries?: number;
  /** alias planes the VM may use (default 64, the spread layout's most): memslots, GPA space and
   *  host mappings are checked for this many when the VM is created */
  planes?: number;
}

export type PlaneTracking = 'dirty-log' | 'write-watch' | 'dirty-ring';

const PAGE = 4096n;
const hex = (v: bigint | number) => '0x' + v.toString(16);
// Low-half bits of the entry flags (all below bit 32), for the 32-bit fast paths.
const P = Number(PTE_P), RW = Number(PTE_RW), US = Number(PTE_US), A = Number(PTE_A), D = Number(PTE_D), SW_WP = Number(PTE_SW_WP);
const TABLE_FLAGS = P | RW | US | A;
/** PTE_SW_GROUP in the entry's high 32 bits */
const GROUP_HI = Number(PTE_SW_GROUP >> 32n);
const LEAF_SYS = PTE_P | PTE_A | PTE_D;
/** PTE_XD in the entry's high 32 bits */
const XD_HI = Number(PTE_XD >> 32n);
/** PTE_ADDR's bits in the entry's high 32 bits (51:32) */
const ADDR_HI = Number(PTE_ADDR >> 32n);
const TWO32 = 2 ** 32;
/** The lower canonical half, GVA 0 .. 2^47: all of it is the trace's on this backend. */
const LOWER_END = 1n << 47n;
/** GG.KBASE in the 48-bit form walk() takes. */
const KBASE48 = Number(GG.KBASE & 0xffff_ffff_ffffn);
/** GVA of system-region GPA `gpa` (GG_GVA of granule_guest.h). */
const sysGva = (gpa: number): bigint => GG.KBASE + BigInt(gpa);

/** Which KVM this is, for `reason`: PVM (shadow paging) or VT-x/AMD-V with their two-level paging. */
export function describeKvmHost(): string {
  const param = (m: string, p: string) => {
    try { return readFileSync(`/sys/module/${m}/parameters/${p}`, 'utf8').trim(); } catch { return undefined; }
  };
  const tdp = param('kvm', 'tdp_mmu');
  let kind = 'unknown KVM flavour';
  if (existsSync('/sys/module/kvm_pvm')) kind = `PVM host: shadow paging${tdp ? `, tdp_mmu=${tdp}` : ''}`;
  else if (existsSync('/sys/module/kvm_intel')) kind = `VT-x${param('kvm_intel', 'ept') === 'Y' ? ' with EPT' : ' without EPT (shadow paging)'}`;
  else if (existsSync('/sys/module/kvm_amd')) kind = `AMD-V${param('kvm_amd', 'npt') === '1' || param('kvm_amd', 'npt') === 'Y' ? ' with NPT' : ' without NPT (shadow paging)'}`;
  return `KVM on Linux ${release()} (${kind})`;
}

interface PlaneState {
  slot: number;
  /** 1 = frame mapped by mapPlane in this plane */
  mapped: Uint8Array;
  /** KVM_GET_DIRTY_LOG result, valid until the next run (bits already harvested are cleared) */
  log: Uint8Array | null;
  /** harvested bits to clear (re-protect) in KVM before the guest runs again */
  clear: Uint8Array | null;
  /** planeTracking 'write-watch': the plane's own mapping of the pool, and its watch */
  view: PoolView | null;
  watch: WriteWatch | null;
}

export class KvmMmu implements Mmu {
  readonly backend = 'kvm' as const;
  readonly maxPhyAddr: number;
  readonly frames: number;
  readonly batch: BatchWriter;
  /** XOR of every chunk loaded by the last completed batch (gc_load_xor; granule_guest.h defines the chunks) */
  loadXor = 0n;

  private readonly dv: DataView;
  private readonly sysBytes: Uint8Array;
  private readonly poolBytes: Uint8Array;
  private readonly planes = new Map<number, PlaneState>();
  private readonly pml4: number;
  private ptNext: number;
  /** tables at or above this offset were allocated since the guest last ran: it has never walked
   *  them, so their entries need no sync */
  private freshMark: number;
  private readonly pendingSync = new Set<number>();
  /** leaf PTE offsets of pages protected with protectGva (some may since have been unprotected by the handler) */
  private readonly wp = new Set<number>();
  /** whether protected PTEs carry PTE_SW_WP (the in-guest handler resolves their faults) */
  private armed = true;
  private dirtyList: DirtyEntry[] = [];
  private cnt = KvmMmu.zeroCounters();
  private needsBoot = false;
  private broken: string | null = null;
  private running = false;
  private closed = false;
  private lastLeaf = { key: -1, table: 0 };

  private constructor(
    readonly reason: string,
    private readonly sys: KvmSystem,
    private readonly vm: KvmVm,
    private readonly mem: GuestMemory,
    private readonly pool: FramePool,
    private readonly vcpu: KvmVcpu,
    private readonly o: { frames: number; runTimeoutMs: number; ringCapacity: number; batchCapacity: number; valueCapacity: number; planeTracking: PlaneTracking; planes: number },
  ) {
    this.frames = o.frames;
    this.maxPhyAddr = vm.limits().physAddrBits;
    this.dv = new DataView(mem.buffer);
    this.sysBytes = new Uint8Array(mem.buffer);
    this.poolBytes = new Uint8Array(pool.buffer);
    this.ptNext = GG.PT_GPA;
    this.freshMark = GG.PT_GPA;
    this.pml4 = this.allocTable();
    // A BatchWriter over the guest's own record and value areas: the player reads them in place.
    const area = {
      batchCapacity: o.batchCapacity,
      batchView: () => ({
        records: new DataView(mem.buffer, GG.REC_GPA, GG.REC_MAX * REC_SIZE),
        values: new Uint8Array(mem.buffer, GG.VAL_GPA, o.valueCapacity),
      }),
    };
    this.batch = new BatchWriter(area as unknown as Sim);
  }

  static async create(opts: KvmMmuOptions = {}, reason = describeKvmHost()): Promise<KvmMmu> {
    const frames = opts.frames ?? 4096;
    const o = {
      frames,
      runTimeoutMs: opts.runTimeoutMs ?? DEFAULT_RUN_TIMEOUT_MS,
      ringCapacity: opts.ringCapacity ?? GG.RING_MAX,
      batchCapacity: opts.batchCapacity ?? GG.REC_MAX,
      valueCapacity: opts.valueCapacity ?? GG.VAL_SIZE,
      planeTracking: opts.planeTracking ?? 'dirty-log',
      planes: opts.planes ?? 64,
    };
    if (!Number.isInteger(o.planes) || o.planes < 1 || o.planes > 1024) throw new RangeError(`planes must be an integer 1..1024, got ${o.planes}`);
    if (!['dirty-log', 'write-watch', 'dirty-ring'].includes(o.planeTracking)) throw new RangeError(`planeTracking must be dirty-log, write-watch or dirty-ring, got ${String(o.planeTracking)}`);
    if (!Number.isInteger(frames) || frames < 1 || frames > 1 << 18) {
      throw new RangeError(`frames must be an integer 1..262144 (one alias plane is a 1 GiB GPA window on the kvm backend), got ${frames}`);
    }
    if (!(o.runTimeoutMs > 0) || !Number.isFinite(o.runTimeoutMs)) throw new RangeError(`runTimeoutMs must be a positive number of milliseconds, got ${o.runTimeoutMs}`);
    const intIn = (name: string, v: number, max: number) => {
      if (!Number.isInteger(v) || v < 1 || v > max) throw new RangeError(`${name} must be an integer 1..${max} on the kvm backend (granule_guest.h), got ${v}`);
    };
    intIn('ringCapacity', o.ringCapacity, GG.RING_MAX);
    intIn('batchCapacity', o.batchCapacity, GG.REC_MAX);
    intIn('valueCapacity', o.valueCapacity, GG.VAL_SIZE);
    const imagePath = opts.image ?? guestImagePath();
    const image = readImage(imagePath);

    const sys = KvmSystem.open(opts.device ?? DEFAULT_KVM_DEVICE);
    let vm: KvmVm | undefined, mem: GuestMemory | undefined, pool: FramePool | undefined, mmu: KvmMmu;
    try {
      vm = sys.createVm();
      // Everything the planes may need, up front: a memslot each, their GPA windows, and with write
      // watches a mapping, a thread stack and its guard per plane.
      vm.checkPlan({
        memslots: 1 + o.planes, bytes: GG.SYS_SIZE + frames * PAGE_SIZE, vcpus: 1,
        mappings: 4 + (o.planeTracking === 'write-watch' ? 3 * o.planes : 0),
        gpaEnd: kvmPlaneGpa(o.planes - 1) + BigInt(frames * PAGE_SIZE),
      });
      if (o.planeTracking === 'dirty-ring') {
        const max = vm.limits().dirtyRingMax;
        if (max === 0) throw new Error(`kvm backend: this KVM has no dirty ring (KVM_CAP_DIRTY_LOG_RING), which stands in for PML here; use --backend sim`);
        const entries = opts.dirtyRingEntries ?? Math.min(4096, max);
        if (!Number.isInteger(entries) || entries < 1 || entries > max || (entries & (entries - 1)) !== 0) throw new RangeError(`dirtyRingEntries must be a power of two up to this host's ${max}, got ${entries}`);
        vm.enableDirtyRing(entries);
      } else {
        vm.enableManualDirtyProtect();
      }
      mem = GuestMemory.create(GG.SYS_SIZE);
      pool = FramePool.create(frames * PAGE_SIZE);
      vm.setMemory(0, 0n, mem, 0, GG.SYS_SIZE);
      new Uint8Array(mem.buffer).set(image, GG.IMAGE_GPA);
      const vcpu = vm.createVcpu(0);
      vcpu.setCpuid();
      mmu = new KvmMmu(reason, sys, vm, mem, pool, vcpu, o);
    } catch (e) {
      vm?.close();
      pool?.close();
      mem?.close();
      sys.close();
      throw e;
    }
    try {
      mmu.buildSystemTables();
      mmu.cbSet(GC.RING_CAP, o.ringCapacity);
      await mmu.boot();
      return mmu;
    } catch (e) {
      await mmu.close();
      throw e;
    }
  }

  // ---- control block and system region ----

  private cb(field: number): number { return Number(this.dv.getBigUint64(GG.CB_GPA + field, true)); }
  private cbBig(field: number): bigint { return this.dv.getBigUint64(GG.CB_GPA + field, true); }
  private cbSet(field: number, v: number): void { this.dv.setBigUint64(GG.CB_GPA + field, BigInt(v), true); }

  private allocTable(): number {
    if (this.ptNext >= GG.SYS_SIZE) {
      throw new RangeError(`out of guest page-table pages: the kvm backend's table area (${hex(GG.PT_GPA)}..${hex(GG.SYS_SIZE)}, 2048 pages) is full; map fewer or more compact GVA ranges`);
    }
    const t = this.ptNext;
    this.ptNext += PAGE_SIZE;
    this.sysBytes.fill(0, t, t + PAGE_SIZE);
    return t;
  }

  /** Maps system-region GPAs [gpa, gpa + len) at their upper-half GVAs, GG.KBASE + gpa. */
  private mapSys(gpa: number, len: number, flags: bigint): void {
    const lo = Number(flags & 0xffff_ffffn), hi = Number(flags >> 32n);
    for (let o = 0; o < len; o += PAGE_SIZE) this.writeLeaf(this.walk(KBASE48 + gpa + o, true), gpa + o, lo, hi);
  }

  /** The system region's upper-half mapping (docs/guest.md, "Memory layout") and the self-map. */
  private buildSystemTables(): void {
    this.dv.setBigUint64(this.pml4 + GG.PT_SELF_SLOT * 8, BigInt(this.pml4) | PTE_P | PTE_RW | PTE_A, true);
    const U = PTE_US, W = PTE_RW, X = PTE_XD;
    this.mapSys(GG.CB_GPA, PAGE_SIZE, LEAF_SYS | U | W | X);
    this.mapSys(GG.IMAGE_GPA, 0x10000, LEAF_SYS);
    this.mapSys(GG.PLAYER_GPA, 0x10000, LEAF_SYS | U);
    this.mapSys(GG.TABLES_GPA, PAGE_SIZE, LEAF_SYS | W | X);
    this.mapSys(GG.KSTACK_GPA, GG.KSTACK_TOP - GG.KSTACK_GPA, LEAF_SYS | W | X);
    this.mapSys(GG.USTACK_GPA, GG.USTACK_TOP - GG.USTACK_GPA, LEAF_SYS | U | W | X);
    this.mapSys(GG.SYNC_GPA, GG.RING_GPA - GG.SYNC_GPA, LEAF_SYS | X);
    this.mapSys(GG.RING_GPA, GG.REC_GPA - GG.RING_GPA, LEAF_SYS | W | X);
    this.mapSys(GG.REC_GPA, GG.PT_GPA - GG.REC_GPA, LEAF_SYS | U | X);
    // The whole table area, including the tables this loop and later mappings allocate.
    this.mapSys(GG.PT_GPA, GG.SYS_SIZE - GG.PT_GPA, LEAF_SYS | W | X);
  }

  /** Enters 64-bit mode at the guest's entry (docs/guest.md, "Boot") and runs it to exit INIT. */
  private async boot(): Promise<void> {
    const flat = { base: 0n, limit: 0xffffffff, present: 1, s: 1, g: 1, dpl: 0, avl: 0, unusable: 0 };
    const data = { ...flat, selector: GG.SEL_KDATA, type: 3, db: 1, l: 0 };
    this.vcpu.setSregs({
      cs: { ...flat, selector: GG.SEL_KCODE, type: 11, db: 0, l: 1 },
      ds: data, es: data, fs: data, gs: data, ss: data,
      tr: { base: sysGva(GG.TSS_GPA), limit: GG.TSS_LIMIT, selector: GG.SEL_TSS, type: 11, present: 1, dpl: 0, db: 0, s: 0, l: 0, g: 0, avl: 0, unusable: 0 },
      gdt: { base: sysGva(GG.GDT_GPA), limit: 63 },
      idt: { base: sysGva(GG.IDT_GPA), limit: GG.IDT_VECTORS * 16 - 1 },
      cr0: 0x80050033n, // PG AM WP NE ET MP PE
      cr4: 0x620n, // OSXMMEXCPT OSFXSR PAE
      efer: 0xd00n, // NXE LMA LME
      cr3: BigInt(this.pml4),
    });
    this.vcpu.setRegs({ rip: sysGva(GG.IMAGE_GPA), rsp: sysGva(GG.KSTACK_TOP), rflags: 2 });
    this.cbSet(GC.MAGIC, 0);
    this.freshMark = this.ptNext;
    const e = await this.kvmRun(performance.now() + this.o.runTimeoutMs, 'booting the guest');
    const code = this.exitCode(e);
    if (code !== GG.EXIT_INIT) {
      throw new Error(`kvm backend: the guest's first exit was ${code === GG.EXIT_FAULT ? `FAULT (${this.describeGuestFault()})` : code}, not INIT (4); the guest image or the host's setup is broken (rebuild: node --import tsx scripts/build-guest.ts --force; check: build/hw/guest-harness)`);
    }
    if (this.cbBig(GC.MAGIC) !== GG.MAGIC || this.cb(GC.ABI) !== GG.ABI_VERSION) {
      throw new Error(`kvm backend: the guest reached INIT without its magic and ABI ${GG.ABI_VERSION} in the control block; rebuild the image (node --import tsx scripts/build-guest.ts --force)`);
    }
    this.cnt.boots++;
    this.needsBoot = false;
  }

  // ---- guest page tables ----

  /** Offset (= GPA) of the leaf PTE of the 48-bit GVA `g`, creating tables; -1 when absent and !create. */
  private walk(g: number, create: boolean): number {
    const key = Math.floor(g / 0x200000);
    if (key === this.lastLeaf.key) return this.lastLeaf.table + (Math.floor(g / PAGE_SIZE) % 512) * 8;
    let t = this.pml4;
    for (let shift = 39; shift > 12; shift -= 9) {
      const e = t + (Math.floor(g / 2 ** shift) % 512) * 8;
      const lo = this.dv.getUint32(e, true);
      if (lo & P) {
        t = lo - (lo & 0xfff);
        continue;
      }
      if (!create) return -1;
      const nt = this.allocTable();
      this.dv.setUint32(e, nt | TABLE_FLAGS, true);
      this.dv.setUint32(e + 4, 0, true);
      this.markSync(e);
      t = nt;
    }
    this.lastLeaf = { key, table: t };
    return t + (Math.floor(g / PAGE_SIZE) % 512) * 8;
  }

  /** The level where a walk of `g` stops (4 = PML4 .. 1 = PT): the FaultRecord's `level` for a #PF. */
  private faultLevel(g: number): number {
    let t = this.pml4;
    for (let level = 4; level > 1; level--) {
      const lo = this.dv.getUint32(t + (Math.floor(g / 2 ** (3 + 9 * level)) % 512) * 8, true);
      if (!(lo & P)) return level;
      t = lo - (lo & 0xfff);
    }
    return 1;
  }

  private markSync(pteOff: number): void {
    if ((pteOff & ~0xfff) >= this.freshMark) return;
    this.pendingSync.add(pteOff);
  }

  /** Writes the entry at `off`: the 4 KiB-aligned address `gpa` (below 2^52, exact in a double)
   *  with the flag bits `flagsLo` (bits 31:0) and `flagsHi` (bits 63:32), as two 32-bit halves. */
  private writeLeaf(off: number, gpa: number, flagsLo: number, flagsHi: number): void {
    this.dv.setUint32(off, ((gpa % TWO32) | flagsLo) >>> 0, true);
    this.dv.setUint32(off + 4, (Math.floor(gpa / TWO32) | flagsHi) >>> 0, true);
  }
  /** writeLeaf, and lists the entry for the guest to re-store (see markSync). */
  private setLeaf(off: number, gpa: number, flagsLo: number, flagsHi: number): void {
    this.writeLeaf(off, gpa, flagsLo, flagsHi);
    this.markSync(off);
  }

  // ---- argument checks ----

  private usable(what: string): void {
    if (this.closed) throw new Error(`${what}: this KvmMmu is closed`);
    if (this.running) throw new Error(`${what}: the guest is running (await run() first)`);
    if (this.broken) throw new Error(`${what}: ${this.broken}`);
  }
  /** The 48-bit form of each GVA page, after the checks that matter on this guest. */
  private gvaPages(what: string, gva: bigint, count: number): number {
    const end = checkCanonicalRange(what, gva, count);
    if (gva >= LOWER_END) {
      throw new RangeError(`${what}: GVA range ${hex(gva)}..${hex(end)} is in the upper half, which the kvm backend's guest keeps for itself (its system region at ${hex(GG.KBASE)}, its self-mapped page tables in PML4 slot ${GG.PT_SELF_SLOT}); use GVAs below ${hex(LOWER_END)}`);
    }
    return Number(gva & 0xffff_ffff_ffffn);
  }
  /** Plane index and first frame of GPA pages [gpa, gpa + count*4K), which must lie in one plane's pool window. */
  private planeOf(what: string, gpa: bigint, count: number): { plane: number; frame: number } {
    checkPages(what, gpa, count);
    const window = BigInt(this.frames) * PAGE;
    const rel = gpa - KVM_PLANE_BASE;
    const plane = rel >= 0n ? Number(rel / KVM_PLANE_STRIDE) : -1;
    const off = rel - BigInt(plane) * KVM_PLANE_STRIDE;
    if (rel < 0n || off + BigInt(count) * PAGE > window) {
      throw new RangeError(`${what}: GPA ${hex(gpa)} + ${count} pages is not inside one alias plane: on the kvm backend plane p covers the pool at GPA ${hex(KVM_PLANE_BASE)} + p * 2^30 .. + ${this.frames} frames (kvmPlaneGpa(p) + frame * 4096)`);
    }
    // No physical-address-width check: create()'s checkPlan covered every plane mapPlane accepts.
    return { plane, frame: Number(off / PAGE) };
  }
  /** GPA pages that mapGva/remapGva may point at: mapped by mapPlane first (KVM cannot fault on
   *  the rest of a plane's memslot the way an EPT violation does on the simulator). */
  private mappedGpa(what: string, gpa: bigint, count: number): void {
    const { plane, frame } = this.planeOf(what, gpa, count);
    const st = this.planes.get(plane);
    for (let i = 0; i < count; i++) {
      if (!st || !st.mapped[frame + i]) {
        throw new RangeError(`${what}: GPA ${hex(gpa + BigInt(i) * PAGE)} (plane ${plane}, frame ${frame + i}) is not mapped by mapPlane; on the kvm backend map the plane pages before pointing GVAs at them`);
      }
    }
  }
  private leafOrThrow(what: string, g: number, gva: bigint): number {
    const off = this.walk(g, false);
    if (off < 0 || !(this.dv.getUint32(off, true) & P)) throw new RangeError(`${what}: GVA ${hex(gva)} is not mapped`);
    return off;
  }

  // ---- address-space setup ----

  planeGpa(p: number): bigint { return kvmPlaneGpa(p); }

  mapPlane(gpa: bigint, first: number, count: number, opts: PlaneOptions = {}): void {
    this.usable('mapPlane');
    if (opts.writable === false || opts.exec === false) throw new KvmUnsupportedError('mapPlane with writable: false or exec: false (per-page EPT permissions)');
    const { plane, frame } = this.planeOf('mapPlane', gpa, count);
    if (plane >= this.o.planes) throw new RangeError(`mapPlane: GPA ${hex(gpa)} is in plane ${plane}, but this VM was planned for ${this.o.planes} planes (KvmMmuOptions.planes)`);
    if (!Number.isInteger(first) || first < 0 || first + count > this.frames) {
      throw new RangeError(`mapPlane: frames ${first}..${first + count - 1} are outside the pool of ${this.frames} frames`);
    }
    if (frame !== first) {
      throw new RangeError(`mapPlane: GPA ${hex(gpa)} is plane ${plane}'s page ${frame}, but frames ${first}.. were asked for: on the kvm backend a plane's memslot maps the whole pool at its base, so frame f is always at kvmPlaneGpa(p) + f * 4096`);
    }
    let st = this.planes.get(plane);
    if (st) {
      for (let i = 0; i < count; i++) {
        if (st.mapped[first + i]) throw new RangeError(`mapPlane: GPA ${hex(gpa + BigInt(i) * PAGE)} is already mapped (plane ${plane}, frame ${first + i})`);
      }
    } else {
      const slot = 1 + plane;
      let view: PoolView | null = null, watch: WriteWatch | null = null;
      try {
        if (this.o.planeTracking === 'write-watch') {
          view = this.pool.view();
          watch = WriteWatch.create(view);
        }
        this.vm.setMemory(slot, kvmPlaneGpa(plane), view ?? this.pool, 0, this.frames * PAGE_SIZE, { logDirty: this.o.planeTracking !== 'write-watch' });
      } catch (e) {
        watch?.close();
        view?.close();
        throw e;
      }
      st = { slot, mapped: new Uint8Array(this.frames), log: null, clear: null, view, watch };
      this.planes.set(plane, st);
    }
    st.mapped.fill(1, first, first + count);
  }

  mapGva(gva: bigint, gpa: bigint, count: number, f: GuestPageFlags = {}): void {
    this.usable('mapGva');
    const g0 = this.gvaPages('mapGva', gva, count);
    this.mappedGpa('mapGva', gpa, count);
    const offs = new Array<number>(count);
    for (let i = 0; i < count; i++) {
      const off = this.walk(g0 + i * PAGE_SIZE, true);
      if (this.dv.getUint32(off, true) & P) throw new RangeError(`mapGva: guest page table: ${hex(gva + BigInt(i) * PAGE)} is already mapped (unmap it first)`);
      offs[i] = off;
    }
    // A (not D): a clean guest PTE keeps the shadow entry read-only until the first write, so a
    // read never makes KVM's dirty log report the page.
    const lo = P | A | (f.writable === false ? 0 : RW) | (f.user === false ? 0 : US);
    const hi = f.noExec ? XD_HI : 0;
    const p0 = Number(gpa);
    for (let i = 0; i < count; i++) this.setLeaf(offs[i], p0 + i * PAGE_SIZE, lo, hi);
  }

  remapGva(gva: bigint, gpa: bigint, count: number): void {
    this.usable('remapGva');
    const g0 = this.gvaPages('remapGva', gva, count);
    this.mappedGpa('remapGva', gpa, count);
    const offs = Array.from({ length: count }, (_, i) => this.leafOrThrow('remapGva', g0 + i * PAGE_SIZE, gva + BigInt(i) * PAGE));
    const p0 = Number(gpa);
    offs.forEach((off, i) => {
      // Keep the flags (bits 11:0 less D, 63:52), replace the address.
      const lo = this.dv.getUint32(off, true) & 0xfff & ~D, hi = this.dv.getUint32(off + 4, true) & ~ADDR_HI;
      this.setLeaf(off, p0 + i * PAGE_SIZE, lo, hi);
    });
  }

  unmapGva(gva: bigint, count: number): void {
    this.usable('unmapGva');
    const g0 = this.gvaPages('unmapGva', gva, count);
    const offs = Array.from({ length: count }, (_, i) => this.leafOrThrow('unmapGva', g0 + i * PAGE_SIZE, gva + BigInt(i) * PAGE));
    for (const off of offs) {
      this.setLeaf(off, 0, 0, 0);
      this.wp.delete(off);
    }
  }

  protectGva(gva: bigint, count: number, protect: boolean, group = 1): void {
    this.usable('protectGva');
    const g0 = this.gvaPages('protectGva', gva, count);
    const field = protect ? Number(groupField('protectGva', group) >> 32n) : 0;
    const offs = Array.from({ length: count }, (_, i) => this.leafOrThrow('protectGva', g0 + i * PAGE_SIZE, gva + BigInt(i) * PAGE));
    const mark = this.armed ? SW_WP : 0;
    for (const off of offs) {
      const lo = this.dv.getUint32(off, true);
      const hi = this.dv.getUint32(off + 4, true);
      // D is cleared with every protection change: see mapGva.
      const want = protect ? ((lo & ~RW & ~SW_WP & ~D) | mark) : ((lo | RW) & ~SW_WP & ~D);
      const wantHi = ((hi & ~GROUP_HI) | field) >>> 0;
      if (protect) this.wp.add(off);
      else this.wp.delete(off);
      // The group field is the guest handler's to read, not the hardware's: no sync for it alone.
      if (wantHi !== hi) this.dv.setUint32(off + 4, wantHi, true);
      if ((want & (RW | SW_WP)) === (lo & (RW | SW_WP))) continue;
      this.dv.setUint32(off, want >>> 0, true);
      this.markSync(off);
    }
  }

  /** Reads and clears guest PTE D flags; a cleared D re-arms the shadow entry through the sync list (see mapGva). */
  harvestGuestDirty(gva: bigint, count: number): Uint8Array {
    this.usable('harvestGuestDirty');
    const g0 = this.gvaPages('harvestGuestDirty', gva, count);
    const out = new Uint8Array(count);
    for (let i = 0; i < count; i++) {
      const off = this.walk(g0 + i * PAGE_SIZE, false);
      if (off < 0) continue;
      const lo = this.dv.getUint32(off, true);
      if (!(lo & P) || !(lo & D)) continue;
      out[i] = 1;
      this.dv.setUint32(off, (lo & ~D) >>> 0, true);
      this.markSync(off);
    }
    return out;
  }

  /** The guest page tables the host built (KVM's own shadow or EPT tables are not visible from here). */
  get tableBytes(): number { return this.ptNext - GG.PT_GPA; }

  /**
   * EPT-level write protection of plane pages, as the host can give it: userfaultfd write
   * protection of the plane's own mapping of the pool (planeTracking 'write-watch'). KVM then maps
   * the page read-only for the guest; a guest write exits to KVM, whose fault on the mapping waits
   * for the watch's thread to log the page and lift the protection. That thread is the built-in
   * eptWriteProtect handler, and it is always on.
   */
  protectGpa(gpa: bigint, count: number, protect: boolean): void {
    this.usable('protectGpa');
    const { plane, frame } = this.planeOf('protectGpa', gpa, count);
    const st = this.planes.get(plane);
    if (this.o.planeTracking !== 'write-watch') throw new Error(`protectGpa: this KvmMmu tracks planes by ${this.o.planeTracking}; create it with planeTracking: 'write-watch' for EPT-level write protection`);
    if (!st?.watch) throw new RangeError(`protectGpa: plane ${plane} has no pages mapped (mapPlane first)`);
    st.watch.protect(frame * PAGE_SIZE, count * PAGE_SIZE, protect);
  }

  /**
   * Whether PTE_SW_WP marks the protected pages. The guest's handler resolves every write fault on a
   * PTE_SW_WP page; to have such writes reported instead (run without guestWriteProtect), the marks
   * come off (R/W stays clear), and the handler, finding none, reports the #PF. No sync is needed:
   * the translation (P, R/W, address) does not change, and the handler reads the entry from memory.
   */
  private setArmed(want: boolean): void {
    if (want === this.armed) return;
    for (const off of this.wp) {
      const lo = this.dv.getUint32(off, true);
      if (lo & RW) { this.wp.delete(off); continue; } // the handler unprotected it
      const v = (want ? lo | SW_WP : lo & ~SW_WP) >>> 0;
      if (v !== lo) this.dv.setUint32(off, v, true);
    }
    this.armed = want;
  }

  // ---- execution ----

  async run(start = 0, h: Handlers = {}): Promise<RunResult> {
    return this.runRepeat(1, start, h);
  }

  /**
   * run() with the queued accesses [start, count) played `repeat` times over in one KVM_RUN
   * (gc_repeat): for throughput measurements, where one exit per batch would dominate.
   */
  async runRepeat(repeat: number, start = 0, h: Handlers = {}): Promise<RunResult> {
    this.usable('run');
    if (h.eptWriteProtect && this.o.planeTracking !== 'write-watch') throw new Error(`run: the eptWriteProtect handler needs planeTracking: 'write-watch' (this KvmMmu tracks planes by ${this.o.planeTracking})`);
    if (h.pmlFull && this.o.planeTracking !== 'dirty-ring') throw new Error(`run: the pmlFull handler needs planeTracking: 'dirty-ring' (this KvmMmu tracks planes by ${this.o.planeTracking})`);
    if (h.spp) throw new KvmUnsupportedError('the spp handler (sub-page permissions)');
    const count = this.batch.count;
    if (!Number.isInteger(start) || start < 0 || start > count) throw new RangeError(`run: start ${start} is outside the batch of ${count} accesses`);
    if (!Number.isInteger(repeat) || repeat < 1) throw new RangeError(`runRepeat: repeat must be a positive integer, got ${repeat}`);
    this.running = true;
    try {
      return await this.play(start, count - start, repeat, !!h.guestWriteProtect);
    } finally {
      this.running = false;
    }
  }

  private async play(start: number, n: number, repeat: number, wpHandler: boolean): Promise<RunResult> {
    const deadline = performance.now() + this.o.runTimeoutMs;
    this.cnt.runs++;
    if (this.needsBoot) await this.boot();
    this.setArmed(wpHandler);
    this.applyDirtyClears();
    if (n === 0 && this.pendingSync.size === 0) return { next: start, status: 'done', fault: null };
    // More changed entries than one sync list holds: apply them in empty batches first.
    while (this.pendingSync.size > GG.SYNC_MAX) {
      this.writeSyncList();
      this.setBatch(0, 0, 1);
      const code = this.exitCode(await this.kvmRun(deadline, 'applying page-table changes'));
      if (code !== GG.EXIT_BATCH_DONE) throw this.fail(`the guest answered an empty batch with exit ${code}`);
    }
    this.writeSyncList();
    this.setBatch(start, n, repeat);
    for (;;) {
      const code = this.exitCode(await this.kvmRun(deadline, `playing records ${start}..${start + n - 1}`));
      this.drainRing();
      switch (code) {
        case GG.EXIT_BATCH_DONE:
          this.cnt.accesses += n * repeat;
          this.loadXor = this.cbBig(GC.LOAD_XOR);
          return { next: start + n, status: 'done', fault: null };
        case GG.EXIT_RING_FULL:
          this.cnt.ringFull++;
          continue;
        case GG.EXIT_FAULT: {
          const next = this.cb(GC.NEXT);
          if (repeat === 1) this.cnt.accesses += next - start;
          const fault = this.guestFault(next);
          // The guest stops for good after a reported fault; boot it again before the next batch.
          this.needsBoot = true;
          return { next, status: 'fault', fault };
        }
        case GG.EXIT_BAD_BATCH:
          throw new RangeError(`batch record ${this.cb(GC.NEXT)} is malformed (size must be 1..64, kind r/w/x, value inside the value area)`);
        default:
          throw this.fail(`unexpected guest exit code ${code}`);
      }
    }
  }

  private setBatch(start: number, count: number, repeat: number): void {
    this.cbSet(GC.START, start);
    this.cbSet(GC.COUNT, count);
    this.cbSet(GC.REPEAT, repeat);
  }

  /** Lists up to one sync list of changed entries for the guest to re-store before its next batch. */
  private writeSyncList(): void {
    this.freshMark = this.ptNext;
    if (this.pendingSync.size === 0) return;
    let n = 0;
    for (const off of this.pendingSync) {
      if (n === GG.SYNC_MAX) break;
      this.dv.setUint32(GG.SYNC_GPA + n * 8, off, true);
      this.dv.setUint32(GG.SYNC_GPA + n * 8 + 4, 0, true);
      this.pendingSync.delete(off);
      n++;
    }
    this.cbSet(GC.SYNC_COUNT, n);
    this.cbSet(GC.SYNC, 1);
    this.cnt.syncs++;
    this.cnt.syncEntries += n;
  }

  private drainRing(): void {
    const head = this.cb(GC.RING_HEAD);
    for (let i = 0; i < head; i++) this.dirtyList.push({ source: 'pf', addr: this.dv.getBigUint64(GG.RING_GPA + i * 8, true) });
    this.cbSet(GC.RING_HEAD, 0);
    const pf = this.cb(GC.PF_COUNT);
    this.cnt.pf += pf;
    this.cnt.handledPf += pf;
    this.cbSet(GC.PF_COUNT, 0);
  }

  private guestFault(next: number): FaultRecord {
    const vector = this.cb(GC.FAULT_VECTOR);
    const cr2 = this.cbBig(GC.FAULT_CR2);
    const access = next < GG.REC_MAX ? this.sysBytes[GG.REC_GPA + next * REC_SIZE + REC_KIND] & ~ACC_VALUE : 0;
    if (vector === GG.VEC_PF) {
      this.cnt.pf++;
      const g = Number(cr2 & 0xffff_ffff_ffffn);
      return { kind: FAULT_PF, gva: cr2, gpa: 0n, access, level: this.faultLevel(g), code: this.cb(GC.FAULT_ERROR), exitReason: 14, guestLevel: 0, index: next };
    }
    if (vector === 13 && (this.cb(GC.FAULT_CS) & 3) === 3) {
      // #GP in the player: a non-canonical GVA (the player touches nothing else).
      this.cnt.gp++;
      const gva = this.dv.getBigUint64(GG.REC_GPA + next * REC_SIZE, true);
      return { kind: FAULT_GP, gva, gpa: 0n, access, level: 0, code: this.cb(GC.FAULT_ERROR), exitReason: 13, guestLevel: 0, index: next };
    }
    throw this.fail(`the guest reported an exception nobody expected: ${this.describeGuestFault()}`);
  }

  private describeGuestFault(): string {
    const f = (k: number) => hex(this.cbBig(k));
    return `vector ${this.cb(GC.FAULT_VECTOR)}, error code ${f(GC.FAULT_ERROR)}, CR2 ${f(GC.FAULT_CR2)}, rip ${f(GC.FAULT_RIP)}, cs ${f(GC.FAULT_CS)}, record ${this.cb(GC.NEXT)}`;
  }

  /** Marks the VM unusable (its state is unknown) and returns the error to throw. */
  private fail(msg: string): Error {
    this.broken = `kvm backend: ${msg}; this KvmMmu cannot continue: close it and create a new one`;
    return new Error(this.broken);
  }

  private exitCode(e: ExitInfo): number {
    if (e.reason === 'io' && e.io && e.io.port === GG.EXIT_PORT && e.io.out && e.io.size === 4) return e.io.data;
    let rip = '';
    try { rip = ` at rip ${hex(this.vcpu.getRegs().rip)}`; } catch { /* closed */ }
    const what = e.reason === 'mmio' && e.mmio
      ? `a ${e.mmio.write ? 'write' : 'read'} of GPA ${hex(e.mmio.gpa)}, which no memslot maps (a guest page table points outside the planes)`
      : e.reason === 'shutdown' ? 'a triple fault (shutdown): the guest\'s system tables or stacks are damaged'
        : e.reason === 'io' ? `port I/O to ${hex(e.io?.port ?? 0)} other than the exit port` : `${e.reason}${e.detail ? ` (${e.detail})` : ''}`;
    throw this.fail(`unexpected VM exit${rip}: ${what}`);
  }

  /** One KVM_RUN within the run's deadline; a timeout closes the VM. */
  private async kvmRun(deadline: number, doing: string): Promise<ExitInfo> {
    let e: ExitInfo;
    for (;;) {
      const left = deadline - performance.now();
      e = left > 0 ? await this.vcpu.run({ timeoutMs: Math.max(1, left) }) : ({ reason: 'timeout', code: 0, ns: 0 } as ExitInfo);
      this.cnt.exits++;
      this.cnt.kvmRunNs += e.ns;
      if (e.reason !== 'dirty_ring_full' || this.o.planeTracking !== 'dirty-ring') break;
      // PML-full's counterpart: drain the ring and resume the guest where it stopped.
      this.cnt.pmlFull++;
      for (const gpa of this.drainDirtyRing()) this.dirtyList.push({ source: 'pml', addr: gpa });
    }
    if (e.reason === 'timeout') {
      const at = this.cb(GC.NEXT);
      await this.close();
      throw new KvmRunTimeoutError(`kvm backend: the guest was still ${doing} (at record ${at}) after the run timeout of ${this.o.runTimeoutMs} ms, so the VM was stopped and closed; raise runTimeoutMs for longer batches, or look for a batch that never ends`);
    }
    if (e.reason === 'closed') throw new Error('kvm backend: the VM was closed while the guest ran');
    return e;
  }

  // ---- harvesting ----

  dirty(): DirtyEntry[] {
    for (const [plane, st] of this.planes) {
      if (!st.watch) continue;
      const base = kvmPlaneGpa(plane);
      const pages = st.watch.drain();
      for (const off of pages) this.dirtyList.push({ source: 'ept', addr: base + BigInt(off) });
      this.cnt.handledEpt += pages.length;
      this.cnt.eptViolation += pages.length;
    }
    const d = this.dirtyList;
    this.dirtyList = [];
    return d;
  }

  /**
   * KVM's dirty log of each plane's memslot, restricted to the range: the GPA pages written since
   * they were last harvested. With planeTracking 'dirty-ring' KVM keeps no bitmap and every dirty
   * page is in the ring (harvestPml), so none is left here; with 'write-watch' there is no log.
   */
  harvestEptDirty(gpa: bigint, count: number): bigint[] {
    this.usable('harvestEptDirty');
    checkPages('harvestEptDirty', gpa, count);
    if (this.o.planeTracking === 'dirty-ring') return [];
    if (this.o.planeTracking === 'write-watch') throw new Error(`harvestEptDirty: this KvmMmu tracks planes by write watch (planeTracking 'write-watch'), which keeps no dirty log; use dirty()`);
    const out: bigint[] = [];
    const end = gpa + BigInt(count) * PAGE;
    if (end <= KVM_PLANE_BASE) return out;
    // The planes the range touches, from the GPA (callers usually pass one plane's window).
    const first = gpa > KVM_PLANE_BASE ? Number((gpa - KVM_PLANE_BASE) / KVM_PLANE_STRIDE) : 0;
    const last = Math.min(Number((end - 1n - KVM_PLANE_BASE) / KVM_PLANE_STRIDE), this.o.planes - 1);
    for (let plane = first; plane <= last; plane++) {
      const st = this.planes.get(plane);
      if (!st) continue;
      const base = kvmPlaneGpa(plane);
      const lo = gpa > base ? gpa : base;
      const top = base + BigInt(this.frames) * PAGE;
      const hi = end < top ? end : top;
      if (lo >= hi) continue;
      st.log ??= this.vm.getDirtyLog(st.slot);
      st.clear ??= new Uint8Array(st.log.length);
      const log = st.log, clear = st.clear;
      for (let i = Number((lo - base) / PAGE), last = Number((hi - base) / PAGE); i < last; i++) {
        const byte = i >> 3;
        if (log[byte] === 0) { i |= 7; continue; }
        const bit = 1 << (i & 7);
        if (!(log[byte] & bit)) continue;
        log[byte] &= ~bit;
        clear[byte] |= bit;
        if (st.mapped[i]) out.push(base + BigInt(i) * PAGE);
      }
    }
    return out;
  }

  /** Re-arms KVM's dirty tracking of the harvested pages, and forgets the cached logs, before the guest runs. */
  private applyDirtyClears(): void {
    if (this.o.planeTracking !== 'dirty-log') return;
    for (const st of this.planes.values()) {
      if (st.clear && st.clear.some((b) => b !== 0)) this.vm.clearDirtyLog(st.slot, 0, this.frames, st.clear);
      st.clear = null;
      st.log = null;
    }
  }

  /** The dirty ring (planeTracking 'dirty-ring'): plane GPA pages first written since the last harvest; the reset re-arms them. */
  harvestPml(): bigint[] {
    this.usable('harvestPml');
    if (this.o.planeTracking !== 'dirty-ring') throw new Error(`harvestPml: this KvmMmu tracks planes by ${this.o.planeTracking}; create it with planeTracking: 'dirty-ring' (KVM's dirty ring stands in for PML)`);
    return this.drainDirtyRing();
  }

  /** harvestPml's work, also done mid-run at a ring-full exit (the vCPU is stopped then). */
  private drainDirtyRing(): bigint[] {
    const out: bigint[] = [];
    const ring = this.vm.harvestDirtyRing(this.vcpu);
    for (let i = 0; i < ring.length; i += 2) {
      // Slot 0, the system region, is not logged; plane p is slot 1 + p.
      const slot = ring[i];
      if (slot >= 1) out.push(kvmPlaneGpa(slot - 1) + BigInt(ring[i + 1]) * PAGE);
    }
    this.vm.resetDirtyRings();
    return out;
  }

  // ---- data ----

  private frameOffset(frame: number, offset: number, len: number): number {
    if (this.closed) throw new Error('this KvmMmu is closed');
    checkFrameRange(this.frames, frame, offset, len);
    return frame * PAGE_SIZE + offset;
  }
  readFrame(frame: number, offset: number, len: number): Uint8Array {
    const at = this.frameOffset(frame, offset, len);
    return this.poolBytes.slice(at, at + len);
  }
  readFrameInto(frame: number, offset: number, len: number, dst: Uint8Array, at: number): void {
    const from = this.frameOffset(frame, offset, len);
    dst.set(this.poolBytes.subarray(from, from + len), at);
  }
  writeFrame(frame: number, offset: number, bytes: Uint8Array): void {
    this.poolBytes.set(bytes, this.frameOffset(frame, offset, bytes.length));
  }

  // ---- counters and teardown ----

  private static zeroCounters() {
    return { accesses: 0, pf: 0, handledPf: 0, gp: 0, exits: 0, runs: 0, ringFull: 0, syncs: 0, syncEntries: 0, boots: 0, kvmRunNs: 0, handledEpt: 0, eptViolation: 0, pmlFull: 0 };
  }
  /**
   * accesses: records completed; pf: guest #PF (resolved by the in-guest monitor or reported);
   * handledPf: resolved by the monitor; gp: #GP reported; exits: KVM_RUN returns; runs: run() calls
   * that played; ringFull: dirty-ring drains mid-batch; syncs / syncEntries: sync-service calls and
   * the PTEs they re-stored; boots: guest boots (one more after each reported fault); kvmRunNs: time
   * inside KVM_RUN; handledEpt / eptViolation: write-watch faults (planeTracking 'write-watch'),
   * the guest writes KVM stopped for the host's protection; pmlFull: dirty-ring-full exits
   * (planeTracking 'dirty-ring'). The simulator's TLB and walk counters have no counterpart here.
   */
  counters(): Counters {
    return { ...this.cnt };
  }
  resetCounters(): void {
    this.cnt = KvmMmu.zeroCounters();
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.vm.close();
    for (const st of this.planes.values()) {
      st.watch?.close();
      st.view?.close();
    }
    this.pool.close();
    this.mem.close();
    this.sys.close();
  }
}

function readImage(path: string): Uint8Array {
  let bin: Buffer;
  try {
    bin = readFileSync(path);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new Error(`the kvm backend's guest image ${path} ${code === 'ENOENT' ? 'is not built' : `cannot be read (${code})`}: build it with node --import tsx scripts/build-guest.ts (needs gcc and binutils)`);
  }
  if (bin.length > GG.IMAGE_MAX) throw new Error(`${path}: ${bin.length} bytes, more than the ${GG.IMAGE_MAX}-byte image area; rebuild it (node --import tsx scripts/build-guest.ts --force)`);
  if (bin.length < 24 || bin.readBigUInt64LE(8) !== GG.MAGIC) throw new Error(`${path}: not a granule guest image (no magic at byte offset 8); rebuild it (node --import tsx scripts/build-guest.ts --force)`);
  const abi = bin.readUInt32LE(16);
  if (abi !== GG.ABI_VERSION) throw new Error(`${path}: guest ABI ${abi} at byte offset 16, this host speaks ${GG.ABI_VERSION}; rebuild it (node --import tsx scripts/build-guest.ts --force)`);
  return bin;
}
