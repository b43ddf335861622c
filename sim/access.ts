// One memory access: canonical check, per-page TLB lookup or 2D walk, then the data transfer.
// A straddling access translates every page first (ascending) and stores nothing if one faults.
import {
  ACC_KIND_MASK, ACC_READ, ACC_WRITE, ACC_VALUE, FAULT_GP, FAULT_PF, FAULT_EPT_VIOLATION, FAULT_EPT_MISCONFIG,
  FAULT_PML_FULL, FAULT_SPP_MISS, FAULT_SPP_MISCONFIG, FAULT_BUS, PFEC_P, EXIT_EPT_VIOLATION,
  CNT_ACCESSES, CNT_TLB_HITS, CNT_TLB_MISSES, CNT_PF, CNT_GP, CNT_EPT_VIOLATION, CNT_EPT_MISCONFIG,
  CNT_PML_FULL, CNT_SPP_EVENT, CNT_SPLIT, CNT_BYTES_WRITTEN, CNT_BUS,
} from './consts';
import { physOk, physBase, raise, raiseBus, count, countBy, fKind } from './state';
import { translate, tHpa, tGpa, tFlags, eqAccess, pfCode, guestAllows, VEC_GP, VEC_PF } from './walk';
import { violationCode } from './ept';
import { tlbLookup, tlbFill, tlbDrop, l0Fill, TE_HPA, TE_GPA, TE_FLAGS, TF_RW, TF_US, TF_XD, TF_ER, TF_EW, TF_EX, TF_GD, TF_ED, TF_SPP } from './tlb';

/** HPA of the first byte of the last successful page translation. */
export let pHpa: u64 = 0;
/** HPA of the first byte of the last successful access. */
export let aHpa: u64 = 0;
/** For runBatch, which serves TLB hits without accessOne. */
export function setAHpa(hpa: u64): void { aHpa = hpa; }

@inline export function canonical(a: u64): bool {
  const top = a >> 47;
  return top == 0 || top == 0x1ffff;
}

/** Translates the page of `gva` (TLB first) for `len` bytes of `access`. */
function page(gva: u64, access: u32, len: u32): bool {
  const vpn = (gva & 0x0000ffffffffffff) >> 12;
  const kind = access & ACC_KIND_MASK;
  const ent = tlbLookup(vpn);
  if (ent != 0) {
    const f = load<u32>(ent, TE_FLAGS);
    if (!guestAllows(access, (f & TF_RW) != 0, (f & TF_US) != 0, (f & TF_XD) != 0)) {
      // A fault drops the cached translation (4.10.4.1): stale rights fault once.
      count(CNT_TLB_HITS);
      tlbDrop(ent);
      raise(FAULT_PF, gva, 0, access, (f >> 16) & 15, pfCode(access, PFEC_P), VEC_PF, 0);
      return false;
    }
    // A write through a clean or SPP entry walks again so D, PML and SPP are honoured.
    const rewalk = kind == ACC_WRITE && (f & (TF_GD | TF_ED | TF_SPP)) != (TF_GD | TF_ED);
    if (!rewalk) {
      const perm = (f & TF_ER ? 1 : 0) | (f & TF_EW ? 2 : 0) | (f & TF_EX ? 4 : 0);
      const need = kind == ACC_WRITE ? 2 : kind == ACC_READ ? 1 : 4;
      count(CNT_TLB_HITS);
      const off = gva & 0xfff;
      if ((perm & need) == 0) {
        tlbDrop(ent);
        raise(FAULT_EPT_VIOLATION, gva, load<u64>(ent, TE_GPA) | off, access, (f >> 20) & 15,
          violationCode(eqAccess(kind), perm, 0), EXIT_EPT_VIOLATION, 0);
        return false;
      }
      pHpa = load<u64>(ent, TE_HPA) | off;
      // Served without a fault or a walk: let runBatch serve the page's next accesses from L0.
      l0Fill(gva, ent);
      return true;
    }
    tlbDrop(ent);
  }
  count(CNT_TLB_MISSES);
  if (!translate<u64>(gva, access, len)) return false;
  pHpa = tHpa;
  tlbFill(vpn, tHpa & ~(<u64>0xfff), tGpa & ~(<u64>0xfff), tFlags);
  return true;
}

function countFault(): void {
  const k = fKind;
  if (k == FAULT_PF) count(CNT_PF);
  else if (k == FAULT_GP) count(CNT_GP);
  else if (k == FAULT_EPT_VIOLATION) count(CNT_EPT_VIOLATION);
  else if (k == FAULT_EPT_MISCONFIG) count(CNT_EPT_MISCONFIG);
  else if (k == FAULT_PML_FULL) count(CNT_PML_FULL);
  else if (k == FAULT_SPP_MISS || k == FAULT_SPP_MISCONFIG) count(CNT_SPP_EVENT);
  else if (k == FAULT_BUS) count(CNT_BUS);
}

/** A data byte beyond host memory (counted here, not by the inspection walk). */
function dataBus(hpa: u64, gva: u64, access: u32): bool {
  raiseBus(hpa, gva, access);
  count(CNT_BUS);
  return false;
}

/**
 * Performs one access; `value` points at `size` bytes to store (writes with ACC_VALUE). Inlined
 * into its two callers, runBatch's loop and access(): one call less per record that misses.
 */
@inline export function accessOne(gva: u64, access: u32, size: u32, value: usize): bool {
  const last = gva + <u64>size - 1;
  if (!canonical(gva) || !canonical(last)) {
    raise(FAULT_GP, gva, 0, access, 0, 0, VEC_GP, 0);
    count(CNT_GP);
    return false;
  }
  const store_ = (access & ACC_KIND_MASK) == ACC_WRITE && (access & ACC_VALUE) != 0;
  if (((gva ^ last) >> 12) == 0) {
    if (!page(gva, access, size)) { countFault(); return false; }
    aHpa = pHpa;
    // Memory is reached only once every page has translated.
    if (!physOk(pHpa, size)) return dataBus(pHpa, gva, access);
    if (store_) { memory.copy(physBase + <usize>pHpa, value, size); countBy(CNT_BYTES_WRITTEN, size); }
  } else {
    count(CNT_SPLIT);
    const n1 = <u32>(0x1000 - (gva & 0xfff));
    if (!page(gva, access, n1)) { countFault(); return false; }
    const h1 = pHpa;
    aHpa = h1;
    if (!page(last & ~(<u64>0xfff), access, size - n1)) { countFault(); return false; }
    if (!physOk(h1, n1)) return dataBus(h1, gva, access);
    if (!physOk(pHpa, size - n1)) return dataBus(pHpa, last & ~(<u64>0xfff), access);
    if (store_) {
      memory.copy(physBase + <usize>h1, value, n1);
      memory.copy(physBase + <usize>pHpa, value + n1, size - n1);
      countBy(CNT_BYTES_WRITTEN, size);
    }
  }
  count(CNT_ACCESSES);
  return true;
}
