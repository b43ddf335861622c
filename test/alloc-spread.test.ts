// The spread allocator against its definition: every object sits alone in one slot of one frame,
// reachable at V(f, j) + j*cls, and the map requests describe exactly those virtual pages.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { MAX_PLANES, PAGE, SPREAD_CLASSES, spreadClassOf, type MapRequest, type Placement } from '../src/alloc/classes.ts';
import { SpreadAllocator } from '../src/alloc/spread.ts';
import { rng } from './support/rng.ts';

const HEAP = 0x10_0000_0000;
const LARGE = 0x40_0000_0000;


function make(maxFrames?: number) {
  const maps: MapRequest[] = [];
  const a = new SpreadAllocator({ heapBase: HEAP, largeBase: LARGE, onMap: (r) => maps.push(r), maxFrames });
  return { a, maps };
}

const V = (f: number, j: number) => SpreadAllocator.vpage(HEAP, f, j);

test('spreadClassOf: smallest power of two from 64, null above a page', () => {
  assert.is(spreadClassOf(0), 64);
  assert.is(spreadClassOf(1), 64);
  assert.is(spreadClassOf(64), 64);
  assert.is(spreadClassOf(65), 128);
  assert.is(spreadClassOf(1000), 1024);
  assert.is(spreadClassOf(2049), 4096);
  assert.is(spreadClassOf(4096), 4096);
  assert.is(spreadClassOf(4097), null);
  for (let s = 0; s <= PAGE; s++) {
    const c = spreadClassOf(s)!;
    assert.ok(SPREAD_CLASSES.includes(c) && c >= s && (c === 64 || c / 2 < s), `size ${s} -> ${c}`);
  }
});

test('V(f, j) has a fixed stride of 64 pages per frame and is distinct per (f, j)', () => {
  assert.is(V(0, 0), HEAP);
  assert.is(V(0, 1), HEAP + PAGE);
  assert.is(V(1, 0), HEAP + MAX_PLANES * PAGE);
  assert.is(V(3, 5), HEAP + (3 * 64 + 5) * PAGE);
  const seen = new Set<number>();
  for (let f = 0; f < 20; f++) for (let j = 0; j < MAX_PLANES; j++) seen.add(V(f, j));
  assert.is(seen.size, 20 * MAX_PLANES);
});

test('a fresh slab maps exactly K virtual pages V(f, j), and slots fill in order', () => {
  for (const cls of SPREAD_CLASSES) {
    const { a, maps } = make();
    const k = PAGE / cls;
    const ps: Placement[] = [];
    for (let i = 0; i < k; i++) ps.push(a.alloc(cls, 16));
    assert.is(maps.length, 1, `class ${cls}: one frame for K objects`);
    const m = maps[0]!;
    assert.equal(m, { kind: 'slab', frame: 0, cls, slots: k, vpages: Array.from({ length: k }, (_, j) => V(0, j)) });
    ps.forEach((p, j) => assert.equal(p, { addr: V(0, j) + j * cls, size: cls, cls, frame: 0, slot: j }));
    const next = a.alloc(1, 1);
    if (cls === 64) {
      assert.is(maps.length, 2);
      assert.is(next.frame, 1);
    }
    assert.is(a.vpagesUsed, maps.reduce((n, r) => n + (r.kind === 'slab' ? r.vpages.length : r.frames.length), 0));
    assert.is(a.framesUsed, maps.length);
  }
});

test('random stream: objects alone in their slots at V(f, j) + j*cls; lookup finds every byte', () => {
  const { a, maps } = make();
  const r = rng(7);
  const live = new Map<number, { p: Placement; align: number }>();
  const frameClass = new Map<number, number | 'large'>();
  let mapped = 0;
  const sizes = () => {
    const x = r();
    return x < 0.6 ? Math.floor(r() * 200) : x < 0.9 ? Math.floor(r() * 4097) : 4097 + Math.floor(r() * 20000);
  };
  for (let step = 0; step < 4000; step++) {
    const x = r();
    const addrs = [...live.keys()];
    if (x < 0.55 || addrs.length === 0) {
      const size = sizes();
      const align = r() < 0.8 ? 16 : 2 ** Math.floor(r() * 14);
      const p = a.alloc(size, align);
      live.set(p.addr, { p, align });
    } else if (x < 0.85) {
      const addr = addrs[Math.floor(r() * addrs.length)]!;
      a.free(addr);
      live.delete(addr);
    } else {
      const addr = addrs[Math.floor(r() * addrs.length)]!;
      const old = live.get(addr)!;
      const size = sizes();
      const q = a.realloc(addr, size);
      live.delete(addr);
      live.set(q.addr, { p: q, align: old.align });
      const cls = old.align > PAGE || size > PAGE ? null : Math.max(spreadClassOf(size)!, old.align);
      const pages = (n: number) => Math.max(1, Math.ceil(n / PAGE));
      const stays = cls === null ? old.p.cls === null && pages(size) === pages(old.p.size) : cls === old.p.cls;
      assert.is(q.addr === addr, stays, 'realloc stays exactly when the class (or page count) is unchanged');
      assert.is(q.cls, cls);
    }
    for (; mapped < maps.length; mapped++) {
      const m = maps[mapped]!;
      if (m.kind === 'slab') {
        assert.not.ok(frameClass.has(m.frame), `frame ${m.frame} mapped twice`);
        frameClass.set(m.frame, m.cls);
        assert.is(m.slots, PAGE / m.cls);
        assert.equal(m.vpages, Array.from({ length: m.slots }, (_, j) => V(m.frame, j)));
      } else {
        m.frames.forEach((f) => { assert.not.ok(frameClass.has(f)); frameClass.set(f, 'large'); });
      }
    }
    if (step % 50 !== 49) continue;
    // Full check of the invariants.
    const slots = new Set<string>();
    let bytes = 0;
    for (const { p, align } of live.values()) {
      bytes += p.size;
      assert.is(p.addr % Math.min(align, PAGE) === 0 || align > PAGE, true, `aligned to ${align}`);
      if (p.cls === null) {
        assert.ok(p.size > PAGE || align > PAGE, 'large only when it must be');
        assert.is(p.addr % Math.max(PAGE, align), 0);
        continue;
      }
      assert.is(p.cls, Math.max(spreadClassOf(p.size)!, align), 'class from size and alignment');
      assert.is(frameClass.get(p.frame), p.cls, 'the frame was mapped for this class');
      assert.ok(p.slot >= 0 && p.slot < PAGE / p.cls);
      assert.is(p.addr, V(p.frame, p.slot) + p.slot * p.cls);
      assert.ok(p.addr + p.size <= V(p.frame, p.slot) + (p.slot + 1) * p.cls, 'inside its slot');
      const key = `${p.frame}/${p.slot}`;
      assert.not.ok(slots.has(key), `slot ${key} shared`);
      slots.add(key);
      if (p.size > 0) {
        assert.is(a.lookup(p.addr), p);
        assert.is(a.lookup(p.addr + p.size - 1), p);
      }
      assert.is(a.lookup(p.addr + p.size), undefined, 'the slot past the object is no object');
      // The rest of V(f, j) aliases other slots: never an object there.
      const other = V(p.frame, p.slot) + ((p.slot + 1) % (PAGE / p.cls)) * p.cls;
      if (PAGE / p.cls > 1) assert.is(a.lookup(other), undefined);
    }
    for (const { p } of live.values()) if (p.cls === null && p.size > 0) {
      assert.is(a.lookup(p.addr + Math.floor(p.size / 2)), p);
      assert.is(a.lookup(p.addr + p.size - 1), p);
    }
    assert.is(a.liveObjects, live.size);
    assert.is(a.liveBytes, bytes);
    assert.is(a.framesUsed, frameClass.size);
  }
});

test('frees are reused LIFO within a class, then the current frame, then a fresh frame', () => {
  const { a, maps } = make();
  const p = [0, 1, 2, 3].map(() => a.alloc(100, 16)); // class 128, slots 0..3 of frame 0
  const q = a.alloc(10, 16); // class 64 in frame 1: classes never share a frame
  assert.is(q.frame, 1);
  a.free(p[1]!.addr);
  a.free(p[3]!.addr);
  a.free(q.addr);
  assert.is(a.alloc(128, 8).addr, p[3]!.addr, 'most recently freed first');
  assert.is(a.alloc(65, 8).addr, p[1]!.addr);
  assert.equal(a.alloc(120, 8).slot, 4, 'then the next unused slot');
  assert.is(a.alloc(1, 1).addr, q.addr, 'the 64-byte slot, not a 128 one');
  for (let i = 5; i < 32; i++) assert.is(a.alloc(128, 16).slot, i);
  assert.is(maps.length, 2);
  const r = a.alloc(128, 16);
  assert.equal([r.frame, r.slot], [2, 0], 'a fresh frame when the class is full');
  assert.is(maps.length, 3);
});

test('large objects: contiguous page runs, first-fit reuse with split and coalesce, frames kept', () => {
  const { a, maps } = make();
  const x = a.alloc(3 * PAGE, 16);
  assert.equal(maps.at(-1), { kind: 'large', gva: LARGE, frames: [0, 1, 2] });
  assert.equal(x, { addr: LARGE, size: 3 * PAGE, cls: null, frame: 0, slot: -1 });
  const s = a.alloc(64, 16); // frame 3: the pool is shared
  assert.is(s.frame, 3);
  const y = a.alloc(2 * PAGE + 1, 16);
  assert.equal(maps.at(-1), { kind: 'large', gva: LARGE + 3 * PAGE, frames: [4, 5, 6] });
  const z = a.alloc(5000, 16);
  assert.is(z.addr, LARGE + 6 * PAGE);
  const n = maps.length;
  a.free(x.addr);
  const w = a.alloc(4097, 16); // 2 pages: the first two of x's run, no new mapping
  assert.equal([w.addr, w.frame], [LARGE, 0]);
  assert.is(maps.length, n);
  a.free(y.addr); // coalesces with x's leftover page (page 2) into pages 2..5
  const v = a.alloc(4 * PAGE, 16);
  assert.equal([v.addr, v.frame], [LARGE + 2 * PAGE, 2]);
  assert.is(maps.length, n);
  assert.is(a.lookup(LARGE + 5 * PAGE + 100), v);
  a.free(w.addr);
  a.free(v.addr);
  a.free(z.addr); // all free: one run of 8 pages
  const big = a.alloc(8 * PAGE, 16);
  assert.is(big.addr, LARGE);
  assert.is(maps.length, n);
  const more = a.alloc(9 * PAGE, 16);
  assert.is(more.addr, LARGE + 8 * PAGE, 'nothing fits: the bump grows');
  assert.is(maps.length, n + 1);
  assert.is(a.framesUsed, 8 + 1 + 9);
});

test('alignment: bumps the class up to 4096; larger alignments make page-aligned large objects', () => {
  const { a } = make();
  assert.is(a.alloc(10, 256).cls, 256);
  assert.is(a.alloc(10, 4096).cls, 4096);
  assert.is(a.alloc(3000, 64).cls, 4096);
  for (let i = 0; i < 10; i++) {
    const p = a.alloc(100, 128);
    assert.is(p.addr % 128, 0);
  }
  const big = a.alloc(100, 16384);
  assert.is(big.cls, null);
  assert.is(big.addr % 16384, 0);
  const big2 = a.alloc(5 * PAGE, 2 * 1024 * 1024);
  assert.is(big2.addr % (2 * 1024 * 1024), 0);
  a.free(big.addr);
  const again = a.alloc(1, 8192);
  assert.is(again.addr, big.addr, 'a freed run is reused when its aligned start fits');
  assert.throws(() => a.alloc(8, 3), /alignment must be a power of two/);
  assert.throws(() => a.alloc(-1, 8), /size must be an integer/);
  assert.throws(() => a.alloc(1.5, 8), /size must be an integer/);
});

test('realloc: in place within the class, otherwise moved and the old slot freed', () => {
  const { a } = make();
  const p = a.alloc(70, 16);
  const q = a.realloc(p.addr, 128);
  assert.equal([q.addr, q.size, q.cls], [p.addr, 128, 128]);
  assert.is(a.liveBytes, 128);
  const r = a.realloc(q.addr, 129);
  assert.is(r.cls, 256);
  assert.is.not(r.addr, p.addr);
  assert.is(a.liveObjects, 1);
  assert.is(a.lookup(p.addr), undefined);
  const s = a.realloc(r.addr, 10); // shrinks to class 64: moves, keeping layout a function of size
  assert.is(s.cls, 64);
  const aligned = a.alloc(10, 1024);
  assert.is(a.realloc(aligned.addr, 20).addr, aligned.addr, 'keeps the alignment it was allocated with');
  const l = a.alloc(2 * PAGE, 16);
  assert.is(a.realloc(l.addr, 2 * PAGE - 5).addr, l.addr);
  assert.is(a.realloc(l.addr, 2 * PAGE + 5).addr === l.addr, false);
  assert.throws(() => a.realloc(l.addr, 8), /double free|already freed/);
});

test('bad frees name the address and what is wrong', () => {
  const { a } = make();
  const p = a.alloc(100, 16);
  assert.throws(() => a.free(p.addr + 8), (e: Error) => e.message.includes(`free(0x${(p.addr + 8).toString(16)})`) && /inside the live object/.test(e.message));
  a.free(p.addr);
  assert.throws(() => a.free(p.addr), /double free/);
  assert.throws(() => a.free(0x1234), /free\(0x1234\): no object was allocated/);
  assert.throws(() => a.realloc(0x1234, 5), /realloc\(0x1234\)/);
  const z = a.alloc(0, 16); // a zero-size object still owns its slot and can be freed
  assert.is(a.lookup(z.addr), undefined);
  a.free(z.addr);
  assert.is(a.liveObjects, 0);
});

test('out of frames throws before anything is mapped and leaves the heap usable', () => {
  const { a, maps } = make(3);
  a.alloc(64, 16);
  a.alloc(128, 16);
  assert.throws(() => a.alloc(5 * PAGE, 16), /out of frames.*a large object of 5 pages needs 5 more.*2 of the pool's 3/);
  assert.is(maps.length, 2);
  assert.is(a.framesUsed, 2);
  a.alloc(256, 16);
  assert.throws(() => a.alloc(512, 16), /out of frames/);
  assert.is(a.alloc(64, 16).frame, 0, 'existing frames still serve');
});

test('a refusing onMap leaves the heap as it was', () => {
  let refuse = true;
  const a = new SpreadAllocator({ heapBase: HEAP, largeBase: LARGE, onMap: () => { if (refuse) throw new Error('space full'); } });
  assert.throws(() => a.alloc(64, 16), /space full/);
  assert.is(a.framesUsed, 0);
  refuse = false;
  assert.is(a.alloc(64, 16).frame, 0);
});

test('the small region may not grow into the large one; bad options are refused', () => {
  const a = new SpreadAllocator({ heapBase: 0x100000, largeBase: 0x100000 + 2 * MAX_PLANES * PAGE, onMap: () => {} });
  a.alloc(4096, 16);
  a.alloc(4096, 16);
  assert.throws(() => a.alloc(4096, 16), /would meet the large-object region/);
  const b = new SpreadAllocator({ heapBase: 0x100000 + PAGE * 4, largeBase: 0x100000, onMap: () => {} });
  b.alloc(3 * PAGE, 16);
  assert.throws(() => b.alloc(2 * PAGE, 16), /would meet/);
  assert.throws(() => new SpreadAllocator({ heapBase: 100, largeBase: LARGE, onMap: () => {} }), /heapBase must be a 4 KiB-aligned/);
  assert.throws(() => new SpreadAllocator({ heapBase: HEAP, largeBase: HEAP, onMap: () => {} }), /must differ/);
  assert.throws(() => new SpreadAllocator({ heapBase: HEAP, largeBase: LARGE, onMap: () => {}, maxFrames: -1 }), /maxFrames/);
});

test.run();
