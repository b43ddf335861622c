// The packed baseline: cells packed contiguously in class pages, no overlap, no object up to a page
// straddling one, LIFO reuse, large objects as page runs.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { PACKED_CLASSES, PAGE, packedClassOf, type MapRequest, type Placement } from '../src/alloc/classes.ts';
import { PackedAllocator } from '../src/alloc/packed.ts';
import { rng } from './support/rng.ts';

const HEAP = 0x10_0000_0000;
const LARGE = 0x40_0000_0000;


function make(maxFrames?: number) {
  const maps: MapRequest[] = [];
  const a = new PackedAllocator({ heapBase: HEAP, largeBase: LARGE, onMap: (r) => maps.push(r), maxFrames });
  return { a, maps };
}

test('classes: 16-byte steps to 128, then four per power of two up to 4096', () => {
  assert.equal(PACKED_CLASSES.slice(0, 12), [16, 32, 48, 64, 80, 96, 112, 128, 160, 192, 224, 256]);
  assert.is(PACKED_CLASSES.at(-1), 4096);
  assert.is(PACKED_CLASSES.length, 8 + 4 * 5);
  assert.is(packedClassOf(0), 16);
  assert.is(packedClassOf(17), 32);
  assert.is(packedClassOf(129), 160);
  assert.is(packedClassOf(3585), 4096);
  assert.is(packedClassOf(4097), null);
  for (let s = 0; s <= PAGE; s++) {
    const c = packedClassOf(s)!;
    const i = PACKED_CLASSES.indexOf(c);
    assert.ok(c >= s && (i === 0 || PACKED_CLASSES[i - 1]! < s), `size ${s} -> ${c}`);
  }
});

test('cells are contiguous in one page per class, mapped 1:1', () => {
  const { a, maps } = make();
  const ps = Array.from({ length: 85 }, () => a.alloc(40, 16)); // class 48: 85 cells per page
  assert.equal(maps, [{ kind: 'slab', frame: 0, cls: 48, slots: 85, vpages: [HEAP] }]);
  ps.forEach((p, i) => assert.equal(p, { addr: HEAP + i * 48, size: 40, cls: 48, frame: 0, slot: i }));
  const q = a.alloc(33, 16);
  assert.equal(maps.at(-1), { kind: 'slab', frame: 1, cls: 48, slots: 85, vpages: [HEAP + PAGE] });
  assert.is(q.addr, HEAP + PAGE);
  assert.is(a.lookup(HEAP + 85 * 48), undefined, 'the tail of a page past its last cell');
  assert.is(a.lookup(HEAP + 39), ps[0]);
  assert.is(a.lookup(HEAP + 47), undefined, 'padding inside a cell is not the object');
});

test('random stream: no overlap, no straddling, lookup agrees, reuse is LIFO per class', () => {
  const { a, maps } = make();
  const r = rng(11);
  const live = new Map<number, { p: Placement; align: number }>();
  const pageClass = new Map<number, number>();
  let seen = 0;
  const lifo = new Map<number, number[]>(); // class -> freed addresses
  for (let step = 0; step < 4000; step++) {
    const addrs = [...live.keys()];
    if (r() < 0.6 || addrs.length === 0) {
      const size = r() < 0.9 ? Math.floor(r() * 600) : Math.floor(r() * 12000);
      const align = r() < 0.85 ? 16 : 2 ** Math.floor(r() * 13);
      const p = a.alloc(size, align);
      if (p.cls !== null) {
        const stack = lifo.get(p.cls) ?? [];
        if (stack.length > 0) assert.is(p.addr, stack.pop(), 'the most recently freed cell of the class');
        assert.is(p.cls, PACKED_CLASSES.find((c) => c >= Math.max(size, 1) && c % align === 0));
      }
      live.set(p.addr, { p, align });
    } else {
      const addr = addrs[Math.floor(r() * addrs.length)]!;
      const { p } = live.get(addr)!;
      a.free(addr);
      live.delete(addr);
      if (p.cls !== null) lifo.set(p.cls, [...(lifo.get(p.cls) ?? []), addr]);
    }
    for (; seen < maps.length; seen++) {
      const m = maps[seen]!;
      if (m.kind === 'slab') {
        assert.is(m.vpages.length, 1);
        assert.is(m.slots, Math.floor(PAGE / m.cls));
        pageClass.set(m.vpages[0]!, m.cls);
      }
    }
    if (step % 100 !== 99) continue;
    const objs = [...live.values()].map((x) => x.p).sort((x, y) => x.addr - y.addr);
    for (let i = 0; i < objs.length; i++) {
      const p = objs[i]!;
      const { align } = live.get(p.addr)!;
      if (i + 1 < objs.length) assert.ok(p.addr + Math.max(p.size, 1) <= objs[i + 1]!.addr, 'no overlap');
      assert.is(p.addr % Math.min(align, PAGE), 0);
      if (p.cls === null) continue;
      const page = Math.floor(p.addr / PAGE) * PAGE;
      assert.is(pageClass.get(page), p.cls, 'in a page of its class');
      assert.is((p.addr - page) % p.cls, 0, 'at a cell boundary');
      assert.is(p.slot, (p.addr - page) / p.cls);
      assert.ok(p.addr + p.size <= page + PAGE, 'does not straddle its page');
      if (p.size > 0) assert.is(a.lookup(p.addr + p.size - 1), p);
      if (p.size < p.cls) assert.is(a.lookup(p.addr + p.size), undefined);
    }
    assert.is(a.liveObjects, live.size);
  }
});

test('large objects and errors behave as in spread', () => {
  const { a, maps } = make();
  const x = a.alloc(3 * PAGE, 16);
  assert.equal(maps.at(-1), { kind: 'large', gva: LARGE, frames: [0, 1, 2] });
  a.free(x.addr);
  assert.is(a.alloc(PAGE + 1, 16).addr, LARGE);
  assert.is(maps.length, 1);
  assert.is(a.alloc(10, 8192).addr % 8192, 0);
  const p = a.alloc(24, 16);
  assert.throws(() => a.free(p.addr + 4), /inside the live object/);
  a.free(p.addr);
  assert.throws(() => a.free(p.addr), /double free/);
  assert.throws(() => a.free(HEAP + 999 * PAGE), /no object was allocated/);
});

test('realloc stays within its class, moves across classes', () => {
  const { a } = make();
  const p = a.alloc(20, 16);
  assert.is(a.realloc(p.addr, 32).addr, p.addr);
  const q = a.realloc(p.addr, 33);
  assert.is(q.cls, 48);
  assert.is(a.lookup(p.addr), undefined);
  assert.is(a.liveObjects, 1);
  assert.is(a.liveBytes, 33);
  const al = a.alloc(100, 64); // class 128 (a multiple of 64), not 112
  assert.is(al.cls, 128);
  assert.is(a.realloc(al.addr, 120).addr, al.addr);
});

test.run();
