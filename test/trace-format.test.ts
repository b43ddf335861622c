// The binary trace format: every event kind survives write -> read unchanged under every codec and
// chunking, the varint edge cases, metadata, and the worked example in docs/trace-format.md is what
// the writer really produces.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { TraceWriter, type Codec, type WriterOptions } from '../src/trace/writer.ts';
import { TraceReader, traceInfo } from '../src/trace/reader.ts';
import { blockEvents, emitEvents } from '../src/trace/block.ts';
import { EV_KINDS, EV_NAMES, type TraceEvent, type TraceMeta } from '../src/trace/events.ts';
import { putSvarint, putUvarint, MAX_VARINT_BYTES } from '../src/trace/format.ts';
import { Rng } from '../src/rng.ts';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const dir = mkdtempSync(join(tmpdir(), 'granule-trace-format-'));
test.after(() => rmSync(dir, { recursive: true, force: true }));

const META: TraceMeta = { source: 'hand', pageSize: 4096 };
const CODECS: Codec[] = ['none', 'deflate', 'brotli'];
let fileNo = 0;

function write(events: TraceEvent[], opts: WriterOptions = {}, meta: TraceMeta = META) {
  const path = join(dir, `t${fileNo++}.grt`);
  const w = TraceWriter.create(path, meta, opts);
  emitEvents(events, w);
  return w.close();
}

function readAll(path: string): TraceEvent[] {
  const r = TraceReader.open(path);
  try {
    return [...r.events()];
  } finally {
    r.close();
  }
}

function roundTrip(events: TraceEvent[], opts: WriterOptions = {}, label = '') {
  const sum = write(events, opts);
  assert.equal(readAll(sum.path), events, `${label} ${JSON.stringify(opts)}`);
  return sum;
}

const bytes = (...b: number[]) => Uint8Array.from(b);

const EVERY_KIND: TraceEvent[] = [
  { type: 'read', addr: 0x7ffc12345678, size: 8 },
  { type: 'write', addr: 0x7ffc12345670, size: 4, value: bytes(1, 2, 3, 4) },
  { type: 'modify', addr: 0x601040, size: 2, value: bytes(0xff, 0) },
  { type: 'fetch', addr: 0x401000, size: 3 },
  { type: 'alloc', addr: 0x5555_5555_9000, size: 24, align: 16 },
  { type: 'alloc', addr: 0x5555_5555_a000, size: 0, align: 1 },
  { type: 'realloc', addr: 0x5555_5555_9000, newAddr: 0x5555_5555_b000, size: 4096 },
  { type: 'realloc', addr: 0x5555_5555_b000, newAddr: 0x1000, size: 0 },
  { type: 'free', addr: 0x5555_5555_a000 },
  { type: 'epoch' },
  { type: 'thread', tid: 2 },
  { type: 'read', addr: 0, size: 1, value: bytes(9) },
  { type: 'epoch' },
  { type: 'thread', tid: 0 },
];

test('every event kind round-trips under every codec and chunk size', () => {
  for (const codec of CODECS) {
    for (const chunkEvents of [1, 2, 3, 5, 64]) roundTrip(EVERY_KIND, { codec, chunkEvents }, 'every kind');
  }
});

test('the summary and traceInfo count events per kind and chunks', () => {
  const sum = roundTrip(EVERY_KIND, { chunkEvents: 4 });
  const want = new Array(EV_KINDS).fill(0);
  for (const e of EVERY_KIND) want[EV_NAMES.indexOf(e.type)]++;
  assert.equal(sum.counts, want);
  assert.is(sum.events, EVERY_KIND.length);
  assert.is(sum.chunks, Math.ceil(EVERY_KIND.length / 4));
  assert.is(sum.bytes, readFileSync(sum.path).length);
  const info = traceInfo(sum.path);
  assert.equal(
    { events: info.events, counts: info.counts, chunks: info.chunks, bytes: info.bytes, version: info.version, meta: info.meta },
    { events: sum.events, counts: want, chunks: sum.chunks, bytes: sum.bytes, version: '1.0', meta: META },
  );
  assert.ok(info.rawBytes > 0);
});

test('access sizes: the coded ones, explicit ones (3, 100, 4096, 2^40) and values of every size', () => {
  const sizes = [1, 2, 3, 4, 5, 7, 8, 16, 31, 32, 33, 64, 65, 100, 128, 4096];
  const events: TraceEvent[] = [];
  for (const size of sizes) {
    events.push({ type: 'read', addr: 0x1000, size });
    events.push({ type: 'write', addr: 0x2000, size, value: Uint8Array.from({ length: size }, (_, i) => (i * 7 + size) & 0xff) });
  }
  events.push({ type: 'fetch', addr: 0x3000, size: 2 ** 40 });
  for (const codec of CODECS) roundTrip(events, { codec, chunkEvents: 7 }, 'sizes');
});

test('addresses: 12 hex digits, 2^53 - 1, and deltas of almost +-2^53 in both directions', () => {
  const top = 2 ** 53 - 1;
  const addrs = [0, 0x7ffc12345678, top, 0, top, 1, top - 1, 0x555555554000, 0x7fffffffeff8, 2 ** 52, 2 ** 52 - 1, 63, 64, 65, 0];
  const events: TraceEvent[] = [];
  for (const addr of addrs) {
    events.push({ type: 'read', addr, size: 8 });
    events.push({ type: 'fetch', addr, size: 1 });
    events.push({ type: 'alloc', addr, size: 2 ** 53 - 1 - addr, align: 8 });
    events.push({ type: 'free', addr });
    events.push({ type: 'realloc', addr, newAddr: top - addr, size: 16 });
    events.push({ type: 'write', addr, size: 64 }); // the delta base clamps when addr + size passes 2^53
  }
  for (const codec of CODECS) roundTrip(events, { codec }, 'addresses');
  roundTrip(events, { chunkEvents: 1 }, 'addresses');
});

test('alignments from 1 to 2^52, including the escape above 2^14', () => {
  const events: TraceEvent[] = [];
  for (let log = 0; log <= 52; log++) events.push({ type: 'alloc', addr: 0x10000 * log, size: log, align: 2 ** log });
  roundTrip(events, { codec: 'none' });
});

test('thread ids up to 2^53 - 1', () => {
  roundTrip([0, 1, 127, 128, 2 ** 31, 2 ** 32 + 5, 2 ** 53 - 1].map((tid) => ({ type: 'thread', tid })), {});
});

test('random event streams round-trip (seeded)', () => {
  const r = new Rng(0x9e3779b9);
  const rnd = () => r.float();
  const pick = <T>(a: T[]) => r.pick(a);
  for (let round = 0; round < 6; round++) {
    const events: TraceEvent[] = [];
    let base = Math.floor(rnd() * 2 ** 47);
    for (let i = 0; i < 3000; i++) {
      const r = rnd();
      const addr = r < 0.5 ? (base += pick([1, 2, 4, 8])) : r < 0.9 ? Math.floor(rnd() * 2 ** 48) : Math.floor(rnd() * 2 ** 53);
      const t = pick(['read', 'write', 'modify', 'fetch', 'read', 'write', 'alloc', 'free', 'realloc', 'epoch', 'thread'] as const);
      const size = pick([1, 2, 4, 8, 3, 6, 12, 64, 100]);
      switch (t) {
        case 'alloc': events.push({ type: t, addr, size, align: 2 ** Math.floor(rnd() * 20) }); break;
        case 'free': events.push({ type: t, addr }); break;
        case 'realloc': events.push({ type: t, addr, newAddr: Math.floor(rnd() * 2 ** 48), size }); break;
        case 'epoch': events.push({ type: t }); break;
        case 'thread': events.push({ type: t, tid: Math.floor(rnd() * 100) }); break;
        default:
          events.push(rnd() < 0.3
            ? { type: t, addr, size, value: Uint8Array.from({ length: size }, () => Math.floor(rnd() * 256)) }
            : { type: t, addr, size });
      }
    }
    roundTrip(events, { codec: CODECS[round % 3], chunkEvents: [1000, 1, 65536, 333, 7, 2999][round] }, `round ${round}`);
  }
});

test('an empty trace has a header and an end record and reads as no events', () => {
  for (const codec of CODECS) {
    const sum = write([], { codec });
    assert.is(sum.events, 0);
    assert.is(sum.chunks, 0);
    assert.equal(readAll(sum.path), []);
    const r = TraceReader.open(sum.path);
    assert.equal([...r.blocks()], []);
    r.close();
    assert.is(traceInfo(sum.path).events, 0);
  }
});

test('metadata round-trips, unknown keys and non-ASCII text included', () => {
  const meta: TraceMeta = {
    source: 'granule-record-native',
    command: ['./prog', '--name', 'Zoë ✓', ''],
    recorder: 'valgrind-3.19.0 lackey + granule-preload 1',
    pageSize: 16384,
    created: '2024-05-01T12:00:00.000Z',
    futureKey: { nested: [1, 2, { x: null }], flag: true },
    another: 'kept',
  };
  const sum = write([{ type: 'epoch' }], {}, meta);
  const r = TraceReader.open(sum.path);
  assert.equal(r.meta, meta);
  assert.equal(r.version, { major: 1, minor: 0 });
  assert.is(r.path, sum.path);
  r.close();
});

test('blocks are fresh by default (kept blocks stay valid); reuse shares buffers between blocks', () => {
  const events: TraceEvent[] = [];
  for (let i = 0; i < 50; i++) events.push({ type: 'write', addr: 0x1000 + 8 * i, size: 8, value: bytes(i, 0, 0, 0, 0, 0, 0, i) });
  const sum = write(events, { chunkEvents: 10 });
  const r = TraceReader.open(sum.path);
  const kept = [...r.blocks()];
  assert.equal(kept.map((b) => b.count), [10, 10, 10, 10, 10]);
  assert.equal(kept.flatMap(blockEvents), events);
  const positions: number[] = [];
  for (const _block of r.blocks()) positions.push(r.position);
  assert.is(positions.length, 5);
  assert.ok(positions.every((p, i) => i === 0 || p > positions[i - 1]));
  assert.is(r.position, readFileSync(sum.path).length);
  const buffers = new Set<ArrayBufferLike>();
  let n = 0;
  for (const b of r.blocks({ reuse: true })) {
    assert.equal(blockEvents(b), events.slice(n, n + b.count)); // valid while it is the current block
    n += b.count;
    buffers.add(b.addr.buffer);
  }
  assert.is(buffers.size, 1);
  r.close();
});

test('uvarint and svarint: lengths at the 7-bit boundaries and at most 8 bytes up to 2^53 - 1', () => {
  const buf = new Uint8Array(16);
  const cases: [number, number][] = [[0, 1], [127, 1], [128, 2], [16383, 2], [16384, 3], [2 ** 31 - 1, 5], [2 ** 31, 5], [2 ** 35 - 1, 5], [2 ** 35, 6], [2 ** 49 - 1, 7], [2 ** 49, 8], [2 ** 53 - 1, 8]];
  for (const [v, n] of cases) assert.is(putUvarint(buf, 0, v), n, `uvarint ${v}`);
  assert.equal([...buf.subarray(0, putUvarint(buf, 0, 300))], [0xac, 0x02]);
  // sign in bit 0, six magnitude bits in the first byte
  assert.equal([...buf.subarray(0, putSvarint(buf, 0, 0))], [0x00]);
  assert.equal([...buf.subarray(0, putSvarint(buf, 0, -1))], [0x03]);
  assert.equal([...buf.subarray(0, putSvarint(buf, 0, 63))], [0x7e]);
  assert.equal([...buf.subarray(0, putSvarint(buf, 0, -64))], [0x81, 0x01]);
  assert.is(putSvarint(buf, 0, -(2 ** 53 - 1)), MAX_VARINT_BYTES);
  assert.is(putSvarint(buf, 0, 2 ** 53 - 1), MAX_VARINT_BYTES);
});

/** The fenced block after "<!-- worked-example -->" in the docs, as bytes. */
function docExample(): Uint8Array {
  const doc = readFileSync(join(root, 'docs', 'trace-format.md'), 'utf8');
  const m = doc.match(/<!-- worked-example -->\s*```[a-z]*\n([\s\S]*?)```/);
  if (!m) throw new Error('docs/trace-format.md has no worked example block');
  const hex: string[] = [];
  for (const line of m[1].split('\n')) {
    // "0010  7b 22 ...   comment": offset, then byte pairs up to two spaces
    const body = line.match(/^[0-9a-f]{4}  ((?:[0-9a-f]{2} ?)+)/);
    if (body) hex.push(...body[1].trim().split(/\s+/));
  }
  return Uint8Array.from(hex.map((h) => parseInt(h, 16)));
}

const DOC_EXAMPLE_EVENTS: TraceEvent[] = [
  { type: 'fetch', addr: 0x401000, size: 4 },
  { type: 'read', addr: 0x7ffc12345678, size: 8 },
  { type: 'write', addr: 0x7ffc12345680, size: 2, value: bytes(0x34, 0x12) },
  { type: 'alloc', addr: 0x5555_5555_92a0, size: 100, align: 16 },
  { type: 'free', addr: 0x5555_5555_92a0 },
  { type: 'thread', tid: 2 },
];

test('the worked example in docs/trace-format.md is byte for byte what the writer produces', () => {
  const sum = write(DOC_EXAMPLE_EVENTS, { codec: 'none' }, { source: 'hand', pageSize: 4096 });
  const file = readFileSync(sum.path);
  assert.equal([...docExample()].map((b) => b.toString(16).padStart(2, '0')).join(' '), [...file].map((b) => b.toString(16).padStart(2, '0')).join(' '));
  assert.equal(readAll(sum.path), DOC_EXAMPLE_EVENTS);
});

test.run();
