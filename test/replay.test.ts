// Replay against an independent computation: per epoch, the set of bytes written, and from it the
// set of g-aligned blocks touched for each granularity, computed here the slow, obvious way.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { rejects } from 'node:assert/strict';
import { Replayer, type ReplayOptions, type ReplayResult } from '../src/replay/replay.ts';
import { EpochBitmap } from '../src/replay/units.ts';
import { Rng } from '../src/rng.ts';
import type { TraceEvent } from '../src/trace/events.ts';
import { toBlock } from './support/events.ts';


interface Expected { writes: number; idealBytes: number; units: Record<string, number>; pagesWritten: number }

/** The obvious computation: sets of bytes and blocks. */
function expected(events: TraceEvent[], n: number, gs: number[], marks = false): { epochs: Expected[]; pages: number } {
  const epochs: Expected[] = [];
  let bytes = new Set<number>();
  let writes = 0;
  let any = 0;
  const touched = new Set<number>();
  const close = () => {
    const units: Record<string, number> = {};
    for (const g of gs) units[g] = new Set([...bytes].map((b) => Math.floor(b / g))).size;
    epochs.push({ writes, idealBytes: bytes.size, units, pagesWritten: new Set([...bytes].map((b) => Math.floor(b / 4096))).size });
    bytes = new Set();
    writes = 0;
    any = 0;
  };
  for (const e of events) {
    any++;
    if (e.type === 'read' || e.type === 'write' || e.type === 'modify' || e.type === 'fetch') {
      for (let b = e.addr; b < e.addr + e.size; b++) touched.add(Math.floor(b / 4096));
      if (e.type === 'write' || e.type === 'modify') {
        for (let b = e.addr; b < e.addr + e.size; b++) bytes.add(b);
        if (++writes === n) close();
      }
    } else if (e.type === 'epoch' && marks && any > 1) close();
  }
  if (any > 0 || epochs.length === 0) close();
  return { epochs, pages: touched.size };
}

async function replay(events: TraceEvent[], o: ReplayOptions, split = 0): Promise<ReplayResult> {
  const r = await Replayer.create(o);
  if (split > 0) for (let i = 0; i < events.length; i += split) await r.block(toBlock(events.slice(i, i + split)));
  else await r.block(toBlock(events));
  return r.finish();
}

function check(res: ReplayResult, events: TraceEvent[], n: number, gs: number[], marks = false) {
  const want = expected(events, n, gs, marks);
  assert.is(res.epochs.length, want.epochs.length, 'epoch count');
  res.epochs.forEach((e, k) => {
    const w = want.epochs[k]!;
    assert.is(e.index, k);
    assert.is(e.writes, w.writes, `epoch ${k} writes`);
    assert.is(e.idealBytes, w.idealBytes, `epoch ${k} ideal bytes`);
    for (const g of gs) {
      assert.is(e.units[g], w.units[g], `epoch ${k} units at ${g}`);
      assert.is(e.volumeBytes[g], w.units[g]! * g, `epoch ${k} volume at ${g}`);
    }
    // The simulator's monitor faults once per page written in the epoch: its count and the
    // byte bitmap's must agree, or one of them is wrong.
    assert.is(e.faults.writeProtect, w.pagesWritten, `epoch ${k} write-protect faults`);
  });
  assert.is(res.totals.faults.notPresent, want.pages, 'not-present faults = distinct pages touched');
  assert.is(res.totals.pagesTouched, want.pages);
  assert.is(res.totals.epochs, want.epochs.length);
  for (const g of gs) assert.is(res.totals.units[g], want.epochs.reduce((s, e) => s + e.units[g]!, 0), `total units at ${g}`);
  assert.is(res.totals.writes, want.epochs.reduce((s, e) => s + e.writes, 0));
  assert.is(res.totals.idealBytes, want.epochs.reduce((s, e) => s + e.idealBytes, 0));
}

test('straddling writes dirty every unit they touch; modifies count once; reads never', async () => {
  const ev: TraceEvent[] = [
    { type: 'write', addr: 0x7ffd12344ffe, size: 4 }, // 12 hex digits, straddles a page and every unit size
    { type: 'read', addr: 0x7ffd12344000, size: 8 },
    { type: 'modify', addr: 0x40003f, size: 2 }, // straddles a 64-byte boundary
    { type: 'fetch', addr: 0x401000, size: 5 },
    { type: 'write', addr: 0x400040, size: 64 },
    { type: 'write', addr: 0x400080, size: 100 }, // larger than one simulator access
    { type: 'alloc', addr: 0x500000, size: 48, align: 16 },
    { type: 'write', addr: 0x500000, size: 1 },
    { type: 'free', addr: 0x500000 },
  ];
  const gs = [8192, 4096, 2048, 256, 64, 8, 1];
  const r = await replay(ev, { granularities: gs, epochWrites: 2 });
  check(r, ev, 2, gs);
  assert.is(r.epochs.length, 3, 'two full epochs and a partial one');
  assert.is(r.epochs[0]!.units['4096'], 3, 'the first write straddles two pages; the modify is on a third');
  assert.is(r.epochs[0]!.units['64'], 4, 'each of the two writes straddles a 64-byte boundary');
  assert.is(r.epochs[0]!.units['8192'], 2, 'the straddle crosses a page but not an 8 KiB block');
  assert.is(r.epochs[2]!.writes, 1, 'partial tail');
  assert.is(r.totals.allocs, 1);
  assert.is(r.totals.frees, 1);
  assert.is(r.totals.fetches, 1);
});

test('epoch marks end epochs when asked, and are ignored otherwise', async () => {
  const ev: TraceEvent[] = [
    { type: 'write', addr: 0x1000, size: 8 }, { type: 'epoch' },
    { type: 'write', addr: 0x1000, size: 8 }, { type: 'write', addr: 0x2000, size: 8 }, { type: 'epoch' }, { type: 'epoch' },
    { type: 'write', addr: 0x3000, size: 8 },
  ];
  const gs = [4096, 64];
  const marked = await replay(ev, { granularities: gs, epochWrites: 1000, epochMarks: true });
  check(marked, ev, 1000, gs, true);
  assert.equal(marked.epochs.map((e) => e.writes), [1, 2, 1], 'a repeated mark opens no empty epoch');
  const plain = await replay(ev, { granularities: gs, epochWrites: 1000 });
  assert.equal(plain.epochs.map((e) => e.writes), [4]);
  assert.is(plain.epochs[0]!.units['4096'], 3);
});

test('a trace without writes is one epoch with nothing dirty', async () => {
  const ev: TraceEvent[] = [{ type: 'read', addr: 0x1000, size: 4 }];
  const r = await replay(ev, { granularities: [64] });
  check(r, ev, 10000, [64]);
  assert.is(r.totals.idealBytes, 0);
  assert.is(r.totals.faults.notPresent, 1);
});

test('random traces agree with the set computation, whatever the block boundaries', async () => {
  const r = new Rng(0x9e3779b9);
  const rnd = (n: number) => r.int(0, n - 1);
  const bases = [0x10000, 0x7fffe000, 0x55555554a000, 0x7ffc_0000_0000 - 0x3000];
  const ev: TraceEvent[] = [];
  for (let i = 0; i < 6000; i++) {
    const base = bases[rnd(bases.length)]!;
    const addr = base + rnd(5 * 4096);
    const size = [1, 2, 4, 8, 16, 32, 64, 3, 100][rnd(9)]!;
    const t = rnd(10);
    if (t < 4) ev.push({ type: 'read', addr, size });
    else if (t < 8) ev.push({ type: 'write', addr, size });
    else if (t < 9) ev.push({ type: 'modify', addr, size });
    else ev.push({ type: 'epoch' });
  }
  const gs = [2 << 20, 8192, 4096, 1024, 128, 64, 32, 16, 4, 1];
  for (const [n, split, marks] of [[337, 0, false], [337, 1000, false], [50, 7, true]] as const) {
    const r = await replay(ev, { granularities: gs, epochWrites: n, epochMarks: marks }, split);
    check(r, ev, n, gs, marks);
  }
});

test('a tiny TLB costs more misses and walk references than a large one on the same trace', async () => {
  const ev: TraceEvent[] = [];
  for (let rep = 0; rep < 20; rep++) for (let p = 0; p < 64; p++) ev.push({ type: 'read', addr: 0x400000 + p * 4096, size: 8 });
  const big = await replay(ev, { granularities: [4096], tlbSets: 64, tlbWays: 4 });
  const tiny = await replay(ev, { granularities: [4096], tlbSets: 1, tlbWays: 4 });
  assert.ok(tiny.totals.tlbMisses > big.totals.tlbMisses * 5, `${tiny.totals.tlbMisses} vs ${big.totals.tlbMisses}`);
  assert.ok(tiny.totals.walkRefs > big.totals.walkRefs);
  assert.ok(big.totals.tlbMisses >= 64, 'every page misses at least once');
});

test('bad input: kernel-half addresses, too many pages, bad options', async () => {
  await rejects(replay([{ type: 'write', addr: 2 ** 47, size: 1 }], {}), /above the 47-bit user half/);
  const many: TraceEvent[] = [];
  for (let p = 0; p < 20; p++) many.push({ type: 'write', addr: p * 4096, size: 1 });
  await rejects(replay(many, { frames: 16 }), /more than 16 distinct pages.*--frames 64/);
  await rejects(Replayer.create({ granularities: [48] }), /not a power of two/);
  await rejects(Replayer.create({ epochWrites: 0 }), /positive number of writes/);
});

test('EpochBitmap counts units at every granularity from one bitmap', () => {
  const b = new EpochBitmap();
  b.write(0, 1);
  b.write(31, 2); // crosses a 32-bit word
  b.write(4095, 2); // crosses a page
  b.write(100, 200); // many words
  assert.is(b.idealBytes(), 1 + 2 + 2 + 200);
  assert.is(b.units(1), 205);
  assert.is(b.units(4096), 2);
  assert.is(b.units(8192), 1);
  assert.is(b.units(32), [0, 31, 32, 4064, 4096, ...Array.from({ length: 200 }, (_, i) => 100 + i)].map((v) => v >> 5).filter((v, i, a) => a.indexOf(v) === i).length);
  b.clear();
  assert.is(b.idealBytes(), 0);
  assert.is(b.pageCount, 0);
});

test.run();
