// The monitored space against DESIGN.md section 2: slot j of frame f is reached only through
// V(f, j), every alias of a frame sees the same bytes, V(f, j) maps the plane page of its group
// leader, and setGranularity regroups by rewriting guest PTEs alone (no object moves, no byte is
// copied, the EPT is untouched, stale TLB entries are not used).
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { MonitoredSpace, PLANE_STRIDE, SpaceError, type MonitorMode, type DirtyUnit } from '../src/layout/space.ts';
import { SpreadAllocator } from '../src/alloc/spread.ts';
import { MAX_PLANES, PAGE, SPREAD_CLASSES, type MapRequest, type Placement } from '../src/alloc/classes.ts';
import { readGvaWalk } from './support/space.ts';
import { ACC_READ, ACC_USER, ACC_WRITE, EPT_A, EPT_ADDR, EPT_D, PTE_ADDR } from '../src/consts.ts';
import type { FaultRecord } from '../src/sim.ts';
import { rng } from './support/rng.ts';

const HEAP = 0x6000_0000_0000;
const LARGE = 0x6800_0000_0000;
const OWN = 0x10_0000_0000;
const MODES: MonitorMode[] = ['gpt-wp', 'ept-wp', 'ept-dirty', 'pml', 'spp'];
const UNITS = [64, 128, 256, 512, 1024, 2048, 4096];

/** Byte arrays compared with a short message: the first difference, not a dump of every byte. */
function sameBytes(got: Uint8Array, want: Uint8Array, what: string): void {
  if (got.length === want.length && Buffer.compare(got, want) === 0) return;
  const i = got.findIndex((b, k) => b !== want[k]);
  assert.unreachable(`${what}: ${got.length} bytes against ${want.length}; first difference at byte ${i < 0 ? Math.min(got.length, want.length) : i} (got ${got[i]}, want ${want[i]})`);
}

const V = (allocFrame: number, j: number) => SpreadAllocator.vpage(HEAP, allocFrame, j);
const planePage = (plane: number, f: number) => BigInt(plane * PLANE_STRIDE + f * PAGE);
/** Slots per unit for a slab of class cls at unit size `unit`: the definition, not the space's. */
const groupFor = (cls: number, unit: number) => Math.max(1, Math.min(PAGE / cls, Math.floor(unit / cls)));
const hex = (n: number | bigint) => '0x' + n.toString(16);

interface Slab { allocFrame: number; f: number; cls: number; k: number; vpages: number[] }

/** A space in `mode` with a spread heap whose map requests (and the pool frames they got) are kept. */
async function build(mode: MonitorMode, unit: number) {
  const space = await MonitoredSpace.create({ mode, frames: 4096 });
  const slabs: Slab[] = [];
  const larges: { gva: number; frames: number[] }[] = [];
  const alloc = new SpreadAllocator({
    heapBase: HEAP, largeBase: LARGE,
    onMap: (r: MapRequest) => {
      space.onMap(r, unit);
      if (r.kind === 'slab') slabs.push({ allocFrame: r.frame, f: space.poolFrame(r.frame), cls: r.cls, k: r.slots, vpages: r.vpages });
      else larges.push({ gva: r.gva, frames: r.frames.map((af) => space.poolFrame(af)) });
    },
  });
  return { space, alloc, slabs, larges };
}

/** Objects of every class: a frame and a half of each (so every slot of the first frame is used), and two large ones. */
function populate(alloc: SpreadAllocator, r: () => number): Placement[] {
  const objs: Placement[] = [];
  for (const cls of SPREAD_CLASSES) {
    const k = PAGE / cls;
    for (let i = 0; i < k + Math.ceil(k / 2); i++) objs.push(alloc.alloc(Math.max(1, cls / 2 + 1 + Math.floor(r() * (cls / 2))), 16));
  }
  objs.push(alloc.alloc(10_000, 16), alloc.alloc(4097, 16));
  return objs;
}

const noFault = (f: FaultRecord) => { throw new Error(`unexpected fault kind ${f.kind} code ${hex(f.code)} at ${hex(f.gva)}`); };

/** Writes bytes at a GVA as simulated user accesses (pieces of at most 64 bytes), with the mode's handlers. */
async function write(space: MonitoredSpace, gva: number, bytes: Uint8Array): Promise<void> {
  const b = space.mmu.batch;
  for (let off = 0; off < bytes.length; off += 64) {
    const n = Math.min(64, bytes.length - off);
    if (!b.pushAddrValue(gva + off, ACC_WRITE | ACC_USER, n, bytes, off)) { await space.runBatch(noFault); b.pushAddrValue(gva + off, ACC_WRITE | ACC_USER, n, bytes, off); }
  }
  await space.runBatch(noFault);
}
async function read(space: MonitoredSpace, gva: number, n = 8): Promise<void> {
  space.mmu.batch.pushAddr(gva, ACC_READ | ACC_USER, n);
  await space.runBatch(noFault);
}

const frameHpa = (space: MonitoredSpace, f: number) => space.sim.ept.leafEntry(planePage(0, f))!.value & EPT_ADDR;
const eptFlags = (space: MonitoredSpace, plane: number, f: number) => space.sim.ept.leafEntry(planePage(plane, f))!.value;

/** Every EPT leaf of every plane page that could belong to the frames in use (null where unmapped). */
function eptSnapshot(space: MonitoredSpace): (bigint | null)[] {
  const out: (bigint | null)[] = [];
  for (let f = 0; f < space.framesUsed; f++) for (let p = 0; p < MAX_PLANES; p++) out.push(space.sim.ept.leafEntry(planePage(p, f))?.value ?? null);
  return out;
}
/** Guest PTE value of every mapped virtual page of the heap. */
function gptSnapshot(space: MonitoredSpace, slabs: Slab[], larges: { gva: number; frames: number[] }[]): Map<number, bigint> {
  const out = new Map<number, bigint>();
  const put = (v: number) => out.set(v, space.sim.gpt.leafEntry(BigInt(v))!.value);
  for (const s of slabs) for (const v of s.vpages) put(v);
  for (const l of larges) l.frames.forEach((_, i) => put(l.gva + i * PAGE));
  return out;
}
function allFrames(space: MonitoredSpace): Uint8Array[] {
  return Array.from({ length: space.framesUsed }, (_, f) => space.frameBytes(f));
}

test('slot j of a slab frame is reached through V(f, j) at offset j*cls, and V(f, j) maps its group leader\'s plane page', async () => {
  for (const unit of [64, 256, 4096]) {
    const { space, alloc, slabs, larges } = await build('ept-dirty', unit);
    const objs = populate(alloc, rng(unit));
    assert.ok(slabs.length >= SPREAD_CLASSES.length * 2, 'frames of every class');
    const hpas = new Set<bigint>();
    for (const s of slabs) {
      assert.is(s.k, PAGE / s.cls);
      const hpa = frameHpa(space, s.f);
      hpas.add(hpa);
      // The frame appears once in each of its K planes, and in no other.
      for (let p = 0; p < MAX_PLANES; p++) {
        const l = space.sim.ept.leafEntry(planePage(p, s.f));
        if (p < s.k) assert.is(l && l.value & EPT_ADDR, hpa, `plane ${p} of frame ${s.f} maps its frame`);
        else assert.is(l, null, `plane ${p} of frame ${s.f} (class ${s.cls}, K ${s.k}) is unmapped`);
      }
      const m = groupFor(s.cls, unit);
      assert.is(space.groupOf(s.f), m);
      assert.is(space.unitOf(s.f), m * s.cls);
      for (let j = 0; j < s.k; j++) {
        assert.is(s.vpages[j], V(s.allocFrame, j));
        const pte = space.sim.gpt.leafEntry(BigInt(V(s.allocFrame, j)))!;
        assert.is(pte.level, 1, '4 KiB guest pages');
        assert.is(pte.value & PTE_ADDR, planePage(j - (j % m), s.f), `V(${s.allocFrame}, ${j}) at unit ${unit} maps plane ${j - (j % m)}`);
        for (const at of [0, s.cls - 1]) {
          const w = space.sim.sim.inspect(BigInt(V(s.allocFrame, j) + j * s.cls + at), ACC_READ);
          assert.is(w.fault, null);
          assert.is(w.hpa, hpa + BigInt(j * s.cls + at), `frame ${s.f} slot ${j} byte ${at}`);
        }
      }
    }
    assert.is(hpas.size, slabs.length, 'every slab has its own frame');
    for (const l of larges) {
      l.frames.forEach((f, i) => {
        assert.is(space.sim.sim.inspect(BigInt(l.gva + i * PAGE + 5), ACC_READ).hpa, frameHpa(space, f) + 5n, 'large objects are ordinary pages on plane 0');
        assert.is(space.sim.ept.leafEntry(planePage(1, f)), null);
      });
    }
    // Objects: alone in their slot, at V(frame, slot) + slot*cls, and nowhere else.
    for (const p of objs) {
      if (p.cls === null) continue;
      const v = V(p.frame, p.slot);
      assert.is(p.addr, v + p.slot * p.cls);
      assert.ok(p.addr + p.size <= v + (p.slot + 1) * p.cls, 'the object fits its slot');
      for (const k of [0, 1, PAGE / p.cls - 1]) {
        if (k === p.slot) continue;
        assert.is(alloc.lookup(V(p.frame, k) + p.slot * p.cls), undefined, `slot ${p.slot} is not an object through V(f, ${k})`);
      }
      assert.is(alloc.lookup(p.addr + Math.max(0, p.size - 1)), p);
    }
  }
});

test('a frame\'s bytes set by the host are what every object reads through its own V page', async () => {
  const { space, alloc, slabs } = await build('gpt-wp', 256);
  populate(alloc, rng(3));
  const r = rng(4);
  for (const s of slabs) {
    const bytes = r.bytes(PAGE);
    space.mmu.writeFrame(s.f, 0, bytes);
    for (let j = 0; j < s.k; j++) sameBytes(readGvaWalk(space, V(s.allocFrame, j) + j * s.cls, s.cls), bytes.subarray(j * s.cls, (j + 1) * s.cls), `frame ${s.f} slot ${j}`);
  }
});

test('aliases see the same bytes: a write through V(f, j) is in the frame and under every V(f, k) at offset j*cls, in every mode', async () => {
  for (const mode of MODES) {
    for (const unit of [64, 4096]) {
      const { space, alloc, slabs } = await build(mode, unit);
      const objs = populate(alloc, rng(7));
      const r = rng(8);
      const written = new Map<Placement, Uint8Array>();
      for (const p of objs) {
        if (p.cls === null || r() < 0.5) continue;
        const bytes = r.bytes(p.size);
        await write(space, p.addr, bytes);
        written.set(p, bytes);
      }
      assert.ok(written.size > 50);
      for (const [p, bytes] of written) {
        const s = slabs.find((x) => x.allocFrame === p.frame)!;
        sameBytes(space.mmu.readFrame(s.f, p.slot * s.cls, p.size), bytes, `${mode}/${unit}: frame ${s.f} slot ${p.slot}`);
        for (let k = 0; k < s.k; k++) sameBytes(readGvaWalk(space, V(p.frame, k) + p.slot * s.cls, p.size), bytes, `${mode}/${unit}: slot ${p.slot} through V(f, ${k})`);
      }
      // A write through another alias lands in the same bytes (the hardware does not know which V page "owns" a slot).
      const p = [...written.keys()].find((x) => x.cls === 64 && x.slot > 2)!;
      const other = r.bytes(8);
      await write(space, V(p.frame, 1) + p.slot * 64, other);
      sameBytes(readGvaWalk(space, p.addr, 8), other, `${mode}/${unit}: alias write`);
    }
  }
});

test('setGranularity regroups by rewriting the frame\'s guest PTEs only: addresses, bytes and the EPT are unchanged', async () => {
  const { space, alloc, slabs, larges } = await build('ept-dirty', 64);
  const objs = populate(alloc, rng(11));
  const r = rng(12);
  const ownPage = OWN + 7 * PAGE;
  space.mapOwnPage(ownPage);
  await write(space, ownPage + 100, r.bytes(64));
  for (const p of objs) await write(space, p.addr, r.bytes(Math.min(p.size, 3000)));
  space.harvest();
  const bytesOf = new Map(objs.map((p) => [p, readGvaWalk(space, p.addr, p.size)]));
  const frames0 = allFrames(space);
  const ept0 = eptSnapshot(space);
  const tables0 = space.tableBytes;
  const ownPte = space.sim.gpt.leafEntry(BigInt(ownPage))!.value;
  let gpt = gptSnapshot(space, slabs, larges);
  const checkUnchanged = (what: string) => {
    for (const [p, b] of bytesOf) {
      sameBytes(readGvaWalk(space, p.addr, p.size), b, `${what}: object at ${hex(p.addr)}`);
      assert.is(alloc.lookup(p.addr), p, `${what}: object at ${hex(p.addr)} is still there`);
    }
    assert.equal(allFrames(space), frames0, `${what}: frame bytes`);
    assert.equal(eptSnapshot(space), ept0, `${what}: EPT leaves`);
    assert.is(space.tableBytes, tables0, `${what}: no table memory added`);
    assert.is(space.sim.gpt.leafEntry(BigInt(ownPage))!.value, ownPte, `${what}: the trace's own page`);
  };
  /** Changes one frame's unit and checks that exactly the PTEs of V pages whose leader moved changed, to the new leader's plane page. */
  const change = (s: Slab, unit: number) => {
    const before = space.groupOf(s.f);
    const m = groupFor(s.cls, unit);
    const invlpg0 = space.mmu.counters().invlpg!;
    const n = space.setGranularity(s.f, unit);
    let moved = 0;
    for (let j = 0; j < s.k; j++) if (j - (j % before) !== j - (j % m)) moved++;
    assert.is(n, moved, `frame ${s.f} class ${s.cls}: ${before} -> ${m} slots per unit`);
    assert.is(space.groupOf(s.f), m);
    assert.is(space.unitOf(s.f), m * s.cls);
    assert.is(space.mmu.counters().invlpg! - invlpg0, moved, 'one invlpg per rewritten PTE');
    const now = gptSnapshot(space, slabs, larges);
    for (const [v, old] of gpt) {
      const val = now.get(v)!;
      const t = s.vpages.indexOf(v);
      if (t < 0) { assert.is(val, old, `PTE of ${hex(v)} (another frame) unchanged`); continue; }
      assert.is(val & ~PTE_ADDR, old & ~PTE_ADDR, `flags of V(${s.allocFrame}, ${t}) unchanged`);
      assert.is(val & PTE_ADDR, planePage(t - (t % m), s.f), `V(${s.allocFrame}, ${t}) maps its new leader ${t - (t % m)}`);
    }
    gpt = now;
    checkUnchanged(`frame ${s.f} (class ${s.cls}) at ${unit}`);
  };
  const firstOfClass = SPREAD_CLASSES.map((c) => slabs.find((s) => s.cls === c)!);
  for (const s of firstOfClass) {
    for (const g of [...UNITS, ...UNITS.slice().reverse()]) change(s, g);
  }
  // A region: every slab frame to its own unit, then all back to 64.
  for (const s of slabs) change(s, UNITS[(r() * UNITS.length) | 0]!);
  for (const s of slabs) change(s, 64);
  // Large-object pages have no slots to regroup.
  const large = larges[0]!;
  assert.is(space.setGranularity(large.frames[0]!, 64), 0);
  assert.is(space.unitOf(large.frames[0]!), PAGE);
  checkUnchanged('a large-object page');
});

test('setGranularity invalidates the TLB entries it makes stale: the next access walks to the new plane page', async () => {
  const { space, alloc, slabs } = await build('ept-dirty', 64);
  for (let i = 0; i < 64; i++) alloc.alloc(48, 16);
  const s = slabs[0]!;
  const at = (j: number) => V(s.allocFrame, j) + j * 64;
  const cnt = () => space.mmu.counters();

  // The observation works: a PTE rewritten without invlpg leaves the cached translation in use.
  await read(space, at(9));
  assert.ok((eptFlags(space, 9, s.f) & EPT_A) !== 0n, 'plane 9 accessed');
  const pte = space.sim.gpt.leafEntry(BigInt(V(s.allocFrame, 9)))!;
  space.sim.sim.write64(pte.hpa, (pte.value & ~PTE_ADDR) | planePage(10, s.f));
  let c0 = cnt();
  await read(space, at(9), 8);
  assert.is(cnt().tlbHits! - c0.tlbHits!, 1, 'stale entry hit');
  assert.is(eptFlags(space, 10, s.f) & EPT_A, 0n, 'the stale translation is used: plane 10 not accessed');
  space.sim.sim.invlpg(BigInt(V(s.allocFrame, 9)));
  await read(space, at(9), 8);
  assert.ok((eptFlags(space, 10, s.f) & EPT_A) !== 0n, 'after invlpg the walk reaches plane 10');
  space.sim.sim.write64(pte.hpa, pte.value);
  space.sim.sim.invlpg(BigInt(V(s.allocFrame, 9)));

  // Now setGranularity: slot 5's translation is cached, then the frame becomes one page-sized unit.
  await read(space, at(5), 8);
  c0 = cnt();
  await read(space, at(5), 8);
  assert.is(cnt().tlbHits! - c0.tlbHits!, 1, 'cached');
  assert.is(eptFlags(space, 0, s.f) & (EPT_A | EPT_D), 0n, 'plane 0 untouched so far');
  space.harvest(); // regrouping is an epoch-boundary operation
  space.setGranularity(s.f, 4096);
  c0 = cnt();
  await read(space, at(5), 8);
  assert.is(cnt().tlbMisses! - c0.tlbMisses!, 1, 'the old entry is gone');
  assert.ok((eptFlags(space, 0, s.f) & EPT_A) !== 0n, 'the walk went to the leader\'s plane page (plane 0)');
  const d5 = eptFlags(space, 5, s.f) & EPT_D;
  await write(space, at(5), Uint8Array.of(1, 2, 3));
  assert.ok((eptFlags(space, 0, s.f) & EPT_D) !== 0n, 'the write dirties plane 0');
  assert.is(eptFlags(space, 5, s.f) & EPT_D, d5, 'and not plane 5');
  assert.equal(space.harvest().units, [{ frame: s.f, offset: 0, len: PAGE }]);
});

test('setGranularity is refused within an epoch (nothing changes, nothing is lost) and works at its end', async () => {
  // Units seen in an epoch are recorded, and protections granted, under the grouping of that
  // epoch; so a regroup happens between epochs, as the engine and the adaptive policy do it.
  const problems: string[] = [];
  for (const mode of MODES) {
    for (const [from, to] of [[64, 4096], [4096, 64], [256, 1024], [1024, 128]] as const) {
      const { space, alloc, slabs } = await build(mode, from);
      const objs = Array.from({ length: 64 }, () => alloc.alloc(40, 16));
      const s = slabs[0]!;
      space.harvest();
      const writes = [[0, 5, 63, 17], [9, 40, 2]] as const;
      for (const j of writes[0]) await write(space, objs[j]!.addr, Uint8Array.of(j));
      const unitBefore = space.unitOf(s.f);
      try {
        space.setGranularity(s.f, to);
        problems.push(`${mode} ${from}->${to}: accepted within an epoch`);
      } catch (e) {
        if (!(e instanceof SpaceError) || !/between epochs/.test((e as Error).message)) problems.push(`${mode} ${from}->${to}: ${(e as Error).message}`);
      }
      if (space.unitOf(s.f) !== unitBefore) problems.push(`${mode} ${from}->${to}: the refused change took effect`);
      const first = space.harvest().units;
      const lost0 = writes[0].filter((j) => !first.some((u) => u.frame === s.f && u.offset <= j * 64 && j * 64 < u.offset + u.len));
      space.setGranularity(s.f, to);
      for (const j of writes[1]) await write(space, objs[j]!.addr, Uint8Array.of(j));
      const units: DirtyUnit[] = space.harvest().units;
      const past = units.filter((u) => u.offset + u.len > PAGE).map((u) => `${u.offset}+${u.len}`);
      const lost = writes[1].filter((j) => !units.some((u) => u.frame === s.f && u.offset <= j * 64 && j * 64 < u.offset + u.len && u.len === (mode === 'spp' ? 128 : to)));
      if (past.length || lost.length || lost0.length) problems.push(`${mode} ${from}->${to}:${lost0.length || lost.length ? ` writes to slots ${[...lost0, ...lost].join(',')} in no unit of the right size;` : ''}${past.length ? ` units past the frame's end ${past.join(', ')}` : ''}`);
    }
  }
  assert.equal(problems, []);
});

test('setGranularity refuses units that are not a power of two from 64 to 4096, changing nothing', async () => {
  const { space, alloc, slabs, larges } = await build('gpt-wp', 64);
  populate(alloc, rng(5));
  const s = slabs[0]!;
  const gpt = gptSnapshot(space, slabs, larges);
  for (const bad of [0, 32, 63, 96, 192, 3000, 8192, Number.NaN]) {
    assert.throws(() => space.setGranularity(s.f, bad), (e: Error) => e instanceof RangeError && e.message.includes(String(bad)), `unit ${bad}`);
    assert.is(space.groupOf(s.f), 1, `unit ${bad}: grouping unchanged`);
    assert.equal(gptSnapshot(space, slabs, larges), gpt, `unit ${bad}: PTEs unchanged`);
  }
});

test('setGranularityRange regroups exactly the slab frames with a V page in the region', async () => {
  const { space, alloc, slabs } = await build('gpt-wp', 64);
  for (let i = 0; i < 200; i++) alloc.alloc([40, 100, 200][i % 3]!, 16);
  assert.ok(slabs.length >= 3);
  const [a, b] = [slabs[0]!, slabs[1]!];
  const lo = Math.min(V(a.allocFrame, 0), V(b.allocFrame, 0));
  const hi = Math.max(V(a.allocFrame, 0), V(b.allocFrame, 0)) + 4096; // the other frame's first V page counts
  const before = slabs.map((s) => space.unitOf(s.f));
  space.harvest();
  const r = space.setGranularityRange(lo, hi - lo, 1024);
  const inside = slabs.filter((s) => { const v0 = V(s.allocFrame, 0); return v0 < hi && v0 + s.k * 4096 > lo; });
  assert.ok(inside.length >= 2 && inside.length < slabs.length, 'the region holds some frames, not all');
  assert.is(r.frames, inside.filter((s) => s.cls < 1024).length);
  slabs.forEach((s, k) => {
    const isIn = inside.includes(s);
    assert.is(space.unitOf(s.f), isIn ? Math.max(1024, s.cls) : before[k], `frame ${s.f} (class ${s.cls}) ${isIn ? 'in' : 'outside'} the region`);
  });
  assert.throws(() => space.setGranularityRange(lo, 4096, 100), /power of two/);
});

test.run();
