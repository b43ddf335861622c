// Batch execution: the TypeScript side writes REC_SIZE-byte access records (and value bytes)
// into linear memory and calls runBatch once; no per-access call crosses the JS/WASM boundary.
// Optional built-in handlers resolve monitoring faults in place, the way an in-guest #PF handler
// or a VMM's exit handler would, and append what they saw to the dirty log.
//
// Dirty-log entry (16 bytes): u32 DLOG_* kind, u32 reserved, u64 address.
import {
  REC_SIZE, REC_GVA, REC_KIND, REC_SIZE_FIELD, REC_VALUE, ACC_VALUE,
  FAULT_PF, FAULT_EPT_VIOLATION, FAULT_PML_FULL, PFEC_P, PFEC_WR, PFEC_RSVD, EQ_WRITE, EQ_SPP,
  PTE_P, PTE_RW, PTE_SW_WP, PTE_SW_GROUP, PTE_SW_GROUP_SHIFT, EPT_W, EPT_SW_WP, INVEPT_SINGLE,
  HANDLE_PF_WP, HANDLE_EPT_WP, HANDLE_PML_FULL, HANDLE_SPP, DLOG_PF, DLOG_EPT, DLOG_PML, DLOG_SPP,
  CNT_HANDLED_PF, CNT_HANDLED_EPT, CNT_HANDLED_PML, CNT_HANDLED_SPP, ACC_KIND_MASK, ACC_READ, ACC_WRITE,
  CNT_ACCESSES, CNT_TLB_HITS, CNT_BYTES_WRITTEN,
} from './consts';
import {
  batchBase, batchCap, valueBase, valueCap, dlogBase, dlogCap, fKind, fCode, fGva, fGpa, fAccess,
  pmlAddress, setPmlIndex, physOk, phys64, setPhys64, count, countBy, commitFault, saveFault, restoreFault, eptp,
  l0Base, PHYS_BASE,
} from './state';
import { accessOne, setAHpa } from './access';
import { translate, walkEntryVal, tLeafLevel, tLeafHpa } from './walk';
import { eptTranslate, eLeafHpa, eLeafVal, eUpperPerm, eLevel } from './ept';
import { sppLeafHpa, sppDenied } from './spp';
import { invlpg, invept, L0_ENTRIES, L0_ENTRY, L0_VALID } from './tlb';
import { levelShift } from './pte';
import { resetSteps } from './inspect';

export const STATUS_DONE: i32 = 0;
export const STATUS_FAULT: i32 = 1;
export const STATUS_DLOG_FULL: i32 = 2;
export const STATUS_BAD_RECORD: i32 = 3;

export let status: i32 = STATUS_DONE;
export let dlogCount: u32 = 0;
export function dlogReset(): void { dlogCount = 0; }

@inline function dlogRoom(n: u32): bool { return dlogCount + n <= dlogCap; }
function dlogPush(kind: i32, addr: u64): void {
  const p = dlogBase + (<usize>dlogCount << 4);
  store<u32>(p, kind);
  store<u32>(p, 0, 4);
  store<u64>(p, addr, 8);
  dlogCount++;
}

/** Guest-PT write protection: the in-guest #PF handler (set R/W, invlpg, retry). */
function handlePf(gva: u64, code: u64, access: u32): i32 {
  if ((code & <u64>(PFEC_P | PFEC_WR | PFEC_RSVD)) != <u64>(PFEC_P | PFEC_WR)) return 0;
  // Locate the leaf with a side-effect-free read walk of the same address.
  resetSteps();
  if (!translate<u8>(gva, (access & ~ACC_KIND_MASK) | ACC_READ, 1)) return 0;
  const level = tLeafLevel;
  const leaf = walkEntryVal(level);
  if ((leaf & PTE_SW_WP) == 0 || (leaf & PTE_RW) != 0) return 0;
  for (let l: u32 = 4; l > level; l--) if ((walkEntryVal(l) & PTE_RW) == 0) return 0;
  if (!dlogRoom(1)) return -1;
  setPhys64(tLeafHpa, (leaf | PTE_RW) & ~PTE_SW_WP);
  invlpg(gva);
  const n = (leaf & PTE_SW_GROUP) >> PTE_SW_GROUP_SHIFT;
  if (n != 0 && level == 1) {
    // The group: the aligned block of 2^n pages around the fault, whose PTEs share one table.
    const pages: u64 = <u64>1 << n;
    const at = (gva >> 12) & (pages - 1);
    const first = tLeafHpa - (at << 3);
    const firstGva = (gva & ~(<u64>0xfff)) - (at << 12);
    for (let i: u64 = 0; i < pages; i++) {
      const e = phys64(first + (i << 3));
      if ((e & (PTE_P | PTE_SW_WP | PTE_RW)) != (PTE_P | PTE_SW_WP)) continue;
      setPhys64(first + (i << 3), (e | PTE_RW) & ~PTE_SW_WP);
      invlpg(firstGva + (i << 12));
    }
  }
  dlogPush(DLOG_PF, gva & ~((<u64>1 << levelShift(level)) - 1));
  count(CNT_HANDLED_PF);
  return 1;
}

/** EPT write protection: the VMM's exit handler (set W, INVEPT single context, resume). */
function handleEpt(gpa: u64, code: u64, gva: u64, access: u32): i32 {
  if ((code & <u64>EQ_WRITE) == 0) return 0;
  resetSteps();
  if (!eptTranslate<u8>(gpa, 0, 1, gva, access, 0)) return 0;
  if ((eLeafVal & EPT_SW_WP) == 0 || (eLeafVal & EPT_W) != 0 || (eUpperPerm & <u32>EPT_W) == 0) return 0;
  if (!dlogRoom(1)) return -1;
  setPhys64(eLeafHpa, (eLeafVal | EPT_W) & ~EPT_SW_WP);
  invept(INVEPT_SINGLE, eptp);
  dlogPush(DLOG_EPT, gpa & ~((<u64>1 << levelShift(eLevel)) - 1));
  count(CNT_HANDLED_EPT);
  return 1;
}

/** PML full: drain the 512 logged GPAs and reset the index. */
function handlePml(): i32 {
  if (!dlogRoom(512)) return -1;
  for (let i: u32 = 511; i != 0xffffffff; i--) {
    const slot = pmlAddress + (<u64>i << 3);
    if (physOk(slot, 8)) dlogPush(DLOG_PML, phys64(slot));
  }
  setPmlIndex(511);
  count(CNT_HANDLED_PML);
  return 1;
}

/** SPP: grant the sub-page the last SPP check denied (a wider write retries for the next). */
function handleSpp(): i32 {
  if (!dlogRoom(1)) return -1;
  setPhys64(sppLeafHpa, phys64(sppLeafHpa) | (<u64>1 << (<u64>sppDenied << 1)));
  dlogPush(DLOG_SPP, (fGpa & ~(<u64>0xfff)) | (<u64>sppDenied << 7));
  count(CNT_HANDLED_SPP);
  return 1;
}

function handle(handlers: u32): i32 {
  saveFault();
  const kind = fKind, code = fCode, gva = fGva, gpa = fGpa, access = fAccess;
  let h = 0;
  if (kind == FAULT_PF) {
    if ((handlers & HANDLE_PF_WP) != 0) h = handlePf(gva, code, access);
  } else if (kind == FAULT_EPT_VIOLATION) {
    if ((code & <u64>EQ_SPP) != 0) { if ((handlers & HANDLE_SPP) != 0) h = handleSpp(); }
    else if ((handlers & HANDLE_EPT_WP) != 0) h = handleEpt(gpa, code, gva, access);
  } else if (kind == FAULT_PML_FULL && (handlers & HANDLE_PML_FULL) != 0) h = handlePml();
  if (h <= 0) restoreFault();
  return h;
}

/**
 * Does the L0 (sim/tlb.ts) serve an access of `size` bytes at `gva` (one page, an L0 hit, served
 * for its kind)? serveFromL0 makes the same test inline.
 */
@inline function l0Served(gva: u64, access: u32, size: u32): bool {
  const vpn = gva >> 12;
  const e = l0Base + (<usize>(<u32>vpn & (L0_ENTRIES - 1)) * L0_ENTRY);
  return (<u32>gva & 0xfff) + size <= 0x1000 && load<u64>(e) == (vpn | L0_VALID)
    && ((<u32>load<u64>(e, 8) >> (access & 7)) & 1) != 0;
}

/**
 * Serves records [i, end) from the L0 for as long as it can, and returns the first record it did
 * not serve (runBatch deals with that one: not served, or malformed). What accessOne would do for
 * a served record is a TLB hit with nothing else to check (the L0 key proves the address
 * canonical, and the page lies inside host memory), the bytes, and three counters, added once at
 * the end.
 *
 * A function of its own, with no call inside (the bytes are copied inline), so the loop keeps
 * its values in registers; inside runBatch's loop the calls of the slow path made the JIT spill
 * them on every record.
 */
function serveFromL0(i: u32, end: u32): u32 {
  const l0 = l0Base, values = valueBase, vcap = <u64>valueCap;
  let r = batchBase + <usize>i * <usize>REC_SIZE;
  let served: u64 = 0, bytes: u64 = 0, lastHpa: u64 = 0;
  for (; i < end; i++, r += <usize>REC_SIZE) {
    const gva = load<u64>(r + REC_GVA);
    const access = <u32>load<u8>(r + REC_KIND);
    const size = <u32>load<u8>(r + REC_SIZE_FIELD);
    const voff = load<u32>(r + REC_VALUE);
    if (size == 0 || size > 64 || (access & 3) == 3 || ((access & ACC_VALUE) != 0 && <u64>voff + size > vcap)) break;
    const off = <u32>gva & 0xfff;
    if (off + size > 0x1000) break;
    const vpn = gva >> 12;
    const e = l0 + (<usize>(<u32>vpn & (L0_ENTRIES - 1)) * L0_ENTRY);
    if (load<u64>(e) != (vpn | L0_VALID)) break;
    const v = load<u64>(e, 8);
    if (((<u32>v >> (access & 7)) & 1) == 0) break;
    lastHpa = (v & ~(<u64>0xfff)) | off;
    if ((access & (ACC_KIND_MASK | ACC_VALUE)) == (ACC_WRITE | ACC_VALUE)) {
      // value area to host memory: never overlapping, at most 64 bytes
      let to = PHYS_BASE + <usize>lastHpa, from = values + <usize>voff, n = size;
      for (; n >= 8; n -= 8, to += 8, from += 8) store<u64>(to, load<u64>(from));
      for (; n != 0; n--, to++, from++) store<u8>(to, load<u8>(from));
      bytes += size;
    }
    served++;
  }
  if (served != 0) {
    countBy(CNT_ACCESSES, served);
    countBy(CNT_TLB_HITS, served);
    countBy(CNT_BYTES_WRITTEN, bytes);
    setAHpa(lastHpa);
  }
  return i;
}

/**
 * Runs records [start, end). Returns the index of the first record not completed (end when all
 * completed) and sets `status`: a fault the handlers did not resolve (the fault record names the
 * record), a full dirty log (drain and resume at the returned index), or a malformed record.
 * Runs of records the L0 serves go through serveFromL0, the others one by one through accessOne.
 */
export function runBatch(start: u32, end: u32, handlers: u32): u32 {
  status = STATUS_DONE;
  if (end > batchCap) end = batchCap;
  let i = start;
  while (i < end) {
    const r = batchBase + <usize>i * <usize>REC_SIZE;
    const gva = load<u64>(r + REC_GVA);
    const access = <u32>load<u8>(r + REC_KIND);
    const size = <u32>load<u8>(r + REC_SIZE_FIELD);
    if (l0Served(gva, access, size)) {
      const next = serveFromL0(i, end);
      if (next != i) { i = next; continue; } // else malformed: below
    }
    const voff = load<u32>(r + REC_VALUE);
    if (size == 0 || size > 64 || (access & 3) == 3 || ((access & ACC_VALUE) != 0 && <u64>voff + size > valueCap)) {
      status = STATUS_BAD_RECORD;
      return i;
    }
    while (!accessOne(gva, access, size, valueBase + <usize>voff)) {
      const h = handlers != 0 ? handle(handlers) : 0;
      if (h == 0) { commitFault(i); status = STATUS_FAULT; return i; }
      if (h < 0) { status = STATUS_DLOG_FULL; return i; }
    }
    i++;
  }
  return end; // also when start > end
}
