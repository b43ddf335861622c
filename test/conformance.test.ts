// Conformance of the two backends (issue 5, "the proof"): one scenario runner drives any Mmu through
// the same steps (frames on several alias planes, V pages onto them, epochs of protect -> batch ->
// run -> dirty() -> per-plane dirty logs, a remap between epochs, a reported fault), from a seeded
// generator and from the start of a bundled trace. The simulator and KVM must give identical dirty
// pages per epoch (in fault order), identical #PF counts and fault records, identical per-plane
// dirty GPA sets and identical frame bytes; both must also match a plain host-side model, so the
// comparison cannot pass by both being wrong the same way.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { join } from 'node:path';
import { createMmu, kvmUnavailable } from '../src/backend.ts';
import { kvmPlaneGpa } from '../src/hw/kvm-mmu.ts';
import { TraceReader } from '../src/trace/reader.ts';
import { packageRoot } from '../src/record/toolchain.ts';
import { ACC_READ, ACC_WRITE, ACC_USER } from '../src/consts.ts';
import type { Mmu, FaultRecord } from '../src/mmu.ts';
import { rng } from './support/rng.ts';

const why = kvmUnavailable();
if (why) console.log(`conformance.test.ts: the KVM side is not run:\n${why}`);

const PAGE = 4096;
const HEAP_BASE = 0x5500_0000_0000;
const UNMAPPED = 0x3300_0000_0000;

/** One access of a scenario: offset into the V region (all V pages back to back), size, store bytes. */
interface Access { at: number; size: number; value?: Uint8Array }

interface Scenario {
  frames: number;
  planes: number;
  /** accesses per epoch */
  epochs: Access[][];
  /** before this epoch, V pages with (page % 5 == 0) move to the next plane (same frame); it must
   *  follow an epoch without a harvest, or KVM's re-armed write tracking would hide a stale translation */
  remapBefore: number;
  /** in this epoch the run goes without the handler first, so the first protected write is a reported fault */
  strictEpoch: number;
  /** GVA of the first V page (default HEAP_BASE) */
  base?: number;
}

/** What a backend did: everything the backends must agree on. */
interface Observed {
  dirty: number[][];
  pf: number[];
  ept: number[][][];
  strictFault: FaultRecord & { next: number };
  unmappedFault: FaultRecord & { next: number };
  frames: Uint8Array;
}

const vpages = (s: Scenario) => s.frames * s.planes;
/** Whether the per-plane dirty logs are harvested after epoch e: after odd epochs and the last. */
const harvests = (s: Scenario, e: number) => e % 2 === 1 || e === s.epochs.length - 1;
/** V page v shows frame v % frames through plane floor(v / frames), or the next plane once remapped. */
const planeOf = (s: Scenario, v: number, remapped: boolean) => (Math.floor(v / s.frames) + (remapped && v % 5 === 0 ? 1 : 0)) % s.planes;

async function runScenario(mmu: Mmu, s: Scenario): Promise<Observed> {
  const F = s.frames, V = vpages(s), HEAP = s.base ?? HEAP_BASE;
  for (let p = 0; p < s.planes; p++) mmu.mapPlane(kvmPlaneGpa(p), 0, F);
  for (let v = 0; v < V; v++) mmu.mapGva(BigInt(HEAP + v * PAGE), kvmPlaneGpa(planeOf(s, v, false)) + BigInt((v % F) * PAGE), 1);
  const obs: Observed = { dirty: [], pf: [], ept: [], strictFault: null!, unmappedFault: null!, frames: new Uint8Array(F * PAGE) };
  const W = ACC_WRITE | ACC_USER, R = ACC_READ | ACC_USER;
  const pick = (f: FaultRecord | null, next: number) => ({ ...f!, next });
  for (let e = 0; e < s.epochs.length; e++) {
    if (e === s.remapBefore) {
      for (let v = 0; v < V; v += 5) mmu.remapGva(BigInt(HEAP + v * PAGE), kvmPlaneGpa(planeOf(s, v, true)) + BigInt((v % F) * PAGE), 1);
    }
    if (e === s.remapBefore) {
      // The moved pages stay unprotected in this epoch: only the sync of the remapped entries
      // (not a protection change of the same entries) can then send their stores to the new plane.
      for (let v = 0; v < V; v++) if (v % 5 !== 0) mmu.protectGva(BigInt(HEAP + v * PAGE), 1, true);
    } else {
      mmu.protectGva(BigInt(HEAP), V, true);
    }
    mmu.batch.reset();
    for (const a of s.epochs[e]) {
      assert.ok(mmu.batch.push(BigInt(HEAP + a.at), a.value ? W : R, a.size, a.value), 'batch full');
    }
    const last = e === s.epochs.length - 1;
    if (last) mmu.batch.push(BigInt(UNMAPPED + 0x48), W, 8, new Uint8Array(8).fill(7));
    mmu.resetCounters();
    let r = e === s.strictEpoch ? await mmu.run(0) : await mmu.run(0, { guestWriteProtect: true });
    if (e === s.strictEpoch) {
      assert.is(r.status, 'fault', 'strict epoch: a protected write is reported');
      obs.strictFault = pick(r.fault, r.next);
      r = await mmu.run(r.next, { guestWriteProtect: true });
    }
    if (last) {
      assert.is(r.status, 'fault', 'the write to an unmapped GVA is a fault');
      obs.unmappedFault = pick(r.fault, r.next);
    } else {
      assert.is(r.status, 'done', `epoch ${e}`);
    }
    obs.dirty.push(mmu.dirty().map((d) => Number(d.addr)));
    obs.pf.push(mmu.counters().pf);
    // Harvesting re-arms KVM's own write tracking, which would also catch stale translations; so
    // some epochs skip it, and only the guest page-table sync makes their re-protection take.
    obs.ept.push(harvests(s, e) ? Array.from({ length: s.planes }, (_, p) => mmu.harvestEptDirty(kvmPlaneGpa(p), F).map((g) => Number(g - kvmPlaneGpa(0)))) : []);
  }
  for (let f = 0; f < F; f++) mmu.readFrameInto(f, 0, PAGE, obs.frames, f * PAGE);
  return obs;
}

/**
 * The same scenario on a plain byte array: the V pages each epoch's stores unprotect, in order (the
 * in-guest monitor's fault order), the plane pages written between harvests, and the bytes.
 */
function model(s: Scenario): { dirty: number[][]; ept: number[][][]; frames: Uint8Array } {
  const F = s.frames, V = vpages(s), HEAP = s.base ?? HEAP_BASE;
  const frames = new Uint8Array(F * PAGE);
  const prot = new Uint8Array(V);
  const dirty: number[][] = [], ept: number[][][] = [];
  let planePages = Array.from({ length: s.planes }, () => new Set<number>());
  s.epochs.forEach((acc, e) => {
    for (let v = 0; v < V; v++) if (e !== s.remapBefore || v % 5 !== 0) prot[v] = 1;
    const order: number[] = [];
    for (const a of acc) {
      if (!a.value) continue;
      for (let k = 0; k < a.size; k++) {
        const v = Math.floor((a.at + k) / PAGE);
        if (prot[v]) { prot[v] = 0; order.push(HEAP + v * PAGE); }
        planePages[planeOf(s, v, e >= s.remapBefore)].add((v % F) * PAGE);
        frames[(v % F) * PAGE + ((a.at + k) % PAGE)] = a.value[k];
      }
    }
    dirty.push(order);
    if (!harvests(s, e)) { ept.push([]); return; }
    ept.push(planePages.map((set, p) => [...set].sort((x, y) => x - y).map((o) => p * 2 ** 30 + o)));
    planePages = Array.from({ length: s.planes }, () => new Set<number>());
  });
  return { dirty, ept, frames };
}

/** Random accesses of 1..64 bytes anywhere in the V region (page-straddling ones included), 45% stores with values. */
function seeded(seed: number, frames: number, planes: number, epochs: number, perEpoch: number): Scenario {
  const next = rng(seed);
  const span = frames * planes * PAGE;
  const sizes = [1, 2, 4, 8, 8, 8, 16, 3, 12, 24, 64, 33];
  // A few hot pages per epoch, so most stores hit pages already unprotected.
  const eps = Array.from({ length: epochs }, () => {
    const hot = Array.from({ length: 6 }, () => Math.floor(next() * frames * planes));
    return Array.from({ length: perEpoch }, (): Access => {
      const size = sizes[Math.floor(next() * sizes.length)];
      const page = next() < 0.7 ? hot[Math.floor(next() * hot.length)] : Math.floor(next() * frames * planes);
      const at = Math.min(page * PAGE + Math.floor(next() * PAGE), span - size);
      return next() < 0.45 ? { at, size, value: Uint8Array.from({ length: size }, () => Math.floor(next() * 256)) } : { at, size };
    });
  });
  return { frames, planes, epochs: eps, remapBefore: 3, strictEpoch: 1 };
}

/** The first `n` accesses of a bundled trace, its pages assigned to V pages in order of first use. */
function fromTrace(file: string, n: number, frames: number, planes: number, epochs: number): Scenario {
  const V = frames * planes, span = V * PAGE;
  const pageOf = new Map<number, number>();
  const out: Access[] = [];
  const reader = TraceReader.open(join(packageRoot(), 'traces', file));
  try {
    for (const ev of reader.events()) {
      if (out.length >= n) break;
      if (ev.type !== 'read' && ev.type !== 'write' && ev.type !== 'modify') continue;
      const tp = Math.floor(ev.addr / PAGE);
      let v = pageOf.get(tp);
      if (v === undefined) pageOf.set(tp, (v = pageOf.size % V));
      const size = Math.min(ev.size, 64);
      const at = Math.min(v * PAGE + (ev.addr % PAGE), span - size);
      if (ev.type === 'read') { out.push({ at, size }); continue; }
      // Stores carry bytes on both backends (without them KVM stores a fill byte and the simulator nothing).
      const value = ev.value ? ev.value.subarray(0, size) : Uint8Array.from({ length: size }, (_, k) => (out.length + k) & 0xff);
      out.push({ at, size, value });
    }
  } finally {
    reader.close();
  }
  assert.is(out.length, n, `${file} has ${n} accesses`);
  const per = Math.ceil(n / epochs);
  const eps = Array.from({ length: epochs }, (_, e) => out.slice(e * per, (e + 1) * per));
  return { frames, planes, epochs: eps, remapBefore: 3, strictEpoch: 1 };
}

const scenarios: [string, () => Scenario][] = [
  ['seeded, 48 frames on 3 planes', () => seeded(11, 48, 3, 5, 3000)],
  ['seeded, 16 frames on 4 planes', () => seeded(12, 16, 4, 4, 2000)],
  ['seeded, 96 frames on 2 planes', () => seeded(13, 96, 2, 4, 5000)],
  ['kvstore-native.grt, first 40000 accesses', () => fromTrace('kvstore-native.grt', 40000, 64, 3, 5)],
  // GVA 0 up: where the KVM guest's system region sat before it moved to the upper half.
  ['seeded, 32 frames on 2 planes at GVA 0', () => ({ ...seeded(14, 32, 2, 4, 2000), base: 0 })],
];

for (const [name, make] of scenarios) {
  test(`conformance: ${name}: the same dirty pages per epoch, #PF counts, fault records, per-plane dirty logs and frame bytes on every backend`, async () => {
    const s = make();
    const m = model(s);
    const backends = why ? (['sim'] as const) : (['sim', 'kvm'] as const);
    const seen: Observed[] = [];
    for (const b of backends) {
      const mmu = await createMmu(b, { frames: s.frames });
      try {
        assert.is(mmu.backend, b);
        const o = await runScenario(mmu, s);
        // Against the model: each backend on its own.
        o.dirty.forEach((d, e) => assert.equal(d, m.dirty[e], `${b}: epoch ${e}: the pages unprotected, in fault order`));
        assert.equal(o.ept, m.ept, `${b}: per-plane dirty logs`);
        assert.ok(o.frames.every((x, i) => x === m.frames[i]), `${b}: frame bytes`);
        assert.equal(o.pf, m.dirty.map((d, e) => d.length + (e === s.strictEpoch ? 1 : 0) + (e === s.epochs.length - 1 ? 1 : 0)),
          `${b}: one #PF per unprotected page, and one for each reported fault`);
        assert.is(o.unmappedFault.gva, BigInt(UNMAPPED + 0x48));
        seen.push(o);
      } finally {
        await mmu.close();
      }
    }
    if (seen.length === 2) {
      const [sim, kvm] = seen;
      assert.equal(kvm.dirty, sim.dirty, 'dirty pages per epoch, in fault order');
      assert.equal(kvm.pf, sim.pf, '#PF counts per epoch');
      assert.equal(kvm.strictFault, sim.strictFault, 'the reported write-protect fault');
      assert.equal(kvm.unmappedFault, sim.unmappedFault, 'the fault on an unmapped GVA');
      assert.equal(kvm.ept, sim.ept, 'per-plane dirty GPA pages per epoch');
      assert.ok(kvm.frames.every((x, i) => x === sim.frames[i]), 'frame bytes');
    }
  });
}

test.run();
