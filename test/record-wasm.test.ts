// The wasm recorder end to end: a small C program built with emscripten and instrumented with
// binaryen, recorded, and read back. Exact allocation sizes and order, exact access widths and
// values at known object offsets, stdout passed through, and every failure (no instrumentation,
// a trap, a non-zero exit, a double free) leaving no output file. Import checks run on
// hand-assembled modules, so they need no toolchain.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { checkInstrumented, recordWasm, WasmRecordError } from '../src/record/wasm.ts';
import type { RecordSummary, WasmRecordOptions } from '../src/record/wasm.ts';
import { buildWasm, buildWorkload, requireTool } from '../src/record/toolchain.ts';
import { TraceReader } from '../src/trace/reader.ts';
import { EV_ALLOC, EV_FREE, EV_READ, EV_REALLOC, EV_WRITE } from '../src/trace/events.ts';
import type { TraceEvent, TraceMeta } from '../src/trace/events.ts';

const here = path.dirname(fileURLToPath(import.meta.url));
const FIXTURE = path.join(here, 'fixtures', 'wasm', 'objects.c');

let toolsMissing: string | undefined;
try {
  requireTool('emcc', 'the wasm recorder tests build C fixtures');
  requireTool('wasm-opt', 'the wasm recorder tests instrument them');
} catch (e) {
  toolsMissing = (e as Error).message;
  console.log(`record-wasm: skipping the tests that build C programs: ${toolsMissing}`);
}
const withTools = toolsMissing ? test.skip : test;

const dir = mkdtempSync(path.join(tmpdir(), 'granule-record-wasm-'));
const mods = { instrumented: '', plain: '', ownMalloc: '' };

test.before(() => {
  if (toolsMissing) return;
  mods.instrumented = buildWasm([FIXTURE], path.join(dir, 'objects.wasm'));
  mods.plain = buildWasm([FIXTURE], path.join(dir, 'objects-plain.wasm'), { instrument: false });
  mods.ownMalloc = buildWasm([FIXTURE], path.join(dir, 'objects-own.wasm'), { hostMalloc: false });
});
test.after(() => rmSync(dir, { recursive: true, force: true }));

interface Run { s: RecordSummary; stdout: string; stderr: string; notes: string[] }

async function record(module: string, args: string[], out: string, extra: Partial<WasmRecordOptions> = {}): Promise<Run> {
  let stdout = '';
  let stderr = '';
  const notes: string[] = [];
  const s = await recordWasm({
    module, args, out,
    stdout: (b) => { stdout += Buffer.from(b).toString(); },
    stderr: (b) => { stderr += Buffer.from(b).toString(); },
    onNote: (n) => notes.push(n),
    ...extra,
  });
  return { s, stdout, stderr, notes };
}

function readTrace(file: string): { meta: TraceMeta; events: TraceEvent[] } {
  const r = TraceReader.open(file);
  try {
    return { meta: r.meta, events: [...r.events()] };
  } finally {
    r.close();
  }
}

/** No output file and no temp file beside it. */
function assertNoLeftovers(out: string) {
  assert.not.ok(existsSync(out), `${out} must not exist`);
  const stray = readdirSync(dir).filter((f) => f.endsWith('.tmp') || f.includes('.trace'));
  assert.equal(stray, [], 'no partial or temp trace files');
}

async function rejects(p: Promise<unknown>): Promise<WasmRecordError> {
  try {
    await p;
  } catch (e) {
    assert.instance(e, WasmRecordError);
    return e as WasmRecordError;
  }
  return assert.unreachable('expected the recording to fail') as never;
}

const le = (n: number, width: number) => {
  const b = Buffer.alloc(8);
  b.writeBigUInt64LE(BigInt(n));
  return [...b.subarray(0, width)];
};
const f64 = (x: number) => { const b = Buffer.alloc(8); b.writeDoubleLE(x); return [...b]; };
const f32 = (x: number) => { const b = Buffer.alloc(4); b.writeFloatLE(x); return [...b]; };

// struct rec as objects.c writes it: [offset, width, value bytes]
const REC: [number, number, number[]][] = [
  [0, 4, le(0xdeadbeef, 4)],
  [4, 2, le(0x1234, 2)],
  [6, 1, le(0x56, 1)],
  [8, 8, [8, 7, 6, 5, 4, 3, 2, 1]],
  [16, 8, f64(2.5)],
  [24, 4, f32(-1.25)],
];

// Newer binaryen (the npm build that assemblyscript installs in node_modules/.bin) also hooks
// memory.grow (env.memory_grow_pre/post). The recorder must accept it and record the same
// accesses and heap events as with emscripten's binaryen.
withTools('a module instrumented by a newer binaryen (memory.grow hooks) records the same events', async () => {
  const npmWasmOpt = path.join(here, '..', 'node_modules', '.bin', 'wasm-opt');
  if (!existsSync(npmWasmOpt)) {
    console.log('  skipped: node_modules/.bin/wasm-opt (binaryen from npm, via assemblyscript) is not installed');
    return;
  }
  const newer = path.join(dir, 'objects-newer.wasm');
  const older = path.join(dir, 'objects-older.wasm');
  const r = spawnSync(npmWasmOpt, ['--instrument-memory', mods.plain, '-o', newer], { encoding: 'utf8' });
  assert.is(r.status, 0, r.stderr);
  const o = spawnSync(requireTool('wasm-opt', 'the test'), ['--instrument-memory', mods.plain, '-o', older], { encoding: 'utf8' });
  assert.is(o.status, 0, o.stderr);
  const names = WebAssembly.Module.imports(new WebAssembly.Module(readFileSync(newer))).map((i) => `${i.module}.${i.name}`);
  assert.ok(names.includes('env.memory_grow_pre'), `this binaryen should hook memory.grow; imports: ${names.join(', ')}`);
  const a = await record(older, ['5'], path.join(dir, 'a.trace'));
  const b = await record(newer, ['5'], path.join(dir, 'b.trace'));
  try {
    assert.is(b.stdout, a.stdout);
    assert.equal(readTrace(path.join(dir, 'b.trace')).events, readTrace(path.join(dir, 'a.trace')).events);
  } finally {
    for (const f of ['a.trace', 'b.trace']) rmSync(path.join(dir, f), { force: true });
  }
});

withTools('allocations, exact-width stores and loads with their values, and stdout come through', async () => {
  const out = path.join(dir, 'objects.trace');
  const n = 5;
  const run = await record(mods.instrumented, [String(n)], out);
  try {
    assert.is(run.stdout, 'objects: a=deadbeef b=1234 c=56 d=102030405060708 e=2.5 f=-1.25 sum=35\n');
    assert.is(run.s.exitCode, 0);
    assert.ok(run.s.allocRouted);
    assert.not.ok(run.s.truncated);
    assert.equal(run.notes, []);

    const { meta, events } = readTrace(out);
    assert.is(meta.source, 'granule-record-wasm');
    assert.equal(meta.command, [mods.instrumented, String(n)]);
    assert.is(meta.pageSize, 4096);
    assert.is(meta.wasmPageSize, 65536);
    assert.match(meta.recorder!, /binaryen instrument-memory/);
    assert.is(events.length, run.s.events);

    // The heap events, in program order, with the sizes the program asked for.
    const heap = events.filter((e) => e.type === 'alloc' || e.type === 'free' || e.type === 'realloc');
    assert.equal(heap.map((e) => (e.type === 'alloc' ? ['alloc', e.size, e.align] : e.type === 'realloc' ? ['realloc', e.size] : ['free'])), [
      ['alloc', 32, 16], // r
      ['alloc', 32, 16], // cp
      ['alloc', 4 * n, 16], // calloc(n, 4)
      ['realloc', 4000],
      ['alloc', 100, 64], // aligned_alloc(64, 100)
      ['free'], ['free'], ['free'], ['free'],
    ]);
    const [r, cp, arr, moved, s] = heap as [TraceEvent & { addr: number }, TraceEvent & { addr: number }, TraceEvent & { addr: number }, TraceEvent & { addr: number; newAddr: number }, TraceEvent & { addr: number }];
    assert.is(moved.addr, arr.addr);
    assert.is(s.addr % 64, 0);
    assert.equal(heap.slice(5).map((e) => e.addr), [s.addr, moved.newAddr, cp.addr, r.addr]);

    // Every access to the heap (nothing else of the program lives there), as the sequence of
    // accesses to each address: the optimizer may reorder loads of different addresses (wasm has no
    // volatile), but not the accesses to one address.
    const heapBase = meta.heapBase as number;
    assert.ok(r.addr >= heapBase);
    const perAddr = (list: [string, number, number, number[]][]) => {
      const m = new Map<number, string[]>();
      for (const [type, addr, size, value] of list) m.set(addr, [...(m.get(addr) ?? []), `${type} ${size} ${value.join(',')}`]);
      return [...m.entries()].sort((a, b) => a[0] - b[0]);
    };
    const got = events
      .filter((e): e is TraceEvent & { type: 'read' | 'write' } => (e.type === 'read' || e.type === 'write') && e.addr >= heapBase)
      .map((e) => [e.type, e.addr, e.size, [...e.value!]] as [string, number, number, number[]]);
    const want: [string, number, number, number[]][] = [];
    for (const [off, w, v] of REC) want.push(['write', r.addr + off, w, v], ['read', r.addr + off, w, v]);
    // The copy: each store's value is a load, made between the store's two instrumentation calls,
    // so a store must still be recorded at its own address.
    for (const [off, w, v] of REC) want.push(['read', r.addr + off, w, v], ['write', cp.addr + off, w, v]);
    for (let i = 0; i < n; i++) want.push(['write', arr.addr + 4 * i, 4, le(i * i + 1, 4)]);
    for (let i = 0; i < n; i++) want.push(['read', moved.newAddr + 4 * i, 4, le(i * i + 1, 4)]);
    want.push(['write', s.addr + 99, 1, [0x7a]]);
    assert.equal(perAddr(got), perAddr(want));

    const counts = [0, 0, 0, 0, 0, 0, 0, 0, 0];
    for (const e of events) counts[['read', 'write', 'modify', 'fetch', 'alloc', 'free', 'realloc', 'epoch', 'thread'].indexOf(e.type)]++;
    assert.equal(run.s.counts, counts);
    assert.equal([counts[EV_ALLOC], counts[EV_FREE], counts[EV_REALLOC]], [4, 4, 1]);
    assert.ok(counts[EV_READ] > 20 && counts[EV_WRITE] > 20, 'libc accesses (printf, atoi) are recorded too');

    // The same run gives the same events.
    const again = path.join(dir, 'objects-again.trace');
    await record(mods.instrumented, [String(n)], again);
    assert.equal(readTrace(again).events, events);
    rmSync(again);
  } finally {
    rmSync(out, { force: true });
  }
});

withTools('a module without the instrumentation: a clear error naming it, and no output file', async () => {
  const out = path.join(dir, 'plain.trace');
  const e = await rejects(record(mods.plain, [], out));
  assert.is(
    e.message,
    `${mods.plain} has no memory-instrumentation imports (env.load_ptr, env.store_ptr): instrument it with \`wasm-opt --instrument-memory IN -o OUT\` (binaryen)`,
  );
  assert.is(e.file, mods.plain);
  assertNoLeftovers(out);

  const junk = path.join(dir, 'junk.wasm');
  writeFileSync(junk, 'not wasm');
  const bad = await rejects(record(junk, [], out));
  assert.match(bad.message, new RegExp(`^${junk}: not a valid WebAssembly module: .*@\\+0`));
  rmSync(junk);
  assertNoLeftovers(out);
});

withTools('a trap: the error names the module, the trap, where, and the events so far; no output file', async () => {
  const out = path.join(dir, 'trap.trace');
  const e = await rejects(record(mods.instrumented, ['3', 'trap'], out));
  assert.match(e.message, new RegExp(`^${mods.instrumented}: the program trapped: unreachable \\(in .*, module offset 0x[0-9a-f]+\\) after \\d+ events; no trace written$`));
  assert.ok(e.events > 30, `${e.events} events before the trap`);
  assertNoLeftovers(out);
});

withTools('a non-zero exit and a double free fail the recording and leave no file', async () => {
  const out = path.join(dir, 'fail.trace');
  const ex = await rejects(record(mods.instrumented, ['3', 'exit'], out));
  assert.is(ex.exitCode, 7);
  assert.match(ex.message, /the program exited with code 7 after \d+ events; no trace written/);
  assertNoLeftovers(out);

  const df = await rejects(record(mods.instrumented, ['3', 'double-free'], out));
  assert.match(df.message, /free\(0x[0-9a-f]+\): the object at 0x[0-9a-f]+ was already freed \(double free or use after free\); the recorded program has a memory bug/);
  assertNoLeftovers(out);
});

withTools('a large allocation grows linear memory; past heapLimit malloc gets NULL and the error says why', async () => {
  const out = path.join(dir, 'grow.trace');
  const mib = 40;
  const run = await record(mods.instrumented, [String(mib), 'grow'], out);
  try {
    assert.is(run.stdout, 'grown g\n');
    const { meta, events } = readTrace(out);
    const big = events.find((e) => e.type === 'alloc');
    assert.ok(big && big.type === 'alloc' && big.size === mib << 20);
    const last = big!.addr + (mib << 20) - 1;
    assert.ok(last >= (meta.heapBase as number) + (mib << 20) - 1, 'above the initial memory');
    assert.equal(
      events.filter((e) => (e.type === 'write' || e.type === 'read') && e.addr === last).map((e) => [e.type, [...(e as { value: Uint8Array }).value]]),
      [['write', [0x67]], ['read', [0x67]]],
    );
  } finally {
    rmSync(out, { force: true });
  }

  const e = await rejects(record(mods.instrumented, [String(mib), 'grow'], out, { heapLimit: 32 << 20 }));
  assert.is(e.exitCode, 2);
  assert.match(e.message, /exited with code 2 after \d+ events; no trace written; the host heap had refused an allocation: cannot allocate 41943040 bytes: the heap would reach 0x[0-9a-f]+, past its limit 0x2000000/);
  assertNoLeftovers(out);
});

withTools('maxEvents stops the program and keeps exactly that many events', async () => {
  const out = path.join(dir, 'max.trace');
  const run = await record(mods.instrumented, ['3'], out, { maxEvents: 10 });
  try {
    assert.ok(run.s.truncated);
    assert.is(run.s.exitCode, -1);
    assert.is(run.s.events, 10);
    assert.is(run.notes.length, 1);
    const { meta, events } = readTrace(out);
    assert.is(events.length, 10);
    assert.is(meta.maxEvents, 10);
  } finally {
    rmSync(out, { force: true });
  }
});

withTools('a module with its own malloc: accesses only, allocRouted false, and a note saying so', async () => {
  const out = path.join(dir, 'own.trace');
  const run = await record(mods.ownMalloc, ['3'], out);
  try {
    assert.not.ok(run.s.allocRouted);
    assert.match(run.notes.join('\n'), /has no granule\.\* allocation imports/);
    assert.match(run.stdout, /sum=8\n$/);
    assert.is(run.s.counts[EV_ALLOC] + run.s.counts[EV_FREE] + run.s.counts[EV_REALLOC], 0);
    assert.ok(run.s.counts[EV_WRITE] > 0);
  } finally {
    rmSync(out, { force: true });
  }
});

withTools('kvstore: the trace agrees with the program\'s own allocation counts, and heap accesses hit live objects', async () => {
  const mod = buildWorkload('kvstore', 'wasm');
  const out = path.join(dir, 'kvstore.trace');
  const run = await record(mod, ['3000', '1'], out);
  try {
    const m = /allocs=(\d+) frees=(\d+) reallocs=(\d+)/.exec(run.stdout + run.stderr);
    assert.ok(m, `kvstore printed its allocation counts: ${run.stdout}${run.stderr}`);
    assert.equal([run.s.counts[EV_ALLOC], run.s.counts[EV_FREE], run.s.counts[EV_REALLOC]], [Number(m![1]), Number(m![2]), Number(m![3])]);
    assert.ok(run.s.counts[EV_READ] > 10000 && run.s.counts[EV_WRITE] > 10000);

    const { meta, events } = readTrace(out);
    const heapBase = meta.heapBase as number;
    const live = new Map<number, number>();
    let starts: number[] | undefined;
    let outside = 0;
    for (const e of events) {
      if (e.type === 'alloc') live.set(e.addr, e.size);
      else if (e.type === 'free') assert.ok(live.delete(e.addr), 'free of a live object');
      else if (e.type === 'realloc') {
        assert.ok(live.delete(e.addr), 'realloc of a live object');
        live.set(e.newAddr, e.size);
      } else if ((e.type === 'read' || e.type === 'write') && e.addr >= heapBase) {
        starts ??= [...live.keys()].sort((a, b) => a - b);
        let lo = 0;
        let hi = starts.length - 1;
        let at = -1;
        while (lo <= hi) {
          const mid = (lo + hi) >> 1;
          if (starts[mid] <= e.addr) { at = starts[mid]; lo = mid + 1; } else hi = mid - 1;
        }
        // libc's word-at-a-time string functions may touch the rest of the last 16-byte granule.
        if (at < 0 || e.addr + e.size > at + Math.ceil(Math.max(live.get(at)!, 1) / 16) * 16) outside++;
        continue;
      } else continue;
      starts = undefined;
    }
    assert.is(outside, 0, 'heap accesses outside any live object');
    assert.is(live.size, 0, 'kvstore frees everything');
  } finally {
    rmSync(out, { force: true });
  }
});

// ---- Import checks on hand-assembled modules (no toolchain needed). ----

function uleb(n: number): number[] {
  const out: number[] = [];
  do {
    let b = n & 0x7f;
    n >>>= 7;
    if (n) b |= 0x80;
    out.push(b);
  } while (n);
  return out;
}
const str = (s: string) => [...uleb(s.length), ...Buffer.from(s)];
const section = (id: number, body: number[]) => [id, ...uleb(body.length), ...body];

/**
 * A module importing functions of type () -> (), optionally with an empty exported _start and an
 * exported one-page memory.
 */
function assemble(names: [string, string][], runnable = false): Uint8Array<ArrayBuffer> {
  const body = [
    ...section(1, [1, 0x60, 0, 0]),
    ...section(2, [...uleb(names.length), ...names.flatMap(([m, n]) => [...str(m), ...str(n), 0, 0])]),
  ];
  if (runnable) {
    body.push(
      ...section(3, [1, 0]),
      ...section(5, [1, 0, 1]),
      ...section(7, [2, ...str('_start'), 0, ...uleb(names.length), ...str('memory'), 2, 0]),
      ...section(10, [1, 2, 0, 0x0b]),
    );
  }
  return new Uint8Array([0, 0x61, 0x73, 0x6d, 1, 0, 0, 0, ...body]);
}
const moduleImporting = (names: [string, string][]) => new WebAssembly.Module(assemble(names));
const INSTR: [string, string][] = [['env', 'load_ptr'], ['env', 'store_ptr'], ['env', 'load_val_i32'], ['wasi_snapshot_preview1', 'fd_write']];

test('checkInstrumented: hostMalloc follows the granule imports; unknown imports are refused by name', () => {
  assert.equal(checkInstrumented(moduleImporting(INSTR), 'a.wasm'), { hostMalloc: false });
  assert.equal(checkInstrumented(moduleImporting([...INSTR, ['granule', 'malloc'], ['granule', 'free']]), 'a.wasm'), { hostMalloc: true });
  assert.throws(
    () => checkInstrumented(moduleImporting([['wasi_snapshot_preview1', 'fd_write']]), 'dir/m.wasm'),
    (e: unknown) => e instanceof WasmRecordError && e.file === 'dir/m.wasm' && e.message.startsWith('dir/m.wasm has no memory-instrumentation imports (env.load_ptr, env.store_ptr)'),
  );
  for (const [m, n, why] of [
    ['env', 'emscripten_memcpy_big', /only binaryen --instrument-memory imports come from env/],
    ['granule', 'mmap', /provides only malloc, aligned_alloc, calloc, realloc, free/],
    ['wasi_unstable', 'fd_write', /only env, granule and wasi_snapshot_preview1 imports/],
  ] as const) {
    assert.throws(
      () => checkInstrumented(moduleImporting([...INSTR, [m, n]]), 'b.wasm'),
      (e: unknown) => e instanceof Error && e.message.startsWith(`b.wasm imports ${m}.${n} (function), which the wasm recorder cannot provide`) && why.test(e.message),
    );
  }
});

test('recordWasm: a WASI function @wasmer/wasi lacks, or no _start, is refused by name and nothing is written', async () => {
  const out = path.join(dir, 'hand.trace');
  const odd = path.join(dir, 'odd-wasi.wasm');
  writeFileSync(odd, assemble([...INSTR, ['wasi_snapshot_preview1', 'sock_accept_v2']], true));
  const e = await rejects(recordWasm({ module: odd, args: [], out, onNote: () => {} }));
  assert.is(e.message, `${odd} imports wasi_snapshot_preview1.sock_accept_v2, which @wasmer/wasi 1.2.2 does not provide`);
  assertNoLeftovers(out);

  const lib = path.join(dir, 'library.wasm');
  writeFileSync(lib, assemble(INSTR));
  const l = await rejects(recordWasm({ module: lib, args: [], out, onNote: () => {} }));
  assert.match(l.message, /library\.wasm exports no _start function/);
  assertNoLeftovers(out);
  rmSync(odd);
  rmSync(lib);
});

test('recordWasm: an empty program gives a valid trace with no events', async () => {
  const file = path.join(dir, 'empty.wasm');
  writeFileSync(file, assemble(INSTR, true));
  const out = path.join(dir, 'empty.trace');
  const notes: string[] = [];
  const s = await recordWasm({ module: file, args: ['x'], out, onNote: (n) => notes.push(n) });
  assert.is(s.events, 0);
  assert.is(s.exitCode, 0);
  assert.is(notes.length, 1, 'the note about the missing allocation imports');
  const t = readTrace(out);
  assert.equal(t.events, []);
  assert.equal(t.meta.command, [file, 'x']);
  rmSync(out);
  rmSync(file);
});

test.run();
