// Reading damaged, cut, foreign and newer files: every problem is a TraceError naming the file and
// the byte offset, never wrong events; and reading a large trace block by block keeps memory bounded.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { TraceWriter, type Codec, type WriterOptions } from '../src/trace/writer.ts';
import { TraceReader, isGranuleTrace, traceInfo } from '../src/trace/reader.ts';
import { emitEvents } from '../src/trace/block.ts';
import { EV_KINDS, EV_WRITE, TraceError, type TraceEvent } from '../src/trace/events.ts';
import { crc32, endRecordBytes, putU64, CHUNK_HEADER_BYTES, FILE_HEADER_BYTES, MAGIC } from '../src/trace/format.ts';

const dir = mkdtempSync(join(tmpdir(), 'granule-trace-reader-'));
test.after(() => rmSync(dir, { recursive: true, force: true }));
let fileNo = 0;
const tmp = (name = 'f') => join(dir, `${name}${fileNo++}.grt`);

const EVENTS: TraceEvent[] = [];
for (let i = 0; i < 40; i++) {
  EVENTS.push({ type: 'read', addr: 0x7ffc12340000 + 8 * i, size: 8 });
  if (i % 3 === 0) EVENTS.push({ type: 'write', addr: 0x601000 + i, size: 2, value: Uint8Array.of(i, 255 - i) });
  if (i % 7 === 0) EVENTS.push({ type: 'alloc', addr: 0x555555559000 + 64 * i, size: 40, align: 16 });
  if (i % 11 === 0) EVENTS.push({ type: 'thread', tid: i });
}

function writeTrace(events: TraceEvent[], opts: WriterOptions = {}): string {
  const path = tmp();
  const w = TraceWriter.create(path, { source: 'hand', pageSize: 4096 }, opts);
  emitEvents(events, w);
  w.close();
  return path;
}

/** Reads everything; returns the events got before an error and the error. */
function readCatching(path: string): { events: TraceEvent[]; error?: unknown } {
  const events: TraceEvent[] = [];
  let r: TraceReader | undefined;
  try {
    r = TraceReader.open(path);
    for (const e of r.events()) events.push(e);
    return { events };
  } catch (error) {
    return { events, error };
  } finally {
    r?.close();
  }
}

function expectTraceError(path: string, pattern: RegExp, offset?: number): TraceError {
  const { error } = readCatching(path);
  assert.ok(error instanceof TraceError, `expected a TraceError matching ${pattern}, got ${error}`);
  const e = error as TraceError;
  assert.is(e.file, path);
  assert.match(e.message, pattern);
  assert.ok(e.message.startsWith(`${path}: offset ${e.where.offset}: `), e.message);
  if (offset !== undefined) assert.is(e.where.offset, offset, e.message);
  return e;
}

/** Offsets of the chunk headers and the end record of a well-formed file. */
function layout(buf: Buffer): { chunks: number[]; end: number } {
  let off = FILE_HEADER_BYTES + buf.readUInt32LE(12) + 4;
  const chunks: number[] = [];
  while (buf[off] === 0x43) {
    chunks.push(off);
    off += CHUNK_HEADER_BYTES + buf.readUInt32LE(off + 12);
  }
  return { chunks, end: off };
}

function fixChunkHeaderCrc(buf: Buffer, off: number): void {
  buf.writeUInt32LE(crc32(buf.subarray(off, off + 20)), off + 20);
}

function fixHeaderCrc(buf: Buffer): void {
  const end = FILE_HEADER_BYTES + buf.readUInt32LE(12);
  buf.writeUInt32LE(crc32(buf.subarray(0, end)), end);
}

/** A file with a hand-made payload (codec none), correct checksums and a matching end record. */
function handMade(raw: number[], count: number, kinds: number[] = [count]): string {
  const meta = Buffer.from(JSON.stringify({ source: 'hand', pageSize: 4096 }));
  const head = Buffer.alloc(FILE_HEADER_BYTES + meta.length + 4);
  head.set(MAGIC);
  head.writeUInt16LE(1, 8);
  head.writeUInt32LE(meta.length, 12);
  head.set(meta, 16);
  fixHeaderCrc(head);
  const payload = Buffer.from(raw);
  const ch = Buffer.alloc(CHUNK_HEADER_BYTES);
  ch[0] = 0x43;
  ch.writeUInt32LE(count, 4);
  ch.writeUInt32LE(payload.length, 8);
  ch.writeUInt32LE(payload.length, 12);
  ch.writeUInt32LE(crc32(payload), 16);
  fixChunkHeaderCrc(ch, 0);
  const end = Buffer.alloc(endRecordBytes(EV_KINDS));
  const view = new DataView(end.buffer, end.byteOffset, end.length);
  end[0] = 0x45;
  end[1] = EV_KINDS;
  view.setUint32(4, 1, true);
  putU64(view, 8, count);
  kinds.forEach((c, k) => putU64(view, 16 + 8 * k, c));
  view.setUint32(end.length - 4, crc32(end.subarray(0, end.length - 4)), true);
  const path = tmp('hand');
  writeFileSync(path, Buffer.concat([head, ch, payload, end]));
  return path;
}

test('a hand-made file in the documented layout reads back (the helper below is right)', () => {
  const path = handMade([0x60, 0x10, 0x08, 0x07], 2, [1, 0, 0, 0, 0, 0, 0, 0, 1]);
  assert.equal(readCatching(path), { events: [{ type: 'read', addr: 8, size: 8 }, { type: 'thread', tid: 7 }] });
});

test('a file cut at any byte is a TraceError about the cut, and only correct events come before it', () => {
  for (const codec of ['none', 'deflate', 'brotli'] as Codec[]) {
    const path = writeTrace(EVENTS, { codec, chunkEvents: 9 });
    const full = readFileSync(path);
    const { chunks, end } = layout(full);
    assert.ok(chunks.length >= 5);
    const cut = tmp('cut');
    for (let len = 0; len < full.length; len++) {
      writeFileSync(cut, full.subarray(0, len));
      const { events, error } = readCatching(cut);
      assert.ok(error instanceof TraceError, `${codec}, cut at ${len}: ${error}`);
      assert.match((error as Error).message, /file ends|the file is empty/, `${codec}, cut at ${len}`);
      assert.equal(events, EVENTS.slice(0, events.length), `${codec}, cut at ${len}`);
      assert.ok(!isGranuleTrace(cut) || len >= MAGIC.length);
      // The exact wording at the record boundaries
      if (len === end) assert.match((error as Error).message, new RegExp(`file ends after chunk ${chunks.length - 1} without an end record \\(${EVENTS.length} events read\\)`));
      if (len === chunks[2] + 30) assert.match((error as Error).message, /file ends inside chunk 2 \(header at offset \d+ says \d+ bytes, 6 present\)/);
    }
  }
});

test('a flipped bit anywhere in the file is detected; in a payload the error names the chunk and its offset', () => {
  for (const codec of ['none', 'deflate'] as Codec[]) {
    const path = writeTrace(EVENTS, { codec, chunkEvents: 9 });
    const full = readFileSync(path);
    const { chunks, end } = layout(full);
    const bad = tmp('flip');
    for (let pos = 0; pos < full.length; pos++) {
      for (const bit of [0x01, 0x80]) {
        const copy = Buffer.from(full);
        copy[pos] ^= bit;
        writeFileSync(bad, copy);
        const { events, error } = readCatching(bad);
        assert.ok(error instanceof TraceError, `${codec}, byte ${pos} ^ ${bit}: no error`);
        assert.equal(events, EVENTS.slice(0, events.length), `${codec}, byte ${pos}`);
        const k = chunks.findIndex((c, i) => pos >= c + CHUNK_HEADER_BYTES && pos < (chunks[i + 1] ?? end));
        if (k >= 0) {
          const msg = (error as Error).message;
          assert.match(msg, new RegExp(`checksum mismatch in chunk ${k} \\(chunk at offset ${chunks[k]},`), msg);
          assert.is((error as TraceError).where.offset, chunks[k] + CHUNK_HEADER_BYTES);
        }
      }
    }
  }
});

test('bad magic: a text file, a gzip file, an empty file; isGranuleTrace says no to them', () => {
  const text = tmp('text');
  writeFileSync(text, '# valgrind lackey\n L 1ffefff0,8\n');
  const e = expectTraceError(text, /bad magic: this is not a granule trace \(starts with 23 20 76 61 6c 67 72 69\)\. give a file written by granule import\/record, or use --format lackey/, 0);
  assert.is(e.advice, 'give a file written by granule import/record, or use --format lackey for a valgrind log');
  const gz = tmp('gz');
  writeFileSync(gz, Buffer.from([0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3, 1, 2, 3, 4, 5, 6, 7, 8]));
  expectTraceError(gz, /bad magic.*gunzip it first/, 0);
  const empty = tmp('empty');
  writeFileSync(empty, '');
  expectTraceError(empty, /the file is empty/, 0);
  const short = tmp('short');
  writeFileSync(short, 'x');
  expectTraceError(short, /bad magic.*\(starts with 78\)/, 0);
  for (const p of [text, gz, empty, short, join(dir, 'does-not-exist')]) assert.not.ok(isGranuleTrace(p), p);
  assert.ok(isGranuleTrace(writeTrace([])));
});

test('an unknown major version asks for a newer granule; a higher minor is read', () => {
  const full = readFileSync(writeTrace(EVENTS));
  const newer = Buffer.from(full);
  newer.writeUInt16LE(2, 8);
  newer.writeUInt16LE(3, 10);
  fixHeaderCrc(newer);
  const p = tmp('v2');
  writeFileSync(p, newer);
  const e = expectTraceError(p, /written by a newer granule \(trace format version 2\.3; this granule reads version 1\)\. upgrade granule/, 8);
  assert.is(e.advice, 'upgrade granule');

  const zero = Buffer.from(full);
  zero.writeUInt16LE(0, 8);
  fixHeaderCrc(zero);
  writeFileSync(p, zero);
  expectTraceError(p, /unknown trace format version 0\.0/, 8);

  const minor = Buffer.from(full);
  minor.writeUInt16LE(7, 10);
  fixHeaderCrc(minor);
  writeFileSync(p, minor);
  const r = TraceReader.open(p);
  assert.equal(r.version, { major: 1, minor: 7 });
  assert.equal([...r.events()], EVENTS);
  r.close();

  // A damaged version field is a checksum error, not a request to upgrade.
  const flipped = Buffer.from(full);
  flipped[9] ^= 0x10;
  writeFileSync(p, flipped);
  expectTraceError(p, /header checksum mismatch/);
});

test('huge lengths are refused before anything is allocated', () => {
  const full = readFileSync(writeTrace(EVENTS, { chunkEvents: 9 }));
  const { chunks } = layout(full);
  const p = tmp('huge');
  for (const [field, what] of [[8, 'payload length'], [12, 'stored length'], [4, 'event count']] as const) {
    const copy = Buffer.from(full);
    copy.writeUInt32LE(0xfffffff0, chunks[1] + field);
    writeFileSync(p, copy);
    expectTraceError(p, /checksum mismatch in the header of chunk 1/, chunks[1]); // caught by the header CRC
    fixChunkHeaderCrc(copy, chunks[1]);
    writeFileSync(p, copy);
    const e = expectTraceError(p, new RegExp(`chunk 1: ${what} 4294967280 is|event count 4294967280 is impossible`), chunks[1]);
    assert.ok(e.message.includes(what === 'event count' ? 'event count' : what));
  }
  const meta = Buffer.from(full);
  meta.writeUInt32LE(0xffffffff, 12);
  writeFileSync(p, meta);
  expectTraceError(p, /metadata length 4294967295 is over the limit of 1048576 bytes/, 12);
});

test('an unknown codec, reserved bits, bad end records and trailing bytes are named', () => {
  const full = readFileSync(writeTrace(EVENTS, { chunkEvents: 9, codec: 'none' }));
  const { chunks, end } = layout(full);
  const p = tmp('misc');
  let copy = Buffer.from(full);
  copy[chunks[0] + 1] = 9;
  fixChunkHeaderCrc(copy, chunks[0]);
  writeFileSync(p, copy);
  expectTraceError(p, /chunk 0 uses codec 9, which this granule does not know.*upgrade granule/, chunks[0] + 1);

  copy = Buffer.from(full);
  copy[chunks[0] + 2] = 1;
  fixChunkHeaderCrc(copy, chunks[0]);
  writeFileSync(p, copy);
  expectTraceError(p, /chunk 0: reserved header bytes/, chunks[0]);

  writeFileSync(p, Buffer.concat([full, Buffer.from([0])]));
  expectTraceError(p, /1 unexpected byte after the end record/, full.length);

  copy = Buffer.from(full);
  copy.writeUInt32LE(copy.readUInt32LE(end + 4) + 1, end + 4);
  copy.writeUInt32LE(crc32(copy.subarray(end, copy.length - 4)), copy.length - 4);
  writeFileSync(p, copy);
  expectTraceError(p, /end record says \d+ chunks .* the file holds/, end);

  copy = Buffer.from(full);
  copy[end] = 0x58;
  writeFileSync(p, copy);
  expectTraceError(p, /unknown record type 0x58 where chunk \d+ or the end record should start/, end);

  // A chunk dropped from the middle: caught by the end record's totals.
  const dropped = Buffer.concat([full.subarray(0, chunks[1]), full.subarray(chunks[2])]);
  writeFileSync(p, dropped);
  expectTraceError(p, /end record says/);
});

test('payloads that pass their checksum but break the encoding are errors at the right byte', () => {
  const cases: [number[], number, RegExp, number][] = [
    [[0x09], 1, /unknown event kind 9 \(tag 0x9\)/, 0],
    [[0x17], 1, /reserved bits set in event tag 0x17/, 1],
    [[0x60, 0x03], 1, /address -1 is outside \[0, 2\^53\)/, 2],
    [[0xe0, 0x00, 0x00], 1, /access size 0/, 3],
    [[0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01], 1, /varint longer than 8 bytes/, 9],
    [[0x60, 0x00, 0x60], 2, /payload ends inside an event/, 3],
    [[0x07, 0x07], 1, /1 byte left over after the last of 1 event/, 1],
    [[0x60, 0x00, 0x60, 0x00], 3, /payload ends after 2 of 3 events/, 4],
    [[0x70, 0x00, 0xaa], 1, /value of 8 bytes does not fit/, 2],
    [[0xf4, 0x35, 0x00, 0x00], 1, /alignment 2\^53 is over 2\^52/, 2],
  ];
  for (const [raw, count, pattern, at] of cases) {
    const path = handMade(raw, count);
    const head = FILE_HEADER_BYTES + readFileSync(path).readUInt32LE(12) + 4;
    const e = expectTraceError(path, pattern);
    assert.match(e.message, new RegExp(`chunk 0, event \\d+ \\(payload byte ${at}\\)`), e.message);
    assert.is(e.where.offset, head + CHUNK_HEADER_BYTES + at, e.message);
  }
});

test('traceInfo checks the whole file: a damaged last chunk fails it', () => {
  const path = writeTrace(EVENTS, { chunkEvents: 9 });
  const full = readFileSync(path);
  const { chunks } = layout(full);
  full[chunks[chunks.length - 1] + CHUNK_HEADER_BYTES + 1] ^= 4;
  const p = tmp('info');
  writeFileSync(p, full);
  assert.throws(() => traceInfo(p), (e: unknown) => e instanceof TraceError && /checksum mismatch in chunk/.test(e.message));
});

test('a reader refuses use after close', () => {
  const r = TraceReader.open(writeTrace(EVENTS));
  r.close();
  r.close();
  assert.throws(() => [...r.blocks()], /the trace reader is closed/);
});

// Bounded memory: a trace far larger than the bound is written and read back block by block while
// live ArrayBuffer memory (measured after a forced GC) stays small. Timing is not checked.
setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

test('writing and reading a few million events keeps memory bounded', () => {
  const N = 3_000_000;
  const path = tmp('big');
  const value = new Uint8Array(8);
  gc();
  const base = process.memoryUsage();
  let peakBuffers = 0;
  let peakRss = 0;
  const sample = () => {
    // Twice: the first collection's ArrayBuffer sweeping can still be running when it returns.
    gc();
    gc();
    const m = process.memoryUsage();
    peakBuffers = Math.max(peakBuffers, m.arrayBuffers - base.arrayBuffers);
    peakRss = Math.max(peakRss, m.rss - base.rss);
  };
  const w = TraceWriter.create(path, { source: 'hand', pageSize: 4096 }, { codec: 'none' });
  let x = 0x12345;
  for (let i = 0; i < N; i++) {
    x = (x * 1103515245 + 12345) >>> 0;
    value[0] = x;
    value[3] = i;
    w.access(EV_WRITE, i % 3 ? 0x7f0000000000 + x : 0x601000 + 8 * i, 8, value);
    if (i % 500_000 === 0) sample();
  }
  const sum = w.close();
  sample();
  const r = TraceReader.open(path);
  let n = 0;
  let check = 0;
  let blocks = 0;
  for (const b of r.blocks()) {
    n += b.count;
    check += b.values[b.valueOff[b.count - 1] + 3];
    if (++blocks % 8 === 0) sample();
  }
  r.close();
  sample();
  assert.is(n, N);
  assert.ok(check > 0);
  const MiB = 1 << 20;
  // The file (~40 MiB) and the decoded columns and values (~110 MiB) are each far above the bound.
  assert.ok(sum.bytes > 32 * MiB, `file is ${sum.bytes} bytes`);
  assert.ok(peakBuffers < 16 * MiB, `ArrayBuffer memory grew by ${(peakBuffers / MiB).toFixed(1)} MiB`);
  assert.ok(peakRss < 96 * MiB, `RSS grew by ${(peakRss / MiB).toFixed(1)} MiB`);
});

test.run();
