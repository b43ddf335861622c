// Independent reference walker for the granule simulator.
//
// This file is written from docs/sim-semantics.md and the Intel SDM only (Vol. 3A chapter 4
// "Paging", Vol. 3C chapter 29 "VMX Support for Address Translation"); it deliberately does not
// look at sim/. It is slow and plain on purpose: no TLB, no caches, every access walks, one loop per
// walk, and every rule carries the section it comes from. The tests compare the simulator against it.
//
// Choices this file makes where docs/sim-semantics.md is silent (each is listed in the report that
// came with it, and marked "REF CHOICE" below):
//   - #GP: an access is non-canonical when its first or its last byte is (the whole access is
//     checked before any page is walked, as the processor checks the linear address before paging).
//   - #PF, #GP and FAULT_BUS records carry guestLevel 0; #PF and #GP carry gpa 0.
//   - FAULT_BUS record: gva = the linear address being translated (first byte of the access in the
//     page), gpa = the HPA that was out of range (entry HPA, PML-log slot HPA, or the HPA of the first
//     byte of the data piece), access = the access, level/code/exitReason/guestLevel = 0. Data bytes
//     are checked for all pages of the access before any byte is stored.
//   - Exit qualification (code) of an EPT misconfiguration and of a PML-full exit: 0. Of an
//     SPP-related event: bit 11 = 1 for an SPPT miss, 0 for an SPPT misconfiguration (SDM Table
//     "Exit Qualification for SPP-Related Events"). Their level: the EPT level of the leaf whose D
//     flag was about to be set (PML full), the SPPT level where the SPPT walk stopped (SPP events).
//   - PML-full: the translation that needed the D flag commits nothing (neither A nor D).
//     The record's gpa is the exact GPA being translated (not page-aligned).
//   - SPP applies only to the write to the final GPA of the linear address (not to guest
//     paging-structure accesses or guest A/D updates), and, as the doc says, whenever the EPT rights
//     lack W (the doc does not require R, unlike the SDM's eligibility rule).
//   - Guest A/D updates: only flags that are 0 are written; a flag that is already 1 needs no write
//     and so no EPT write permission. The update is an atomic OR into the current memory value.
//   - A write access without value bytes stores nothing (as a batch record without ACC_VALUE).
//   - The EPT walk uses GPA bits 47:0 for the indexes (SDM 29.3.2); GPA bits 51:48 (possible with
//     MAXPHYADDR > 48) are ignored by the walk but kept in reported GPAs.

import {
  PTE_P, PTE_RW, PTE_US, PTE_A, PTE_D, PTE_PS, PTE_XD,
  EPT_R, EPT_W, EPT_X, EPT_RWX, EPT_MT, EPT_MT_SHIFT, EPT_PS, EPT_A, EPT_D, EPT_SPP,
  EPTP_AD, SPPT_P, SPPT_LEAF_RSVD, SPP_SUBPAGE_SHIFT,
  PFEC_P, PFEC_WR, PFEC_US, PFEC_RSVD, PFEC_ID,
  EQ_READ, EQ_WRITE, EQ_FETCH, EQ_READABLE, EQ_WRITABLE, EQ_EXECUTABLE, EQ_GLA_VALID,
  EQ_GLA_XLATE, EQ_SPP,
  EXIT_EPT_VIOLATION, EXIT_EPT_MISCONFIG, EXIT_PML_FULL, EXIT_SPP_EVENT,
  FAULT_PF, FAULT_GP, FAULT_EPT_VIOLATION, FAULT_EPT_MISCONFIG, FAULT_PML_FULL,
  FAULT_SPP_MISS, FAULT_SPP_MISCONFIG, FAULT_BUS,
  ACC_READ, ACC_WRITE, ACC_FETCH, ACC_KIND_MASK, ACC_USER,
} from '../../src/consts.ts';
import type { CpuState, FaultRecord } from '../../src/sim.ts';

/** Exit reason field of a #PF record (vector 14) and of a #GP record (vector 13). */
export const REASON_PF = 14;
export const REASON_GP = 13;

/** Host-physical memory: HPA 0 .. bytes.length. */
export class RefMemory {
  readonly bytes: Uint8Array;
  private readonly view: DataView;

  constructor(bytes: Uint8Array) {
    this.bytes = bytes;
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }

  get size(): bigint {
    return BigInt(this.bytes.length);
  }

  /** True when the `len` bytes at `hpa` all lie inside the simulated memory. */
  contains(hpa: bigint, len: number): boolean {
    return hpa >= 0n && hpa + BigInt(len) <= this.size;
  }

  read64(hpa: bigint): bigint {
    return this.view.getBigUint64(Number(hpa), true);
  }

  write64(hpa: bigint, v: bigint): void {
    this.view.setBigUint64(Number(hpa), BigInt.asUintN(64, v), true);
  }

  readByte(hpa: bigint): number {
    return this.bytes[Number(hpa)];
  }

  writeByte(hpa: bigint, v: number): void {
    this.bytes[Number(hpa)] = v & 0xff;
  }
}

// The state and record shapes are the simulator's (docs/sim-semantics.md); only the walking is
// written separately here.
export type RefCpu = CpuState & { maxPhyAddr: number };
export type RefFault = Omit<FaultRecord, 'index'>;

/** Optional reference counts (docs/sim-semantics.md "Counters"). */
export interface RefCounts {
  guestRefs: number;
  eptRefs: number;
}

/** One contiguous piece of a completed access: the bytes of the access that lie in one page. */
export interface RefPiece {
  gva: bigint;
  hpa: bigint;
  len: number;
}

export interface RefResult {
  fault: RefFault | null;
  /** HPA of the first byte of the access; 0n on fault. */
  hpa: bigint;
  /** The pieces (one per page touched) when the access completed; empty on fault. */
  pieces: RefPiece[];
}

// ---------------------------------------------------------------------------------------------
// Small helpers

const PAGE = 4096n;
const BITS_51_0 = (1n << 52n) - 1n;

/** Bits 51:MAXPHYADDR: reserved in every guest and EPT entry (4.5, 29.3.2). */
export function rsvdAbove(maxPhyAddr: number): bigint {
  return BITS_51_0 & ~((1n << BigInt(maxPhyAddr)) - 1n);
}

/** Bits MAXPHYADDR-1:12: the address field of an entry that references a table or a 4K page. */
export function addrMask(maxPhyAddr: number): bigint {
  return ((1n << BigInt(maxPhyAddr)) - 1n) & ~0xfffn;
}

/** Bit mask hi:lo. */
function bits(hi: number, lo: number): bigint {
  return ((1n << BigInt(hi - lo + 1)) - 1n) << BigInt(lo);
}

/** Index of a level-`level` entry (4 = PML4 .. 1 = PT) for address `a`: bits 47:39 .. 20:12. */
function indexAt(a: bigint, level: number): bigint {
  return (a >> BigInt(12 + 9 * (level - 1))) & 511n;
}

/** Size of the region mapped by an entry at `level` (1: 4K, 2: 2M, 3: 1G). */
function pageSizeAt(level: number): bigint {
  return 1n << BigInt(12 + 9 * (level - 1));
}

/** Canonical: bits 63:47 all equal (Vol. 3A 3.3.7.1 / docs "Addresses"). */
export function isCanonical(la: bigint): boolean {
  const top = BigInt.asUintN(64, la) >> 47n;
  return top === 0n || top === 0x1ffffn;
}

/** A fault travelling out of the walk to refAccess. */
class Stop {
  constructor(readonly fault: RefFault) {}
}

/** State for one access. */
interface Ctx {
  mem: RefMemory;
  cpu: RefCpu;
  acc: number;
  kind: number; // ACC_READ / ACC_WRITE / ACC_FETCH
  user: boolean;
  counts: RefCounts | undefined;
}

function fault(ctx: Ctx, f: Omit<RefFault, 'access'>): Stop {
  return new Stop({ ...f, access: ctx.acc });
}

/** Read an 8-byte paging-structure entry (guest, EPT or SPPT) at `hpa`; FAULT_BUS beyond memory. */
function readEntry(ctx: Ctx, hpa: bigint, la: bigint): bigint {
  if (!ctx.mem.contains(hpa, 8)) {
    throw fault(ctx, { kind: FAULT_BUS, gva: la, gpa: hpa, level: 0, code: 0, exitReason: 0, guestLevel: 0 });
  }
  return ctx.mem.read64(hpa);
}

// ---------------------------------------------------------------------------------------------
// EPT: one GPA translation (Vol. 3C 29.3.2 - 29.3.6)

/** Why a GPA is being translated. */
interface GpaUse {
  /** ACC_READ / ACC_WRITE / ACC_FETCH of the access made with the GPA. */
  kind: number;
  /** Exit-qualification bits 2:0 to report (EQ_READ|EQ_WRITE for a paging access under EPT A/D). */
  eqAccess: number;
  /** 0 for the final GPA of the linear address, else the guest level whose entry is being read. */
  guestLevel: number;
  /** The linear address being translated (first byte of the access in this page). */
  la: bigint;
  /** For the final GPA of a write: the bytes written in this page (for SPP). */
  writeLen: number;
}

interface GpaResult {
  hpa: bigint;
  r: boolean;
  w: boolean;
  x: boolean;
  leafLevel: number;
}

function translateGpa(ctx: Ctx, gpa: bigint, use: GpaUse): GpaResult {
  const { cpu } = ctx;
  const M = cpu.maxPhyAddr;
  const eptAD = (cpu.eptp & EPTP_AD) !== 0n;
  const isFinal = use.guestLevel === 0;

  // Bits 51:12 of the EPTP locate the EPT PML4 table (29.3.2).
  let table = cpu.eptp & addrMask(M);
  // Rights ANDed over the entries used, including a non-present one (Table 28-7 bits 3-5).
  let r = true, w = true, x = true;
  const used: { hpa: bigint; level: number }[] = [];
  let leafLevel = 0;
  let leafEntry = 0n;

  const violation = (level: number, extra: number): Stop => fault(ctx, {
    kind: FAULT_EPT_VIOLATION, gva: use.la, gpa, level, guestLevel: use.guestLevel,
    exitReason: EXIT_EPT_VIOLATION,
    // Table 28-7: bits 2:0 access, 3/4/5 the ANDed R/W/X, bit 7 GLA valid, bit 8 final translation.
    code: use.eqAccess | (r ? EQ_READABLE : 0) | (w ? EQ_WRITABLE : 0) | (x ? EQ_EXECUTABLE : 0)
      | EQ_GLA_VALID | (isFinal ? EQ_GLA_XLATE : 0) | extra,
  });
  const misconfig = (level: number): Stop => fault(ctx, {
    kind: FAULT_EPT_MISCONFIG, gva: use.la, gpa, level, guestLevel: use.guestLevel,
    exitReason: EXIT_EPT_MISCONFIG, code: 0, // REF CHOICE: no exit qualification for 29.3.3.1
  });

  // One loop over EPT levels 4..1, indexes GPA bits 47:39, 38:30, 29:21, 20:12 (29.3.2).
  for (let level = 4; level >= 1; level--) {
    const entryHpa = table + 8n * indexAt(gpa, level);
    const e = readEntry(ctx, entryHpa, use.la);
    if (ctx.counts) ctx.counts.eptRefs++;
    used.push({ hpa: entryHpa, level });

    const rwx = e & EPT_RWX;
    r &&= (e & EPT_R) !== 0n;
    w &&= (e & EPT_W) !== 0n;
    x &&= (e & EPT_X) !== 0n;

    // 1. Bits 2:0 = 000b: not present, EPT violation (29.3.3.2).
    if (rwx === 0n) throw violation(level, 0);

    // 2. EPT misconfiguration (29.3.3.1).
    //    Write without read: 010b, 110b.
    if (rwx === EPT_W || rwx === (EPT_W | EPT_X)) throw misconfig(level);
    //    Execute-only 100b when not supported (IA32_VMX_EPT_VPID_CAP bit 0).
    if (rwx === EPT_X && !cpu.eptExecOnly) throw misconfig(level);
    //    Reserved bits 51:MAXPHYADDR in every entry (Tables 29-1..29-6).
    if ((e & rsvdAbove(M)) !== 0n) throw misconfig(level);
    //    PML4E: bits 7:3 reserved (Table 29-1).
    if (level === 4 && (e & bits(7, 3)) !== 0n) throw misconfig(level);
    //    PS=1 in a PDPTE without 1-GByte page support (IA32_VMX_EPT_VPID_CAP bit 17).
    if (level === 3 && (e & EPT_PS) !== 0n && !cpu.eptGbPages) throw misconfig(level);

    // 3. The entry maps a page when it is a PTE, or a PDPTE/PDE with PS = 1 (29.3.2).
    const isLeaf = level === 1 || ((level === 3 || level === 2) && (e & EPT_PS) !== 0n);
    if (!isLeaf) {
      //  Non-leaf PDPTE / PDE: bits 6:3 reserved (Tables 29-3, 29-5).
      if ((e & bits(6, 3)) !== 0n) throw misconfig(level);
      table = e & addrMask(M);
      continue;
    }
    //  Leaf: memory type 2, 3 or 7 is reserved (29.3.3.1, 29.3.7).
    const mt = (e & EPT_MT) >> EPT_MT_SHIFT;
    if (mt === 2n || mt === 3n || mt === 7n) throw misconfig(level);
    //  1-GByte leaf: bits 29:12 reserved (Table 29-2); 2-MByte leaf: bits 20:12 (Table 29-4).
    if (level === 3 && (e & bits(29, 12)) !== 0n) throw misconfig(level);
    if (level === 2 && (e & bits(20, 12)) !== 0n) throw misconfig(level);
    leafLevel = level;
    leafEntry = e;
    break;
  }

  // Final HPA: the page base from the leaf plus the GPA's offset within the page (29.3.2).
  const size = pageSizeAt(leafLevel);
  const hpa = (leafEntry & addrMask(M) & ~(size - 1n)) | (gpa & (size - 1n));

  // Access rights: a read needs R, a write W, a fetch X, ANDed over all levels (29.3.3.2).
  const allowed = use.kind === ACC_READ ? r : use.kind === ACC_WRITE ? w : x;
  if (!allowed) {
    // Sub-page write permissions (29.3.4): a write to the final GPA whose EPT rights allow reads but
    // lack W, and whose leaf is a 4-KByte EPT PTE with bit 61 set, is decided by the SPP table.
    const sppApplies = cpu.spp.enabled && use.kind === ACC_WRITE && isFinal && r
      && leafLevel === 1 && (leafEntry & EPT_SPP) !== 0n;
    if (!sppApplies) throw violation(leafLevel, 0);
    if (!sppGrants(ctx, gpa, use)) throw violation(leafLevel, EQ_SPP);
  }

  // EPT accessed and dirty flags, only with EPTP bit 6 (29.3.5). A write (including guest
  // paging-structure accesses treated as writes) dirties the leaf. Committed per GPA translation.
  if (eptAD) {
    const isWrite = use.kind === ACC_WRITE;
    const leafHpa = used[used.length - 1].hpa;
    if (isWrite && (ctx.mem.read64(leafHpa) & EPT_D) === 0n) {
      // Page-modification logging (29.3.6): the D flag is about to go from 0 to 1.
      logDirty(ctx, gpa, use, leafLevel);
    }
    for (const u of used) {
      const isLeafEntry = u.hpa === leafHpa && u.level === leafLevel;
      const set = EPT_A | (isLeafEntry && isWrite ? EPT_D : 0n);
      const cur = ctx.mem.read64(u.hpa);
      if ((cur & set) !== set) ctx.mem.write64(u.hpa, cur | set);
    }
  }

  return { hpa, r, w, x, leafLevel };
}

/** PML (29.3.6): before an EPT D flag goes 0 -> 1. */
function logDirty(ctx: Ctx, gpa: bigint, use: GpaUse, leafLevel: number): void {
  const pml = ctx.cpu.pml;
  if (!pml.enabled) return;
  // PML index not in 0..511: page-modification log-full event; nothing is logged or dirtied and
  // the guest-physical access does not happen.
  if (pml.index < 0 || pml.index > 511) {
    throw fault(ctx, {
      kind: FAULT_PML_FULL, gva: use.la, gpa, level: leafLevel, guestLevel: use.guestLevel,
      exitReason: EXIT_PML_FULL, code: 0,
    });
  }
  // The GPA with bits 11:0 cleared is written at PML address + 8 * index; the index is decremented
  // (16 bits: 0 becomes FFFFH).
  const slot = pml.address + 8n * BigInt(pml.index);
  if (!ctx.mem.contains(slot, 8)) {
    throw fault(ctx, { kind: FAULT_BUS, gva: use.la, gpa: slot, level: 0, code: 0, exitReason: 0, guestLevel: 0 });
  }
  ctx.mem.write64(slot, gpa & ~0xfffn);
  pml.index = (pml.index - 1) & 0xffff;
}

/**
 * Sub-page write permissions (29.3.4): walk the SPPT for `gpa` and report whether every 128-byte
 * sub-page that the write touches in this page is writable. SPPT miss / misconfiguration exit.
 */
function sppGrants(ctx: Ctx, gpa: bigint, use: GpaUse): boolean {
  const { cpu } = ctx;
  const M = cpu.maxPhyAddr;
  // Non-leaf SPPT entries: bit 0 valid, bits 11:1 and 63:MAXPHYADDR reserved.
  const nonLeafRsvd = bits(11, 1) | bits(63, M);
  let table = cpu.spp.spptp & addrMask(M);
  const event = (kind: number, level: number): Stop => fault(ctx, {
    kind, gva: use.la, gpa, level, guestLevel: 0, exitReason: EXIT_SPP_EVENT,
    // REF CHOICE: SDM exit qualification for SPP-related events: bit 11 = 1 for an SPPT miss.
    code: kind === FAULT_SPP_MISS ? EQ_SPP : 0,
  });
  // One loop over SPPT levels 4..1, indexed like the EPT by GPA bits 47:39, 38:30, 29:21, 20:12.
  for (let level = 4; level >= 1; level--) {
    const e = readEntry(ctx, table + 8n * indexAt(gpa, level), use.la);
    if (ctx.counts) ctx.counts.eptRefs++; // SPP table reads count as EPT references
    if (level > 1) {
      if ((e & SPPT_P) === 0n) throw event(FAULT_SPP_MISS, level);
      if ((e & nonLeafRsvd) !== 0n) throw event(FAULT_SPP_MISCONFIG, level);
      table = e & addrMask(M);
      continue;
    }
    // Leaf: a 64-bit vector, bit 2i = write permission of sub-page i; odd bits reserved.
    if ((e & SPPT_LEAF_RSVD) !== 0n) throw event(FAULT_SPP_MISCONFIG, level);
    const first = Number((gpa & 0xfffn) >> SPP_SUBPAGE_SHIFT);
    const last = Number(((gpa & 0xfffn) + BigInt(use.writeLen) - 1n) >> SPP_SUBPAGE_SHIFT);
    for (let i = first; i <= last; i++) {
      if (((e >> BigInt(2 * i)) & 1n) === 0n) return false;
    }
    return true;
  }
  return false; // not reached
}

// ---------------------------------------------------------------------------------------------
// Guest paging: one linear-address translation of one page (Vol. 3A 4.5 - 4.8)

interface GuestEntryUse {
  level: number;
  gpa: bigint;
  hpa: bigint;
  /** EPT rights of the translation of the entry's GPA (needed for the A/D update, 4.8 / 29.3.3.2). */
  eptW: boolean;
  eptR: boolean;
  eptX: boolean;
  eptLeafLevel: number;
}

/** Translate the page of linear address `la` (the first byte of the access in that page). */
function translateLinear(ctx: Ctx, la: bigint, len: number): bigint {
  const { cpu } = ctx;
  const M = cpu.maxPhyAddr;
  const eptAD = (cpu.eptp & EPTP_AD) !== 0n;
  const isWrite = ctx.kind === ACC_WRITE;
  const isFetch = ctx.kind === ACC_FETCH;

  // Page-fault error code (4.7): W/R = write, U/S = user, I/D = fetch with NXE (no SMEP here).
  const pfBase = (isWrite ? PFEC_WR : 0) | (ctx.user ? PFEC_US : 0) | (isFetch && cpu.nxe ? PFEC_ID : 0);
  const pf = (level: number, code: number): Stop => fault(ctx, {
    kind: FAULT_PF, gva: la, gpa: 0n, level, code: pfBase | code, exitReason: REASON_PF, guestLevel: 0,
  });

  // Guest paging-structure accesses are reads; with EPT A/D they are treated as writes (29.3.5):
  // they need W, set EPT D and report EQ_READ|EQ_WRITE (Table 28-7 bit 1 note).
  const pagingKind = eptAD ? ACC_WRITE : ACC_READ;
  const pagingEq = eptAD ? (EQ_READ | EQ_WRITE) : EQ_READ;

  let table = cpu.cr3 & addrMask(M); // CR3 bits M-1:12 locate the PML4 table (4.5.4)
  let rwAll = true, usAll = true, xdAny = false;
  const used: GuestEntryUse[] = [];
  let gpa = 0n;
  let leafLevel = 0;

  // One loop over guest levels 4 (PML4E) .. 1 (PTE); indexes GVA bits 47:39 .. 20:12 (4.5.4).
  for (let level = 4; level >= 1; level--) {
    const entryGpa = table + 8n * indexAt(la, level);
    // The entry's GPA is translated through the EPT as a guest paging-structure access (29.3.1).
    const t = translateGpa(ctx, entryGpa, {
      kind: pagingKind, eqAccess: pagingEq, guestLevel: level, la, writeLen: 8,
    });
    const e = readEntry(ctx, t.hpa, la);
    if (ctx.counts) ctx.counts.guestRefs++;
    used.push({ level, gpa: entryGpa, hpa: t.hpa, eptW: t.w, eptR: t.r, eptX: t.x, eptLeafLevel: t.leafLevel });

    // 1. P = 0: #PF with P = 0 at this level (4.5.4, 4.7).
    if ((e & PTE_P) === 0n) throw pf(level, 0);

    // 2. Reserved bits: #PF with P = 1 and RSVD = 1 (4.5.4, Tables 4-14..4-20).
    const ps = (e & PTE_PS) !== 0n;
    let rsvd = (e & rsvdAbove(M)) !== 0n;                        // bits 51:MAXPHYADDR
    if (!cpu.nxe && (e & PTE_XD) !== 0n) rsvd = true;           // XD without IA32_EFER.NXE
    if (level === 4 && ps) rsvd = true;                          // PS in a PML4E
    if (level === 3 && ps && !cpu.gbPages) rsvd = true;          // 1-GByte pages not supported
    if (level === 3 && ps && (e & bits(29, 13)) !== 0n) rsvd = true; // 1-GByte page: bits 29:13
    if (level === 2 && ps && (e & bits(20, 13)) !== 0n) rsvd = true; // 2-MByte page: bits 20:13
    if (rsvd) throw pf(level, PFEC_P | PFEC_RSVD);

    // Rights accumulate over all levels (4.6): R/W and U/S ANDed, XD ORed.
    rwAll &&= (e & PTE_RW) !== 0n;
    usAll &&= (e & PTE_US) !== 0n;
    xdAny ||= (e & PTE_XD) !== 0n;

    // 3. The entry maps a page when it is a PTE, or a PDPTE/PDE with PS = 1.
    if (level === 1 || ps) {
      const size = pageSizeAt(level);
      gpa = (e & addrMask(M) & ~(size - 1n)) | (la & (size - 1n));
      leafLevel = level;
      break;
    }
    table = e & addrMask(M);
  }

  // Access rights (4.6; SMEP, SMAP and protection keys not modelled).
  const noExec = cpu.nxe && xdAny;
  let ok: boolean;
  if (ctx.user) {
    ok = usAll && (ctx.kind === ACC_READ || (isWrite && rwAll) || (isFetch && !noExec));
  } else {
    ok = ctx.kind === ACC_READ || (isWrite && (rwAll || !cpu.wp)) || (isFetch && !noExec);
  }
  // A denied access is a #PF with P = 1 at the level of the entry that maps the page.
  if (!ok) throw pf(leafLevel, PFEC_P);

  // Accessed and dirty flags (4.8): A in every entry used, top down; D in the leaf for a write.
  // Each update is a write to the entry's GPA and needs EPT write permission (29.3.3.2): without
  // it, an EPT violation reported as a locked read-modify-write (EQ_READ|EQ_WRITE), bit 8 = 0.
  for (const u of used) {
    const set = PTE_A | (u.level === leafLevel && isWrite ? PTE_D : 0n);
    const cur = ctx.mem.read64(u.hpa);
    if ((cur & set) === set) continue; // nothing to write
    if (!u.eptW) {
      throw fault(ctx, {
        kind: FAULT_EPT_VIOLATION, gva: la, gpa: u.gpa, level: u.eptLeafLevel, guestLevel: u.level,
        exitReason: EXIT_EPT_VIOLATION,
        code: EQ_READ | EQ_WRITE | (u.eptR ? EQ_READABLE : 0) | (u.eptW ? EQ_WRITABLE : 0)
          | (u.eptX ? EQ_EXECUTABLE : 0) | EQ_GLA_VALID,
      });
    }
    // With EPT A/D the paging access above already counted as a write and set the EPT D flag of
    // this page, so the flag update has no further EPT side effect.
    ctx.mem.write64(u.hpa, cur | set);
  }

  // The final GPA is translated with the access's own kind (29.3.1); bit 8 = 1 on violation.
  const t = translateGpa(ctx, gpa, {
    kind: ctx.kind,
    eqAccess: ctx.kind === ACC_READ ? EQ_READ : ctx.kind === ACC_WRITE ? EQ_WRITE : EQ_FETCH,
    guestLevel: 0, la, writeLen: len,
  });
  return t.hpa;
}

// ---------------------------------------------------------------------------------------------
// One access (docs "One access")

/**
 * Perform one access of `size` bytes (1..64) at `gva` with `acc` = ACC_READ|ACC_WRITE|ACC_FETCH,
 * optionally | ACC_USER. A write with `value` stores value[0..size). Mutates `mem` (guest A/D,
 * EPT A/D, PML log, stored bytes) and `cpu.pml.index`.
 */
export function refAccess(
  mem: RefMemory, cpu: RefCpu, gva: bigint, acc: number, size: number,
  value?: Uint8Array, counts?: RefCounts,
): RefResult {
  if (size < 1 || size > 64) throw new RangeError(`size ${size} not in 1..64`);
  const ctx: Ctx = {
    mem, cpu, acc, kind: acc & ACC_KIND_MASK, user: (acc & ACC_USER) !== 0, counts,
  };
  const start = BigInt.asUintN(64, gva);
  const last = BigInt.asUintN(64, start + BigInt(size - 1));
  try {
    // #GP(0) for a non-canonical address: nothing is walked (3.3.7.1). REF CHOICE: both the first
    // and the last byte must be canonical.
    if (!isCanonical(start) || !isCanonical(last)) {
      throw fault(ctx, { kind: FAULT_GP, gva: start, gpa: 0n, level: 0, code: 0, exitReason: REASON_GP, guestLevel: 0 });
    }
    // The pages touched are translated in ascending order; a fault on any page stops the access.
    const pieces: RefPiece[] = [];
    let la = start;
    let left = size;
    while (left > 0) {
      const inPage = Number(PAGE - (la & (PAGE - 1n)));
      const len = Math.min(left, inPage);
      const hpa = translateLinear(ctx, la, len);
      pieces.push({ gva: la, hpa, len });
      la = BigInt.asUintN(64, la + BigInt(len));
      left -= len;
    }
    // All pages translated: the bytes are read or stored (FAULT_BUS beyond memory, not architectural).
    for (const p of pieces) {
      if (!mem.contains(p.hpa, p.len)) {
        throw fault(ctx, { kind: FAULT_BUS, gva: p.gva, gpa: p.hpa, level: 0, code: 0, exitReason: 0, guestLevel: 0 });
      }
    }
    if (ctx.kind === ACC_WRITE && value !== undefined) {
      let k = 0;
      for (const p of pieces) {
        for (let i = 0; i < p.len; i++) mem.writeByte(p.hpa + BigInt(i), value[k++]);
      }
    }
    return { fault: null, hpa: pieces[0].hpa, pieces };
  } catch (e) {
    if (e instanceof Stop) return { fault: e.fault, hpa: 0n, pieces: [] };
    throw e;
  }
}

/** Human-readable name of a FAULT_* kind. */
export function faultName(kind: number): string {
  return ['NONE', 'PF', 'GP', 'EPT_VIOLATION', 'EPT_MISCONFIG', 'PML_FULL', 'SPP_MISS', 'SPP_MISCONFIG', 'BUS'][kind]
    ?? `KIND_${kind}`;
}
