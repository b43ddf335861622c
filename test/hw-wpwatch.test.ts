// Per-plane write protection with userfaultfd: each alias plane's memslot maps its own view of the
// frame pool, and a WriteWatch protects single pages of one view. Host side, JS stores into a view
// trap once per protected page while the pool and the other views stay writable; on KVM, a guest
// write through a protected plane completes, is logged with its page, and the same frame written
// through another plane is not. One line reports the cost of a guest write fault on this path.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { kvmAddonPath, loadKvmAddon } from '../src/hw/native.ts';
import { FramePool, GuestMemory, KvmError, KvmSystem, WriteWatch, type KvmVcpu, type KvmVm, type PoolView } from '../src/hw/kvm.ts';
import { packageRoot } from '../src/record/toolchain.ts';
import { PORT, PLANE, le, movabsRax, movByteAtRax, outPort, HLT, identityTables, longMode } from './support/tiny-guest.ts';

// Built here rather than in a hook so that an unbuildable addon turns into skipped tests.
if (!existsSync(kvmAddonPath()) && process.platform === 'linux') {
  const r = spawnSync(process.execPath, [join(packageRoot(), 'scripts', 'build-native.mjs')], { encoding: 'utf8' });
  if (r.stdout.trim()) console.log(r.stdout.trim());
}

/** Why the watch tests cannot run here (no addon or /dev/kvm, or no userfaultfd for kernel faults), or undefined. */
function unavailable(): string | undefined {
  const loaded = loadKvmAddon();
  if ('error' in loaded) return loaded.error;
  const pool = FramePool.create(4096);
  const view = pool.view();
  try {
    WriteWatch.create(view).close();
  } catch (e) {
    if (e instanceof KvmError && ['userfaultfd', 'UFFDIO_API'].includes(e.ioctl)) return e.message;
    throw e;
  } finally {
    view.close();
    pool.close();
  }
  return undefined;
}
const why = unavailable();
if (why) console.log(`hw-wpwatch.test.ts: skipping the write-watch tests:\n${why}`);
const wpTest = why ? test.skip : test;

const PAGE = 4096;
const offsets = (w: WriteWatch) => [...w.drain()];

wpTest('host: a JS store to a protected page of one view is logged once, then runs free; the other views and the pool are not protected and see the bytes', () => {
  const pool = FramePool.create(16 * PAGE);
  const v0 = pool.view(), v1 = pool.view();
  const w0 = WriteWatch.create(v0), w1 = WriteWatch.create(v1);
  try {
    assert.match(w0.how, /userfaultfd.*features 0x/);
    const b0 = new Uint8Array(v0.buffer), b1 = new Uint8Array(v1.buffer), bp = new Uint8Array(pool.buffer);
    bp[2 * PAGE] = 7; // frame 2 exists in the memfd but v0 has never touched it
    w0.protect(PAGE, 2 * PAGE, true); // frames 1 and 2 in plane 0 only
    w1.protect(5 * PAGE, PAGE, true); // frame 5 in plane 1, to show w1 works and stays apart

    b0[PAGE + 10] = 0x41; // blocks until w0's handler thread has logged and released the page
    assert.equal(offsets(w0), [PAGE]);
    b0[PAGE + 11] = 0x42;
    assert.equal(offsets(w0), [], 'the second write to a released page does not fault');

    // The same frame through the other view and the pool: no protection there.
    b1[PAGE + 12] = 0x43;
    bp[PAGE + 13] = 0x44;
    b1[2 * PAGE + 1] = 0x45;
    assert.equal(offsets(w0), []);
    assert.equal(offsets(w1), []);
    assert.equal([...bp.subarray(PAGE + 10, PAGE + 14)], [0x41, 0x42, 0x43, 0x44]);
    assert.equal([...b1.subarray(PAGE + 10, PAGE + 14)], [0x41, 0x42, 0x43, 0x44]);
    assert.equal([...b0.subarray(PAGE + 10, PAGE + 14)], [0x41, 0x42, 0x43, 0x44]);

    // A page this view had not faulted in is protected too (PTE markers, no populate needed).
    assert.is(b0[2 * PAGE], 7, 'reads do not fault');
    assert.equal(offsets(w0), []);
    b0[2 * PAGE + 2] = 0x46;
    assert.equal(offsets(w0), [2 * PAGE]);
    assert.equal([...bp.subarray(2 * PAGE, 2 * PAGE + 3)], [7, 0x45, 0x46]);

    b1[5 * PAGE] = 1;
    assert.equal(offsets(w1), [5 * PAGE]);
    b0[5 * PAGE] = 2;
    assert.equal(offsets(w0), []);

    // Re-arming traps the next write again; releasing without a write logs nothing.
    w0.protect(PAGE, PAGE, true);
    b0[PAGE] = 1;
    assert.equal(offsets(w0), [PAGE]);
    w0.protect(3 * PAGE, PAGE, true);
    w0.protect(3 * PAGE, PAGE, false);
    b0[3 * PAGE] = 1;
    assert.equal(offsets(w0), []);
    assert.is(w0.faults, 3);
    assert.is(w1.faults, 1);
    assert.is(w0.lost, 0);
  } finally {
    w0.close();
    w1.close();
    v0.close();
    v1.close();
    pool.close();
  }
});

wpTest('host: one watch per view; bad ranges, a closed watch and an overflowing log are refused with what to do', () => {
  const pool = FramePool.create(8 * PAGE);
  const v = pool.view();
  const w = WriteWatch.create(v, { logEntries: 2 });
  try {
    assert.throws(() => WriteWatch.create(v), (e: unknown) => e instanceof KvmError && e.ioctl === 'UFFDIO_REGISTER' && e.code === 'EBUSY' &&
      /^UFFDIO_REGISTER failed: EBUSY \(16\): this view is already watched.*pool\.view\(\)/.test(e.message));
    assert.throws(() => w.protect(100, PAGE, true), /4 KiB aligned, non-empty and inside the 32768-byte view/);
    assert.throws(() => w.protect(0, 9 * PAGE, true), /inside the 32768-byte view/);
    assert.throws(() => anonView(), /only a memfd frame pool/);

    w.protect(0, 4 * PAGE, true);
    const b = new Uint8Array(v.buffer);
    for (let p = 0; p < 4; p++) b[p * PAGE] = 1; // every write completes even when the log is full
    assert.is(w.faults, 4);
    assert.is(w.lost, 2);
    assert.throws(() => w.drain(), /log overflowed: 2 write faults .* treat every protected page as written/);
    assert.equal(offsets(w), [], 'the overflow is reported once');
    assert.equal([...new Uint8Array(pool.buffer)].filter((x) => x === 1).length, 4);
  } finally {
    w.close();
  }
  assert.throws(() => w.drain(), /closed/);
  w.close(); // twice is fine
  // The view outlives its watch and stays usable, unprotected.
  new Uint8Array(v.buffer)[0] = 2;
  // A view outlives the pool object; closing both detaches their buffers.
  pool.close();
  assert.is(new Uint8Array(v.buffer)[0], 2);
  v.close();
  assert.throws(() => v.buffer, /closed/);
});

// A view of anonymous memory is refused (only memfd pools have views).
function anonView(): void {
  const m = GuestMemory.create(PAGE);
  try {
    m.native.view();
  } finally {
    m.close();
  }
}

wpTest('without a userfaultfd for kernel faults, creating a watch says why and what to do', () => {
  const setpriv = ['/usr/bin/setpriv', '/bin/setpriv'].find((p) => existsSync(p));
  if (process.getuid?.() !== 0 || !setpriv) {
    console.log('hw-wpwatch.test.ts: the unprivileged case needs root and setpriv(1) to drop to nobody; not run');
    return;
  }
  // The addon itself, without /dev/kvm (which nobody cannot open): memfd, view and watch need none.
  const script = `const a = require(${JSON.stringify(kvmAddonPath())});
const v = new a.HostMemory(4096, 'memfd').view();
try { new a.WriteWatch(v); console.log('created'); } catch (e) { console.log(e.message); }`;
  const r = spawnSync(setpriv, ['--reuid=65534', '--regid=65534', '--clear-groups', '--inh-caps=-all', '--bounding-set=-all', process.execPath, '-e', script],
    { encoding: 'utf8', env: { ...process.env, HOME: '/tmp' } });
  if (r.stdout.trim() === 'created') {
    console.log('hw-wpwatch.test.ts: nobody may open a kernel-fault userfaultfd here; the unprivileged case is not run');
    return;
  }
  assert.match(r.stdout, /^userfaultfd failed: \w+ \(\d+\): this process may not open a userfaultfd that sees kernel-mode faults/, r.stdout + r.stderr);
  assert.match(r.stdout, /\/dev\/userfaultfd: EACCES/);
  assert.match(r.stdout, /CAP_SYS_PTRACE/);
  assert.match(r.stdout, /vm\.unprivileged_userfaultfd=1/);
  assert.ok(r.stdout.trim().split('\n').length >= 6, r.stdout);
});

// ---------- KVM: alias planes over views ----------

const SYS_BYTES = 0x10000;
const POOL_BYTES = 2 << 20; // 512 frames: one 2 MiB guest page per plane
const FRAMES = POOL_BYTES / PAGE;
const WRITER = 0x8000, LOOP = 0x8100;


interface Guest { vm: KvmVm; pool: FramePool; views: PoolView[]; vcpu: KvmVcpu; enter(rip: number): void; close(): void }

/**
 * Slot 0: system region at GPA 0; slots 1 and 2: planes 0 and 1, each over its own view of the
 * pool. Long mode at CPL0, identity-mapped with 2 MiB pages (as in hw-kvm.test.ts).
 */
function makeGuest(): Guest {
  const sys = KvmSystem.open();
  const vm = sys.createVm();
  sys.close();
  const mem = GuestMemory.create(SYS_BYTES);
  const pool = FramePool.create(POOL_BYTES);
  const views = [pool.view(), pool.view()];
  vm.setMemory(0, 0n, mem, 0, SYS_BYTES);
  views.forEach((v, p) => vm.setMemory(1 + p, PLANE(p), v, 0, POOL_BYTES));

  identityTables(mem, 2);
  const code = new Uint8Array(mem.buffer);
  code.set([
    ...movabsRax(PLANE(0) + 0x1000n), ...movByteAtRax(0x41), // frame 1 through plane 0
    ...movabsRax(PLANE(1) + 0x1001n), ...movByteAtRax(0x42), // frame 1 through plane 1
    ...movabsRax(PLANE(1) + 0x3000n), ...movByteAtRax(0x43), // frame 3 through plane 1
    ...outPort, HLT,
  ], WRITER);
  // One byte into each of the FRAMES pages of plane 0: mov ecx, FRAMES; l: mov [rax], 0x5a;
  // add rax, 4096; dec ecx; jnz l (13 bytes back).
  code.set([
    ...movabsRax(PLANE(0)), 0xb9, ...le(BigInt(FRAMES), 4),
    ...movByteAtRax(0x5a), 0x48, 0x05, 0x00, 0x10, 0x00, 0x00, 0xff, 0xc9, 0x75, 0xf3,
    ...outPort, HLT,
  ], LOOP);

  const vcpu = vm.createVcpu(0);
  longMode(vcpu);
  return {
    vm, pool, views, vcpu,
    enter: (rip) => vcpu.setRegs({ rip: BigInt(rip), rflags: 2n, rsp: 0xf000n }),
    // The VM (and its memslots) first; the views and pool then unmap as their last user goes.
    close: () => {
      vm.close();
      for (const v of views) v.close();
      mem.close();
      pool.close();
    },
  };
}

async function runToOut(g: Guest, rip: number): Promise<number> {
  g.enter(rip);
  const e = await g.vcpu.run({ timeoutMs: 5000 });
  assert.is(e.reason, 'io', `${e.reason}: ${e.detail ?? ''} (KVM_RUN should complete once the handler releases the page)`);
  assert.is(e.io!.port, PORT);
  return e.ns;
}

wpTest('kvm: a guest write through a protected plane page completes and is logged with its page; the same frame through the other plane is not', async () => {
  const g = makeGuest();
  const w0 = WriteWatch.create(g.views[0]), w1 = WriteWatch.create(g.views[1]);
  try {
    w0.protect(0, POOL_BYTES, true); // all of plane 0
    w1.protect(2 * PAGE, PAGE, true); // frame 2 in plane 1, which the guest does not write
    await runToOut(g, WRITER);
    const frames = new Uint8Array(g.pool.buffer);
    assert.equal([...frames.subarray(0x1000, 0x1002)], [0x41, 0x42]);
    assert.is(frames[0x3000], 0x43);
    assert.equal(offsets(w0), [PAGE], 'plane 0 logs frame 1');
    assert.equal(offsets(w1), [], 'plane 1 writes frames 1 and 3, neither protected in plane 1');

    // Released pages run free; re-armed ones trap again, on the next run.
    frames.fill(0, 0x1000, 0x4000);
    await runToOut(g, WRITER);
    assert.equal(offsets(w0), []);
    w0.protect(PAGE, PAGE, true);
    w1.protect(3 * PAGE, PAGE, true);
    frames.fill(0, 0x1000, 0x4000);
    await runToOut(g, WRITER);
    assert.equal([...frames.subarray(0x1000, 0x1002)], [0x41, 0x42]);
    assert.is(frames[0x3000], 0x43);
    assert.equal(offsets(w0), [PAGE]);
    assert.equal(offsets(w1), [3 * PAGE]);
    assert.is(w0.faults, 2);
    assert.is(w1.faults, 1);
  } finally {
    w0.close();
    w1.close();
    g.close();
  }
});

wpTest('kvm: views and watches may close before or after the VM; a closed watch leaves its plane writable', async () => {
  const g = makeGuest();
  const w0 = WriteWatch.create(g.views[0]);
  w0.protect(0, POOL_BYTES, true);
  w0.close(); // protection left behind traps no more
  g.views[0].close(); // the memslot keeps the mapping until the VM goes
  g.pool.close();
  await runToOut(g, WRITER);
  assert.is(new Uint8Array(g.views[1].buffer)[0x1000], 0x41);
  const w1 = WriteWatch.create(g.views[1]);
  w1.protect(0, POOL_BYTES, true);
  g.close();
  assert.equal(offsets(w1), []);
  w1.close();
});

wpTest('kvm: cost of a guest write fault through userfaultfd (measured, not asserted)', async () => {
  const g = makeGuest();
  const w0 = WriteWatch.create(g.views[0]);
  try {
    await runToOut(g, LOOP); // every page faulted in, writable
    const free: number[] = [], zap: number[] = [], wp: number[] = [];
    for (let round = 0; round < 5; round++) {
      free.push(await runToOut(g, LOOP));
      // Protect and release: KVM drops its mappings (MMU notifier) but no write traps.
      w0.protect(0, POOL_BYTES, true);
      w0.protect(0, POOL_BYTES, false);
      zap.push(await runToOut(g, LOOP));
      w0.protect(0, POOL_BYTES, true);
      wp.push(await runToOut(g, LOOP));
      const got = offsets(w0);
      assert.is(got.length, FRAMES);
      assert.equal(got, Array.from({ length: FRAMES }, (_, i) => i * PAGE));
    }
    // The same through JS stores into the view, for scale.
    const b = new Uint8Array(g.views[0].buffer);
    const js: number[] = [];
    for (let round = 0; round < 5; round++) {
      w0.protect(0, POOL_BYTES, true);
      const t0 = process.hrtime.bigint();
      for (let i = 0; i < FRAMES; i++) b[i * PAGE] = 1;
      js.push(Number(process.hrtime.bigint() - t0));
      assert.is(offsets(w0).length, FRAMES);
    }
    const med = (a: number[]) => [...a].sort((x, y) => x - y)[a.length >> 1];
    const us = (ns: number) => (ns / FRAMES / 1000).toFixed(1);
    console.log(`hw-wpwatch.test.ts: guest write fault through uffd-wp: ${us(med(wp) - med(free))} us per page over writable pages ` +
      `(${us(med(wp) - med(zap))} us over KVM re-mapping unprotected pages after the notifier; loop alone ${us(med(free))} us per page at emulated CPL0); ` +
      `JS store fault ${us(med(js))} us; ${FRAMES} pages, median of 5 (${w0.how})`);
  } finally {
    w0.close();
    g.close();
  }
});

test.run();
