// Machine state shared by every structure: the simulated host memory, the vCPU registers and
// VMCS fields that translation reads, the counters, and the last fault. Everything lives in
// WASM linear memory or globals; nothing is allocated per access.
import {
  PTE_P, PTE_PS, PTE_XD, EPT_R, EPT_A, CNT_COUNT, FAULT_NONE, FAULT_BUS,
  ACC_VALUE, FR_KIND, FR_GVA, FR_GPA, FR_ACCESS, FR_LEVEL, FR_CODE, FR_EXIT_REASON, FR_GUEST_LEVEL, FR_INDEX,
} from './consts';

// Layout of linear memory. Host-physical memory starts at a fixed address, PHYS_BASE, right above
// the module's static data: every table and data access adds it to an HPA, and as a constant it
// folds into the load instruction instead of costing an add on the walk's chain of dependent
// loads. init() places the control areas after host memory, so both can be as large as the
// configuration asks.
export let cntBase: usize = 0;
export let faultBase: usize = 0;
export let stepBase: usize = 0;
export let tlbBase: usize = 0;
export let l0Base: usize = 0;
export let pscBase: usize = 0;
export let dlogBase: usize = 0;
export let batchBase: usize = 0;
export let valueBase: usize = 0;
export const PHYS_BASE: usize = 0x10000;
export const physBase: usize = PHYS_BASE;

export let physBytes: u64 = 0;
export let tlbSets: u32 = 0;
export let tlbWays: u32 = 0;
export let pscEntries: u32 = 0;
export let dlogCap: u32 = 0;
export let batchCap: u32 = 0;
export let valueCap: u32 = 0;

// MAXPHYADDR and the masks it implies.
export let maxPhyAddr: u32 = 46;
/** bits MAXPHYADDR-1:12 */
export let addrMask: u64 = 0;
/** bits 51:MAXPHYADDR (reserved in every paging-structure entry) */
export let rsvdHigh: u64 = 0;

// vCPU registers and VMCS fields.
export let cr3: u64 = 0;
export let cr0Wp: bool = true;
export let efNxe: bool = true;
export let gbPages: bool = true;
export let eptp: u64 = 0;
export let eptRoot: u64 = 0;
export let eptAd: bool = false;
export let eptExecOnly: bool = true;
export let eptGbPages: bool = true;
export let vpid: u32 = 0;
export let pmlEnabled: bool = false;
export let pmlAddress: u64 = 0;
export let pmlIndex: u32 = 511;
export let sppEnabled: bool = false;
export let spptp: u64 = 0;

export function setLayout(
  cnt: usize, fault: usize, step: usize, tlb: usize, l0: usize, psc: usize, dlog: usize, batch: usize, value: usize,
): void {
  cntBase = cnt; faultBase = fault; stepBase = step; tlbBase = tlb; l0Base = l0; pscBase = psc;
  dlogBase = dlog; batchBase = batch; valueBase = value;
}
export function setSizes(pb: u64, sets: u32, ways: u32, psc: u32, dlog: u32, batch: u32, value: u32): void {
  physBytes = pb; tlbSets = sets; tlbWays = ways; pscEntries = psc; dlogCap = dlog; batchCap = batch; valueCap = value;
  derive();
}
export function setMaxPhyAddr(m: u32): void {
  maxPhyAddr = m;
  const below: u64 = (<u64>1 << m) - 1;
  addrMask = below & ~(<u64>0xfff);
  rsvdHigh = 0x000fffffffffffff & ~below;
  derive();
}
export function setGuest(c3: u64, wp: bool, nxe: bool, gb: bool): void { cr3 = c3; cr0Wp = wp; efNxe = nxe; gbPages = gb; derive(); }
export function setEpt(p: u64, execOnly: bool, gb: bool): void {
  eptp = p; eptRoot = p & addrMask; eptAd = (p & 0x40) != 0; eptExecOnly = execOnly; eptGbPages = gb;
  derive();
}

// Constants of the walks' common-case tests (sim/walk.ts, sim/ept.ts), kept up to date by the
// setters above. As globals they cost the loops one load each where they are used; as locals
// worked out on entry they were recomputed inside the loops, short of registers.
/** the last HPA where an 8-byte entry lies inside host memory */
export let physLast: u64 = 0;
/** a well-formed guest table pointer: (e & guestPointerMask) == PTE_P */
export let guestPointerMask: u64 = 0;
/** a well-formed guest PTE: (e & guestLeafMask) == PTE_P */
export let guestLeafMask: u64 = 0;
/** an EPT table pointer with R, W, X (and A with EPT A/D) set: (e & eptPointerMask) == eptPointerWant */
export let eptPointerMask: u64 = 0;
export let eptPointerWant: u64 = 0;
/** a present EPT PTE free of reserved bits but for the memory type: (e & eptLeafMask) == EPT_R */
export let eptLeafMask: u64 = 0;
function derive(): void {
  physLast = physBytes - 8;
  // Bits every guest level reserves: 51:MAXPHYADDR, and XD without NXE; PS in a table pointer.
  guestLeafMask = rsvdHigh | (efNxe ? 0 : PTE_XD) | PTE_P;
  guestPointerMask = guestLeafMask | PTE_PS;
  // R set: present, neither write-only nor execute-only; bits 7:3 clear above level 1: no PS,
  // memory type or IPAT, nothing a PML4E reserves.
  eptPointerWant = eptAd ? EPT_A | 7 : 7;
  eptPointerMask = rsvdHigh | 0xf8 | eptPointerWant;
  eptLeafMask = rsvdHigh | EPT_R;
}

export function setVpid(v: u32): void { vpid = v & 0xffff; }
export function setPml(en: bool, addr: u64, index: u32): void { pmlEnabled = en; pmlAddress = addr; pmlIndex = index & 0xffff; }
export function setPmlIndex(index: u32): void { pmlIndex = index & 0xffff; }
export function setSpp(en: bool, p: u64): void { sppEnabled = en; spptp = p; }

// Counters.
@inline export function count(i: i32): void {
  const p = cntBase + (<usize>i << 3);
  store<u64>(p, load<u64>(p) + 1);
}
@inline export function countBy(i: i32, n: u64): void {
  const p = cntBase + (<usize>i << 3);
  store<u64>(p, load<u64>(p) + n);
}
export function resetCounters(): void { memory.fill(cntBase, 0, <usize>CNT_COUNT << 3); }

// Host-physical memory. Bounds are checked on every table read so a broken table reports
// FAULT_BUS instead of reading outside the simulated memory.
@inline export function physOk(hpa: u64, len: u64): bool { return hpa + len <= physBytes; }
// PHYS_BASE as the instruction's constant offset (binaryen would not fold an add into it).
@inline export function phys64(hpa: u64): u64 { return load<u64>(<usize>hpa, PHYS_BASE); }
@inline export function setPhys64(hpa: u64, v: u64): void { store<u64>(<usize>hpa, v, PHYS_BASE); }

// The last fault, written to the fault record by commitFault().
export let fKind: i32 = FAULT_NONE;
export let fGva: u64 = 0;
export let fGpa: u64 = 0;
export let fAccess: u32 = 0;
export let fLevel: u32 = 0;
export let fCode: u64 = 0;
export let fExit: u32 = 0;
export let fGuestLevel: u32 = 0;

export function raise(kind: i32, gva: u64, gpa: u64, access: u32, level: u32, code: u64, exit: u32, guestLevel: u32): void {
  fKind = kind; fGva = gva; fGpa = gpa; fAccess = access; fLevel = level; fCode = code; fExit = exit; fGuestLevel = guestLevel;
}
export function raiseBus(hpa: u64, gva: u64, access: u32): void {
  raise(FAULT_BUS, gva, hpa, access, 0, 0, 0, 0);
}
export function clearFault(): void { fKind = FAULT_NONE; }

// Handlers walk again to find what to fix; the fault they were called for is kept aside.
let sKind: i32 = 0, sGva: u64 = 0, sGpa: u64 = 0, sAccess: u32 = 0, sLevel: u32 = 0, sCode: u64 = 0, sExit: u32 = 0, sGuestLevel: u32 = 0;
export function saveFault(): void {
  sKind = fKind; sGva = fGva; sGpa = fGpa; sAccess = fAccess; sLevel = fLevel; sCode = fCode; sExit = fExit; sGuestLevel = fGuestLevel;
}
export function restoreFault(): void {
  fKind = sKind; fGva = sGva; fGpa = sGpa; fAccess = sAccess; fLevel = sLevel; fCode = sCode; fExit = sExit; fGuestLevel = sGuestLevel;
}
export function commitFault(index: u64): void {
  store<u64>(faultBase + FR_KIND, <u64>fKind);
  store<u64>(faultBase + FR_GVA, fGva);
  store<u64>(faultBase + FR_GPA, fGpa);
  store<u64>(faultBase + FR_ACCESS, <u64>(fAccess & ~ACC_VALUE)); // a record flag, not part of the access
  store<u64>(faultBase + FR_LEVEL, <u64>fLevel);
  store<u64>(faultBase + FR_CODE, fCode);
  store<u64>(faultBase + FR_EXIT_REASON, <u64>fExit);
  store<u64>(faultBase + FR_GUEST_LEVEL, <u64>fGuestLevel);
  store<u64>(faultBase + FR_INDEX, index);
}

