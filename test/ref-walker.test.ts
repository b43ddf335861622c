// Table-driven SDM cases on hand-built spaces. Every expected value below is worked out by hand
// from docs/sim-semantics.md and the SDM section named in the case title; none is copied from a
// run. Each access runs through the reference walker (test/support/ref-walker.ts) and, from the
// same memory and vCPU state, through the WASM simulator with a cold TLB: both must give the
// expected result, and the simulator must leave the same memory image and PML index.

import { test } from 'uvu';
import * as assert from 'uvu/assert';
import {
  PTE_P, PTE_RW, PTE_US, PTE_A, PTE_D, PTE_PS, PTE_XD,
  EPT_R, EPT_W, EPT_X, EPT_RWX, EPT_MT, EPT_MT_SHIFT, EPT_PS, EPT_A, EPT_D, EPT_SPP, EPTP_AD,
  PFEC_P, PFEC_WR, PFEC_US, PFEC_RSVD, PFEC_ID,
  EQ_READ, EQ_WRITE, EQ_FETCH, EQ_READABLE, EQ_WRITABLE, EQ_EXECUTABLE, EQ_GLA_VALID, EQ_GLA_XLATE, EQ_SPP,
  EXIT_EPT_VIOLATION, EXIT_EPT_MISCONFIG, EXIT_PML_FULL, EXIT_SPP_EVENT,
  FAULT_PF, FAULT_GP, FAULT_EPT_VIOLATION, FAULT_EPT_MISCONFIG, FAULT_PML_FULL,
  FAULT_SPP_MISS, FAULT_SPP_MISCONFIG, FAULT_BUS,
  ACC_READ, ACC_WRITE, ACC_FETCH, ACC_USER,
} from '../src/consts.ts';
import { refAccess, type RefCpu, type RefFault, type RefResult, type RefCounts, REASON_PF, REASON_GP } from './support/ref-walker.ts';
import { SpaceBuilder, K4, M2, G1 } from './support/space-builder.ts';
import { fmtFault, fmtResult, hex } from './support/format.ts';
import { Sim } from '../src/sim.ts';
import { INVEPT_ALL } from '../src/consts.ts';

const sims = new Map<number, Sim>();
for (const m of [46, 52]) sims.set(m, await Sim.create({ physBytes: 8 << 20, maxPhyAddr: m }));

// ---------------------------------------------------------------------------------------------
// The standard hand-built space. Tables live in HPA [0x1000, 0x100000), GPA = HPA, each table page
// mapped by a 4K EPT leaf (EPT PML4 slot 0). All data GPAs use EPT PML4 slot 1.

const PHYS = 8 << 20;
const LEAF = PTE_P | PTE_RW | PTE_US;

const V4K = 0x0000_1234_5678_9000n;   // 4K guest page ...
const G4K = 0x0000_0080_0000_3000n;   // ... at this GPA ...
const H4K = 0x0010_0000n;             // ... in a 4K EPT page at this HPA
const V4K2 = V4K + K4;                // the next guest page
const G4K2 = 0x0000_0080_0000_7000n;
const H4K2 = 0x0010_5000n;
const V2M = 0x0000_0040_0020_0000n;   // 2M guest page
const G2M = 0x0000_0080_0040_0000n;   // EPT maps only its page at +0x3000 (4K)
const H2M_4K = 0x0011_0000n;
const V1G = 0x0000_0080_4000_0000n;   // 1G guest page
const G1G = 0x0000_0081_0000_0000n;   // EPT maps its 2M chunk at +2M with a 2M leaf
const H1G_2M = 0x0040_0000n;
const VE = 0x0000_0050_0000_0000n;    // 4K guest page in a 1G EPT page
const GE_1G = 0x0000_00c0_0000_0000n; // 1G EPT leaf -> HPA 0
const VE_GPA = GE_1G + 0x15_0000n;    // so VE's HPA is 0x150000

const R = ACC_READ, W = ACC_WRITE, X = ACC_FETCH, U = ACC_USER;
const GLA = EQ_GLA_VALID, XL = EQ_GLA_XLATE;

interface Fx {
  b: SpaceBuilder;
  cpu: RefCpu;
}

function fx(over: Partial<RefCpu> = {}, maxPhyAddr = 46): Fx {
  const b = new SpaceBuilder({ physBytes: PHYS, maxPhyAddr, tableLimit: 0x10_0000n });
  b.mapGuest(V4K, G4K, K4, LEAF); b.mapEpt(G4K, H4K, K4);
  b.mapGuest(V4K2, G4K2, K4, LEAF); b.mapEpt(G4K2, H4K2, K4);
  b.mapGuest(V2M, G2M, M2, LEAF); b.mapEpt(G2M + 0x3000n, H2M_4K, K4);
  b.mapGuest(V1G, G1G, G1, LEAF); b.mapEpt(G1G + M2, H1G_2M, M2);
  b.mapGuest(VE, VE_GPA, K4, LEAF); b.mapEpt(GE_1G, 0n, G1);
  return { b, cpu: b.cpu(over) };
}

/** HPA of the guest entry at `level` for `gva`. */
const gE = (b: SpaceBuilder, gva: bigint, level: number): bigint => b.guestEntry(gva, level)!.hpa;
/** GPA of the guest entry at `level` for `gva`. */
const gEgpa = (b: SpaceBuilder, gva: bigint, level: number): bigint => b.guestEntry(gva, level)!.gpa;
/** HPA of the EPT entry at `level` for `gpa`. */
const eE = (b: SpaceBuilder, gpa: bigint, level: number): bigint => b.eptEntry(gpa, level)!;
/** HPA of the 4K EPT leaf that maps the guest table holding the level-`level` entry for `gva`. */
const tableLeaf = (b: SpaceBuilder, gva: bigint, level: number): bigint => eE(b, gEgpa(b, gva, level) & ~0xfffn, 1);

function run(f: Fx, gva: bigint, acc: number, size = 8, value?: Uint8Array, counts?: RefCounts): RefResult {
  const sim = sims.get(f.cpu.maxPhyAddr)!;
  sim.phys.set(f.b.mem.bytes);
  const { maxPhyAddr: _, ...cpu } = f.cpu;
  sim.setCpu(structuredClone(cpu));
  sim.invept(INVEPT_ALL, 0n);
  const got = sim.access(gva, acc, size, value);
  const want = refAccess(f.b.mem, f.cpu, gva, acc, size, value, counts);
  assert.is(fmtResult(got), fmtResult(want), 'simulator and reference agree');
  assert.ok(Buffer.compare(sim.phys, f.b.mem.bytes) === 0, 'simulator leaves the same memory image');
  assert.is(sim.cpu().pml.index, f.cpu.pml.index, 'simulator leaves the same PML index');
  return want;
}

function ok(r: RefResult, hpa: bigint): void {
  assert.is(fmtResult(r), `ok hpa=${hex(hpa)}`);
}

function expectFault(r: RefResult, e: RefFault): void {
  assert.is(fmtResult(r), `fault ${fmtFault(e)} hpa=0x0`);
}

const pf = (gva: bigint, access: number, level: number, code: number): RefFault =>
  ({ kind: FAULT_PF, gva, gpa: 0n, access, level, code, exitReason: REASON_PF, guestLevel: 0 });
const eptv = (gva: bigint, gpa: bigint, access: number, level: number, code: number, guestLevel: number): RefFault =>
  ({ kind: FAULT_EPT_VIOLATION, gva, gpa, access, level, code, exitReason: EXIT_EPT_VIOLATION, guestLevel });
const eptm = (gva: bigint, gpa: bigint, access: number, level: number, guestLevel: number): RefFault =>
  ({ kind: FAULT_EPT_MISCONFIG, gva, gpa, access, level, code: 0, exitReason: EXIT_EPT_MISCONFIG, guestLevel });

const flag = (b: SpaceBuilder, hpa: bigint, f: bigint): boolean => (b.read(hpa) & f) !== 0n;

// ---------------------------------------------------------------------------------------------
// Successful translations

test('4.5 / 29.3.2: 4K guest page in a 4K EPT page: HPA = EPT page + offset', () => {
  const f = fx();
  ok(run(f, V4K + 0x123n, R), H4K + 0x123n);
  ok(run(f, V4K2 + 0xff8n, R | U), H4K2 + 0xff8n);
});

test('4.5 Table 4-18: 2M guest page: GPA = PDE bits 51:21 + GVA bits 20:0', () => {
  const f = fx();
  ok(run(f, V2M + 0x3abcn, R), H2M_4K + 0xabcn);
});

test('4.5 Table 4-16: 1G guest page; 29.3.2: 2M EPT page', () => {
  const f = fx();
  ok(run(f, V1G + M2 + 0x1234n, W | U, 4, new Uint8Array([1, 2, 3, 4])), H1G_2M + 0x1234n);
  assert.equal([...f.b.image.subarray(Number(H1G_2M + 0x1234n), Number(H1G_2M + 0x1238n))], [1, 2, 3, 4]);
});

test('29.3.2 Table 29-2: 1G EPT page: HPA = PDPTE bits 51:30 + GPA bits 29:0', () => {
  const f = fx();
  ok(run(f, VE + 0x777n, X), 0x15_0777n);
});

test('4.8: a read sets A in all four guest entries and no D; no EPT A/D without EPTP bit 6', () => {
  const f = fx();
  ok(run(f, V4K, R), H4K);
  for (let l = 4; l >= 1; l--) assert.ok(flag(f.b, gE(f.b, V4K, l), PTE_A), `A at level ${l}`);
  assert.not.ok(flag(f.b, gE(f.b, V4K, 1), PTE_D), 'no D on a read');
  for (let l = 4; l >= 1; l--) assert.not.ok(flag(f.b, eE(f.b, G4K, l), EPT_A), `no EPT A at ${l}`);
});

test('4.8: a write sets D only in the entry that maps the page', () => {
  const f = fx();
  ok(run(f, V2M + 0x3000n, W, 2, new Uint8Array([0xaa, 0xbb])), H2M_4K);
  assert.ok(flag(f.b, gE(f.b, V2M, 2), PTE_D), 'D in the 2M PDE');
  assert.not.ok(flag(f.b, gE(f.b, V2M, 3), PTE_D), 'no D in the PDPTE');
  assert.not.ok(flag(f.b, gE(f.b, V2M, 4), PTE_D), 'no D in the PML4E');
  assert.is(f.b.image[Number(H2M_4K)], 0xaa);
  assert.is(f.b.image[Number(H2M_4K) + 1], 0xbb);
});

test('docs "One access": a write without value bytes translates (and dirties) but stores nothing', () => {
  const f = fx();
  ok(run(f, V4K, W), H4K);
  assert.ok(flag(f.b, gE(f.b, V4K, 1), PTE_D));
  assert.is(f.b.image[Number(H4K)], 0);
});

// ---------------------------------------------------------------------------------------------
// Guest #PF: not present and reserved bits (4.5, 4.7)

for (let level = 4; level >= 1; level--) {
  test(`4.5/4.7: P=0 in the level-${level} entry: #PF P=0 at level ${level}, W/R and U/S from the access, no A set`, () => {
    const f = fx();
    f.b.set(gE(f.b, V4K, level), 0n, PTE_P);
    expectFault(run(f, V4K + 8n, W | U), pf(V4K + 8n, W | U, level, PFEC_WR | PFEC_US));
    for (let l = 4; l >= 1; l--) assert.not.ok(flag(f.b, gE(f.b, V4K, l), PTE_A), `no A at ${l}`);
  });
}

const rsvdCases: { name: string; gva: bigint; level: number; bits: bigint; cpu?: Partial<RefCpu> }[] = [
  { name: '4.5 Table 4-20: bit 46 (>= MAXPHYADDR 46) in a PTE', gva: V4K, level: 1, bits: 1n << 46n },
  { name: '4.5 Table 4-15: bit 51 in a PML4E', gva: V4K, level: 4, bits: 1n << 51n },
  { name: '4.5 Table 4-19: XD in a PDE with IA32_EFER.NXE = 0', gva: V4K, level: 2, bits: PTE_XD, cpu: { nxe: false } },
  { name: '4.5 Table 4-15: PS in a PML4E', gva: V4K, level: 4, bits: PTE_PS },
  { name: '4.5: PS in a PDPTE without 1-GByte page support', gva: V1G + M2, level: 3, bits: 0n, cpu: { gbPages: false } },
  { name: '4.5 Table 4-16: bit 13 in a 1G PDPTE (bits 29:13)', gva: V1G + M2, level: 3, bits: 1n << 13n },
  { name: '4.5 Table 4-16: bit 29 in a 1G PDPTE (bits 29:13)', gva: V1G + M2, level: 3, bits: 1n << 29n },
  { name: '4.5 Table 4-18: bit 20 in a 2M PDE (bits 20:13)', gva: V2M + 0x3000n, level: 2, bits: 1n << 20n },
];
for (const c of rsvdCases) {
  test(`${c.name}: #PF P=1 RSVD=1 at level ${c.level}`, () => {
    const f = fx(c.cpu);
    f.b.set(gE(f.b, c.gva, c.level), c.bits);
    expectFault(run(f, c.gva, R), pf(c.gva, R, c.level, PFEC_P | PFEC_RSVD));
  });
}

test('4.5 Table 4-18: bit 12 of a 2M PDE is PAT, not reserved', () => {
  const f = fx();
  f.b.set(gE(f.b, V2M, 2), 1n << 12n);
  ok(run(f, V2M + 0x3000n, R), H2M_4K);
});

test('4.5: bits 51:M with MAXPHYADDR = 52: none reserved, so bit 51 is an address bit', () => {
  // With M = 52 the PTE's bit 51 becomes GPA bit 51; the 4-level EPT walk uses GPA bits 47:0 (29.3.2),
  // so the access still reaches G4K's EPT page.
  const f = fx({}, 52);
  f.b.set(gE(f.b, V4K, 1), 1n << 51n);
  ok(run(f, V4K, R), H4K);
});

// ---------------------------------------------------------------------------------------------
// Guest access rights (4.6) and the error code (4.7)

const rightsCases: {
  name: string; acc: number; edit?: [number, bigint, bigint][]; cpu?: Partial<RefCpu>; code: number | null;
}[] = [
  { name: 'user read of a supervisor page (U/S=0 in the PDPTE)', acc: R | U, edit: [[3, 0n, PTE_US]], code: PFEC_P | PFEC_US },
  { name: 'user write to a read-only page (R/W=0 in the PTE)', acc: W | U, edit: [[1, 0n, PTE_RW]], code: PFEC_P | PFEC_WR | PFEC_US },
  { name: 'user write to a supervisor page', acc: W | U, edit: [[1, 0n, PTE_US]], code: PFEC_P | PFEC_WR | PFEC_US },
  { name: 'user write to a user R/W page', acc: W | U, code: null },
  { name: 'user read of a read-only user page', acc: R | U, edit: [[2, 0n, PTE_RW]], code: null },
  { name: 'user fetch with XD in the PML4E, NXE=1', acc: X | U, edit: [[4, PTE_XD, 0n]], code: PFEC_P | PFEC_US | PFEC_ID },
  { name: 'user fetch without XD', acc: X | U, code: null },
  { name: 'user fetch, NXE=0 and no XD: allowed', acc: X | U, cpu: { nxe: false }, code: null },
  { name: 'supervisor read of a supervisor read-only page', acc: R, edit: [[1, 0n, PTE_US | PTE_RW]], code: null },
  { name: 'supervisor write, R/W=0 in the PDE, CR0.WP=1', acc: W, edit: [[2, 0n, PTE_RW]], code: PFEC_P | PFEC_WR },
  { name: 'supervisor write, R/W=0 in the PDE, CR0.WP=0', acc: W, edit: [[2, 0n, PTE_RW]], cpu: { wp: false }, code: null },
  { name: 'supervisor write to a user read-only page, CR0.WP=0', acc: W, edit: [[1, 0n, PTE_RW]], cpu: { wp: false }, code: null },
  { name: 'supervisor fetch with XD in the PTE, NXE=1', acc: X, edit: [[1, PTE_XD, 0n]], code: PFEC_P | PFEC_ID },
  { name: 'supervisor fetch from a user page (no SMEP)', acc: X, code: null },
];
for (const c of rightsCases) {
  test(`4.6: ${c.name}: ${c.code === null ? 'allowed' : '#PF code ' + hex(c.code) + ' at the leaf level'}`, () => {
    const f = fx(c.cpu);
    for (const [level, or, clr] of c.edit ?? []) f.b.set(gE(f.b, V4K, level), or, clr);
    const r = run(f, V4K + 0x40n, c.acc);
    if (c.code === null) ok(r, H4K + 0x40n);
    else {
      expectFault(r, pf(V4K + 0x40n, c.acc, 1, c.code));
      for (let l = 4; l >= 1; l--) assert.not.ok(flag(f.b, gE(f.b, V4K, l), PTE_A), `model choice: no A at ${l} after #PF`);
    }
  });
}

test('4.6: a rights #PF on a 2M page is reported at level 2, on a 1G page at level 3', () => {
  const f = fx();
  f.b.set(gE(f.b, V2M, 2), 0n, PTE_RW);
  expectFault(run(f, V2M + 0x3008n, W | U), pf(V2M + 0x3008n, W | U, 2, PFEC_P | PFEC_WR | PFEC_US));
  f.b.set(gE(f.b, V1G, 3), 0n, PTE_US);
  expectFault(run(f, V1G + M2, R | U), pf(V1G + M2, R | U, 3, PFEC_P | PFEC_US));
});

test('4.7: I/D is set for a fetch only with NXE=1 (non-present page)', () => {
  const f = fx();
  f.b.set(gE(f.b, V4K, 1), 0n, PTE_P);
  expectFault(run(f, V4K, X), pf(V4K, X, 1, PFEC_ID));
  const g = fx({ nxe: false });
  g.b.set(gE(g.b, V4K, 1), 0n, PTE_P);
  expectFault(run(g, V4K, X | U), pf(V4K, X | U, 1, PFEC_US));
});

test('4.7: I/D on a reserved-bit #PF of a fetch', () => {
  const f = fx();
  f.b.set(gE(f.b, V4K, 3), 1n << 47n);
  expectFault(run(f, V4K, X), pf(V4K, X, 3, PFEC_P | PFEC_RSVD | PFEC_ID));
});

// ---------------------------------------------------------------------------------------------
// #GP (3.3.7.1)

test('3.3.7.1: non-canonical addresses are #GP(0) and walk nothing', () => {
  const f = fx();
  const counts = { guestRefs: 0, eptRefs: 0 };
  for (const gva of [0x0000_8000_0000_0000n, 0xffff_7fff_ffff_f000n, 0x1000_0000_0000_0000n]) {
    expectFault(run(f, gva, W, 8, undefined, counts),
      { kind: FAULT_GP, gva, gpa: 0n, access: W, level: 0, code: 0, exitReason: REASON_GP, guestLevel: 0 });
  }
  assert.equal(counts, { guestRefs: 0, eptRefs: 0 });
});

test('3.3.7.1 (ref choice): an access whose last byte is non-canonical is #GP', () => {
  const f = fx();
  const gva = 0x0000_7fff_ffff_fff8n;
  expectFault(run(f, gva, R, 16), { kind: FAULT_GP, gva, gpa: 0n, access: R, level: 0, code: 0, exitReason: REASON_GP, guestLevel: 0 });
});

test('4.5: an unmapped canonical upper-half address is a #PF, not #GP', () => {
  const f = fx();
  expectFault(run(f, 0xffff_8000_0000_0000n, R), pf(0xffff_8000_0000_0000n, R, 4, 0));
});

// ---------------------------------------------------------------------------------------------
// Straddling accesses (docs "One access")

test('One access: a straddling write stores both pieces at their own HPAs', () => {
  const f = fx();
  const v = Uint8Array.from({ length: 16 }, (_, i) => i + 1);
  ok(run(f, V4K + 0xff8n, W, 16, v), H4K + 0xff8n);
  assert.equal([...f.b.image.subarray(Number(H4K + 0xff8n), Number(H4K + 0x1000n))], [1, 2, 3, 4, 5, 6, 7, 8]);
  assert.equal([...f.b.image.subarray(Number(H4K2), Number(H4K2 + 8n))], [9, 10, 11, 12, 13, 14, 15, 16]);
  assert.ok(flag(f.b, gE(f.b, V4K, 1), PTE_D) && flag(f.b, gE(f.b, V4K2, 1), PTE_D), 'both PTEs dirty');
});

test('4.7 / One access: the second page faults: nothing stored, CR2 = first byte in that page, first page A/D stand', () => {
  const f = fx();
  f.b.set(gE(f.b, V4K2, 1), 0n, PTE_P);
  const v = new Uint8Array(16).fill(0xee);
  expectFault(run(f, V4K + 0xff8n, W, 16, v), pf(V4K2, W, 1, PFEC_WR));
  assert.is(f.b.image[Number(H4K + 0xff8n)], 0, 'nothing stored in the first page');
  assert.ok(flag(f.b, gE(f.b, V4K, 1), PTE_A | PTE_D) && flag(f.b, gE(f.b, V4K, 1), PTE_D), 'first page PTE A and D set');
});

test('29.3.3.2 / One access: the second page EPT-faults: GLA and GPA are those of the first byte in that page', () => {
  const f = fx();
  f.b.set(eE(f.b, G4K2, 1), 0n, EPT_W);
  expectFault(run(f, V4K + 0xffcn, W, 8, new Uint8Array(8)),
    eptv(V4K2, G4K2, W, 1, EQ_WRITE | EQ_READABLE | EQ_EXECUTABLE | GLA | XL, 0));
});

// ---------------------------------------------------------------------------------------------
// Guest A/D updates and EPT write permission (4.8, 29.3.3.2)

test('4.8/29.3.3.2: guest A update to a table page the EPT maps read-only: EPT violation rd|wr, bit 8 = 0, upper A stand', () => {
  const f = fx();
  // The page holding V4K's PDE: EPT R-X only. EPT A/D off, so reading the PDE is allowed.
  f.b.set(tableLeaf(f.b, V4K, 2), 0n, EPT_W);
  expectFault(run(f, V4K, R),
    eptv(V4K, gEgpa(f.b, V4K, 2), R, 1, EQ_READ | EQ_WRITE | EQ_READABLE | EQ_EXECUTABLE | GLA, 2));
  assert.ok(flag(f.b, gE(f.b, V4K, 4), PTE_A), 'PML4E A set (top down, before the PDE)');
  assert.ok(flag(f.b, gE(f.b, V4K, 3), PTE_A), 'PDPTE A set');
  assert.not.ok(flag(f.b, gE(f.b, V4K, 2), PTE_A), 'PDE A not set');
  assert.not.ok(flag(f.b, gE(f.b, V4K, 1), PTE_A), 'PTE A not set');
});

test('4.8: no update (and no EPT write needed) when the flags are already set', () => {
  const f = fx();
  f.b.set(tableLeaf(f.b, V4K, 2), 0n, EPT_W);
  f.b.set(gE(f.b, V4K, 2), PTE_A);
  ok(run(f, V4K, R), H4K);
  // A write needs D only in the PTE, whose page is writable.
  ok(run(f, V4K, W), H4K);
  assert.ok(flag(f.b, gE(f.b, V4K, 1), PTE_D));
});

test('4.8: guest D update on a read-only EPT table page: violation at guestLevel 1', () => {
  const f = fx();
  f.b.set(gE(f.b, V4K, 1), PTE_A);      // A already set: only D must be written
  f.b.set(tableLeaf(f.b, V4K, 1), 0n, EPT_W);
  ok(run(f, V4K, R), H4K);              // a read needs no update
  expectFault(run(f, V4K, W),
    eptv(V4K, gEgpa(f.b, V4K, 1), W, 1, EQ_READ | EQ_WRITE | EQ_READABLE | EQ_EXECUTABLE | GLA, 1));
});

test('docs 4.8 model: guest A/D set before the final GPA: an EPT violation on the data page leaves them set', () => {
  const f = fx();
  f.b.set(eE(f.b, G4K, 1), 0n, EPT_W);
  expectFault(run(f, V4K + 4n, W, 4, new Uint8Array(4).fill(9)),
    eptv(V4K + 4n, G4K + 4n, W, 1, EQ_WRITE | EQ_READABLE | EQ_EXECUTABLE | GLA | XL, 0));
  assert.ok(flag(f.b, gE(f.b, V4K, 1), PTE_D), 'PTE D set');
  assert.is(f.b.image[Number(H4K + 4n)], 0, 'nothing stored');
});

// ---------------------------------------------------------------------------------------------
// EPT violations: not present (29.3.3.2) and the exit qualification (Table 28-7)

for (let level = 4; level >= 1; level--) {
  test(`29.3.3.2/Table 28-7: EPT entry not present at level ${level} for the final GPA: bits 3-5 = 0, bit 7 = bit 8 = 1`, () => {
    const f = fx();
    f.b.write(eE(f.b, G4K, level), 0xf0n); // not present: bits 2:0 = 0 (other bits ignored)
    expectFault(run(f, V4K + 0x10n, R | U), eptv(V4K + 0x10n, G4K + 0x10n, R | U, level, EQ_READ | GLA | XL, 0));
  });
}

for (let glevel = 4; glevel >= 1; glevel--) {
  test(`29.3.3.2/Table 28-7: the page of the guest level-${glevel} table not present in the EPT: gpa = entry GPA, bit 8 = 0, guestLevel ${glevel}`, () => {
    const f = fx();
    f.b.write(tableLeaf(f.b, V4K, glevel), 0n);
    expectFault(run(f, V4K, X), eptv(V4K, gEgpa(f.b, V4K, glevel), X, 1, EQ_READ | GLA, glevel));
  });
}

test('Table 28-7: bits 3-5 are the AND over all levels (PML4E R-X, PDE RW-)', () => {
  const f = fx();
  f.b.set(eE(f.b, G4K, 4), 0n, EPT_W);
  f.b.set(eE(f.b, G4K, 2), 0n, EPT_X);
  expectFault(run(f, V4K, W), eptv(V4K, G4K, W, 1, EQ_WRITE | EQ_READABLE | GLA | XL, 0));
  expectFault(run(f, V4K, X | U), eptv(V4K, G4K, X | U, 1, EQ_FETCH | EQ_READABLE | GLA | XL, 0));
  ok(run(f, V4K, R), H4K);
});

test('29.3.3.2: write to a read-only EPT page; fetch from a non-executable one; level = leaf level', () => {
  const f = fx();
  f.b.set(eE(f.b, G1G + M2, 2), 0n, EPT_W);
  expectFault(run(f, V1G + M2 + 8n, W), eptv(V1G + M2 + 8n, G1G + M2 + 8n, W, 2, EQ_WRITE | EQ_READABLE | EQ_EXECUTABLE | GLA | XL, 0));
  f.b.set(eE(f.b, G4K, 1), 0n, EPT_X);
  expectFault(run(f, V4K, X), eptv(V4K, G4K, X, 1, EQ_FETCH | EQ_READABLE | EQ_WRITABLE | GLA | XL, 0));
});

test('29.3.2: execute-only EPT entries (supported): fetch allowed, read is a violation with only X in bits 3-5', () => {
  const f = fx({ eptExecOnly: true });
  f.b.set(eE(f.b, G4K, 2), 0n, EPT_R | EPT_W);
  ok(run(f, V4K, X), H4K);
  expectFault(run(f, V4K, R), eptv(V4K, G4K, R, 1, EQ_READ | EQ_EXECUTABLE | GLA | XL, 0));
});

// ---------------------------------------------------------------------------------------------
// EPT misconfigurations (29.3.3.1)

const mtField = (mt: bigint): bigint => mt << EPT_MT_SHIFT;
const miscCases: { name: string; gpa: bigint; gva: bigint; level: number; value: (e: bigint) => bigint; cpu?: Partial<RefCpu> }[] = [
  { name: 'write-only (010b) leaf', gpa: G4K, gva: V4K, level: 1, value: (e) => (e & ~EPT_RWX) | EPT_W },
  { name: 'write/execute (110b) PDE', gpa: G4K, gva: V4K, level: 2, value: (e) => (e & ~EPT_RWX) | EPT_W | EPT_X },
  { name: 'execute-only (100b) PDPTE when not supported', gpa: G4K, gva: V4K, level: 3, value: (e) => (e & ~EPT_RWX) | EPT_X, cpu: { eptExecOnly: false } },
  { name: 'bit 46 (>= MAXPHYADDR) in a PDPTE', gpa: G4K, gva: V4K, level: 3, value: (e) => e | (1n << 46n) },
  { name: 'bit 51 in a leaf', gpa: G4K, gva: V4K, level: 1, value: (e) => e | (1n << 51n) },
  { name: 'PS (bit 7) in a PML4E', gpa: G4K, gva: V4K, level: 4, value: (e) => e | EPT_PS },
  { name: 'bit 3 in a PML4E', gpa: G4K, gva: V4K, level: 4, value: (e) => e | 8n },
  { name: 'bit 6 in a non-leaf PDE', gpa: G4K, gva: V4K, level: 2, value: (e) => e | 0x40n },
  { name: 'bit 3 in a non-leaf PDPTE', gpa: G4K, gva: V4K, level: 3, value: (e) => e | 8n },
  { name: 'memory type 2 in a leaf', gpa: G4K, gva: V4K, level: 1, value: (e) => (e & ~EPT_MT) | mtField(2n) },
  { name: 'memory type 3 in a leaf', gpa: G4K, gva: V4K, level: 1, value: (e) => (e & ~EPT_MT) | mtField(3n) },
  { name: 'memory type 7 in a 2M leaf', gpa: G1G + M2, gva: V1G + M2, level: 2, value: (e) => (e & ~EPT_MT) | mtField(7n) },
  { name: 'bit 20 in a 2M leaf (bits 20:12)', gpa: G1G + M2, gva: V1G + M2, level: 2, value: (e) => e | (1n << 20n) },
  { name: 'bit 12 in a 1G leaf (bits 29:12)', gpa: GE_1G, gva: VE, level: 3, value: (e) => e | (1n << 12n) },
  { name: '1G leaf without EPT 1-GByte page support', gpa: GE_1G, gva: VE, level: 3, value: (e) => e, cpu: { eptGbPages: false } },
];
for (const c of miscCases) {
  test(`29.3.3.1: ${c.name}: EPT misconfiguration at level ${c.level}`, () => {
    const f = fx(c.cpu);
    const at = eE(f.b, c.gpa, c.level);
    f.b.write(at, c.value(f.b.read(at)));
    const gpa = c.gva === VE ? VE_GPA : c.gpa;
    expectFault(run(f, c.gva, R), eptm(c.gva, gpa, R, c.level, 0));
  });
}

test('29.3.3.1: memory types 0 (UC), 1, 4, 5, 6 in a leaf are valid', () => {
  for (const mt of [0n, 1n, 4n, 5n, 6n]) {
    const f = fx();
    const at = eE(f.b, G4K, 1);
    f.b.write(at, (f.b.read(at) & ~EPT_MT) | mtField(mt));
    ok(run(f, V4K, R), H4K);
  }
});

test('29.3.3.1: a misconfigured EPT entry on a guest table page reports the entry GPA and guestLevel', () => {
  const f = fx();
  f.b.set(tableLeaf(f.b, V4K, 3), mtField(2n), EPT_MT);
  expectFault(run(f, V4K, R), eptm(V4K, gEgpa(f.b, V4K, 3), R, 1, 3));
});

// ---------------------------------------------------------------------------------------------
// EPT accessed and dirty flags (29.3.5)

test('29.3.5: with EPTP bit 6, a read sets EPT A on every entry used, D on the table pages (paging writes), not on the data page', () => {
  const f = fx();
  f.cpu.eptp |= EPTP_AD;
  ok(run(f, V4K, R), H4K);
  for (let l = 4; l >= 1; l--) assert.ok(flag(f.b, eE(f.b, G4K, l), EPT_A), `data EPT A at ${l}`);
  assert.not.ok(flag(f.b, eE(f.b, G4K, 1), EPT_D), 'data EPT leaf not dirty');
  for (let g = 4; g >= 1; g--) assert.ok(flag(f.b, tableLeaf(f.b, V4K, g), EPT_A | EPT_D) && flag(f.b, tableLeaf(f.b, V4K, g), EPT_D), `table page ${g} EPT D`);
  ok(run(f, V4K, W), H4K);
  assert.ok(flag(f.b, eE(f.b, G4K, 1), EPT_D), 'data EPT leaf dirty after a write');
  assert.not.ok(flag(f.b, eE(f.b, G4K, 2), EPT_D), 'no D in a non-leaf EPT entry');
});

test('29.3.5/Table 28-7: with EPT A/D, a guest paging read needs W: violation rd|wr, bit 8 = 0', () => {
  const f = fx();
  f.cpu.eptp |= EPTP_AD;
  f.b.set(tableLeaf(f.b, V4K, 3), 0n, EPT_W);
  expectFault(run(f, V4K, R), eptv(V4K, gEgpa(f.b, V4K, 3), R, 1, EQ_READ | EQ_WRITE | EQ_READABLE | EQ_EXECUTABLE | GLA, 3));
  for (let l = 4; l >= 1; l--) assert.not.ok(flag(f.b, gE(f.b, V4K, l), PTE_A), `no guest A at ${l}`);
});

test('29.3.5 model choice: EPT A/D committed per GPA translation: the PML4 table page keeps A when a later level faults', () => {
  const f = fx();
  f.cpu.eptp |= EPTP_AD;
  f.b.write(tableLeaf(f.b, V4K, 2), 0n);
  expectFault(run(f, V4K, R), eptv(V4K, gEgpa(f.b, V4K, 2), R, 1, EQ_READ | EQ_WRITE | GLA, 2));
  assert.ok(flag(f.b, tableLeaf(f.b, V4K, 4), EPT_D), 'PML4 table page EPT D');
  assert.ok(flag(f.b, tableLeaf(f.b, V4K, 3), EPT_D), 'PDPT table page EPT D');
  assert.not.ok(flag(f.b, eE(f.b, G4K, 1), EPT_A), 'data page untouched');
});

test('29.3.5: no EPT A/D flags are written without EPTP bit 6', () => {
  const f = fx();
  const before = f.b.image.slice();
  ok(run(f, V4K, R), H4K);
  // Only guest A flags may change: every changed byte must be in a guest entry.
  const guestEntries = new Set([4, 3, 2, 1].map((l) => Number(gE(f.b, V4K, l))));
  for (let i = 0; i < before.length; i++) {
    if (before[i] !== f.b.image[i]) assert.ok(guestEntries.has(i & ~7), `byte ${hex(i)} changed`);
  }
});

// ---------------------------------------------------------------------------------------------
// Page-modification logging (29.3.6)

function pmlFx(index: number): Fx & { pml: bigint } {
  const f = fx();
  const pml = f.b.allocTable();
  f.cpu.eptp |= EPTP_AD;
  f.cpu.pml = { enabled: true, address: pml, index };
  return { ...f, pml };
}

test('29.3.6: each EPT D 0->1 logs the 4K-aligned GPA at index, index decrements (0 -> FFFFH)', () => {
  const f = pmlFx(4);
  ok(run(f, V4K + 0x18n, W, 8, new Uint8Array(8).fill(3)), H4K + 0x18n);
  const log = (i: number): bigint => f.b.read(f.pml + 8n * BigInt(i));
  const tablePage = (l: number): bigint => gEgpa(f.b, V4K, l) & ~0xfffn;
  assert.is(hex(log(4)), hex(tablePage(4)));
  assert.is(hex(log(3)), hex(tablePage(3)));
  assert.is(hex(log(2)), hex(tablePage(2)));
  assert.is(hex(log(1)), hex(tablePage(1)));
  assert.is(hex(log(0)), hex(G4K));
  assert.is(f.cpu.pml.index, 0xffff);
  // Everything is dirty now: a second write logs nothing and does not hit the full log.
  ok(run(f, V4K + 0x20n, W, 8, new Uint8Array(8).fill(4)), H4K + 0x20n);
  assert.is(f.cpu.pml.index, 0xffff);
});

test('29.3.6: PML full on the data page: exit 62, nothing logged, D stays 0, nothing stored; guest A/D stand', () => {
  const f = pmlFx(3);
  expectFault(run(f, V4K + 0x18n, W, 8, new Uint8Array(8).fill(3)),
    { kind: FAULT_PML_FULL, gva: V4K + 0x18n, gpa: G4K + 0x18n, access: W, level: 1, code: 0, exitReason: EXIT_PML_FULL, guestLevel: 0 });
  assert.is(f.cpu.pml.index, 0xffff);
  assert.not.ok(flag(f.b, eE(f.b, G4K, 1), EPT_D), 'data EPT D stays 0');
  assert.not.ok(flag(f.b, eE(f.b, G4K, 1), EPT_A), 'ref choice: that translation commits no A either');
  assert.is(f.b.image[Number(H4K + 0x18n)], 0, 'nothing stored');
  assert.ok(flag(f.b, gE(f.b, V4K, 1), PTE_D), 'guest D was set before the final translation');
  assert.is(f.b.read(f.pml + 0xff8n), 0n, 'slot 511 untouched');
});

test('29.3.6: PML full on a guest paging-structure access (treated as a write): gpa = entry GPA, guestLevel 4', () => {
  const f = pmlFx(0xffff);
  expectFault(run(f, V4K, R),
    { kind: FAULT_PML_FULL, gva: V4K, gpa: gEgpa(f.b, V4K, 4), access: R, level: 1, code: 0, exitReason: EXIT_PML_FULL, guestLevel: 4 });
  assert.not.ok(flag(f.b, tableLeaf(f.b, V4K, 4), EPT_D));
});

test('29.3.6: an index above 511 (not only FFFFH) is full', () => {
  const f = pmlFx(512);
  assert.is(run(f, V4K, R).fault?.kind, FAULT_PML_FULL);
});

test('29.3.6: a read that only sets EPT A flags does not consult the PML index (docs: D flags only)', () => {
  const f = pmlFx(0xffff);
  for (let g = 4; g >= 1; g--) f.b.set(tableLeaf(f.b, V4K, g), EPT_D); // table pages already dirty
  ok(run(f, V4K, R), H4K);
  assert.ok(flag(f.b, eE(f.b, G4K, 1), EPT_A));
});

// ---------------------------------------------------------------------------------------------
// Sub-page write permissions (29.3.4)

function sppFx(grant: number): Fx {
  const f = fx();
  f.b.set(eE(f.b, G4K, 1), EPT_SPP, EPT_W); // R-X leaf with bit 61
  f.b.setSpp(G4K, grant);
  f.cpu.spp = { enabled: true, spptp: f.b.sppRoot! };
  return f;
}
const sppDeny = (gva: bigint, gpa: bigint): RefFault =>
  eptv(gva, gpa, W, 1, EQ_WRITE | EQ_READABLE | EQ_EXECUTABLE | GLA | XL | EQ_SPP, 0);

test('29.3.4: SPP grants a write inside granted sub-pages 0-1; the write is stored and dirties the EPT leaf; SPPT reads count as EPT references', () => {
  const f = sppFx(0b11);
  f.cpu.eptp |= EPTP_AD;
  const counts = { guestRefs: 0, eptRefs: 0 };
  ok(run(f, V4K + 0xf0n, W, 16, new Uint8Array(16).fill(7), counts), H4K + 0xf0n);
  assert.equal(counts, { guestRefs: 4, eptRefs: 20 + 4 });
  assert.is(f.b.image[Number(H4K + 0xffn)], 7);
  assert.ok(flag(f.b, eE(f.b, G4K, 1), EPT_D));
});

test('29.3.4: a write touching sub-pages 1 and 2 with only 1 granted: EPT violation with bit 11', () => {
  const f = sppFx(0b11);
  expectFault(run(f, V4K + 0xfcn, W, 8, new Uint8Array(8)), sppDeny(V4K + 0xfcn, G4K + 0xfcn));
  expectFault(run(f, V4K + 0xf80n, W, 1, new Uint8Array(1)), sppDeny(V4K + 0xf80n, G4K + 0xf80n));
  assert.is(f.b.image[Number(H4K + 0xfcn)], 0);
});

test('29.3.4: reads and fetches are not affected by SPP', () => {
  const f = sppFx(0);
  ok(run(f, V4K + 0x100n, R), H4K + 0x100n);
  ok(run(f, V4K + 0x100n, X), H4K + 0x100n);
});

test('29.3.4: SPPT non-leaf entry not present: SPP-related event (66), FAULT_SPP_MISS, at that SPPT level', () => {
  const f = sppFx(0xffffffff);
  f.b.write(f.b.sppEntry(G4K, 3), 0n);
  expectFault(run(f, V4K, W),
    { kind: FAULT_SPP_MISS, gva: V4K, gpa: G4K, access: W, level: 3, code: EQ_SPP, exitReason: EXIT_SPP_EVENT, guestLevel: 0 });
});

test('29.3.4: SPPT misconfiguration: an odd bit in the leaf vector; bit 1 in a non-leaf; bit 51 in a non-leaf', () => {
  const mis = (gva: bigint, level: number): RefFault =>
    ({ kind: FAULT_SPP_MISCONFIG, gva, gpa: G4K, access: W, level, code: 0, exitReason: EXIT_SPP_EVENT, guestLevel: 0 });
  let f = sppFx(0xffffffff);
  f.b.set(f.b.sppEntry(G4K, 1), 1n << 9n);
  expectFault(run(f, V4K, W), mis(V4K, 1));
  f = sppFx(0xffffffff);
  f.b.set(f.b.sppEntry(G4K, 4), 2n);
  expectFault(run(f, V4K, W), mis(V4K, 4));
  f = sppFx(0xffffffff);
  f.b.set(f.b.sppEntry(G4K, 2), 1n << 51n);
  expectFault(run(f, V4K, W), mis(V4K, 2));
});

test('29.3.4: an SPPT entry with P=0 and reserved bits is a miss (presence checked first)', () => {
  const f = sppFx(0xffffffff);
  f.b.write(f.b.sppEntry(G4K, 2), 0xffen);
  assert.is(run(f, V4K, W).fault?.kind, FAULT_SPP_MISS);
});

test('29.3.4: SPP disabled, or bit 61 on a 2M EPT leaf: an ordinary EPT violation', () => {
  const f = sppFx(0xffffffff);
  f.cpu.spp.enabled = false;
  expectFault(run(f, V4K, W), eptv(V4K, G4K, W, 1, EQ_WRITE | EQ_READABLE | EQ_EXECUTABLE | GLA | XL, 0));
  const g = fx();
  g.b.set(eE(g.b, G1G + M2, 2), EPT_SPP, EPT_W);
  g.b.setSpp(G1G + M2, 0xffffffff);
  g.cpu.spp = { enabled: true, spptp: g.b.sppRoot! };
  expectFault(run(g, V1G + M2, W), eptv(V1G + M2, G1G + M2, W, 2, EQ_WRITE | EQ_READABLE | EQ_EXECUTABLE | GLA | XL, 0));
});

test('29.3.4 (ref choice): SPP does not apply to guest paging-structure accesses treated as writes (EPT A/D)', () => {
  const f = fx();
  f.cpu.eptp |= EPTP_AD;
  const leaf = tableLeaf(f.b, V4K, 2);
  f.b.set(leaf, EPT_SPP, EPT_W);
  f.b.set(gE(f.b, V4K, 2), PTE_A); // no A/D update needed: only the paging read itself is checked
  f.b.setSpp(gEgpa(f.b, V4K, 2), 0xffffffff);
  f.cpu.spp = { enabled: true, spptp: f.b.sppRoot! };
  expectFault(run(f, V4K, R), eptv(V4K, gEgpa(f.b, V4K, 2), R, 1, EQ_READ | EQ_WRITE | EQ_READABLE | EQ_EXECUTABLE | GLA, 2));
});

test('29.3.4 (ref choice): SPP does not apply to guest A/D updates on a table page', () => {
  const f = fx();
  const leaf = tableLeaf(f.b, V4K, 1);
  f.b.set(leaf, EPT_SPP, EPT_W);
  f.b.setSpp(gEgpa(f.b, V4K, 1), 0xffffffff);
  f.cpu.spp = { enabled: true, spptp: f.b.sppRoot! };
  expectFault(run(f, V4K, R), eptv(V4K, gEgpa(f.b, V4K, 1), R, 1, EQ_READ | EQ_WRITE | EQ_READABLE | EQ_EXECUTABLE | GLA, 1));
});

// ---------------------------------------------------------------------------------------------
// FAULT_BUS and reference counts

test('docs "Addresses": an HPA beyond the simulated memory is FAULT_BUS with the HPA in gpa', () => {
  const f = fx();
  const at = eE(f.b, G4K, 1);
  f.b.write(at, (f.b.read(at) & 0xfffn) | 0x1000_0000n);
  const r = run(f, V4K + 0x10n, R);
  assert.is(r.fault?.kind, FAULT_BUS);
  assert.is(hex(r.fault!.gpa), hex(0x1000_0010n));
  // An EPT table beyond memory: the EPT entry read is the bus error.
  const g = fx();
  const pde = eE(g.b, G4K, 2);
  g.b.write(pde, (g.b.read(pde) & 0xfffn) | 0x2000_0000n);
  const r2 = run(g, V4K, R);
  assert.is(r2.fault?.kind, FAULT_BUS);
  assert.is(hex(r2.fault!.gpa), hex(0x2000_0000n + 8n * ((G4K >> 12n) & 511n)));
});

test('docs "Counters": a cold 4K/4K translation reads 4 guest and 20 EPT entries (24 references)', () => {
  const f = fx();
  const counts = { guestRefs: 0, eptRefs: 0 };
  ok(run(f, V4K, R, 8, undefined, counts), H4K);
  assert.equal(counts, { guestRefs: 4, eptRefs: 20 });
  // A straddling access walks both pages.
  const c2 = { guestRefs: 0, eptRefs: 0 };
  ok(run(f, V4K + 0xffcn, R, 8, undefined, c2), H4K + 0xffcn);
  assert.equal(c2, { guestRefs: 8, eptRefs: 40 });
});

test.run();
