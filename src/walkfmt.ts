// Explains an inspection walk (`sim.inspect`): every memory reference of the two-dimensional
// walk with its entry decoded, and the outcome with #PF error codes and EPT-violation exit
// qualifications decoded bit by bit. explainWalk() returns JSON-safe data (bigints as "0x..."
// strings) for --json; formatWalk() renders that data as text.
import type { Sim, Step, FaultRecord } from './sim.ts';
import * as C from './consts.ts';
import { addrMaskFor } from './space.ts';
import { groupOfField } from './mmu.ts';

// ---------------------------------------------------------------------------------------------
// Report types (all JSON-safe)

export interface DecodedBit {
  bit: number;
  name: string;
  value: 0 | 1;
  meaning: string;
}

export interface WalkRef {
  /** 1-based position in the walk */
  n: number;
  table: 'ept' | 'guest' | 'spp';
  level: number;
  /** e.g. "EPT PML4E", "guest PDE", "SPPT L1" */
  name: string;
  /** what this reference serves: "guest PML4E" .. "guest PTE", "final GPA", or "GVA" for guest entries */
  for: string;
  /** the address being translated: GVA for guest entries, GPA for EPT and SPP entries */
  input: string;
  /** index of the entry in its table (9 bits of `input`) */
  index: number;
  /** GPA of a guest entry; HPA of an EPT or SPP entry */
  addr: string;
  hpa: string;
  value: string;
  /** names of the bits that are set, decoded for this kind and level of entry */
  bits: string[];
  leaf: boolean;
  notPresent: boolean;
  reserved: boolean;
  /** reserved bits that are set, as bit ranges (e.g. "51:46"), when known */
  reservedBits?: string;
  /** for a leaf: what `input` translates to (the GPA for a guest leaf, the HPA for an EPT leaf) */
  maps?: string;
  note: string;
}

export type Outcome =
  | { kind: 'ok'; summary: string; hpa: string; gpa: string; guestPage: string; eptPage: string }
  | { kind: 'pf'; summary: string; vector: 14; cr2: string; level: number; errorCode: number; errorCodeHex: string; bits: DecodedBit[]; reason: string }
  | { kind: 'gp'; summary: string; vector: 13; gva: string; reason: string }
  | {
    kind: 'ept-violation'; summary: string; exitReason: 48; gpa: string; gla: string; eptLevel: number; guestLevel: number;
    during: string; qualification: number; qualificationHex: string; bits: DecodedBit[]; reason: string;
  }
  | { kind: 'ept-misconfig'; summary: string; exitReason: 49; gpa: string; gla: string; eptLevel: number; guestLevel: number; during: string; reason: string }
  | { kind: 'pml-full'; summary: string; exitReason: 62; gpa: string; gla: string; pmlIndex: number; reason: string }
  | { kind: 'spp-miss' | 'spp-misconfig'; summary: string; exitReason: 66; gpa: string; gla: string; level: number; reason: string }
  | { kind: 'bus'; summary: string; hpa: string; reason: string };

export interface WalkReport {
  gva: string;
  access: { kind: 'read' | 'write' | 'fetch'; user: boolean; acc: number; text: string };
  cpu: { cr3: string; eptp: string; wp: boolean; nxe: boolean; eptAd: boolean; gbPages: boolean; maxPhyAddr: number; vpid: number };
  /** GVA fields: table indices at each guest level and the page offset */
  indices: { pml4: number; pdpt: number; pd: number; pt: number; offset: string };
  references: WalkRef[];
  counts: { guest: number; ept: number; spp: number; total: number };
  outcome: Outcome;
}

// ---------------------------------------------------------------------------------------------
// Decoding

export const hex = (v: bigint | number) => '0x' + v.toString(16);
/** A 64-bit entry value, all 16 digits. */
export const hex16 = (v: bigint) => '0x' + BigInt.asUintN(64, v).toString(16).padStart(16, '0');
/** Entry names by level (1 PTE .. 4 PML4E), the tables they sit in, and the page a leaf at that level maps. */
export const LEVEL_NAMES: readonly string[] = ['', 'PTE', 'PDE', 'PDPTE', 'PML4E'];
export const TABLE_NAMES: readonly string[] = ['', 'PT', 'PD', 'PDPT', 'PML4'];
export const PAGE_NAMES: readonly string[] = ['', '4 KiB', '2 MiB', '1 GiB'];
const LEVEL = LEVEL_NAMES, TABLE = TABLE_NAMES, PAGE = PAGE_NAMES;
const shiftOf = (level: number) => BigInt(3 + 9 * level);
const indexAt = (a: bigint, level: number) => Number((a >> shiftOf(level)) & 511n);
const bit = (n: number) => 1n << BigInt(n);

/** Bit ranges of a mask, high to low: 0x3fffe000 -> "29:13". */
export function bitRanges(mask: bigint): string {
  const out: string[] = [];
  for (let b = 63; b >= 0;) {
    if ((mask & bit(b)) === 0n) { b--; continue; }
    let lo = b;
    while (lo > 0 && (mask & bit(lo - 1)) !== 0n) lo--;
    out.push(lo === b ? `${b}` : `${b}:${lo}`);
    b = lo - 1;
  }
  return out.join(', ');
}

const bitsWord = (ranges: string) => (/[:,]/.test(ranges) ? 'bits' : 'bit');
const MEMORY_TYPES = ['UC', 'WC', '2', '3', 'WT', 'WP', 'WB', '7'];

/** Names of the bits set in a guest paging-structure entry. */
export function guestBits(v: bigint, level: number): string[] {
  const leaf = level === 1 || ((level === 2 || level === 3) && (v & C.PTE_PS) !== 0n);
  const out: string[] = [];
  const add = (b: bigint, name: string) => { if ((v & b) !== 0n) out.push(name); };
  add(C.PTE_P, 'P'); add(C.PTE_RW, 'RW'); add(C.PTE_US, 'US'); add(C.PTE_PWT, 'PWT'); add(C.PTE_PCD, 'PCD'); add(C.PTE_A, 'A');
  if (leaf) add(C.PTE_D, 'D');
  add(C.PTE_PS, level === 1 ? 'PAT' : 'PS');
  if (leaf) add(C.PTE_G, 'G');
  add(C.PTE_SW_WP, 'SW_WP');
  const group = groupOfField(v);
  if (leaf && group > 1) out.push(`SW_GROUP=${group}`);
  if (leaf && level > 1) add(C.PTE_PAT_LARGE, 'PAT');
  add(C.PTE_XD, 'XD');
  return out;
}

/** Words for the simulator's reason why a present EPT entry is misconfigured (29.3.3.1). */
export function eptMisconfigText(m: { reason: number; bits: bigint }, level: number, maxPhyAddr: number): string {
  const r = bitRanges(m.bits);
  switch (m.reason) {
    case C.EPT_MISCONF_WRITE_NO_READ: return `bits 2:0 = ${m.bits.toString(2).padStart(3, '0')}b allow writes without reads`;
    case C.EPT_MISCONF_EXEC_ONLY: return 'execute-only (100b) is not supported (eptExecOnly is false)';
    case C.EPT_MISCONF_HIGH: return `reserved bits ${r} set (at or above MAXPHYADDR ${maxPhyAddr})`;
    case C.EPT_MISCONF_PML4E: return `reserved bits ${r} set in an EPT PML4E`;
    case C.EPT_MISCONF_POINTER: return `reserved bits ${r} set in a non-leaf EPT ${LEVEL[level]}`;
    case C.EPT_MISCONF_NO_1G: return '1 GiB EPT pages are not supported (eptGbPages is false)';
    case C.EPT_MISCONF_MEMTYPE: return `memory type ${Number(m.bits >> 3n)} is reserved`;
    case C.EPT_MISCONF_1G_BITS: return `reserved bits ${r} set in a 1 GiB leaf`;
    case C.EPT_MISCONF_2M_BITS: return `reserved bits ${r} set in a 2 MiB leaf`;
    default: return '';
  }
}

/** Names of the bits set in an EPT entry (memory type for leaves). */
export function eptBits(v: bigint, level: number): string[] {
  const leaf = level === 1 || ((level === 2 || level === 3) && (v & C.EPT_PS) !== 0n);
  const out: string[] = [];
  const add = (b: bigint, name: string) => { if ((v & b) !== 0n) out.push(name); };
  add(C.EPT_R, 'R'); add(C.EPT_W, 'W'); add(C.EPT_X, 'X');
  if (leaf) {
    out.push(`MT=${MEMORY_TYPES[Number((v >> 3n) & 7n)]}`);
    add(C.EPT_IPAT, 'IPAT');
  }
  if (level !== 1) add(C.EPT_PS, 'PS');
  add(C.EPT_A, 'A');
  if (leaf) add(C.EPT_D, 'D');
  add(C.EPT_SW_WP, 'SW_WP');
  add(C.EPT_SPP, 'SPP');
  add(C.EPT_SVE, 'SVE');
  return out;
}

/** #PF error code (SDM Vol. 3A 4.7), bit by bit. */
export function decodePfErrorCode(code: number): DecodedBit[] {
  const b = (n: number): 0 | 1 => ((code >> n) & 1 ? 1 : 0);
  return [
    { bit: 0, name: 'P', value: b(0), meaning: b(0) ? 'protection violation or reserved bit (the page was present)' : 'the page was not present' },
    { bit: 1, name: 'W/R', value: b(1), meaning: b(1) ? 'the access was a write' : 'the access was a read or fetch' },
    { bit: 2, name: 'U/S', value: b(2), meaning: b(2) ? 'user-mode access (CPL 3)' : 'supervisor-mode access' },
    { bit: 3, name: 'RSVD', value: b(3), meaning: b(3) ? 'a reserved bit was set in a paging-structure entry' : 'no reserved bit was set' },
    { bit: 4, name: 'I/D', value: b(4), meaning: b(4) ? 'instruction fetch' : 'not an instruction fetch' },
  ];
}

/** Exit qualification of an EPT violation (SDM Vol. 3C Table 28-7), bit by bit. */
export function decodeExitQualification(q: number): DecodedBit[] {
  const b = (n: number): 0 | 1 => ((q >> n) & 1 ? 1 : 0);
  return [
    { bit: 0, name: 'data read', value: b(0), meaning: 'the access causing the violation was a data read' },
    { bit: 1, name: 'data write', value: b(1), meaning: 'the access causing the violation was a data write' },
    { bit: 2, name: 'instruction fetch', value: b(2), meaning: 'the access causing the violation was an instruction fetch' },
    { bit: 3, name: 'readable', value: b(3), meaning: 'AND of bit 0 (R) of the EPT entries used' },
    { bit: 4, name: 'writable', value: b(4), meaning: 'AND of bit 1 (W) of the EPT entries used' },
    { bit: 5, name: 'executable', value: b(5), meaning: 'AND of bit 2 (X) of the EPT entries used' },
    { bit: 6, name: 'user-mode executable', value: b(6), meaning: 'mode-based execute control (not modelled: 0)' },
    { bit: 7, name: 'guest-linear address valid', value: b(7), meaning: 'the guest-linear address field is valid' },
    {
      bit: 8, name: 'translation of linear address', value: b(8),
      meaning: b(8) ? 'the access was to the translation of the linear address' : 'the access was to a guest paging-structure entry',
    },
    { bit: 11, name: 'SPP', value: b(11), meaning: 'the violation was caused by sub-page write permissions' },
  ];
}

const accessText = (acc: number) => {
  const kind = acc & C.ACC_KIND_MASK;
  const k = kind === C.ACC_WRITE ? 'write' : kind === C.ACC_FETCH ? 'fetch' : 'read';
  return { kind: k as 'read' | 'write' | 'fetch', user: (acc & C.ACC_USER) !== 0 };
};

// ---------------------------------------------------------------------------------------------
// explainWalk: inspect result -> WalkReport

/** Explains the inspection walk of `gva` for `acc` (ACC_READ/WRITE/FETCH | ACC_USER). */
export function explainWalk(sim: Sim, gva: bigint, acc: number, result: ReturnType<Sim['inspect']> = sim.inspect(gva, acc)): WalkReport {
  const cpu = sim.cpu();
  const maxPhyAddr = sim.maxPhyAddr;
  const addrMask = addrMaskFor(maxPhyAddr);
  const addrOf = (v: bigint) => v & addrMask;
  const ad = (cpu.eptp & C.EPTP_AD) !== 0n;
  const a = accessText(acc);
  const g48 = gva & 0xffff_ffff_ffffn;

  const refs: WalkRef[] = result.steps.map((s: Step, k: number): WalkRef => {
    const v = s.value;
    let name: string, forWhat: string, bits: string[], note: string, reservedBits: string | undefined, maps: bigint | undefined;
    if (s.kind === 'guest') {
      name = `guest ${LEVEL[s.level]}`;
      forWhat = 'GVA';
      bits = s.notPresent ? [] : guestBits(v, s.level);
      if (s.notPresent) note = 'not present';
      else if (s.reserved) {
        const r = sim.pteReservedBits(v, s.level);
        reservedBits = r ? bitRanges(r) : undefined;
        note = reservedBits ? `reserved ${bitsWord(reservedBits)} ${reservedBits} set` : 'reserved bits set';
      } else if (s.leaf) {
        const size = 1n << shiftOf(s.level);
        const page = addrOf(v) & ~(size - 1n);
        maps = page | (g48 & (size - 1n));
        note = `leaf: ${PAGE[s.level]} page at GPA ${hex(page)}, + offset ${hex(g48 & (size - 1n))} = GPA ${hex(page | (g48 & (size - 1n)))}`;
      } else {
        note = `-> ${TABLE[s.level - 1]} at GPA ${hex(addrOf(v))}`;
      }
    } else if (s.kind === 'ept') {
      name = `EPT ${LEVEL[s.level]}`;
      forWhat = s.forLevel === 0 ? 'final GPA' : `guest ${LEVEL[s.forLevel]}`;
      bits = s.notPresent ? [] : eptBits(v, s.level);
      if (s.notPresent) note = 'not present (bits 2:0 = 000b)';
      else if (s.reserved) {
        const why = eptMisconfigText(sim.eptMisconfig(v, s.level), s.level, maxPhyAddr);
        note = `misconfigured: ${why || 'reserved setting'}`;
      } else if (s.leaf) {
        const size = 1n << shiftOf(s.level);
        const base = addrOf(v) & ~(size - 1n);
        maps = base | (s.input & (size - 1n));
        note = s.level === 1
          ? `leaf: GPA ${hex(s.input & ~0xfffn)} -> HPA ${hex(base)}`
          : `leaf: ${PAGE[s.level]} page, GPA ${hex(s.input & ~(size - 1n))} -> HPA ${hex(base)}`;
      } else {
        note = `-> EPT ${TABLE[s.level - 1]} at HPA ${hex(addrOf(v))}`;
      }
    } else {
      name = `SPPT L${s.level}`;
      forWhat = 'final GPA';
      if (s.level === 1) {
        const sub = Number((s.input >> 7n) & 31n);
        bits = [`write vector ${hex(v)}`];
        note = s.reserved ? `reserved (odd) bits ${bitRanges(v & C.SPPT_LEAF_RSVD)} set` : `sub-page ${sub} (GPA bits 11:7): writes ${(v >> BigInt(2 * sub)) & 1n ? 'granted' : 'denied'}`;
      } else {
        bits = (v & C.SPPT_P) ? ['V'] : [];
        note = s.notPresent ? 'not valid' : s.reserved ? 'reserved bits set' : `-> SPPT L${s.level - 1} at HPA ${hex(addrOf(v))}`;
      }
    }
    const ref: WalkRef = {
      n: k + 1, table: s.kind, level: s.level, name, for: forWhat, input: hex(s.input), index: indexAt(s.input & 0xffff_ffff_ffffn, s.level),
      addr: hex(s.addr), hpa: hex(s.hpa), value: hex16(v), bits, leaf: s.leaf, notPresent: s.notPresent, reserved: s.reserved, note,
    };
    if (reservedBits !== undefined) ref.reservedBits = reservedBits;
    if (maps !== undefined) ref.maps = hex(maps);
    return ref;
  });

  const counts = {
    guest: refs.filter((r) => r.table === 'guest').length,
    ept: refs.filter((r) => r.table === 'ept').length,
    spp: refs.filter((r) => r.table === 'spp').length,
    total: refs.length,
  };
  const refText = `${counts.total} memory reference${counts.total === 1 ? '' : 's'} (${counts.guest} guest, ${counts.ept} EPT${counts.spp ? `, ${counts.spp} SPP table` : ''})`;

  return {
    gva: hex(gva),
    access: { ...a, acc, text: `${a.user ? 'user' : 'supervisor'} ${a.kind}` },
    cpu: { cr3: hex(cpu.cr3), eptp: hex(cpu.eptp), wp: cpu.wp, nxe: cpu.nxe, eptAd: ad, gbPages: cpu.gbPages, maxPhyAddr, vpid: cpu.vpid },
    indices: { pml4: indexAt(g48, 4), pdpt: indexAt(g48, 3), pd: indexAt(g48, 2), pt: indexAt(g48, 1), offset: hex(g48 & 0xfffn) },
    references: refs,
    counts,
    outcome: outcomeOf(result, refs, refText, a, cpu, sim.physBytes),
  };
}

function outcomeOf(
  result: { steps: Step[]; fault: FaultRecord | null; hpa: bigint }, refs: WalkRef[], refText: string,
  a: { kind: 'read' | 'write' | 'fetch'; user: boolean }, cpu: ReturnType<Sim['cpu']>, physBytes: number,
): Outcome {
  const f = result.fault;
  const guestRefs = refs.filter((r) => r.table === 'guest');
  const finalEpt = refs.filter((r) => r.table === 'ept' && r.for === 'final GPA');
  if (!f) {
    const gLeaf = guestRefs.find((r) => r.leaf);
    const eLeaf = finalEpt.find((r) => r.leaf);
    const gpa = finalEpt[0]?.input ?? '0x0';
    const guestPage = PAGE[gLeaf?.level ?? 1]!, eptPage = PAGE[eLeaf?.level ?? 1]!;
    return {
      kind: 'ok', hpa: hex(result.hpa), gpa, guestPage, eptPage,
      summary: `HPA ${hex(result.hpa)}: GPA ${gpa} through a ${guestPage} guest page and a ${eptPage} EPT page; ${refText}`,
    };
  }
  const duringOf = (guestLevel: number, gpa: bigint) => {
    if (guestLevel === 0) return `translating the final GPA ${hex(gpa)}`;
    const readIt = guestRefs.some((r) => r.level === guestLevel);
    return readIt
      ? `setting the accessed/dirty flag in the guest ${LEVEL[guestLevel]} at GPA ${hex(gpa)} (a locked read-modify-write, so a write)`
      : `translating the GPA ${hex(gpa)} of the guest ${LEVEL[guestLevel]} (a guest paging-structure access${cpu.eptp & C.EPTP_AD ? ', treated as a write because EPT A/D is on' : ', a read'})`;
  };
  switch (f.kind) {
    case C.FAULT_PF: {
      const bits = decodePfErrorCode(f.code);
      let reason: string;
      const last = guestRefs[guestRefs.length - 1];
      if (!(f.code & C.PFEC_P)) reason = `the guest ${LEVEL[f.level]} is not present (P = 0)`;
      else if (f.code & C.PFEC_RSVD) reason = `the guest ${LEVEL[f.level]} has reserved ${last?.reservedBits ? `${bitsWord(last.reservedBits)} ${last.reservedBits}` : 'bits'} set`;
      else reason = rightsReason(guestRefs, a, cpu);
      return {
        kind: 'pf', vector: 14, cr2: hex(f.gva), level: f.level, errorCode: f.code, errorCodeHex: hex(f.code), bits, reason,
        summary: `#PF (page fault, vector 14) at the guest ${LEVEL[f.level]}, error code ${hex(f.code)}, CR2 ${hex(f.gva)}; ${refText}`,
      };
    }
    case C.FAULT_GP:
      return {
        kind: 'gp', vector: 13, gva: hex(f.gva), reason: 'bits 63:47 of the GVA are not all equal (it lies in the non-canonical hole), so no table was read',
        summary: `#GP(0): GVA ${hex(f.gva)} is not canonical; nothing was walked`,
      };
    case C.FAULT_EPT_VIOLATION: {
      const bits = decodeExitQualification(f.code);
      const during = duringOf(f.guestLevel, f.gpa);
      const group = refs.filter((r) => r.table === 'ept' && r.for === (f.guestLevel === 0 ? 'final GPA' : `guest ${LEVEL[f.guestLevel]}`));
      const np = group.find((r) => r.notPresent);
      const perm = f.code >> 3 & 7;
      const permText = ['R', 'W', 'X'].filter((_, k) => perm >> k & 1).join(' and ') || 'nothing';
      const need = ['R', 'W', 'X'].filter((_, k) => f.code >> k & 1).join(' and ');
      let reason: string;
      if (f.code & C.EQ_SPP) reason = 'the sub-page write permissions deny this 128-byte sub-page';
      else if (np) reason = `the ${np.name} for GPA ${hex(f.gpa)} is not present`;
      else reason = `the EPT entries used allow only ${permText}, but this access needs ${need}`;
      return {
        kind: 'ept-violation', exitReason: 48, gpa: hex(f.gpa), gla: hex(f.gva), eptLevel: f.level, guestLevel: f.guestLevel, during,
        qualification: f.code, qualificationHex: hex(f.code), bits, reason,
        summary: `EPT violation (VM exit 48) at the EPT ${LEVEL[f.level]}, exit qualification ${hex(f.code)}, GPA ${hex(f.gpa)}, GLA ${hex(f.gva)}; ${refText}`,
      };
    }
    case C.FAULT_EPT_MISCONFIG: {
      const bad = refs.find((r) => r.table === 'ept' && r.reserved);
      return {
        kind: 'ept-misconfig', exitReason: 49, gpa: hex(f.gpa), gla: hex(f.gva), eptLevel: f.level, guestLevel: f.guestLevel,
        during: duringOf(f.guestLevel, f.gpa), reason: bad ? `the ${bad.name} is ${bad.note}` : 'an EPT entry is misconfigured',
        summary: `EPT misconfiguration (VM exit 49) at the EPT ${LEVEL[f.level]}, GPA ${hex(f.gpa)}; ${refText}`,
      };
    }
    case C.FAULT_PML_FULL:
      return {
        kind: 'pml-full', exitReason: 62, gpa: hex(f.gpa), gla: hex(f.gva), pmlIndex: cpu.pml.index,
        reason: `the EPT dirty flag for GPA ${hex(f.gpa)} would go from 0 to 1, but the PML index (${cpu.pml.index}) is outside 0..511: nothing was logged or dirtied`,
        summary: `PML full (VM exit 62) for GPA ${hex(f.gpa)}; ${refText}`,
      };
    case C.FAULT_SPP_MISS:
    case C.FAULT_SPP_MISCONFIG: {
      const miss = f.kind === C.FAULT_SPP_MISS;
      return {
        kind: miss ? 'spp-miss' : 'spp-misconfig', exitReason: 66, gpa: hex(f.gpa), gla: hex(f.gva), level: f.level,
        reason: miss ? `the SPPT level-${f.level} entry for GPA ${hex(f.gpa)} is not valid` : `the SPPT level-${f.level} entry for GPA ${hex(f.gpa)} has reserved bits set`,
        summary: `SPP-related event (VM exit 66, SPPT ${miss ? 'miss' : 'misconfiguration'}) for GPA ${hex(f.gpa)}; ${refText}`,
      };
    }
    case C.FAULT_BUS:
    default:
      return {
        kind: 'bus', hpa: hex(f.gpa),
        reason: `HPA ${hex(f.gpa)} is beyond the simulated memory (${hex(physBytes)} bytes); not architectural: a table points outside memory`,
        summary: `bus error (not architectural): HPA ${hex(f.gpa)} is beyond the simulated memory; ${refText}`,
      };
  }
}

/** Why a present, well-formed guest walk denies the access (4.6). */
function rightsReason(guest: WalkRef[], a: { kind: string; user: boolean }, cpu: { wp: boolean; nxe: boolean }): string {
  const without = (name: string) => guest.find((r) => !r.bits.includes(name));
  const withBit = (name: string) => guest.find((r) => r.bits.includes(name));
  if (a.user) {
    const us = without('US');
    if (us) return `U/S is 0 in the guest ${LEVEL[us.level]}: user-mode accesses are not allowed`;
  }
  if (a.kind === 'write') {
    const rw = without('RW');
    if (rw) {
      const wp = rw.bits.includes('SW_WP') ? ' (SW_WP marks the page as write-protected by the monitor)' : '';
      return `R/W is 0 in the guest ${LEVEL[rw.level]}${wp}: ${a.user ? 'user writes always need R/W = 1' : 'supervisor writes are checked because CR0.WP = 1'}`;
    }
  }
  if (a.kind === 'fetch' && cpu.nxe) {
    const xd = withBit('XD');
    if (xd) return `XD is 1 in the guest ${LEVEL[xd.level]} and EFER.NXE = 1: instruction fetches are not allowed`;
  }
  return 'the access rights of the guest entries deny this access';
}

// ---------------------------------------------------------------------------------------------
// Grouping the references

/** Where an entry is: guest entries by GPA and HPA, EPT and SPP entries by HPA. */
export const entryAddress = (ref: WalkRef) => (ref.table === 'guest' ? `GPA ${ref.addr} = HPA ${ref.hpa}` : `HPA ${ref.addr}`);

export interface WalkGroup {
  /**
   * 'guest': one guest entry; 'ept': the EPT walk that locates a guest entry's GPA; 'final': the
   * EPT walk of the final GPA; 'spp': the SPP table reads
   */
  kind: 'guest' | 'ept' | 'final' | 'spp';
  /** the guest entry's level ('guest'), the level of the guest entry the EPT walk locates ('ept'; -1 if unknown), 0 otherwise */
  level: number;
  /** consecutive references, in walk order */
  refs: WalkRef[];
}

/**
 * The references in walk order, cut into groups: each guest entry on its own, and each run of
 * EPT (or SPP) references made for the same thing. Every reference is in exactly one group.
 */
export function walkGroups(refs: readonly WalkRef[]): WalkGroup[] {
  const out: WalkGroup[] = [];
  let k = 0;
  while (k < refs.length) {
    const first = refs[k]!;
    if (first.table === 'guest') { out.push({ kind: 'guest', level: first.level, refs: [first] }); k++; continue; }
    let end = k;
    while (end < refs.length && refs[end]!.table === first.table && refs[end]!.for === first.for) end++;
    const group = refs.slice(k, end);
    if (first.table === 'spp') out.push({ kind: 'spp', level: 0, refs: group });
    else if (first.for === 'final GPA') out.push({ kind: 'final', level: 0, refs: group });
    else out.push({ kind: 'ept', level: LEVEL.indexOf(first.for.replace('guest ', '')), refs: group });
    k = end;
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Text rendering

export interface FormatOptions {
  /** ANSI colours (see useColor) */
  color?: boolean;
  /** one line per EPT walk that succeeded, instead of its four references */
  compact?: boolean;
}

/** Colour when the stream is a terminal and NO_COLOR is not set (https://no-color.org). */
export function useColor(stream: { isTTY?: boolean } = process.stdout): boolean {
  return !!stream.isTTY && !process.env.NO_COLOR;
}

export function palette(color: boolean) {
  const w = (a: number, b: number) => (s: string) => (color ? `\x1b[${a}m${s}\x1b[${b}m` : s);
  return { bold: w(1, 22), dim: w(2, 22), red: w(31, 39), green: w(32, 39), yellow: w(33, 39), cyan: w(36, 39) };
}

/** Renders a report as annotated text (no trailing newline). */
export function formatWalk(r: WalkReport, opts: FormatOptions = {}): string {
  const p = palette(!!opts.color);
  const out: string[] = [];
  const eptp = BigInt(r.cpu.eptp);
  const ept = eptp === 0n ? 'EPTP 0x0' : `EPTP ${r.cpu.eptp} (${(eptp & 7n) === 6n ? 'WB' : 'UC'}, ${Number((eptp >> 3n) & 7n) + 1}-level, EPT A/D ${r.cpu.eptAd ? 'on' : 'off'})`;
  out.push(p.bold(`Walk of GVA ${r.gva}, ${r.access.text}`));
  out.push(`  CR3 ${r.cpu.cr3}  ${ept}  CR0.WP=${+r.cpu.wp}  EFER.NXE=${+r.cpu.nxe}  MAXPHYADDR=${r.cpu.maxPhyAddr}`);
  const ix = r.indices;
  out.push(`  GVA fields: PML4 index ${ix.pml4}, PDPT index ${ix.pdpt}, PD index ${ix.pd}, PT index ${ix.pt}, page offset ${ix.offset}`);
  out.push('');

  const addrCell = entryAddress;
  const last = r.references.length;
  const wNum = opts.compact ? `${last}-${last}`.length : String(last).length + 1;
  const wName = Math.max(5, ...r.references.map((x) => x.name.length));
  const wAddr = Math.max(7, ...r.references.map((x) => addrCell(x).length));
  const wBits = Math.max(5, ...r.references.map((x) => x.bits.join(' ').length));
  const row = (ref: WalkRef) => {
    const bad = ref.notPresent || ref.reserved;
    const num = String(ref.n).padStart(wNum);
    const name = ref.table === 'guest' ? p.bold(ref.name.padEnd(wName)) : ref.name.padEnd(wName);
    const note = bad ? p.red(ref.note) : ref.leaf ? p.green(ref.note) : p.dim(ref.note);
    return `  ${num}  ${name}  ${addrCell(ref).padEnd(wAddr)}  ${ref.value}  ${ref.bits.join(' ').padEnd(wBits)}  ${note}`;
  };
  if (r.references.length) out.push(p.dim(`  ${'#'.padStart(wNum)}  ${'entry'.padEnd(wName)}  ${'address'.padEnd(wAddr)}  ${'value'.padEnd(18)}  ${'flags'.padEnd(wBits)}  note`));

  // Group the references: each EPT walk, then the guest entry it located; the final GPA's walk.
  const refs = r.references;
  const groups = walkGroups(refs);
  let prevGuest: WalkRef | null = null;
  for (const [gi, { kind, level, refs: group }] of groups.entries()) {
    const first = group[0]!;
    if (kind === 'guest') { out.push(row(first)); prevGuest = first; continue; }
    let header: string;
    if (kind === 'spp') header = `sub-page permissions for GPA ${first.input} (a write the EPT denies, on a page with SPP):`;
    else if (kind === 'final') header = `final GPA ${first.input}, translated through the EPT:`;
    else {
      const table = level === 4 ? `CR3 ${hex(BigInt(r.cpu.cr3) & ~0xfffn)}` : `${TABLE[level]} ${prevGuest ? hex(BigInt(first.input) & ~0xfffn) : '?'}`;
      const idx = [0, ix.pt, ix.pd, ix.pdpt, ix.pml4][level]!;
      header = `${first.for} at GPA ${first.input} (${table} + 8 x ${idx}), translated through the EPT:`;
    }
    const failed = group.some((x) => x.notPresent || x.reserved) || gi === groups.length - 1;
    if (opts.compact && !failed && first.table === 'ept') {
      const leaf = group[group.length - 1]!;
      const range = group.length > 1 ? `${first.n}-${leaf.n}` : `${first.n}`;
      const what = first.for === 'final GPA' ? 'the final GPA' : `the ${first.for}'s GPA`;
      out.push(p.dim(`  ${range.padStart(wNum)}  EPT walk of ${what} ${first.input} -> HPA ${leaf.maps} (${leaf.name} ${leaf.bits.join(' ')})`));
    } else {
      out.push(p.cyan(`  ${' '.repeat(wNum)}  ${header}`));
      for (const x of group) out.push(row(x));
    }
  }
  if (refs.length === 0) out.push(p.dim('  (no memory references)'));
  out.push('');
  out.push(...formatOutcome(r.outcome, p));
  return out.join('\n');
}

export function formatOutcome(o: Outcome, p = palette(false)): string[] {
  const out: string[] = [];
  const bitRows = (bits: DecodedBit[], nameWidth: number) =>
    bits.map((b) => `      bit ${String(b.bit).padEnd(2)}  ${b.name.padEnd(nameWidth)}  ${b.value}  ${b.value ? b.meaning : p.dim(b.meaning)}`);
  switch (o.kind) {
    case 'ok':
      out.push(p.green(p.bold(`=> ${o.summary}`)));
      break;
    case 'pf':
      out.push(p.red(p.bold(`=> ${o.summary}`)));
      out.push(`   why: ${o.reason}`);
      out.push(`   error code ${o.errorCodeHex}:`);
      out.push(...bitRows(o.bits, 4));
      break;
    case 'ept-violation':
      out.push(p.red(p.bold(`=> ${o.summary}`)));
      out.push(`   while ${o.during}`);
      out.push(`   why: ${o.reason}`);
      out.push(`   exit qualification ${o.qualificationHex} (SDM Vol. 3C Table 28-7):`);
      out.push(...bitRows(o.bits, 29));
      out.push(p.dim('      bits 9, 10, 12 and up: 0 (not modelled)'));
      break;
    case 'ept-misconfig':
      out.push(p.red(p.bold(`=> ${o.summary}`)));
      out.push(`   while ${o.during}`);
      out.push(`   why: ${o.reason}`);
      break;
    default:
      out.push(p.red(p.bold(`=> ${o.summary}`)));
      out.push(`   why: ${o.reason}`);
  }
  return out;
}
