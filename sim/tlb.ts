// TLB of combined mappings (SDM Vol. 3A 4.10, Vol. 3C 29.4): GVA page -> HPA page, tagged by
// VPID and EP4TA (the EPTP's table address). Set-associative, FIFO replacement per set, so the
// same access stream always evicts the same entries.
//
// Entry (TLB_ENTRY bytes):
//   0  u64  key: VPN << 1 | valid
//   8  u64  EP4TA
//  16  u64  HPA of the 4 KiB page
//  24  u64  GPA of the 4 KiB page (for EPT violations raised from cached rights)
//  32  u32  TF_* flags, guest leaf level in bits 19:16, EPT leaf level in bits 23:20
//  36  u32  VPID
import { CNT_INVLPG, CNT_INVVPID, CNT_INVEPT, INVVPID_ADDR, INVVPID_SINGLE, INVVPID_ALL, INVVPID_SINGLE_NONGLOBAL, INVEPT_SINGLE } from './consts';
import { tlbBase, tlbSets, tlbWays, vpid, eptp, addrMask, count } from './state';
import { pscFlush } from './psc';

export const TLB_ENTRY: usize = 40;

// Cached rights and flag state.
export const TF_RW: u32 = 1;
export const TF_US: u32 = 2;
export const TF_XD: u32 = 4;
export const TF_ER: u32 = 8;
export const TF_EW: u32 = 16;
export const TF_EX: u32 = 32;
/** guest D was set in the leaf */
export const TF_GD: u32 = 64;
/** EPT D was set in the leaf (or EPT A/D is off) */
export const TF_ED: u32 = 128;
/** the EPT leaf has EPT_SPP: writes are decided by the SPP table and are never served from here */
export const TF_SPP: u32 = 256;
/** guest G flag */
export const TF_G: u32 = 512;

@inline function setBase(vpn: u64): usize {
  return tlbBase + <usize>(<u32>vpn & (tlbSets - 1)) * <usize>tlbWays * TLB_ENTRY;
}
@inline function fifoSlot(vpn: u64): usize {
  return tlbBase + <usize>tlbSets * <usize>tlbWays * TLB_ENTRY + (<usize>(<u32>vpn & (tlbSets - 1)) << 2);
}
export function tlbBytes(sets: u32, ways: u32): usize { return <usize>sets * <usize>ways * TLB_ENTRY + (<usize>sets << 2); }

@inline function ep4ta(): u64 { return eptp & addrMask; }

/** The entry for `vpn` in the current context, or 0. */
@inline export function tlbLookup(vpn: u64): usize {
  if (tlbWays == 0) return 0;
  const key = (vpn << 1) | 1;
  const tag = ep4ta();
  let p = setBase(vpn);
  for (let w: u32 = 0; w < tlbWays; w++, p += TLB_ENTRY) {
    if (load<u64>(p) == key && load<u64>(p, 8) == tag && load<u32>(p, 36) == vpid) return p;
  }
  return 0;
}

export function tlbFill(vpn: u64, hpaPage: u64, gpaPage: u64, flags: u32): void {
  if (tlbWays == 0) return;
  const f = fifoSlot(vpn);
  const way = load<u32>(f);
  store<u32>(f, way + 1 == tlbWays ? 0 : way + 1);
  const p = setBase(vpn) + <usize>way * TLB_ENTRY;
  store<u64>(p, (vpn << 1) | 1);
  store<u64>(p, ep4ta(), 8);
  store<u64>(p, hpaPage, 16);
  store<u64>(p, gpaPage, 24);
  store<u32>(p, flags, 32);
  store<u32>(p, vpid, 36);
}

@inline export function tlbDrop(p: usize): void { store<u64>(p, 0); }

/** INVLPG: the page's mappings for the current VPID, under every EPTP. */
export function invlpg(gva: u64): void {
  count(CNT_INVLPG);
  pscFlush();
  dropPage(gva, vpid);
}

function dropPage(gva: u64, v: u32): void {
  if (tlbWays == 0) return;
  const vpn = (gva & 0x0000ffffffffffff) >> 12;
  const key = (vpn << 1) | 1;
  let p = setBase(vpn);
  for (let w: u32 = 0; w < tlbWays; w++, p += TLB_ENTRY) {
    if (load<u64>(p) == key && load<u32>(p, 36) == v) tlbDrop(p);
  }
}

/** INVVPID (31.3): individual address, single context, all contexts, single context but globals. */
export function invvpid(type: i32, v: u32, gva: u64): void {
  count(CNT_INVVPID);
  pscFlush();
  if (type == INVVPID_ADDR) { dropPage(gva, v); return; }
  const n = <usize>tlbSets * <usize>tlbWays;
  for (let i: usize = 0, p = tlbBase; i < n; i++, p += TLB_ENTRY) {
    const ev = load<u32>(p, 36);
    if (type == INVVPID_ALL) { if (ev != 0) tlbDrop(p); }
    else if (ev == v) {
      if (type == INVVPID_SINGLE) tlbDrop(p);
      else if (type == INVVPID_SINGLE_NONGLOBAL && (load<u32>(p, 32) & TF_G) == 0) tlbDrop(p);
    }
  }
}

/** INVEPT (31.3): single context (one EP4TA) or global. */
export function invept(type: i32, p4: u64): void {
  count(CNT_INVEPT);
  pscFlush();
  const tag = p4 & addrMask;
  const n = <usize>tlbSets * <usize>tlbWays;
  for (let i: usize = 0, p = tlbBase; i < n; i++, p += TLB_ENTRY) {
    if (type != INVEPT_SINGLE || load<u64>(p, 8) == tag) tlbDrop(p);
  }
}
