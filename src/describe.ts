// Address-space descriptions: a small JSON format for guest mappings (GVA -> GPA) and EPT
// mappings (GPA -> HPA), its validating loader, and the builder that writes the tables into a
// Sim. The format is documented in docs/address-space.md.
//
// Loading has two stages. parseSpace() checks the text alone (syntax, fields, values, alignment,
// overlaps, address widths) and returns a normalised description; buildSpace() places the table
// frames, writes every entry, applies the edits and loads the vCPU state. Every problem is a
// SpaceError naming the source, line:column, the JSON path and the offending value.
import { Sim, type SimOptions } from './sim.ts';
import { FrameAllocator, EptBuilder, GuestPtBuilder, addrMaskFor, PAGE_4K, PAGE_2M, PAGE_1G, type PageSize, type PhysMemory } from './space.ts';
import * as C from './consts.ts';
import { parseTree, printParseErrorCode, getLocation, type Node as JsonNode, type ParseError } from 'jsonc-parser';
import { distance } from 'fastest-levenshtein';

// ---------------------------------------------------------------------------------------------
// Errors

/** A problem with an address-space description, located in its source. */
export class SpaceError extends Error {
  constructor(
    /** file name, or `<demo space>` / `<input>` */
    readonly source: string,
    /** JSON path such as `guest[1].gpa`; empty for syntax errors */
    readonly path: string,
    /** 1-based line and column of the offending value, or 0 when not tied to one place */
    readonly line: number,
    readonly column: number,
    readonly detail: string,
  ) {
    super(`${source}${line ? `:${line}:${column}` : ''}: ${path ? `${path}: ` : ''}${detail}`);
    this.name = 'SpaceError';
  }
}

// ---------------------------------------------------------------------------------------------
// JSON with positions (for error messages), exact integers (no float rounding of 64-bit values)
// and no duplicate keys (JSON.parse silently keeps the last one): jsonc-parser's syntax tree,
// with comments and trailing commas refused, turned into these nodes.

type JNode =
  | { t: 'obj'; pos: number; props: Map<string, { keyPos: number; value: JNode }> }
  | { t: 'arr'; pos: number; items: JNode[] }
  | { t: 'str'; pos: number; value: string }
  | { t: 'num'; pos: number; raw: string }
  | { t: 'bool'; pos: number; value: boolean }
  | { t: 'null'; pos: number };

class Src {
  private lineStarts: number[] | null = null;
  constructor(readonly text: string, readonly name: string) {}
  lineCol(pos: number): [number, number] {
    if (!this.lineStarts) {
      this.lineStarts = [0];
      for (let i = 0; i < this.text.length; i++) if (this.text.charCodeAt(i) === 10) this.lineStarts.push(i + 1);
    }
    const ls = this.lineStarts;
    let lo = 0, hi = ls.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (ls[mid]! <= pos) lo = mid; else hi = mid - 1;
    }
    return [lo + 1, pos - ls[lo]! + 1];
  }
  error(pos: number | null, path: string, detail: string): SpaceError {
    if (pos == null) return new SpaceError(this.name, path, 0, 0, detail);
    const [l, c] = this.lineCol(pos);
    return new SpaceError(this.name, path, l, c, detail);
  }
}

function parseJson(src: Src): JNode {
  const errors: ParseError[] = [];
  const root = parseTree(src.text, errors, { disallowComments: true, allowTrailingComma: false, allowEmptyContent: false });
  if (errors.length) {
    const { pos, message } = syntaxError(src.text, errors[0]!);
    throw src.error(pos, '', message);
  }
  if (!root) throw src.error(null, '', 'the file is empty: expected a JSON object');
  return toJNode(src, root);
}

function toJNode(src: Src, n: JsonNode): JNode {
  const pos = n.offset;
  switch (n.type) {
    case 'object': {
      const props = new Map<string, { keyPos: number; value: JNode }>();
      for (const p of n.children ?? []) {
        const [k, v] = p.children!;
        const key = k!.value as string;
        if (props.has(key)) throw src.error(k!.offset, '', `duplicate key "${key}"`);
        props.set(key, { keyPos: k!.offset, value: toJNode(src, v!) });
      }
      return { t: 'obj', pos, props };
    }
    case 'array': return { t: 'arr', pos, items: (n.children ?? []).map((c) => toJNode(src, c)) };
    case 'string': return { t: 'str', pos, value: n.value as string };
    case 'number': return { t: 'num', pos, raw: src.text.slice(n.offset, n.offset + n.length) };
    case 'boolean': return { t: 'bool', pos, value: n.value as boolean };
    default: return { t: 'null', pos };
  }
}

/** A syntax error in words, at the place a person would look. */
function syntaxError(text: string, e: ParseError): { pos: number; message: string } {
  const at = (p: number) => (p >= text.length ? 'end of input' : `'${text[p]}'`);
  const code = printParseErrorCode(e.error);
  const closer = text[e.offset];
  if ((code === 'PropertyNameExpected' || code === 'ValueExpected') && (closer === '}' || closer === ']')) {
    const comma = text.slice(0, e.offset).trimEnd().length - 1;
    if (text[comma] === ',') return { pos: comma, message: `trailing comma before '${closer}' is not allowed in JSON` };
  }
  // The whole word around the offending symbol, e.g. 0x1000 or 4K.
  let a = e.offset, b = e.offset + Math.max(e.length, 1);
  while (a > 0 && /[0-9a-zA-Z_.]/.test(text[a - 1]!)) a--;
  while (b < text.length && /[0-9a-zA-Z_.]/.test(text[b]!)) b++;
  const word = text.slice(a, b);
  const shown = word.length > 20 ? word.slice(0, 20) + '...' : word;
  switch (code) {
    case 'InvalidCommentToken': return { pos: e.offset, message: 'JSON does not allow comments (use a "note" field)' };
    case 'UnexpectedEndOfString': return { pos: e.offset, message: 'unterminated string' };
    case 'EndOfFileExpected': return { pos: e.offset, message: `unexpected ${at(e.offset)} after the end of the JSON value` };
    case 'ColonExpected': return { pos: e.offset, message: `expected ':' after a property name, found ${at(e.offset)}` };
    case 'CommaExpected':
    case 'CloseBraceExpected':
    case 'CloseBracketExpected': {
      const inArray = typeof getLocation(text, e.offset).path.at(-1) === 'number';
      return { pos: e.offset, message: `expected ',' or '${inArray ? ']' : '}'}', found ${at(e.offset)}` };
    }
    case 'InvalidSymbol':
    case 'InvalidNumberFormat':
      if (text[e.offset] === "'") return { pos: e.offset, message: 'strings must use double quotes' };
      return {
        pos: a,
        message: /^[0-9]/.test(word)
          ? `unexpected '${shown}' (hex numbers and sizes must be strings in double quotes, e.g. "0x1000", "4K")`
          : `unexpected '${shown}' (strings and hex numbers must be in double quotes)`,
      };
    default: return { pos: e.offset, message: `${code.replace(/([a-z])([A-Z])/g, '$1 $2').toLowerCase()} at ${at(e.offset)}` };
  }
}

// ---------------------------------------------------------------------------------------------
// Normalised description

export type FlagSet = bigint;

export interface EptMapping {
  gpa: bigint; hpa: bigint;
  /** bytes mapped: a multiple of `page` */
  size: bigint;
  page: PageSize;
  /** EPT_* bits of every leaf, memory type included, PS and address excluded */
  bits: bigint;
  note?: string;
  path: string;
}
export interface GuestMapping {
  gva: bigint; gpa: bigint; size: bigint; page: PageSize;
  /** PTE_* bits of every leaf, P and PS excluded (the builder adds them) */
  bits: bigint;
  note?: string;
  path: string;
}
export interface Edit {
  table: 'guest' | 'ept';
  /** GVA (guest) or GPA (ept) whose walk locates the entry */
  addr: bigint;
  /** 4 PML4E .. 1 PTE; null = the leaf of the mapping that covers `addr` */
  level: number | null;
  set: bigint;
  clear: bigint;
  /** replaces the whole entry (before set/clear) */
  value: bigint | null;
  /** EPT memory type, bits 5:3 */
  mt: number | null;
  note?: string;
  path: string;
}
export interface CpuDescription {
  wp: boolean; nxe: boolean; gbPages: boolean;
  eptAd: boolean; eptExecOnly: boolean; eptGbPages: boolean;
  vpid: number;
  pml: { enabled: boolean; index: number; address: bigint | null };
}
export interface SpaceDescription {
  source: string;
  note?: string;
  maxPhyAddr: number;
  physBytes: number;
  cpu: CpuDescription;
  tables: { hpa: bigint | null; gpa: bigint | null };
  ept: EptMapping[];
  guest: GuestMapping[];
  edits: Edit[];
}

// ---------------------------------------------------------------------------------------------
// Value readers. Each takes the node and its JSON path and throws a located SpaceError.

const hex = (v: bigint) => '0x' + v.toString(16);
const U64 = 1n << 64n;
const MAX_PAGES = 1 << 20;
const SIZE_SHIFTS: Record<string, bigint> = { K: 10n, M: 20n, G: 30n, T: 40n };

const sizeName = (n: bigint): string => {
  for (const [u, s] of [[40n, 'T'], [30n, 'G'], [20n, 'M'], [10n, 'K']] as const) {
    if (n >= 1n << u && n % (1n << u) === 0n) return `${n >> u}${s}`;
  }
  return `${n}`;
};
export const pageName = (p: bigint) => (p === PAGE_4K ? '4 KiB' : p === PAGE_2M ? '2 MiB' : p === PAGE_1G ? '1 GiB' : hex(p));

function suggest(word: string, options: string[]): string {
  let best = '', bd = 3;
  for (const o of options) {
    const w = word.toLowerCase(), l = o.toLowerCase();
    const dd = w.length >= 3 && l.length >= 3 && (w.startsWith(l) || l.startsWith(w)) ? 1 : distance(w, l);
    if (dd < bd) { bd = dd; best = o; }
  }
  return best ? ` (did you mean "${best}"?)` : '';
}

function show(n: JNode): string {
  switch (n.t) {
    case 'str': return JSON.stringify(n.value.length > 40 ? n.value.slice(0, 40) + '...' : n.value);
    case 'num': return n.raw;
    case 'bool': return String(n.value);
    case 'null': return 'null';
    case 'arr': return 'an array';
    case 'obj': return 'an object';
  }
}

class Reader {
  constructor(readonly src: Src) {}
  err(n: JNode | null, path: string, detail: string): SpaceError { return this.src.error(n ? n.pos : null, path, detail); }

  object(n: JNode, path: string, allowed: string[]): Map<string, JNode> {
    if (n.t !== 'obj') throw this.err(n, path, `expected an object, got ${show(n)}`);
    const out = new Map<string, JNode>();
    for (const [k, { keyPos, value }] of n.props) {
      if (!allowed.includes(k)) {
        throw this.src.error(keyPos, path ? `${path}.${k}` : k, `unknown field "${k}"${suggest(k, allowed)}; allowed here: ${allowed.join(', ')}`);
      }
      out.set(k, value);
    }
    return out;
  }
  array(n: JNode, path: string): JNode[] {
    if (n.t !== 'arr') throw this.err(n, path, `expected an array, got ${show(n)}`);
    return n.items;
  }
  bool(n: JNode, path: string): boolean {
    if (n.t !== 'bool') throw this.err(n, path, `expected true or false, got ${show(n)}`);
    return n.value;
  }
  string(n: JNode, path: string): string {
    if (n.t !== 'str') throw this.err(n, path, `expected a string, got ${show(n)}`);
    return n.value;
  }
  /** A non-negative integer: a JSON number, or a string "0x..." / decimal, `_` allowed between digits. */
  integer(n: JNode, path: string, what = 'a number'): bigint {
    if (n.t === 'num') {
      if (!/^-?\d+$/.test(n.raw)) throw this.err(n, path, `${n.raw} is not a whole number`);
      const v = BigInt(n.raw);
      if (v < 0n) throw this.err(n, path, `${n.raw} is negative`);
      if (v >= U64) throw this.err(n, path, `${n.raw} does not fit in 64 bits`);
      return v;
    }
    if (n.t !== 'str') throw this.err(n, path, `expected ${what} (a hex string such as "0x1000", or a number), got ${show(n)}`);
    const s = n.value.trim();
    let v: bigint;
    if (/^0x[0-9a-f]+(_[0-9a-f]+)*$/i.test(s)) v = BigInt(s.replace(/_/g, ''));
    else if (/^[0-9]+(_[0-9]+)*$/.test(s)) v = BigInt(s.replace(/_/g, ''));
    else if (/^0x$/i.test(s) || /^0x/i.test(s)) throw this.err(n, path, `${show(n)} is not a valid hex number (digits 0-9, a-f after "0x")`);
    else if (/^-/.test(s)) throw this.err(n, path, `${show(n)} is negative`);
    else throw this.err(n, path, `${show(n)} is not ${what}: write hex as "0x..." or a decimal number`);
    if (v >= U64) throw this.err(n, path, `${show(n)} does not fit in 64 bits`);
    return v;
  }
  /** A byte count: a number, hex, or a size such as "4K", "64K", "2M", "1G" (powers of 1024). */
  size(n: JNode, path: string): bigint {
    if (n.t === 'str') {
      const m = /^\s*([0-9]+)\s*([KMGT])(i?B)?\s*$/i.exec(n.value);
      if (m) {
        const shift = SIZE_SHIFTS[m[2]!.toUpperCase()]!;
        const v = BigInt(m[1]!) << shift;
        if (v >= U64) throw this.err(n, path, `${show(n)} does not fit in 64 bits`);
        return v;
      }
    }
    return this.integer(n, path, 'a size ("4K", "2M", "1G", "0x3000" or a number of bytes)');
  }
  page(n: JNode, path: string): PageSize {
    const v = this.size(n, path);
    if (v === PAGE_4K || v === PAGE_2M || v === PAGE_1G) return v;
    throw this.err(n, path, `${show(n)} is not a page size: use "4K", "2M" or "1G"`);
  }
  int(n: JNode, path: string, lo: number, hi: number): number {
    const v = this.integer(n, path);
    if (v < BigInt(lo) || v > BigInt(hi)) throw this.err(n, path, `${show(n)} is out of range ${lo}..${hi}`);
    return Number(v);
  }
}

// Flag names: the PTE_* and EPT_* constants, lower-cased without the prefix.
const namesOf = (prefix: string, skip: string[]): Map<string, bigint> => {
  const found: [string, bigint][] = [];
  for (const [k, v] of Object.entries(C)) {
    if (k.startsWith(prefix) && typeof v === 'bigint' && !skip.includes(k.slice(prefix.length))) found.push([k.slice(prefix.length).toLowerCase(), v]);
  }
  return new Map(found.sort((a, b) => (a[1] < b[1] ? -1 : a[1] > b[1] ? 1 : 0)));
};
/** Guest entry bit names: p rw us pwt pcd a d ps pat g sw_wp pat_large xd */
export const GUEST_FLAG_NAMES = namesOf('PTE_', ['ADDR', 'SW_GROUP', 'SW_GROUP_SHIFT']);
/** EPT entry bit names: r w x ipat ps a d sw_wp spp sve */
export const EPT_FLAG_NAMES = namesOf('EPT_', ['ADDR', 'RWX', 'MT', 'MT_SHIFT']);
/** EPT memory types by name (bits 5:3 of a leaf); 2, 3 and 7 are reserved */
export const EPT_MEMORY_TYPES: Record<string, number> = { uc: 0, wc: 1, wt: 4, wp: 5, wb: 6 };

type FlagContext = 'guest-map' | 'guest-edit' | 'ept-map' | 'ept-edit';

function parseFlags(r: Reader, n: JNode, path: string, ctx: FlagContext, page: PageSize = PAGE_4K): bigint {
  const tokens: { tok: string; node: JNode }[] = [];
  if (n.t === 'str') {
    for (const t of n.value.split(/[\s,|+]+/)) if (t) tokens.push({ tok: t, node: n });
  } else if (n.t === 'arr') {
    n.items.forEach((it, k) => {
      const t = r.string(it, `${path}[${k}]`).trim();
      if (t) tokens.push({ tok: t, node: it });
    });
  } else {
    throw r.err(n, path, `expected flag names as a string such as ${ctx.startsWith('ept') ? '"rwx"' : '"rw,us"'} or an array of names, got ${show(n)}`);
  }
  const guest = ctx.startsWith('guest');
  const edit = ctx.endsWith('edit');
  const names = guest ? GUEST_FLAG_NAMES : EPT_FLAG_NAMES;
  let bits = 0n;
  for (const { tok, node } of tokens) {
    const t = tok.toLowerCase();
    let b: bigint | undefined;
    if (!edit && (t === 'p' || t === 'ps')) {
      throw r.err(node, path, `"${tok}" is set by the loader (P always, PS from "page"); to change it afterwards use an entry in "edits"`);
    }
    if (guest && t === 'pat' && page !== PAGE_4K) b = C.PTE_PAT_LARGE;
    else if (guest && !edit && t === 'pat_large' && page === PAGE_4K) throw r.err(node, path, '"pat_large" is the PAT bit of a 2 MiB or 1 GiB page; a 4 KiB page uses "pat"');
    else b = names.get(t);
    if (b === undefined && !guest && /^[rwx-]+$/.test(t) && t.length <= 3) {
      b = 0n;
      for (const ch of t) {
        const bit = ch === 'r' ? C.EPT_R : ch === 'w' ? C.EPT_W : ch === 'x' ? C.EPT_X : 0n;
        if (bit && (b & bit)) { b = undefined; break; }
        b |= bit;
      }
    }
    if (b === undefined && edit) {
      const bm = /^bit(\d+)$/.exec(t);
      if (bm && Number(bm[1]) < 64) b = 1n << BigInt(bm[1]!);
      else if (/^0x[0-9a-f_]+$/.test(t)) b = BigInt(t.replace(/_/g, '')) & (U64 - 1n);
    }
    if (b === undefined) {
      const known = [...names.keys()].filter((k) => edit || (k !== 'p' && k !== 'ps'));
      const extra = edit ? ', "bitN" (N = 0..63) or a hex mask "0x..."' : '';
      const letters = !guest ? ', or letters such as "rwx" / "r-x"' : '';
      throw r.err(node, path, `unknown ${guest ? 'guest page-table' : 'EPT'} flag "${tok}"${suggest(t, known)}; known: ${known.join(' ')}${letters}${extra}`);
    }
    bits |= b;
  }
  return bits;
}

function parseMemType(r: Reader, n: JNode, path: string, allowReserved: boolean): number {
  if (n.t === 'str' && !/^(0x)?[0-9]+$/i.test(n.value.trim())) {
    const v = EPT_MEMORY_TYPES[n.value.trim().toLowerCase()];
    if (v === undefined) throw r.err(n, path, `unknown memory type ${show(n)}${suggest(n.value, Object.keys(EPT_MEMORY_TYPES))}; use uc, wc, wt, wp, wb or a number 0..7`);
    return v;
  }
  const v = r.int(n, path, 0, 7);
  if (!allowReserved && (v === 2 || v === 3 || v === 7)) {
    throw r.err(n, path, `memory type ${v} is reserved (an EPT misconfiguration); to build that case on purpose use "mt" in "edits"`);
  }
  return v;
}

const LEVEL_NAMES: Record<string, number> = { pml4e: 4, pdpte: 3, pde: 2, pte: 1 };
function parseLevel(r: Reader, n: JNode, path: string): number {
  if (n.t === 'str' && LEVEL_NAMES[n.value.trim().toLowerCase()] !== undefined) return LEVEL_NAMES[n.value.trim().toLowerCase()]!;
  if (n.t === 'num' || (n.t === 'str' && /^[0-9]+$/.test(n.value.trim()))) return r.int(n, path, 1, 4);
  throw r.err(n, path, `expected a level 1..4 or one of "pml4e", "pdpte", "pde", "pte", got ${show(n)}`);
}

const canonical = (a: bigint) => { const top = a >> 47n; return top === 0n || top === 0x1ffffn; };

// ---------------------------------------------------------------------------------------------
// parseSpace: text -> validated description

interface Located { lo: bigint; hi: bigint; path: string; node: JNode }

function checkOverlaps(r: Reader, ranges: Located[], what: string): void {
  const sorted = [...ranges].sort((a, b) => (a.lo < b.lo ? -1 : a.lo > b.lo ? 1 : 0));
  for (let k = 1; k < sorted.length; k++) {
    const a = sorted[k - 1]!, b = sorted[k]!;
    if (b.lo < a.hi) {
      const [first, second] = a.path < b.path ? [a, b] : [b, a];
      throw r.err(second.node, second.path, `${what} ${hex(second.lo)}..${hex(second.hi - 1n)} overlaps ${first.path} (${hex(first.lo)}..${hex(first.hi - 1n)})`);
    }
  }
}

/** Parses and validates a description. `source` names it in error messages. */
export function parseSpace(text: string, source = '<input>'): SpaceDescription {
  const src = new Src(text.charCodeAt(0) === 0xfeff ? text.slice(1) : text, source);
  if (src.text.trim() === '') throw src.error(0, '', 'the file is empty (expected a JSON object)');
  const r = new Reader(src);
  const root = parseJson(src);
  const top = r.object(root, '', ['note', 'maxPhyAddr', 'physBytes', 'cpu', 'tables', 'ept', 'guest', 'edits']);
  const get = (m: Map<string, JNode>, k: string) => m.get(k);

  const note = get(top, 'note') && r.string(get(top, 'note')!, 'note');
  const maxPhyAddr = get(top, 'maxPhyAddr') ? r.int(get(top, 'maxPhyAddr')!, 'maxPhyAddr', 36, 52) : 46;
  const phyLimit = 1n << BigInt(maxPhyAddr);
  let physBytes = 16 << 20;
  const pbNode = get(top, 'physBytes');
  if (pbNode) {
    const v = r.size(pbNode, 'physBytes');
    if (v === 0n || v % PAGE_4K !== 0n) throw r.err(pbNode, 'physBytes', `${show(pbNode)} must be a positive multiple of 4096 (4K)`);
    if (v > 3n << 30n) throw r.err(pbNode, 'physBytes', `${show(pbNode)} (${sizeName(v)}) is more than the simulator can hold (at most 3G: its memory is one 32-bit WebAssembly memory)`);
    physBytes = Number(v);
  }
  const physLimit = BigInt(physBytes);

  // cpu
  const cpu: CpuDescription = {
    wp: true, nxe: true, gbPages: true, eptAd: true, eptExecOnly: true, eptGbPages: true, vpid: 1,
    pml: { enabled: false, index: 511, address: null },
  };
  const cpuNode = get(top, 'cpu');
  if (cpuNode) {
    const m = r.object(cpuNode, 'cpu', ['wp', 'nxe', 'gbPages', 'eptAd', 'eptExecOnly', 'eptGbPages', 'vpid', 'pml', 'note']);
    for (const k of ['wp', 'nxe', 'gbPages', 'eptAd', 'eptExecOnly', 'eptGbPages'] as const) {
      const n = m.get(k);
      if (n) cpu[k] = r.bool(n, `cpu.${k}`);
    }
    if (m.get('vpid')) cpu.vpid = r.int(m.get('vpid')!, 'cpu.vpid', 0, 0xffff);
    if (m.get('note')) r.string(m.get('note')!, 'cpu.note');
    const pmlNode = m.get('pml');
    if (pmlNode) {
      const p = r.object(pmlNode, 'cpu.pml', ['enabled', 'index', 'address', 'note']);
      if (p.get('enabled')) cpu.pml.enabled = r.bool(p.get('enabled')!, 'cpu.pml.enabled');
      if (p.get('index')) cpu.pml.index = r.int(p.get('index')!, 'cpu.pml.index', 0, 0xffff);
      if (p.get('note')) r.string(p.get('note')!, 'cpu.pml.note');
      const a = p.get('address');
      if (a) {
        const v = r.integer(a, 'cpu.pml.address');
        if (v % PAGE_4K !== 0n) throw r.err(a, 'cpu.pml.address', `${show(a)} is not 4 KiB aligned`);
        if (v + PAGE_4K > physLimit) throw r.err(a, 'cpu.pml.address', `HPA ${show(a)} is beyond physBytes (${hex(physLimit)})`);
        cpu.pml.address = v;
      }
      if (cpu.pml.enabled && !cpu.eptAd) throw r.err(p.get('enabled')!, 'cpu.pml.enabled', 'PML needs EPT accessed and dirty flags: set "eptAd": true');
    }
  }

  // tables
  const tables: SpaceDescription['tables'] = { hpa: null, gpa: null };
  const tNode = get(top, 'tables');
  if (tNode) {
    const m = r.object(tNode, 'tables', ['hpa', 'gpa', 'note']);
    if (m.get('note')) r.string(m.get('note')!, 'tables.note');
    for (const k of ['hpa', 'gpa'] as const) {
      const n = m.get(k);
      if (!n) continue;
      const v = r.integer(n, `tables.${k}`);
      if (v % PAGE_4K !== 0n) throw r.err(n, `tables.${k}`, `${show(n)} is not 4 KiB aligned`);
      if (k === 'hpa' && v >= physLimit) throw r.err(n, 'tables.hpa', `HPA ${show(n)} is beyond physBytes (${hex(physLimit)})`);
      if (k === 'gpa' && v >= phyLimit) throw r.err(n, 'tables.gpa', `GPA ${show(n)} is beyond MAXPHYADDR (${maxPhyAddr} bits: below ${hex(phyLimit)})`);
      tables[k] = v;
    }
  }

  let pages = 0;
  const countPages = (size: bigint, page: bigint, n: JNode, path: string) => {
    pages += Number(size / page);
    if (pages > MAX_PAGES) throw r.err(n, path, `the description maps more than ${MAX_PAGES} pages in all; use larger pages`);
  };
  const sizeAndPage = (m: Map<string, JNode>, n: JNode, path: string): { size: bigint; page: PageSize } => {
    const page = m.get('page') ? r.page(m.get('page')!, `${path}.page`) : PAGE_4K;
    const sNode = m.get('size');
    const size = sNode ? r.size(sNode, `${path}.size`) : page;
    if (sNode && (size === 0n || size % page !== 0n)) {
      throw r.err(sNode, `${path}.size`, `${show(sNode)} is not a positive multiple of the page size (${pageName(page)})`);
    }
    countPages(size, page, sNode ?? n, path);
    return { size, page };
  };
  const required = (m: Map<string, JNode>, n: JNode, path: string, k: string, example: string): JNode => {
    const v = m.get(k);
    if (!v) throw r.err(n, path, `missing field "${k}" (for example "${k}": ${example})`);
    return v;
  };
  const physAddr = (n: JNode, path: string, what: 'GPA' | 'HPA', size: bigint, page: bigint): bigint => {
    const v = r.integer(n, path);
    if (v % page !== 0n) throw r.err(n, path, `${what} ${show(n)} is not aligned to its page size (${pageName(page)})`);
    if (what === 'GPA' && v + size > phyLimit) {
      throw r.err(n, path, `GPA ${show(n)}${size > page ? ` + ${sizeName(size)}` : ''} is beyond MAXPHYADDR (${maxPhyAddr} bits: GPAs are below ${hex(phyLimit)})`);
    }
    if (what === 'HPA' && v + size > physLimit) {
      throw r.err(n, path, `HPA ${show(n)}${size > PAGE_4K ? ` + ${sizeName(size)}` : ''} is beyond physBytes (the simulated memory is ${hex(physLimit)} bytes)`);
    }
    return v;
  };

  // ept
  const ept: EptMapping[] = [];
  const eptNode = get(top, 'ept');
  const eptRanges: Located[] = [];
  if (eptNode) {
    r.array(eptNode, 'ept').forEach((n, k) => {
      const path = `ept[${k}]`;
      const m = r.object(n, path, ['gpa', 'hpa', 'size', 'page', 'perm', 'mt', 'note']);
      const { size, page } = sizeAndPage(m, n, path);
      const gNode = required(m, n, path, 'gpa', '"0x0"');
      const gpa = physAddr(gNode, `${path}.gpa`, 'GPA', size, page);
      const hpa = physAddr(required(m, n, path, 'hpa', '"0x100000"'), `${path}.hpa`, 'HPA', size, page);
      let bits = parseFlags(r, required(m, n, path, 'perm', '"rwx"'), `${path}.perm`, 'ept-map', page);
      const mt = m.get('mt') ? parseMemType(r, m.get('mt')!, `${path}.mt`, false) : 6;
      bits |= BigInt(mt) << C.EPT_MT_SHIFT;
      const permNode = m.get('perm')!;
      if ((bits & C.EPT_SPP) && page !== PAGE_4K) throw r.err(permNode, `${path}.perm`, '"spp" applies to 4 KiB EPT pages only');
      const rwx = bits & C.EPT_RWX;
      if (rwx === 2n || rwx === 6n) throw r.err(permNode, `${path}.perm`, `${show(permNode)} allows writes without reads, an EPT misconfiguration; to build that case on purpose use "edits"`);
      if (rwx === 4n && !cpu.eptExecOnly) throw r.err(permNode, `${path}.perm`, `${show(permNode)} is execute-only, an EPT misconfiguration while cpu.eptExecOnly is false; to build that case on purpose use "edits"`);
      if (page === PAGE_1G && !cpu.eptGbPages) throw r.err(m.get('page')!, `${path}.page`, '1 GiB EPT pages need cpu.eptGbPages: true');
      const note = m.get('note') && r.string(m.get('note')!, `${path}.note`);
      ept.push({ gpa, hpa, size, page, bits, path, ...(note !== undefined ? { note } : {}) });
      eptRanges.push({ lo: gpa, hi: gpa + size, path: `${path}.gpa`, node: gNode });
    });
  }
  checkOverlaps(r, eptRanges, 'GPA range');

  // guest
  const guest: GuestMapping[] = [];
  const guestNode = get(top, 'guest');
  const gvaRanges: Located[] = [];
  if (guestNode) {
    r.array(guestNode, 'guest').forEach((n, k) => {
      const path = `guest[${k}]`;
      const m = r.object(n, path, ['gva', 'gpa', 'size', 'page', 'flags', 'note']);
      const { size, page } = sizeAndPage(m, n, path);
      const vNode = required(m, n, path, 'gva', '"0x400000"');
      const gva = r.integer(vNode, `${path}.gva`);
      if (!canonical(gva)) throw r.err(vNode, `${path}.gva`, `GVA ${show(vNode)} is not canonical (bits 63:47 must be all 0 or all 1, e.g. below 0x800000000000 or from 0xffff800000000000)`);
      if (gva % page !== 0n) throw r.err(vNode, `${path}.gva`, `GVA ${show(vNode)} is not aligned to its page size (${pageName(page)})`);
      const last = gva + size - 1n;
      if (last >= U64 || !canonical(last) || (last >> 47n) !== (gva >> 47n)) {
        throw r.err(m.get('size') ?? vNode, `${path}.size`, `GVA range ${hex(gva)} + ${sizeName(size)} runs past the end of the canonical half it starts in`);
      }
      const gpa = physAddr(required(m, n, path, 'gpa', '"0x0"'), `${path}.gpa`, 'GPA', size, page);
      const bits = parseFlags(r, required(m, n, path, 'flags', '"rw,us"'), `${path}.flags`, 'guest-map', page);
      if ((bits & C.PTE_XD) && !cpu.nxe) throw r.err(m.get('flags')!, `${path}.flags`, '"xd" is a reserved bit while cpu.nxe is false; to build that case on purpose use "edits"');
      if (page === PAGE_1G && !cpu.gbPages) throw r.err(m.get('page')!, `${path}.page`, '1 GiB guest pages need cpu.gbPages: true');
      const note = m.get('note') && r.string(m.get('note')!, `${path}.note`);
      guest.push({ gva, gpa, size, page, bits, path, ...(note !== undefined ? { note } : {}) });
      gvaRanges.push({ lo: gva, hi: gva + size, path: `${path}.gva`, node: vNode });
    });
  }
  checkOverlaps(r, gvaRanges, 'GVA range');

  // edits
  const edits: Edit[] = [];
  const editsNode = get(top, 'edits');
  if (editsNode) {
    r.array(editsNode, 'edits').forEach((n, k) => {
      const path = `edits[${k}]`;
      const m = r.object(n, path, ['table', 'gva', 'gpa', 'level', 'set', 'clear', 'value', 'mt', 'note']);
      const tNode = required(m, n, path, 'table', '"guest"');
      const tv = r.string(tNode, `${path}.table`);
      if (tv !== 'guest' && tv !== 'ept') throw r.err(tNode, `${path}.table`, `${show(tNode)} is not a table: use "guest" (locate the entry by "gva") or "ept" (by "gpa")`);
      const table = tv;
      const key = table === 'guest' ? 'gva' : 'gpa';
      const other = table === 'guest' ? 'gpa' : 'gva';
      if (m.get(other)) throw r.err(m.get(other)!, `${path}.${other}`, `a "${table}" edit locates its entry by "${key}", not "${other}"`);
      const aNode = required(m, n, path, key, table === 'guest' ? '"0x401000"' : '"0x1000"');
      const addr = r.integer(aNode, `${path}.${key}`);
      if (table === 'guest' && !canonical(addr)) throw r.err(aNode, `${path}.gva`, `GVA ${show(aNode)} is not canonical (bits 63:47 must be all 0 or all 1)`);
      if (table === 'ept' && addr >= phyLimit) throw r.err(aNode, `${path}.gpa`, `GPA ${show(aNode)} is beyond MAXPHYADDR (${maxPhyAddr} bits: below ${hex(phyLimit)})`);
      const level = m.get('level') ? parseLevel(r, m.get('level')!, `${path}.level`) : null;
      const ctx = table === 'guest' ? 'guest-edit' : 'ept-edit';
      const set = m.get('set') ? parseFlags(r, m.get('set')!, `${path}.set`, ctx) : 0n;
      const clear = m.get('clear') ? parseFlags(r, m.get('clear')!, `${path}.clear`, ctx) : 0n;
      if (set & clear) throw r.err(m.get('clear')!, `${path}.clear`, `bits ${hex(set & clear)} are both set and cleared`);
      const value = m.get('value') ? r.integer(m.get('value')!, `${path}.value`) : null;
      if (m.get('mt') && table !== 'ept') throw r.err(m.get('mt')!, `${path}.mt`, '"mt" (EPT memory type) applies to "ept" edits only');
      const mt = m.get('mt') ? parseMemType(r, m.get('mt')!, `${path}.mt`, true) : null;
      if (!m.get('set') && !m.get('clear') && value === null && mt === null) throw r.err(n, path, 'the edit changes nothing: give "set", "clear", "value" or "mt"');
      const note = m.get('note') && r.string(m.get('note')!, `${path}.note`);
      edits.push({ table, addr, level, set, clear, value, mt, path, ...(note !== undefined ? { note } : {}) });
    });
  }

  return { source, ...(note !== undefined ? { note } : {}), maxPhyAddr, physBytes, cpu, tables, ept, guest, edits };
}

// ---------------------------------------------------------------------------------------------
// buildSpace: description -> tables in a Sim

/** A described address space, built. */
export interface Space {
  sim: Sim;
  description: SpaceDescription;
  ept: EptBuilder;
  guest: GuestPtBuilder;
  cr3: bigint;
  eptp: bigint;
  /** where the table frames went: `hpaFrames` 4 KiB frames from `hpa`; guest tables' GPAs from `gpa` */
  tables: { hpa: bigint; hpaFrames: number; gpa: bigint; gpaFrames: number };
  pmlAddress: bigint | null;
  /** things that are legal but often mistakes (a guest page whose GPA the EPT does not map) */
  warnings: string[];
}

class MapMemory implements PhysMemory {
  private m = new Map<bigint, bigint>();
  read64(hpa: bigint): bigint { return this.m.get(hpa) ?? 0n; }
  write64(hpa: bigint, v: bigint): void { this.m.set(hpa, v); }
}

/** Builds the tables in the order the real build uses; returns the builders. */
function buildInto(d: SpaceDescription, mem: PhysMemory, frames: FrameAllocator, gpaFrames: FrameAllocator, withEpt: boolean) {
  const mask = addrMaskFor(d.maxPhyAddr);
  const ept = new EptBuilder(mem, frames, mask);
  const guest = new GuestPtBuilder(mem, frames, gpaFrames, ept, mask);
  let at = '';
  try {
    if (withEpt) {
      for (const e of d.ept) {
        at = e.path;
        for (let o = 0n; o < e.size; o += e.page) ept.map(e.gpa + o, e.hpa + o, e.page, e.bits);
      }
    }
    for (const g of d.guest) {
      at = g.path;
      for (let o = 0n; o < g.size; o += g.page) guest.map(g.gva + o, g.gpa + o, g.page, g.bits);
    }
  } catch (e) {
    throw new SpaceError(d.source, at, 0, 0, (e as Error).message);
  }
  return { ept, guest };
}

/** Lowest `align`-aligned base in [0, limit) with [base, base+bytes) clear of every range. */
function findGap(ranges: { lo: bigint; hi: bigint }[], bytes: bigint, align: bigint, limit: bigint): bigint | null {
  const up = (v: bigint) => ((v + align - 1n) / align) * align;
  const cands = [0n, ...ranges.map((x) => up(x.hi))].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  for (const c of cands) {
    if (c + bytes > limit) continue;
    if (ranges.every((x) => x.hi <= c || x.lo >= c + bytes)) return c;
  }
  return null;
}

function firstOverlap<T extends { lo: bigint; hi: bigint }>(ranges: T[], lo: bigint, hi: bigint): T | undefined {
  return ranges.find((x) => x.lo < hi && lo < x.hi);
}

function union(ranges: { lo: bigint; hi: bigint }[]): { lo: bigint; hi: bigint }[] {
  const s = [...ranges].sort((a, b) => (a.lo < b.lo ? -1 : a.lo > b.lo ? 1 : 0));
  const out: { lo: bigint; hi: bigint }[] = [];
  for (const x of s) {
    const last = out[out.length - 1];
    if (last && x.lo <= last.hi) { if (x.hi > last.hi) last.hi = x.hi; } else out.push({ ...x });
  }
  return out;
}

/** Builds a validated description into a new Sim (extra Sim options, e.g. TLB size, may be given). */
export async function buildSpace(d: SpaceDescription, simOptions: Omit<SimOptions, 'physBytes' | 'maxPhyAddr'> = {}): Promise<Space> {
  const fail = (path: string, detail: string): never => { throw new SpaceError(d.source, path, 0, 0, detail); };
  const huge = 1n << 52n;
  const phyLimit = 1n << BigInt(d.maxPhyAddr);
  const physLimit = BigInt(d.physBytes);

  // 1. How many guest table frames (their count does not depend on where they go).
  const probe1 = new FrameAllocator(0n, huge);
  const gpaProbe = new FrameAllocator(0n, huge);
  buildInto(d, new MapMemory(), probe1, gpaProbe, false);
  const gpaBytes = gpaProbe.used;

  // 2. Their GPAs: clear of every GPA the EPT or the guest maps.
  const gpaUsed = [...d.ept.map((e) => ({ lo: e.gpa, hi: e.gpa + e.size, path: `${e.path}.gpa` })),
    ...d.guest.map((g) => ({ lo: g.gpa, hi: g.gpa + g.size, path: `${g.path}.gpa` }))];
  let gpaBase: bigint;
  if (d.tables.gpa !== null) {
    gpaBase = d.tables.gpa;
    if (gpaBase + gpaBytes > phyLimit) fail('tables.gpa', `${hex(gpaBase)} + ${gpaBytes / PAGE_4K} table frames runs beyond MAXPHYADDR (${hex(phyLimit)})`);
    const hit = firstOverlap(gpaUsed.slice(0, d.ept.length), gpaBase, gpaBase + gpaBytes);
    if (hit) fail('tables.gpa', `the ${gpaBytes / PAGE_4K} guest table frames at GPA ${hex(gpaBase)}..${hex(gpaBase + gpaBytes - 1n)} overlap ${hit.path} (${hex(hit.lo)}..${hex(hit.hi - 1n)}); the EPT maps table GPAs itself`);
  } else {
    const g = findGap(gpaUsed, gpaBytes, PAGE_2M, phyLimit);
    if (g === null) fail('tables', `no free GPA range of ${gpaBytes / PAGE_4K} pages for the guest page tables; give "tables": { "gpa": ... }`);
    gpaBase = g!;
  }

  // 3. How many host frames in all (EPT tables, guest tables, the PML page).
  const probe2 = new FrameAllocator(0n, huge);
  buildInto(d, new MapMemory(), probe2, new FrameAllocator(gpaBase, gpaBase + gpaBytes), true);
  const needPml = d.cpu.pml.enabled && d.cpu.pml.address === null;
  const hpaBytes = probe2.used + (needPml ? PAGE_4K : 0n);

  // 4. Their HPAs: clear of every HPA the EPT maps and of the PML page.
  const hpaUsed = d.ept.map((e) => ({ lo: e.hpa, hi: e.hpa + e.size, path: `${e.path}.hpa` }));
  if (d.cpu.pml.address !== null) hpaUsed.push({ lo: d.cpu.pml.address, hi: d.cpu.pml.address + PAGE_4K, path: 'cpu.pml.address' });
  let hpaBase: bigint;
  if (d.tables.hpa !== null) {
    hpaBase = d.tables.hpa;
    if (hpaBase + hpaBytes > physLimit) fail('tables.hpa', `${hex(hpaBase)} + ${hpaBytes / PAGE_4K} table frames runs beyond physBytes (${hex(physLimit)})`);
    const hit = firstOverlap(hpaUsed, hpaBase, hpaBase + hpaBytes);
    if (hit) fail('tables.hpa', `the ${hpaBytes / PAGE_4K} table frames at HPA ${hex(hpaBase)}..${hex(hpaBase + hpaBytes - 1n)} overlap ${hit.path} (${hex(hit.lo)}..${hex(hit.hi - 1n)})`);
  } else {
    const g = findGap(hpaUsed, hpaBytes, 0x10000n, physLimit);
    if (g === null) fail('physBytes', `no free host range of ${hpaBytes / PAGE_4K} frames (${sizeName(hpaBytes)}) is left for the page tables; raise physBytes or give "tables": { "hpa": ... }`);
    hpaBase = g!;
  }

  // 5. The real build.
  let sim: Sim;
  try {
    sim = await Sim.create({ ...simOptions, physBytes: d.physBytes, maxPhyAddr: d.maxPhyAddr });
  } catch (e) {
    if (/Run `npm run build`|cannot read|cannot fetch/.test((e as Error).message)) throw e;
    return fail('physBytes', (e as Error).message);
  }
  const frames = new FrameAllocator(hpaBase, hpaBase + hpaBytes);
  const { ept, guest } = buildInto(d, sim, frames, new FrameAllocator(gpaBase, gpaBase + gpaBytes), true);
  const pmlAddress = d.cpu.pml.enabled ? (d.cpu.pml.address ?? frames.alloc()) : d.cpu.pml.address;

  // 6. Edits: every entry is located in the pristine tables, then they are applied in order.
  const mask = addrMaskFor(d.maxPhyAddr);
  const tableGpa = { lo: gpaBase, hi: gpaBase + gpaBytes };
  const located = d.edits.map((e) => ({ e, hpa: locate(d, sim, ept, guest, e, mask, tableGpa) }));
  for (const { e, hpa } of located) {
    let v = e.value ?? sim.read64(hpa);
    v = (v & ~e.clear) | e.set;
    if (e.mt !== null) v = (v & ~C.EPT_MT) | (BigInt(e.mt) << C.EPT_MT_SHIFT);
    sim.write64(hpa, v);
  }

  // 7. The vCPU.
  const eptp = ept.eptp(d.cpu.eptAd);
  try {
    sim.setCpu({
      cr3: guest.cr3, eptp, wp: d.cpu.wp, nxe: d.cpu.nxe, gbPages: d.cpu.gbPages, eptExecOnly: d.cpu.eptExecOnly,
      eptGbPages: d.cpu.eptGbPages, vpid: d.cpu.vpid,
      pml: { enabled: d.cpu.pml.enabled, address: pmlAddress ?? 0n, index: d.cpu.pml.index },
    });
  } catch (e) {
    fail('cpu', (e as Error).message);
  }

  // 8. Warnings: guest pages whose GPAs no EPT mapping covers.
  const warnings: string[] = [];
  const covered = union(d.ept.map((e) => ({ lo: e.gpa, hi: e.gpa + e.size })));
  for (const g of d.guest) {
    const gaps: { lo: bigint; hi: bigint }[] = [];
    let lo = g.gpa;
    const hi = g.gpa + g.size;
    for (const c of covered) {
      if (c.hi <= lo) continue;
      if (c.lo >= hi) break;
      if (c.lo > lo) gaps.push({ lo, hi: c.lo });
      lo = c.hi;
    }
    if (lo < hi) gaps.push({ lo, hi });
    if (gaps.length) {
      const gap = gaps[0]!;
      const more = gaps.length > 1 ? ` (and ${gaps.length - 1} more range${gaps.length > 2 ? 's' : ''})` : '';
      warnings.push(`${g.path} maps GPA ${hex(gap.lo)}${gap.hi - gap.lo > PAGE_4K ? `..${hex(gap.hi - 1n)}` : ''}${more}, which no "ept" entry maps: accesses there end in EPT violations`);
    }
  }

  return {
    sim, description: d, ept, guest, cr3: guest.cr3, eptp,
    tables: { hpa: hpaBase, hpaFrames: Number(hpaBytes / PAGE_4K), gpa: gpaBase, gpaFrames: Number(gpaBytes / PAGE_4K) },
    pmlAddress, warnings,
  };
}

const LEVEL_ENTRY = ['', 'PTE', 'PDE', 'PDPTE', 'PML4E'];

/** HPA of the entry an edit names, found in the tables as built (before any edit). */
function locate(d: SpaceDescription, sim: Sim, ept: EptBuilder, guest: GuestPtBuilder, e: Edit, mask: bigint, tableGpa: { lo: bigint; hi: bigint }): bigint {
  const fail = (path: string, detail: string): never => { throw new SpaceError(d.source, path, 0, 0, detail); };
  const key = e.table === 'guest' ? 'gva' : 'gpa';
  const what = e.table === 'guest' ? 'GVA' : 'GPA';
  let target = e.level;
  if (target === null) {
    const cover = e.table === 'guest'
      ? d.guest.find((g) => e.addr >= g.gva && e.addr < g.gva + g.size)
      : d.ept.find((m) => e.addr >= m.gpa && e.addr < m.gpa + m.size);
    if (cover) target = cover.page === PAGE_4K ? 1 : cover.page === PAGE_2M ? 2 : 3;
    else if (e.table === 'ept' && e.addr >= tableGpa.lo && e.addr < tableGpa.hi) target = 1;
    else {
      return fail(`${e.path}.${key}`, `no ${e.table} mapping covers ${what} ${hex(e.addr)}; give "level" to edit an entry on its walk anyway`);
    }
  }
  const isTable = (v: bigint, level: number) => (e.table === 'guest' ? (v & C.PTE_P) !== 0n : (v & 7n) !== 0n) && (level === 4 || (v & C.PTE_PS) === 0n);
  let table = e.table === 'guest' ? guest.root : ept.root;
  const va = e.table === 'guest' ? e.addr & 0xffff_ffff_ffffn : e.addr;
  for (let level = 4; ; level--) {
    let tHpa = table;
    if (e.table === 'guest') {
      const h = ept.translate(table);
      if (h === null) return fail(`${e.path}.gva`, `the guest table at GPA ${hex(table)} has no EPT mapping`);
      tHpa = h;
    }
    const hpa = tHpa + 8n * ((va >> BigInt(3 + 9 * level)) & 511n);
    if (level === target) return hpa;
    const v = sim.read64(hpa);
    if (!isTable(v, level)) {
      const why = (e.table === 'guest' ? (v & C.PTE_P) === 0n : (v & 7n) === 0n) ? 'is not present' : 'maps a page';
      return fail(`${e.path}.level`, `the ${e.table === 'ept' ? 'EPT ' : 'guest '}${LEVEL_ENTRY[level]} for ${what} ${hex(e.addr)} ${why}, so there is no level-${target} (${LEVEL_ENTRY[target]}) entry below it`);
    }
    table = v & mask;
  }
}

/** Parses, validates and builds a description in one step. */
export async function loadSpace(text: string, source = '<input>', simOptions?: Omit<SimOptions, 'physBytes' | 'maxPhyAddr'>): Promise<Space> {
  return buildSpace(parseSpace(text, source), simOptions);
}

/** Reads a description file (errors name the file) and builds it. */
export async function loadSpaceFile(file: string, simOptions?: Omit<SimOptions, 'physBytes' | 'maxPhyAddr'>): Promise<Space> {
  const { readFile } = await import('node:fs/promises');
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' ? 'no such file' : code === 'EISDIR' ? 'is a directory' : code === 'EACCES' ? 'permission denied' : (e as Error).message;
    throw new SpaceError(file, '', 0, 0, `cannot read the address-space file: ${why}`);
  }
  return loadSpace(text, file, simOptions);
}

// ---------------------------------------------------------------------------------------------
// The demo space

/** The GVA `granule walk` uses when none is given with the demo space. */
export const DEMO_GVA = 0x401234n;

/** A small, readable space: the default for `granule walk` and `granule demo`. */
export const DEMO_SPACE_JSON = `{
  "note": "granule demo space: four ordinary 4 KiB pages, one write-protected page, one page the EPT keeps read-only, an unmapped GVA (0x406000) and one 2 MiB page",
  "maxPhyAddr": 46,
  "physBytes": "16M",
  "cpu": { "wp": true, "nxe": true, "eptAd": true, "vpid": 1 },
  "tables": { "gpa": "0x100000", "hpa": "0x800000", "note": "guest page tables at GPA 1 MiB; every table frame at HPA 8 MiB" },
  "ept": [
    { "gpa": "0x0",      "hpa": "0x200000", "size": "20K", "perm": "rwx", "note": "ordinary data pages" },
    { "gpa": "0x5000",   "hpa": "0x205000", "perm": "r",   "note": "the EPT denies writes here" },
    { "gpa": "0x200000", "hpa": "0x400000", "page": "2M", "perm": "rw", "note": "one 2 MiB EPT page" }
  ],
  "guest": [
    { "gva": "0x400000", "gpa": "0x0",      "size": "20K", "flags": "rw,us", "note": "five 4 KiB pages" },
    { "gva": "0x405000", "gpa": "0x5000",   "flags": "rw,us", "note": "writable in the guest, read-only in the EPT" },
    { "gva": "0x600000", "gpa": "0x200000", "page": "2M", "flags": "rw,us,xd", "note": "one 2 MiB guest page" }
  ],
  "edits": [
    { "table": "guest", "gva": "0x404000", "clear": "rw", "set": "sw_wp", "note": "write-protected by the monitor" }
  ]
}
`;

export function demoSpace(simOptions?: Omit<SimOptions, 'physBytes' | 'maxPhyAddr'>): Promise<Space> {
  return loadSpace(DEMO_SPACE_JSON, '<demo space>', simOptions);
}
