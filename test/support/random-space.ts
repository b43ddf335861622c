// Seeded random address spaces and access sequences for the differential test.
//
// A space is a byte image of host memory holding guest page tables, an EPT, optionally an SPPT and
// a PML page, plus a vCPU state and a sequence of accesses. Most accesses go to mapped, mostly valid
// places (so translations, A/D updates and PML logging are exercised heavily); a per-space "chaos"
// level then breaks random entries in every way docs/sim-semantics.md lists.
//
// Layout of host memory (physBytes = 4 MiB):
//   [0x1000, 1 MiB)  tables: guest page tables, EPT, SPPT, the PML page ("guarded": data never lands here)
//   [1 MiB, 4 MiB)   data pages
//   >= 4 MiB         outside the simulated memory (some EPT leaves point there: FAULT_BUS)
// Guest tables sit at GPA = HPA (EPT-mapped by 4K leaves, one 2M leaf or one 1G leaf) or at
// GPA = HPA + offset. Data GPAs lie elsewhere (>= 1 GiB). No access sequence stores data into a
// guarded page (sanitize() turns such writes into reads), so nothing edits a table between accesses
// except A/D flags and the PML log, and a TLB must not change any outcome.

import {
  PTE_P, PTE_RW, PTE_US, PTE_PWT, PTE_PCD, PTE_A, PTE_D, PTE_PS, PTE_G, PTE_SW_WP, PTE_PAT_LARGE, PTE_XD,
  EPT_R, EPT_W, EPT_X, EPT_RWX, EPT_MT, EPT_MT_SHIFT, EPT_IPAT, EPT_PS, EPT_A, EPT_D, EPT_SW_WP, EPT_SPP, EPT_SVE,
  EPTP_AD, EPTP_MT_UC, EPTP_MT_WB, EPTP_PWL4, SPPT_P,
  ACC_READ, ACC_WRITE, ACC_FETCH, ACC_USER, ACC_KIND_MASK,
} from '../../src/consts.ts';
import { RefMemory, refAccess, type RefCpu } from './ref-walker.ts';
import { Rng } from '../../src/rng.ts';
import { SpaceBuilder, K4, M2, G1, type PageSize, type EntryRecord } from './space-builder.ts';

export { Rng };

/** Seed of case `i` of a run with seed `seed` (so one case can be replayed alone). */
export function caseSeed(seed: number, i: number): number {
  let h = (seed ^ Math.imul(i + 1, 0x9e3779b9)) >>> 0;
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b) >>> 0;
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35) >>> 0;
  return (h ^ (h >>> 16)) >>> 0;
}

// ---------------------------------------------------------------------------------------------

export interface RandomAccess {
  gva: bigint;
  /** ACC_READ/WRITE/FETCH | ACC_USER (ACC_VALUE is added by whoever passes `value`). */
  acc: number;
  size: number;
  value?: Uint8Array;
  /** How the generator chose it (for diagnostics). */
  tag: string;
}

export interface RandomSpace {
  seed: number;
  physBytes: number;
  maxPhyAddr: number;
  /** Initial host memory. */
  image: Uint8Array;
  cpu: RefCpu;
  guarded: Set<number>;
  accesses: RandomAccess[];
  /** What the generator chose, for diagnostics. */
  notes: string[];
}

export interface SpaceOptions {
  accesses?: number;
}

const PHYS = 4 << 20;
const TABLE_LIMIT = 0x10_0000n;
const DATA_LO = 0x10_0000n;

interface Hot {
  gva: bigint;
  len: bigint;
}

function canon(a: bigint): bigint {
  return BigInt.asUintN(64, BigInt.asIntN(48, a));
}

const bit = (n: number): bigint => 1n << BigInt(n);

export function randomSpace(seed: number, opts: SpaceOptions = {}): RandomSpace {
  const rng = new Rng(seed);
  const notes: string[] = [];
  const M = rng.pick([36, 39, 40, 42, 46, 46, 46, 48, 49, 52, rng.int(36, 52)]);

  const nxe = rng.chance(0.75);
  const wp = rng.chance(0.7);
  const gbPages = rng.chance(0.85);
  const eptExecOnly = rng.chance(0.7);
  const eptGbPages = rng.chance(0.85);
  const eptAD = rng.chance(0.6);
  const pmlOn = eptAD && rng.chance(0.65);
  const sppOn = rng.chance(0.45);
  const sppBits = sppOn || rng.chance(0.2);
  const chaos = rng.pick([0, 0, 0.01, 0.03, 0.05, 0.08, 0.12, 0.2]);
  let tableMode = rng.pick(['identity-4k', 'identity-4k', 'identity-2m', 'identity-1g', 'offset-4k', 'offset-4k'] as const);
  if (tableMode === 'identity-1g' && !eptGbPages && !rng.chance(0.1)) tableMode = 'identity-2m';
  // A 2M-aligned offset for the table GPAs that stays below 2^M and away from the data window.
  const tableGpaOffset = tableMode === 'offset-4k'
    ? rng.pick([bit(M - 1), bit(M - 1) + bit(M - 2), 0x20_0000n * BigInt(rng.int(1, 400))])
    : 0n;
  const tableWindow: [bigint, bigint] = tableMode === 'identity-1g' ? [0n, G1]
    : tableMode === 'offset-4k' ? [tableGpaOffset, tableGpaOffset + M2] : [0n, M2];

  const nonLeafEpt = (): bigint => EPT_R | EPT_W | EPT_X | (eptAD && rng.chance(0.3) ? EPT_A : 0n);
  const nonLeafGuest = (): bigint => PTE_P | PTE_RW | PTE_US | (rng.chance(0.4) ? PTE_A : 0n);
  const memType = (): bigint => rng.pick([6n, 6n, 6n, 0n, 1n, 4n, 5n]) << EPT_MT_SHIFT;

  const b = new SpaceBuilder({
    physBytes: PHYS, maxPhyAddr: M, tableLimit: TABLE_LIMIT,
    guestTableMode: tableMode === 'offset-4k' ? 'offset-4k' : tableMode === 'identity-4k' ? 'identity-4k' : 'identity-none',
    tableGpaOffset,
    guestTableEptBits: EPT_R | EPT_W | EPT_X | memType() | (eptAD && rng.chance(0.1) ? EPT_A | EPT_D : 0n),
  });
  if (tableMode === 'identity-2m') b.mapEpt(0n, 0n, M2, EPT_R | EPT_W | EPT_X | memType());
  if (tableMode === 'identity-1g') b.mapEpt(0n, 0n, G1, EPT_R | EPT_W | EPT_X | memType());
  notes.push(`M=${M} nxe=${nxe} wp=${wp} gbPages=${gbPages} eptExecOnly=${eptExecOnly} eptGbPages=${eptGbPages}`
    + ` eptAD=${eptAD} pml=${pmlOn} spp=${sppOn}/${sppBits} chaos=${chaos} tables=${tableMode}`
    + (tableGpaOffset ? ` tableGpaOffset=0x${tableGpaOffset.toString(16)}` : ''));

  // ----- data GPAs and HPAs
  const gpaLimit = bit(Math.min(M, 47));
  const randomGpa = (align: bigint): bigint => {
    for (;;) {
      let g: bigint;
      if (M > 48 && rng.chance(0.03)) g = rng.big(bit(48), bit(M)); // GPA bits 51:48 (ignored by the 4-level walk)
      else if (rng.chance(0.6)) g = rng.big(G1, G1 * 8n < gpaLimit ? G1 * 8n : gpaLimit); // a dense window
      else g = rng.big(G1, gpaLimit);
      g &= ~(align - 1n);
      if (g < G1) continue;
      if (g + align > tableWindow[0] && g < tableWindow[1]) continue;
      return g;
    }
  };
  const beyond = (align: bigint): bigint => {
    const lo = (BigInt(PHYS) + align - 1n) & ~(align - 1n);
    const hi = bit(M) < lo + G1 * 4n ? bit(M) : lo + G1 * 4n;
    return (rng.big(lo, hi) & ~(align - 1n));
  };
  const dataHpa4k = (): bigint => rng.chance(0.04) ? beyond(K4) : rng.big(DATA_LO, BigInt(PHYS)) & ~0xfffn;
  const dataHpa2m = (): bigint => rng.chance(0.06) ? beyond(M2) : rng.chance(0.2) ? 0n : M2;
  const dataHpa1g = (): bigint => rng.chance(0.1) ? beyond(G1) : 0n;

  const eptLeafBits = (): bigint => {
    const r = rng.float();
    let v = r < 0.8 ? EPT_R | EPT_W | EPT_X : rng.pick([EPT_R | EPT_X, EPT_R | EPT_W, EPT_R, EPT_X]);
    v |= memType();
    if (rng.chance(0.3)) v |= EPT_IPAT;
    if (eptAD ? rng.chance(0.3) : rng.chance(0.1)) v |= EPT_A;
    if (eptAD ? rng.chance(0.2) : rng.chance(0.05)) v |= EPT_D;
    if (rng.chance(0.15)) v |= EPT_SW_WP;
    if (rng.chance(0.1)) v |= EPT_SVE;
    if (rng.chance(0.05)) v |= bit(rng.int(52, 59)); // ignored bits
    return v;
  };
  const guestLeafBits = (level: number): bigint => {
    let v = PTE_P;
    if (rng.chance(0.92)) v |= PTE_RW;
    if (rng.chance(0.9)) v |= PTE_US;
    if (rng.chance(0.4)) v |= PTE_A;
    if (rng.chance(0.25)) v |= PTE_D;
    if (nxe ? rng.chance(0.1) : rng.chance(0.02)) v |= PTE_XD;
    if (rng.chance(0.2)) v |= PTE_SW_WP;
    if (rng.chance(0.2)) v |= PTE_G;
    if (rng.chance(0.1)) v |= PTE_PWT | PTE_PCD;
    if (level > 1 && rng.chance(0.1)) v |= PTE_PAT_LARGE;
    return v;
  };

  // ----- guest virtual clusters
  const clusters: bigint[] = [];
  const nClusters = rng.int(2, 4);
  for (let i = 0; i < nClusters; i++) {
    const pml4 = BigInt(rng.pick([0, 1, 255, 256, 511, rng.int(0, 511), rng.int(0, 511)]));
    const pdpt = BigInt(rng.int(0, 508));
    clusters.push(canon((pml4 << 39n) | (pdpt << 30n)));
  }

  const hot: Hot[] = [];
  const leaves: Hot[] = [];
  const ept4kData: bigint[] = [];
  const last4k: bigint[] = [];
  const nLeaves = rng.int(8, 24);

  try {
    for (let i = 0; i < nLeaves; i++) {
      const base = rng.pick(clusters);
      const r = rng.float();
      const size: PageSize = r < 0.55 ? K4 : r < 0.85 ? M2 : G1;
      let gva: bigint;
      if (size === K4) {
        gva = last4k.length && rng.chance(0.35)
          ? rng.pick(last4k) + K4 // the next page: straddling accesses find both pages
          : base + BigInt(rng.int(0, 3)) * M2 + BigInt(rng.int(0, 511)) * K4;
      } else if (size === M2) {
        gva = base + BigInt(rng.int(0, 7)) * M2;
      } else {
        gva = base + BigInt(rng.int(1, 3)) * G1;
      }
      gva = canon(gva);
      const gpa = randomGpa(size);
      const level = size === K4 ? 1 : size === M2 ? 2 : 3;
      if (!b.mapGuest(gva, gpa, size, guestLeafBits(level), nonLeafGuest())) continue;
      leaves.push({ gva, len: size });
      if (size === K4) last4k.push(gva);

      // EPT coverage of (part of) the guest page.
      const cover4k = (n: number): void => {
        for (let k = 0; k < n; k++) {
          const off = size === K4 ? 0n : BigInt(rng.int(0, Number(size / K4) - 1)) * K4;
          const hpa = dataHpa4k();
          if (b.mapEpt(gpa + off, hpa, K4, eptLeafBits(), nonLeafEpt())) {
            ept4kData.push(gpa + off);
            hot.push({ gva: gva + off, len: K4 });
          }
        }
      };
      const e = rng.float();
      if (size === K4) {
        if (e < 0.92) cover4k(1);
      } else if (size === M2) {
        if (e < 0.4) {
          if (b.mapEpt(gpa, dataHpa2m(), M2, eptLeafBits(), nonLeafEpt())) hot.push({ gva, len: M2 });
        } else if (e < 0.9) cover4k(rng.int(1, 4));
      } else {
        if (e < 0.3) {
          if (b.mapEpt(gpa, dataHpa1g(), G1, eptLeafBits(), nonLeafEpt())) hot.push({ gva, len: BigInt(PHYS) });
        } else if (e < 0.6) {
          const off = BigInt(rng.int(0, 511)) * M2;
          if (b.mapEpt(gpa + off, dataHpa2m(), M2, eptLeafBits(), nonLeafEpt())) hot.push({ gva: gva + off, len: M2 });
        } else if (e < 0.9) cover4k(rng.int(1, 4));
      }
    }
  } catch (err) {
    if (!(err instanceof Error && err.message === 'table region exhausted')) throw err;
    notes.push('table region exhausted: fewer mappings');
  }

  // ----- SPP: bit 61 on some 4K EPT data leaves, SPPT vectors for them.
  const sppPages: bigint[] = [];
  if (sppBits) {
    for (const gpa of ept4kData) {
      if (!rng.chance(0.4)) continue;
      const at = b.eptEntry(gpa, 1)!;
      b.set(at, EPT_SPP, rng.chance(0.85) ? EPT_W : 0n);
      const grant = rng.pick([0xffffffff, rng.u32(), rng.u32() & rng.u32(), rng.u32() | rng.u32(), 0]);
      try {
        b.setSpp(gpa, grant);
        sppPages.push(gpa);
      } catch {
        break;
      }
    }
    if (rng.chance(0.3)) {
      // Bit 61 (and W clear) on a guest-table page's EPT leaf, with every sub-page granted: SPP does
      // not apply to guest paging-structure accesses or A/D updates, so these stay EPT violations.
      const t = rng.pick(b.guestTables());
      const leaf = t ? b.eptEntry(t.gpa, 1) : null; // null when a 2M/1G EPT leaf maps the tables
      if (t && leaf !== null && (b.read(leaf) & EPT_RWX) !== 0n) {
        b.set(leaf, EPT_SPP, EPT_W);
        try {
          b.setSpp(t.gpa, 0xffffffff);
        } catch { /* table region exhausted: an SPPT miss instead */ }
        notes.push(`SPP bit on the EPT leaf of the guest table at GPA 0x${t.gpa.toString(16)}`);
      }
    }
  }

  // ----- PML page and index
  let pmlAddress = 0n;
  let pmlIndex = 0;
  try {
    pmlAddress = pmlOn ? b.allocTable() : 0n;
  } catch {
    pmlAddress = b.eptRoot; // never happens with these sizes; keep a valid page
  }
  if (pmlOn) pmlIndex = rng.pick([0, 1, 2, 3, 4, 6, 10, 20, 40, 80, 120, 200, 511, 511, 0xffff, 600]);

  // ----- chaos: break random entries
  const mutations: string[] = [];
  const entries = [...b.entries];
  for (const e of entries) {
    if (e.structure === 'spp') continue;
    const p = chaos * (e.leaf ? 1 : 0.35);
    if (!rng.chance(p)) continue;
    mutations.push(e.structure === 'guest' ? mutateGuest(b, rng, e, M) : mutateEpt(b, rng, e, M));
  }
  for (const gpa of sppPages) {
    const r = rng.float();
    if (r < 0.1) {
      const level = rng.int(2, 4);
      b.set(b.sppEntry(gpa, level), 0n, SPPT_P);
      mutations.push(`SPPT miss at level ${level} for GPA 0x${gpa.toString(16)}`);
    } else if (r < 0.17) {
      const level = rng.int(2, 4);
      const rb = rng.chance(0.7) ? bit(rng.int(1, 11)) : bit(rng.int(M, 63));
      b.set(b.sppEntry(gpa, level), rb);
      mutations.push(`SPPT reserved bit at level ${level} for GPA 0x${gpa.toString(16)}`);
    } else if (r < 0.24) {
      b.set(b.sppEntry(gpa, 1), bit(2 * rng.int(0, 31) + 1));
      mutations.push(`SPPT odd bit in the vector for GPA 0x${gpa.toString(16)}`);
    }
  }
  if (mutations.length) notes.push(`mutations: ${mutations.join('; ')}`);

  const cpu: RefCpu = {
    maxPhyAddr: M,
    cr3: b.cr3 | (rng.chance(0.2) ? PTE_PWT | PTE_PCD : 0n),
    wp, nxe, gbPages,
    eptp: b.eptRoot | EPTP_PWL4 | (rng.chance(0.7) ? EPTP_MT_WB : EPTP_MT_UC) | (eptAD ? EPTP_AD : 0n),
    eptExecOnly, eptGbPages,
    vpid: rng.int(1, 0xffff),
    pml: { enabled: pmlOn, address: pmlAddress, index: pmlIndex },
    spp: { enabled: sppOn, spptp: b.sppRoot ?? 0n },
  };

  // ----- accesses
  const n = opts.accesses ?? 100;
  const accesses: RandomAccess[] = [];
  for (let i = 0; i < n; i++) accesses.push(randomAccess(rng, hot, leaves, clusters, accesses));

  const space: RandomSpace = {
    seed, physBytes: PHYS, maxPhyAddr: M, image: b.image, cpu, guarded: b.guarded, accesses, notes,
  };
  sanitize(space);
  return space;
}

function randomAccess(rng: Rng, hot: Hot[], leaves: Hot[], clusters: bigint[], prev: RandomAccess[]): RandomAccess {
  const kind = rng.pick([ACC_READ, ACC_READ, ACC_WRITE, ACC_WRITE, ACC_FETCH]);
  const acc = kind | (rng.chance(0.5) ? ACC_USER : 0);
  const size = rng.chance(0.55) ? rng.pick([1, 2, 4, 8]) : rng.int(1, 64);
  const within = (h: Hot): bigint => {
    const off = rng.big(0n, h.len);
    if (rng.chance(0.25) && size > 1) {
      // End close to the next 4K boundary so the access straddles it.
      const page = (h.gva + off) & ~0xfffn;
      return page + K4 - BigInt(rng.int(1, size - 1));
    }
    return h.gva + off;
  };
  let gva: bigint;
  let tag: string;
  const r = rng.float();
  if (r < 0.62 && hot.length) {
    gva = within(rng.pick(hot)); tag = 'hot';
  } else if (r < 0.74 && prev.length) {
    gva = rng.pick(prev).gva; tag = 'repeat';
  } else if (r < 0.86 && leaves.length) {
    gva = within(rng.pick(leaves)); tag = 'leaf';
  } else if (r < 0.92) {
    gva = canon(rng.pick(clusters) + rng.big(0n, G1 * 4n)); tag = 'cluster';
  } else if (r < 0.96) {
    gva = rng.chance(0.5)
      ? rng.big(0x0000_8000_0000_0000n, 0xffff_8000_0000_0000n) // non-canonical
      : 0x0000_8000_0000_0000n - BigInt(rng.int(1, Math.max(1, size - 1))); // last byte non-canonical
    tag = 'noncanonical';
  } else {
    gva = canon(rng.big(0n, 1n << 48n)); tag = 'random';
  }
  gva = BigInt.asUintN(64, gva);
  if (gva + BigInt(size) > 1n << 64n) gva -= 4096n; // no wrap-around at 2^64
  const value = kind === ACC_WRITE && rng.chance(0.85) ? rng.bytes(size) : undefined;
  return { gva, acc, size, value, tag };
}

/**
 * Turn every write that would store into a guarded (table) page into a read, so that no access
 * edits a paging structure. Runs the reference on a copy of the image until nothing changes.
 */
function sanitize(s: RandomSpace): void {
  for (let round = 0; round < 200; round++) {
    const mem = new RefMemory(s.image.slice());
    const cpu = structuredClone(s.cpu);
    let changed = false;
    for (let i = 0; i < s.accesses.length; i++) {
      const a = s.accesses[i];
      const r = refAccess(mem, cpu, a.gva, a.acc, a.size, a.value);
      if (r.fault || (a.acc & ACC_KIND_MASK) !== ACC_WRITE) continue;
      const hitsTable = r.pieces.some((p) =>
        s.guarded.has(Number(p.hpa >> 12n)) || s.guarded.has(Number((p.hpa + BigInt(p.len) - 1n) >> 12n)));
      if (hitsTable) {
        s.accesses[i] = { gva: a.gva, acc: (a.acc & ~ACC_KIND_MASK) | ACC_READ, size: a.size, tag: a.tag + '(guarded write->read)' };
        changed = true;
        break;
      }
    }
    if (!changed) return;
  }
  throw new Error(`sanitize did not converge (seed ${s.seed})`);
}

// ---------------------------------------------------------------------------------------------
// Mutations: every way the doc lists to break a guest or EPT entry.

function randomBitIn(rng: Rng, hi: number, lo: number): bigint {
  return bit(rng.int(lo, hi));
}

function mutateGuest(b: SpaceBuilder, rng: Rng, e: EntryRecord, M: number): string {
  const v = b.read(e.hpa);
  const large = e.leaf && e.level > 1;
  const options: [string, () => bigint][] = [
    ['clear P', () => v & ~PTE_P],
    ['clear R/W', () => v & ~PTE_RW],
    ['clear U/S', () => v & ~PTE_US],
    ['set XD', () => v | PTE_XD],
    ['toggle A/D', () => v ^ (PTE_A | PTE_D)],
  ];
  if (M < 52) options.push(['bit 51:M', () => v | randomBitIn(rng, 51, M)]);
  if (e.level === 4) options.push(['PS in PML4E', () => v | PTE_PS]);
  if (large && e.level === 3) options.push(['1G rsvd 29:13', () => v | randomBitIn(rng, 29, 13)]);
  if (large && e.level === 2) options.push(['2M rsvd 20:13', () => v | randomBitIn(rng, 20, 13)]);
  if (!e.leaf && (e.level === 3 || e.level === 2)) options.push(['PS on a table pointer', () => v | PTE_PS]);
  const [name, f] = rng.pick(options);
  b.write(e.hpa, f());
  return `guest L${e.level}${e.leaf ? ' leaf' : ''} @0x${e.hpa.toString(16)}: ${name}`;
}

function mutateEpt(b: SpaceBuilder, rng: Rng, e: EntryRecord, M: number): string {
  const v = b.read(e.hpa);
  const large = e.leaf && e.level > 1;
  const rwx = (x: bigint) => (v & ~EPT_RWX) | x;
  const options: [string, () => bigint][] = [
    ['not present', () => v & ~EPT_RWX],
    ['write-only 010', () => rwx(EPT_W)],
    ['write/execute 110', () => rwx(EPT_W | EPT_X)],
    ['execute-only 100', () => rwx(EPT_X)],
    ['clear W', () => v & ~EPT_W],
    ['clear X', () => v & ~EPT_X],
    ['read-only', () => rwx(EPT_R)],
    ['toggle A/D', () => v ^ (EPT_A | EPT_D)],
  ];
  if (M < 52) options.push(['bit 51:M', () => v | randomBitIn(rng, 51, M)]);
  if (e.level === 4) options.push(['PML4E bit 7:3', () => v | randomBitIn(rng, 7, 3)]);
  if (!e.leaf && (e.level === 3 || e.level === 2)) {
    options.push(['non-leaf bit 6:3', () => v | randomBitIn(rng, 6, 3)]);
    options.push(['PS on a table pointer', () => v | EPT_PS]);
  }
  if (e.leaf) {
    options.push(['memory type 2/3/7', () => (v & ~EPT_MT) | (rng.pick([2n, 3n, 7n]) << EPT_MT_SHIFT)]);
    options.push(['SPP bit, W clear', () => (v | EPT_SPP) & ~EPT_W]);
  }
  if (large && e.level === 3) options.push(['1G rsvd 29:12', () => v | randomBitIn(rng, 29, 12)]);
  if (large && e.level === 2) options.push(['2M rsvd 20:12', () => v | randomBitIn(rng, 20, 12)]);
  const [name, f] = rng.pick(options);
  b.write(e.hpa, f());
  return `ept L${e.level}${e.leaf ? ' leaf' : ''} @0x${e.hpa.toString(16)}: ${name}`;
}
