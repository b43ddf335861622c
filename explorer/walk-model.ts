// The walk view's data shaping, free of the DOM so it is tested in Node (test/explorer-walk.test.ts):
// parsing the controls, labelling outcomes the way `granule walk --json` reports them, grouping
// the references of a two-dimensional walk into its steps, explaining every decoded bit, the
// flags an entry editor offers, and the TLB and counter summaries.
import {
  guestBits, eptBits, bitRanges, walkGroups, hex, LEVEL_NAMES as LEVEL, TABLE_NAMES as TABLE, PAGE_NAMES as PAGE,
  type WalkReport, type WalkRef, type Outcome,
} from '../src/walkfmt.ts';
import { pageName, type SpaceDescription } from '../src/describe.ts';
import type { FaultRecord } from '../src/sim.ts';
import type { Counters } from '../src/counters.ts';
import type { TlbEntry, TlbPrediction } from '../src/tlbview.ts';
import * as C from '../src/consts.ts';

// ---------------------------------------------------------------------------------------------
// Controls

export type AccessKind = 'read' | 'write' | 'fetch';

/** A GVA as typed, always hex: "0x401234" or "401234"; `_` allowed between digits. */
export function parseGva(text: string): bigint {
  const t = text.trim();
  if (t === '') throw new Error('type a guest-virtual address in hex, e.g. 0x401234');
  const digits = t.replace(/^0x/i, '');
  if (!/^[0-9a-f]+(_[0-9a-f]+)*$/i.test(digits)) throw new Error(`'${t}' is not a hex address: use digits 0-9 and a-f, e.g. 0x401234`);
  const v = BigInt('0x' + digits.replace(/_/g, ''));
  if (v >= 1n << 64n) throw new Error(`'${t}' does not fit in 64 bits`);
  return v;
}

/** A 64-bit entry value as typed in an editor: hex with or without 0x, `_` allowed. */
export function parseEntryValue(text: string): bigint {
  const t = text.trim().replace(/^0x/i, '');
  if (!/^[0-9a-f]+(_[0-9a-f]+)*$/i.test(t)) throw new Error(`'${text.trim()}' is not a hex value (digits 0-9, a-f)`);
  const v = BigInt('0x' + t.replace(/_/g, ''));
  if (v >= 1n << 64n) throw new Error(`'${text.trim()}' does not fit in 64 bits`);
  return v;
}

export function accOf(kind: AccessKind, user: boolean): number {
  return (kind === 'write' ? C.ACC_WRITE : kind === 'fetch' ? C.ACC_FETCH : C.ACC_READ) | (user ? C.ACC_USER : 0);
}

export const accessText = (kind: AccessKind, user: boolean) => `${user ? 'user' : 'supervisor'} ${kind}`;

/** The demo space's instructive GVAs (DEMO_SPACE_JSON in src/describe.ts). */
export const DEMO_EXAMPLES: { gva: bigint; kind: AccessKind; user: boolean; what: string }[] = [
  { gva: 0x401234n, kind: 'read', user: false, what: 'an ordinary 4 KiB page: translates (24 references)' },
  { gva: 0x406000n, kind: 'read', user: false, what: 'nothing maps it: #PF, not present' },
  { gva: 0x405000n, kind: 'write', user: true, what: 'the EPT maps it read-only: a write is an EPT violation' },
  { gva: 0x404008n, kind: 'write', user: true, what: 'write-protected by the monitor (R/W = 0): #PF 0x7' },
  { gva: 0x600123n, kind: 'read', user: true, what: 'a 2 MiB guest page on a 2 MiB EPT page (18 references)' },
];

// ---------------------------------------------------------------------------------------------
// Outcomes, labelled as the page shows them (data-testid walk-fault: text, data-kind, data-code)

export interface FaultLabel {
  /** 'none', '#PF error 0x7', 'EPT violation qualification 0x18a', 'EPT misconfiguration', ... */
  text: string;
  /** `outcome.kind` of `granule walk --json` */
  kind: Outcome['kind'];
  /** `outcome.errorCodeHex` (#PF) or `outcome.qualificationHex` (EPT violation); '' otherwise */
  code: string;
}

const KIND_TEXT: Record<Outcome['kind'], string> = {
  ok: 'none', pf: '#PF', gp: '#GP(0)', 'ept-violation': 'EPT violation', 'ept-misconfig': 'EPT misconfiguration',
  'pml-full': 'PML full', 'spp-miss': 'SPP miss', 'spp-misconfig': 'SPP misconfiguration', bus: 'bus error',
};

function labelOf(kind: Outcome['kind'], code: string): FaultLabel {
  if (kind === 'pf') return { text: `#PF error ${code}`, kind, code };
  if (kind === 'ept-violation') return { text: `EPT violation qualification ${code}`, kind, code };
  return { text: KIND_TEXT[kind], kind, code: '' };
}

/** The label of a walk's outcome, from the same fields `granule walk --json` prints. */
export function faultLabel(o: Outcome): FaultLabel {
  return labelOf(o.kind, o.kind === 'pf' ? o.errorCodeHex : o.kind === 'ept-violation' ? o.qualificationHex : '');
}

const FAULT_KINDS: Record<number, Outcome['kind']> = {
  [C.FAULT_PF]: 'pf', [C.FAULT_GP]: 'gp', [C.FAULT_EPT_VIOLATION]: 'ept-violation', [C.FAULT_EPT_MISCONFIG]: 'ept-misconfig',
  [C.FAULT_PML_FULL]: 'pml-full', [C.FAULT_SPP_MISS]: 'spp-miss', [C.FAULT_SPP_MISCONFIG]: 'spp-misconfig', [C.FAULT_BUS]: 'bus',
};

/** The same label for an architectural access's fault record (null: no fault). */
export function recordLabel(f: FaultRecord | null): FaultLabel {
  if (!f) return labelOf('ok', '');
  const kind = FAULT_KINDS[f.kind] ?? 'bus';
  return labelOf(kind, kind === 'pf' || kind === 'ept-violation' ? hex(f.code) : '');
}

/** The HPA a walk translates to ("0x..."), or '' when it faults. */
export const outcomeHpa = (o: Outcome) => (o.kind === 'ok' ? o.hpa : '');

// ---------------------------------------------------------------------------------------------
// The steps of a two-dimensional walk

export interface WalkSection {
  /** 'guest': the EPT walk that locates a guest entry, then that entry; 'final': the data GPA's EPT walk */
  kind: 'guest' | 'final' | 'spp' | 'other';
  /** the guest level the section is about (4 PML4E .. 1 PTE), 0 for the final GPA */
  guestLevel: number;
  title: string;
  /** one sentence: what this step does */
  detail: string;
  refs: WalkRef[];
}

/**
 * Groups the references in walk order: for each guest level, the EPT walk that locates the guest
 * entry (its GPA) followed by the entry itself; then the EPT walk of the final GPA (and SPP table
 * reads, if any). Every reference appears in exactly one section, in order.
 */
export function walkSections(r: WalkReport): WalkSection[] {
  const out: WalkSection[] = [];
  const refs = r.references;
  const ix = r.indices;
  const idxAt = [0, ix.pt, ix.pd, ix.pdpt, ix.pml4];
  const seenGuest = new Set<number>();
  const groups = walkGroups(refs);
  for (let k = 0; k < groups.length; k++) {
    const { kind, level, refs: group } = groups[k]!;
    const first = group[0]!;
    if (kind === 'guest') {
      // a guest entry with no EPT walk before it (none is skipped today, but stay total)
      out.push({ kind: 'guest', guestLevel: first.level, title: `Guest ${LEVEL[first.level]}`, detail: `the guest ${LEVEL[first.level]} for GVA ${r.gva}`, refs: [first] });
      seenGuest.add(first.level);
    } else if (kind === 'spp') {
      out.push({ kind: 'spp', guestLevel: 0, title: `Sub-page permissions for GPA ${first.input}`, detail: 'a write the EPT denies, on a page with SPP: the SPP table decides', refs: group });
    } else if (kind === 'final') {
      out.push({ kind: 'final', guestLevel: 0, title: `Final GPA ${first.input}`, detail: `the data's GPA ${first.input}, translated through the EPT to an HPA`, refs: group });
    } else {
      const again = seenGuest.has(level);
      const base = BigInt(first.input) & ~0xfffn;
      const table = level === 4 ? `CR3 ${hex(BigInt(r.cpu.cr3) & ~0xfffn)}` : `${TABLE[level]} at GPA ${hex(base)}`;
      const next = groups[k + 1];
      if (!again && next && next.kind === 'guest' && next.level === level) { group.push(...next.refs); k++; seenGuest.add(level); }
      out.push({
        kind: level > 0 ? 'guest' : 'other', guestLevel: level, title: `Guest ${LEVEL[level] || first.for}${again ? ' (A/D update)' : ''}`,
        detail: again
          ? `the EPT walk of GPA ${first.input} again, to set the accessed/dirty flag in the guest ${LEVEL[level]}`
          : `the guest ${LEVEL[level]} is at GPA ${first.input} (${table} + 8 × ${idxAt[level]}): that GPA is translated through the EPT, then the entry is read`,
        refs: group,
      });
    }
  }
  return out;
}

export type RefStatus = 'bad' | 'leaf' | 'table';
/**
 * A reference's state in words (so colour is never the only carrier): `text` the state, `rest`
 * walkfmt's note without the words `text` already says.
 */
export function refStatus(ref: WalkRef): { status: RefStatus; text: string; rest: string } {
  const note = ref.note ?? '';
  const strip = (re: RegExp) => note.replace(re, '').trim();
  if (ref.notPresent) return { status: 'bad', text: 'not present', rest: strip(/^not present:?/) };
  if (ref.reserved) {
    return ref.table === 'ept'
      ? { status: 'bad', text: 'misconfigured', rest: strip(/^misconfigured:?/) }
      : { status: 'bad', text: 'reserved bit set', rest: note };
  }
  if (ref.leaf) return { status: 'leaf', text: 'leaf', rest: strip(/^leaf:?/) };
  return { status: 'table', text: 'points to', rest: strip(/^->/) };
}

// ---------------------------------------------------------------------------------------------
// Bits: what each decoded name means (chip titles), and the flags an editor offers

const GUEST_MEANING: Record<string, (level: number) => string> = {
  P: () => 'P (bit 0), present: the entry is used; 0 = #PF, not present',
  RW: () => 'R/W (bit 1) = 1: writes allowed at this level (R/W is ANDed over the walk; supervisor writes ignore it when CR0.WP = 0)',
  US: () => 'U/S (bit 2) = 1: user-mode (CPL 3) accesses allowed (ANDed over the walk)',
  PWT: () => 'PWT (bit 3): page-level write-through (caching only)',
  PCD: () => 'PCD (bit 4): page-level cache disable (caching only)',
  A: () => 'A (bit 5), accessed: the CPU sets it the first time the entry is used for a translation',
  D: () => 'D (bit 6), dirty: the CPU sets it on the first write through this page',
  PS: (l) => (l === 4 ? 'PS (bit 7) in a PML4E: reserved, so a #PF with RSVD' : `PS (bit 7), page size: this ${LEVEL[l]} maps a ${l === 3 ? '1 GiB' : '2 MiB'} page`),
  PAT: (l) => (l === 1 ? 'PAT (bit 7 of a PTE): selects a PAT entry (caching only)' : 'PAT (bit 12 of a large-page entry): selects a PAT entry (caching only)'),
  G: () => 'G (bit 8), global: the translation survives CR3 changes',
  SW_WP: () => 'bit 9, ignored by the CPU: granule\'s monitor marks a page it write-protected',
  XD: () => 'XD (bit 63), execute-disable: with EFER.NXE = 1, instruction fetches are not allowed',
};
const EPT_MEANING: Record<string, (level: number) => string> = {
  R: () => 'R (bit 0): reads allowed (ANDed over the EPT walk)',
  W: () => 'W (bit 1): writes allowed (ANDed over the EPT walk)',
  X: () => 'X (bit 2): instruction fetches allowed (ANDed over the EPT walk)',
  IPAT: () => 'IPAT (bit 6): ignore the guest PAT memory type',
  PS: (l) => (l === 4 ? 'PS (bit 7) in an EPT PML4E: reserved, a misconfiguration' : `PS (bit 7), page size: this EPT ${LEVEL[l]} maps a ${l === 3 ? '1 GiB' : '2 MiB'} page`),
  A: () => 'A (bit 8), accessed: set by the CPU when EPT A/D is on (EPTP bit 6)',
  D: () => 'D (bit 9), dirty: set by the CPU on a write when EPT A/D is on; what a host reads to find written pages',
  SW_WP: () => 'bit 11, ignored by the CPU: granule\'s host monitor marks a page it write-protected',
  SPP: () => 'SPP (bit 61): writes the EPT denies are decided by sub-page (128-byte) permissions',
  SVE: () => 'SVE (bit 63): suppress #VE (no effect here)',
};

/** A sentence for one decoded bit name of a guest or EPT entry at `level` (walkfmt's names). */
export function bitMeaning(table: 'guest' | 'ept' | 'spp', level: number, name: string): string {
  if (table === 'spp') return name === 'V' ? 'valid (bit 0): the next SPP table level is present' : 'the 64-bit sub-page write vector: bit 2i grants writes to 128-byte sub-page i';
  if (table === 'ept' && name.startsWith('MT=')) return `memory type (bits 5:3) ${name.slice(3)}: the caching type of the page (2, 3 and 7 are reserved: a misconfiguration)`;
  if (table === 'guest' && name.startsWith('SW_GROUP=')) return `bits 54:52, ignored by the CPU: granule's write-protect group of ${name.slice(9)} pages`;
  const m = (table === 'guest' ? GUEST_MEANING : EPT_MEANING)[name];
  return m ? m(level) : name;
}

export interface FlagOption {
  /** as walkfmt names it: 'RW', 'PS', 'PAT', 'R' ... */
  name: string;
  mask: bigint;
  bit: number;
  title: string;
}

const bitOf = (m: bigint) => m.toString(2).length - 1;

/** The single-bit flags an editor offers for an entry of this table and level, low bit first. */
export function flagOptions(table: 'guest' | 'ept', level: number): FlagOption[] {
  const opt = (name: string, mask: bigint): FlagOption => ({ name, mask, bit: bitOf(mask), title: bitMeaning(table, level, name) });
  if (table === 'guest') {
    const out = [opt('P', C.PTE_P), opt('RW', C.PTE_RW), opt('US', C.PTE_US), opt('PWT', C.PTE_PWT), opt('PCD', C.PTE_PCD), opt('A', C.PTE_A)];
    out.push(opt('D', C.PTE_D), opt(level === 1 ? 'PAT' : 'PS', C.PTE_PS), opt('G', C.PTE_G), opt('SW_WP', C.PTE_SW_WP));
    if (level === 2 || level === 3) out.push({ ...opt('PAT', C.PTE_PAT_LARGE), title: bitMeaning('guest', 2, 'PAT') });
    out.push(opt('XD', C.PTE_XD));
    return out;
  }
  const out = [opt('R', C.EPT_R), opt('W', C.EPT_W), opt('X', C.EPT_X), opt('IPAT', C.EPT_IPAT)];
  if (level !== 1) out.push(opt('PS', C.EPT_PS));
  out.push(opt('A', C.EPT_A), opt('D', C.EPT_D), opt('SW_WP', C.EPT_SW_WP), opt('SPP', C.EPT_SPP), opt('SVE', C.EPT_SVE));
  return out;
}

/** `value` with `mask` set or cleared. */
export const withFlag = (value: bigint, mask: bigint, on: boolean) => (on ? value | mask : value & ~mask) & ((1n << 64n) - 1n);

/** Names a reference for messages: "the EPT PTE for the guest PDE (reference 14)". */
export function refLabel(ref: WalkRef): string {
  if (ref.table === 'guest') return `the ${ref.name} (reference ${ref.n})`;
  return `the ${ref.name} for the ${ref.for} (reference ${ref.n})`;
}

// ---------------------------------------------------------------------------------------------
// Counters and the TLB

export const COUNTER_ROWS: [keyof Counters & string, string][] = [
  ['accesses', 'accesses'], ['tlbHits', 'TLB hits'], ['tlbMisses', 'TLB misses'], ['walks', 'walks'],
  ['guestRefs', 'guest entry reads'], ['eptRefs', 'EPT entry reads'], ['adWrites', 'A/D writes'],
  ['pf', '#PF'], ['eptViolation', 'EPT violations'], ['invlpg', 'INVLPG'],
];

export function counterDelta(before: Counters, after: Counters): { key: string; label: string; before: number; after: number; delta: number }[] {
  return COUNTER_ROWS.map(([key, label]) => ({ key, label, before: before[key] ?? 0, after: after[key] ?? 0, delta: (after[key] ?? 0) - (before[key] ?? 0) }));
}

const yes = (b: boolean) => (b ? 'yes' : 'no');

/** Rows [label, value] describing a TLB entry (null: no entry). */
export function tlbRows(e: TlbEntry | null): [string, string][] {
  if (!e) return [['entry for this page', 'none']];
  const g = e.guest, x = e.ept;
  return [
    ['entry for this page', `set ${e.set}, way ${e.way}`],
    ['GVA page -> HPA page', `${hex(e.gvaPage)} -> ${hex(e.hpaPage)}`],
    ['GPA page', hex(e.gpaPage)],
    ['guest rights', `R/W ${+g.rw}, U/S ${+g.us}, XD ${+g.xd}`],
    ['EPT rights', `R ${+x.r}, W ${+x.w}, X ${+x.x}`],
    ['guest D cached', yes(e.guestDirty)],
    ['EPT D cached', yes(e.eptDirty)],
    ['page sizes', `guest ${PAGE[e.guestLevel] ?? '?'}, EPT ${PAGE[e.eptLevel] ?? '?'} (cached as a 4 KiB piece)`],
    ['tag', `VPID ${e.vpid}, EP4TA ${hex(e.ep4ta)}`],
  ];
}

/** One sentence: what an access of this kind would do with the TLB now. */
export function predictionText(p: TlbPrediction, kind: AccessKind, user: boolean): string {
  const a = `A ${accessText(kind, user)} now`;
  switch (p.kind) {
    case 'hit': return `${a} hits: ${p.why} (HPA ${hex(p.hpa)}).`;
    case 'miss': return `${a} misses: ${p.why}.`;
    case 'rewalk': return `${a} finds the entry but walks again: ${p.why}.`;
    case 'pf': return `${a} hits but faults: ${p.why}.`;
    case 'ept-violation': return `${a} hits but faults: ${p.why}.`;
  }
}

/**
 * Whether an architectural access disagrees with the tables as they are now (the inspection
 * walk): the TLB served a stale translation. Returns a sentence, or '' when they agree.
 */
export function staleNote(access: { label: FaultLabel; hpa: string }, walk: { label: FaultLabel; hpa: string }, hit: boolean): string {
  if (access.label.text === walk.label.text && access.hpa === walk.hpa) return '';
  const said = access.label.kind === 'ok' ? `HPA ${access.hpa}` : access.label.text;
  const now = walk.label.kind === 'ok' ? `HPA ${walk.hpa}` : walk.label.text;
  return hit
    ? `The access gave ${said}, but the tables now say ${now}: it was served from a stale TLB entry. Software that changes an entry must invalidate (invlpg) before the change is seen.`
    : `The access gave ${said}; the tables now say ${now} (the access itself changed them, e.g. by setting A/D flags).`;
}

// ---------------------------------------------------------------------------------------------
// The address space in words (as `granule demo` summarises it)

export interface MappingRow {
  /** "GVA 0x400000..0x404fff" */
  from: string;
  /** "GPA 0x0" */
  to: string;
  /** "5 x 4 KiB" */
  pages: string;
  /** decoded bits of every leaf, as the loader writes them (before edits) */
  bits: string[];
  /** level of the leaf entries (for bitMeaning) */
  level: number;
  note: string;
}

const levelOfPage = (page: bigint) => (page === 0x1000n ? 1 : page === 0x200000n ? 2 : 3);
const range = (lo: bigint, size: bigint) => `${hex(lo)}..${hex(lo + size - 1n)}`;

export function guestRows(d: SpaceDescription): MappingRow[] {
  return d.guest.map((g) => {
    const level = levelOfPage(g.page);
    return {
      from: `GVA ${range(g.gva, g.size)}`, to: `GPA ${hex(g.gpa)}`, pages: `${g.size / g.page} x ${pageName(g.page)}`,
      bits: guestBits(g.bits | C.PTE_P | (level > 1 ? C.PTE_PS : 0n), level), level, note: g.note ?? '',
    };
  });
}

export function eptRows(d: SpaceDescription): MappingRow[] {
  return d.ept.map((e) => {
    const level = levelOfPage(e.page);
    return {
      from: `GPA ${range(e.gpa, e.size)}`, to: `HPA ${hex(e.hpa)}`, pages: `${e.size / e.page} x ${pageName(e.page)}`,
      bits: e.bits & C.EPT_RWX ? eptBits(e.bits | (level > 1 ? C.EPT_PS : 0n), level) : [], level, note: e.note ?? '',
    };
  });
}

/** Each edit in words: "guest entry for GVA 0x404000 (leaf): clear RW, set SW_WP". */
export function editTexts(d: SpaceDescription): string[] {
  const LV = ['leaf', 'PTE', 'PDE', 'PDPTE', 'PML4E'];
  return d.edits.map((e) => {
    const opts = flagOptions(e.table, e.level ?? (e.table === 'guest' ? 1 : 2));
    const names = (v: bigint) => {
      const known = opts.filter((o) => v & o.mask).map((o) => o.name);
      const rest = opts.reduce((m, o) => m & ~o.mask, v);
      return [...known, ...(rest ? [`bits ${bitRanges(rest)}`] : [])].join(' ') || hex(v);
    };
    const what: string[] = [];
    if (e.value !== null) what.push(`value ${hex(e.value)}`);
    if (e.clear) what.push(`clear ${names(e.clear)}`);
    if (e.set) what.push(`set ${names(e.set)}`);
    if (e.mt !== null) what.push(`memory type ${e.mt}${[2, 3, 7].includes(e.mt) ? ' (reserved)' : ''}`);
    return `${e.table === 'guest' ? 'guest' : 'EPT'} ${LV[e.level ?? 0]} for ${e.table === 'guest' ? 'GVA' : 'GPA'} ${hex(e.addr)}: ${what.join(', ')}${e.note ? ` (${e.note})` : ''}`;
  });
}

/** The vCPU settings that decide rights, in words. */
export function cpuText(d: SpaceDescription): string[] {
  const c = d.cpu;
  return [
    `CR0.WP = ${+c.wp}: ${c.wp ? 'supervisor writes honour R/W' : 'supervisor writes ignore R/W'}`,
    `EFER.NXE = ${+c.nxe}: ${c.nxe ? 'XD forbids instruction fetches' : 'XD (bit 63) is a reserved bit'}`,
    `EPT A/D ${c.eptAd ? 'on: guest table reads count as EPT writes (need W, set D)' : 'off: guest table reads are EPT reads'}`,
    `MAXPHYADDR = ${d.maxPhyAddr}: address bits 51:${d.maxPhyAddr} of an entry are reserved`,
  ];
}

/**
 * Whether the TLB would answer an access differently from the tables (the walk): a sentence
 * saying how, or '' when the TLB's answer is the tables' (or the access would walk anyway).
 */
export function tlbStaleText(p: TlbPrediction, walk: Outcome): string {
  const now = walk.kind === 'ok' ? `HPA ${walk.hpa}` : faultLabel(walk).text;
  switch (p.kind) {
    case 'miss':
    case 'rewalk':
      return '';
    case 'hit':
      if (walk.kind === 'ok' && BigInt(walk.hpa) === p.hpa) return '';
      return `the TLB would serve this access with HPA ${hex(p.hpa)}, but the tables now say ${now}`;
    case 'pf':
    case 'ept-violation': {
      const cached = p.kind === 'pf' ? '#PF' : 'EPT violation';
      if (walk.kind === p.kind) return '';
      return `the TLB's cached rights give a ${cached} (once: the fault drops the entry), but the tables now say ${now}`;
    }
  }
}
