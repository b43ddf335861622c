// The Mmu interface on the simulator: alias planes, both write-protection monitors with their
// built-in handlers, EPT dirty-bit and PML harvesting, and the batch path.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { SimMmu } from '../src/sim-mmu.ts';
import { createMmu, kvmUnavailable } from '../src/backend.ts';
import { ACC_READ, ACC_WRITE, ACC_USER } from '../src/consts.ts';

const W = ACC_WRITE | ACC_USER;
const R = ACC_READ | ACC_USER;
const PAGE = 0x1000n;
const PLANE0 = 0x1000_0000n;
const PLANE1 = 0x2000_0000n;
const HEAP = 0x7000_0000_0000n;

async function twoPlanes(opts = {}) {
  const mmu = await SimMmu.create({ frames: 16, ...opts });
  mmu.mapPlane(PLANE0, 0, 16);
  mmu.mapPlane(PLANE1, 0, 16);
  // V(f, 0) through plane 0, V(f, 1) through plane 1: two GVA pages alias each frame.
  mmu.mapGva(HEAP, PLANE0, 16);
  mmu.mapGva(HEAP + 16n * PAGE, PLANE1, 16);
  return mmu;
}

test('aliases through two planes see the same frame bytes', async () => {
  const mmu = await twoPlanes();
  mmu.batch.push(HEAP + 3n * PAGE + 64n, W, 4, new Uint8Array([1, 2, 3, 4]));
  const r = await mmu.run();
  assert.is(r.status, 'done');
  assert.equal([...mmu.readFrame(3, 64, 4)], [1, 2, 3, 4]);
  const into = new Uint8Array(8).fill(9);
  mmu.readFrameInto(3, 64, 4, into, 2);
  assert.equal([...into], [9, 9, 1, 2, 3, 4, 9, 9]);
  const s = mmu as SimMmu;
  const a = s.sim.access(HEAP + 16n * PAGE + 3n * PAGE + 64n, R, 4);
  const b = s.sim.access(HEAP + 3n * PAGE + 64n, R, 4);
  assert.is(a.fault, null);
  assert.is(a.hpa, b.hpa, 'both aliases reach one HPA');
});

test('guest-PT write protection: the in-guest handler logs each page once and unprotects it', async () => {
  const mmu = await twoPlanes();
  mmu.protectGva(HEAP, 32, true);
  for (const p of [0n, 0n, 5n, 17n, 5n]) mmu.batch.push(HEAP + p * PAGE + 8n, W, 8);
  const r = await mmu.run(0, { guestWriteProtect: true });
  assert.is(r.status, 'done');
  const d = mmu.dirty();
  assert.equal(d.map((e) => [e.source, e.addr]), [['pf', HEAP], ['pf', HEAP + 5n * PAGE], ['pf', HEAP + 17n * PAGE]]);
  const c = mmu.counters();
  assert.is(c.pf, 3);
  assert.is(c.handledPf, 3);
  assert.is(c.accesses, 5);
  assert.is(c.eptViolation, 0);
});

test('without the handler a protected write stops the batch with the #PF record', async () => {
  const mmu = await twoPlanes();
  mmu.batch.push(HEAP, R, 8);
  mmu.protectGva(HEAP + PAGE, 1, true);
  mmu.batch.push(HEAP + PAGE + 4n, W, 8);
  const r = await mmu.run();
  assert.is(r.status, 'fault');
  assert.is(r.next, 1);
  assert.is(r.fault!.kind, 1);
  assert.is(r.fault!.gva, HEAP + PAGE + 4n);
  assert.is(r.fault!.code, 0b111, 'P | W/R | U/S');
  assert.is(r.fault!.index, 1);
});

test('EPT write protection: the exit handler logs GPA pages, and aliases on other planes stay unwatched', async () => {
  const mmu = await twoPlanes();
  mmu.protectGpa(PLANE0, 16, true);
  mmu.batch.push(HEAP + 2n * PAGE, W, 8);          // plane 0 page 2: exit
  mmu.batch.push(HEAP + 16n * PAGE + 2n * PAGE, W, 8); // plane 1 alias of the same frame: no exit
  mmu.batch.push(HEAP + 2n * PAGE + 8n, W, 8);     // already unprotected
  const r = await mmu.run(0, { eptWriteProtect: true });
  assert.is(r.status, 'done');
  assert.equal(mmu.dirty().map((e) => [e.source, e.addr]), [['ept', PLANE0 + 2n * PAGE]]);
  assert.is(mmu.counters().eptViolation, 1);
  assert.is(mmu.counters().handledEpt, 1);
});

test('EPT dirty flags report exactly the plane pages written, and clearing re-arms them', async () => {
  const mmu = await twoPlanes();
  mmu.batch.push(HEAP + 1n * PAGE, W, 8);
  mmu.batch.push(HEAP + 16n * PAGE + 4n * PAGE, W, 8);
  mmu.batch.push(HEAP + 7n * PAGE, R, 8);
  await mmu.run();
  assert.equal(mmu.harvestEptDirty(PLANE0, 16), [PLANE0 + PAGE]);
  assert.equal(mmu.harvestEptDirty(PLANE1, 16), [PLANE1 + 4n * PAGE]);
  mmu.batch.reset();
  mmu.batch.push(HEAP + 1n * PAGE + 8n, W, 8); // TLB still holds the page: D must be set again
  await mmu.run();
  assert.equal(mmu.harvestEptDirty(PLANE0, 16), [PLANE0 + PAGE]);
});

test('PML logs each newly dirtied GPA page; the full-log handler drains 512 and goes on', async () => {
  const mmu = await SimMmu.create({ frames: 600, pml: true });
  mmu.mapPlane(PLANE0, 0, 600);
  mmu.mapGva(HEAP, PLANE0, 600);
  for (let i = 0n; i < 600n; i++) mmu.batch.push(HEAP + i * PAGE, W, 8);
  const r = await mmu.run(0, { pmlFull: true });
  assert.is(r.status, 'done');
  const drained = mmu.dirty().map((e) => e.addr);
  const rest = mmu.harvestPml();
  const all = [...drained, ...rest];
  const pages = all.filter((g) => g < PLANE0 + 600n * PAGE);
  assert.is(new Set(pages).size, 600, 'every data page logged once');
  assert.is(pages.length, 600);
  // With EPT A/D, guest paging-structure accesses are writes (SDM 29.3.5): their pages are logged too.
  const tables = all.filter((g) => g >= 1n << 45n);
  assert.ok(tables.length >= 4 && tables.length + pages.length === all.length, `table pages logged: ${tables.length}`);
  assert.is(mmu.counters().pmlFull, 1);

  assert.ok(drained.length === 512);
});

test('bad requests name the address', async () => {
  const mmu = await twoPlanes();
  assert.throws(() => mmu.mapGva(HEAP, PLANE0, 1), /already mapped/);
  assert.throws(() => mmu.mapGva(0x8000_0000_0000n, PLANE0, 1), /not canonical/);
  assert.throws(() => mmu.mapPlane(PLANE0 + 0x800n, 0, 1), /not 4 KiB aligned/);
  assert.throws(() => mmu.mapPlane(0x3000_0000n, 10, 10), /outside the pool/);
  assert.throws(() => mmu.protectGva(HEAP + 0x100000n, 1, true), /0x700000100000 is not mapped/);
  assert.throws(() => mmu.readFrame(16, 0, 1), /outside the pool/);
  assert.throws(() => mmu.readFrameInto(16, 0, 1, new Uint8Array(1), 0), /outside the pool/);
  assert.throws(() => mmu.readFrameInto(0, 4000, 100, new Uint8Array(100), 0), /outside the 4 KiB frame/);
});

test('backend selection says which backend ran and why', async () => {
  const auto = await createMmu('auto', { frames: 1 });
  if (kvmUnavailable()) {
    assert.is(auto.backend, 'sim');
    assert.match(auto.reason, /KVM backend/);
  } else {
    assert.is(auto.backend, 'kvm');
    assert.match(auto.reason, /^KVM on Linux/);
  }
  await auto.close();
  await assert.not.throws(async () => createMmu('sim', { frames: 1 }));
  try { await createMmu('kvm', { device: '/dev/granule-no-such-kvm' }); assert.unreachable(); } catch (e) { assert.match(String(e), /--backend kvm/); }
});

test.run();
