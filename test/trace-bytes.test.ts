// Traces held in memory (the explorer reads them in a browser): the reader, the browser codec and
// the monitor give what they give for the file, and bad bytes get the same named errors.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import * as zlib from 'node:zlib';
import { TraceReader, traceInfo, traceInfoBytes } from '../src/trace/reader.ts';
import * as browserCodec from '../src/trace/codec.browser.ts';
import * as nodeCodec from '../src/trace/codec.ts';
import { runMonitor } from '../src/monitor/engine.ts';
import { TraceError } from '../src/trace/events.ts';
import { packageRoot } from '../src/record/toolchain.ts';
import { Rng } from '../src/rng.ts';

const path = join(packageRoot(), 'traces', 'kvstore-wasm.grt');
const bytes = new Uint8Array(readFileSync(path));

test('fromBytes yields the blocks open yields, and traceInfoBytes the same info', () => {
  const a = TraceReader.open(path), b = TraceReader.fromBytes('kv.grt', bytes);
  try {
    assert.equal(b.meta, a.meta);
    const ia = a.blocks()[Symbol.iterator](), ib = b.blocks()[Symbol.iterator]();
    for (;;) {
      const x = ia.next(), y = ib.next();
      assert.is(y.done, x.done);
      if (x.done || y.done) break;
      assert.equal([...y.value.addr.subarray(0, y.value.count)], [...x.value.addr.subarray(0, x.value.count)]);
      assert.equal([...y.value.kind.subarray(0, y.value.count)], [...x.value.kind.subarray(0, x.value.count)]);
    }
  } finally { a.close(); b.close(); }
  const fi = traceInfo(path), bi = traceInfoBytes('kv.grt', bytes);
  assert.equal({ ...bi, path: '' }, { ...fi, path: '' });
  assert.is(bi.path, 'kv.grt');
});

test('the browser codec: the same CRC-32 as zlib, raw inflate, and Brotli refused with what to do', () => {
  const r = new Rng(7);
  for (const n of [0, 1, 3, 64, 1000, 70_000]) {
    const data = r.bytes(n);
    assert.is(browserCodec.crc32(data), nodeCodec.crc32(data), `crc of ${n} bytes`);
    assert.is(browserCodec.crc32(data.subarray(n >> 1), browserCodec.crc32(data.subarray(0, n >> 1))), nodeCodec.crc32(data), `crc continued, ${n} bytes`);
    const packed = zlib.deflateRawSync(data);
    assert.equal(browserCodec.inflateRaw(packed, n), new Uint8Array(data));
  }
  assert.throws(() => browserCodec.brotliDecompress(), /Brotli-compressed chunks cannot be read in the browser; write the trace with deflate/);
});

test('damaged and cut bytes: the same TraceErrors, naming the name and the offset', () => {
  const cut = bytes.subarray(0, bytes.length - 100);
  assert.throws(() => { for (const _ of TraceReader.fromBytes('cut.grt', cut).blocks()) { /* read all */ } }, (e: unknown) => e instanceof TraceError && /^cut\.grt: .*offset/.test((e as Error).message));
  assert.throws(() => TraceReader.fromBytes('text.grt', new TextEncoder().encode('hello, not a trace')), (e: unknown) => e instanceof TraceError && /text\.grt.*bad magic/.test((e as Error).message));
  assert.throws(() => TraceReader.fromBytes('empty.grt', new Uint8Array(0)), /empty\.grt.*empty/);
});

test('runMonitor on the bytes gives the file\'s result', async () => {
  const o = { mode: 'gpt-wp' as const, layout: 'spread' as const, granularity: 64, epochWrites: 20_000 };
  const a = await runMonitor(path, o), b = await runMonitor({ name: 'kv.grt', bytes }, o);
  assert.equal(b.epochs.map((e) => [e.checkpointBytes, e.faults]), a.epochs.map((e) => [e.checkpointBytes, e.faults]));
  assert.ok(a.epochs.length > 2);
});

test.run();
