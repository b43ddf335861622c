// The lackey importer against hand-written logs whose events are stated independently below:
// line shapes as valgrind 3.19 prints them, chunking, gzip, the shim's allocator protocol and the
// errors a user can hit (each naming the file and the line).
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { EV_NAMES, TraceError, type AccessKind, type EventSink, type TraceEvent } from '../src/trace/events.ts';
import { importLackey, looksLikeLackey, parseLackey, type LackeyOptions, type LackeyStats } from '../src/trace/lackey.ts';

const dir = mkdtempSync(join(tmpdir(), 'granule-lackey-'));
test.after(() => rmSync(dir, { recursive: true, force: true }));

class Collect implements EventSink {
  events: TraceEvent[] = [];
  access(kind: AccessKind, addr: number, size: number) { this.events.push({ type: EV_NAMES[kind] as 'read', addr, size }); }
  alloc(addr: number, size: number, align: number) { this.events.push({ type: 'alloc', addr, size, align }); }
  free(addr: number) { this.events.push({ type: 'free', addr }); }
  realloc(addr: number, newAddr: number, size: number) { this.events.push({ type: 'realloc', addr, newAddr, size }); }
  epoch() { this.events.push({ type: 'epoch' }); }
  thread(tid: number) { this.events.push({ type: 'thread', tid }); }
}

async function* chunked(data: Buffer, n: number) {
  for (let i = 0; i < data.length; i += n) yield data.subarray(i, i + n);
}

async function parse(text: string | Buffer, opts: Partial<LackeyOptions> = {}, chunk = Infinity) {
  const data = typeof text === 'string' ? Buffer.from(text, 'latin1') : text;
  const sink = new Collect();
  const stats = await parseLackey(chunked(data, Math.min(chunk, Math.max(data.length, 1))), sink, { file: 'test.log', ...opts });
  return { events: sink.events, stats };
}

async function parseError(text: string, opts: Partial<LackeyOptions> = {}): Promise<TraceError> {
  try {
    await parse(text, opts);
  } catch (e) {
    assert.instance(e, TraceError);
    return e as TraceError;
  }
  throw new assert.Assertion({ message: 'expected a TraceError', generated: false, operator: 'throws', expects: 'error', actual: 'none' });
}

const r = (addr: number, size: number): TraceEvent => ({ type: 'read', addr, size });
const w = (addr: number, size: number): TraceEvent => ({ type: 'write', addr, size });
const m = (addr: number, size: number): TraceEvent => ({ type: 'modify', addr, size });
const x = (addr: number, size: number): TraceEvent => ({ type: 'fetch', addr, size });

// Header and trailer copied from a real run (valgrind 3.19.0, /bin/true), accesses in between.
const BASIC = `==10932== Lackey, an example Valgrind tool
==10932== Copyright (C) 2002-2017, and GNU GPL'd, by Nicholas Nethercote.
==10932== Using Valgrind-3.19.0 and LibVEX; rerun with -h for copyright info
==10932== Command: /bin/true
==10932== Parent PID: 10928
==10932== 
I  0401ab70,3
I  0401ab73,5
 S 1fff000758,8
I  0401b770,1
 L 04222c0,8
 M 0421e80,4
--10932-- WARNING: unhandled amd64-linux syscall: 999
I  04919407,2
 S 0000000000601040,1
 L 7,2
 L 0601041,16
 S 0601060,32
 S 0601080,64
 L 06010c0,512
I  0401ab79,15
==10932== 
==10932== Exit code:       0
`;
const BASIC_DATA = [
  w(0x1fff000758, 8), r(0x04222c0, 8), m(0x0421e80, 4), w(0x601040, 1), r(7, 2), r(0x601041, 16), w(0x601060, 32),
  w(0x601080, 64), r(0x6010c0, 512),
];
const BASIC_WITH_FETCHES = [
  x(0x401ab70, 3), x(0x401ab73, 5), w(0x1fff000758, 8), x(0x401b770, 1), r(0x04222c0, 8), m(0x0421e80, 4), x(0x4919407, 2),
  w(0x601040, 1), r(7, 2), r(0x601041, 16), w(0x601060, 32), w(0x601080, 64), r(0x6010c0, 512), x(0x401ab79, 15),
];

test('S, L, M and I lines; valgrind messages ignored; fetches dropped unless asked for', async () => {
  const a = await parse(BASIC);
  assert.equal(a.events, BASIC_DATA);
  assert.is(a.stats.lines, 23);
  assert.is(a.stats.accesses, 9);
  assert.is(a.stats.fetchesSkipped, 5);
  assert.is(a.stats.valgrindLines, 9);
  assert.is(a.stats.shimSeen, false);
  const b = await parse(BASIC, { fetches: true });
  assert.equal(b.events, BASIC_WITH_FETCHES);
  assert.is(b.stats.accesses, 14);
  assert.is(b.stats.fetchesSkipped, 0);
});

test('onMessage gets valgrind\'s lines; onProgress reaches the input size', async () => {
  const msgs: string[] = [];
  let last = 0;
  await parse(BASIC, { onMessage: (l) => msgs.push(l), onProgress: (n) => { assert.ok(n >= last); last = n; } }, 100);
  assert.is(msgs.length, 9);
  assert.is(msgs[3], '==10932== Command: /bin/true');
  assert.is(msgs[6], '--10932-- WARNING: unhandled amd64-linux syscall: 999');
  assert.is(last, Buffer.byteLength(BASIC));
});

test('lines split across chunks: 1-byte, 7-byte and whole chunks give the same events', async () => {
  for (const fetches of [false, true]) {
    const want = fetches ? BASIC_WITH_FETCHES : BASIC_DATA;
    for (const n of [1, 2, 7, 64, Infinity]) assert.equal((await parse(BASIC, { fetches }, n)).events, want, `chunks of ${n}`);
  }
});

test('CRLF line ends are accepted (lackey never writes them; Windows tools might)', async () => {
  assert.equal((await parse(BASIC.replace(/\n/g, '\r\n'), {}, 7)).events, BASIC_DATA);
});

test('wide, short, zero-padded and upper-case addresses; sizes of any width', async () => {
  const log = 'I  00000000004016f0,3\n S 7ffffffff000,8\n L 0,1\n M 1fffffffffffff,4\n S 00000000000000000000001,3\n L ABCDEF,100000\n';
  assert.equal((await parse(log)).events, [w(0x7ffffffff000, 8), r(0, 1), m(2 ** 53 - 1, 4), w(1, 3), r(0xabcdef, 100000)]);
});

test('a complete last line without a newline is fine, also when split', async () => {
  for (const n of [1, 5, Infinity]) {
    assert.equal((await parse(' S 10,4\n L 20,8', {}, n)).events, [w(0x10, 4), r(0x20, 8)]);
  }
});

test('blank lines are skipped', async () => {
  assert.equal((await parse('\n S 10,4\n\n\r\n L 20,8\n')).events, [w(0x10, 4), r(0x20, 8)]);
});

test('kernel-half addresses (vsyscall) are skipped and counted; other addresses >= 2^53 are refused', async () => {
  const a = await parse('I  ffffffffff600000,7\n L ffffffffff600008,8\nI  0401000,3\n S 1000,4\n', { fetches: true });
  assert.equal(a.events, [x(0x401000, 3), w(0x1000, 4)]);
  assert.is(a.stats.kernelSkipped, 2);
  const e = await parseError(' S 10,4\n L 20000000000000,8\n');
  assert.is(e.where.line, 2);
  assert.match(e.message, /test\.log: line 2: address 0x20000000000000 .* 2\^53 or more/);
  const e2 = await parseError(' S 1ffffffffffffffff,8\n');
  assert.match(e2.message, /line 1: address 0x1ffffffffffffffff/);
});

test('garbage and partial lines: the line number and the line in the message', async () => {
  const cases: [string, number, RegExp][] = [
    [' S 10,4\n L 20,8\nhello world\n S 30,4\n', 3, /cannot parse "hello world": expected an access line/],
    [' S 10,4\n L 20,8\n S 04222', 3, /cannot parse " S 04222": expected "," after the address/],
    [' S 10,4\n S 04g22,8\n', 2, /cannot parse " S 04g22,8": expected "," after the address/],
    [' S 10,4\n S 0422,\n', 2, /expected a decimal size/],
    [' S 10,4\n S ,8\n', 2, /expected a hex address/],
    [' S 10,4\n S 10,4x\n', 2, /expected the end of the line/],
    [' S 10,0\n', 1, /expected a size from 1/],
    [' X 10,4\n', 1, /cannot parse " X 10,4": expected " S", " L" or " M"/],
    ['I 10,4 \n', 1, /expected the end of the line/],
    ['I10,4\n', 1, /expected spaces after "I"/],
    [' S 10,4\n\x00\x01binary\n', 2, /cannot parse "\\x00\\x01binary"/],
    ['**12** x\n**x** y\n', 2, /expected "\*\*PID\*\* "/],
  ];
  for (const [log, line, re] of cases) {
    const e = await parseError(log);
    assert.is(e.where.line, line, JSON.stringify(log));
    assert.match(e.message, re);
    assert.match(e.message, /^test\.log: line \d+: /);
    assert.match(e.message, /is this a lackey --trace-mem=yes log\?/);
    for (const n of [1, 3]) {
      const e2 = await parse(log, {}, n).then(() => null, (err) => err);
      assert.is(e2?.message, e.message, `chunks of ${n}`);
    }
  }
});

test('a long garbage line is shown cut to 60 characters', async () => {
  const e = await parseError(`${'x'.repeat(200)}\n`);
  assert.ok(e.message.includes(`"${'x'.repeat(60)}..."`), e.message);
});

test('empty input, and input with no access lines, are not lackey logs', async () => {
  assert.match((await parseError('')).message, /test\.log: the file is empty/);
  const e = await parseError('==1== Lackey, an example Valgrind tool\n==1== \n');
  assert.match(e.message, /no memory access lines .* in 2 lines/);
});

test('an error thrown by the sink passes through unchanged, and the input is closed', async () => {
  const boom = Object.assign(new Error('disk full'), { code: 'ENOENT' });
  const sink = new Collect();
  sink.access = () => { throw boom; };
  let closed = false;
  async function* input() {
    try {
      yield Buffer.from(' S 10,4\n');
      yield Buffer.from(' S 20,4\n');
    } finally {
      closed = true;
    }
  }
  // Held accesses reach the sink at the end of input, or at once after a shim announcement.
  const e = await parseLackey(input(), sink, { file: 'x.log' }).then(() => null, (err) => err);
  assert.is(e, boom);
  closed = false;
  const e2 = await parseLackey((async function* () {
    try {
      yield Buffer.from('**1** granule-preload 1 text 0x0 0x1\n S 10,4\n');
      yield Buffer.from(' S 20,4\n');
    } finally {
      closed = true;
    }
  })(), sink, { file: 'x.log' }).then(() => null, (err) => err);
  assert.is(e2, boom);
  assert.ok(closed);
});

// ---- the granule preload shim's protocol ----

const SHIM = `==7== Command: ./prog
I  04001000,3
 S 1ffefff000,8
**7** granule-preload 1 text 0x4849000 0x484a000
**7** some other client output
I  0401000,5
 S 1ffefff008,8
I  4849100,4
 S 1ffefff010,8
 L 4a00000,8
**7** granule enter
I  4a10000,3
 L 4a20000,8
 S 4a20008,8
**7** granule alloc 0x4a21040 24 16
I  4849104,1
 L 1ffefff010,8
I  0401005,4
 S 4a21040,8
 S 4a21050,8
I  4849200,2
**7** granule enter
 L 4a20010,8
**7** granule realloc 0x4a21040 0x4a22000 100
I  0401009,4
 L 4a22060,4
**7** granule enter
**7** granule leave
I  0401020,2
 M 4a22000,1
I  484a000,2
 L 4a22008,8
**7** granule enter
 S 4a20020,8
**7** granule free 0x4a22000
I  04010ff,2
 L 601000,4
`;

test('shim protocol: allocator windows and shim instructions dropped, object events in order', async () => {
  const a = await parse(SHIM);
  assert.equal(a.events, [
    w(0x1ffefff000, 8),
    w(0x1ffefff008, 8),
    // 4849100's accesses: shim text; the window's three accesses: allocator internals
    { type: 'alloc', addr: 0x4a21040, size: 24, align: 16 },
    // 4849104 is shim text
    w(0x4a21040, 8), w(0x4a21050, 8),
    { type: 'realloc', addr: 0x4a21040, newAddr: 0x4a22000, size: 100 },
    r(0x4a22060, 4),
    m(0x4a22000, 1),
    r(0x4a22008, 8), // 484a000 is the first byte past the shim's text
    { type: 'free', addr: 0x4a22000 },
    r(0x601000, 4),
  ]);
  const s = a.stats;
  assert.is(s.shimSeen, true);
  assert.equal(s.shimText, [[0x4849000, 0x484a000]]);
  assert.is(s.droppedShim, 3);
  assert.is(s.droppedAllocator, 4);
  assert.equal([s.allocs, s.reallocs, s.frees], [1, 1, 1]);
  assert.is(s.clientLines, 1);
  assert.is(s.valgrindLines, 1);
  for (const n of [1, 7]) assert.equal((await parse(SHIM, {}, n)).events, a.events, `chunks of ${n}`);
});

test('shim protocol with fetches: shim and allocator instructions are dropped too', async () => {
  const a = await parse(SHIM, { fetches: true });
  const fetches = a.events.filter((e) => e.type === 'fetch').map((e) => (e as { addr: number }).addr);
  assert.equal(fetches, [0x4001000, 0x401000, 0x401005, 0x401009, 0x401020, 0x484a000, 0x4010ff]);
});

test('shim code that ran before the shim announced its text is dropped too', async () => {
  const log = `I  4849000,4
 S 1ffefff000,8
I  0401000,3
 S 1ffefff008,8
I  4849010,2
 L 4849500,8
 S 1ffefff010,8
**7** granule-preload 1 text 0x4849000 0x484a000
I  4849020,2
 S 1ffefff018,8
I  0401003,3
 L 600000,4
`;
  for (const n of [1, Infinity]) {
    const a = await parse(log, {}, n);
    assert.equal(a.events, [w(0x1ffefff008, 8), r(0x600000, 4)]);
    assert.is(a.stats.droppedShim, 4);
    assert.is(a.stats.accesses, 2);
  }
  const b = await parse(log, { fetches: true });
  assert.equal(b.events, [x(0x401000, 3), w(0x1ffefff008, 8), x(0x401003, 3), r(0x600000, 4)]);
  assert.is(b.stats.droppedShim, 7);
});

test('without a shim, accesses held for its announcement come out in order (past the hold limit too)', async () => {
  const n = (1 << 20) + 2000; // more data accesses than the parser holds back
  const lines: string[] = [];
  for (let i = 0; i < n; i++) lines.push(i % 1000 === 0 ? `I  ${(0x400000 + i).toString(16)},3` : ` S ${(0x10000 + 8 * i).toString(16)},8`);
  const a = await parse(`${lines.join('\n')}\n**9** granule enter\n**9** granule alloc 0x5000 8 16\n L 5000,8\n`, {}, 1 << 16);
  const want: number[] = [];
  for (let i = 0; i < n; i++) if (i % 1000 !== 0) want.push(0x10000 + 8 * i);
  assert.is(a.events.length, want.length + 2);
  assert.ok(a.events.slice(0, want.length).every((e, i) => e.type === 'write' && e.addr === want[i]));
  assert.equal(a.events.slice(want.length), [{ type: 'alloc', addr: 0x5000, size: 8, align: 16 }, r(0x5000, 8)]);
  const small = await parse(' S 10,4\n**1** granule enter\n**1** granule free 0x20\n L 10,4\n');
  assert.equal(small.events, [w(0x10, 4), { type: 'free', addr: 0x20 }, r(0x10, 4)]);
});

test('shim protocol: several text ranges, and NULL results', async () => {
  const log = `**1** granule-preload 1 text 0x1000 0x2000
**1** granule-preload 1 text 0x5000 0x5100
I  1800,1
 S 10,1
I  50ff,1
 S 20,1
I  5100,1
 S 30,1
**1** granule enter
**1** granule alloc 0x0 100 16
**1** granule enter
**1** granule free 0x0
**1** granule enter
**1** granule realloc 0x0 0x9000 64
**1** granule enter
**1** granule realloc 0x9000 (nil) 0
**1** granule enter
**1** granule alloc 0x9100 8 4096
`;
  const a = await parse(log);
  assert.equal(a.events, [
    w(0x30, 1),
    { type: 'alloc', addr: 0x9000, size: 64, align: 16 },
    { type: 'free', addr: 0x9000 },
    { type: 'alloc', addr: 0x9100, size: 8, align: 4096 },
  ]);
  assert.is(a.stats.droppedShim, 2);
});

test('shim protocol errors name the line', async () => {
  const cases: [string, number, RegExp][] = [
    [' S 10,4\n**3** granule leave\n', 2, /"granule leave" without a preceding "granule enter"/],
    [' S 10,4\n**3** granule free 0x10\n', 2, /"granule free" without a preceding "granule enter"/],
    [' S 10,4\n**3** granule enter\n L 10,4\n**3** granule enter\n', 4, /"granule enter" inside the allocator call begun at line 2/],
    [' S 10,4\n**3** granule enter\n L 10,4\n', 2, /the log ends inside the allocator call/],
    [' S 10,4\n**3** granule-preload 2 text 0x1 0x2\n', 2, /protocol "2"; this granule reads protocol 1.*rebuild the shim/],
    [' S 10,4\n**3** granule-preload 1 data 0x1 0x2\n', 2, /expected "granule-preload 1 text/],
    [' S 10,4\n**3** granule enter\n**3** granule alloc 0x10 8\n', 3, /expected "granule alloc 0x<ptr> <size> <align>"/],
    [' S 10,4\n**3** granule enter\n**3** granule alloc 0x10 8 24\n', 3, /power of two/],
    [' S 10,4\n**3** granule enter\n**3** granule alloc 16 8 8\n', 3, /0x-prefixed hex pointer, got "16"/],
    [' S 10,4\n**3** granule bogus\n', 2, /expected a granule shim message/],
  ];
  for (const [log, line, re] of cases) {
    const e = await parseError(log);
    assert.is(e.where.line, line, log);
    assert.match(e.message, re);
  }
});

// ---- files: plain, gzip, sniffing ----

test('importLackey reads plain and gzip files alike; onProgress counts file bytes', async () => {
  const plain = join(dir, 'basic.log');
  const gz = join(dir, 'basic.log.gz');
  writeFileSync(plain, BASIC);
  const packed = gzipSync(BASIC);
  writeFileSync(gz, packed);
  for (const [f, size] of [[plain, Buffer.byteLength(BASIC)], [gz, packed.length]] as const) {
    const sink = new Collect();
    let last = 0;
    const st: LackeyStats = await importLackey(f, sink, { fetches: true, onProgress: (n) => { last = n; } });
    assert.equal(sink.events, BASIC_WITH_FETCHES, f);
    assert.is(st.lines, 23);
    assert.is(last, size, f);
  }
});

test('a truncated gzip file is an error naming the file', async () => {
  const big = BASIC.repeat(200);
  const packed = gzipSync(big);
  const f = join(dir, 'cut.log.gz');
  writeFileSync(f, packed.subarray(0, packed.length >> 1));
  const e = await importLackey(f, new Collect()).then(() => null, (err) => err);
  assert.instance(e, TraceError);
  assert.ok(e.message.startsWith(`${f}: `), e.message);
  assert.match(e.message, /gzip stream is truncated/);
});

test('a missing file is an error naming it', async () => {
  const f = join(dir, 'nope.log');
  const e = await importLackey(f, new Collect()).then(() => null, (err) => err);
  assert.instance(e, TraceError);
  assert.match(e.message, /nope\.log: no such file/);
});

test('looksLikeLackey: lackey logs plain or gzip yes; other files no', () => {
  const f = (name: string, data: string | Buffer) => { const p = join(dir, name); writeFileSync(p, data); return p; };
  assert.ok(looksLikeLackey(f('a.log', BASIC)));
  assert.ok(looksLikeLackey(f('a.log.gz', gzipSync(BASIC.repeat(100)))));
  assert.ok(looksLikeLackey(f('b.log', ' S 10,4\n')));
  assert.ok(looksLikeLackey(f('c.log', SHIM)));
  assert.not.ok(looksLikeLackey(f('d.json', '{"source":"hand"}\n')));
  assert.not.ok(looksLikeLackey(f('e.bin', Buffer.of(0x89, 0x47, 0x52, 0x4e, 0x4c, 0x0d, 0x0a, 0x1a, 0, 1, 2))));
  assert.not.ok(looksLikeLackey(f('f.log', '')));
  assert.not.ok(looksLikeLackey(f('g.txt', 'hello\nworld\n')));
  assert.not.ok(looksLikeLackey(join(dir, 'missing.log')));
});

test.run();
