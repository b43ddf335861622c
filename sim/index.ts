// The simulator's WASM exports. Layout: host-physical memory at PHYS_BASE, control areas after it.
import { CNT_COUNT, FR_SIZE, STEP_MAX, STEP_SIZE, FAULT_NONE, FAULT_GP, REC_SIZE } from './consts';
import {
  setLayout, setSizes, setMaxPhyAddr, setGuest as stGuest, setEpt as stEpt, setVpid as stVpid,
  setPml as stPml, setSpp as stSpp, pmlIndex, resetCounters as stResetCounters, commitFault, clearFault,
  raise, raiseBus, physOk, fKind, cntBase, faultBase, stepBase, dlogBase, batchBase, valueBase, physBase, PHYS_BASE, tlbSets, tlbWays,
} from './state';
import { PSC_ENTRY } from './psc';
import { pteReserved } from './pte';
import { eptMisconfig, eptMisconfigBitsOf, eptMisconfigured } from './ept';
import { tlbBytes, tlbLayout, l0Bytes, l0Flush, invlpg as tlbInvlpg, invvpid as tlbInvvpid, invept as tlbInvept, tlbKeysPtr as tlbKeys, tlbEntriesPtr as tlbEntries } from './tlb';
import { accessOne, aHpa, canonical } from './access';
import { translate, tHpa, VEC_GP } from './walk';
import { runBatch as batchRun, status, dlogCount as dlCount, dlogReset as dlReset } from './batch';
import { resetSteps, stepCount as stCount } from './inspect';

export const ERR_TOO_BIG: i32 = 1;
/** TLB sets or PDE-cache entries not a power of two */
export const ERR_SETS: i32 = 2;
export const ERR_MAXPHYADDR: i32 = 3;

@inline function align64(v: u64, a: u64): u64 { return (v + a - 1) & ~(a - 1); }

/**
 * Lays out memory for `physBytes` of host memory (at PHYS_BASE), then the counters, fault record,
 * inspection steps, a TLB of sets x ways and its L0 mirror, a PDE cache of pscN entries (0: none),
 * and the dirty-log, batch and value areas. Everything starts zeroed. Returns 0 or an ERR_* code.
 */
export function init(physBytes: u64, sets: u32, ways: u32, pscN: u32, dlogCap: u32, batchCap: u32, valueCap: u32, maxPhy: u32): i32 {
  if (sets == 0 || (sets & (sets - 1)) != 0) return ERR_SETS;
  if ((pscN & (pscN - 1)) != 0) return ERR_SETS;
  if (maxPhy < 36 || maxPhy > 52) return ERR_MAXPHYADDR;
  if (<usize>__heap_base > PHYS_BASE) unreachable(); // static data grew into host memory: raise PHYS_BASE
  // Laid out in 64 bits: nothing may wrap before the size check.
  const phys = <u64>PHYS_BASE;
  let p = align64(phys + physBytes, 64);
  const cnt = p; p += <u64>CNT_COUNT << 3;
  const fault = p; p += <u64>FR_SIZE;
  const steps = p; p += <u64>STEP_MAX * <u64>STEP_SIZE;
  const tlb = align64(p, 64); p = tlb + tlbBytes(sets, ways);
  const l0 = align64(p, 64); p = l0 + <u64>l0Bytes();
  const psc = align64(p, 64); p = psc + <u64>pscN * <u64>PSC_ENTRY;
  const dlog = align64(p, 64); p = dlog + (<u64>dlogCap << 4);
  const batch = align64(p, 64); p = batch + <u64>batchCap * <u64>REC_SIZE;
  const value = p;
  const end = value + <u64>valueCap;
  if (end > 0xffff0000) return ERR_TOO_BIG;
  const pages = <i32>((end + 0xffff) >> 16);
  const have = memory.size();
  if (pages > have && memory.grow(pages - have) < 0) return ERR_TOO_BIG;
  // Grown pages arrive zeroed; filling them would commit every simulated byte up front.
  const old = <u64>have << 16;
  if (old > phys) memory.fill(<usize>phys, 0, <usize>((end < old ? end : old) - phys));
  setLayout(<usize>cnt, <usize>fault, <usize>steps, <usize>tlb, <usize>l0, <usize>psc, <usize>dlog, <usize>batch, <usize>value);
  setSizes(physBytes, sets, ways, pscN, dlogCap, batchCap, valueCap);
  setMaxPhyAddr(maxPhy);
  tlbLayout();
  l0Flush();
  dlReset();
  return 0;
}

export function cntPtr(): usize { return cntBase; }
export function faultPtr(): usize { return faultBase; }
export function stepPtr(): usize { return stepBase; }
export function dlogPtr(): usize { return dlogBase; }
export function batchPtr(): usize { return batchBase; }
export function valuePtr(): usize { return valueBase; }
export function physPtr(): usize { return physBase; }
/** The TLB's key and entry arrays and its geometry, for read-only views (sim/tlb.ts has the layout). */
export function tlbKeysPtr(): usize { return tlbKeys(); }
export function tlbEntriesPtr(): usize { return tlbEntries(); }
export function tlbSetCount(): u32 { return tlbSets; }
export function tlbWayCount(): u32 { return tlbWays; }

// The L0 mirrors entries of one context under one WP and NXE (sim/tlb.ts): any change empties it.
export function setGuest(cr3: u64, wp: bool, nxe: bool, gbPages: bool): void { l0Flush(); stGuest(cr3, wp, nxe, gbPages); }
export function setEpt(eptp: u64, execOnly: bool, gbPages: bool): void { l0Flush(); stEpt(eptp, execOnly, gbPages); }
export function setVpid(v: u32): void { l0Flush(); stVpid(v); }
export function setPml(enabled: bool, address: u64, index: u32): void { stPml(enabled, address, index); }
export function getPmlIndex(): u32 { return pmlIndex; }
export function setSpp(enabled: bool, spptp: u64): void { stSpp(enabled, spptp); }
export function resetCounters(): void { stResetCounters(); }

/** One architectural access. Returns the FAULT_* kind (0: done, HPA in lastHpa()). */
export function access(gva: u64, acc: u32, size: u32, value: usize): i32 {
  clearFault();
  if (accessOne(gva, acc, size, value)) return FAULT_NONE;
  commitFault(0);
  return fKind;
}
export function lastHpa(): u64 { return aHpa; }

/** The inspection walk of the page of `gva`: steps recorded, nothing changed. */
export function inspect(gva: u64, acc: u32): i32 {
  resetSteps();
  clearFault();
  if (!canonical(gva)) raise(FAULT_GP, gva, 0, acc, 0, 0, VEC_GP, 0);
  else if (translate<u8>(gva, acc, 1)) {
    inspectHpa = tHpa;
    if (!physOk(tHpa, 1)) raiseBus(tHpa, gva, acc);
  }
  if (fKind != FAULT_NONE) commitFault(0);
  return fKind;
}
let inspectHpa: u64 = 0;
export function inspectResultHpa(): u64 { return inspectHpa; }
export function stepCount(): u32 { return stCount; }

export function runBatch(start: u32, end: u32, handlers: u32): u32 { return batchRun(start, end, handlers); }
export function batchStatus(): i32 { return status; }
export function dlogCount(): u32 { return dlCount; }
export function dlogReset(): void { dlReset(); }

export function invlpg(gva: u64): void { tlbInvlpg(gva); }
export function invvpid(type: i32, v: u32, gva: u64): void { tlbInvvpid(type, v, gva); }
export function invept(type: i32, eptp: u64): void { tlbInvept(type, eptp); }

/** Reserved bits set in guest entry `e` at `level` under the current vCPU state (for tools). */
export function pteReservedBits(e: u64, level: u32): u64 { return pteReserved(e, level); }
/** EPT_MISCONF_* for entry `e` at `level` (for tools), and the bits that reason is about. */
export function eptMisconfigReason(e: u64, level: u32): i32 { return eptMisconfig(e, level); }
export function eptMisconfigBits(e: u64, reason: i32): u64 { return eptMisconfigBitsOf(e, reason); }
/** The walk's own misconfiguration test, for checking that it agrees with eptMisconfigReason. */
export function eptIsMisconfigured(e: u64, level: u32): bool { return eptMisconfigured(e, level); }
