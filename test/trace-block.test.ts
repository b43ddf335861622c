// EventBlock helpers: BlockBuilder (replay without a file) produces the same blocks a trace file
// decodes to, emitBlock/blockEvents/EventCollector agree, and a trace copies through emitBlock.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BlockBuilder, EventCollector, blockEvents, emitBlock, emitEvents } from '../src/trace/block.ts';
import { TraceWriter } from '../src/trace/writer.ts';
import { TraceReader } from '../src/trace/reader.ts';
import { EV_MODIFY, EV_WRITE, type EventBlock, type TraceEvent } from '../src/trace/events.ts';

const dir = mkdtempSync(join(tmpdir(), 'granule-trace-block-'));
test.after(() => rmSync(dir, { recursive: true, force: true }));

const EVENTS: TraceEvent[] = [
  { type: 'fetch', addr: 0x401000, size: 4 },
  { type: 'read', addr: 0x7ffc12345678, size: 8 },
  { type: 'write', addr: 0x601040, size: 3, value: Uint8Array.of(1, 2, 3) },
  { type: 'modify', addr: 0x601040, size: 1, value: Uint8Array.of(9) },
  { type: 'alloc', addr: 0x555555559000, size: 24, align: 16 },
  { type: 'realloc', addr: 0x555555559000, newAddr: 0x55555555a000, size: 48 },
  { type: 'free', addr: 0x55555555a000 },
  { type: 'epoch' },
  { type: 'thread', tid: 3 },
  { type: 'write', addr: 0x1000, size: 100, value: Uint8Array.from({ length: 100 }, (_, i) => i) },
];

function build(events: TraceEvent[], capacity: number): EventBlock[] {
  const blocks: EventBlock[] = [];
  const b = new BlockBuilder((blk) => blocks.push(blk), capacity);
  emitEvents(events, b);
  b.flush();
  b.flush(); // nothing pending: no empty block
  return blocks;
}

test('BlockBuilder hands over full blocks as they fill and the rest at flush; blocks may be kept', () => {
  const blocks = build(EVENTS, 4);
  assert.equal(blocks.map((b) => b.count), [4, 4, 2]);
  assert.equal(blocks.flatMap(blockEvents), EVENTS);
  for (const b of blocks) {
    assert.is(b.kind.length, b.count);
    for (let i = 0; i < b.count; i++) if (b.kind[i] > 3) assert.is(b.valueOff[i], -1);
  }
});

test('BlockBuilder blocks hold what a trace file decodes to (columns equal)', () => {
  const path = join(dir, 'same.grt');
  const w = TraceWriter.create(path, { source: 'hand', pageSize: 4096 }, { chunkEvents: 4 });
  emitEvents(EVENTS, w);
  w.close();
  const r = TraceReader.open(path);
  const fromFile = [...r.blocks()];
  r.close();
  const built = build(EVENTS, 4);
  assert.is(fromFile.length, built.length);
  fromFile.forEach((f, k) => {
    const b = built[k];
    assert.equal([...f.kind], [...b.kind], `block ${k} kind`);
    assert.equal([...f.addr], [...b.addr], `block ${k} addr`);
    assert.equal([...f.size], [...b.size], `block ${k} size`);
    assert.equal([...f.arg], [...b.arg], `block ${k} arg`);
    assert.equal([...f.valueOff].map((o) => o >= 0), [...b.valueOff].map((o) => o >= 0), `block ${k} has value`);
    assert.equal(blockEvents(f), blockEvents(b));
  });
});

test('the builder and the collector copy values, so a producer may reuse its buffer', () => {
  const buf = new Uint8Array(2);
  const blocks: EventBlock[] = [];
  const b = new BlockBuilder((blk) => blocks.push(blk), 8);
  const c = new EventCollector();
  for (const sink of [b, c]) {
    buf.set([1, 2]);
    sink.access(EV_WRITE, 0x10, 2, buf);
    buf.set([3, 4]);
    sink.access(EV_MODIFY, 0x12, 2, buf);
  }
  b.flush();
  const want: TraceEvent[] = [
    { type: 'write', addr: 0x10, size: 2, value: Uint8Array.of(1, 2) },
    { type: 'modify', addr: 0x12, size: 2, value: Uint8Array.of(3, 4) },
  ];
  assert.equal(blockEvents(blocks[0]), want);
  assert.equal(c.events, want);
});

test('emitBlock replays into any sink: the collector sees what blockEvents returns', () => {
  for (const b of build(EVENTS, 3)) {
    const c = new EventCollector();
    emitBlock(b, c);
    assert.equal(c.events, blockEvents(b));
  }
});

test('a trace copies block by block through emitBlock into a writer', () => {
  const src = join(dir, 'src.grt');
  const dst = join(dir, 'dst.grt');
  const meta = { source: 'hand', pageSize: 4096, custom: [1, 'two'] };
  const w = TraceWriter.create(src, meta, { chunkEvents: 3, codec: 'brotli' });
  emitEvents(EVENTS, w);
  w.close();
  const r = TraceReader.open(src);
  const copy = TraceWriter.create(dst, r.meta, { codec: 'none' });
  for (const b of r.blocks({ reuse: true })) emitBlock(b, copy);
  r.close();
  copy.close();
  const back = TraceReader.open(dst);
  assert.equal(back.meta, meta);
  assert.equal([...back.events()], EVENTS);
  back.close();
});

test('BlockBuilder checks arguments as the writer does', () => {
  const b = new BlockBuilder(() => {}, 4);
  b.epoch();
  assert.throws(() => b.access(EV_WRITE, 2 ** 53, 1), /^event 2 \(write\): addr must be an integer in \[0, 2\^53\)/);
  assert.throws(() => b.alloc(0, 8, 12), /event 2 \(alloc\): align must be a power of two/);
  assert.throws(() => b.thread(0.5), /event 2 \(thread\): tid/);
  assert.throws(() => new BlockBuilder(() => {}, 0), /capacity must be a positive integer/);
  assert.is(b.events, 1);
});

test.run();
