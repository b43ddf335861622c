// Each monitoring mechanism against a brute-force dirty computation, and the epoch engine against
// hand-built traces and every bundled trace: the units each epoch reports are exactly the units
// (object placement x group size) holding a written byte, the fault and exit counts are what each
// mechanism costs, and checkpoints written from the engine restore, at any epoch and after
// granularity changes, to the memory of a run stopped at that epoch.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { MonitoredSpace, SPP_UNIT, type MonitorMode, type DirtyUnit, type SpaceCounters } from '../src/layout/space.ts';
import { SpreadAllocator } from '../src/alloc/spread.ts';
import { PAGE, type MapRequest, type Placement } from '../src/alloc/classes.ts';
import { readGvaWalk } from './support/space.ts';
import { runMonitor, MonitorError, HEAP_BASE, LARGE_BASE, type MonitorOptions } from '../src/monitor/engine.ts';
import { CheckpointWriter } from '../src/checkpoint/writer.ts';
import { restoreImage } from '../src/checkpoint/restore.ts';
import { TraceWriter } from '../src/trace/writer.ts';
import { EV_READ, EV_WRITE } from '../src/trace/events.ts';
import { ACC_READ, ACC_USER, ACC_WRITE, EPT_ADDR } from '../src/consts.ts';
import type { FaultRecord } from '../src/sim.ts';
import { rng, type SeededRandom } from './support/rng.ts';
import { kvmUnavailable } from '../src/backend.ts';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const tmp = mkdtempSync(join(tmpdir(), 'granule-monitor-engine-'));
test.after(() => rmSync(tmp, { recursive: true, force: true }));
let seq = 0;
const fresh = (name: string) => join(tmp, `${seq++}-${name}`);

const MODES: MonitorMode[] = ['gpt-wp', 'ept-wp', 'ept-dirty', 'pml'];
const OWN = 0x10_0000_0000;

/** Byte arrays compared with a short message: the first difference, not a dump of every byte. */
function sameBytes(got: Uint8Array, want: Uint8Array, what: string): void {
  if (got.length === want.length && Buffer.compare(got, want) === 0) return;
  const i = got.findIndex((b, k) => b !== want[k]);
  assert.unreachable(`${what}: ${got.length} bytes against ${want.length}; first difference at byte ${i < 0 ? Math.min(got.length, want.length) : i} (got ${got[i]}, want ${want[i]})`);
}
/** Slots per unit: the definition (DESIGN.md section 2), computed here rather than asked of the space. */
const groupFor = (cls: number, unit: number) => Math.max(1, Math.min(PAGE / cls, Math.floor(unit / cls)));
const unitKey = (u: DirtyUnit) => `${u.frame}:${u.offset}:${u.len}`;
const sortedKeys = (us: Iterable<DirtyUnit>) => [...us].map(unitKey).sort();
const noFault = (f: FaultRecord) => { throw new Error(`unexpected fault kind ${f.kind} at 0x${f.gva.toString(16)}`); };

/**
 * What each mechanism costs for `dirty` units: gpt-wp one #PF each, ept-wp one EPT-violation exit
 * each, EPT D bits and PML no faults; SPP an exit per sub-page and alias plane written (aliases of
 * one sub-page through different plane pages each take their own).
 */
function checkCounters(mode: MonitorMode, c: SpaceCounters, dirty: number, what: string): void {
  if (mode === 'spp') {
    assert.ok(c.faults >= dirty, `${what}: at least one SPP exit per dirty sub-page (${c.faults} for ${dirty})`);
    assert.is(c.exits.eptViolation ?? 0, c.faults, `${what}: SPP faults are EPT-violation exits`);
  } else if (mode === 'gpt-wp') {
    assert.is(c.faults, dirty, `${what}: one #PF per dirty unit`);
    assert.equal(c.exits, {}, `${what}: no VM exits`);
  } else if (mode === 'ept-wp') {
    assert.is(c.exits.eptViolation ?? 0, dirty, `${what}: one EPT-violation exit per dirty unit`);
    assert.is(c.faults, dirty, `${what}: faults are the exits`);
    assert.equal(Object.keys(c.exits).filter((k) => k !== 'eptViolation'), [], `${what}: no other exits`);
  } else {
    assert.is(c.faults, 0, `${what}: no faults`);
    if (mode === 'ept-dirty') assert.equal(c.exits, {}, `${what}: no exits`);
    else assert.equal(Object.keys(c.exits).filter((k) => k !== 'pmlFull'), [], `${what}: only PML-full exits`);
  }
}

// ---- the mechanisms against brute force --------------------------------------------------------

interface Obj { p: Placement; pool: number[] }

/**
 * A space with a spread heap and some pages of the trace's own layout; random writes and reads on
 * live objects and plain pages for several epochs, with allocation churn and (for 'mixed')
 * per-frame regrouping between epochs. Each epoch's harvest is compared with the units computed
 * from the placements and the group sizes, and all memory with a shadow copy.
 */
async function bruteForce(mode: MonitorMode, unit: number | 'mixed', seed: number, o: { epochs?: number; writes?: number; backend?: 'sim' | 'kvm' } = {}) {
  const r = rng(seed);
  const start = unit === 'mixed' ? 64 : unit;
  const space = await MonitoredSpace.create({ mode, frames: 4096, backend: o.backend });
  if (o.backend) assert.is(space.mmu.backend, o.backend, space.mmu.reason);
  try {
    await bruteForceIn(space, mode, unit, r, start, o);
  } finally {
    await space.close();
  }
}

async function bruteForceIn(space: MonitoredSpace, mode: MonitorMode, unit: number | 'mixed', r: SeededRandom, start: number, o: { epochs?: number; writes?: number }) {
  /** pool frame -> slot size and slots per unit (the model's own bookkeeping) */
  const slab = new Map<number, { cls: number; m: number }>();
  const alloc = new SpreadAllocator({
    heapBase: HEAP_BASE, largeBase: LARGE_BASE,
    onMap: (q: MapRequest) => {
      space.onMap(q, start);
      if (q.kind === 'slab') slab.set(space.poolFrame(q.frame), { cls: q.cls, m: groupFor(q.cls, start) });
    },
  });
  const shadow = new Uint8Array(4096 * PAGE);
  const plain: { gva: number; f: number }[] = [];
  for (let i = 0; i < 6; i++) {
    const gva = OWN + i * 3 * PAGE;
    space.mapOwnPage(gva);
    plain.push({ gva, f: space.framesUsed - 1 });
  }
  const live: Obj[] = [];
  const allocate = () => {
    const x = r();
    const size = x < 0.05 ? 4097 + Math.floor(r() * 9000) : Math.max(1, Math.floor(2 ** (r() * 12)));
    const p = alloc.alloc(size, 16);
    // Large objects are never freed here, so their pages stay on consecutive pool frames.
    const pages = p.cls === null ? Math.ceil(size / PAGE) : 1;
    live.push({ p, pool: Array.from({ length: pages }, (_, i) => space.poolFrame(p.frame + i)) });
  };
  for (let i = 0; i < 250; i++) allocate();
  const regroup = () => {
    for (const [f, s] of slab) {
      if (r() < 0.5) continue;
      const u = 2 ** (6 + Math.floor(r() * 7));
      space.setGranularity(f, u);
      s.m = groupFor(s.cls, u);
    }
  };
  if (unit === 'mixed') regroup();
  const first = space.harvest();
  assert.equal(first.units, [], 'nothing dirty before the first write');

  for (let epoch = 0; epoch < (o.epochs ?? 4); epoch++) {
    const what = `${mode} ${unit} epoch ${epoch}`;
    if (epoch > 0) {
      for (let i = 0; i < 15; i++) {
        const k = Math.floor(r() * live.length);
        if (live[k]!.p.cls === null) continue;
        alloc.free(live[k]!.p.addr);
        live.splice(k, 1);
      }
      for (let i = 0; i < 20; i++) allocate();
    }
    const expected = new Map<string, DirtyUnit>();
    const dirty = (frame: number, offset: number, len: number) => { const u = { frame, offset, len }; expected.set(unitKey(u), u); };
    const batch = space.mmu.batch;
    const push = async (gva: number, acc: number, n: number, v: Uint8Array | null) => {
      const ok = v ? batch.pushAddrValue(gva, acc, n, v, 0) : batch.pushAddr(gva, acc, n);
      if (!ok) { await space.runBatch(noFault); if (v) batch.pushAddrValue(gva, acc, n, v, 0); else batch.pushAddr(gva, acc, n); }
    };
    for (let w = 0; w < (o.writes ?? 300); w++) {
      const isRead = r() < 0.25;
      let gva: number, n: number;
      const pieces: { f: number; off: number; len: number; unit: [number, number] }[] = [];
      if (r() < 0.12) {
        const pg = plain[Math.floor(r() * plain.length)]!;
        const off = Math.floor(r() * PAGE);
        n = 1 + Math.floor(r() * Math.min(64, PAGE - off));
        gva = pg.gva + off;
        pieces.push({ f: pg.f, off, len: n, unit: [0, PAGE] });
      } else {
        const { p, pool } = live[Math.floor(r() * live.length)]!;
        const off = Math.floor(r() * Math.max(1, p.size));
        n = 1 + Math.floor(r() * Math.min(64, Math.max(1, p.size - off)));
        gva = p.addr + off;
        if (p.cls !== null && mode === 'spp') {
          pieces.push({ f: pool[0]!, off: p.slot * p.cls + off, len: n, unit: [0, 0] });
        } else if (p.cls !== null) {
          const s = slab.get(pool[0]!)!;
          const lead = p.slot - (p.slot % s.m);
          pieces.push({ f: pool[0]!, off: p.slot * p.cls + off, len: n, unit: [lead * p.cls, s.m * p.cls] });
        } else {
          for (let b = off; b < off + n;) {
            const pi = Math.floor(b / PAGE);
            const end = Math.min(off + n, (pi + 1) * PAGE);
            pieces.push({ f: pool[pi]!, off: b % PAGE, len: end - b, unit: [0, PAGE] });
            b = end;
          }
        }
      }
      if (isRead) { await push(gva, ACC_READ | ACC_USER, n, null); continue; }
      const v = r.bytes(n);
      await push(gva, ACC_WRITE | ACC_USER, n, v);
      let k = 0;
      for (const q of pieces) {
        shadow.set(v.subarray(k, k + q.len), q.f * PAGE + q.off);
        k += q.len;
        // SPP: the 128-byte sub-pages of the frame, whatever the object or the grouping.
        if (mode === 'spp') for (let sp = Math.floor(q.off / SPP_UNIT); sp <= Math.floor((q.off + q.len - 1) / SPP_UNIT); sp++) dirty(q.f, sp * SPP_UNIT, SPP_UNIT);
        else dirty(q.f, q.unit[0], q.unit[1]);
      }
    }
    await space.runBatch(noFault);
    const h = space.harvest();
    assert.is(h.units.length, new Set(h.units.map(unitKey)).size, `${what}: no unit reported twice`);
    assert.equal(sortedKeys(h.units), sortedKeys(expected.values()), `${what}: dirty units`);
    checkCounters(mode, h.counters, expected.size, what);
    for (const u of h.units) sameBytes(space.readUnit(u), shadow.subarray(u.frame * PAGE + u.offset, u.frame * PAGE + u.offset + u.len), `${what}: bytes of unit ${unitKey(u)}`);
    for (let f = 0; f < space.framesUsed; f++) sameBytes(space.frameBytes(f), shadow.subarray(f * PAGE, (f + 1) * PAGE), `${what}: frame ${f}`);
    if (unit === 'mixed') regroup();
  }
}

for (const mode of MODES) {
  test(`${mode}: harvested units equal the brute-force units at 64, 256, 1024, 4096 and mixed granularities`, async () => {
    let seed = MODES.indexOf(mode) * 100;
    for (const g of [64, 256, 1024, 4096, 'mixed'] as const) await bruteForce(mode, g, ++seed);
  });
}

// The same brute force on the KVM backend: its in-guest #PF handler (group-aware through
// PTE_SW_GROUP) and its per-plane dirty logs must find exactly the units the model computes.
const noKvm = kvmUnavailable();
for (const mode of ['gpt-wp', 'ept-dirty'] as const) {
  test(`kvm backend, ${mode}: harvested units equal the brute-force units at 64, 1024 and mixed granularities`, async () => {
    if (noKvm) { console.log(`  skipped on this machine: ${noKvm.split('\n')[0]}`); return; }
    let seed = 500 + MODES.indexOf(mode) * 10;
    for (const g of [64, 1024, 'mixed'] as const) await bruteForce(mode, g, ++seed, { backend: 'kvm', epochs: 3 });
  });
}

test('spp: harvested units are the 128-byte sub-pages written, whatever the grouping', async () => {
  let seed = 900;
  for (const g of [64, 128, 'mixed'] as const) await bruteForce('spp', g, ++seed);
});

test('an epoch dirtying more than 512 units: every unit reported in every mode; PML takes PML-full exits', async () => {
  for (const mode of MODES) {
    const space = await MonitoredSpace.create({ mode, frames: 1024 });
    const alloc = new SpreadAllocator({ heapBase: HEAP_BASE, largeBase: LARGE_BASE, onMap: (q) => space.onMap(q, 64) });
    const objs = Array.from({ length: 1300 }, () => alloc.alloc(48, 16));
    space.harvest();
    const written = objs.filter((_, i) => i % 2 === 0);
    for (const p of written) {
      if (!space.mmu.batch.pushAddrValue(p.addr, ACC_WRITE | ACC_USER, 4, Uint8Array.of(1, 2, 3, 4), 0)) throw new Error('batch full');
    }
    await space.runBatch(noFault);
    const h = space.harvest();
    const want = written.map((p) => ({ frame: space.poolFrame(p.frame), offset: p.slot * 64, len: 64 }));
    assert.equal(sortedKeys(h.units), sortedKeys(want), mode);
    assert.ok(want.length > 512);
    checkCounters(mode, h.counters, want.length, mode);
    if (mode === 'pml') assert.ok((h.counters.exits.pmlFull ?? 0) >= 1, `PML-full exits: ${JSON.stringify(h.counters.exits)}`);
    // The next epoch starts clean and the mechanism is armed again.
    space.mmu.batch.pushAddrValue(written[3]!.addr, ACC_WRITE | ACC_USER, 1, Uint8Array.of(9), 0);
    await space.runBatch(noFault);
    const h2 = space.harvest();
    assert.equal(sortedKeys(h2.units), sortedKeys([want[3]!]), `${mode}: re-armed`);
    checkCounters(mode, h2.counters, 1, `${mode} after`);
  }
});

// ---- the engine on hand-built traces -----------------------------------------------------------

type Ev =
  | { t: 'alloc'; addr: number; size: number }
  | { t: 'free'; addr: number }
  | { t: 'realloc'; addr: number; to: number; size: number }
  | { t: 'w' | 'r'; addr: number; size: number; value?: Uint8Array };

function writeTrace(events: Ev[]): string {
  const file = fresh('hand.grt');
  const w = TraceWriter.create(file, { source: 'hand', pageSize: PAGE });
  for (const e of events) {
    if (e.t === 'alloc') w.alloc(e.addr, e.size, 16);
    else if (e.t === 'free') w.free(e.addr);
    else if (e.t === 'realloc') w.realloc(e.addr, e.to, e.size);
    else w.access(e.t === 'w' ? EV_WRITE : EV_READ, e.addr, e.size, e.value);
  }
  w.close();
  return file;
}

const T_HEAP = 0x5555_0000_0000;
const T_STACK = 0x7ffd_0000_0000;

test('accesses that straddle several objects fill the batch exactly: each is counted in pieces before it is queued', async () => {
  // Five adjacent 16-byte objects: a 64-byte read over them is four pieces on four V pages, more
  // than an estimate from the size alone; enough of them reach the batch's end mid-access.
  const ev: Ev[] = Array.from({ length: 5 }, (_, i) => ({ t: 'alloc' as const, addr: T_HEAP + 16 * i, size: 16 }));
  ev.push({ t: 'w', addr: T_HEAP, size: 80, value: new Uint8Array(80).fill(7) });
  for (let i = 0; i < 40_000; i++) ev.push({ t: 'r', addr: T_HEAP, size: 64 });
  ev.push({ t: 'w', addr: T_HEAP + 8, size: 64, value: new Uint8Array(64).fill(9) });
  const r = await runMonitor(writeTrace(ev), { mode: 'gpt-wp', layout: 'spread', granularity: 64, epochWrites: 1000 });
  try {
    assert.equal(r.epochs.map((e) => [e.writes, e.dirtyUnits]), [[2, 5]], 'one epoch: both writes, the five objects\' slots');
  } finally {
    await r.space.close();
  }
});

/** A random trace: objects of all sizes (large ones too), writes with and without values, reads, frees, moving and staying reallocs, stack traffic. */
function randomTrace(seed: number, n: number): Ev[] {
  const r = rng(seed);
  const ev: Ev[] = [];
  // room: trace bytes reserved at addr, so that a realloc in place never reaches the next object
  const live: { addr: number; size: number; room: number }[] = [];
  let next = T_HEAP;
  const place = (size: number) => { const a = next; const room = Math.ceil(size / 16) * 16 + 16; next += room + 16; return { a, room }; };
  const newObj = () => {
    const size = r() < 0.04 ? 4097 + Math.floor(r() * 8000) : 1 + Math.floor(2 ** (r() * 12));
    const { a, room } = place(size);
    ev.push({ t: 'alloc', addr: a, size });
    live.push({ addr: a, size, room });
  };
  for (let i = 0; i < 60; i++) newObj();
  for (let i = 0; i < n; i++) {
    const x = r();
    if (x < 0.03) newObj();
    else if (x < 0.045 && live.length > 10) {
      const o = live.splice(Math.floor(r() * live.length), 1)[0]!;
      ev.push({ t: 'free', addr: o.addr });
    } else if (x < 0.06) {
      const k = Math.floor(r() * live.length);
      const o = live[k]!;
      const size = r() < 0.5 ? Math.max(1, o.size + Math.floor((r() - 0.3) * 40)) : 1 + Math.floor(2 ** (r() * 13));
      if (size <= o.room && r() < 0.4) {
        ev.push({ t: 'realloc', addr: o.addr, to: o.addr, size });
        live[k] = { addr: o.addr, size, room: o.room };
      } else {
        const { a, room } = place(size);
        ev.push({ t: 'realloc', addr: o.addr, to: a, size });
        live[k] = { addr: a, size, room };
      }
    } else if (x < 0.12) {
      const off = Math.floor(r() * 8000);
      ev.push({ t: r() < 0.6 ? 'w' : 'r', addr: T_STACK + off, size: 8, value: r() < 0.5 ? r.bytes(8) : undefined });
    } else {
      const o = live[Math.floor(r() * live.length)]!;
      const off = Math.floor(r() * o.size);
      const size = 1 + Math.floor(r() * Math.min(64, o.size - off));
      const isWrite = r() < 0.6;
      ev.push({ t: isWrite ? 'w' : 'r', addr: o.addr + off, size, value: isWrite && r() < 0.5 ? r.bytes(size) : undefined });
    }
  }
  return ev;
}

/**
 * The expected dirty units per epoch of a spread run at a fixed granularity, computed from the
 * placements of an allocator that sees the same calls: slab units by (allocator frame, leader),
 * pages (large objects, the trace's own) by GVA page.
 */
function expectedEpochs(ev: Ev[], unit: number, epochWrites: number): Map<string, number>[] {
  const model = new SpreadAllocator({ heapBase: HEAP_BASE, largeBase: LARGE_BASE, onMap: () => {} });
  const at = new Map<number, Placement>();
  const epochs: Map<string, number>[] = [new Map()];
  let writes = 0;
  const touch = (layoutAddr: number, n: number, p: Placement | null) => {
    const cur = epochs[epochs.length - 1]!;
    // A class-4096 slab has one V page: it is mapped as an ordinary page (one unit, the page).
    if (p && p.cls !== null && p.cls < PAGE) {
      const m = groupFor(p.cls, unit);
      cur.set(`s:${p.frame}:${(p.slot - (p.slot % m)) * p.cls}:${m * p.cls}`, m * p.cls);
    } else {
      for (let pg = Math.floor(layoutAddr / PAGE); pg <= Math.floor((layoutAddr + n - 1) / PAGE); pg++) cur.set(`g:${pg * PAGE}`, PAGE);
    }
  };
  const owner = (addr: number) => {
    for (const [start, p] of at) if (addr >= start && addr < start + p.size) return { start, p };
    return null;
  };
  for (const e of ev) {
    if (e.t === 'alloc') at.set(e.addr, model.alloc(e.size, 16));
    else if (e.t === 'free') { model.free(at.get(e.addr)!.addr); at.delete(e.addr); }
    else if (e.t === 'realloc') {
      const from = at.get(e.addr)!;
      const to = model.realloc(from.addr, e.size);
      at.delete(e.addr);
      at.set(e.to, to);
      if (to.addr !== from.addr) for (let off = 0; off < Math.min(from.size, to.size); off += 64) touch(to.addr + off, Math.min(64, Math.min(from.size, to.size) - off), to);
    } else if (e.t === 'w') {
      const o = owner(e.addr);
      if (o) touch(o.p.addr + (e.addr - o.start), e.size, o.p); else touch(e.addr, e.size, null);
      if (++writes === epochWrites) { epochs.push(new Map()); writes = 0; }
    }
  }
  if (epochs.length > 1 && epochs[epochs.length - 1]!.size === 0 && writes === 0) epochs.pop();
  return epochs;
}

test('engine: each epoch\'s dirty units and checkpoint bytes equal the units computed from the placements', async () => {
  const ev = randomTrace(21, 3000);
  const file = writeTrace(ev);
  const epochWrites = 97;
  for (const [mode, unit] of [['gpt-wp', 64], ['ept-wp', 256], ['ept-dirty', 1024], ['pml', 4096], ['gpt-wp', 128]] as const) {
    const want = expectedEpochs(ev, unit, epochWrites);
    const got: string[][] = [];
    const r = await runMonitor(file, {
      mode, layout: 'spread', granularity: unit, epochWrites, frames: 2048,
      onEpoch: (_e, units, space) => {
        // Back from pool frames to the model's names: slab frames by allocator frame, pages by their GVA.
        const allocOf = new Map<number, number>();
        for (let a = 0; a < 2048 && allocOf.size < space.framesUsed; a++) { const f = space.poolFrame(a); if (f === undefined) break; allocOf.set(f, a); }
        const gvaOfFrame = new Map<number, number>();
        for (const k of want[got.length]?.keys() ?? []) {
          if (!k.startsWith('g:')) continue;
          const gva = Number(k.slice(2));
          const w = space.sim.sim.inspect(BigInt(gva), ACC_READ);
          if (w.fault) continue;
          for (let f = 0; f < space.framesUsed; f++) if ((space.sim.ept.leafEntry(BigInt(f * PAGE))!.value & EPT_ADDR) === w.hpa) gvaOfFrame.set(f, gva);
        }
        got.push(units.map((u) => space.isSlab(u.frame) ? `s:${allocOf.get(u.frame)}:${u.offset}:${u.len}` : `g:${gvaOfFrame.get(u.frame) ?? `frame ${u.frame}`}`).sort());
      },
    });
    const what = `${mode} ${unit}`;
    assert.is(r.epochs.length, want.length, `${what}: epochs`);
    r.epochs.forEach((e, i) => {
      assert.equal(got[i], [...want[i]!.keys()].sort(), `${what}: epoch ${i} units`);
      assert.is(e.dirtyUnits, want[i]!.size, `${what}: epoch ${i} dirtyUnits`);
      assert.is(e.checkpointBytes, [...want[i]!.values()].reduce((s, v) => s + v, 0), `${what}: epoch ${i} checkpointBytes`);
      assert.ok(e.checkpointBytes >= e.idealBytes, `${what}: epoch ${i}: units cover at least the bytes written`);
      if (mode === 'gpt-wp') assert.is(e.faults, e.dirtyUnits, `${what}: epoch ${i} faults`);
      if (mode === 'ept-wp') assert.is(e.exits.eptViolation ?? 0, e.dirtyUnits, `${what}: epoch ${i} exits`);
      if (mode === 'ept-dirty') assert.is(e.faults, 0);
    });
    assert.is(r.epochs.slice(0, -1).every((e) => e.writes === epochWrites), true);
  }
});

const bytes = (...b: number[]) => Uint8Array.from(b);
const fill = (n: number, seed: number) => rng(seed).bytes(n);

test('engine: realloc moves the object\'s bytes to its new place, and a staying realloc keeps them where they are', async () => {
  const A = T_HEAP, B = T_HEAP + 0x1000, C = T_HEAP + 0x2000, D = T_HEAP + 0x8000, E = T_HEAP + 0x20000;
  const a0 = fill(40, 1), a1 = fill(8, 2);
  const ev: Ev[] = [
    { t: 'alloc', addr: A, size: 40 }, { t: 'alloc', addr: E, size: 100 },
    { t: 'w', addr: A, size: 40, value: a0 },
    { t: 'realloc', addr: A, to: A, size: 60 },          // same class: stays
    { t: 'w', addr: A + 40, size: 8, value: a1 },
    { t: 'realloc', addr: A, to: B, size: 300 },         // 64 -> 512: moves
    { t: 'w', addr: B + 200, size: 4, value: bytes(1, 2, 3, 4) },
    { t: 'realloc', addr: B, to: C, size: 5000 },        // to a large object
    { t: 'w', addr: C + 4500, size: 2, value: bytes(7, 7) },
    { t: 'realloc', addr: C, to: D, size: 50 },          // back to class 64, keeping 50 bytes
    { t: 'w', addr: E, size: 4, value: bytes(5, 5, 5, 5) },
    { t: 'r', addr: D, size: 8 },
  ];
  const file = writeTrace(ev);
  const model = new SpreadAllocator({ heapBase: HEAP_BASE, largeBase: LARGE_BASE, onMap: () => {} });
  model.alloc(40, 16); model.alloc(100, 16);
  const pA = model.realloc(model.realloc(HEAP_BASE, 60).addr, 300);
  const pC = model.realloc(pA.addr, 5000);
  const pD = model.realloc(pC.addr, 50);
  const want = new Uint8Array(50);
  want.set(a0, 0);
  want.set(a1, 40);
  for (const mode of MODES) {
    for (const epochWrites of [1, 2, 1000]) {
      const r = await runMonitor(file, { mode, layout: 'spread', granularity: 64, epochWrites });
      sameBytes(readGvaWalk(r.space, pD.addr, 50), want, `${mode}, epochs of ${epochWrites}: the object's bytes after three moves`);
      sameBytes(readGvaWalk(r.space, pC.addr + 4500, 2), bytes(7, 7), `${mode}: the large copy got the write`);
      sameBytes(readGvaWalk(r.space, pA.addr + 200, 4), bytes(1, 2, 3, 4), `${mode}: the write after the first move`);
    }
  }
});

test('engine: a realloc after the last write of the trace is still copied, and checkpointed', async () => {
  const A = T_HEAP, B = T_HEAP + 0x1000;
  const a0 = fill(48, 5);
  const file = writeTrace([
    { t: 'alloc', addr: A, size: 48 },
    { t: 'w', addr: A, size: 48, value: a0 },
    { t: 'realloc', addr: A, to: B, size: 300 },
  ]);
  const model = new SpreadAllocator({ heapBase: HEAP_BASE, largeBase: LARGE_BASE, onMap: () => {} });
  model.alloc(48, 16);
  const moved = model.realloc(HEAP_BASE, 300);
  for (const epochWrites of [1, 1000]) {
    let copied = 0;
    const r = await runMonitor(file, {
      mode: 'ept-dirty', layout: 'spread', granularity: 64, epochWrites,
      onEpoch: (_e, units, space) => { for (const u of units) if (space.isSlab(u.frame) && u.frame === space.poolFrame(moved.frame)) copied += u.len; },
    });
    sameBytes(readGvaWalk(r.space, moved.addr, 48), a0, `epochs of ${epochWrites}: the moved object holds its bytes at the end of the run`);
    assert.ok(copied > 0, `epochs of ${epochWrites}: the copy is in a checkpointed epoch`);
  }
});

test('engine: a trace without allocation events cannot be placed in the spread or packed layout; the trace layout needs 4096', async () => {
  const file = writeTrace([
    { t: 'w', addr: T_STACK, size: 8, value: fill(8, 1) },
    { t: 'r', addr: T_STACK + 64, size: 8 },
    { t: 'w', addr: T_STACK + 5000, size: 4 },
  ]);
  for (const layout of ['spread', 'packed'] as const) {
    try {
      await runMonitor(file, { mode: 'gpt-wp', layout, granularity: 64, epochWrites: 1 });
      assert.unreachable(`${layout}: should refuse`);
    } catch (e) {
      assert.instance(e, MonitorError, String(e));
      assert.match((e as Error).message, file);
      assert.match((e as Error).message, /no allocation events/);
      assert.match((e as Error).message, /--layout trace/);
    }
  }
  try {
    await runMonitor(file, { mode: 'gpt-wp', layout: 'trace', granularity: 64, epochWrites: 1 });
    assert.unreachable('trace layout at 64 should refuse');
  } catch (e) {
    assert.instance(e, MonitorError, String(e));
    assert.match((e as Error).message, /--granularity 4096/);
  }
  const r = await runMonitor(file, { mode: 'gpt-wp', layout: 'trace', granularity: 4096, epochWrites: 1 });
  assert.equal(r.epochs.map((e) => e.checkpointBytes), [PAGE, PAGE], 'the trace\'s own pages, page by page');
  sameBytes(readGvaWalk(r.space, T_STACK, 8), fill(8, 1), 'the trace\'s own page holds the write');
});

test('engine: unsupported granularities are refused by name before anything runs', async () => {
  const file = writeTrace([{ t: 'alloc', addr: T_HEAP, size: 40 }, { t: 'w', addr: T_HEAP, size: 4 }]);
  for (const g of [0, 32, 96, 192, 8192, 1.5]) {
    try {
      await runMonitor(file, { mode: 'gpt-wp', layout: 'spread', granularity: g, epochWrites: 10 });
      assert.unreachable(`granularity ${g}`);
    } catch (e) {
      assert.instance(e, MonitorError, `granularity ${g}: ${e}`);
      assert.match((e as Error).message, String(g));
    }
  }
});

test('engine: the packed layout\'s one-cell classes (2560..3584 B) are ordinary pages, monitored in every mode', async () => {
  const sizes = [3000, 2600, 3500, 100, 5000];
  const ev: Ev[] = [];
  sizes.forEach((size, i) => ev.push({ t: 'alloc', addr: T_HEAP + i * 0x4000, size }));
  sizes.forEach((_, i) => ev.push({ t: 'w', addr: T_HEAP + i * 0x4000 + 1, size: 1, value: bytes(i + 1) }));
  const file = writeTrace(ev);
  const problems: string[] = [];
  for (const mode of [...MODES, 'spp'] as MonitorMode[]) {
    try {
      const r = await runMonitor(file, { mode, layout: 'packed', granularity: mode === 'spp' ? SPP_UNIT : PAGE, epochWrites: 100 });
      // Every object starts on a page of its own: five pages written, one byte each.
      const want = mode === 'spp' ? sizes.length * SPP_UNIT : sizes.length * PAGE;
      if (r.epochs[0]!.checkpointBytes !== want) problems.push(`${mode}: ${r.epochs[0]!.checkpointBytes} checkpoint bytes, want ${want}`);
    } catch (e) {
      problems.push(`${mode}: ${(e as Error).message}`);
    }
  }
  assert.equal(problems, []);
});

// ---- checkpoint and restore on every bundled trace ---------------------------------------------

interface ManifestEntry { name: string; file: string; recorder: string }
const bundled = (JSON.parse(readFileSync(join(root, 'traces/MANIFEST.json'), 'utf8')) as ManifestEntry[]);

/** Runs with checkpoints written per epoch (base: every frame in use; then each epoch's units). */
async function checkpointRun(trace: string, o: Omit<MonitorOptions, 'onEpoch'>) {
  const dir = fresh('ckpt');
  const w = CheckpointWriter.create(dir, { trace: { path: trace, bytes: 0, sha256: '0'.repeat(64) }, mode: o.mode, layout: o.layout, granularity: o.granularity, epochWrites: o.epochWrites }, { sync: false });
  const r = await runMonitor(trace, {
    ...o,
    onEpoch: (e, units, space) => {
      if (e.index === 0) w.writeBase(Array.from({ length: space.framesUsed }, (_, f) => ({ frame: f, bytes: space.frameBytes(f) })));
      else w.writeIncrement(e.index, units.map((u) => ({ frame: u.frame, offset: u.offset, bytes: space.readUnit(u) })));
    },
  });
  w.close();
  return { dir, r };
}

function compareImage(dir: string, epoch: number, space: MonitoredSpace, what: string): void {
  const img = restoreImage(dir, epoch);
  assert.is(img.epoch, epoch);
  const zero = new Uint8Array(PAGE);
  let end = space.framesUsed;
  for (const f of img.frames.keys()) end = Math.max(end, f + 1);
  for (let f = 0; f < end; f++) {
    const want = f < space.framesUsed ? space.frameBytes(f) : zero;
    const got = img.frames.get(f) ?? zero;
    if (Buffer.compare(want, got) !== 0) {
      const i = want.findIndex((b, k) => b !== got[k]);
      assert.unreachable(`${what}: epoch ${epoch}, frame ${f} differs first at byte ${i} (restored ${got[i]}, run ${want[i]})`);
    }
  }
}

test('checkpoint/restore round trips on every bundled trace, at fixed and adaptive granularity (and SPP on the packed layout), at a middle and the last epoch', async () => {
  const t0 = performance.now();
  let regrouped = 0;
  let traces = 0;
  const failures: string[] = [];
  const granularities = [64, 256, 1024, 4096];
  for (const [i, t] of bundled.entries()) {
    if (t.recorder === 'lackey-log' || !t.file.endsWith('.grt')) {
      console.log(`  (round trip skips ${t.name}: a raw ${t.recorder} log has no allocation events to place objects by; its .grt traces are covered)`);
      continue;
    }
    traces++;
    const trace = join(root, t.file);
    const fixed: Omit<MonitorOptions, 'onEpoch'> = i % 5 === 4
      ? { mode: 'spp', layout: 'packed', granularity: SPP_UNIT, epochWrites: 20_000 }
      : { mode: MODES[i % 4]!, layout: 'spread', granularity: granularities[(i + 1) % 4]!, epochWrites: 20_000 };
    const configs: Omit<MonitorOptions, 'onEpoch'>[] = [
      fixed,
      { mode: MODES[(i + 2) % 4]!, layout: 'spread', granularity: 'adaptive', epochWrites: 20_000 },
    ];
    for (const o of configs) {
      const what = `${t.name} ${o.mode} ${o.layout} ${o.granularity}`;
      // One failing configuration should not hide the others: each is tried, failures listed at the end.
      try {
        const { dir, r } = await checkpointRun(trace, o);
        if (o.granularity === 'adaptive') regrouped += r.epochs.reduce((s, e) => s + e.regrouped, 0);
        const last = r.epochs.length - 1;
        assert.ok(last >= 2, `${what}: several epochs (${r.epochs.length})`);
        for (const epoch of [Math.floor(last / 2), last]) {
          const stopped = await runMonitor(trace, { ...o, stopAfter: epoch });
          assert.is(stopped.epochs.length, epoch + 1, `${what}: stopAfter ${epoch}`);
          assert.equal(stopped.epochs.map((e) => e.checkpointBytes), r.epochs.slice(0, epoch + 1).map((e) => e.checkpointBytes), `${what}: the stopped run is the same run`);
          compareImage(dir, epoch, stopped.space, what);
        }
        rmSync(dir, { recursive: true });
      } catch (e) {
        failures.push(`${what}: ${(e as Error).message}`);
      }
    }
  }
  assert.equal(failures, [], 'every configuration round-trips');
  assert.ok(traces >= 8, `bundled .grt traces: ${traces}`);
  assert.ok(regrouped > 0, 'the adaptive runs changed some frame\'s granularity');
  console.log(`  (round trips on ${traces} traces in ${((performance.now() - t0) / 1000).toFixed(1)} s; adaptive rewrote ${regrouped} PTEs)`);
});

test.run();
