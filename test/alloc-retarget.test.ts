// The retargeter against the obvious implementation: an array of live objects scanned byte by byte.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { PAGE, type HeapAllocator, type Placement } from '../src/alloc/classes.ts';
import { SpreadAllocator } from '../src/alloc/spread.ts';
import { PackedAllocator } from '../src/alloc/packed.ts';
import { Retargeter, requireObjectAware, type Piece } from '../src/alloc/retarget.ts';
import { EV_KINDS, EV_ALLOC, TraceError } from '../src/trace/events.ts';
import { rng } from './support/rng.ts';

const HEAP = 0x10_0000_0000;
const LARGE = 0x40_0000_0000;
const TRACE_HEAP = 0x5555_5555_0000;
const STACK = 0x7ffd_0000_0000;


interface NObj { start: number; size: number; p: Placement }

/** The obvious model: a list of live objects, each access walked byte by byte. */
class Naive {
  objs: NObj[] = [];
  at(start: number) { return this.objs.find((o) => o.start === start); }
  drop(start: number, size: number): number {
    const keep = this.objs.filter((o) => !(o.start === start || (size > 0 && o.size > 0 && o.start < start + size && o.start + o.size > start)));
    const n = this.objs.length - keep.length;
    this.objs = keep;
    return n;
  }
  owner(b: number) { return this.objs.find((o) => b >= o.start && b < o.start + o.size); }
  map(addr: number, size: number): number | Piece[] {
    const pieces: Piece[] = [];
    let cur: NObj | undefined | null = null;
    for (let b = addr; b < addr + size; b++) {
      const o = this.owner(b);
      const nb = o ? b - o.start + o.p.addr : b;
      const last = pieces.at(-1);
      if (last && o === cur) last.size++;
      else pieces.push({ addr: nb, size: 1 });
      cur = o;
    }
    return pieces.length === 1 ? pieces[0]!.addr : pieces;
  }
}

function run(alloc: HeapAllocator, seed: number, steps: number) {
  const r = rng(seed);
  const rt = new Retargeter(alloc);
  const nv = new Naive();
  // A trace-side heap: bump plus exact reuse of freed addresses, as a real malloc would.
  let bump = TRACE_HEAP;
  const freed: number[] = [];
  const pick = () => nv.objs[Math.floor(r() * nv.objs.length)];
  const want = { inObject: 0, outside: 0, straddling: 0, unknownFrees: 0, unknownReallocs: 0, replaced: 0 };
  const size = () => {
    const x = r();
    return x < 0.7 ? Math.floor(r() * 120) : x < 0.95 ? Math.floor(r() * 4000) : 4097 + Math.floor(r() * 30000);
  };
  const place = (n: number) => {
    if (freed.length > 0 && r() < 0.5) return freed.splice(Math.floor(r() * freed.length), 1)[0]!;
    const a = bump;
    bump += Math.ceil(Math.max(n, 1) / 16) * 16 + (r() < 0.3 ? 16 : 0);
    return a;
  };
  for (let step = 0; step < steps; step++) {
    const x = r();
    if (x < 0.08) {
      const n = size();
      // Now and then the trace allocates over a live object (a trace bug): the newer one wins.
      const o = r() < 0.05 ? pick() : undefined;
      const start = o ? o.start + Math.floor(r() * Math.max(o.size, 1)) : place(n);
      want.replaced += nv.drop(start, n);
      const p = rt.onAlloc(start, n, 16);
      nv.objs.push({ start, size: n, p });
    } else if (x < 0.13) {
      const o = pick();
      if (o && r() < 0.9) {
        rt.onFree(o.start);
        nv.objs.splice(nv.objs.indexOf(o), 1);
        freed.push(o.start);
      } else {
        rt.onFree(STACK + Math.floor(r() * 1e6)); // never allocated
        want.unknownFrees++;
      }
    } else if (x < 0.16) {
      const o = pick();
      const n = size();
      if (o && r() < 0.9) {
        const nu = r() < 0.4 ? o.start : place(n);
        nv.objs.splice(nv.objs.indexOf(o), 1);
        want.replaced += nv.drop(nu, n);
        const { from, to } = rt.onRealloc(o.start, nu, n);
        assert.is(from, o.p, 'from is the placement before');
        assert.is(to.size, n);
        nv.objs.push({ start: nu, size: n, p: to });
        if (nu !== o.start) freed.push(o.start);
      } else {
        const nu = place(n);
        want.unknownReallocs++;
        want.replaced += nv.drop(nu, n);
        const { from, to } = rt.onRealloc(STACK + 8 * Math.floor(r() * 1e5), nu, n);
        assert.is(from, null);
        nv.objs.push({ start: nu, size: n, p: to });
      }
    } else {
      // An access: inside an object, across its end or start, on the stack, or a wide sweep.
      const o = pick();
      const y = r();
      let addr: number, n: number;
      if (o && y < 0.6) {
        addr = o.start + Math.floor(r() * Math.max(o.size, 1));
        n = [1, 2, 4, 8, 16, 32][Math.floor(r() * 6)]!;
      } else if (o && y < 0.75) {
        addr = o.start - 16 + Math.floor(r() * 24);
        n = 1 + Math.floor(r() * 40);
      } else if (y < 0.9) {
        addr = STACK + Math.floor(r() * 3 * PAGE);
        n = 1 + Math.floor(r() * 16);
      } else {
        addr = TRACE_HEAP + Math.floor(r() * (bump - TRACE_HEAP + 64));
        n = 1 + Math.floor(r() * (r() < 0.8 ? 64 : 9000));
      }
      const got = rt.map(addr, n);
      const exp = nv.map(addr, n);
      if (typeof exp === 'number') {
        if (nv.owner(addr)) want.inObject++;
        else want.outside++;
        assert.is(got, exp, `map(0x${addr.toString(16)}, ${n})`);
      } else {
        want.straddling++;
        assert.equal(Array.isArray(got) ? got.map((p) => ({ ...p })) : got, exp, `map(0x${addr.toString(16)}, ${n}) split`);
      }
    }
    if (step % 200 === 0) {
      assert.is(rt.liveObjects, nv.objs.length);
      assert.is(alloc.liveObjects, nv.objs.length, 'the layout holds exactly the live objects');
    }
  }
  assert.equal({ ...rt.stats }, want);
  return want;
}

test('map agrees with a byte-by-byte scan (spread layout)', () => {
  const a = new SpreadAllocator({ heapBase: HEAP, largeBase: LARGE, onMap: () => {} });
  const s = run(a, 1, 20000);
  // The stream must really reach every path.
  for (const [k, v] of Object.entries(s)) assert.ok(v > 10, `${k}: ${v}`);
});

test('map agrees with a byte-by-byte scan (packed layout, other seeds)', () => {
  for (const seed of [2, 3, 4]) {
    const a = new PackedAllocator({ heapBase: HEAP, largeBase: LARGE, onMap: () => {} });
    run(a, seed, 8000);
  }
});

test('offsets are kept, realloc moves accesses, outside accesses stay, splits at object ends', () => {
  const a = new SpreadAllocator({ heapBase: HEAP, largeBase: LARGE, onMap: () => {} });
  const rt = new Retargeter(a);
  const p = rt.onAlloc(0x1000, 40, 16);
  const q = rt.onAlloc(0x1030, 100, 16);
  assert.is(rt.map(0x1000 + 12, 4), p.addr + 12);
  assert.is(rt.map(0x1030 + 99, 1), q.addr + 99);
  assert.is(rt.map(0x1028, 8), 0x1028, 'the gap between objects keeps its address');
  assert.equal(rt.map(0x1024, 8), [{ addr: p.addr + 0x24, size: 4 }, { addr: 0x1028, size: 4 }]);
  assert.equal(rt.map(0x1020, 0x20), [{ addr: p.addr + 0x20, size: 8 }, { addr: 0x1028, size: 8 }, { addr: q.addr, size: 16 }]);
  const { from, to } = rt.onRealloc(0x1000, 0x9000, 300);
  assert.is(from, p);
  assert.is(to.cls, 512);
  assert.is(rt.map(0x9000 + 200, 8), to.addr + 200);
  assert.is(rt.map(0x1000 + 12, 4), 0x1000 + 12, 'the old range is no object now');
  rt.onFree(0x1030);
  assert.is(rt.map(0x1030, 8), 0x1030);
  rt.onFree(0x1030);
  assert.is(rt.stats.unknownFrees, 1, 'a second free is ignored and counted, never thrown');
  // A large object spanning trace pages.
  const big = rt.onAlloc(0x20_0010, 5 * PAGE, 16);
  assert.is(rt.map(0x20_0010 + 3 * PAGE + 5, 8), big.addr + 3 * PAGE + 5);
  assert.is(rt.map(0x20_0010 + 5 * PAGE, 8), 0x20_0010 + 5 * PAGE);
  // An alloc over part of it replaces it.
  const n = rt.onAlloc(0x20_0010 + PAGE, 8, 16);
  assert.is(rt.stats.replaced, 1);
  assert.is(rt.map(0x20_0010 + 3 * PAGE, 8), 0x20_0010 + 3 * PAGE);
  assert.is(rt.map(0x20_0010 + PAGE, 8), n.addr);
  assert.is(a.liveObjects, 2);
});

test('a trace without alloc events is refused for layout modes, naming the file', () => {
  const counts = new Array(EV_KINDS).fill(0);
  counts[0] = 100;
  assert.throws(() => requireObjectAware(counts, 'run.gtr', 'spread'), (e: unknown) => e instanceof TraceError && /^run\.gtr: the trace has no alloc events, so the spread layout/.test(e.message) && /own layout/.test(e.message));
  counts[EV_ALLOC] = 1;
  requireObjectAware(counts, 'run.gtr', 'spread');
});

test.run();
