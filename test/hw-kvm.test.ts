// The KVM addon on real /dev/kvm: a tiny 64-bit guest (page tables and machine code written by the
// test) writes through two alias planes of one frame pool, exits with `out`, and we check the
// frames, the per-plane dirty logs and ring, read-only slots, timeouts and error reporting.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { kvmAddonPath, loadKvmAddon, resetKvmAddonCache, ADDON_ENV } from '../src/hw/native.ts';
import { FramePool, GuestMemory, KvmError, KvmSystem, KVM_CAP, type KvmVcpu, type KvmVm } from '../src/hw/kvm.ts';
import { packageRoot } from '../src/record/toolchain.ts';
import { PORT, PLANE, movabsRax, movByteAtRax, outPort, HLT, identityTables, longMode } from './support/tiny-guest.ts';

// Built here rather than in a hook so that an unbuildable addon turns into skipped tests.
if (!existsSync(kvmAddonPath()) && process.platform === 'linux') {
  const r = spawnSync(process.execPath, [join(packageRoot(), 'scripts', 'build-native.mjs')], { encoding: 'utf8' });
  if (r.stdout.trim()) console.log(r.stdout.trim());
}
const loaded = loadKvmAddon();
if ('error' in loaded) console.log(`hw-kvm.test.ts: skipping the KVM tests:\n${loaded.error}`);
const kvmTest = 'error' in loaded ? test.skip : test;

const SYS_BYTES = 0x10000;
const POOL_BYTES = 0x10000; // 16 frames
const RO_GPA = PLANE(2);
// Code entry points in the system region.
const WRITER = 0x8000, RO_WRITER = 0x8100, SPIN = 0x8200, OUT_LOOP = 0x8300;


interface Guest { sys: KvmSystem; vm: KvmVm; mem: GuestMemory; pool: FramePool; vcpu: KvmVcpu; enter(rip: number): void }

/**
 * Slot 0: system region at GPA 0. Slots 1, 2: planes 0 and 1 over the whole pool (logged). Slot 3:
 * the pool again, read-only, at plane 2's GPA. Long mode, identity-mapped with 2 MiB pages.
 */
function makeGuest(opts: { ring?: number } = {}): Guest {
  const sys = KvmSystem.open();
  const vm = sys.createVm();
  if (opts.ring) vm.enableDirtyRing(opts.ring);
  else vm.enableManualDirtyProtect();
  const mem = GuestMemory.create(SYS_BYTES);
  const pool = FramePool.create(POOL_BYTES);
  vm.setMemory(0, 0n, mem, 0, SYS_BYTES);
  vm.setMemory(1, PLANE(0), pool, 0, POOL_BYTES, { logDirty: true });
  vm.setMemory(2, PLANE(1), pool, 0, POOL_BYTES, { logDirty: true });
  vm.setMemory(3, RO_GPA, pool, 0, POOL_BYTES, { readonly: true });

  identityTables(mem, 3);
  const code = new Uint8Array(mem.buffer);
  code.set([
    ...movabsRax(PLANE(0) + 0x1000n), ...movByteAtRax(0x41), // frame 1 byte 0 through plane 0
    ...movabsRax(PLANE(1) + 0x1001n), ...movByteAtRax(0x42), // frame 1 byte 1 through plane 1
    ...movabsRax(PLANE(1) + 0x3000n), ...movByteAtRax(0x43), // frame 3 through plane 1 only
    ...outPort, HLT,
  ], WRITER);
  code.set([...movabsRax(RO_GPA + 0x2000n), ...movByteAtRax(0x44), HLT], RO_WRITER);
  code.set([0xeb, 0xfe], SPIN); // jmp $
  code.set([0x66, 0xba, PORT & 0xff, PORT >> 8, 0xef, 0xeb, 0xfd], OUT_LOOP); // mov dx, port; l: out dx, eax; jmp l

  const vcpu = vm.createVcpu(0);
  longMode(vcpu);
  return { sys, vm, mem, pool, vcpu, enter: (rip) => vcpu.setRegs({ rip: BigInt(rip), rflags: 2n, rsp: 0xf000n }) };
}

const bits = (bm: Uint8Array) => [...bm].flatMap((b, i) => [0, 1, 2, 3, 4, 5, 6, 7].filter((k) => b & (1 << k)).map((k) => i * 8 + k));

kvmTest('system: API version 12; limits agree with KVM_CHECK_EXTENSION', () => {
  const sys = KvmSystem.open();
  assert.is(sys.apiVersion, 12);
  const vm = sys.createVm();
  const lim = vm.limits();
  assert.is(lim.maxMemslots, vm.checkExtension(KVM_CAP.NR_MEMSLOTS));
  assert.ok(lim.maxMemslots >= 4, `only ${lim.maxMemslots} memslots`);
  assert.ok(lim.maxVcpus >= 1);
  assert.ok(lim.physAddrBits >= 36 && lim.physAddrBits <= 52, `physAddrBits ${lim.physAddrBits}`);
  assert.is(lim.readonlyMem, sys.checkExtension(KVM_CAP.READONLY_MEM) > 0);
  vm.close();
  sys.close();
});

kvmTest('a guest writes one frame through two alias planes: the pool holds both bytes; each plane logs exactly its own pages; clear re-arms', async () => {
  const g = makeGuest();
  try {
    g.enter(WRITER);
    const e = await g.vcpu.run();
    assert.is(e.reason, 'io', `${e.reason}: ${e.detail ?? ''}`);
    assert.equal(e.io, { port: PORT, out: true, size: 4, count: 1, data: 1 });
    const frames = new Uint8Array(g.pool.buffer);
    assert.equal([...frames.subarray(0x1000, 0x1002)], [0x41, 0x42]);
    assert.is(frames[0x3000], 0x43);
    assert.is(frames[0x2000], 0);

    assert.equal(bits(g.vm.getDirtyLog(1, POOL_BYTES / 4096)), [1]);
    assert.equal(bits(g.vm.getDirtyLog(2)), [1, 3]);
    // Manual protect: reading the log neither clears nor re-protects it.
    assert.equal(bits(g.vm.getDirtyLog(1)), [1]);
    for (const slot of [1, 2]) g.vm.clearDirtyLog(slot, 0, POOL_BYTES / 4096, g.vm.getDirtyLog(slot));
    assert.equal(bits(g.vm.getDirtyLog(1)), []);
    assert.equal(bits(g.vm.getDirtyLog(2)), []);

    frames.fill(0, 0x1000, 0x4000);
    g.enter(WRITER);
    assert.is((await g.vcpu.run()).reason, 'io');
    assert.equal([...frames.subarray(0x1000, 0x1002)], [0x41, 0x42]);
    assert.equal(bits(g.vm.getDirtyLog(1)), [1]);
    assert.equal(bits(g.vm.getDirtyLog(2)), [1, 3]);
    assert.is((await g.vcpu.run()).reason, 'hlt');
    assert.equal(g.vm.slots().map((s) => [s.slot, s.gpa, s.logDirty, s.readonly]),
      [[0, 0n, false, false], [1, PLANE(0), true, false], [2, PLANE(1), true, false], [3, RO_GPA, false, true]]);
  } finally {
    g.vm.close();
  }
});

kvmTest('a write to a read-only memslot exits as mmio and leaves the frame unchanged', async () => {
  const g = makeGuest();
  try {
    g.enter(RO_WRITER);
    const e = await g.vcpu.run();
    assert.is(e.reason, 'mmio', `${e.reason}: ${e.detail ?? ''}`);
    assert.equal(e.mmio, { gpa: RO_GPA + 0x2000n, write: true, len: 1, data: 0x44n });
    assert.is(new Uint8Array(g.pool.buffer)[0x2000], 0);
  } finally {
    g.vm.close();
  }
});

kvmTest('host-side protection of the pool: a guest write through a writable alias exits as mmio', async () => {
  const g = makeGuest();
  try {
    g.pool.protect(0x1000, 0x1000, 'r');
    g.enter(WRITER);
    const e = await g.vcpu.run();
    assert.is(e.reason, 'mmio');
    assert.is(e.mmio!.gpa, PLANE(0) + 0x1000n);
    g.pool.protect(0x1000, 0x1000, 'rw');
    assert.throws(() => g.pool.protect(0x800, 0x1000, 'r'), /4 KiB aligned/);
  } finally {
    g.vm.close();
  }
});

kvmTest('the dirty ring reports the alias GPA pages written, per slot; reset re-arms it', async () => {
  const probe = KvmSystem.open().createVm();
  const max = probe.limits().dirtyRingMax;
  probe.close();
  if (max === 0) {
    console.log('hw-kvm.test.ts: this KVM has no dirty ring (KVM_CAP_DIRTY_LOG_RING); ring test not run');
    return;
  }
  const g = makeGuest({ ring: 1024 });
  try {
    const keys = (pairs: Float64Array) => Array.from({ length: pairs.length / 2 }, (_, i) => `${pairs[2 * i]}:${pairs[2 * i + 1]}`);
    for (let round = 0; round < 2; round++) {
      g.enter(WRITER);
      assert.is((await g.vcpu.run()).reason, 'io');
      assert.equal(keys(g.vm.harvestDirtyRing(g.vcpu)).sort(), ['1:1', '2:1', '2:3']);
      assert.is(g.vm.harvestDirtyRing(g.vcpu).length, 0);
      assert.is(g.vm.resetDirtyRings(), 3);
    }
    // Bitmaps and the ring exclude each other.
    assert.throws(() => g.vm.getDirtyLog(1), (e: unknown) => e instanceof KvmError && e.ioctl === 'KVM_GET_DIRTY_LOG');
  } finally {
    g.vm.close();
  }
});

kvmTest('a runaway guest (jmp $) is stopped by timeoutMs and resolves timeout; the VM then closes', async () => {
  const g = makeGuest();
  g.enter(SPIN);
  const t0 = performance.now();
  const e = await g.vcpu.run({ timeoutMs: 50 });
  const took = performance.now() - t0;
  assert.is(e.reason, 'timeout');
  assert.match(e.detail!, /timeoutMs=50/);
  assert.ok(took >= 49 && took < 2000, `took ${took} ms`);
  assert.is(g.vcpu.running, false);
  const rip = g.vcpu.getRegs().rip;
  assert.is(rip, BigInt(SPIN), 'stopped inside the loop');
  g.vm.close();
  assert.throws(() => g.vcpu.getRegs(), /closed/);
});

kvmTest('closing a VM while its vCPU runs stops it; kick() interrupts; a second run() while running is refused', async () => {
  const g = makeGuest();
  g.enter(SPIN);
  const p = g.vcpu.run({ timeoutMs: 0 });
  assert.throws(() => g.vcpu.run(), /already running/);
  assert.throws(() => g.vcpu.getRegs(), /is running/);
  setTimeout(() => g.vcpu.kick(), 20);
  assert.is((await p).reason, 'intr');
  const p2 = g.vcpu.run({ timeoutMs: 0 });
  setTimeout(() => g.vm.close(), 20);
  assert.is((await p2).reason, 'closed');
});

kvmTest('repeated KVM_RUN round trips with an immediate out exit', async () => {
  const g = makeGuest();
  try {
    g.enter(OUT_LOOP);
    const wall: number[] = [], inKvm: number[] = [];
    for (let i = 0; i < 200; i++) {
      const t = process.hrtime.bigint();
      const e = await g.vcpu.run();
      wall.push(Number(process.hrtime.bigint() - t) / 1000);
      inKvm.push(e.ns / 1000);
      assert.is(e.reason, 'io');
      assert.is(e.io!.port, PORT);
    }
    const med = (a: number[]) => a.sort((x, y) => x - y)[a.length >> 1];
    console.log(`hw-kvm.test.ts: out-exit round trip median ${med(wall).toFixed(1)} us (run() promise), ${med(inKvm).toFixed(1)} us inside KVM_RUN`);
  } finally {
    g.vm.close();
  }
});

kvmTest('overlapping memslots reject with a KvmError naming the ioctl, errno and what to do', () => {
  const g = makeGuest();
  try {
    let err: unknown;
    try {
      g.vm.setMemory(7, PLANE(0) + 0x1000n, g.pool, 0, 0x1000);
    } catch (e) {
      err = e;
    }
    assert.instance(err, KvmError);
    const k = err as KvmError;
    assert.is(k.ioctl, 'KVM_SET_USER_MEMORY_REGION');
    assert.is(k.code, 'EEXIST');
    assert.is(k.errno, 17);
    assert.match(k.message, /^KVM_SET_USER_MEMORY_REGION failed: EEXIST \(17\): the guest-physical range overlaps another memslot/);
    assert.match(k.message, /slot 7, gpa 0x100001000/);
    assert.equal(g.vm.slots().map((s) => s.slot), [0, 1, 2, 3]);
  } finally {
    g.vm.close();
  }
});

kvmTest('bad arguments are refused before KVM with what to do: slot id, alignment, pool range, GPA width, clear range', () => {
  const sys = KvmSystem.open();
  const vm = sys.createVm();
  const pool = FramePool.create(0x4000);
  try {
    const lim = vm.limits();
    assert.throws(() => vm.setMemory(lim.maxMemslots, 0n, pool, 0, 0x1000), /KVM_CAP_NR_MEMSLOTS is \d+ here/);
    assert.throws(() => vm.setMemory(0, 0x800n, pool, 0, 0x1000), /4 KiB aligned/);
    assert.throws(() => vm.setMemory(0, 0n, pool, 0x1000, 0x4000), /exceeds the 16384-byte host memory/);
    assert.throws(() => vm.setMemory(0, 1n << BigInt(lim.physAddrBits), pool, 0, 0x1000), /physical address space/);
    assert.throws(() => FramePool.create(1000), /multiple of 4096/);
    vm.setMemory(0, 0n, pool, 0, 0x4000, { logDirty: true });
    assert.throws(() => vm.clearDirtyLog(0, 0, 4, new Uint8Array(1)), /enableManualDirtyProtect/);
    assert.throws(() => vm.getDirtyLog(0, 100), /pass its page count/);
    assert.throws(() => vm.getDirtyLog(5), /memslot 5 does not exist/);
    assert.throws(() => vm.checkPlan({ memslots: lim.maxMemslots + 1, bytes: 2 ** 50, mappings: 1e9 }),
      (e: unknown) => /memslots needed, KVM allows/.test(String(e)) && /guest memory needed/.test(String(e)) && /vm\.max_map_count/.test(String(e)));
    vm.checkPlan({ memslots: 4, bytes: 1 << 20, vcpus: 1 });
    vm.deleteMemory(0);
    assert.equal(vm.slots(), []);
    // A closed pool detaches its buffer instead of leaving a dangling mapping.
    const view = pool.buffer;
    pool.close();
    assert.is(view.byteLength, 0);
    assert.throws(() => pool.buffer, /closed/);
  } finally {
    vm.close();
    sys.close();
  }
});

test('loadKvmAddon explains an unusable device or a missing build and says what to do', () => {
  if (process.platform !== 'linux') return;
  const noDev = loadKvmAddon('/dev/granule-no-such-kvm');
  assert.ok('error' in noDev);
  if ('error' in noDev) {
    assert.ok(noDev.error.split('\n').length >= 3, noDev.error);
    assert.match(noDev.error, /\/dev\/granule-no-such-kvm does not exist/);
    assert.match(noDev.error, /modprobe kvm_intel/);
  }
  const saved = process.env[ADDON_ENV];
  process.env[ADDON_ENV] = '/nonexistent/granule_kvm.node';
  resetKvmAddonCache();
  try {
    const r = loadKvmAddon();
    assert.ok('error' in r);
    if ('error' in r) {
      assert.match(r.error, /\/nonexistent\/granule_kvm\.node \(from \$GRANULE_KVM_ADDON\) is not built/);
      assert.match(r.error, /npm rebuild granule/);
      assert.match(r.error, /simulator backend/);
    }
  } finally {
    if (saved === undefined) delete process.env[ADDON_ENV];
    else process.env[ADDON_ENV] = saved;
    resetKvmAddonCache();
  }
});

test('loadKvmAddon explains a permission problem on /dev/kvm with the usermod command', () => {
  const setpriv = ['/usr/bin/setpriv', '/bin/setpriv'].find((p) => existsSync(p));
  if (process.platform !== 'linux' || process.getuid?.() !== 0 || !setpriv || !existsSync('/dev/kvm')) {
    console.log('hw-kvm.test.ts: the permission case needs root, setpriv(1) and /dev/kvm to drop to an unprivileged user; not run');
    return;
  }
  const script = `import { loadKvmAddon } from ${JSON.stringify(join(packageRoot(), 'src/hw/native.ts'))};
const r = loadKvmAddon(); console.log('error' in r ? r.error : 'loaded');`;
  const r = spawnSync(setpriv, ['--reuid=65534', '--regid=65534', '--clear-groups', process.execPath, '--import', 'tsx', '--input-type=module', '-e', script],
    { cwd: packageRoot(), encoding: 'utf8', env: { ...process.env, HOME: '/tmp' } });
  if (r.stdout.trim() === 'loaded') {
    console.log('hw-kvm.test.ts: /dev/kvm is open to everyone here; the permission case is not run');
    return;
  }
  assert.match(r.stdout, /permission denied opening \/dev\/kvm/, r.stdout + r.stderr);
  assert.match(r.stdout, /sudo usermod -aG \S+ \$USER/);
});

test.run();
