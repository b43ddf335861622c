// Practice problems for the explorer's practice view, free of the DOM (tested in Node by
// test/explorer-walk.test.ts): a seeded generator of small random address spaces written as
// address-space files (docs/address-space.md) so that describe.ts validates and builds them, the
// learner's answer parsed, and checked against the simulator's own explainWalk.
import { loadSpace, type Space } from '../src/describe.ts';
import type { SimOptions } from '../src/sim.ts';
import {
  explainWalk, guestBits, decodePfErrorCode, decodeExitQualification, hex, LEVEL_NAMES as LEVEL, type WalkReport, type Outcome, type DecodedBit,
} from '../src/walkfmt.ts';
import { PTE_P, PTE_PS } from '../src/consts.ts';
import { addrMaskFor } from '../src/space.ts';
import { accOf, type AccessKind } from './walk-model.ts';
import { Rng } from '../src/rng.ts';

export { Rng };

/** A seed for "New problem": 1 .. 2^32-1. */
export function randomSeed(): number {
  const a = new Uint32Array(1);
  globalThis.crypto.getRandomValues(a);
  return a[0]! || 1;
}

/** A seed as typed: a decimal number 0 .. 4294967295 (or hex with 0x). */
export function parseSeed(text: string): number {
  const t = text.trim();
  let v: number;
  if (/^[0-9]+$/.test(t)) v = Number(t);
  else if (/^0x[0-9a-f]+$/i.test(t)) v = Number.parseInt(t.slice(2), 16);
  else throw new Error(`seed '${t}' is not a number: use a whole number such as 12345`);
  if (!Number.isSafeInteger(v) || v > 0xffffffff) throw new Error(`seed '${t}' is too large: seeds are 0 .. 4294967295`);
  return v >>> 0;
}

// ---------------------------------------------------------------------------------------------
// The generator

const K4 = 0x1000n, M2 = 0x200000n, G1 = 0x40000000n;
const TABLES_GPA = 0x100000n;

export interface Problem {
  seed: number;
  /** the address space as an address-space file (docs/address-space.md) */
  json: string;
  gva: bigint;
  kind: AccessKind;
  user: boolean;
  acc: number;
  /** what the generator set up, in words (for tests and for the reveal, not a solution) */
  recipe: string[];
}

interface GuestMap { gva: bigint; gpa: bigint; size: bigint; page: bigint; flags: string[]; cover: { lo: bigint; hi: bigint } | null }

const sizeText = (b: bigint) => (b % G1 === 0n ? `${b / G1}G` : b % M2 === 0n ? `${b / M2 * 2n}M` : `${b / 1024n}K`);
const canonicalize = (v: bigint) => ((v >> 47n) & 1n ? v | 0xffff_0000_0000_0000n : v);

/**
 * A random translation problem, the same for the same seed: 2 to 4 guest mappings (4 KiB, 2 MiB,
 * some 1 GiB pages, random R/W, U/S, XD), an EPT with random permissions and page sizes that
 * may leave a GPA unmapped, sometimes one edit (an entry not present, a reserved bit, an upper
 * level without R/W or U/S, an EPT misconfiguration, the EPT denying the guest's own tables),
 * a GVA (usually mapped) and an access (read, write or fetch; user or supervisor).
 */
export function generateProblem(seedIn: number): Problem {
  const seed = seedIn >>> 0;
  const r = new Rng(seed);
  const recipe: string[] = [];
  const cpu = { wp: r.chance(0.85), nxe: r.chance(0.85), eptAd: r.chance(0.5), vpid: 1 };

  const maps: GuestMap[] = [];
  const ept: { gpa: bigint; hpa: bigint; size: bigint; page: bigint; perm: string }[] = [];
  const usedBlocks = new Set<bigint>();
  const used1G = new Set<bigint>();
  const slots2M = [0x800000n, 0xa00000n, 0xc00000n, 0xe00000n];
  for (let i = slots2M.length - 1; i > 0; i--) { const j = r.int(0, i); [slots2M[i], slots2M[j]] = [slots2M[j]!, slots2M[i]!]; }
  let next4K = 0x100000n + BigInt(r.int(0, 15)) * K4;
  const alloc4K = (size: bigint) => { const h = next4K; next4K += size + BigInt(r.int(0, 3)) * K4; return h; };
  const perm = () => r.weighted([['rwx', 40], ['rw', 22], ['r', 14], ['rx', 12], ['x', 5], ['', 5]] as const);

  const n = r.int(2, 4);
  for (let i = 0; i < n; i++) {
    const page = r.weighted([[K4, 65], [M2, 28], [G1, 7]] as const);
    const count = page === K4 ? BigInt(r.int(1, 3)) : 1n;
    const size = page * count;
    let gva: bigint | null = null;
    for (let tries = 0; tries < 20 && gva === null; tries++) {
      const pml4 = r.chance(0.85) ? r.int(0, 2) : r.int(256, 511);
      let v = (BigInt(pml4) << 39n) | (BigInt(r.int(0, 3)) << 30n);
      if (page !== G1) v |= BigInt(r.int(0, 511)) << 21n;
      if (page === K4) v |= BigInt(r.int(0, 512 - Number(count))) << 12n;
      v = canonicalize(v);
      if (maps.every((m) => v + size <= m.gva || m.gva + m.size <= v)) gva = v;
    }
    if (gva === null) continue;
    let gpa: bigint;
    if (page === G1) {
      let g: bigint;
      do g = BigInt(r.int(1, 7)) * G1; while (used1G.has(g));
      used1G.add(g);
      gpa = g;
    } else {
      let b: bigint;
      do b = BigInt(r.int(2, 255)); while (usedBlocks.has(b));
      usedBlocks.add(b);
      gpa = b * M2 + (page === K4 ? BigInt(r.int(0, 512 - Number(count))) * K4 : 0n);
    }
    const flags: string[] = [];
    if (r.chance(0.8)) flags.push('rw');
    if (r.chance(0.85)) flags.push('us');
    if (cpu.nxe && r.chance(0.25)) flags.push('xd');

    // The EPT for this GPA range: usually mapped, with random permissions and page size.
    let cover: GuestMap['cover'] = null;
    if (!r.chance(0.1)) {
      const p = perm();
      const use2M = slots2M.length > 0 && (page === K4 ? r.chance(0.3) : r.chance(0.7));
      if (use2M) {
        const lo = page === G1 ? gpa + BigInt(r.int(0, 511)) * M2 : gpa & ~(M2 - 1n);
        ept.push({ gpa: lo, hpa: slots2M.pop()!, size: M2, page: M2, perm: p });
        cover = { lo, hi: lo + M2 };
      } else if (page === K4) {
        ept.push({ gpa, hpa: alloc4K(size), size, page: K4, perm: p });
        cover = { lo: gpa, hi: gpa + size };
      } else {
        const pieces = BigInt(r.int(1, 3));
        const lo = gpa + BigInt(r.int(0, 500)) * K4;
        ept.push({ gpa: lo, hpa: alloc4K(pieces * K4), size: pieces * K4, page: K4, perm: p });
        cover = { lo, hi: lo + pieces * K4 };
      }
    } else {
      recipe.push(`the EPT maps nothing for guest[${maps.length}]'s GPAs`);
    }
    maps.push({ gva, gpa, size, page, flags, cover });
  }

  // The access: usually inside a mapping (and inside its EPT-mapped part), sometimes nowhere.
  const t = r.int(0, maps.length - 1);
  const m = maps[t]!;
  let gva: bigint;
  let mapped = true;
  if (r.chance(0.07)) {
    mapped = false;
    let v = m.gva + m.size;
    if (!maps.every((o) => v + K4 <= o.gva || o.gva + o.size <= v) || v >> 47n !== m.gva >> 47n) v = canonicalize(BigInt(r.int(3, 200)) << 39n);
    gva = v + BigInt(r.int(0, 0x1ff) * 8);
    recipe.push('the GVA is outside every guest mapping');
  } else {
    let off: bigint;
    if (m.cover && m.page !== K4 && r.chance(0.8)) off = m.cover.lo - m.gpa + BigInt(r.int(0, Number((m.cover.hi - m.cover.lo) / K4) - 1)) * K4;
    else off = BigInt(r.int(0, Number(m.size / K4) - 1)) * K4;
    gva = m.gva + off + BigInt(r.int(0, 0x1ff) * 8);
  }
  const kind = r.weighted([['read', 40], ['write', 42], ['fetch', 18]] as const);
  const user = r.chance(0.55);

  // Sometimes one edit, on the way of this access.
  const edits: Record<string, string | number>[] = [];
  const leafLevel = m.page === K4 ? 1 : m.page === M2 ? 2 : 3;
  const dataGpa = m.gpa + ((gva - m.gva) & (m.page - 1n));
  const pageGva = hex(gva & ~0xfffn);
  if (mapped && r.chance(0.35)) {
    const covered = m.cover !== null && dataGpa >= m.cover.lo && dataGpa < m.cover.hi;
    const choices: [string, number][] = [['leaf-np', 2], ['rsvd', 1.5], ['upper-rights', 3], ['upper-np', 1], ['ept-table', 2]];
    if (covered) choices.push(['ept-misconfig', 2.5]);
    if (!cpu.nxe) choices.push(['xd-rsvd', 1]);
    const what = r.weighted(choices);
    const upper = r.int(leafLevel + 1, 4);
    const LV = ['', 'pte', 'pde', 'pdpte', 'pml4e'];
    switch (what) {
      case 'leaf-np': edits.push({ table: 'guest', gva: pageGva, clear: 'p' }); recipe.push('the guest leaf is made not present'); break;
      case 'rsvd': edits.push({ table: 'guest', gva: pageGva, set: 'bit51' }); recipe.push('a reserved bit (51) is set in the guest leaf'); break;
      case 'xd-rsvd': edits.push({ table: 'guest', gva: pageGva, set: 'xd' }); recipe.push('XD is set in the guest leaf while EFER.NXE = 0 (a reserved bit)'); break;
      case 'upper-rights': {
        const bit = r.pick(['rw', 'us']);
        edits.push({ table: 'guest', gva: pageGva, level: LV[upper]!, clear: bit });
        recipe.push(`${bit === 'rw' ? 'R/W' : 'U/S'} is cleared in the guest ${LV[upper]!.toUpperCase()}, above the leaf`);
        break;
      }
      case 'upper-np': edits.push({ table: 'guest', gva: pageGva, level: LV[upper]!, clear: 'p' }); recipe.push(`the guest ${LV[upper]!.toUpperCase()} is made not present`); break;
      case 'ept-table': {
        const clear = cpu.eptAd ? 'w' : 'r,w,x';
        edits.push({ table: 'ept', gpa: hex(TABLES_GPA), clear });
        recipe.push(`the EPT entry of the guest's PML4 table (GPA ${hex(TABLES_GPA)}) loses ${cpu.eptAd ? 'W (and EPT A/D is on)' : 'R, W and X'}`);
        break;
      }
      case 'ept-misconfig': {
        const mt = r.pick([2, 3, 7]);
        const at = hex(dataGpa & ~0xfffn);
        edits.push({ table: 'ept', gpa: at, mt });
        recipe.push(`the EPT leaf for GPA ${at} gets the reserved memory type ${mt}`);
        break;
      }
    }
  }

  const space = {
    note: `granule practice problem, seed ${seed}`,
    maxPhyAddr: 46,
    physBytes: '16M',
    cpu,
    tables: { gpa: hex(TABLES_GPA), hpa: '0x80000' },
    ept: ept.map((e) => ({ gpa: hex(e.gpa), hpa: hex(e.hpa), ...(e.size !== e.page ? { size: sizeText(e.size) } : {}), ...(e.page !== K4 ? { page: sizeText(e.page) } : {}), perm: e.perm })),
    guest: maps.map((g) => ({ gva: hex(g.gva), gpa: hex(g.gpa), ...(g.size !== g.page ? { size: sizeText(g.size) } : {}), ...(g.page !== K4 ? { page: sizeText(g.page) } : {}), flags: g.flags.join(',') })),
    edits,
  };
  return { seed, json: JSON.stringify(space, null, 2) + '\n', gva, kind, user, acc: accOf(kind, user), recipe };
}

// ---------------------------------------------------------------------------------------------
// Solving and the tables the learner sees

/** Sim options a space is built with (its size and MAXPHYADDR come from the space). */
export type SpaceSimOptions = Omit<SimOptions, 'physBytes' | 'maxPhyAddr'>;

export interface Solved { problem: Problem; space: Space; report: WalkReport }

/** Builds the problem's space (simOptions: e.g. { wasm }) and walks its GVA: the solution is explainWalk's. */
export async function solveProblem(p: Problem, simOptions?: SpaceSimOptions): Promise<Solved> {
  const space = await loadSpace(p.json, `<practice problem, seed ${p.seed}>`, simOptions);
  return { problem: p, space, report: explainWalk(space.sim, p.gva, p.acc) };
}

export interface PathEntry { level: number; name: string; gpa: bigint; hpa: bigint; value: bigint; bits: string[]; leaf: boolean; notPresent: boolean }

/**
 * The guest entries on the path of `gva`, read straight from the tables (no rights checks, no
 * EPT permission checks, nothing set): what a learner would look up. Stops at a not-present entry
 * or a leaf.
 */
export function guestPath(space: Space, gva: bigint): PathEntry[] {
  const out: PathEntry[] = [];
  const mask = addrMaskFor(space.description.maxPhyAddr);
  let table = space.cr3 & mask;
  for (let level = 4; level >= 1; level--) {
    const gpa = table + 8n * ((gva >> BigInt(3 + 9 * level)) & 511n);
    const hpa = space.ept.translate(gpa);
    if (hpa === null) break;
    const value = space.sim.read64(hpa);
    const notPresent = (value & PTE_P) === 0n;
    const leaf = !notPresent && (level === 1 || ((level === 2 || level === 3) && (value & PTE_PS) !== 0n));
    out.push({ level, name: `guest ${LEVEL[level]}`, gpa, hpa, value, bits: notPresent ? [] : guestBits(value, level), leaf, notPresent });
    if (notPresent || leaf) break;
    table = value & mask;
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Answers

export type Answer =
  | { kind: 'ok'; hpa: bigint }
  | { kind: 'pf' | 'ept-violation'; code: number | null }
  | { kind: Exclude<Outcome['kind'], 'ok' | 'pf' | 'ept-violation'> };

export const ANSWER_HINT = 'an HPA such as 0x201234, or "#PF 0x7", or "EPT violation 0x18a", or "EPT misconfiguration" (numbers are hex)';

const code = (s: string): number | null => {
  const t = s.trim().replace(/^[:=,]\s*/, '').replace(/^(exit\s+)?(error\s*code|error|code|ec|qualification|qual|eq)\s*[:=]?\s*/i, '').trim();
  if (t === '') return null;
  const d = t.replace(/^0x/i, '');
  if (!/^[0-9a-f]+$/i.test(d) || d.length > 8) throw new Error(`'${s.trim()}' is not a hex code: write it like 0x7`);
  return Number.parseInt(d, 16);
};

/** Reads an answer; throws an Error saying what is expected. */
export function parseAnswer(text: string): Answer {
  const t = text.trim().toLowerCase().replace(/\s+/g, ' ');
  if (t === '') throw new Error(`type an answer: ${ANSWER_HINT}`);
  let m: RegExpExecArray | null;
  if ((m = /^(?:hpa\s*[:=]?\s*)?(?:0x)?([0-9a-f][0-9a-f_]*)$/.exec(t))) {
    const d = m[1]!.replace(/_/g, '');
    if (d.length > 16) throw new Error(`'${text.trim()}' does not fit in 64 bits`);
    return { kind: 'ok', hpa: BigInt('0x' + d) };
  }
  if ((m = /^(?:#\s*pf|pf|page[ -]?fault)(?:\s*\(.*?\))?(.*)$/.exec(t))) return { kind: 'pf', code: code(m[1]!) };
  if ((m = /^(?:ept[ -]?violation|ept[ -]?v|violation|vm ?exit 48)(.*)$/.exec(t))) return { kind: 'ept-violation', code: code(m[1]!) };
  if (/^(?:ept[ -]?)?misconfig(?:uration)?$|^vm ?exit 49$/.test(t)) return { kind: 'ept-misconfig' };
  if (/^#?\s*gp(\(0\))?$/.test(t)) return { kind: 'gp' };
  if (/^(none|ok|no fault)$/.test(t)) throw new Error('if the access translates, give the HPA it reaches, e.g. 0x201234');
  throw new Error(`'${text.trim()}' is not an answer I can read: ${ANSWER_HINT}`);
}

/** The expected answer, written the way parseAnswer reads it. */
export function canonicalAnswer(o: Outcome): string {
  switch (o.kind) {
    case 'ok': return o.hpa;
    case 'pf': return `#PF ${o.errorCodeHex}`;
    case 'ept-violation': return `EPT violation ${o.qualificationHex}`;
    case 'ept-misconfig': return 'EPT misconfiguration';
    case 'gp': return '#GP';
    default: return o.kind;
  }
}

export interface Verdict {
  verdict: 'right' | 'wrong' | 'partial' | 'unreadable';
  message: string;
}

const WHAT: Record<string, string> = {
  ok: 'a translation (an HPA)', pf: 'a #PF', 'ept-violation': 'an EPT violation', 'ept-misconfig': 'an EPT misconfiguration', gp: 'a #GP',
  'pml-full': 'a PML-full exit', 'spp-miss': 'an SPP miss', 'spp-misconfig': 'an SPP misconfiguration', bus: 'a bus error',
};

function bitDiffs(expected: DecodedBit[], got: DecodedBit[]): string {
  const out: string[] = [];
  expected.forEach((e, k) => {
    const g = got[k]!;
    if (e.value !== g.value) out.push(`bit ${e.bit} (${e.name}) should be ${e.value}${e.value ? `: ${e.meaning}` : ''}`);
  });
  return out.join('; ');
}

/** Compares an answer with the walk's outcome and says, specifically, what is right or wrong. */
export function checkAnswer(text: string, report: WalkReport): Verdict {
  let a: Answer;
  try {
    a = parseAnswer(text);
  } catch (e) {
    return { verdict: 'unreadable', message: (e as Error).message };
  }
  const o = report.outcome;
  if (o.kind === 'ok') {
    if (a.kind !== 'ok') {
      return { verdict: 'wrong', message: `Wrong: this access does not fault. Every guest and EPT entry on the way allows a ${report.access.text}, so it reaches memory: give the HPA.` };
    }
    const want = BigInt(o.hpa);
    if (a.hpa === want) return { verdict: 'right', message: `Right: HPA ${o.hpa} (GPA ${o.gpa}, through a ${o.guestPage} guest page and a ${o.eptPage} EPT page).` };
    if (a.hpa === BigInt(o.gpa)) return { verdict: 'wrong', message: `Wrong: ${hex(a.hpa)} is the GPA, the guest's idea of the address. It still goes through the EPT to reach the HPA.` };
    if (a.hpa === BigInt(report.gva)) return { verdict: 'wrong', message: `Wrong: ${hex(a.hpa)} is the GVA itself. Walk the guest tables to the GPA, then the EPT to the HPA.` };
    if ((a.hpa & 0xfffn) === (want & 0xfffn)) return { verdict: 'wrong', message: `Wrong HPA: the offset within the 4 KiB page (${hex(want & 0xfffn)}) is right, the frame is not. Which HPA does the EPT leaf for the GPA give?` };
    if ((a.hpa & ~0xfffn) === (want & ~0xfffn)) return { verdict: 'wrong', message: `Wrong HPA: the 4 KiB frame ${hex(want & ~0xfffn)} is right, the offset is not. With large pages the offset carries more GVA bits (21 for 2 MiB, 30 for 1 GiB).` };
    return { verdict: 'wrong', message: 'Wrong HPA: neither the frame nor the offset is right. GVA -> GPA through the guest leaf, then GPA -> HPA through the EPT leaf.' };
  }
  if (a.kind !== o.kind) {
    let why = '';
    if (o.kind === 'pf' && (a.kind === 'ept-violation' || a.kind === 'ept-misconfig')) why = ' The guest\'s own page tables stop this access before the EPT gets a say.';
    else if (o.kind === 'ept-violation' && a.kind === 'pf') why = ' The guest\'s tables allow it (or never get read): it is the EPT that says no.';
    else if (o.kind === 'ept-violation' && a.kind === 'ok') why = ' The guest\'s tables may allow it, but an EPT entry on the way does not.';
    else if (o.kind === 'ept-misconfig') why = ' An EPT entry on the way is not just missing or short of rights: it is malformed.';
    else if (a.kind === 'ok') why = ' The access does not reach memory.';
    return { verdict: 'wrong', message: `Wrong: the outcome is ${WHAT[o.kind]}, not ${WHAT[a.kind]}.${why}` };
  }
  if (o.kind === 'pf' && (a.kind === 'pf')) {
    if (a.code === null) return { verdict: 'partial', message: 'Right kind: a #PF. Now the error code: which of P, W/R, U/S, RSVD and I/D are set?' };
    if (a.code === o.errorCode) return { verdict: 'right', message: `Right: #PF with error code ${o.errorCodeHex}: ${o.reason}.` };
    return { verdict: 'wrong', message: `Right kind (#PF), wrong error code ${hex(a.code)}: ${bitDiffs(o.bits, decodePfErrorCode(a.code))}.` };
  }
  if (o.kind === 'ept-violation' && a.kind === 'ept-violation') {
    if (a.code === null) return { verdict: 'partial', message: 'Right kind: an EPT violation. Now the exit qualification: the access (bits 0-2), the rights found (bits 3-5), bits 7 and 8.' };
    if (a.code === o.qualification) return { verdict: 'right', message: `Right: EPT violation, exit qualification ${o.qualificationHex}: ${o.reason}.` };
    const diffs = bitDiffs(o.bits, decodeExitQualification(a.code));
    const extra = a.code & ~0x9ff ? '; bits 9, 10 and 12 and up are 0 here' : '';
    return { verdict: 'wrong', message: `Right kind (EPT violation), wrong exit qualification ${hex(a.code)}: ${diffs || 'the bits differ'}${extra}.` };
  }
  return { verdict: 'right', message: `Right: ${WHAT[o.kind]}. ${'reason' in o ? o.reason : ''}`.trim() };
}

/** The access in words: "user write to GVA 0x...". */
export const problemText = (p: Problem) => `${p.user ? 'user' : 'supervisor'} ${p.kind} to GVA ${hex(p.gva)}`;

