// The host-side allocator for recorded wasm programs: placement, alignment, reuse order, realloc
// in place and by moving, calloc zeroing, bad frees, determinism and growth of linear memory.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { WasmHeap, HeapError, RUN_PAGE, SMALL_MAX, WASM_PAGE } from '../src/record/wasm-heap.ts';

const BASE = 2 * WASM_PAGE;

function heap(opts: { pages?: number; maximum?: number; limit?: number } = {}) {
  const memory = new WebAssembly.Memory({ initial: opts.pages ?? 2, maximum: opts.maximum ?? 4096 });
  return { memory, h: new WasmHeap(memory, { base: BASE, limit: opts.limit }) };
}

test('objects are placed above the base, 16-byte aligned, without overlapping', () => {
  const { h } = heap();
  const sizes = [1, 16, 17, 100, 0, 2048, 2049, 5000, 24, 24];
  const got = sizes.map((s) => ({ p: h.malloc(s), s }));
  for (const { p, s } of got) {
    assert.ok(p >= BASE, `0x${p.toString(16)} >= base`);
    assert.is(p % 16, 0);
    assert.is(h.sizeOf(p), s);
  }
  const spans = got.map(({ p, s }) => [p, p + Math.max(s, 1)]).sort((a, b) => a[0] - b[0]);
  for (let i = 1; i < spans.length; i++) assert.ok(spans[i][0] >= spans[i - 1][1], 'no overlap');
  // Large objects start on a page; same-class small objects sit one slot apart.
  assert.is(got[6].p % RUN_PAGE, 0);
  assert.is(got[7].p % RUN_PAGE, 0);
  assert.is(got[9].p - got[8].p, 32);
});

test('aligned_alloc honours every power of two up to 64 KiB and refuses others', () => {
  const { h } = heap();
  for (let a = 1; a <= 65536; a *= 2) {
    for (const size of [1, 40, 3000, 70000]) {
      const p = h.alignedAlloc(a, size);
      assert.ok(p > 0, `align ${a} size ${size}`);
      assert.is(p % Math.max(a, 16), 0, `align ${a} size ${size} -> 0x${p.toString(16)}`);
    }
  }
  assert.is(h.alignedAlloc(24, 8), 0);
  assert.match(h.refusal!, /not a power of two/);
});

test('freed small slots are reused last-in first-out within their class', () => {
  const { h } = heap();
  const [a, b, c] = [h.malloc(40), h.malloc(40), h.malloc(40)];
  const other = h.malloc(100);
  h.free(a);
  h.free(c);
  const another = h.malloc(100);
  assert.ok(another !== a && another !== c, 'another class does not take them');
  assert.is(h.malloc(33), c);
  assert.is(h.malloc(48), a);
  assert.ok(b && other);
});

test('freed page runs are reused first-fit and coalesce with their neighbours', () => {
  const { h } = heap();
  const x = h.malloc(3 * RUN_PAGE);
  const y = h.malloc(RUN_PAGE * 2);
  const z = h.malloc(RUN_PAGE);
  const guard = h.malloc(RUN_PAGE);
  h.free(x);
  h.free(y);
  // x and y merged into one 5-page run at x: a 4-page object fits there.
  assert.is(h.malloc(4 * RUN_PAGE), x);
  assert.is(h.malloc(RUN_PAGE), x + 4 * RUN_PAGE);
  assert.ok(z && guard);
  // Freeing the topmost run lowers the top, so the next large object lands at the same place.
  const top = h.end;
  h.free(guard);
  assert.is(h.end, top - RUN_PAGE);
  assert.is(h.malloc(RUN_PAGE), guard);
});

test('realloc stays in place when it fits, else moves the contents', () => {
  const { h, memory } = heap();
  const p = h.malloc(100); // 112-byte slot
  new Uint8Array(memory.buffer).set([1, 2, 3, 4, 5], p);
  assert.is(h.realloc(p, 112), p, 'grow within the slot');
  assert.is(h.realloc(p, 60), p, 'shrink, still more than half the slot');
  assert.is(h.sizeOf(p), 60);
  const q = h.realloc(p, 1000);
  assert.is.not(q, p);
  assert.equal([...new Uint8Array(memory.buffer, q, 5)], [1, 2, 3, 4, 5]);
  assert.is(h.sizeOf(p), undefined, 'the old object is freed');
  // A large object extends into the top, and shrinks in place.
  const big = h.malloc(3 * RUN_PAGE);
  assert.is(h.realloc(big, 10 * RUN_PAGE), big);
  assert.is(h.realloc(big, 5 * RUN_PAGE + 1), big);
  assert.is(h.malloc(4 * RUN_PAGE), big + 6 * RUN_PAGE, 'the released tail is reused');
  // realloc(0, n) is malloc; the live total follows requested sizes.
  const r = h.realloc(0, 24);
  assert.is(h.sizeOf(r), 24);
  assert.is(h.live, 1000 + (5 * RUN_PAGE + 1) + 4 * RUN_PAGE + 24);
});

test('calloc zeroes reused memory and refuses n*size overflow', () => {
  const { h, memory } = heap();
  const p = h.malloc(64);
  new Uint8Array(memory.buffer, p, 64).fill(0xee);
  h.free(p);
  const q = h.calloc(8, 8);
  assert.is(q, p);
  assert.ok(new Uint8Array(memory.buffer, q, 64).every((b) => b === 0));
  assert.is(h.calloc(0x10000, 0x10000), 0);
  assert.match(h.refusal!, /overflows/);
});

test('double free and wild frees throw, naming the address', () => {
  const { h } = heap();
  const p = h.malloc(8);
  h.free(p);
  assert.throws(() => h.free(p), (e: unknown) => e instanceof HeapError && e.addr === p && /already freed/.test(e.message) && e.message.includes(`0x${p.toString(16)}`));
  assert.throws(() => h.free(p + 16), (e: unknown) => e instanceof HeapError && /not an address malloc returned/.test(e.message));
  assert.throws(() => h.realloc(p, 10), /already freed/);
  h.free(0); // free(NULL) is allowed
});

test('the same calls give the same addresses', () => {
  const run = () => {
    const { h } = heap({ maximum: 8192 });
    let seed = 12345;
    const rnd = (n: number) => ((seed = (seed * 1103515245 + 12345) >>> 0) >>> 8) % n;
    const live: number[] = [];
    const out: number[] = [];
    for (let i = 0; i < 3000; i++) {
      const op = rnd(10);
      if (op < 5 || live.length === 0) {
        const size = rnd(4) === 0 ? rnd(40000) : rnd(300);
        const p = op === 0 ? h.alignedAlloc(1 << rnd(13), size) : h.malloc(size);
        live.push(p);
        out.push(p);
      } else if (op < 8) {
        h.free(live.splice(rnd(live.length), 1)[0]);
      } else {
        const k = rnd(live.length);
        live[k] = h.realloc(live[k], rnd(20000));
        out.push(live[k]);
      }
    }
    return out;
  };
  const a = run();
  assert.ok(a.every((p) => p > 0));
  assert.equal(run(), a);
});

test('the heap grows linear memory as needed and refuses past its limit or the maximum', () => {
  const { h, memory } = heap({ pages: 2, maximum: 6 });
  const p = h.malloc(WASM_PAGE);
  assert.is(p, BASE);
  assert.is(memory.buffer.byteLength, 3 * WASM_PAGE);
  assert.ok(h.malloc(2 * WASM_PAGE) > 0);
  assert.is(memory.buffer.byteLength, 5 * WASM_PAGE);
  assert.is(h.malloc(2 * WASM_PAGE), 0, 'the memory maximum is 6 pages');
  assert.match(h.refusal!, /cannot grow from 5 to 7 wasm pages/);

  const lim = heap({ limit: BASE + 4 * RUN_PAGE });
  assert.ok(lim.h.malloc(3 * RUN_PAGE) > 0);
  assert.is(lim.h.malloc(2 * RUN_PAGE), 0);
  assert.match(lim.h.refusal!, /past its limit 0x24000/);
  assert.ok(lim.h.malloc(SMALL_MAX) === 0, 'a new slab does not fit either');
  assert.is(lim.h.malloc(RUN_PAGE), BASE + 3 * RUN_PAGE, 'what fits is still served');
});

test.run();
