// The 2D walk (SDM Vol. 3A 4.5 with Vol. 3C 29.3.3): each guest paging-structure entry is located
// by translating its GPA through the EPT, then read; the final GPA is translated once more.
// A cold 4 KiB/4 KiB translation reads 4 x (4 + 1) + 4 = 24 entries.
import {
  PTE_P, PTE_RW, PTE_US, PTE_XD, PTE_A, PTE_D, PTE_G, PTE_PS, EPT_SPP,
  PFEC_P, PFEC_WR, PFEC_US, PFEC_RSVD, PFEC_ID, EQ_READ, EQ_WRITE, EQ_FETCH,
  ACC_WRITE, ACC_FETCH, ACC_READ, ACC_USER, ACC_KIND_MASK,
  FAULT_PF, FAULT_EPT_VIOLATION, EXIT_EPT_VIOLATION,
  STEP_GUEST, STEP_F_LEAF, STEP_F_NOT_PRESENT, STEP_F_RSVD,
  CNT_WALKS, CNT_GUEST_REFS, CNT_EPT_REFS, CNT_AD_WRITES, CNT_PSC_HITS,
} from './consts';
import { pscLookup, pscFill, pscTable, pscRights } from './psc';
import {
  cr3, addrMask, physLast, guestLeafMask, guestPointerMask, cr0Wp, efNxe, eptAd, pmlIndex,
  phys64, setPhys64, raise, raiseBus, count, countBy,
} from './state';
import { levelShift, pteReserved, pteIsLeaf } from './pte';
import { eptTranslate, eHpa, ePerm, eLevel, eLeafVal, violationCode } from './ept';
import { step, patchLastFlags } from './inspect';
import { TF_RW, TF_US, TF_XD, TF_ER, TF_EW, TF_EX, TF_GD, TF_ED, TF_SPP, TF_G } from './tlb';

/** Vector numbers stored as the exit-reason field of guest exceptions. */
export const VEC_PF: u32 = 14;
export const VEC_GP: u32 = 13;

// Per guest level (index 1..4) of the last walk: the entry's HPA with the EPT rights (bits 58:56)
// and EPT leaf level (bits 62:60) of the translation that located it, and the entry as read (for
// the A/D updates, the PDE cache and the write-protect handler).
const wHpa = memory.data(40);
const wVal = memory.data(40);
const W_HPA: u64 = (<u64>1 << 52) - 1;
@inline function wEptPerm(w: u64): u32 { return <u32>(w >> 56) & 7; }
@inline function wEptLevel(w: u64): u32 { return <u32>(w >> 60) & 7; }

// Result of the last successful translation of one page.
export let tHpa: u64 = 0;
export let tGpa: u64 = 0;
/** TF_* flags for the TLB and guest/EPT leaf levels in bits 19:16 and 23:20 */
export let tFlags: u32 = 0;
/** guest leaf level and its entry's HPA (for the write-protect handler) */
export let tLeafLevel: u32 = 0;
export let tLeafHpa: u64 = 0;

@inline export function eqAccess(kind: u32): u32 {
  return kind == ACC_WRITE ? EQ_WRITE : kind == ACC_FETCH ? EQ_FETCH : EQ_READ;
}

/** #PF error code (4.7) for `access` with the P and RSVD bits given. */
@inline export function pfCode(access: u32, bits: u32): u64 {
  const kind = access & ACC_KIND_MASK;
  return <u64>(bits | (kind == ACC_WRITE ? PFEC_WR : 0) | ((access & ACC_USER) != 0 ? PFEC_US : 0)
    | (kind == ACC_FETCH && efNxe ? PFEC_ID : 0));
}

/** Access rights (4.6) from R/W and U/S ANDed and XD ORed over the levels. */
@inline export function guestAllows(access: u32, rw: bool, us: bool, xd: bool): bool {
  const kind = access & ACC_KIND_MASK;
  const user = (access & ACC_USER) != 0;
  if (kind == ACC_READ) return !user || us;
  if (kind == ACC_WRITE) return user ? us && rw : rw || !cr0Wp;
  return (!user || us) && !(efNxe && xd);
}

/**
 * Translates the page of `gva` for `access` (`len` bytes from `gva`, inside one page). M = u64:
 * the architectural walk; M = u8: the inspection walk (steps recorded, nothing changed, outcome
 * identical to the architectural walk with cold TLB). Returns false with the fault raised.
 */
export function translate<M>(gva: u64, access: u32, len: u32): bool {
  const inspect = sizeof<M>() == 1;
  const kind = access & ACC_KIND_MASK;
  const write = kind == ACC_WRITE;
  // Guest paging-structure accesses are reads, or writes for EPT when EPT A/D is on (29.3.5).
  const psAcc: u32 = eptAd ? EQ_READ | EQ_WRITE : EQ_READ;
  const pml0 = pmlIndex;

  let table = cr3 & addrMask;
  let level: u32 = 4;
  // A cached PDE lets the architectural walk start at the page table (never the inspection),
  // with the rights of the levels above.
  let pscRw = true, pscUs = true, pscXd = false;
  if (!inspect && pscLookup(gva)) {
    table = pscTable;
    pscRw = (pscRights & 1) != 0; pscUs = (pscRights & 2) != 0; pscXd = (pscRights & 4) != 0;
    level = 1;
    count(CNT_PSC_HITS);
  }
  const top = level;
  let e: u64 = 0;
  let hpaE: u64 = 0;
  // The loop carries no more than it must (its state competes for registers with the EPT walks
  // inlined into it): what the levels have in common is worked out from wHpa and wVal after it.
  while (true) {
    const gpaE = table + (((gva >> levelShift(level)) & 511) << 3);
    if (!eptTranslate<M>(gpaE, psAcc, 8, gva, access, level)) {
      countWalk<M>(top, level + 1, level + 1);
      return false;
    }
    store<u64>(wHpa + (<usize>level << 3), eHpa | (<u64>ePerm << 56) | (<u64>eLevel << 60));
    hpaE = eHpa;
    if (hpaE > physLast) {
      countWalk<M>(top, level, level + 1);
      raiseBus(hpaE, gva, access);
      return false;
    }
    e = phys64(hpaE);
    if (inspect) step(STEP_GUEST, level, level, 0, gpaE, hpaE, e, gva);
    store<u64>(wVal + (<usize>level << 3), e);
    // The common entries are decided by one mask test each (state.ts derives the masks);
    // pteReserved runs only for the rest. A present entry with none of the bits every level
    // reserves (51:MAXPHYADDR, and XD without NXE) is a well-formed PTE at level 1, and with PS
    // clear too a well-formed table pointer above.
    if ((e & (level == 1 ? guestLeafMask : guestPointerMask)) == PTE_P) {
      if (level == 1) break;
      table = e & addrMask;
      level--;
      continue;
    }
    if ((e & PTE_P) == 0) {
      countWalk<M>(top, level, level);
      if (inspect) patchLastFlags(STEP_F_NOT_PRESENT);
      raise(FAULT_PF, gva, 0, access, level, pfCode(access, 0), VEC_PF, 0);
      return false;
    }
    if (pteReserved(e, level) != 0) {
      countWalk<M>(top, level, level);
      if (inspect) patchLastFlags(STEP_F_RSVD);
      raise(FAULT_PF, gva, 0, access, level, pfCode(access, PFEC_P | PFEC_RSVD), VEC_PF, 0);
      return false;
    }
    if (pteIsLeaf(e, level)) break;
    table = e & addrMask;
    level--;
  }
  if (inspect) patchLastFlags(STEP_F_LEAF);
  const size: u64 = <u64>1 << levelShift(level);
  const gpa = (e & addrMask & ~(size - 1)) | (gva & (size - 1));
  // Access rights (4.6): R/W and U/S ANDed, XD ORed over the levels; and whether every entry
  // had A as read.
  let andAll: u64 = ~(<u64>0), orAll: u64 = 0;
  for (let l = top; l >= level; l--) {
    const v = load<u64>(wVal + (<usize>l << 3));
    andAll &= v;
    orAll |= v;
  }
  const rw = pscRw && (andAll & PTE_RW) != 0, us = pscUs && (andAll & PTE_US) != 0, xd = pscXd || (orAll & PTE_XD) != 0;

  if (!guestAllows(access, rw, us, xd)) {
    countWalk<M>(top, level, level);
    raise(FAULT_PF, gva, 0, access, level, pfCode(access, PFEC_P), VEC_PF, 0);
    return false;
  }

  // Guest A/D (4.8), top down, each a locked write to the entry's GPA that needs EPT W. Skipped
  // when every entry had A as read and no D is due: then there is nothing to write or check, as
  // long as nothing cleared an A or D flag since the entries were read. The only memory writes
  // in between are EPT A/D flags (bits 8 and 9, never 5 or 6, whatever an entry may alias) and
  // PML log entries (whole words), and the PML index tells whether any was logged.
  const dueD = write && (e & PTE_D) == 0;
  if ((andAll & PTE_A) == 0 || dueD || pmlIndex != pml0) {
    for (let l: u32 = top; l >= level; l--) {
      const w = load<u64>(wHpa + (<usize>l << 3));
      const at = w & W_HPA;
      const v = inspect ? load<u64>(wVal + (<usize>l << 3)) : phys64(at);
      const need = ((v & PTE_A) == 0 ? PTE_A : 0) | (l == level && write && (v & PTE_D) == 0 ? PTE_D : 0);
      if (need == 0) continue;
      if ((wEptPerm(w) & 2) == 0) {
        // the entry's GPA, from the table that the level above (as read) or the walk's start named
        const t = l != top ? load<u64>(wVal + (<usize>(l + 1) << 3)) & addrMask : top == 4 ? cr3 & addrMask : pscTable;
        countWalk<M>(top, level, level);
        raise(FAULT_EPT_VIOLATION, gva, t + (((gva >> levelShift(l)) & 511) << 3), access, wEptLevel(w),
          violationCode(EQ_READ | EQ_WRITE, wEptPerm(w), l), EXIT_EPT_VIOLATION, l);
        return false;
      }
      if (!inspect) { setPhys64(at, v | need); count(CNT_AD_WRITES); }
    }
  }
  // Cache the PDE once the entries above the page table are known good and accessed.
  if (!inspect && top == 4 && level == 1) {
    const w2 = load<u64>(wVal + 16), w3 = load<u64>(wVal + 24), w4 = load<u64>(wVal + 32);
    pscFill(gva, w2 & addrMask, ((w2 & w3 & w4 & PTE_RW) != 0 ? 1 : 0) | ((w2 & w3 & w4 & PTE_US) != 0 ? 2 : 0)
      | (((w2 | w3 | w4) & PTE_XD) != 0 ? 4 : 0));
  }
  tLeafLevel = level;
  tLeafHpa = hpaE;
  const leafD = write || (e & PTE_D) != 0;

  if (!eptTranslate<M>(gpa, eqAccess(kind), len, gva, access, 0)) { countWalk<M>(top, level, level); return false; }
  countWalk<M>(top, level, level, 5 - eLevel); // and the final GPA's translation
  tHpa = eHpa;
  tGpa = gpa;
  tFlags = (rw ? TF_RW : 0) | (us ? TF_US : 0) | (xd ? TF_XD : 0)
    | ((ePerm & 1) != 0 ? TF_ER : 0) | ((ePerm & 2) != 0 ? TF_EW : 0) | ((ePerm & 4) != 0 ? TF_EX : 0)
    | (leafD ? TF_GD : 0) | (!eptAd || (eLeafVal & (1 << 9)) != 0 ? TF_ED : 0)
    | (eLevel == 1 && (eLeafVal & EPT_SPP) != 0 ? TF_SPP : 0) | ((e & PTE_G) != 0 ? TF_G : 0)
    | (level << 16) | (eLevel << 20);
  return true;
}

/**
 * Counts a walk and its references once, as it ends (the architectural walk only): guest entries
 * read at levels top..guestLow, and the EPT translations of levels top..eptLow that completed
 * (wHpa has their leaf levels; a translation that failed counted its own), plus `ept` more.
 */
function countWalk<M>(top: u32, eptLow: u32, guestLow: u32, ept: u32 = 0): void {
  if (sizeof<M>() == 1) return;
  count(CNT_WALKS);
  countBy(CNT_GUEST_REFS, <u64>(top + 1 - guestLow));
  for (let l = top; l >= eptLow; l--) ept += 5 - wEptLevel(load<u64>(wHpa + (<usize>l << 3)));
  countBy(CNT_EPT_REFS, <u64>ept);
}

/** The guest level's recorded entry (for handlers after an inspection walk). */
export function walkEntryVal(level: u32): u64 { return load<u64>(wVal + (<usize>level << 3)); }
