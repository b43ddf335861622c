// Paging-structure cache for PDEs (SDM Vol. 3A 4.10.3): GVA bits 47:21 -> the GPA of the page
// table a PDE references and the rights ANDed/ORed over the PML4E, PDPTE and PDE, tagged by VPID
// and EP4TA. Direct-mapped; off when it has no entries. A hit lets the walk start at level 1.
// Any invalidation instruction empties it (the SDM lets a processor invalidate more than asked).
//
// Entry (PSC_ENTRY bytes): u64 key (GVA >> 21) << 1 | valid; u64 EP4TA; u64 table GPA;
// u32 rights (bit 0 R/W, bit 1 U/S, bit 2 XD); u32 VPID.
import { pscBase, pscEntries, vpid, eptp, addrMask } from './state';

export const PSC_ENTRY: usize = 32;

// Result of the last hit.
export let pscTable: u64 = 0;
export let pscRights: u32 = 0;

@inline function slot(gva: u64): usize {
  return pscBase + <usize>(<u32>(gva >> 21) & (pscEntries - 1)) * PSC_ENTRY;
}
@inline function key(gva: u64): u64 { return (((gva & 0x0000ffffffffffff) >> 21) << 1) | 1; }

export function pscLookup(gva: u64): bool {
  if (pscEntries == 0) return false;
  const p = slot(gva);
  if (load<u64>(p) != key(gva) || load<u64>(p, 8) != (eptp & addrMask) || load<u32>(p, 28) != vpid) return false;
  pscTable = load<u64>(p, 16);
  pscRights = load<u32>(p, 24);
  return true;
}

export function pscFill(gva: u64, table: u64, rights: u32): void {
  if (pscEntries == 0) return;
  const p = slot(gva);
  store<u64>(p, key(gva));
  store<u64>(p, eptp & addrMask, 8);
  store<u64>(p, table, 16);
  store<u32>(p, rights, 24);
  store<u32>(p, vpid, 28);
}

export function pscFlush(): void {
  if (pscEntries != 0) memory.fill(pscBase, 0, <usize>pscEntries * PSC_ENTRY);
}
