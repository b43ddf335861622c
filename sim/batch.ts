// Batch execution: the TypeScript side writes REC_SIZE-byte access records (and value bytes)
// into linear memory and calls runBatch once; no per-access call crosses the JS/WASM boundary.
// Optional built-in handlers resolve monitoring faults in place, the way an in-guest #PF handler
// or a VMM's exit handler would, and append what they saw to the dirty log.
//
// Dirty-log entry (16 bytes): u32 DLOG_* kind, u32 reserved, u64 address.
import {
  REC_SIZE, REC_GVA, REC_KIND, REC_SIZE_FIELD, REC_VALUE, ACC_VALUE,
  FAULT_PF, FAULT_EPT_VIOLATION, FAULT_PML_FULL, PFEC_P, PFEC_WR, PFEC_RSVD, EQ_WRITE, EQ_SPP,
  PTE_RW, PTE_SW_WP, EPT_W, EPT_SW_WP, INVEPT_SINGLE,
  HANDLE_PF_WP, HANDLE_EPT_WP, HANDLE_PML_FULL, HANDLE_SPP, DLOG_PF, DLOG_EPT, DLOG_PML, DLOG_SPP,
  CNT_HANDLED_PF, CNT_HANDLED_EPT, CNT_HANDLED_PML, CNT_HANDLED_SPP, ACC_KIND_MASK, ACC_READ, ACC_WRITE,
  CNT_ACCESSES, CNT_TLB_HITS, CNT_BYTES_WRITTEN,
} from './consts';
import {
  batchBase, batchCap, valueBase, valueCap, dlogBase, dlogCap, fKind, fCode, fGva, fGpa, fAccess,
  pmlAddress, setPmlIndex, physOk, phys64, setPhys64, count, countBy, commitFault, saveFault, restoreFault, eptp,
  l0Base, physBase,
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

/** Adds what runBatch's L0 fast path served to the counters (before anything else reads them). */
function commitServed(n: u64, bytes: u64, lastHpa: u64): void {
  countBy(CNT_ACCESSES, n);
  countBy(CNT_TLB_HITS, n);
  countBy(CNT_BYTES_WRITTEN, bytes);
  setAHpa(lastHpa);
}

/**
 * Runs records [start, end). Returns the index of the first record not completed (end when all
 * completed) and sets `status`: a fault the handlers did not resolve (the fault record names the
 * record), a full dirty log (drain and resume at the returned index), or a malformed record.
 *
 * A one-page record whose page the L0 (sim/tlb.ts) says is served for its access kind is done
 * right here: what accessOne would do for it is a TLB hit with nothing else to check (the L0 key
 * proves the address canonical, and the page lies inside host memory), the bytes, and three
 * counters. Those counts stay in locals and are added before any other path runs and at the end.
 */
export function runBatch(start: u32, end: u32, handlers: u32): u32 {
  status = STATUS_DONE;
  if (end > batchCap) end = batchCap;
  const l0 = l0Base, phys = physBase, values = valueBase, vcap = <u64>valueCap;
  let served: u64 = 0, servedBytes: u64 = 0, lastHpa: u64 = 0;
  let i = start;
  let r = batchBase + <usize>i * <usize>REC_SIZE;
  for (; i < end; i++, r += <usize>REC_SIZE) {
    const gva = load<u64>(r + REC_GVA);
    const access = <u32>load<u8>(r + REC_KIND);
    const size = <u32>load<u8>(r + REC_SIZE_FIELD);
    const voff = load<u32>(r + REC_VALUE);
    if (size == 0 || size > 64 || (access & 3) == 3 || ((access & ACC_VALUE) != 0 && <u64>voff + size > vcap)) {
      status = STATUS_BAD_RECORD;
      break;
    }
    const off = <u32>gva & 0xfff;
    if (off + size <= 0x1000) {
      const vpn = gva >> 12;
      const e = l0 + (<usize>(<u32>vpn & (L0_ENTRIES - 1)) * L0_ENTRY);
      if (load<u64>(e) == (vpn | L0_VALID)) {
        const v = load<u64>(e, 8);
        if (((<u32>v >> (access & 7)) & 1) != 0) {
          lastHpa = (v & ~(<u64>0xfff)) | off;
          if ((access & (ACC_KIND_MASK | ACC_VALUE)) == (ACC_WRITE | ACC_VALUE)) {
            memory.copy(phys + <usize>lastHpa, values + <usize>voff, size);
            servedBytes += size;
          }
          served++;
          continue;
        }
      }
    }
    if (served != 0) { commitServed(served, servedBytes, lastHpa); served = 0; servedBytes = 0; }
    let stop = false;
    while (!accessOne(gva, access, size, values + <usize>voff)) {
      const h = handlers != 0 ? handle(handlers) : 0;
      if (h == 0) { commitFault(i); status = STATUS_FAULT; stop = true; break; }
      if (h < 0) { status = STATUS_DLOG_FULL; stop = true; break; }
    }
    if (stop) break;
  }
  if (served != 0) commitServed(served, servedBytes, lastHpa);
  return status == STATUS_DONE ? end : i; // end even when start > end
}
