// Guest paging-structure entries, IA-32e 4-level paging (SDM Vol. 3A 4.5, Tables 4-15..4-20).
//
//  63  62:55   54:52     51:M  M-1:12   11:10  9      8  7     6  5  4   3   2   1   0
//  XD  ignored SW_GROUP  rsvd  address  ign.   SW_WP  G  PS/PAT D  A  PCD PWT U/S R/W P
//
// SW_GROUP and SW_WP are granule's, in bits the hardware ignores (the monitor's protection group).
//
// PS is reserved in a PML4E, selects a 1 GiB page in a PDPTE and a 2 MiB page in a PDE.
// A page-mapping PDPTE reserves bits 29:13 and a page-mapping PDE bits 20:13 (bit 12 is PAT).
import { PTE_PS, PTE_XD } from './consts';
import { rsvdHigh, efNxe, gbPages } from './state';

/** bits 29:13: reserved in a PDPTE that maps a 1 GiB page */
const RSVD_1G: u64 = 0x3fffe000;
/** bits 20:13: reserved in a PDE that maps a 2 MiB page */
const RSVD_2M: u64 = 0x1fe000;

/** Index-field shift of a level (4 PML4 .. 1 PT), which is also the page shift of a leaf there. */
@inline export function levelShift(level: u32): u64 { return <u64>(3 + 9 * level); }

/** Reserved bits set in a present guest entry at `level` (non-zero = #PF with RSVD). */
@inline export function pteReserved(e: u64, level: u32): u64 {
  let r = rsvdHigh;
  if (!efNxe) r |= PTE_XD;
  if (level == 4) r |= PTE_PS;
  else if ((e & PTE_PS) != 0) {
    if (level == 3) r |= gbPages ? RSVD_1G : PTE_PS;
    else if (level == 2) r |= RSVD_2M;
  }
  return e & r;
}

/** Does a present, well-formed guest entry map a page (rather than reference a table)? */
@inline export function pteIsLeaf(e: u64, level: u32): bool {
  return level == 1 || (level <= 3 && (e & PTE_PS) != 0);
}
