// Page-modification logging (SDM Vol. 3C 29.3.6). The log is one 4 KiB page of 512 GPAs at the
// PML address (an HPA); the 16-bit PML index counts down from 511. The caller has already checked
// that the index is in 0..511 (otherwise: PML-full exit before logging).
import { CNT_PML_LOGGED } from './consts';
import { pmlAddress, pmlIndex, setPmlIndex, physOk, setPhys64, count } from './state';

export function pmlLog(gpa: u64): void {
  const slot = pmlAddress + (<u64>pmlIndex << 3);
  if (physOk(slot, 8)) setPhys64(slot, gpa & ~(<u64>0xfff));
  setPmlIndex(pmlIndex - 1);
  count(CNT_PML_LOGGED);
}
