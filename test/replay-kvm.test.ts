// Replay on real hardware: the same events through the simulator and through KVM (the guest's
// CPL3 player, its in-guest #PF monitor) give the same epochs, dirty units and fault counts.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { Replayer, type ReplayResult } from '../src/replay/replay.ts';
import { kvmUnavailable } from '../src/backend.ts';
import type { TraceEvent } from '../src/trace/events.ts';
import { Rng } from '../src/rng.ts';
import { toBlock } from './support/events.ts';

const why = kvmUnavailable();
if (why) console.log(`replay-kvm.test.ts: skipping, KVM is not available here:\n${why}`);


async function replay(backend: 'sim' | 'kvm', events: TraceEvent[]): Promise<ReplayResult> {
  const r = await Replayer.create({ backend, granularities: [4096, 256, 64], epochWrites: 150, frames: 1024 });
  for (let i = 0; i < events.length; i += 700) await r.block(toBlock(events.slice(i, i + 700)));
  return r.finish();
}

/** Replays `ev` on both backends and asserts the same epochs, units, faults and pages touched. */
async function sameOnBoth(ev: TraceEvent[]): Promise<ReplayResult> {
  const sim = await replay('sim', ev);
  const kvm = await replay('kvm', ev);
  assert.is(kvm.backend.name, 'kvm');
  assert.is(sim.epochs.length, kvm.epochs.length);
  sim.epochs.forEach((e, k) => {
    const h = kvm.epochs[k]!;
    assert.equal([h.writes, h.idealBytes, h.units], [e.writes, e.idealBytes, e.units], `epoch ${k}`);
    assert.equal(h.faults, e.faults, `epoch ${k}: not-present and write-protect faults`);
  });
  assert.is(kvm.totals.pagesTouched, sim.totals.pagesTouched);
  return kvm;
}

test('the same events give the same epochs, units and faults on KVM as on the simulator', async () => {
  if (why) return;
  const r = new Rng(11);
  const bases = [0x4000000, 0x1ffeff0000, 0x55555554a000];
  const ev: TraceEvent[] = [];
  for (let i = 0; i < 3000; i++) {
    const addr = bases[Math.floor(r.float() * bases.length)]! + Math.floor(r.float() * 6 * 4096);
    const size = [1, 2, 4, 8, 16, 64, 3][Math.floor(r.float() * 7)]!;
    ev.push({ type: r.float() < 0.5 ? 'write' : r.float() < 0.5 ? 'modify' : 'read', addr, size });
  }
  await sameOnBoth(ev);
});

test('low addresses (valgrind\'s client area, a wasm linear memory from 0) replay on KVM as on the simulator', async () => {
  if (why) return;
  // The KVM guest keeps its own mappings in the upper half, so GVAs from 0 up are the trace's.
  const r = new Rng(12);
  const ev: TraceEvent[] = [
    { type: 'write', addr: 0x108040, size: 8 },
    { type: 'write', addr: 0x15cc, size: 4 },
    { type: 'read', addr: 0x108040, size: 8 },
    { type: 'modify', addr: 0x15cc, size: 4 },
  ];
  // wasm-like: a shadow stack below 0x10000, data and heap above it, all within the first 1.2 MiB.
  for (let i = 0; i < 3000; i++) {
    const addr = r.float() < 0.4 ? 0x10000 - 8 - Math.floor(r.float() * 0x2000) : 0x400 + Math.floor(r.float() * 0x120000);
    const size = [1, 2, 4, 8, 16, 64, 3][Math.floor(r.float() * 7)]!;
    ev.push({ type: r.float() < 0.5 ? 'write' : r.float() < 0.5 ? 'modify' : 'read', addr, size });
  }
  const kvm = await sameOnBoth(ev);
  assert.ok(kvm.totals.pagesTouched > 200, `${kvm.totals.pagesTouched} pages touched`);
  assert.ok(kvm.totals.faults.notPresent > 0 && kvm.totals.faults.writeProtect > 0, `the in-guest monitor ran: ${JSON.stringify(kvm.totals.faults)}`);
});

test.run();
