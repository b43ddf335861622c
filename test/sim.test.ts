// The simulator's TypeScript face: what it refuses (as VM entry or a careful API would) and that
// it is deterministic.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { Sim } from '../src/sim.ts';
import { BatchWriter } from '../src/batch.ts';
import { smallSpace, VA } from './support/small-space.ts';
import { ACC_READ, ACC_WRITE, ACC_USER, HANDLE_PF_WP, EPTP_AD } from '../src/consts.ts';

test('bad options are refused with the option named', async () => {
  const bad: [object, RegExp][] = [
    [{ physBytes: 5000 }, /physBytes must be a positive multiple of 4096/],
    [{ tlbSets: 12 }, /powers of two/],
    [{ pscEntries: 3 }, /powers of two/],
    [{ maxPhyAddr: 60 }, /maxPhyAddr must be between 36 and 52/],
    [{ physBytes: 8 * 2 ** 30 }, /does not fit in a 32-bit WebAssembly memory/],
    [{ tlbWays: -1 }, /tlbWays must be a non-negative integer/],
  ];
  for (const [opts, re] of bad) {
    try { await Sim.create(opts); assert.unreachable(`accepted ${JSON.stringify(opts)}`); } catch (e) { assert.match(String(e), re); }
  }
});

test('vCPU state that VM entry would reject is refused, naming the field and value', async () => {
  const sim = await Sim.create({ physBytes: 1 << 20, maxPhyAddr: 40 });
  const bad: [Parameters<Sim['setCpu']>[0], RegExp][] = [
    [{ cr3: 1n << 41n }, /cr3 0x20000000000 sets bits at or above MAXPHYADDR \(40\)/],
    [{ eptp: 0x1000n | 5n | (3n << 3n) }, /memory type 5 is not UC \(0\) or WB \(6\)/],
    [{ eptp: 0x1000n | 6n | (2n << 3n) }, /bits 5:3 must be 3/],
    [{ eptp: 0x1000n | 6n | (3n << 3n) | 0x100n }, /reserved bits set/],
    [{ eptp: 0x1000n | 6n | (3n << 3n), pml: { enabled: true, address: 0x2000n, index: 511 } }, /PML needs EPT accessed and dirty flags/],
    [{ eptp: 0x1000n | 6n | (3n << 3n) | EPTP_AD, pml: { enabled: true, address: 0x2010n, index: 511 } }, /pml.address 0x2010 must be 4 KiB aligned/],
    [{ spp: { enabled: true, spptp: 0x123n } }, /spp.spptp 0x123 must be 4 KiB aligned/],
    [{ vpid: 70000 }, /vpid 70000 is not a 16-bit value/],
  ];
  for (const [cpu, re] of bad) {
    assert.throws(() => sim.setCpu(cpu), re);
  }
  assert.is(sim.cpu().cr3, 0n, 'a refused state changes nothing');
});

test('accesses and memory reads outside the rules are refused', async () => {
  const { sim } = await smallSpace();
  assert.throws(() => sim.access(VA, ACC_READ, 0), /access size 0 is not 1..64/);
  assert.throws(() => sim.access(VA, ACC_READ, 65), /access size 65 is not 1..64/);
  assert.throws(() => sim.access(VA, ACC_WRITE, 8, new Uint8Array(4)), /value has 4 bytes, access needs 8/);
  assert.throws(() => sim.read64(BigInt(16 << 20)), /HPA 0x1000000 \(\+8\) is outside the simulated memory/);
  assert.throws(() => new BatchWriter(sim).push(VA, ACC_READ, 100), /access size 100 at GVA 0x400000/);
});

test('setCpu keeps the PML index the simulator moved unless told otherwise', async () => {
  const { sim, tables } = await smallSpace();
  sim.setCpu({ pml: { enabled: true, address: tables.alloc(), index: 511 } });
  sim.access(VA, ACC_WRITE | ACC_USER, 8);
  const moved = sim.cpu().pml.index;
  assert.ok(moved < 511, `logged: index ${moved}`);
  sim.setCpu({ vpid: 3 });
  assert.is(sim.cpu().pml.index, moved);
  sim.setCpu({ pml: { enabled: true, address: sim.cpu().pml.address, index: 511 } });
  assert.is(sim.cpu().pml.index, 511);
});

test('deterministic: the same inputs give the same counters, dirty log and memory', async () => {
  const run = async () => {
    const { sim, gpt } = await smallSpace({ pscEntries: 8 });
    for (let i = 0n; i < 8n; i += 2n) {
      const l = gpt.leafEntry(VA + i * 0x1000n)!;
      sim.write64(l.hpa, (l.value & ~2n) | (1n << 9n));
    }
    const b = new BatchWriter(sim);
    let x = 12345;
    for (let i = 0; i < 20000; i++) {
      x = (x * 1103515245 + 12345) >>> 0;
      const gva = VA + BigInt(x % (8 * 4096 - 64));
      b.push(gva, (x & 1 ? ACC_WRITE : ACC_READ) | ACC_USER, 1 + ((x >>> 8) % 64), x & 2 ? new Uint8Array(64).fill(x & 255) : undefined);
    }
    const r = sim.runBatch(0, b.count, HANDLE_PF_WP);
    return { r, c: sim.counters(), log: sim.drainDirtyLog(), mem: sim.phys.slice() };
  };
  const a = await run();
  const b = await run();
  assert.equal(a.r, b.r);
  assert.equal(a.c, b.c);
  assert.equal(a.log, b.log);
  assert.ok(Buffer.compare(a.mem, b.mem) === 0);
  assert.ok(a.c.handledPf === 4 && a.c.split > 0 && a.c.accesses === 20000, JSON.stringify(a.c));
});

test.run();
