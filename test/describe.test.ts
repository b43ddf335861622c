// Address-space descriptions (src/describe.ts): every validation error names its source, JSON
// path, position and value; a described space, built and walked, gives the HPAs the description
// implies (computed here from the description itself, not from the loader).
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { writeFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  parseSpace, loadSpace, loadSpaceFile, demoSpace, SpaceError, DEMO_GVA, DEMO_SPACE_JSON, GUEST_FLAG_NAMES, EPT_FLAG_NAMES,
} from '../src/describe.ts';
import {
  ACC_READ, ACC_WRITE, ACC_FETCH, ACC_USER, FAULT_PF, FAULT_EPT_VIOLATION, FAULT_EPT_MISCONFIG, PFEC_P, PFEC_WR, PFEC_US,
  PFEC_RSVD, PFEC_ID, EQ_WRITE, EQ_READABLE, PTE_RW, PTE_US, PTE_SW_WP, PTE_XD, PTE_PS, EPT_R, EPT_W, EPT_X, EPT_MT, EPT_SPP,
} from '../src/consts.ts';

// ---------------------------------------------------------------------------------------------
// Errors

/** Parses `text` (or builds it, with `build`) and returns the SpaceError it must raise. */
async function fails(text: string, opts: { build?: boolean; source?: string } = {}): Promise<SpaceError> {
  try {
    if (opts.build) await loadSpace(text, opts.source ?? 'case.json');
    else parseSpace(text, opts.source ?? 'case.json');
  } catch (e) {
    if (!(e instanceof SpaceError)) throw e;
    return e;
  }
  return assert.unreachable(`expected an error for:\n${text}`) as never;
}

function expectError(e: SpaceError, path: string, ...fragments: (string | RegExp)[]) {
  assert.is(e.path, path, `path of: ${e.message}`);
  assert.ok(e.message.startsWith(`${e.source}`), e.message);
  for (const f of fragments) {
    if (typeof f === 'string') assert.ok(e.message.includes(f), `"${f}" not in: ${e.message}`);
    else assert.match(e.message, f);
  }
}

/** The 1-based line and column of the first occurrence of `needle` in `text`. */
function at(text: string, needle: string): [number, number] {
  const i = text.indexOf(needle);
  if (i < 0) throw new Error(`${needle} not in text`);
  const before = text.slice(0, i).split('\n');
  return [before.length, before[before.length - 1]!.length + 1];
}

const EPT0 = '{ "gpa": "0x0", "hpa": "0x100000", "size": "64K", "perm": "rwx" }';
const G0 = '{ "gva": "0x400000", "gpa": "0x0", "size": "8K", "flags": "rw,us" }';
const space = (parts: { top?: string; ept?: string[]; guest?: string[]; edits?: string[] }) =>
  `{\n  "physBytes": "16M",${parts.top ?? ''}\n  "ept": [\n    ${(parts.ept ?? [EPT0]).join(',\n    ')}\n  ],\n  "guest": [\n    ${(parts.guest ?? [G0]).join(',\n    ')}\n  ]${parts.edits ? `,\n  "edits": [\n    ${parts.edits.join(',\n    ')}\n  ]` : ''}\n}\n`;

test('the base description used below is valid', async () => {
  const s = await loadSpace(space({}), 'base.json');
  assert.is(s.description.guest.length, 1);
  assert.equal(s.warnings, []);
});

test('malformed JSON: the error gives line and column', async () => {
  const text = '{\n  "guest": [\n    { "gva": "0x400000" "gpa": "0x0" }\n  ]\n}\n';
  const e = await fails(text, { source: 'bad.json' });
  assert.is(e.line, 3);
  assert.is(e.column, 25);
  assert.is(e.source, 'bad.json');
  assert.ok(e.message.startsWith('bad.json:3:25: '), e.message);
  assert.match(e.message, /expected ',' or '}'/);

  const trailing = '{\n  "maxPhyAddr": 46,\n}\n';
  const t = await fails(trailing);
  assert.equal([t.line, t.column], at(trailing, ',\n}'));
  assert.match(t.message, /trailing comma/);

  const arr = '{ "ept": [ {"gpa": 0, "hpa": "0x1000", "perm": "r"}, ] }';
  const ta = await fails(arr);
  assert.match(ta.message, /trailing comma before '\]'/);
  assert.is(ta.column, arr.indexOf('}, ]') + 2);

  const unterminated = '{ "note": "abc }';
  assert.match((await fails(unterminated)).message, /unterminated string/);

  const comment = '{\n  // mappings\n  "guest": []\n}';
  const c = await fails(comment);
  assert.equal([c.line, c.column], [2, 3]);
  assert.match(c.message, /comments/);

  const dup = '{ "maxPhyAddr": 46, "maxPhyAddr": 40 }';
  const d = await fails(dup);
  assert.match(d.message, /duplicate key "maxPhyAddr"/);
  assert.is(d.column, dup.lastIndexOf('"maxPhyAddr"') + 1);

  assert.match((await fails('')).message, /empty/);
  assert.match((await fails('{} {}')).message, /after the end of the JSON value/);
  assert.match((await fails('{ "gva": 0x400000 }')).message, /'0x400000'.*in double quotes/);
  assert.match((await fails('{ "size": 4K }')).message, /'4K'.*in double quotes/);
  assert.match((await fails('{ "wp": yes }')).message, /unexpected 'yes'/);
  assert.match((await fails("{ 'guest': [] }")).message, /double quotes/);
  assert.match((await fails('[1, 2]')).message, /expected an object/);
});

test('unknown fields are named with their path and a suggestion', async () => {
  const top = await fails('{ "guests": [] }');
  expectError(top, 'guests', 'unknown field "guests"', 'did you mean "guest"');
  const text = space({ ept: ['{ "gpa": "0x0", "hpa": "0x100000", "permissions": "rwx" }'] });
  const e = await fails(text);
  expectError(e, 'ept[0].permissions', 'unknown field "permissions"', 'did you mean "perm"');
  assert.equal([e.line, e.column], at(text, '"permissions"'));
  expectError(await fails('{ "cpu": { "wp": true, "smep": true } }'), 'cpu.smep', 'unknown field "smep"');
  expectError(await fails(space({ edits: ['{ "table": "guest", "gva": "0x400000", "set": "a", "colour": 1 }'] })), 'edits[0].colour', 'unknown field');
  expectError(await fails('{ "cpu": { "pml": { "enable": true } } }'), 'cpu.pml.enable', 'did you mean "enabled"');
});

test('bad numbers: hex digits, negatives, fractions, 64-bit overflow, wrong types', async () => {
  const text = space({ guest: [G0, '{ "gva": "0x60000", "gpa": "0x2g000", "flags": "rw" }'] });
  const e = await fails(text);
  expectError(e, 'guest[1].gpa', '"0x2g000"', 'not a valid hex number');
  assert.equal([e.line, e.column], at(text, '"0x2g000"'));
  expectError(await fails(space({ guest: ['{ "gva": "4M", "gpa": "0x0", "flags": "rw" }'] })), 'guest[0].gva', '"4M"', 'not a number');
  expectError(await fails(space({ guest: ['{ "gva": -4096, "gpa": "0x0", "flags": "rw" }'] })), 'guest[0].gva', '-4096 is negative');
  expectError(await fails(space({ guest: ['{ "gva": 4096.5, "gpa": "0x0", "flags": "rw" }'] })), 'guest[0].gva', '4096.5 is not a whole number');
  expectError(await fails(space({ guest: ['{ "gva": "0x1_0000_0000_0000_0000", "gpa": "0x0", "flags": "rw" }'] })), 'guest[0].gva', 'does not fit in 64 bits');
  expectError(await fails(space({ guest: ['{ "gva": true, "gpa": "0x0", "flags": "rw" }'] })), 'guest[0].gva', 'got true');
  expectError(await fails('{ "cpu": { "wp": "yes" } }'), 'cpu.wp', 'expected true or false', '"yes"');
  expectError(await fails('{ "cpu": { "vpid": 70000 } }'), 'cpu.vpid', '70000 is out of range 0..65535');
  expectError(await fails('{ "maxPhyAddr": 64 }'), 'maxPhyAddr', '64 is out of range 36..52');
  expectError(await fails('{ "physBytes": 5000 }'), 'physBytes', '5000', 'multiple of 4096');
  expectError(await fails('{ "physBytes": "8G" }'), 'physBytes', '"8G"', 'more than the simulator can hold');
  expectError(await fails('{ "guest": {} }'), 'guest', 'expected an array');
  // A 64-bit hex value and exact big decimal numbers are kept exactly (no float rounding).
  const ok = parseSpace(space({ guest: ['{ "gva": 18446603336221196288, "gpa": "0x0", "flags": "rw" }'] }));
  assert.is(ok.guest[0]!.gva, 0xffff800000000000n);
});

test('sizes and page sizes', async () => {
  expectError(await fails(space({ ept: ['{ "gpa": "0x0", "hpa": "0x100000", "page": "3K", "perm": "r" }'] })), 'ept[0].page', '"3K"', '"4K", "2M" or "1G"');
  expectError(await fails(space({ ept: ['{ "gpa": "0x0", "hpa": "0x100000", "size": "6K", "perm": "r" }'] })), 'ept[0].size', '"6K"', 'multiple of the page size (4 KiB)');
  expectError(await fails(space({ ept: ['{ "gpa": "0x0", "hpa": "0x100000", "size": 0, "perm": "r" }'] })), 'ept[0].size', 'positive multiple');
  const d = parseSpace(space({ ept: ['{ "gpa": "0x0", "hpa": "0x200000", "size": "4M", "page": "2M", "perm": "r" }', '{ "gpa": "0x400000", "hpa": 4096, "size": "0x3000", "perm": "r" }'] }));
  assert.is(d.ept[0]!.size, 4n << 20n);
  assert.is(d.ept[0]!.page, 2n << 20n);
  assert.is(d.ept[1]!.size, 0x3000n);
  assert.is(d.ept[1]!.page, 4096n);
});

test('unaligned addresses', async () => {
  expectError(await fails(space({ ept: ['{ "gpa": "0x1001", "hpa": "0x100000", "perm": "r" }'] })), 'ept[0].gpa', '"0x1001"', 'not aligned', '4 KiB');
  expectError(await fails(space({ ept: ['{ "gpa": "0x0", "hpa": "0x101000", "page": "2M", "perm": "r" }'] })), 'ept[0].hpa', '"0x101000"', 'not aligned', '2 MiB');
  expectError(await fails(space({ guest: ['{ "gva": "0x400800", "gpa": "0x0", "flags": "rw" }'] })), 'guest[0].gva', '"0x400800"', 'not aligned');
  expectError(await fails(space({ guest: ['{ "gva": "0x400000", "gpa": "0x1000", "page": "2M", "flags": "rw" }'] })), 'guest[0].gpa', '"0x1000"', 'not aligned to its page size (2 MiB)');
  expectError(await fails('{ "tables": { "hpa": "0x800800" } }'), 'tables.hpa', 'not 4 KiB aligned');
});

test('overlapping mappings name both entries', async () => {
  const e = await fails(space({ ept: [EPT0, '{ "gpa": "0xf000", "hpa": "0x300000", "size": "8K", "perm": "r" }'] }));
  expectError(e, 'ept[1].gpa', 'GPA range 0xf000..0x10fff overlaps ept[0].gpa (0x0..0xffff)');
  const g = await fails(space({ guest: ['{ "gva": "0x600000", "gpa": "0x200000", "page": "2M", "flags": "rw" }', '{ "gva": "0x7ff000", "gpa": "0x0", "flags": "rw" }'] }));
  expectError(g, 'guest[1].gva', 'GVA range 0x7ff000..0x7fffff overlaps guest[0].gva (0x600000..0x7fffff)');
  // Aliases are not overlaps: two GVAs may share a GPA and two GPAs an HPA (alias planes).
  const ok = parseSpace(space({
    ept: [EPT0, '{ "gpa": "0x100000", "hpa": "0x100000", "perm": "r" }'],
    guest: [G0, '{ "gva": "0x500000", "gpa": "0x0", "flags": "rw" }'],
  }));
  assert.is(ok.guest.length, 2);
});

test('addresses beyond MAXPHYADDR or physBytes, and non-canonical GVAs', async () => {
  expectError(await fails(space({ top: ' "maxPhyAddr": 40,', ept: ['{ "gpa": "0x10000000000", "hpa": "0x100000", "perm": "r" }'] })),
    'ept[0].gpa', '"0x10000000000"', 'beyond MAXPHYADDR (40 bits');
  expectError(await fails(space({ top: ' "maxPhyAddr": 40,', ept: ['{ "gpa": "0xfffffff000", "hpa": "0x100000", "size": "8K", "perm": "r" }'] })),
    'ept[0].gpa', 'beyond MAXPHYADDR');
  expectError(await fails(space({ guest: ['{ "gva": "0x400000", "gpa": "0x400000000000", "flags": "rw" }'] })), 'guest[0].gpa', 'beyond MAXPHYADDR (46 bits');
  expectError(await fails(space({ ept: ['{ "gpa": "0x0", "hpa": "0x1000000", "perm": "r" }'] })), 'ept[0].hpa', '"0x1000000"', 'beyond physBytes');
  expectError(await fails(space({ ept: ['{ "gpa": "0x0", "hpa": "0xfff000", "size": "8K", "perm": "r" }'] })), 'ept[0].hpa', 'beyond physBytes');
  expectError(await fails(space({ guest: ['{ "gva": "0x800000000000", "gpa": "0x0", "flags": "rw" }'] })), 'guest[0].gva', '"0x800000000000"', 'not canonical');
  expectError(await fails(space({ guest: ['{ "gva": "0x7ffffffff000", "gpa": "0x0", "size": "8K", "flags": "rw" }'] })), 'guest[0].size', 'past the end of the canonical half');
  expectError(await fails(space({ edits: ['{ "table": "guest", "gva": "0x1000000000000", "set": "a" }'] })), 'edits[0].gva', 'not canonical');
  expectError(await fails('{ "tables": { "gpa": "0x400000000000" } }'), 'tables.gpa', 'beyond MAXPHYADDR');
  expectError(await fails('{ "cpu": { "pml": { "enabled": true, "address": "0x2000000" } } }'), 'cpu.pml.address', 'beyond physBytes');
});

test('flag names follow the PTE_* and EPT_* constants; P and PS are the loader\'s', async () => {
  assert.equal([...GUEST_FLAG_NAMES.keys()].sort(), ['a', 'd', 'g', 'p', 'pat', 'pat_large', 'pcd', 'ps', 'pwt', 'rw', 'sw_wp', 'us', 'xd'].sort());
  assert.equal([...EPT_FLAG_NAMES.keys()].sort(), ['a', 'd', 'ipat', 'ps', 'r', 'spp', 'sve', 'sw_wp', 'w', 'x'].sort());
  expectError(await fails(space({ guest: ['{ "gva": "0x400000", "gpa": "0x0", "flags": "rw,usr" }'] })), 'guest[0].flags', 'unknown guest page-table flag "usr"', 'did you mean "us"');
  expectError(await fails(space({ guest: ['{ "gva": "0x400000", "gpa": "0x0", "flags": "p,rw" }'] })), 'guest[0].flags', '"p" is set by the loader');
  expectError(await fails(space({ ept: ['{ "gpa": "0x0", "hpa": "0x100000", "perm": "rwz" }'] })), 'ept[0].perm', 'unknown EPT flag "rwz"');
  expectError(await fails(space({ ept: ['{ "gpa": "0x0", "hpa": "0x100000", "perm": "w" }'] })), 'ept[0].perm', 'writes without reads', '"edits"');
  expectError(await fails(space({ ept: ['{ "gpa": "0x0", "hpa": "0x100000", "perm": "r", "mt": 2 }'] })), 'ept[0].mt', 'memory type 2 is reserved');
  expectError(await fails(space({ ept: ['{ "gpa": "0x0", "hpa": "0x100000", "perm": "r", "mt": "wbx" }'] })), 'ept[0].mt', 'unknown memory type', 'did you mean "wb"');
  expectError(await fails(space({ ept: ['{ "gpa": "0x0", "hpa": "0x200000", "page": "2M", "perm": "rw,spp" }'] })), 'ept[0].perm', '4 KiB EPT pages only');
  expectError(await fails(space({ top: ' "cpu": { "nxe": false },', guest: ['{ "gva": "0x400000", "gpa": "0x0", "flags": "rw,xd" }'] })), 'guest[0].flags', 'reserved bit while cpu.nxe is false');
  expectError(await fails(space({ guest: ['{ "gva": "0x400000", "gpa": "0x0", "flags": 7 }'] })), 'guest[0].flags', 'expected flag names');
  expectError(await fails(space({ guest: ['{ "gva": "0x400000", "gpa": "0x0" }'] })), 'guest[0]', 'missing field "flags"');
  // Forms: comma list, array, ls-style letters, memory-type names.
  const d = parseSpace(space({
    ept: ['{ "gpa": "0x0", "hpa": "0x100000", "perm": "r-x", "mt": "uc" }', '{ "gpa": "0x1000", "hpa": "0x100000", "perm": ["r", "w", "sw_wp"] }'],
    guest: ['{ "gva": "0x400000", "gpa": "0x0", "flags": "rw us xd" }', '{ "gva": "0x600000", "gpa": "0x200000", "page": "2M", "flags": ["us", "pat"] }'],
  }));
  assert.is(d.ept[0]!.bits, EPT_R | EPT_X);
  assert.is(d.ept[1]!.bits & 0xfffn, EPT_R | EPT_W | 0x800n | (6n << 3n));
  assert.is(d.guest[0]!.bits, PTE_RW | PTE_US | PTE_XD);
  assert.is(d.guest[1]!.bits, PTE_US | 0x1000n, 'pat on a 2 MiB page is bit 12');
});

test('edits: bad tables, conflicting bits, entries that do not exist', async () => {
  expectError(await fails(space({ edits: ['{ "table": "pt", "gva": "0x400000", "set": "a" }'] })), 'edits[0].table', '"pt" is not a table');
  expectError(await fails(space({ edits: ['{ "table": "guest", "gpa": "0x0", "set": "a" }'] })), 'edits[0].gpa', 'by "gva", not "gpa"');
  expectError(await fails(space({ edits: ['{ "table": "guest", "gva": "0x400000", "set": "rw", "clear": "rw,us" }'] })), 'edits[0].clear', 'both set and cleared');
  expectError(await fails(space({ edits: ['{ "table": "guest", "gva": "0x400000", "mt": 2 }'] })), 'edits[0].mt', '"ept" edits only');
  expectError(await fails(space({ edits: ['{ "table": "guest", "gva": "0x400000" }'] })), 'edits[0]', 'changes nothing');
  expectError(await fails(space({ edits: ['{ "table": "guest", "gva": "0x400000", "level": 5, "set": "a" }'] })), 'edits[0].level', 'out of range 1..4');
  expectError(await fails(space({ edits: ['{ "table": "guest", "gva": "0x400000", "set": "bit64" }'] })), 'edits[0].set', 'unknown guest page-table flag "bit64"');
  // Found only when the tables exist:
  expectError(await fails(space({ edits: ['{ "table": "guest", "gva": "0x900000", "set": "a" }'] }), { build: true }), 'edits[0].gva', 'no guest mapping covers GVA 0x900000');
  expectError(await fails(space({ edits: ['{ "table": "guest", "gva": "0x40000000", "level": 1, "set": "a" }'] }), { build: true }), 'edits[0].level', 'guest PDPTE for GVA 0x40000000 is not present');
  expectError(await fails(space({
    ept: [EPT0, '{ "gpa": "0x200000", "hpa": "0x400000", "page": "2M", "perm": "r" }'],
    edits: ['{ "table": "ept", "gpa": "0x200000", "level": "pte", "set": "a" }'],
  }), { build: true }), 'edits[0].level', 'EPT PDE for GPA 0x200000 maps a page');
});

test('cpu and table placement errors', async () => {
  expectError(await fails('{ "cpu": { "eptAd": false, "pml": { "enabled": true } } }'), 'cpu.pml.enabled', 'needs EPT accessed and dirty flags');
  expectError(await fails(space({ top: ' "tables": { "hpa": "0x100000" },' }), { build: true }), 'tables.hpa', 'overlap ept[0].hpa');
  expectError(await fails(space({ top: ' "tables": { "gpa": "0x8000" },' }), { build: true }), 'tables.gpa', 'overlap ept[0].gpa');
  expectError(await fails('{ "physBytes": "1G", "ept": [ { "gpa": "0x0", "hpa": "0x0", "page": "1G", "perm": "rwx" } ] }', { build: true }),
    'physBytes', 'no free host range');
});

test('a missing file is an error naming the file', async () => {
  try {
    await loadSpaceFile('/nonexistent/space.json');
    assert.unreachable('should fail');
  } catch (e) {
    assert.instance(e, SpaceError);
    assert.is((e as SpaceError).source, '/nonexistent/space.json');
    assert.match((e as Error).message, /no such file/);
  }
});

// ---------------------------------------------------------------------------------------------
// Round trip: the HPAs the description implies

const hexOf = (s: string | number) => BigInt(s);
const sizeOf = (s: string | number | undefined, page: bigint) => {
  if (s === undefined) return page;
  if (typeof s === 'number') return BigInt(s);
  const m = /^(\d+)([KMG])$/.exec(s);
  return m ? BigInt(m[1]!) << ({ K: 10n, M: 20n, G: 30n } as const)[m[2] as 'K' | 'M' | 'G'] : BigInt(s);
};
const pageOf = (p: string | undefined) => sizeOf(p ?? '4K', 0n);

/** A description with 4K, 2M and 1G pages on both sides, aliases, a high-half GVA and edits. */
const RT = {
  maxPhyAddr: 46,
  physBytes: '64M',
  cpu: { wp: true, nxe: true, eptAd: true },
  ept: [
    { gpa: '0x0', hpa: '0x1000000', size: '64K', perm: 'rwx' },
    { gpa: '0x10000', hpa: '0x1100000', perm: 'r' },
    { gpa: '0x200000', hpa: '0x1200000', size: '4M', page: '2M', perm: 'rw' },
    { gpa: '0x40000000', hpa: '0x2000000', size: '8K', perm: 'rwx' },
    { gpa: '0x80000000', hpa: '0x1800000', page: '2M', perm: 'rwx', note: 'the first 2 MiB of the 1 GiB guest page' },
    { gpa: '0xbfe00000', hpa: '0x1a00000', page: '2M', perm: 'rwx', note: 'its last 2 MiB; the rest is unmapped' },
    { gpa: '0x3000000000', hpa: '0x1000000', size: '8K', perm: 'rw', note: 'an alias plane: same frames as GPA 0x0' },
  ],
  guest: [
    { gva: '0x400000', gpa: '0x0', size: '16K', flags: 'rw,us' },
    { gva: '0x410000', gpa: '0x10000', flags: 'rw,us' },
    { gva: '0x600000', gpa: '0x200000', size: '4M', page: '2M', flags: 'rw,us,xd' },
    { gva: '0x1000000', gpa: '0x400000', size: '8K', flags: 'rw' },
    { gva: '0x40000000', gpa: '0x80000000', page: '1G', flags: 'rw,us' },
    { gva: '0xffff800000000000', gpa: '0x40000000', size: '8K', flags: 'rw' },
    { gva: '0x500000', gpa: '0x3000000000', size: '8K', flags: 'rw,us' },
  ],
  edits: [
    { table: 'guest', gva: '0x401000', clear: 'rw', set: 'sw_wp' },
    { table: 'guest', gva: '0x403000', set: 'bit51' },
    { table: 'ept', gpa: '0x2000', mt: 3 },
  ],
};

/** HPA of `gva` from the description alone, or null where it is not mapped on both sides. */
function expected(d: typeof RT, gva: bigint): bigint | null {
  for (const g of d.guest) {
    const page = pageOf(g.page), lo = hexOf(g.gva), size = sizeOf(g.size, page);
    if (gva < lo || gva >= lo + size) continue;
    const gpa = hexOf(g.gpa) + (gva - lo);
    for (const e of d.ept) {
      const ep = pageOf(e.page), elo = hexOf(e.gpa), es = sizeOf(e.size, ep);
      if (gpa >= elo && gpa < elo + es) return hexOf(e.hpa) + (gpa - elo);
    }
    return null;
  }
  return null;
}

test('round trip: every described page translates to the HPA the description implies', async () => {
  const s = await loadSpace(JSON.stringify(RT, null, 2), 'roundtrip.json');
  assert.is(s.warnings.length, 1);
  assert.match(s.warnings[0]!, /^guest\[4\] maps GPA 0x80200000\.\.0xbfdfffff, which no "ept" entry maps/);
  const edited = new Set([0x401000n, 0x403000n, 0x402000n]);
  let checked = 0;
  for (const g of RT.guest) {
    const page = pageOf(g.page), lo = hexOf(g.gva), size = sizeOf(g.size, page);
    const probes = [lo, lo + 0x123n, lo + size / 2n + 0x7f8n, lo + size - 8n];
    for (const gva of probes) {
      if (edited.has(gva & ~0xfffn)) continue;
      const want = expected(RT, gva);
      const r = s.sim.inspect(gva, ACC_READ);
      if (want === null) {
        assert.is(r.fault?.kind, FAULT_EPT_VIOLATION, `GVA 0x${gva.toString(16)} has no EPT mapping`);
        continue;
      }
      assert.is(r.fault, null, `GVA 0x${gva.toString(16)}: ${JSON.stringify(r.fault, (_, v) => (typeof v === 'bigint' ? v.toString(16) : v))}`);
      assert.is(r.hpa, want, `GVA 0x${gva.toString(16)}`);
      const a = s.sim.access(gva, ACC_READ, 8);
      assert.is(a.hpa, want);
      checked++;
    }
  }
  assert.ok(checked >= 24);
  // The alias plane: two GPAs, one frame; a store through one is seen through the other.
  s.sim.access(0x500010n, ACC_WRITE, 1, new Uint8Array([0xa5]));
  assert.is(s.sim.readBytes(0x1000010n, 1)[0], 0xa5);
  assert.is(s.sim.access(0x400010n, ACC_READ, 1).hpa, 0x1000010n);
});

test('round trip: permissions, flags and edits behave as described', async () => {
  const s = await loadSpace(JSON.stringify(RT), 'roundtrip.json');
  const sim = s.sim;
  // guest[0] with edit 0: 0x401000 lost R/W and gained SW_WP.
  const wp = sim.inspect(0x401000n, ACC_WRITE | ACC_USER);
  assert.is(wp.fault?.kind, FAULT_PF);
  assert.is(wp.fault?.code, PFEC_P | PFEC_WR | PFEC_US);
  assert.is(s.guest.leafEntry(0x401000n)!.value & (PTE_RW | PTE_SW_WP), PTE_SW_WP);
  assert.is(sim.inspect(0x400000n, ACC_WRITE | ACC_USER).fault, null, 'the neighbour keeps R/W');
  // edit 1: reserved bit 51 in the PTE of 0x403000.
  const rsvd = sim.inspect(0x403000n, ACC_READ);
  assert.is(rsvd.fault?.code, PFEC_P | PFEC_RSVD);
  // edit 2: memory type 3 in the EPT PTE of GPA 0x2000 (GVA 0x402000).
  assert.is(sim.inspect(0x402000n, ACC_READ).fault?.kind, FAULT_EPT_MISCONFIG);
  assert.is(s.ept.leafEntry(0x2000n)!.value & EPT_MT, 3n << 3n);
  // ept[1] is read-only: the guest allows the write, the EPT does not.
  const ro = sim.inspect(0x410008n, ACC_WRITE | ACC_USER);
  assert.is(ro.fault?.kind, FAULT_EPT_VIOLATION);
  assert.is(ro.fault!.code & (EQ_WRITE | EQ_READABLE), EQ_WRITE | EQ_READABLE);
  assert.is(ro.fault!.gpa, 0x10008n);
  // guest[2] is XD: a fetch faults with I/D; ept[2] lacks X too but the guest check comes first.
  assert.is(sim.inspect(0x600000n, ACC_FETCH).fault?.code, PFEC_P | PFEC_ID);
  // guest[3] lacks US: a user read faults, a supervisor read does not.
  assert.is(sim.inspect(0x1000000n, ACC_READ | ACC_USER).fault?.code, PFEC_P | PFEC_US);
  assert.is(sim.inspect(0x1000000n, ACC_READ).fault, null);
  // the 1 GiB guest page is a PDPTE with PS; the 2 MiB EPT pages are PDEs with PS.
  assert.is(s.guest.leafEntry(0x40000000n)!.level, 3);
  assert.ok((s.guest.leafEntry(0x40000000n)!.value & PTE_PS) !== 0n);
  assert.is(s.ept.leafEntry(0x200000n)!.level, 2);
  // an unmapped GVA in a mapped table is a not-present #PF
  assert.is(sim.inspect(0x404000n, ACC_READ).fault?.code, 0);
});

test('table frames are placed clear of every described HPA and GPA', async () => {
  const s = await loadSpace(JSON.stringify(RT), 'place.json');
  const t = s.tables;
  const hpaEnd = t.hpa + BigInt(t.hpaFrames) * 4096n;
  const gpaEnd = t.gpa + BigInt(t.gpaFrames) * 4096n;
  assert.ok(t.hpaFrames > 0 && t.gpaFrames > 0);
  for (const e of RT.ept) {
    const lo = hexOf(e.hpa), hi = lo + sizeOf(e.size, pageOf(e.page));
    assert.ok(hi <= t.hpa || lo >= hpaEnd, `table frames overlap ${e.hpa}`);
    const glo = hexOf(e.gpa), ghi = glo + sizeOf(e.size, pageOf(e.page));
    assert.ok(ghi <= t.gpa || glo >= gpaEnd, `table GPAs overlap ${e.gpa}`);
  }
  // every entry of a walk lies in the table frames (guest entries by HPA, EPT entries by address)
  for (const st of s.sim.inspect(0x400123n, ACC_READ).steps) assert.ok(st.hpa >= t.hpa && st.hpa < hpaEnd, `entry at 0x${st.hpa.toString(16)}`);
  // writing every data byte of a page does not disturb the tables
  for (let o = 0n; o < 4096n; o += 64n) s.sim.access(0x400000n + o, ACC_WRITE, 64, new Uint8Array(64).fill(0xff));
  assert.is(s.sim.inspect(0x400123n, ACC_READ).hpa, 0x1000123n);
});

test('explicit table placement and the PML page', async () => {
  const s = await loadSpace(space({ top: ' "tables": { "hpa": "0x800000", "gpa": "0x40000000" }, "cpu": { "pml": { "enabled": true } },' }), 'pml.json');
  assert.is(s.tables.hpa, 0x800000n);
  assert.is(s.tables.gpa, 0x40000000n);
  assert.is(s.cr3, 0x40000000n);
  assert.is(s.eptp & ~0xfffn, 0x800000n);
  assert.is(s.pmlAddress, 0x800000n + BigInt(s.tables.hpaFrames - 1) * 4096n, 'the PML page is the last table frame');
  assert.ok(s.sim.cpu().pml.enabled);
  s.sim.access(0x400000n, ACC_WRITE, 8, new Uint8Array(8));
  assert.ok(s.sim.counters().pmlLogged! > 0);
});

test('a guest page whose GPA the EPT does not map is built, with a warning', async () => {
  const s = await loadSpace(space({ guest: [G0, '{ "gva": "0x500000", "gpa": "0x20000", "size": "8K", "flags": "rw" }'] }), 'w.json');
  assert.is(s.warnings.length, 1);
  assert.match(s.warnings[0]!, /guest\[1\] maps GPA 0x20000\.\.0x21fff, which no "ept" entry maps/);
  assert.is(s.sim.inspect(0x500000n, ACC_READ).fault?.kind, FAULT_EPT_VIOLATION);
});

test('the demo space: every promised case is there', async () => {
  const s = await demoSpace();
  assert.equal(s.warnings, []);
  const d = JSON.parse(DEMO_SPACE_JSON);
  assert.ok(d.note.length > 0);
  const ok = s.sim.inspect(DEMO_GVA, ACC_WRITE | ACC_USER);
  assert.is(ok.fault, null);
  assert.is(ok.steps.length, 24, 'the demo GVA is a 4K/4K page: 24 references');
  assert.is(ok.hpa, 0x201234n);
  assert.is(s.sim.inspect(0x404008n, ACC_WRITE | ACC_USER).fault?.code, PFEC_P | PFEC_WR | PFEC_US, 'write-protected page');
  assert.ok((s.guest.leafEntry(0x404000n)!.value & PTE_SW_WP) !== 0n);
  assert.is(s.sim.inspect(0x406000n, ACC_READ).fault?.code, 0, 'unmapped GVA');
  assert.is(s.sim.inspect(0x405000n, ACC_WRITE).fault?.kind, FAULT_EPT_VIOLATION, 'EPT denies writes');
  assert.is(s.sim.inspect(0x600000n, ACC_READ).steps.length, 18, '2 MiB on 2 MiB');
  assert.is(s.ept.leafEntry(0x5000n)!.value & (EPT_W | EPT_SPP), 0n);
});

test('loadSpaceFile reads a file and names it in errors', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'granule-'));
  const good = join(dir, 'good.json');
  writeFileSync(good, space({}));
  assert.is((await loadSpaceFile(good)).description.source, good);
  const bad = join(dir, 'bad.json');
  writeFileSync(bad, '{\n  "ept": [ { "gpa": "0x0", "hpa": "0x100000", "perm": "rwx", } ]\n}\n');
  try {
    await loadSpaceFile(bad);
    assert.unreachable('should fail');
  } catch (e) {
    assert.instance(e, SpaceError);
    assert.ok((e as Error).message.startsWith(`${bad}:2:`), (e as Error).message);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test.run();
