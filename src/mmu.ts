// The Mmu interface: everything the core (replay, allocator, monitor, checkpointer) asks of a
// machine that translates GVA -> GPA -> HPA. The simulator (src/sim-mmu.ts) implements it now;
// the KVM backend (hw/) implements the same interface over /dev/kvm memslots and a real guest.
//
// Vocabulary (../shared/DESIGN.md): a *frame* is a 4 KiB page of the data frame pool, named by
// its index. A *plane* is a GPA window onto frames: plane page GPA `base + i*4096` is frame
// `first + i`. K planes over the same frames are the alias planes of the spread layout.
import { PTE_SW_GROUP_SHIFT } from './consts.ts';
import type { FaultRecord } from './sim.ts';
import type { Counters } from './counters.ts';

export type { FaultRecord, Counters };

export type BackendName = 'sim' | 'kvm';

export interface GuestPageFlags {
  /** R/W: writes allowed (default true) */
  writable?: boolean;
  /** U/S: user-mode accesses allowed (default true) */
  user?: boolean;
  /** XD: instruction fetches not allowed (default false) */
  noExec?: boolean;
}

export interface PlaneOptions {
  /** EPT W (memslot not read-only) (default true) */
  writable?: boolean;
  /** EPT X (default true) */
  exec?: boolean;
}

/** Where a monitored write was seen. */
export interface DirtyEntry {
  /** 'pf': guest page unprotected by the in-guest #PF handler (addr = GVA page);
   *  'ept': GPA page unprotected by the EPT exit handler; 'pml': GPA page from the PML log;
   *  'spp': 128-byte GPA sub-page granted by the SPP handler */
  source: 'pf' | 'ept' | 'pml' | 'spp';
  addr: bigint;
}

export interface Handlers {
  /** resolve #PF on writes to pages write-protected with protectGva (the in-guest monitor) */
  guestWriteProtect?: boolean;
  /** resolve EPT violations on writes to GPA pages write-protected with protectGpa */
  eptWriteProtect?: boolean;
  /** drain a full PML log and continue */
  pmlFull?: boolean;
  /** grant denied SPP sub-pages and continue */
  spp?: boolean;
}

export interface RunResult {
  /** index of the first access not completed (= the batch length when all completed) */
  next: number;
  /** 'done'; 'fault': `fault` stopped access `next`; 'log-full': drain dirty() and run again */
  status: 'done' | 'fault' | 'log-full';
  fault: FaultRecord | null;
}

/** Accesses are queued here and executed by run() in one call into the backend. */
export interface AccessSink {
  /** Queues an access (ACC_* kind and flags, 1..64 bytes, optional bytes to store); false when full. */
  push(gva: bigint, acc: number, size: number, value?: Uint8Array): boolean;
  /** push() without a value for an address below 2^53 given as a number (the replay hot path). */
  pushAddr(addr: number, acc: number, size: number): boolean;
  /** pushAddr() with `size` bytes to store, taken from `bytes` at `off`. */
  pushAddrValue(addr: number, acc: number, size: number, bytes: Uint8Array, off: number): boolean;
  /** Whether `records` more records with `valueBytes` bytes of values in all still fit. */
  hasRoom(records: number, valueBytes: number): boolean;
  readonly count: number;
  readonly full: boolean;
  reset(): void;
}

export interface Mmu {
  readonly backend: BackendName;
  /** why this backend was chosen (printed by tools) */
  readonly reason: string;
  readonly maxPhyAddr: number;
  /** frames in the data frame pool */
  readonly frames: number;

  // Address-space setup.
  /** GPA of frame 0 in alias plane p: where a backend puts its planes (frame f is at + f * 4096). */
  planeGpa(p: number): bigint;
  /** Maps plane pages GPA [gpa, gpa + count*4K) onto frames [first, first + count). */
  mapPlane(gpa: bigint, first: number, count: number, opts?: PlaneOptions): void;
  /** Maps GVA pages [gva, gva + count*4K) to GPA pages [gpa, ...) in the guest page table. */
  mapGva(gva: bigint, gpa: bigint, count: number, flags?: GuestPageFlags): void;
  /** Points existing GVA pages at other GPA pages (granularity changes) and invalidates them. */
  remapGva(gva: bigint, gpa: bigint, count: number): void;
  unmapGva(gva: bigint, count: number): void;
  /**
   * Guest-PT write protection of GVA pages (true) or its removal (false), with invalidation.
   * `group` (pages, a power of two up to 128; default 1) is the protection unit the built-in #PF
   * handler opens at once: the aligned block of `group` pages around a fault (PTE_SW_GROUP).
   */
  protectGva(gva: bigint, count: number, protect: boolean, group?: number): void;
  /**
   * Guest PTE D flags of GVA pages [gva, gva + count*4K): 1 where the page was written since the
   * flag was last cleared (0 for unmapped pages). Clears the flags, with invalidation.
   */
  harvestGuestDirty(gva: bigint, count: number): Uint8Array;
  /** EPT-level write protection of GPA pages (true) or its removal (false), with invalidation. */
  protectGpa(gpa: bigint, count: number, protect: boolean): void;

  // Execution.
  readonly batch: AccessSink;
  /** Runs the queued accesses from `start`; built-in handlers resolve monitoring faults. */
  run(start?: number, handlers?: Handlers): Promise<RunResult>;

  // Harvesting.
  /** Units seen by the built-in handlers since the last call. */
  dirty(): DirtyEntry[];
  /** GPA pages whose EPT D flag is set in [gpa, gpa + count*4K); clears the flags (and invalidates). */
  harvestEptDirty(gpa: bigint, count: number): bigint[];
  /** Drains the PML log (GPAs logged since the last drain) and resets its index. */
  harvestPml(): bigint[];

  // Data.
  readFrame(frame: number, offset: number, len: number): Uint8Array;
  /** readFrame() into `dst` at `at`, with no allocation: for readers that copy many pages. */
  readFrameInto(frame: number, offset: number, len: number, dst: Uint8Array, at: number): void;
  writeFrame(frame: number, offset: number, bytes: Uint8Array): void;

  /** Bytes of paging structures this backend built: guest tables, and on the simulator its EPT,
   *  SPP and PML pages too (a hypervisor's own tables are not visible to KVM's user space). */
  readonly tableBytes: number;

  counters(): Counters;
  resetCounters(): void;
  close(): Promise<void>;
}

/** The PTE_SW_GROUP field for a write-protect group of `pages` pages (a power of two up to 128). */
export function groupField(what: string, pages: number): bigint {
  const n = Math.log2(pages);
  if (!Number.isInteger(n) || n < 0 || n > 7) throw new RangeError(`${what}: group must be a power of two from 1 to 128 pages, got ${pages}`);
  return BigInt(n) << PTE_SW_GROUP_SHIFT;
}

/** The write-protect group, in pages, that an entry's PTE_SW_GROUP field holds (the inverse of groupField). */
export function groupOfField(v: bigint): number {
  return 2 ** Number((v >> PTE_SW_GROUP_SHIFT) & 7n);
}

// Argument checks both backends share (same messages on each).
const PAGE = 4096n;
const hex = (v: bigint) => '0x' + v.toString(16);

/** `count` is a positive integer and `addr` 4 KiB aligned. */
export function checkPages(what: string, addr: bigint, count: number): void {
  if (!Number.isInteger(count) || count < 1) throw new RangeError(`${what}: page count must be a positive integer, got ${count}`);
  if (addr % PAGE !== 0n) throw new RangeError(`${what}: address ${hex(addr)} is not 4 KiB aligned`);
}

/** checkPages, and GVA pages [gva, gva + count*4K) are canonical and in one half; returns the last byte's GVA. */
export function checkCanonicalRange(what: string, gva: bigint, count: number): bigint {
  checkPages(what, gva, count);
  const end = gva + BigInt(count) * PAGE - 1n;
  const canon = (a: bigint) => a >= 0n && (a < 1n << 47n || (a >= 0xffff800000000000n && a <= 0xffffffffffffffffn));
  if (!canon(gva) || !canon(end) || (gva < 1n << 47n) !== (end < 1n << 47n)) {
    throw new RangeError(`${what}: GVA range ${hex(gva)}..${hex(end)} is not canonical (bits 63:47 must all equal)`);
  }
  return end;
}

/** Bytes [offset, offset + len) of frame `frame` lie inside one frame of a pool of `frames`. */
export function checkFrameRange(frames: number, frame: number, offset: number, len: number): void {
  if (!Number.isInteger(frame) || frame < 0 || frame >= frames) throw new RangeError(`frame ${frame} is outside the pool of ${frames} frames`);
  if (!Number.isInteger(offset) || offset < 0 || offset + len > 4096) throw new RangeError(`frame ${frame}: bytes ${offset}..${offset + len} are outside the 4 KiB frame`);
}
