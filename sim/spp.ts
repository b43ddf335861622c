// Sub-page write permissions (SDM Vol. 3C 29.3.4). The SPP table (SPPT) is a 4-level structure
// indexed like the EPT. Non-leaf entries:
//
//  63:52  51:M  M-1:12   11:1  0
//  rsvd   rsvd  address  rsvd  valid
//
// A level-1 entry is a write-permission vector: bit 2i grants writes to the 128-byte sub-page i
// (GPA bits 11:7); odd bits are reserved. An SPP-related exit's qualification has bit 11 set
// for an SPPT miss and clear for an SPPT misconfiguration.
import {
  SPPT_P, SPPT_LEAF_RSVD, EQ_SPP, FAULT_SPP_MISS, FAULT_SPP_MISCONFIG, EXIT_SPP_EVENT, STEP_SPP,
  STEP_F_LEAF, STEP_F_NOT_PRESENT, STEP_F_RSVD, CNT_EPT_REFS,
} from './consts';
import { spptp, addrMask, rsvdHigh, physOk, phys64, raise, raiseBus, count } from './state';
import { levelShift } from './pte';
import { step } from './inspect';

export const SPP_GRANTED: i32 = 1;
export const SPP_DENIED: i32 = 0;
export const SPP_EXIT: i32 = -1;

const RSVD_NONLEAF: u64 = 0xfff0000000000ffe;

// Where the last lookup ended: the leaf entry and the first sub-page it denied.
export let sppLeafHpa: u64 = 0;
export let sppDenied: u32 = 0;

/** Do the sub-page permissions grant a write of `len` bytes at `gpa` (within one 4 KiB page)? */
export function sppAllows<M>(gpa: u64, len: u32, gva: u64, access: u32): i32 {
  const inspect = sizeof<M>() == 1;
  let table = spptp & addrMask;
  for (let level: u32 = 4; level >= 1; level--) {
    const eh = table + (((gpa >> levelShift(level)) & 511) << 3);
    if (!physOk(eh, 8)) { raiseBus(eh, gva, access); return SPP_EXIT; }
    const e = phys64(eh);
    const leaf = level == 1;
    const present = leaf || (e & SPPT_P) != 0;
    const bad = present && (e & (leaf ? SPPT_LEAF_RSVD : RSVD_NONLEAF | rsvdHigh)) != 0;
    if (inspect) {
      step(STEP_SPP, level, 0, (present ? 0 : STEP_F_NOT_PRESENT) | (bad ? STEP_F_RSVD : 0) | (leaf ? STEP_F_LEAF : 0), eh, eh, e, gpa);
    } else {
      count(CNT_EPT_REFS);
    }
    if (!present) { raise(FAULT_SPP_MISS, gva, gpa, access, level, <u64>EQ_SPP, EXIT_SPP_EVENT, 0); return SPP_EXIT; }
    if (bad) { raise(FAULT_SPP_MISCONFIG, gva, gpa, access, level, 0, EXIT_SPP_EVENT, 0); return SPP_EXIT; }
    if (leaf) {
      sppLeafHpa = eh;
      const last = <u32>((gpa + len - 1) >> 7) & 31;
      for (let i = <u32>(gpa >> 7) & 31; i <= last; i++) {
        if (((e >> (i << 1)) & 1) == 0) { sppDenied = i; return SPP_DENIED; }
      }
      return SPP_GRANTED;
    }
    table = e & addrMask;
  }
  return SPP_EXIT; // not reached: level 1 always returns
}
