// EPT paging-structure entries (SDM Vol. 3C 29.3.2, Tables 29-1..29-6) and the architectural
// and inspection EPT walks (29.3.3), with EPT accessed/dirty flags (29.3.5).
//
//  63   62   61   60:52   51:M  M-1:12   11     10   9  8  7   6     5:3  2  1  0
//  SVE  ign. SPP  ignored rsvd  address  SW_WP ign. D  A  PS  IPAT  MT   X  W  R
//
// Bits 2:0 = 000b: not present. PML4E reserves bits 7:3; a non-leaf PDPTE/PDE reserves 6:3;
// a 1 GiB leaf reserves 29:12 and a 2 MiB leaf 20:12. D exists in leaves only.
import {
  EPT_MT, EPT_MISCONF_NONE, EPT_MISCONF_WRITE_NO_READ, EPT_MISCONF_EXEC_ONLY, EPT_MISCONF_HIGH, EPT_MISCONF_PML4E,
  EPT_MISCONF_POINTER, EPT_MISCONF_NO_1G, EPT_MISCONF_MEMTYPE, EPT_MISCONF_1G_BITS, EPT_MISCONF_2M_BITS,
  EPT_R, EPT_PS, EPT_A, EPT_D, EPT_SPP, EPT_W, EQ_READ, EQ_WRITE, EQ_FETCH, EQ_GLA_VALID, EQ_GLA_XLATE,
  EQ_SPP, FAULT_EPT_VIOLATION, FAULT_EPT_MISCONFIG, FAULT_PML_FULL, EXIT_EPT_VIOLATION,
  EXIT_EPT_MISCONFIG, EXIT_PML_FULL, STEP_EPT, STEP_F_LEAF, STEP_F_NOT_PRESENT, STEP_F_RSVD,
  CNT_EPT_REFS, CNT_AD_WRITES,
} from './consts';
import {
  rsvdHigh, eptExecOnly, eptGbPages, eptRoot, eptAd, addrMask, sppEnabled, pmlEnabled, pmlIndex,
  physLast, eptPointerMask, eptPointerWant, eptLeafMask, phys64, setPhys64, raise, raiseBus, count, countBy,
} from './state';
import { levelShift } from './pte';
import { pmlLog } from './pml';
import { sppAllows, SPP_DENIED, SPP_GRANTED } from './spp';
import { step } from './inspect';

/** bits 29:12: reserved in an EPT PDPTE that maps a 1 GiB page */
const RSVD_1G: u64 = 0x3ffff000;
/** bits 20:12: reserved in an EPT PDE that maps a 2 MiB page */
const RSVD_2M: u64 = 0x1ff000;

/**
 * EPT misconfiguration (29.3.3.1) of a present entry at `level`: the walk's test. Inlined: as a
 * call inside the walk's loop it made the JIT spill the loop's values on every level. It is the
 * same rule as eptMisconfig below, which says why for tools; this boolean form keeps the walk
 * about 3% faster, and test/walkfmt.test.ts checks the two agree on random entries.
 */
@inline export function eptMisconfigured(e: u64, level: u32): bool {
  const rwx = e & 7;
  if (rwx == 2 || rwx == 6) return true; // write without read
  if (rwx == 4 && !eptExecOnly) return true;
  if ((e & rsvdHigh) != 0) return true;
  if (level == 4) return (e & 0xf8) != 0;
  if (level != 1 && (e & EPT_PS) == 0) return (e & 0x78) != 0;
  if (level == 3 && !eptGbPages) return true;
  const mt = (e >> 3) & 7;
  if (mt == 2 || mt == 3 || mt == 7) return true;
  if (level == 3) return (e & RSVD_1G) != 0;
  if (level == 2) return (e & RSVD_2M) != 0;
  return false;
}

/** Why a present entry at `level` is misconfigured (29.3.3.1), as an EPT_MISCONF_* code (tools). */
export function eptMisconfig(e: u64, level: u32): i32 {
  const rwx = e & 7;
  if (rwx == 2 || rwx == 6) return EPT_MISCONF_WRITE_NO_READ;
  if (rwx == 4 && !eptExecOnly) return EPT_MISCONF_EXEC_ONLY;
  if ((e & rsvdHigh) != 0) return EPT_MISCONF_HIGH;
  if (level == 4) return (e & 0xf8) != 0 ? EPT_MISCONF_PML4E : EPT_MISCONF_NONE;
  if (level != 1 && (e & EPT_PS) == 0) return (e & 0x78) != 0 ? EPT_MISCONF_POINTER : EPT_MISCONF_NONE;
  if (level == 3 && !eptGbPages) return EPT_MISCONF_NO_1G;
  const mt = (e >> 3) & 7;
  if (mt == 2 || mt == 3 || mt == 7) return EPT_MISCONF_MEMTYPE;
  if (level == 3) return (e & RSVD_1G) != 0 ? EPT_MISCONF_1G_BITS : EPT_MISCONF_NONE;
  if (level == 2) return (e & RSVD_2M) != 0 ? EPT_MISCONF_2M_BITS : EPT_MISCONF_NONE;
  return EPT_MISCONF_NONE;
}

/** The bits of `e` that an eptMisconfig() `reason` is about (for tools). */
export function eptMisconfigBitsOf(e: u64, reason: i32): u64 {
  if (reason == EPT_MISCONF_WRITE_NO_READ || reason == EPT_MISCONF_EXEC_ONLY) return e & 7;
  if (reason == EPT_MISCONF_HIGH) return e & rsvdHigh;
  if (reason == EPT_MISCONF_PML4E) return e & 0xf8;
  if (reason == EPT_MISCONF_POINTER) return e & 0x78;
  if (reason == EPT_MISCONF_NO_1G) return e & EPT_PS;
  if (reason == EPT_MISCONF_MEMTYPE) return e & EPT_MT;
  if (reason == EPT_MISCONF_1G_BITS) return e & RSVD_1G;
  if (reason == EPT_MISCONF_2M_BITS) return e & RSVD_2M;
  return 0;
}

@inline export function eptIsLeaf(e: u64, level: u32): bool { return level == 1 || (e & EPT_PS) != 0; }

// Results of the last successful EPT translation.
export let eHpa: u64 = 0;
/** R/W/X ANDed over the entries used */
export let ePerm: u32 = 0;
/** R/W/X ANDed over the entries above the leaf (set by the inspection walk only) */
export let eUpperPerm: u32 = 0;
export let eLevel: u32 = 0;
/** the leaf's HPA (set by the inspection walk only: the EPT write-protect handler's) */
export let eLeafHpa: u64 = 0;
/** the leaf after this translation's A/D updates */
export let eLeafVal: u64 = 0;

/**
 * Table-address predictions for the walk below: for each guest level whose entry an EPT
 * translation locates (0: the final GPA), the EPT tables it used at levels 3..1 last time.
 * Translations from one slot mostly go through the same tables (guest tables sit together, and
 * so does data), so the guess is usually right.
 */
const tablePredictions = memory.data(5 * 32);

/** Memory types 2, 3 and 7 (bits set in this mask, by type) are reserved in a leaf. */
const MT_RESERVED: u32 = 0x8c;

/**
 * Translates `gpa` for an access of `acc` (EQ_READ / EQ_WRITE / EQ_FETCH bits) of `len` bytes.
 * `guestLevel` is the guest level whose entry is being located (0: the final GPA); `gva` and
 * `access` describe the linear access for the fault record. M = u64: the architectural walk
 * (sets A/D, logs to PML); M = u8: the inspection walk (records steps, changes nothing).
 * Returns false with the fault raised.
 *
 * EPT references: a translation that fails counts its own; one that succeeds read 5 - eLevel
 * entries, which the caller (translate) counts together with the rest of its walk.
 *
 * Inlined: translate runs five of these per walk, and a call would save and restore all of its
 * live values around each one.
 */
@inline export function eptTranslate<M>(gpa: u64, acc: u32, len: u32, gva: u64, access: u32, guestLevel: u32): bool {
  const inspect = sizeof<M>() == 1;
  // The common entries are decided by one mask test each (state.ts derives the masks);
  // eptMisconfigured runs only for the rest. With R set an entry is present and neither
  // write-only nor execute-only; with bits 51:MAXPHYADDR clear too it is a well-formed 4 KiB leaf
  // unless its memory type is reserved. Above level 1, with bits 7:3 clear as well it is a
  // well-formed table pointer; the test also asks for W, X and (with EPT A/D) A, so that such
  // entries leave the rights and the "A everywhere" summary unchanged and the loop need not fold
  // them in.
  let table = eptRoot;
  let level: u32 = 4;
  const predict = tablePredictions + (<usize>guestLevel << 5); // this translation's slot
  let e: u64 = 0;
  let eh: u64 = 0;
  // AND of the entries above the current one as read (rights in bits 2:0; EPT_A set: no accessed
  // flag is due there), apart from those that passed the fast test.
  let andUpper: u64 = ~(<u64>0);
  let shift: u64 = 36; // levelShift(level) - 3: (gpa >> shift) & 0xff8 is the entry's offset
  while (true) {
    eh = table + ((gpa >> shift) & 0xff8);
    if (eh > physLast) {
      if (!inspect) countBy(CNT_EPT_REFS, <u64>(4 - level));
      raiseBus(eh, gva, access);
      return false;
    }
    e = phys64(eh);
    if (level > 1) {
      if ((e & eptPointerMask) == eptPointerWant) {
        if (inspect) step(STEP_EPT, level, guestLevel, 0, eh, eh, e, gpa);
        level--;
        shift -= 9;
        // The next table is e & addrMask. Taken instead from a prediction (the table this slot
        // used at that level last time, then checked against e), the next entry's address does
        // not wait for e: the processor reads the levels of a walk in parallel instead of one
        // after another, and a wrong guess costs a branch miss and a reload. Either way the
        // entries read are exactly those of the architectural walk.
        const slot = predict + (<usize>level << 3);
        const next = e & addrMask;
        table = load<u64>(slot);
        if (table != next) {
          table = next;
          store<u64>(slot, next); // a store, not a select, keeps this a branch
        }
        continue;
      }
    } else if ((e & eptLeafMask) == EPT_R && ((MT_RESERVED >> <u32>((e >> 3) & 7)) & 1) == 0) {
      if (inspect) step(STEP_EPT, level, guestLevel, STEP_F_LEAF, eh, eh, e, gpa);
      break;
    }
    // Anything else, in the order 29.3.3 gives: not present, misconfigured, leaf or pointer.
    const present = (e & 7) != 0;
    const bad = present && eptMisconfigured(e, level);
    const leaf = present && !bad && eptIsLeaf(e, level);
    if (inspect) {
      step(STEP_EPT, level, guestLevel, (present ? 0 : STEP_F_NOT_PRESENT) | (bad ? STEP_F_RSVD : 0) | (leaf ? STEP_F_LEAF : 0), eh, eh, e, gpa);
    }
    if (!present) {
      if (!inspect) countBy(CNT_EPT_REFS, <u64>(5 - level));
      raise(FAULT_EPT_VIOLATION, gva, gpa, access, level, violationCode(acc, 0, guestLevel), EXIT_EPT_VIOLATION, guestLevel);
      return false;
    }
    if (bad) {
      if (!inspect) countBy(CNT_EPT_REFS, <u64>(5 - level));
      raise(FAULT_EPT_MISCONFIG, gva, gpa, access, level, 0, EXIT_EPT_MISCONFIG, guestLevel);
      return false;
    }
    if (leaf) break;
    andUpper &= e;
    table = e & addrMask;
    level--;
    shift -= 9;
  }
  const andAll = andUpper & e;
  const perm = <u32>(andAll & 7);
  const offset: u64 = level == 1 ? 0xfff : (<u64>1 << levelShift(level)) - 1;
  eHpa = (e & addrMask & ~offset) | (gpa & offset);
  ePerm = perm;
  eLevel = level;
  eLeafVal = e;
  if (inspect) {
    eUpperPerm = <u32>(andUpper & 7);
    eLeafHpa = eh;
  }

  // Rights (29.3.3.2): a read needs R, a write W, a fetch X, ANDed over every level (EQ_READ,
  // EQ_WRITE and EQ_FETCH are bits 0, 1 and 2, as R, W and X are). A write that lacks W through a
  // 4 KiB leaf with SPP set is decided by the sub-page permissions.
  if ((acc & ~perm & 7) != 0) {
    const sppWrite = acc == EQ_WRITE && guestLevel == 0 && sppEnabled && (perm & 1) != 0 && level == 1 && (e & EPT_SPP) != 0;
    if (!sppWrite) {
      if (!inspect) countBy(CNT_EPT_REFS, <u64>(5 - level));
      raise(FAULT_EPT_VIOLATION, gva, gpa, access, level, violationCode(acc, perm, guestLevel), EXIT_EPT_VIOLATION, guestLevel);
      return false;
    }
    const s = sppAllows<M>(gpa, len, gva, access);
    if (s != SPP_GRANTED) {
      if (!inspect) countBy(CNT_EPT_REFS, <u64>(5 - level));
      if (s == SPP_DENIED) {
        raise(FAULT_EPT_VIOLATION, gva, gpa, access, level, violationCode(acc, perm, guestLevel) | EQ_SPP, EXIT_EPT_VIOLATION, guestLevel);
      }
      return false;
    }
  }

  if (!eptAd) return true;
  // EPT A/D (29.3.5): A in every entry used; D in the leaf for a write. A D flag going 0 -> 1
  // with PML on needs a free log slot first, or the access ends in a PML-full exit untouched.
  const dirty = (acc & EQ_WRITE) != 0 && (e & EPT_D) == 0;
  if (!dirty) {
    // Nothing has written memory since the entries were read (SPP only reads), so when every one
    // of them had A there is nothing to write: the usual case once a page is warm.
    if (inspect || (andAll & EPT_A) != 0) return true;
  } else if (pmlEnabled && pmlIndex > 511) {
    if (!inspect) countBy(CNT_EPT_REFS, <u64>(5 - level));
    raise(FAULT_PML_FULL, gva, gpa, access, level, 0, EXIT_PML_FULL, guestLevel);
    return false;
  }
  if (inspect) return true;
  // The entries above the leaf, found again from the root: memory is as the loop read it, but
  // for the A flags set here, so the same pointers lead to the same entries.
  let t = eptRoot;
  for (let l: u32 = 4; l > level; l--) {
    const p = t + (((gpa >> levelShift(l)) & 511) << 3);
    const v = phys64(p);
    if ((v & EPT_A) == 0) { setPhys64(p, v | EPT_A); count(CNT_AD_WRITES); }
    t = v & addrMask;
  }
  const v = phys64(eh);
  const want = v | EPT_A | (dirty ? EPT_D : 0);
  if (want != v) { setPhys64(eh, want); count(CNT_AD_WRITES); }
  eLeafVal = want;
  if (dirty && pmlEnabled && (v & EPT_D) == 0) pmlLog(gpa);
  return true;
}

/** Exit qualification of an EPT violation (28.2.1, Table 28-7). */
@inline export function violationCode(acc: u32, perm: u32, guestLevel: u32): u64 {
  return <u64>(acc | (perm << 3) | EQ_GLA_VALID | (guestLevel == 0 ? EQ_GLA_XLATE : 0));
}

/** Is the page at `gpa` writable through an entry chain whose upper levels allow writes? */
@inline export function eptUpperWritable(): bool { return (eUpperPerm & <u32>EPT_W) != 0; }
