// The walk explainer (src/walkfmt.ts): the references of a two-dimensional walk in order with
// the addresses a plain reference walk (below) computes from the tables, and the decoding of
// #PF error codes and EPT-violation exit qualifications.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { loadSpace, type Space } from '../src/describe.ts';
import {
  explainWalk, formatWalk, decodePfErrorCode, decodeExitQualification, guestBits, eptBits, bitRanges, useColor, eptMisconfigText, type WalkReport,
} from '../src/walkfmt.ts';
import {
  ACC_READ, ACC_WRITE, ACC_FETCH, ACC_USER, PFEC_P, PFEC_WR, PFEC_US, PFEC_RSVD, PFEC_ID, EQ_READ, EQ_WRITE, EQ_READABLE,
  EQ_EXECUTABLE, EQ_GLA_VALID, EQ_GLA_XLATE, EQ_SPP, PTE_P, PTE_RW, PTE_US, PTE_A, PTE_D, PTE_PS, PTE_XD, PTE_SW_WP, EPT_R, EPT_W,
  EPT_X, EPT_A, EPT_D, EPT_PS, EPT_SPP,
} from '../src/consts.ts';
import * as C from '../src/consts.ts';
import { Rng } from '../src/rng.ts';

const SPACE = {
  physBytes: '16M',
  tables: { gpa: '0x100000', hpa: '0x800000' },
  ept: [
    { gpa: '0x0', hpa: '0x200000', size: '16K', perm: 'rwx' },
    { gpa: '0x4000', hpa: '0x204000', perm: 'r' },
    { gpa: '0x200000', hpa: '0x400000', page: '2M', perm: 'rw' },
  ],
  guest: [
    { gva: '0x7f0000401000', gpa: '0x1000', size: '8K', flags: 'rw,us' },
    { gva: '0x7f0000403000', gpa: '0x3000', flags: 'us' },
    { gva: '0x7f0000404000', gpa: '0x4000', flags: 'rw,us' },
    { gva: '0x7f0000600000', gpa: '0x200000', page: '2M', flags: 'rw,us,xd' },
  ],
  edits: [{ table: 'guest', gva: '0x7f0000402000', set: 'bit50' }],
};
const build = (over: object = {}) => loadSpace(JSON.stringify({ ...SPACE, ...over }), 'walkfmt.json');
const bigHex = (s: string) => BigInt(s);

/** A plain two-dimensional walk over the tables in memory (no rights checks): the references. */
function referenceWalk(s: Space, gva: bigint) {
  const mask = ((1n << 46n) - 1n) & ~0xfffn;
  const idx = (a: bigint, l: number) => (a >> BigInt(3 + 9 * l)) & 511n;
  const refs: { table: string; level: number; for: string; addr: bigint; hpa: bigint; value: bigint }[] = [];
  const ept = (gpa: bigint, forLevel: number): bigint => {
    let table = s.eptp & mask;
    for (let l = 4; ; l--) {
      const addr = table + 8n * idx(gpa, l);
      const v = s.sim.read64(addr);
      refs.push({ table: 'ept', level: l, for: forLevel ? `guest ${['', 'PTE', 'PDE', 'PDPTE', 'PML4E'][forLevel]}` : 'final GPA', addr, hpa: addr, value: v });
      if (l === 1 || (v & EPT_PS)) { const size = 1n << BigInt(12 + 9 * (l - 1)); return (v & mask & ~(size - 1n)) | (gpa & (size - 1n)); }
      table = v & mask;
    }
  };
  let table = s.cr3 & mask;
  let gpa = 0n;
  for (let l = 4; ; l--) {
    const addr = table + 8n * idx(gva, l);
    const hpa = ept(addr, l);
    const v = s.sim.read64(hpa);
    refs.push({ table: 'guest', level: l, for: 'GVA', addr, hpa, value: v });
    if (l === 1 || (v & PTE_PS)) { const size = 1n << BigInt(12 + 9 * (l - 1)); gpa = (v & mask & ~(size - 1n)) | (gva & (size - 1n)); break; }
    table = v & mask;
  }
  return { refs, hpa: ept(gpa, 0), gpa };
}

test('a cold 4K/4K walk: 24 references in order, at the addresses the tables give', async () => {
  const s = await build();
  const gva = 0x7f0000401abcn;
  const report = explainWalk(s.sim, gva, ACC_READ | ACC_USER);
  const json = JSON.parse(JSON.stringify(report)) as WalkReport; // the --json form must survive JSON
  assert.equal(json, report);
  assert.is(json.references.length, 24);
  assert.equal(json.counts, { guest: 4, ept: 20, spp: 0, total: 24 });
  // shape: for each guest level 4..1: EPT 4,3,2,1 then the guest entry; then EPT 4..1 of the final GPA
  const shape = json.references.map((r) => `${r.table}${r.level}:${r.for}`);
  const want: string[] = [];
  for (const g of [4, 3, 2, 1]) {
    const name = ['', 'PTE', 'PDE', 'PDPTE', 'PML4E'][g];
    for (const e of [4, 3, 2, 1]) want.push(`ept${e}:guest ${name}`);
    want.push(`guest${g}:GVA`);
  }
  for (const e of [4, 3, 2, 1]) want.push(`ept${e}:final GPA`);
  assert.equal(shape, want);
  assert.equal(json.references.map((r) => r.n), Array.from({ length: 24 }, (_, k) => k + 1));
  // addresses and values agree with the reference walk
  const ref = referenceWalk(s, gva);
  assert.is(ref.refs.length, 24);
  json.references.forEach((r, k) => {
    const e = ref.refs[k]!;
    assert.is(bigHex(r.addr), e.addr, `reference ${k + 1} address`);
    assert.is(bigHex(r.hpa), e.hpa, `reference ${k + 1} HPA`);
    assert.is(bigHex(r.value), e.value, `reference ${k + 1} value`);
    assert.match(r.value, /^0x[0-9a-f]{16}$/);
  });
  // guest entries are located at GPAs, the first one from CR3; EPT entries at HPAs in the table frames
  assert.is(bigHex(json.references[4]!.addr), 0x100000n + 8n * ((gva >> 39n) & 511n));
  assert.is(json.references[0]!.input, json.references[4]!.addr, 'the first EPT walk translates the PML4E\'s GPA');
  assert.is(json.references[20]!.input, '0x1abc');
  assert.ok(json.references.every((r) => r.table !== 'ept' || (bigHex(r.addr) >= 0x800000n && bigHex(r.addr) < 0x900000n)));
  assert.is(json.references[19]!.leaf, true);
  assert.is(json.references[19]!.maps, '0x1abc');
  assert.is(json.references[23]!.maps, '0x201abc');
  assert.equal(json.references[19]!.bits, ['P', 'RW', 'US']);
  assert.equal(json.references[23]!.bits, ['R', 'W', 'X', 'MT=WB']);
  assert.equal(json.indices, { pml4: Number((gva >> 39n) & 511n), pdpt: 0, pd: 2, pt: 1, offset: '0xabc' });
  assert.equal(json.outcome.kind, 'ok');
  if (json.outcome.kind === 'ok') {
    assert.is(json.outcome.hpa, '0x201abc');
    assert.is(bigHex(json.outcome.hpa), ref.hpa);
    assert.is(json.outcome.gpa, '0x1abc');
  }
  assert.is(json.gva, '0x7f0000401abc');
  assert.equal(json.access, { kind: 'read', user: true, acc: ACC_READ | ACC_USER, text: 'user read' });
});

test('a 2M/2M walk has 18 references and names the large pages', async () => {
  const s = await build();
  const r = explainWalk(s.sim, 0x7f0000654321n, ACC_READ);
  assert.is(r.references.length, 18);
  assert.equal(r.counts, { guest: 3, ept: 15, spp: 0, total: 18 });
  const pde = r.references[14]!;
  assert.is(pde.name, 'guest PDE');
  assert.ok(pde.leaf);
  assert.equal(pde.bits, ['P', 'RW', 'US', 'PS', 'XD']);
  const epde = r.references[17]!;
  assert.is(epde.name, 'EPT PDE');
  assert.equal(epde.bits, ['R', 'W', 'MT=WB', 'PS']);
  assert.ok(r.outcome.kind === 'ok' && r.outcome.hpa === '0x454321' && r.outcome.guestPage === '2 MiB' && r.outcome.eptPage === '2 MiB');
});

test('#PF error codes are decoded bit by bit', () => {
  const d = decodePfErrorCode(PFEC_P | PFEC_WR | PFEC_US);
  assert.equal(d.map((b) => [b.bit, b.name, b.value]), [[0, 'P', 1], [1, 'W/R', 1], [2, 'U/S', 1], [3, 'RSVD', 0], [4, 'I/D', 0]]);
  assert.match(d[0]!.meaning, /protection/);
  assert.match(decodePfErrorCode(0)[0]!.meaning, /not present/);
  assert.match(decodePfErrorCode(0)[2]!.meaning, /supervisor/);
  assert.equal(decodePfErrorCode(PFEC_P | PFEC_RSVD | PFEC_ID).map((b) => b.value), [1, 0, 0, 1, 1]);
});

test('#PF outcomes: not present, write to read-only, reserved bit, XD fetch', async () => {
  const s = await build();
  const np = explainWalk(s.sim, 0x7f0000405000n, ACC_WRITE | ACC_USER).outcome;
  assert.ok(np.kind === 'pf');
  if (np.kind !== 'pf') return;
  assert.is(np.errorCode, PFEC_WR | PFEC_US);
  assert.is(np.errorCodeHex, '0x6');
  assert.is(np.cr2, '0x7f0000405000');
  assert.is(np.level, 1);
  assert.match(np.reason, /guest PTE is not present/);

  const ro = explainWalk(s.sim, 0x7f0000403010n, ACC_WRITE).outcome;
  assert.ok(ro.kind === 'pf' && ro.errorCode === (PFEC_P | PFEC_WR));
  assert.match((ro as { reason: string }).reason, /R\/W is 0 in the guest PTE.*CR0\.WP = 1/);

  const noWp = await build({ cpu: { wp: false } });
  assert.is(explainWalk(noWp.sim, 0x7f0000403010n, ACC_WRITE).outcome.kind, 'ok', 'CR0.WP = 0: supervisor writes ignore R/W');

  const rsvdReport = explainWalk(s.sim, 0x7f0000402000n, ACC_READ);
  const rsvd = rsvdReport.outcome;
  assert.ok(rsvd.kind === 'pf' && rsvd.errorCode === (PFEC_P | PFEC_RSVD));
  const pte = rsvdReport.references[rsvdReport.references.length - 1]!;
  assert.ok(pte.reserved);
  assert.is(pte.reservedBits, '50');
  assert.match(pte.note, /reserved bit 50 set/);

  const xd = explainWalk(s.sim, 0x7f0000600000n, ACC_FETCH | ACC_USER).outcome;
  assert.ok(xd.kind === 'pf' && xd.errorCode === (PFEC_P | PFEC_US | PFEC_ID));
  assert.equal((xd as { bits: { value: number }[] }).bits.map((b) => b.value), [1, 0, 1, 0, 1]);
  assert.match((xd as { reason: string }).reason, /XD is 1 in the guest PDE/);
});

test('exit qualifications are decoded bit by bit with the Table 28-7 names', () => {
  const q = decodeExitQualification(EQ_WRITE | EQ_READABLE | EQ_GLA_VALID | EQ_GLA_XLATE);
  const byBit = Object.fromEntries(q.map((b) => [b.bit, b]));
  assert.equal(q.map((b) => b.bit), [0, 1, 2, 3, 4, 5, 6, 7, 8, 11]);
  assert.equal(q.map((b) => b.value), [0, 1, 0, 1, 0, 0, 0, 1, 1, 0]);
  assert.is(byBit[0]!.name, 'data read');
  assert.is(byBit[1]!.name, 'data write');
  assert.is(byBit[2]!.name, 'instruction fetch');
  assert.is(byBit[3]!.name, 'readable');
  assert.is(byBit[7]!.name, 'guest-linear address valid');
  assert.match(byBit[8]!.meaning, /translation of the linear address/);
  assert.match(decodeExitQualification(EQ_READ | EQ_GLA_VALID)[8]!.meaning, /paging-structure entry/);
  assert.is(decodeExitQualification(EQ_SPP | EQ_WRITE)[9]!.value, 1);
  assert.is(decodeExitQualification(EQ_EXECUTABLE)[5]!.value, 1);
});

test('EPT violation outcomes: a read-only page, and a guest paging-structure access', async () => {
  const s = await build();
  const v = explainWalk(s.sim, 0x7f0000404008n, ACC_WRITE | ACC_USER).outcome;
  assert.is(v.kind, 'ept-violation');
  if (v.kind !== 'ept-violation') return;
  assert.is(v.qualification, EQ_WRITE | EQ_READABLE | EQ_GLA_VALID | EQ_GLA_XLATE);
  assert.is(v.qualificationHex, '0x18a');
  assert.is(v.gpa, '0x4008');
  assert.is(v.gla, '0x7f0000404008');
  assert.is(v.eptLevel, 1);
  assert.is(v.guestLevel, 0);
  assert.match(v.during, /final GPA 0x4008/);
  assert.match(v.reason, /allow only R, but this access needs W/);

  // Make the guest PT's page read-only in the EPT: with EPT A/D on, reading the PTE is a write.
  const t = await build({ edits: [{ table: 'ept', gpa: '0x103000', clear: 'w' }] });
  const r = explainWalk(t.sim, 0x7f0000401000n, ACC_READ);
  const o = r.outcome;
  assert.ok(o.kind === 'ept-violation');
  if (o.kind !== 'ept-violation') return;
  assert.is(o.qualification, EQ_READ | EQ_WRITE | EQ_READABLE | EQ_GLA_VALID);
  assert.is(o.bits.find((b) => b.bit === 8)!.value, 0);
  assert.is(o.guestLevel, 1);
  assert.is(o.gpa, '0x103008');
  assert.match(o.during, /GPA 0x103008 of the guest PTE.*treated as a write/);
  assert.is(r.references.length, 19, 'stops in the EPT walk of the PTE\'s GPA');

  const m = explainWalk((await build({ edits: [{ table: 'ept', gpa: '0x1000', mt: 7 }] })).sim, 0x7f0000401000n, ACC_READ);
  assert.is(m.outcome.kind, 'ept-misconfig');
  assert.match(m.references[23]!.note, /misconfigured: memory type 7 is reserved/);
  assert.match((m.outcome as { reason: string }).reason, /memory type 7/);
});

test('the simulator says why an EPT entry is misconfigured; every reason has words and bits', async () => {
  const { sim } = await build();
  sim.setCpu({ eptExecOnly: false, eptGbPages: false });
  const P = 0x1000n;
  const cases: [bigint, number, number, RegExp][] = [
    [P | 2n, 1, C.EPT_MISCONF_WRITE_NO_READ, /010b allow writes without reads/],
    [P | 4n, 1, C.EPT_MISCONF_EXEC_ONLY, /execute-only/],
    [P | 1n | (1n << 50n), 1, C.EPT_MISCONF_HIGH, /reserved bits 50 set \(at or above MAXPHYADDR/],
    [P | 7n | (1n << 4n), 4, C.EPT_MISCONF_PML4E, /reserved bit(s)? 4 set in an EPT PML4E/],
    [P | 7n | (1n << 5n), 2, C.EPT_MISCONF_POINTER, /reserved bit(s)? 5 set in a non-leaf EPT PDE/],
    [0x4000_0000n | 7n | C.EPT_PS, 3, C.EPT_MISCONF_NO_1G, /1 GiB EPT pages are not supported/],
    [P | 7n | (3n << 3n), 1, C.EPT_MISCONF_MEMTYPE, /memory type 3 is reserved/],
    [0x20_0000n | 7n | (6n << 3n) | C.EPT_PS | 0x1000n, 2, C.EPT_MISCONF_2M_BITS, /reserved bit(s)? 12 set in a 2 MiB leaf/],
    [P | 7n | (6n << 3n), 1, C.EPT_MISCONF_NONE, /^$/],
  ];
  for (const [e, level, reason, words] of cases) {
    const m = sim.eptMisconfig(e, level);
    assert.is(m.reason, reason, `0x${e.toString(16)} at level ${level}`);
    assert.match(eptMisconfigText(m, level, sim.maxPhyAddr), words);
  }
  // The walk's boolean test and the reason agree, on random present entries and both capability settings.
  const r = new Rng(0x9e3779b9);
  const rnd = () => BigInt(r.u32());
  for (const caps of [{ eptExecOnly: false, eptGbPages: false }, { eptExecOnly: true, eptGbPages: true }]) {
    sim.setCpu(caps);
    for (let i = 0; i < 4000; i++) {
      const e = ((rnd() << 32n) | rnd()) & ~(rnd() << 20n) & ~(rnd() << 40n) | 1n;
      const level = 1 + (i & 3);
      assert.is(sim.eptIsMisconfigured(e, level), sim.eptMisconfig(e, level).reason !== C.EPT_MISCONF_NONE, `0x${e.toString(16)} at level ${level}`);
    }
  }
  sim.setCpu({ nxe: false });
  assert.is(sim.pteReservedBits(C.PTE_P | C.PTE_XD | (1n << 50n), 1), C.PTE_XD | (1n << 50n), 'XD without NXE and bits above MAXPHYADDR');
});

test('entry decoding and bit ranges', () => {
  assert.equal(guestBits(PTE_P | PTE_RW | PTE_US | PTE_A | PTE_D | PTE_XD, 1), ['P', 'RW', 'US', 'A', 'D', 'XD']);
  assert.equal(guestBits(PTE_P | PTE_PS | PTE_D, 2), ['P', 'D', 'PS'], 'D in a 2 MiB leaf');
  assert.equal(guestBits(PTE_P | PTE_D | PTE_SW_WP, 3), ['P', 'SW_WP'], 'D is not a flag of a non-leaf PDPTE');
  assert.equal(guestBits(PTE_P | 0x80n, 1), ['P', 'PAT'], 'bit 7 of a PTE is PAT');
  assert.equal(eptBits(EPT_R | EPT_W | EPT_X | (6n << 3n) | EPT_A | EPT_D | EPT_SPP, 1), ['R', 'W', 'X', 'MT=WB', 'A', 'D', 'SPP']);
  assert.equal(eptBits(EPT_R | EPT_A, 3), ['R', 'A'], 'non-leaf: no memory type');
  assert.is(bitRanges(0x3fffe000n), '29:13');
  assert.is(bitRanges(((1n << 52n) - 1n) & ~((1n << 46n) - 1n)), '51:46');
  assert.is(bitRanges(0x80n | (1n << 63n)), '63, 7');
});

test('text form: numbered references, the outcome, colour only when asked', async () => {
  const s = await build();
  const report = explainWalk(s.sim, 0x7f0000401abcn, ACC_READ | ACC_USER);
  const plain = formatWalk(report);
  assert.not.match(plain, /\x1b\[/);
  const rows = plain.split('\n').filter((l) => /^\s+\d+\s+(EPT|guest) /.test(l));
  assert.is(rows.length, 24);
  assert.match(rows[0]!, /^\s+1\s+EPT PML4E\s+HPA 0x800000\s+0x[0-9a-f]{16}\s+R W X/);
  assert.match(rows[4]!, /guest PML4E\s+GPA 0x1007f0 = HPA 0x[0-9a-f]+\s+0x0000000000101007\s+P RW US\s+-> PDPT at GPA 0x101000/);
  assert.match(plain, /=> HPA 0x201abc: GPA 0x1abc through a 4 KiB guest page and a 4 KiB EPT page; 24 memory references \(4 guest, 20 EPT\)/);
  assert.match(formatWalk(report, { color: true }), /\x1b\[1m/);
  const compact = formatWalk(report, { compact: true });
  assert.match(compact, /^\s+1-4\s+EPT walk of the guest PML4E's GPA 0x1007f0 -> HPA 0x[0-9a-f]+/m);
  assert.ok(compact.split('\n').length < plain.split('\n').length - 10);
  const pf = formatWalk(explainWalk(s.sim, 0x7f0000403010n, ACC_WRITE | ACC_USER));
  assert.match(pf, /=> #PF \(page fault, vector 14\) at the guest PTE, error code 0x7, CR2 0x7f0000403010/);
  assert.match(pf, /bit 1\s+W\/R\s+1\s+the access was a write/);
  const ev = formatWalk(explainWalk(s.sim, 0x7f0000404008n, ACC_WRITE));
  assert.match(ev, /exit qualification 0x18a/);
  assert.match(ev, /bit 8\s+translation of linear address\s+1/);
  const gp = formatWalk(explainWalk(s.sim, 0x800000000000n, ACC_READ));
  assert.match(gp, /#GP\(0\): GVA 0x800000000000 is not canonical/);
});

test('useColor: a terminal, unless NO_COLOR is set', () => {
  const saved = process.env.NO_COLOR;
  try {
    delete process.env.NO_COLOR;
    assert.is(useColor({ isTTY: true }), true);
    assert.is(useColor({ isTTY: false }), false);
    assert.is(useColor({}), false);
    process.env.NO_COLOR = '1';
    assert.is(useColor({ isTTY: true }), false);
  } finally {
    if (saved === undefined) delete process.env.NO_COLOR; else process.env.NO_COLOR = saved;
  }
});

test.run();
