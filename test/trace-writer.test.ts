// The trace writer as its callers use it: the target appears only at close, abort and failures
// leave nothing behind, bad arguments throw a RangeError naming the event and the field.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { TraceWriter } from '../src/trace/writer.ts';
import { TraceReader } from '../src/trace/reader.ts';
import { EV_FETCH, EV_READ, EV_WRITE, type AccessKind, type TraceMeta } from '../src/trace/events.ts';
import { MAX_VALUE_BYTES } from '../src/trace/format.ts';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const base = mkdtempSync(join(tmpdir(), 'granule-trace-writer-'));
test.after(() => rmSync(base, { recursive: true, force: true }));
const META: TraceMeta = { source: 'hand', pageSize: 4096 };
let n = 0;
/** A fresh empty directory per test, so "nothing else is there" can be checked. */
const freshDir = () => mkdtempSync(join(base, `d${n++}-`));

function events(path: string) {
  const r = TraceReader.open(path);
  try { return [...r.events()]; } finally { r.close(); }
}

test('the target appears only at close, by rename of a temp file beside it', () => {
  const dir = freshDir();
  const path = join(dir, 'out.grt');
  const w = TraceWriter.create(path, META, { chunkEvents: 2 });
  for (let i = 0; i < 5; i++) w.access(EV_READ, 0x1000 + i, 1);
  const during = readdirSync(dir);
  assert.is(during.length, 1);
  assert.match(during[0], /^\.out\.grt\.\d+-[0-9a-f]+\.tmp$/);
  assert.not.ok(existsSync(path));
  const sum = w.close();
  assert.equal(readdirSync(dir), ['out.grt']);
  assert.equal({ ...sum, counts: sum.counts.slice(0, 1) }, { path, events: 5, counts: [5], chunks: 3, bytes: readFileSync(path).length });
  assert.is(events(path).length, 5);
});

test('abort removes the temp file, is safe twice and after close, and leaves an existing target alone', () => {
  const dir = freshDir();
  const path = join(dir, 'keep.grt');
  writeFileSync(path, 'old contents');
  const w = TraceWriter.create(path, META);
  w.access(EV_WRITE, 0x2000, 8);
  w.abort();
  w.abort();
  assert.equal(readdirSync(dir), ['keep.grt']);
  assert.is(readFileSync(path, 'utf8'), 'old contents');
  assert.throws(() => w.access(EV_READ, 0, 1), /the trace writer is aborted/);
  assert.throws(() => w.close(), /the trace writer is aborted/);

  const w2 = TraceWriter.create(path, META);
  w2.epoch();
  w2.close();
  w2.abort(); // after close: nothing to do, the finished file stays
  assert.equal(events(path), [{ type: 'epoch' }]);
  assert.throws(() => w2.epoch(), /the trace writer is closed/);
});

test('a directory that does not exist is an error naming the target; nothing is created', () => {
  const dir = freshDir();
  const path = join(dir, 'missing', 'out.grt');
  assert.throws(() => TraceWriter.create(path, META), (e: unknown) => e instanceof Error && e.message.startsWith(`${path}: cannot create the trace: ENOENT`));
  assert.equal(readdirSync(dir), []);
});

test('a failing close leaves no temp file and no target', () => {
  const dir = freshDir();
  const path = join(dir, 'target');
  const w = TraceWriter.create(path, META);
  w.access(EV_READ, 1, 1);
  // rename cannot replace a non-empty directory: the last step of close fails
  mkdirSync(join(path, 'x'), { recursive: true });
  assert.throws(() => w.close(), /EISDIR|ENOTEMPTY|EEXIST/);
  assert.equal(readdirSync(dir), ['target']);
  assert.equal(readdirSync(path), ['x']);
  assert.throws(() => w.close(), /the trace writer is aborted/);
});

test('a process that exits without close or abort leaves no temp file', () => {
  const dir = freshDir();
  const script = join(dir, 'child.ts');
  writeFileSync(script, `
    import { TraceWriter } from ${JSON.stringify(join(root, 'src/trace/writer.ts'))};
    const w = TraceWriter.create(${JSON.stringify(join(dir, 'out.grt'))}, { source: 'hand', pageSize: 4096 }, { chunkEvents: 1 });
    for (let i = 0; i < 10; i++) w.access(0, i, 1);
    if (process.argv[2] === 'throw') throw new Error('boom');
    process.exit(3);
  `);
  for (const how of ['exit', 'throw']) {
    const r = spawnSync(process.execPath, ['--import', 'tsx', script, how], { cwd: root, encoding: 'utf8' });
    assert.ok(r.status !== 0, `child (${how}) should fail: ${r.stderr}`);
    if (how === 'throw') assert.match(r.stderr, /boom/);
    assert.equal(readdirSync(dir), ['child.ts'], how);
  }
});

test('invalid arguments throw a RangeError naming the event number and the field; the writer stays usable', () => {
  const dir = freshDir();
  const path = join(dir, 'args.grt');
  const w = TraceWriter.create(path, META);
  w.access(EV_READ, 0x1000, 4);
  w.epoch();
  const bad: [() => void, RegExp][] = [
    [() => w.access(EV_READ, -1, 4), /event 3 \(read\): addr must be an integer in \[0, 2\^53\), got -1$/],
    [() => w.access(EV_READ, 2 ** 53, 4), /event 3 \(read\): addr must be .*got 9007199254740992 \(0x20000000000000\)/],
    [() => w.access(EV_READ, 0.5, 4), /addr .* got 0.5/],
    [() => w.access(EV_READ, NaN, 4), /addr .* got NaN/],
    [() => w.access(EV_WRITE, 0x1000, 0), /event 3 \(write\): size must be an integer in \[1, 2\^53\), got 0/],
    [() => w.access(EV_WRITE, 0x1000, 2.5), /size must be .* got 2.5/],
    [() => w.access(EV_WRITE, 0x1000, 4, new Uint8Array(3)), /event 3 \(write\): value length must be equal to size \(4\), got 3/],
    [() => w.access(EV_WRITE, 0x1000, 2, [1, 2] as unknown as Uint8Array), /value must be a Uint8Array, got \[object Array\]/],
    [() => w.access(EV_WRITE, 0, MAX_VALUE_BYTES + 1, new Uint8Array(MAX_VALUE_BYTES + 1)), /size of an access with a value must be at most 1048576/],
    [() => w.access(4 as AccessKind, 0x1000, 4), /event 3: access kind must be EV_READ, EV_WRITE, EV_MODIFY or EV_FETCH \(0\.\.3\), got 4/],
    [() => w.alloc(0x1000, 16, 3), /event 3 \(alloc\): align must be a power of two from 1 to 2\^52, got 3/],
    [() => w.alloc(0x1000, 16, 0), /align .* got 0/],
    [() => w.alloc(0x1000, -1, 8), /event 3 \(alloc\): size must be an integer in \[0, 2\^53\), got -1/],
    [() => w.alloc(-8, 16, 8), /event 3 \(alloc\): addr/],
    [() => w.free(1.5), /event 3 \(free\): addr .* got 1.5/],
    [() => w.realloc(0x1000, -1, 8), /event 3 \(realloc\): newAddr must be/],
    [() => w.realloc(0x1000, 0x2000, 0.5), /event 3 \(realloc\): size must be/],
    [() => w.thread(-1), /event 3 \(thread\): tid must be an integer in \[0, 2\^53\), got -1/],
  ];
  for (const [call, pattern] of bad) {
    assert.throws(call, (e: unknown) => e instanceof RangeError && e.message.startsWith(`${path}: `) && pattern.test(e.message), String(pattern));
  }
  assert.is(w.events, 2);
  w.access(EV_FETCH, 0x401000, 2 ** 20, new Uint8Array(2 ** 20).fill(7)); // the largest value is fine
  w.thread(1);
  const sum = w.close();
  assert.is(sum.events, 4);
  const got = events(path);
  assert.equal(got.map((e) => e.type), ['read', 'epoch', 'fetch', 'thread']);
  assert.ok(got[2].type === 'fetch' && got[2].value!.every((b) => b === 7));
});

test('bad metadata and options are refused before any file is created', () => {
  const dir = freshDir();
  const path = join(dir, 'opts.grt');
  assert.throws(() => TraceWriter.create(path, { pageSize: 4096 } as unknown as TraceMeta), /opts\.grt: metadata\.source must be a non-empty string/);
  assert.throws(() => TraceWriter.create(path, { source: 'x', pageSize: 0 }), /metadata\.pageSize must be a positive integer, got 0/);
  assert.throws(() => TraceWriter.create(path, { source: 'x', pageSize: 4096, command: 'ls -l' as unknown as string[] }), /metadata\.command must be an array of strings/);
  assert.throws(() => TraceWriter.create(path, META, { codec: 'zstd' as 'none' }), /codec must be one of none, deflate, brotli, got zstd/);
  assert.throws(() => TraceWriter.create(path, META, { chunkEvents: 0 }), /chunkEvents must be an integer from 1 to 1048576, got 0/);
  assert.throws(() => TraceWriter.create(path, META, { codec: 'deflate', level: 10 }), /level for codec deflate must be an integer from 0 to 9, got 10/);
  assert.equal(readdirSync(dir), []);
});

test('counts and events are live while writing and not writable from outside', () => {
  const w = TraceWriter.create(join(freshDir(), 'c.grt'), META);
  w.access(EV_READ, 0, 1);
  w.access(EV_READ, 0, 1);
  w.free(0);
  assert.is(w.events, 3);
  const c = w.counts;
  assert.equal(c, [2, 0, 0, 0, 0, 1, 0, 0, 0]);
  c[0] = 99;
  assert.is(w.counts[0], 2);
  w.abort();
});

test('chunks end at 4 MiB of payload even below chunkEvents, and large values read back', () => {
  const path = join(freshDir(), 'big-values.grt');
  const w = TraceWriter.create(path, META, { codec: 'none' });
  const v = new Uint8Array(512 * 1024);
  for (let i = 0; i < 20; i++) {
    v.fill(i);
    w.access(EV_WRITE, 0x10000000 + i * v.length, v.length, v);
  }
  const sum = w.close();
  assert.ok(sum.chunks >= 3, `chunks: ${sum.chunks}`);
  const got = events(path);
  assert.is(got.length, 20);
  got.forEach((e, i) => assert.ok(e.type === 'write' && e.value!.length === v.length && e.value!.every((b) => b === i), `event ${i}`));
});

test.run();
