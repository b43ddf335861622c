// The Mmu interface on real /dev/kvm (src/hw/kvm-mmu.ts): the simulator's Mmu scenarios (aliases,
// stores and loads, the in-guest write-protect monitor, reported faults, remapping, per-plane dirty
// logs), plus what only hardware has: the ring-full exit, the run timeout, the operations the kvm
// backend does not support, and the figures of docs/guest.md measured through the Mmu.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { KvmMmu, KvmRunTimeoutError, GG, GC, kvmPlaneGpa, type KvmMmuOptions } from '../src/hw/kvm-mmu.ts';
import { createMmu, kvmUnavailable } from '../src/backend.ts';
import { packageRoot } from '../src/record/toolchain.ts';
import { ACC_READ, ACC_WRITE, ACC_FETCH, ACC_USER, FAULT_PF } from '../src/consts.ts';
import { rng } from './support/rng.ts';

const why = kvmUnavailable();
if (why) console.log(`hw-kvm-mmu.test.ts: skipping the KVM tests:\n${why}`);
const kvmTest = why ? test.skip : test;

const W = ACC_WRITE | ACC_USER;
const R = ACC_READ | ACC_USER;
const PAGE = 0x1000n;
const PLANE0 = kvmPlaneGpa(0);
const PLANE1 = kvmPlaneGpa(1);
const HEAP = 0x7000_0000_0000n;
const bytes = (n: number, seed: number) => Uint8Array.from({ length: n }, (_, i) => (seed * 31 + i * 7 + 1) & 0xff);

/** 16 frames, V(f, 0) through plane 0 at HEAP + f pages, V(f, 1) through plane 1 at HEAP + (16 + f) pages. */
async function twoPlanes(opts: KvmMmuOptions = {}) {
  const mmu = await KvmMmu.create({ frames: 16, ...opts });
  mmu.mapPlane(PLANE0, 0, 16);
  mmu.mapPlane(PLANE1, 0, 16);
  mmu.mapGva(HEAP, PLANE0, 16);
  mmu.mapGva(HEAP + 16n * PAGE, PLANE1, 16);
  return mmu;
}

/** The load XOR the player computes (granule_guest.h): 1/2/4/8-byte chunks whole, multiples of 8 in 8-byte chunks, else bytes. */
function loadXor(mem: Uint8Array, size: number): bigint {
  const chunk = (o: number, n: number) => { let v = 0n; for (let k = n - 1; k >= 0; k--) v = (v << 8n) | BigInt(mem[o + k]); return v; };
  if ([1, 2, 4, 8].includes(size)) return chunk(0, size);
  let x = 0n;
  if (size % 8 === 0) for (let k = 0; k < size; k += 8) x ^= chunk(k, 8);
  else for (let k = 0; k < size; k++) x ^= BigInt(mem[k]);
  return x;
}

test('the guest ABI numbers in src/hw/kvm-mmu.ts match hw/include/granule_guest.h', () => {
  const h = readFileSync(join(packageRoot(), 'hw', 'include', 'granule_guest.h'), 'utf8');
  const defs = new Map([...h.matchAll(/^#define (G[GC]_[A-Z0-9_]+) (0x[0-9a-f]+|\d+)\b/gm)].map((m) => [m[1], BigInt(m[2])]));
  let checked = 0;
  for (const [k, v] of Object.entries(GG)) {
    const d = defs.get(`GG_${k}`);
    assert.ok(d !== undefined, `GG_${k} is not defined in granule_guest.h`);
    assert.is(BigInt(v), d, `GG_${k}`);
    checked++;
  }
  for (const [k, v] of Object.entries(GC)) {
    assert.is(BigInt(v), defs.get(`GC_${k}`), `GC_${k}`);
    checked++;
  }
  assert.ok(checked > 50);
});

kvmTest('aliases through two planes see the same frame bytes', async () => {
  const mmu = await twoPlanes();
  try {
    mmu.batch.push(HEAP + 3n * PAGE + 64n, W, 4, new Uint8Array([1, 2, 3, 4]));
    mmu.batch.push(HEAP + 19n * PAGE + 64n, R, 4); // V(3, 1): the same frame through plane 1
    const r = await mmu.run();
    assert.equal(r, { next: 2, status: 'done', fault: null });
    assert.equal([...mmu.readFrame(3, 64, 4)], [1, 2, 3, 4]);
    const into = new Uint8Array(8).fill(9);
    mmu.readFrameInto(3, 64, 4, into, 2);
    assert.equal([...into], [9, 9, 1, 2, 3, 4, 9, 9]);
    assert.is(mmu.loadXor, 0x04030201n, 'the plane-1 alias read what plane 0 wrote');
    mmu.writeFrame(9, 100, new Uint8Array([0xaa, 0xbb]));
    mmu.batch.reset();
    mmu.batch.push(HEAP + 25n * PAGE + 100n, R, 2);
    await mmu.run();
    assert.is(mmu.loadXor, 0xbbaan, 'the guest sees bytes the host wrote into the pool');
  } finally {
    await mmu.close();
  }
});

kvmTest('a batch of stores with values and loads of every size: frame bytes and the load XOR agree with a host model', async () => {
  const mmu = await twoPlanes();
  try {
    const model = new Uint8Array(16 * 4096);
    const next = rng(7);
    let xor = 0n;
    const loads: [number, number][] = [];
    for (let i = 0; i < 400; i++) {
      const size = 1 + Math.floor(next() * 64);
      const off = Math.floor(next() * (16 * 4096 - size)); // straddles pages at times
      const alias = next() < 0.5 ? 0n : 16n * PAGE; // either plane
      if (next() < 0.6) {
        const v = bytes(size, i);
        assert.ok(mmu.batch.push(HEAP + alias + BigInt(off), W, size, v));
        model.set(v, off);
      } else {
        assert.ok(mmu.batch.push(HEAP + alias + BigInt(off), R, size));
        xor ^= loadXor(model.subarray(off), size);
        loads.push([off, size]);
      }
    }
    const r = await mmu.run();
    assert.is(r.status, 'done');
    assert.is(r.next, 400);
    for (let f = 0; f < 16; f++) assert.equal(mmu.readFrame(f, 0, 4096), model.subarray(f * 4096, (f + 1) * 4096), `frame ${f}`);
    assert.is(mmu.loadXor, xor);
    assert.ok(loads.length > 100);
    assert.is(mmu.counters().accesses, 400);
    // A fetch is played as a 1-byte read.
    mmu.batch.reset();
    mmu.batch.push(HEAP + 5n * PAGE + 7n, ACC_FETCH | ACC_USER, 4);
    await mmu.run();
    assert.is(mmu.loadXor, BigInt(model[5 * 4096 + 7]));
  } finally {
    await mmu.close();
  }
});

kvmTest('guest-PT write protection: the in-guest handler logs each page once and unprotects it; re-protection re-arms exactly the pages asked', async () => {
  const mmu = await twoPlanes();
  try {
    mmu.protectGva(HEAP, 32, true);
    for (const p of [0n, 0n, 5n, 17n, 5n]) mmu.batch.push(HEAP + p * PAGE + 8n, W, 8, bytes(8, Number(p)));
    mmu.batch.push(HEAP + 9n * PAGE, R, 8); // reads of protected pages do not fault
    const r = await mmu.run(0, { guestWriteProtect: true });
    assert.is(r.status, 'done');
    assert.equal(mmu.dirty().map((e) => [e.source, e.addr]), [['pf', HEAP], ['pf', HEAP + 5n * PAGE], ['pf', HEAP + 17n * PAGE]]);
    assert.equal(mmu.dirty(), [], 'dirty() drains');
    const c = mmu.counters();
    assert.is(c.pf, 3);
    assert.is(c.handledPf, 3);
    assert.is(c.accesses, 6);
    assert.equal([...mmu.readFrame(1, 8, 8)], [...bytes(8, 17)], 'V(1, 1) is frame 1 through plane 1');

    // Again: only pages 0 and 9 re-protected; page 5 stays writable from the last epoch.
    mmu.protectGva(HEAP, 1, true);
    mmu.protectGva(HEAP + 9n * PAGE, 1, true);
    mmu.batch.reset();
    for (const p of [5n, 9n, 0n, 17n, 9n]) mmu.batch.push(HEAP + p * PAGE + 16n, W, 4, bytes(4, 1));
    assert.is((await mmu.run(0, { guestWriteProtect: true })).status, 'done');
    assert.equal(mmu.dirty().map((e) => e.addr), [HEAP + 9n * PAGE, HEAP]);
    // Unprotecting (false) makes the pages writable without the handler.
    mmu.protectGva(HEAP, 32, true);
    mmu.protectGva(HEAP, 32, false);
    mmu.batch.reset();
    mmu.batch.push(HEAP + 3n * PAGE, W, 8, bytes(8, 3));
    assert.is((await mmu.run(0, { guestWriteProtect: true })).status, 'done');
    assert.equal(mmu.dirty(), []);
  } finally {
    await mmu.close();
  }
});

kvmTest('without the handler a protected write stops the batch with the #PF record; the batch then resumes at `next`', async () => {
  const mmu = await twoPlanes();
  try {
    mmu.batch.push(HEAP, R, 8);
    mmu.protectGva(HEAP + PAGE, 1, true);
    mmu.batch.push(HEAP + PAGE + 4n, W, 8, bytes(8, 1));
    mmu.batch.push(HEAP + 2n * PAGE, W, 8, bytes(8, 2));
    const r = await mmu.run();
    assert.is(r.status, 'fault');
    assert.is(r.next, 1);
    assert.is(r.fault!.kind, FAULT_PF);
    assert.is(r.fault!.gva, HEAP + PAGE + 4n, 'CR2');
    assert.is(r.fault!.code, 0b111, 'P | W/R | U/S');
    assert.is(r.fault!.index, 1);
    assert.is(r.fault!.level, 1);
    assert.equal([...mmu.readFrame(1, 4, 8)], [0, 0, 0, 0, 0, 0, 0, 0]);
    assert.is(mmu.counters().pf, 1);
    assert.is(mmu.counters().handledPf, 0);
    // With the handler the same record goes through (the guest is booted again after the fault).
    const r2 = await mmu.run(r.next, { guestWriteProtect: true });
    assert.is(r2.status, 'done');
    assert.is(r2.next, 3);
    assert.equal([...mmu.readFrame(1, 4, 8)], [...bytes(8, 1)]);
    assert.equal([...mmu.readFrame(2, 0, 8)], [...bytes(8, 2)]);
    assert.equal(mmu.dirty().map((e) => e.addr), [HEAP + PAGE]);
    assert.is(mmu.counters().boots, 2);
  } finally {
    await mmu.close();
  }
});

kvmTest('a store to an unmapped GVA is a fault with CR2 and the level the walk stopped at; a non-canonical one is #GP', async () => {
  const mmu = await twoPlanes();
  try {
    mmu.batch.push(HEAP, W, 8, bytes(8, 0));
    mmu.batch.push(0x6000_0000_0000n + 0x123n, W, 4, bytes(4, 0));
    let r = await mmu.run();
    assert.is(r.status, 'fault');
    assert.is(r.next, 1);
    assert.equal({ ...r.fault!, access: r.fault!.access & 3 }, {
      kind: FAULT_PF, gva: 0x6000_0000_0123n, gpa: 0n, access: ACC_WRITE, level: 4, code: 0b110, exitReason: 14, guestLevel: 0, index: 1,
    });
    assert.equal([...mmu.readFrame(0, 0, 8)], [...bytes(8, 0)], 'the record before the fault completed');
    // Beside a mapped page: the walk gets down to the page table.
    mmu.batch.reset();
    mmu.batch.push(HEAP + 40n * PAGE, R, 1);
    r = await mmu.run();
    assert.is(r.fault!.level, 1);
    assert.is(r.fault!.code, 0b100);
    mmu.unmapGva(HEAP + 3n * PAGE, 1);
    mmu.batch.reset();
    mmu.batch.push(HEAP + 3n * PAGE + 5n, R, 1);
    r = await mmu.run();
    assert.is(r.status, 'fault', 'unmapGva reaches the guest');
    assert.is(r.fault!.gva, HEAP + 3n * PAGE + 5n);
    mmu.batch.reset();
    mmu.batch.push(0x8000_0000_0000n, R, 1);
    r = await mmu.run();
    assert.is(r.status, 'fault');
    assert.is(r.fault!.kind, 2, 'FAULT_GP');
    assert.is(r.fault!.gva, 0x8000_0000_0000n);
    assert.is(mmu.counters().gp, 1);
  } finally {
    await mmu.close();
  }
});

kvmTest('remapGva to another plane of the same frame: the aliases see the same bytes and the new plane logs the write', async () => {
  const mmu = await twoPlanes();
  try {
    const v = HEAP + 3n * PAGE;
    mmu.batch.push(v, W, 8, bytes(8, 1)); // warm the old translation
    await mmu.run();
    mmu.harvestEptDirty(PLANE0, 16);
    mmu.remapGva(v, PLANE1 + 3n * PAGE, 1);
    mmu.batch.reset();
    mmu.batch.push(v + 8n, W, 8, bytes(8, 2));
    mmu.batch.push(HEAP + 3n * PAGE, R, 16); // through the remapped page
    await mmu.run();
    assert.equal(mmu.harvestEptDirty(PLANE0, 16), [], 'the old plane saw no write');
    assert.equal(mmu.harvestEptDirty(PLANE1, 16), [PLANE1 + 3n * PAGE]);
    assert.equal([...mmu.readFrame(3, 0, 16)], [...bytes(8, 1), ...bytes(8, 2)]);
    // To another frame: the write must land there, not in the one the stale translation pointed at.
    mmu.remapGva(v, PLANE1 + 7n * PAGE, 1);
    mmu.batch.reset();
    mmu.batch.push(v, W, 8, bytes(8, 3));
    await mmu.run();
    assert.equal([...mmu.readFrame(7, 0, 8)], [...bytes(8, 3)]);
    assert.equal([...mmu.readFrame(3, 0, 8)], [...bytes(8, 1)]);
    assert.throws(() => mmu.remapGva(HEAP + 100n * PAGE, PLANE0, 1), /0x700000064000 is not mapped/);
  } finally {
    await mmu.close();
  }
});

kvmTest('harvestEptDirty: per plane exactly the GPA pages written through it, not the ones read; clearing re-arms; ranges are respected', async () => {
  const mmu = await twoPlanes();
  try {
    mmu.batch.push(HEAP + 1n * PAGE, W, 8, bytes(8, 1));
    mmu.batch.push(HEAP + 16n * PAGE + 4n * PAGE, W, 8, bytes(8, 2));
    mmu.batch.push(HEAP + 7n * PAGE, R, 8);
    mmu.batch.push(HEAP + 16n * PAGE + 7n * PAGE, R, 8);
    mmu.batch.push(HEAP + 15n * PAGE + 4090n, W, 8, bytes(8, 3)); // straddles planes 0 and 1: V(15, 0) and V(0, 1)
    await mmu.run();
    assert.equal(mmu.harvestEptDirty(PLANE0, 16), [PLANE0 + PAGE, PLANE0 + 15n * PAGE]);
    assert.equal(mmu.harvestEptDirty(PLANE1, 16), [PLANE1, PLANE1 + 4n * PAGE]);
    assert.equal(mmu.harvestEptDirty(PLANE0, 16), [], 'harvesting clears');
    mmu.batch.reset();
    mmu.batch.push(HEAP + 1n * PAGE + 8n, W, 8, bytes(8, 4)); // written before: must be logged again
    mmu.batch.push(HEAP + 4n * PAGE, W, 1, bytes(1, 5));
    mmu.batch.push(HEAP + 16n * PAGE + 4n * PAGE, R, 8); // read after a harvest: not logged
    await mmu.run();
    assert.equal(mmu.harvestEptDirty(PLANE0 + 2n * PAGE, 14), [PLANE0 + 4n * PAGE], 'only the range asked');
    assert.equal(mmu.harvestEptDirty(PLANE0, 16), [PLANE0 + PAGE], 'the rest stays for later');
    assert.equal(mmu.harvestEptDirty(PLANE1, 16), []);
    assert.equal(mmu.harvestEptDirty(PLANE0 + 100n * PAGE, 4), [], 'beyond the pool: nothing');
  } finally {
    await mmu.close();
  }
});

kvmTest('a full dirty ring exits mid-batch; the host drains it and the guest goes on, entries in fault order', async () => {
  const mmu = await twoPlanes({ ringCapacity: 4 });
  try {
    const pages = [3n, 0n, 9n, 5n, 17n, 30n, 14n, 11n, 2n, 20n];
    mmu.protectGva(HEAP, 32, true);
    for (const p of pages) mmu.batch.push(HEAP + p * PAGE + 64n, W, 8, bytes(8, Number(p)));
    const r = await mmu.run(0, { guestWriteProtect: true });
    assert.is(r.status, 'done');
    assert.equal(mmu.dirty().map((e) => e.addr), pages.map((p) => HEAP + p * PAGE));
    assert.is(mmu.counters().ringFull, 2);
    assert.is(mmu.counters().pf, 10);
  } finally {
    await mmu.close();
  }
});

kvmTest('a run past runTimeoutMs stops the guest, closes the VM and says so', async () => {
  const mmu = await twoPlanes({ runTimeoutMs: 150 });
  mmu.batch.push(HEAP, W, 8, bytes(8, 0));
  const t0 = performance.now();
  let err: unknown;
  try {
    await mmu.runRepeat(2 ** 40); // the batch played over and over: never ends
  } catch (e) {
    err = e;
  }
  const took = performance.now() - t0;
  assert.instance(err, KvmRunTimeoutError);
  assert.match(String(err), /run timeout of 150 ms/);
  assert.match(String(err), /VM was stopped and closed/);
  assert.ok(took >= 140 && took < 3000, `took ${took} ms`);
  assert.throws(() => mmu.mapGva(HEAP + 100n * PAGE, PLANE0, 1), /closed/);
  assert.throws(() => mmu.readFrame(0, 0, 1), /closed/);
  assert.throws(() => mmu.readFrameInto(0, 0, 1, new Uint8Array(1), 0), /closed/);
  await mmu.close();
});

kvmTest('what a kvm MMU was not made for, or KVM cannot do, is refused with the clear error', async () => {
  const mmu = await twoPlanes();
  try {
    assert.throws(() => mmu.protectGpa(PLANE0, 1, true), /tracks planes by dirty-log; create it with planeTracking: 'write-watch'/);
    assert.throws(() => mmu.harvestPml(), /tracks planes by dirty-log; create it with planeTracking: 'dirty-ring'/);
    assert.throws(() => mmu.mapPlane(kvmPlaneGpa(2), 0, 1, { writable: false }), /not supported by the kvm backend yet: use --backend sim/);
    const refusals: [object, RegExp][] = [
      [{ eptWriteProtect: true }, /eptWriteProtect handler needs planeTracking: 'write-watch'/],
      [{ pmlFull: true }, /pmlFull handler needs planeTracking: 'dirty-ring'/],
      [{ spp: true }, /spp handler \(sub-page permissions\): not supported by the kvm backend yet/],
    ];
    for (const [h, want] of refusals) {
      try {
        await mmu.run(0, h);
        assert.unreachable(JSON.stringify(h));
      } catch (e) {
        assert.match(String(e), want);
      }
    }
    try {
      await createMmu('kvm', { frames: 1, pml: true, eptWriteProtect: true });
      assert.unreachable();
    } catch (e) {
      assert.match(String(e), /--backend kvm: PML and EPT write protection together/);
    }
  } finally {
    await mmu.close();
  }
});

kvmTest('bad requests name the address and the kvm backend\'s rule', async () => {
  const mmu = await twoPlanes({ planes: 3 });
  try {
    assert.throws(() => mmu.mapPlane(kvmPlaneGpa(3), 0, 1), /plane 3, but this VM was planned for 3 planes/);
    assert.throws(() => mmu.mapGva(HEAP, PLANE0, 1), /already mapped/);
    assert.throws(() => mmu.mapGva(0x8000_0000_0000n, PLANE0, 1), /not canonical/);
    assert.throws(() => mmu.mapGva(0xffffff0000001000n, PLANE0, 1), /0xffffff0000001000\.\..* is in the upper half, which the kvm backend's guest keeps for itself .*PML4 slot 510.*below 0x800000000000/);
    assert.throws(() => mmu.mapGva(0xffffffff80001000n, PLANE0, 1), /upper half.*system region at 0xffffffff80000000/);
    assert.throws(() => mmu.protectGva(0xffff800000000000n, 1, true), /protectGva: .*upper half/);
    assert.throws(() => mmu.mapGva(HEAP + 64n * PAGE, kvmPlaneGpa(3), 1), /not mapped by mapPlane/);
    assert.throws(() => mmu.mapGva(HEAP + 64n * PAGE, 0x2000_0000n, 1), /not inside one alias plane/);
    assert.throws(() => mmu.mapPlane(PLANE0 + 0x800n, 0, 1), /not 4 KiB aligned/);
    assert.throws(() => mmu.mapPlane(kvmPlaneGpa(2) + 4n * PAGE, 5, 1), /kvmPlaneGpa\(p\) \+ f \* 4096/);
    assert.throws(() => mmu.mapPlane(kvmPlaneGpa(2), 10, 10), /not inside one alias plane|outside the pool/);
    assert.throws(() => mmu.mapPlane(PLANE0 + 3n * PAGE, 3, 1), /already mapped/);
    assert.throws(() => mmu.protectGva(HEAP + 0x100000n, 1, true), /0x700000100000 is not mapped/);
    assert.throws(() => mmu.readFrame(16, 0, 1), /outside the pool/);
    assert.throws(() => mmu.readFrameInto(16, 0, 1, new Uint8Array(1), 0), /outside the pool/);
    assert.equal(await mmu.run(), { next: 0, status: 'done', fault: null }, 'an empty batch');
    mmu.batch.push(HEAP, R, 8);
    mmu.batch.push(HEAP, 3 | ACC_USER, 8); // kind 3 is no access kind: the player refuses the record
    try {
      await mmu.run();
      assert.unreachable();
    } catch (e) {
      assert.match(String(e), /RangeError: batch record 1 is malformed/);
    }
    mmu.batch.reset();
    mmu.batch.push(HEAP, W, 8, bytes(8, 9));
    assert.is((await mmu.run()).status, 'done', 'the guest takes the next batch');
    assert.equal([...mmu.readFrame(0, 0, 8)], [...bytes(8, 9)]);
    mmu.batch.reset();
    mmu.batch.push(HEAP, R, 8);
    const slow = mmu.run();
    assert.throws(() => mmu.mapGva(HEAP + 64n * PAGE, PLANE0, 1), /running/);
    await slow;
  } finally {
    await mmu.close();
  }
});

kvmTest('backend selection: auto takes KVM here and says so; sim on request; what one VM cannot track sends auto to the simulator', async () => {
  const auto = await createMmu('auto', { frames: 4 });
  try {
    assert.is(auto.backend, 'kvm');
    assert.match(auto.reason, /^KVM on Linux \S+ \(.*\), chosen by --backend auto/);
  } finally {
    await auto.close();
  }
  const kvm = await createMmu('kvm', { frames: 4 });
  assert.match(kvm.reason, /requested \(--backend kvm\)/);
  await kvm.close();
  const sim = await createMmu('sim', { frames: 1 });
  assert.is(sim.backend, 'sim');
  const both = await createMmu('auto', { frames: 1, pml: true, eptWriteProtect: true });
  assert.is(both.backend, 'sim');
  assert.match(both.reason, /tracks planes one way per VM/);
  const noImage = await createMmu('auto', { frames: 1, image: '/nonexistent/guest.bin' });
  assert.is(noImage.backend, 'sim');
  assert.match(noImage.reason, /guest image \/nonexistent\/guest\.bin is not built/);
  const noDev = await createMmu('auto', { frames: 1, device: '/dev/granule-no-such-kvm' });
  assert.is(noDev.backend, 'sim');
  assert.match(noDev.reason, /does not exist[\s\S]*modprobe/);
});

kvmTest('planeTracking dirty-ring: writes to more pages than the ring holds take ring-full exits mid-run, drained as PML-full; every page is logged', async () => {
  const frames = 3000;
  const mmu = await KvmMmu.create({ frames, planeTracking: 'dirty-ring', dirtyRingEntries: 1024 });
  try {
    mmu.mapPlane(PLANE0, 0, frames);
    mmu.mapGva(HEAP, PLANE0, frames);
    for (let round = 0; round < 2; round++) {
      for (let f = 0; f < frames; f++) mmu.batch.push(HEAP + BigInt(f) * PAGE + 8n, W, 8, bytes(8, f + round));
      const c0 = mmu.counters().pmlFull!;
      assert.equal(await mmu.run(0, { pmlFull: true }), { next: frames, status: 'done', fault: null });
      mmu.batch.reset();
      const full = mmu.counters().pmlFull! - c0;
      assert.ok(full >= 2, `round ${round}: ${full} ring-full exits for ${frames} pages in a 1024-entry ring`);
      const logged = [...mmu.dirty().filter((e) => e.source === 'pml').map((e) => e.addr), ...mmu.harvestPml()];
      // The write that fills the ring is retried after the drain's reset re-protected its page,
      // so KVM may log that page again: at most one repeat per ring-full exit.
      assert.ok(logged.length >= frames && logged.length <= frames + full, `round ${round}: ${logged.length} entries for ${frames} pages and ${full} ring-full exits`);
      assert.equal([...new Set(logged)].sort((a, b) => (a < b ? -1 : 1)), Array.from({ length: frames }, (_, f) => PLANE0 + BigInt(f) * PAGE), `round ${round}: the pages written`);
    }
    assert.equal(mmu.readFrame(frames - 1, 8, 8), bytes(8, frames));
  } finally {
    await mmu.close();
  }
});

kvmTest('figures through KvmMmu: player accesses per second, in-guest #PF cost, run() round trip', async () => {
  const frames = 1024;
  const mmu = await KvmMmu.create({ frames });
  try {
    mmu.mapPlane(PLANE0, 0, frames);
    mmu.mapGva(HEAP, PLANE0, frames);
    const heap = Number(HEAP);
    const cap = GG.REC_MAX;
    // 1M 8-byte accesses, alternating loads and stores, no faults: four full batches.
    const fill = () => {
      mmu.batch.reset();
      for (let i = 0; i < cap; i++) mmu.batch.pushAddr(heap + ((i * 72) % (frames * 4096 - 8)), i & 1 ? W : R, 8);
    };
    fill();
    await mmu.run(); // warm the translations
    const t0 = performance.now();
    let played = 0, pushMs = 0;
    for (let b = 0; b < 4; b++) {
      const p = performance.now();
      fill();
      pushMs += performance.now() - p;
      assert.is((await mmu.run()).status, 'done');
      played += cap;
    }
    const endToEnd = performance.now() - t0;
    const r0 = performance.now();
    assert.is((await mmu.runRepeat(4)).status, 'done');
    const inPlayer = performance.now() - r0;
    // Round trip: one-record batches.
    mmu.batch.reset();
    mmu.batch.push(HEAP, R, 8);
    const trips = 200;
    const t1 = performance.now();
    for (let i = 0; i < trips; i++) await mmu.run();
    const tripUs = ((performance.now() - t1) / trips) * 1000;
    // In-guest #PF: one store per protected page, minus the same batch unprotected.
    mmu.batch.reset();
    for (let p = 0; p < frames; p++) mmu.batch.pushAddr(heap + p * 4096 + 512, W, 8);
    mmu.protectGva(HEAP, frames, true);
    await mmu.run(0, { guestWriteProtect: true }); // first protection pass pays for shadow setup
    mmu.dirty();
    mmu.protectGva(HEAP, frames, true);
    mmu.resetCounters();
    const t2 = performance.now();
    await mmu.run(0, { guestWriteProtect: true });
    const pfRun = performance.now() - t2;
    assert.is(mmu.counters().handledPf, frames);
    assert.is(mmu.dirty().length, frames);
    // The same batch again, nothing protected and nothing to sync: what the faults added.
    const t3 = performance.now();
    await mmu.run(0, { guestWriteProtect: true });
    const plainRun = performance.now() - t3;
    assert.is(mmu.counters().handledPf, frames, 'no fault once unprotected');
    const pfUs = ((pfRun - plainRun) * 1000) / frames;
    console.log(`hw-kvm-mmu.test.ts: ${(played / endToEnd / 1e3).toFixed(1)} M accesses/s end to end (1M 8-byte accesses in 4 batches, ${endToEnd.toFixed(1)} ms, of which pushing records ${pushMs.toFixed(1)} ms), `
      + `${((4 * cap) / inPlayer / 1e3).toFixed(0)} M accesses/s in the player (runRepeat 4 x ${cap}), `
      + `run() round trip ${tripUs.toFixed(0)} us, in-guest #PF ${pfUs.toFixed(0)} us each, its PTE's sync included (${frames} faults in ${pfRun.toFixed(1)} ms, the same batch unprotected ${plainRun.toFixed(1)} ms)`);
    assert.ok(tripUs > 1 && pfUs > 0);
  } finally {
    await mmu.close();
  }
});

test.run();
