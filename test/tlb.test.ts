// TLB behaviour the reference walker cannot check (it has no TLB): SDM Vol. 3A 4.10 and
// Vol. 3C 29.4, as docs/sim-semantics.md states them.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { Sim } from '../src/sim.ts';
import { FrameAllocator, EptBuilder, GuestPtBuilder, addrMaskFor } from '../src/space.ts';
import { smallSpace, VA } from './support/small-space.ts';
import {
  ACC_READ, ACC_WRITE, ACC_USER, PTE_RW, PTE_D, PTE_G, EPT_D, EPT_W, FAULT_PF, FAULT_EPT_VIOLATION,
  FAULT_BUS, INVVPID_ADDR, INVVPID_SINGLE, INVVPID_SINGLE_NONGLOBAL, INVEPT_SINGLE, INVEPT_ALL, PTE_US,
} from '../src/consts.ts';

const R = ACC_READ | ACC_USER;
const W = ACC_WRITE | ACC_USER;

async function space(opts: { eptAd?: boolean; pscEntries?: number } = {}) {
  return smallSpace({ eptAd: opts.eptAd, pscEntries: opts.pscEntries ?? 0 });
}

test('a cold 4K/4K translation reads 24 entries; the second access hits the TLB and reads none', async () => {
  const { sim } = await space();
  sim.access(VA, R, 8);
  let c = sim.counters();
  assert.is(c.guestRefs + c.eptRefs, 24);
  assert.is(c.tlbMisses, 1);
  sim.access(VA + 8n, R, 8);
  c = sim.counters();
  assert.is(c.tlbHits, 1);
  assert.is(c.guestRefs + c.eptRefs, 24);
});

test('4.8 / 29.3.5: a translation cached by a read does not let a later write skip setting D', async () => {
  const { sim, gpt, ept } = await space();
  sim.access(VA, R, 8);
  assert.is(gpt.leafEntry(VA)!.value & PTE_D, 0n);
  assert.is(ept.leafEntry(0n)!.value & EPT_D, 0n);
  sim.access(VA, W, 8);
  assert.is(gpt.leafEntry(VA)!.value & PTE_D, PTE_D, 'guest D set');
  assert.is(ept.leafEntry(0n)!.value & EPT_D, EPT_D, 'EPT D set');
  const walks = sim.counters().walks;
  sim.access(VA + 16n, W, 8);
  assert.is(sim.counters().walks, walks, 'a dirty entry serves writes without a walk');
});

test('4.10.4: a PTE made writable without invlpg faults once from the stale entry, then succeeds', async () => {
  const { sim, gpt } = await space();
  const l = gpt.leafEntry(VA)!;
  sim.write64(l.hpa, l.value & ~PTE_RW);
  sim.invlpg(VA);
  sim.access(VA, R, 8); // cache the read-only translation
  sim.write64(l.hpa, sim.read64(l.hpa) | PTE_RW);
  const first = sim.access(VA, W, 8);
  assert.is(first.fault?.kind, FAULT_PF, 'stale read-only rights fault');
  const second = sim.access(VA, W, 8);
  assert.is(second.fault, null, 'the fault dropped the stale entry');
});

test('4.10.4: a PTE made read-only without invlpg still allows writes through the cached entry', async () => {
  const { sim, gpt } = await space();
  sim.access(VA, W, 8);
  const l = gpt.leafEntry(VA)!;
  sim.write64(l.hpa, l.value & ~PTE_RW);
  assert.is(sim.access(VA, W, 8).fault, null, 'stale permissive entry');
  sim.invlpg(VA);
  assert.is(sim.access(VA, W, 8).fault?.kind, FAULT_PF, 'after invlpg the PTE rules');
});

test('29.4.3: an EPT violation raised from cached rights reports the GPA and drops the entry', async () => {
  const { sim, ept } = await space();
  sim.access(VA + 0x3000n, W, 8);
  const l = ept.leafEntry(0x3000n)!;
  sim.write64(l.hpa, l.value & ~EPT_W);
  assert.is(sim.access(VA + 0x3000n, W, 8).fault, null, 'stale EPT rights still serve the write');
  sim.invept(INVEPT_SINGLE, sim.cpu().eptp);
  sim.access(VA + 0x3000n, R, 8);
  const f = sim.access(VA + 0x3008n, W, 8).fault!;
  assert.is(f.kind, FAULT_EPT_VIOLATION);
  assert.is(f.gpa, 0x3008n);
  assert.is(f.code & 0x1ff, 0b1_1010_1010, 'write; readable, not writable, executable; GLA valid; final translation');
});

test('invlpg drops one page only; INVVPID and INVEPT follow their types', async () => {
  const { sim, gpt } = await space();
  const touch = () => { for (let i = 0n; i < 4n; i++) sim.access(VA + i * 0x1000n, R, 1); };
  const misses = () => sim.counters().tlbMisses;
  touch();
  let m = misses();
  sim.invlpg(VA + 0x1000n);
  touch();
  assert.is(misses() - m, 1, 'invlpg');

  m = misses();
  sim.invvpid(INVVPID_ADDR, 1, VA + 0x2000n);
  touch();
  assert.is(misses() - m, 1, 'INVVPID individual address');

  m = misses();
  sim.invvpid(INVVPID_SINGLE, 2, 0n);
  touch();
  assert.is(misses() - m, 0, 'INVVPID of another VPID');

  m = misses();
  sim.invept(INVEPT_SINGLE, 0x123000n);
  touch();
  assert.is(misses() - m, 0, 'INVEPT of another EPTP');

  m = misses();
  sim.invept(INVEPT_ALL, 0n);
  touch();
  assert.is(misses() - m, 4, 'global INVEPT');

  // Make page 0 global, re-cache, then single-context-retaining-globals keeps only it.
  const l = gpt.leafEntry(VA)!;
  sim.write64(l.hpa, l.value | PTE_G);
  sim.invept(INVEPT_ALL, 0n);
  touch();
  m = misses();
  sim.invvpid(INVVPID_SINGLE_NONGLOBAL, 1, 0n);
  touch();
  assert.is(misses() - m, 3, 'globals retained');
});

test('4.10.4.1: invlpg drops every 4 KiB piece cached from a 2 MiB guest page', async () => {
  const { sim, gpt, ept } = await space();
  ept.map(0x20_0000n, 0x20_0000n, 0x20_0000n as 0x200000n);
  gpt.map(0x4000_0000n, 0x20_0000n, 0x20_0000n as 0x200000n);
  const pieces = [0x0n, 0x1000n, 0x1f_f000n];
  const touch = () => { for (const o of pieces) sim.access(0x4000_0000n + o, R, 1); };
  touch();
  const m = sim.counters().tlbMisses;
  sim.invlpg(0x4000_0000n + 0x1234n);
  touch();
  assert.is(sim.counters().tlbMisses - m, 3, 'all three pieces walked again');
  touch();
  assert.is(sim.counters().tlbMisses - m, 3, 'and are cached again');
});

test('VPID tags: another VPID misses, the first one still hits', async () => {
  const { sim } = await space();
  sim.access(VA, R, 1);
  sim.setCpu({ vpid: 2 });
  sim.access(VA, R, 1);
  sim.setCpu({ vpid: 1 });
  sim.access(VA, R, 1);
  const c = sim.counters();
  assert.is(c.tlbMisses, 2);
  assert.is(c.tlbHits, 1);
});

test('a straddling write whose second page faults stores nothing', async () => {
  const { sim, gpt } = await space();
  const l = gpt.leafEntry(VA + 0x1000n)!;
  sim.write64(l.hpa, l.value & ~PTE_US);
  const r = sim.access(VA + 0xffcn, W, 8, new Uint8Array([9, 9, 9, 9, 9, 9, 9, 9]));
  assert.is(r.fault?.kind, FAULT_PF);
  assert.is(r.fault?.gva, VA + 0x1000n, 'CR2 is the first byte in the faulting page');
  assert.equal([...sim.readBytes(0x10_0ffcn, 4)], [0, 0, 0, 0]);
  assert.is(sim.counters().split, 1);
});

test('the inspection walk changes nothing: memory, counters, TLB', async () => {
  const { sim } = await space();
  const before = sim.phys.slice();
  const c0 = sim.counters();
  const r = sim.inspect(VA + 0x2000n, W);
  assert.is(r.fault, null);
  assert.is(r.steps.length, 24);
  assert.is(r.hpa, 0x10_2000n);
  assert.ok(Buffer.compare(before, sim.phys) === 0, 'memory unchanged');
  assert.equal(sim.counters(), c0);
  sim.access(VA + 0x2000n, R, 1);
  assert.is(sim.counters().tlbMisses, 1, 'nothing was cached by the inspection');
  // An outcome beyond host memory is reported, not counted: only accesses count.
  const { sim: s2, ept } = await space();
  const l = ept.leafEntry(0n)!;
  s2.write64(l.hpa, (l.value & ~0xffff_ffff_f000n) | 0x4000_0000n);
  s2.invlpg(VA);
  const c1 = s2.counters();
  assert.is(s2.inspect(VA, R).fault?.kind, FAULT_BUS);
  assert.equal(s2.counters(), c1);
});

test('TLB disabled (0 ways): every access walks', async () => {
  const sim = await Sim.create({ physBytes: 1 << 20, tlbWays: 0 });
  const mask = addrMaskFor(46);
  const tables = new FrameAllocator(0x8_0000n, 0x10_0000n);
  const ept = new EptBuilder(sim, tables, mask);
  const gpt = new GuestPtBuilder(sim, tables, new FrameAllocator(0x1000_0000n, 0x2000_0000n), ept, mask);
  ept.map(0n, 0x1000n);
  gpt.map(VA, 0n);
  sim.setCpu({ cr3: gpt.cr3, eptp: ept.eptp() });
  for (let i = 0; i < 3; i++) sim.access(VA, R, 1);
  assert.is(sim.counters().walks, 3);
});

test('4.10.3: with the PDE cache, a TLB miss in a known 2 MiB region reads only PTE and its EPT walk, and the final EPT walk', async () => {
  const { sim } = await space({ pscEntries: 16 });
  sim.access(VA, R, 1);
  sim.access(VA + 0x1000n, R, 1);
  const c = sim.counters();
  assert.is(c.pscHits, 1);
  assert.is(c.guestRefs + c.eptRefs, 24 + 9);
  sim.invlpg(VA + 0x5000n);
  sim.access(VA + 0x2000n, R, 1);
  assert.is(sim.counters().pscHits, 1, 'invalidation empties the cache');
  // Outcomes never change: the same A/D bits as a walk from the top.
  const { sim: plain } = await space();
  for (const s of [sim, plain]) for (let i = 0n; i < 8n; i++) s.access(VA + i * 0x1000n, W, 8);
  assert.ok(Buffer.compare(sim.phys, plain.phys) === 0, 'same memory image with and without the cache');
});

test.run();
