// TLB of combined mappings (SDM Vol. 3A 4.10, Vol. 3C 29.4): GVA page -> HPA page, tagged by
// VPID and EP4TA (the EPTP's table address). Set-associative, FIFO replacement per set, so the
// same access stream always evicts the same entries.
//
// Three arrays in the TLB area that init() lays out (tlbLayout):
//   keys     u64 per entry, the ways of a set side by side: VPN << 17 | VPID << 1 | valid (0: empty).
//            A lookup compares only these (96 bytes for a 12-way set, against 480 when the keys sat
//            inside the entries), and the VPID in the key leaves one entry field, the EP4TA, to
//            check per match.
//   entries  TLB_ENTRY bytes each, in the order of their keys:
//             0  u64  EP4TA
//             8  u64  HPA of the 4 KiB page
//            16  u64  GPA of the 4 KiB page (for EPT violations raised from cached rights)
//            24  u32  TF_* flags, guest leaf level in bits 19:16, EPT leaf level in bits 23:20
//            28  u32  unused (32-byte entries: index arithmetic is a shift)
//   fifo     u32 per set: the way the next fill replaces.
//
// The L0 (below) mirrors some entries of the current context for runBatch; every way an entry
// leaves the TLB (drop, eviction, invalidation) leaves the L0 too.
import {
  TLB_ENTRY, TE_EP4TA, TE_HPA, TE_GPA, TE_FLAGS, TF_RW, TF_US, TF_XD, TF_ER, TF_EW, TF_EX, TF_GD, TF_ED, TF_SPP, TF_G,
  CNT_INVLPG, CNT_INVVPID, CNT_INVEPT, INVVPID_ADDR, INVVPID_SINGLE, INVVPID_ALL, INVVPID_SINGLE_NONGLOBAL, INVEPT_SINGLE,
  ACC_READ, ACC_WRITE, ACC_FETCH, ACC_USER,
} from './consts';
import { tlbBase, tlbSets, tlbWays, l0Base, vpid, eptp, addrMask, cr0Wp, efNxe, physBytes, count } from './state';
import { pscFlush } from './psc';

// The entry layout and TF_* flags are in the constants table (TLB_ENTRY, TE_*, TF_*), shared with
// the TypeScript side's read-only view (src/tlbview.ts).
export { TLB_ENTRY, TE_EP4TA, TE_HPA, TE_GPA, TE_FLAGS, TF_RW, TF_US, TF_XD, TF_ER, TF_EW, TF_EX, TF_GD, TF_ED, TF_SPP, TF_G };

let keyBase: usize = 0;
let entBase: usize = 0;
let fifoBase: usize = 0;

export function tlbBytes(sets: u32, ways: u32): u64 {
  return <u64>sets * <u64>ways * <u64>(8 + TLB_ENTRY) + (<u64>sets << 2);
}
/** Places the three arrays in the TLB area (after setLayout and setSizes). */
export function tlbLayout(): void {
  const n = <usize>tlbSets * <usize>tlbWays;
  keyBase = tlbBase;
  entBase = keyBase + (n << 3);
  fifoBase = entBase + n * TLB_ENTRY;
}

@inline function tlbKey(vpn: u64, v: u32): u64 { return (vpn << 17) | (<u64>v << 1) | 1; }
@inline function keyVpn(key: u64): u64 { return key >> 17; }
@inline function keyVpid(key: u64): u32 { return <u32>(key >> 1) & 0xffff; }
/** Key slot of the first way of the set of `vpn`. */
@inline function setKeys(vpn: u64): usize {
  return keyBase + ((<usize>(<u32>vpn & (tlbSets - 1)) * <usize>tlbWays) << 3);
}
@inline function entryOf(k: usize): usize { return entBase + ((k - keyBase) << 2); }
@inline function keyOf(p: usize): usize { return keyBase + ((p - entBase) >> 2); }

@inline function ep4ta(): u64 { return eptp & addrMask; }

/** The entry for `vpn` (GVA bits 47:12) in the current context, or 0. */
@inline export function tlbLookup(vpn: u64): usize {
  if (tlbWays == 0) return 0;
  const key = tlbKey(vpn, vpid);
  let k = setKeys(vpn);
  const stop = k + (<usize>tlbWays << 3);
  for (; k < stop; k += 8) {
    if (load<u64>(k) == key) {
      const p = entryOf(k);
      if (load<u64>(p, TE_EP4TA) == ep4ta()) return p;
    }
  }
  return 0;
}

export function tlbFill(vpn: u64, hpaPage: u64, gpaPage: u64, flags: u32): void {
  if (tlbWays == 0) return;
  const f = fifoBase + (<usize>(<u32>vpn & (tlbSets - 1)) << 2);
  const way = load<u32>(f);
  store<u32>(f, way + 1 == tlbWays ? 0 : way + 1);
  const k = setKeys(vpn) + (<usize>way << 3);
  const old = load<u64>(k);
  if (old != 0) l0Drop(keyVpn(old)); // evicted
  store<u64>(k, tlbKey(vpn, vpid));
  const p = entryOf(k);
  store<u64>(p, ep4ta(), TE_EP4TA);
  store<u64>(p, hpaPage, TE_HPA);
  store<u64>(p, gpaPage, TE_GPA);
  store<u32>(p, flags, TE_FLAGS);
  if (((flags >> 16) & 15) > 1) largeCached = true;
}

/** Drops entry `p` (from tlbLookup). */
export function tlbDrop(p: usize): void { dropKey(keyOf(p)); }

@inline function dropKey(k: usize): void {
  const key = load<u64>(k);
  if (key == 0) return;
  l0Drop(keyVpn(key));
  store<u64>(k, 0);
}

/** INVLPG: the page's mappings for the current VPID, under every EPTP. */
export function invlpg(gva: u64): void {
  count(CNT_INVLPG);
  pscFlush();
  dropPage(gva, vpid);
}

// Set once an entry caches a piece of a 2 MiB or 1 GiB guest page, so that invalidating a page
// knows to look beyond its own set; cleared when a global INVEPT empties the TLB.
let largeCached = false;

/**
 * Drops the entries of the guest page containing `gva` for VPID `v` (4.10.4.1): its 4 KiB entry,
 * and every 4 KiB piece cached from a larger page that contains `gva`.
 */
function dropPage(gva: u64, v: u32): void {
  if (tlbWays == 0 || v > 0xffff) return; // entries hold 16-bit VPIDs: a wider one matches none
  const vpn = (gva & 0x0000ffffffffffff) >> 12;
  const key = tlbKey(vpn, v);
  let k = setKeys(vpn);
  for (let w: u32 = 0; w < tlbWays; w++, k += 8) {
    if (load<u64>(k) == key) dropKey(k);
  }
  if (!largeCached) return;
  const n = <usize>tlbSets * <usize>tlbWays;
  for (let i: usize = 0, k = keyBase; i < n; i++, k += 8) {
    const e = load<u64>(k);
    if (e == 0 || keyVpid(e) != v) continue;
    const level = (load<u32>(entryOf(k), TE_FLAGS) >> 16) & 15;
    if (level > 1 && (keyVpn(e) >> (9 * (level - 1))) == (vpn >> (9 * (level - 1)))) dropKey(k);
  }
}

/** INVVPID (31.3): individual address, single context, all contexts, single context but globals. */
export function invvpid(type: i32, v: u32, gva: u64): void {
  count(CNT_INVVPID);
  pscFlush();
  if (type == INVVPID_ADDR) { dropPage(gva, v); return; }
  const n = <usize>tlbSets * <usize>tlbWays;
  for (let i: usize = 0, k = keyBase; i < n; i++, k += 8) {
    const key = load<u64>(k);
    if (key == 0) continue;
    const ev = keyVpid(key);
    if (type == INVVPID_ALL) { if (ev != 0) dropKey(k); }
    else if (ev == v) {
      if (type == INVVPID_SINGLE) dropKey(k);
      else if (type == INVVPID_SINGLE_NONGLOBAL && (load<u32>(entryOf(k), TE_FLAGS) & TF_G) == 0) dropKey(k);
    }
  }
}

/** INVEPT (31.3): single context (one EP4TA) or global. */
export function invept(type: i32, p4: u64): void {
  count(CNT_INVEPT);
  pscFlush();
  const tag = p4 & addrMask;
  const n = <usize>tlbSets * <usize>tlbWays;
  for (let i: usize = 0, k = keyBase; i < n; i++, k += 8) {
    if (type != INVEPT_SINGLE || load<u64>(entryOf(k), TE_EP4TA) == tag) dropKey(k);
  }
  if (type != INVEPT_SINGLE) largeCached = false;
}

// ---- L0 -------------------------------------------------------------------------------------
// A direct-mapped mirror of main-TLB entries of the current context, for runBatch's fast path
// (sim/batch.ts). A model-invisible cache: an L0 hit is exactly a main-TLB hit that neither
// faults nor walks again, and runBatch counts it as the TLB hit it is.
//
// Entry (L0_ENTRY bytes), slot = GVA bits 19:12:
//   0  u64  key: GVA >> 12 | L0_VALID. All 52 bits, so a match also proves the access canonical
//           (the key was made from a canonical GVA, and bits 63:47 are those of the whole page).
//   8  u64  HPA of the page | a "served" bit per access kind: bit (ACC_* & 7) is set when that
//           access (read/write/fetch, supervisor/user) is served by the main entry without a
//           fault or a walk, given the WP and NXE in force when the entry was mirrored.
// Invariant: an L0 entry exists only while its main-TLB entry does, and only for the context,
// WP and NXE it was made under: drops, evictions and invalidations clear it, and so do init,
// setGuest, setEpt and setVpid (l0Flush). Pages that do not lie wholly inside host memory are
// never mirrored, so a served access needs no bounds check.
export const L0_ENTRIES: u32 = 256;
export const L0_ENTRY: usize = 16;
export const L0_VALID: u64 = <u64>1 << 63;
export function l0Bytes(): usize { return <usize>L0_ENTRIES * L0_ENTRY; }

@inline export function l0Slot(vpn: u64): usize { return l0Base + (<usize>(<u32>vpn & (L0_ENTRIES - 1)) * L0_ENTRY); }
/** Forgets whatever the slot of `vpn` mirrors (at most the entry for `vpn`, or one that aliases). */
@inline function l0Drop(vpn: u64): void { store<u64>(l0Slot(vpn), 0); }
export function l0Flush(): void { memory.fill(l0Base, 0, l0Bytes()); }

/** Mirrors main-TLB entry `p`, just used to serve an access at canonical `gva`. */
export function l0Fill(gva: u64, p: usize): void {
  const hpaPage = load<u64>(p, TE_HPA);
  if (hpaPage + 4096 > physBytes) return;
  const f = load<u32>(p, TE_FLAGS);
  // What page() in access.ts decides on a hit, for each access kind (guestAllows and the EPT
  // rights, and for writes no re-walk: guest D and EPT D set, no SPP).
  const us = (f & TF_US) != 0, rw = (f & TF_RW) != 0;
  const exec = !(efNxe && (f & TF_XD) != 0);
  const er = (f & TF_ER) != 0, ew = (f & TF_EW) != 0, ex = (f & TF_EX) != 0;
  const dirty = (f & (TF_GD | TF_ED | TF_SPP)) == (TF_GD | TF_ED);
  let served: u64 = 0;
  if (er) served |= (<u64>1 << ACC_READ) | (us ? <u64>1 << (ACC_READ | ACC_USER) : 0);
  if (ew && dirty) served |= ((rw || !cr0Wp) ? <u64>1 << ACC_WRITE : 0) | (us && rw ? <u64>1 << (ACC_WRITE | ACC_USER) : 0);
  if (ex && exec) served |= (<u64>1 << ACC_FETCH) | (us ? <u64>1 << (ACC_FETCH | ACC_USER) : 0);
  const e = l0Slot(gva >> 12);
  store<u64>(e, (gva >> 12) | L0_VALID);
  store<u64>(e, hpaPage | served, 8);
}

/** Where the arrays are, for the read-only view of the TypeScript side (Sim.tlbArea). */
export function tlbKeysPtr(): usize { return keyBase; }
export function tlbEntriesPtr(): usize { return entBase; }
