// A read-only view of the simulator's TLB, for tools that teach (the explorer's walk view): which
// translation the TLB holds for a GVA, with the rights and dirty state it cached. Nothing here
// changes the simulator: no counter moves, no entry is filled, dropped or reordered. The module
// says where its arrays are (Sim.tlbArea); the entry layout and flags are the constants table's
// (TLB_ENTRY, TE_*, TF_*), the same ones sim/tlb.ts uses.
import type { Sim, CpuState } from './sim.ts';
import {
  ACC_KIND_MASK, ACC_WRITE, ACC_READ, ACC_USER, ACC_FETCH, TLB_ENTRY, TE_EP4TA, TE_HPA, TE_GPA, TE_FLAGS,
  TF_RW, TF_US, TF_XD, TF_ER, TF_EW, TF_EX, TF_GD, TF_ED, TF_SPP, TF_G, TF_GUEST_LEVEL_SHIFT, TF_EPT_LEVEL_SHIFT,
} from './consts.ts';
import { addrMaskFor } from './space.ts';

export interface TlbEntry {
  /** set and way where the entry sits */
  set: number;
  way: number;
  /** the 4 KiB GVA page (bits 47:12; a 2 MiB or 1 GiB guest page is cached as 4 KiB pieces) */
  gvaPage: bigint;
  vpid: number;
  /** the EPTP's table address the entry is tagged with */
  ep4ta: bigint;
  hpaPage: bigint;
  gpaPage: bigint;
  /** guest rights ANDed (R/W, U/S) and ORed (XD) over the walk */
  guest: { rw: boolean; us: boolean; xd: boolean };
  /** EPT rights ANDed over the final GPA's walk */
  ept: { r: boolean; w: boolean; x: boolean };
  /** the guest leaf's D flag was set (by this walk or before) */
  guestDirty: boolean;
  /** the EPT leaf's D flag was set, or EPT A/D is off */
  eptDirty: boolean;
  /** the EPT leaf has SPP: writes are never served from the entry */
  spp: boolean;
  global: boolean;
  /** leaf levels: 1 = 4 KiB, 2 = 2 MiB, 3 = 1 GiB */
  guestLevel: number;
  eptLevel: number;
  /** tagged with the current VPID and EPTP: an access now can hit it */
  current: boolean;
}

function decode(view: DataView, entries: number, ways: number, k: number, key: bigint, cur: { vpid: number; ep4ta: bigint }): TlbEntry {
  const p = entries + k * TLB_ENTRY;
  const f = view.getUint32(p + TE_FLAGS, true);
  const vpid = Number((key >> 1n) & 0xffffn);
  const ep4ta = view.getBigUint64(p + TE_EP4TA, true);
  return {
    set: Math.floor(k / ways), way: k % ways,
    gvaPage: (key >> 17n) << 12n, vpid, ep4ta,
    hpaPage: view.getBigUint64(p + TE_HPA, true), gpaPage: view.getBigUint64(p + TE_GPA, true),
    guest: { rw: !!(f & TF_RW), us: !!(f & TF_US), xd: !!(f & TF_XD) },
    ept: { r: !!(f & TF_ER), w: !!(f & TF_EW), x: !!(f & TF_EX) },
    guestDirty: !!(f & TF_GD), eptDirty: !!(f & TF_ED), spp: !!(f & TF_SPP), global: !!(f & TF_G),
    guestLevel: (f >> TF_GUEST_LEVEL_SHIFT) & 15, eptLevel: (f >> TF_EPT_LEVEL_SHIFT) & 15,
    current: vpid === cur.vpid && ep4ta === cur.ep4ta,
  };
}

const context = (sim: Sim) => {
  const cpu = sim.cpu();
  return { vpid: cpu.vpid, ep4ta: cpu.eptp & addrMaskFor(sim.maxPhyAddr) & ~0xfffn };
};

/** Every valid entry, in set/way order. */
export function tlbEntries(sim: Sim): TlbEntry[] {
  const { view, keys, entries, sets, ways } = sim.tlbArea();
  const cur = context(sim);
  const out: TlbEntry[] = [];
  for (let k = 0; k < sets * ways; k++) {
    const key = view.getBigUint64(keys + k * 8, true);
    if (key !== 0n) out.push(decode(view, entries, ways, k, key, cur));
  }
  return out;
}

/** The entries that hold the 4 KiB page of `gva` under any tag (the current one marked `current`). */
export function tlbEntriesFor(sim: Sim, gva: bigint): TlbEntry[] {
  const { view, keys, entries, sets, ways } = sim.tlbArea();
  const cur = context(sim);
  const vpn = (gva & 0xffff_ffff_ffffn) >> 12n;
  const set = Number(vpn & BigInt(sets - 1));
  const out: TlbEntry[] = [];
  for (let w = 0; w < ways; w++) {
    const k = set * ways + w;
    const key = view.getBigUint64(keys + k * 8, true);
    if (key !== 0n && key >> 17n === vpn) out.push(decode(view, entries, ways, k, key, cur));
  }
  return out;
}

/** The entry an access to `gva` would look up now (current VPID and EPTP), or null. */
export function tlbLookup(sim: Sim, gva: bigint): TlbEntry | null {
  return tlbEntriesFor(sim, gva).find((e) => e.current) ?? null;
}

export type TlbPrediction =
  | { kind: 'miss'; why: string }
  | { kind: 'hit'; hpa: bigint; why: string }
  | { kind: 'rewalk'; why: string }
  | { kind: 'pf'; why: string }
  | { kind: 'ept-violation'; why: string };

/**
 * What an access of kind `acc` (ACC_* | ACC_USER) to `gva` would do with the TLB as it is now,
 * following sim/access.ts page(): served from the entry, a walk because the entry is missing or
 * (for a write) its cached D flags are clear or it has SPP, or a fault from the cached rights.
 */
export function tlbPredict(sim: Sim, gva: bigint, acc: number, cpu: CpuState = sim.cpu()): TlbPrediction {
  const e = tlbLookup(sim, gva);
  if (!e) return { kind: 'miss', why: 'no entry for this page in the current context: the access walks the tables' };
  const kind = acc & ACC_KIND_MASK;
  const user = (acc & ACC_USER) !== 0;
  const g = e.guest;
  const allows = kind === ACC_READ ? !user || g.us
    : kind === ACC_WRITE ? (user ? g.us && g.rw : g.rw || !cpu.wp)
      : (!user || g.us) && !(cpu.nxe && g.xd);
  if (!allows) return { kind: 'pf', why: 'the cached guest rights deny this access: #PF from the TLB entry (which the fault then drops)' };
  if (kind === ACC_WRITE && (!e.guestDirty || !e.eptDirty || e.spp)) {
    const what = e.spp ? 'the EPT leaf has SPP' : !e.guestDirty ? 'the cached guest D flag is clear' : 'the cached EPT D flag is clear';
    return { kind: 'rewalk', why: `${what}: a write drops the entry and walks again (counted as a miss) to set D` };
  }
  const need = kind === ACC_WRITE ? e.ept.w : kind === ACC_FETCH ? e.ept.x : e.ept.r;
  if (!need) return { kind: 'ept-violation', why: 'the cached EPT rights deny this access: an EPT violation from the TLB entry (which the fault then drops)' };
  return { kind: 'hit', hpa: e.hpaPage | (gva & 0xfffn), why: 'served from the TLB entry: no table is read' };
}
