// granule record for native programs, end to end: real valgrind, the real preload shim, a small
// probe program whose allocations and stores are known in advance, and a workload whose own
// allocation counts (printed on stderr) must match the recorded events exactly. Failures (missing
// program, missing valgrind, failing program, Ctrl-C) must leave no file behind.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { TraceEvent } from '../src/trace/events.ts';
import { TraceReader } from '../src/trace/reader.ts';
import { NativeRecordError, recordNative, resolveProgram } from '../src/record/native.ts';
import { buildPreload, buildWorkload } from '../src/record/toolchain.ts';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const dir = mkdtempSync(join(tmpdir(), 'granule-record-native-'));
test.after(() => rmSync(dir, { recursive: true, force: true }));

const onPath = (tool: string) => spawnSync('sh', ['-c', `command -v ${tool}`], { encoding: 'utf8' }).stdout.trim();
const valgrind = onPath('valgrind');
const cc = onPath('cc');
const missing = [!valgrind && 'valgrind', !cc && 'cc'].filter(Boolean);
if (missing.length) console.log(`record-native.test.ts: skipping the recordings: ${missing.join(' and ')} not on PATH`);
const withTools = missing.length ? test.skip : test;

// Known allocations in a known order between a 12345-byte bracket, stores at known offsets.
// argv[1]: a file to write the path and load base of the object defining malloc (the shim);
// stdin: one more allocation's size.
const PROBE = String.raw`
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

void *volatile keep; /* the bracket escapes here, so the compiler cannot drop its malloc/free */

int main(int argc, char **argv) {
  unsigned long n = 0;
  if (scanf("%lu", &n) != 1) n = 1;

  void *marker = malloc(12345);
  keep = marker;
  volatile uint64_t *a = malloc(24);
  a[0] = 1;
  a[1] = 2;
  a[2] = 3;
  volatile uint32_t *b = calloc(10, 8);
  b[5] = 7;
  uint32_t seen = b[5];
  char *c = malloc(40);
  ((volatile char *)c)[39] = 'x';
  c = realloc(c, 4000);
  ((volatile char *)c)[3999] = 'y';
  void *p = NULL;
  if (posix_memalign(&p, 64, 100) != 0) return 2;
  ((volatile char *)p)[99] = 1;
  volatile uint16_t *q = aligned_alloc(4096, 8192);
  q[4095] = 5;
  volatile char *s = malloc(n);
  keep = (void *)s;
  s[0] = 0;
  free((void *)s);
  free((void *)q);
  free(p);
  free(c);
  free((void *)b);
  free((void *)a);
  free(marker);

  Dl_info info;
  if (argc > 1 && dladdr((void *)malloc, &info)) {
    FILE *f = fopen(argv[1], "w");
    if (!f) return 3;
    fprintf(f, "%s %p\n", info.dli_fname, info.dli_fbase);
    fclose(f);
  }
  return seen == 7 ? 0 : 4;
}
`;

let probe = '';
function buildProbe(): string {
  if (probe) return probe;
  writeFileSync(join(dir, 'probe.c'), PROBE);
  const r = spawnSync(cc, ['-O0', '-o', join(dir, 'probe'), join(dir, 'probe.c'), '-ldl'], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`cc failed:\n${r.stderr}`);
  return (probe = join(dir, 'probe'));
}

function readTrace(file: string) {
  const reader = TraceReader.open(file);
  try {
    return { meta: reader.meta, events: [...reader.events()] };
  } finally {
    reader.close();
  }
}

/** Nothing named like the output, and no writer temp file, in the output's directory. */
function noOutput(out: string) {
  assert.not.ok(existsSync(out), `${out} exists`);
  const leftovers = readdirSync(dirname(out)).filter((f) => f.endsWith('.tmp'));
  assert.equal(leftovers, [], 'temp files left');
}

async function rejects(p: Promise<unknown>): Promise<Error> {
  try {
    await p;
  } catch (e) {
    return e as Error;
  }
  throw new assert.Assertion({ message: 'expected the recording to fail', generated: false, operator: 'rejects', expects: 'error', actual: 'success' });
}

withTools('probe: allocator calls in order with their sizes, stores at known offsets, no allocator or shim accesses', async () => {
  const prog = buildProbe();
  const out = join(dir, 'probe.trace');
  const baseFile = join(dir, 'probe.base');
  const input = join(dir, 'probe.in');
  writeFileSync(input, '777\n');
  const notes: string[] = [];
  const s = await recordNative({ program: prog, args: [baseFile], out, stdin: input, fetches: true, programOutput: 'ignore', onNote: (n) => notes.push(n) });
  assert.equal(notes, []);
  assert.is(s.exitCode, 0);
  assert.is(s.out, out);
  const { meta, events } = readTrace(out);
  assert.is(s.events, events.length);
  assert.is(meta.source, 'granule-record-native');
  assert.equal(meta.command, [prog, baseFile]);
  assert.match(String(meta.recorder), /^valgrind-\S+ lackey \+ granule-preload 1$/);
  assert.is(meta.pageSize, 4096);
  assert.ok(!Number.isNaN(Date.parse(String(meta.created))));

  // The object events of the bracketed part, exactly.
  const start = events.findIndex((e) => e.type === 'alloc' && e.size === 12345);
  assert.ok(start >= 0, 'the 12345-byte bracket was allocated');
  const marker = (events[start] as { addr: number }).addr;
  const end = events.findIndex((e, i) => i > start && e.type === 'free' && e.addr === marker);
  assert.ok(end > start, 'the bracket was freed');
  const part = events.slice(start, end + 1);
  const objs = part.filter((e) => e.type === 'alloc' || e.type === 'free' || e.type === 'realloc');
  const addr = (k: number) => (objs[k] as { addr: number }).addr;
  const [a, b, c0] = [addr(1), addr(2), addr(3)];
  const c = (objs[4] as { newAddr: number }).newAddr;
  const [p, q, s7] = [addr(5), addr(6), addr(7)];
  assert.equal(objs, [
    { type: 'alloc', addr: marker, size: 12345, align: 16 },
    { type: 'alloc', addr: a, size: 24, align: 16 },
    { type: 'alloc', addr: b, size: 80, align: 16 },
    { type: 'alloc', addr: c0, size: 40, align: 16 },
    { type: 'realloc', addr: c0, newAddr: c, size: 4000 },
    { type: 'alloc', addr: p, size: 100, align: 64 },
    { type: 'alloc', addr: q, size: 8192, align: 4096 },
    { type: 'alloc', addr: s7, size: 777, align: 16 },
    { type: 'free', addr: s7 },
    { type: 'free', addr: q },
    { type: 'free', addr: p },
    { type: 'free', addr: c },
    { type: 'free', addr: b },
    { type: 'free', addr: a },
    { type: 'free', addr: marker },
  ]);
  assert.is(p % 64, 0);
  assert.is(q % 4096, 0);

  // Data accesses that touch each object, in order: exactly the program's stores and loads (no
  // calloc zeroing, no realloc copying, no allocator bookkeeping, no shim code).
  const data = part.filter((e): e is Extract<TraceEvent, { type: 'read' | 'write' | 'modify' | 'fetch' }> => e.type === 'read' || e.type === 'write' || e.type === 'modify');
  const touching = (base: number, size: number) =>
    data.filter((e) => e.addr < base + size && e.addr + e.size > base).map((e) => `${e.type} +${e.addr - base},${e.size}`);
  assert.equal(touching(a, 24), ['write +0,8', 'write +8,8', 'write +16,8']);
  assert.equal(touching(b, 80), ['write +20,4', 'read +20,4']);
  assert.equal(touching(c0, 40), ['write +39,1']);
  assert.ok(touching(c, 4000).includes('write +3999,1')); // and +39 again when realloc kept the block in place
  assert.equal(touching(p, 100), ['write +99,1']);
  assert.equal(touching(q, 8192), ['write +8190,2']);
  assert.equal(touching(s7, 777), ['write +0,1']);
  assert.equal(touching(marker, 12345), []);

  // The shim's text as the log reported it is the malloc-defining object's, and nothing ran there.
  const [shimFile, base] = readFileSync(baseFile, 'utf8').trim().split(' ');
  assert.is(shimFile, buildPreload());
  const st = s.stats;
  assert.ok(st.shimSeen);
  assert.ok(st.shimText.length >= 1);
  for (const [lo, hi] of st.shimText) assert.ok(lo >= Number(base) && hi > lo && hi < Number(base) + (1 << 20), `${lo.toString(16)}..${hi.toString(16)} vs base ${base}`);
  const inShim = (x: number) => st.shimText.some(([lo, hi]) => x >= lo && x < hi);
  const fetches = events.filter((e) => e.type === 'fetch') as { addr: number }[];
  assert.ok(fetches.length > 1000);
  assert.is(fetches.filter((e) => inShim(e.addr)).length, 0);
  assert.ok(st.droppedShim > 0);
  assert.ok(st.droppedAllocator > 0);
  assert.is(st.allocs, events.filter((e) => e.type === 'alloc').length);
  assert.is(s.counts.reduce((x, y) => x + y, 0), events.length);
});

withTools('kvstore workload: the recorded allocator events match the counts the workload prints', async () => {
  const prog = buildWorkload('kvstore', 'native');
  const args = ['300', '7'];
  const native = spawnSync(prog, args, { encoding: 'utf8' });
  assert.is(native.status, 0, native.stderr);
  const m = /kvstore allocs=(\d+) frees=(\d+) reallocs=(\d+)/.exec(native.stderr);
  assert.ok(m, native.stderr);
  const [allocs, frees, reallocs] = m!.slice(1).map(Number);
  const out = join(dir, 'kvstore.trace');
  const s = await recordNative({ program: prog, args, out, quiet: true });
  const { events } = readTrace(out);
  const count = (t: string) => events.filter((e) => e.type === t).length;
  assert.is(count('alloc'), allocs);
  assert.is(count('free'), frees);
  assert.is(count('realloc'), reallocs);
  assert.is(count('fetch'), 0);
  assert.ok(allocs > 20);
  // Many accesses fall inside live objects.
  const live = new Map<number, number>();
  let inside = 0, writes = 0;
  for (const e of events) {
    if (e.type === 'alloc') live.set(e.addr, e.size);
    else if (e.type === 'free') live.delete(e.addr);
    else if (e.type === 'realloc') { live.delete(e.addr); live.set(e.newAddr, e.size); }
    else if (e.type === 'write') {
      writes++;
      for (const [at, size] of live) if (e.addr >= at && e.addr + e.size <= at + size) { inside++; break; }
    }
  }
  assert.ok(inside > 1000, `${inside} of ${writes} writes inside live objects`);
  assert.is(s.stats.shimSeen, true);
});

withTools('a program without the shim (statically linked): trace written, with a note', async () => {
  writeFileSync(join(dir, 'static.c'), '#include <stdlib.h>\nint main(void){ volatile char *p = malloc(100); p[0] = 1; free((void*)p); return 0; }\n');
  const exe = join(dir, 'static');
  const r = spawnSync(cc, ['-static', '-O1', '-o', exe, join(dir, 'static.c')], { encoding: 'utf8' });
  if (r.status !== 0) {
    console.log(`record-native.test.ts: static linking unavailable (${r.stderr.trim().split('\n')[0]}); the no-shim case is untested`);
    return;
  }
  const out = join(dir, 'static.trace');
  const notes: string[] = [];
  const s = await recordNative({ program: exe, args: [], out, programOutput: 'ignore', onNote: (n) => notes.push(n) });
  assert.is(s.stats.shimSeen, false);
  assert.is(notes.length, 1);
  assert.match(notes[0], /did not load granule's preload shim .* no allocation events/);
  assert.equal(s.notes, notes);
  const { events } = readTrace(out);
  assert.ok(events.length > 100);
  assert.is(events.filter((e) => e.type === 'alloc').length, 0);
});

test('a missing or non-executable program: a clear error before valgrind runs, no output', async () => {
  const out = join(dir, 'missing.trace');
  let e = await rejects(recordNative({ program: 'granule-no-such-program', args: [], out, quiet: true }));
  assert.instance(e, NativeRecordError);
  assert.match(e.message, /cannot record granule-no-such-program: no such program on PATH/);
  noOutput(out);
  e = await rejects(recordNative({ program: './no-such-file', args: [], out, cwd: dir, quiet: true }));
  assert.match(e.message, /cannot record \.\/no-such-file: no such file \(.*no-such-file\)/);
  noOutput(out);
  const plain = join(dir, 'not-executable');
  writeFileSync(plain, '#!/bin/sh\n');
  chmodSync(plain, 0o644);
  e = await rejects(recordNative({ program: plain, args: [], out, quiet: true }));
  assert.match(e.message, /is not executable/);
  e = await rejects(recordNative({ program: dir, args: [], out, quiet: true }));
  assert.match(e.message, /is a directory/);
  noOutput(out);
});

test('resolveProgram: slash paths from cwd, bare names on PATH', () => {
  const exe = join(dir, 'tool');
  writeFileSync(exe, '#!/bin/sh\n');
  chmodSync(exe, 0o755);
  assert.is(resolveProgram('./tool', dir), exe);
  assert.is(resolveProgram('tool', '/', `/nonexistent:${dir}`), exe);
  assert.throws(() => resolveProgram('tool', dir, '/nonexistent'), /no such program on PATH/);
});

test('valgrind missing: named binary absent, or not on PATH', async () => {
  const out = join(dir, 'novg.trace');
  const e = await rejects(recordNative({ program: '/bin/true', args: [], out, valgrind: join(dir, 'no-valgrind'), quiet: true }));
  assert.instance(e, NativeRecordError);
  assert.match(e.message, /cannot run valgrind \(.*no-valgrind\): not found; install valgrind/);
  noOutput(out);

  // The command as a user meets it: PATH without valgrind.
  const script = join(dir, 'novg.mts'); // .mts: ESM outside a "type": "module" package
  writeFileSync(script, `import { recordNative } from ${JSON.stringify(join(root, 'src/record/native.ts'))};
try { await recordNative({ program: '/bin/true', args: [], out: ${JSON.stringify(out)}, quiet: true }); console.log('recorded'); }
catch (e) { console.log(e.name + ': ' + e.message); process.exitCode = 1; }\n`);
  const r = spawnSync(process.execPath, ['--import', 'tsx', script], { cwd: root, encoding: 'utf8', env: { ...process.env, PATH: join(dir, 'empty-path') } });
  assert.is(r.status, 1, r.stdout + r.stderr);
  assert.match(r.stdout, /^ToolError: valgrind not found on PATH: .*Install it: apt-get install -y valgrind/);
  assert.not.match(r.stdout, /^recorded/m);
  noOutput(out);
});

withTools('a failing program: the exit status and valgrind\'s words, no output', async () => {
  const out = join(dir, 'fail.trace');
  let e = await rejects(recordNative({ program: 'false', args: [], out, quiet: true }));
  assert.instance(e, NativeRecordError);
  assert.match(e.message, /^false exited with code 1 under valgrind; no trace written/);
  assert.is((e as NativeRecordError).exitCode, 1);
  noOutput(out);
  e = await rejects(recordNative({ program: 'sh', args: ['-c', 'kill -SEGV $$'], out, quiet: true }));
  assert.match(e.message, /^sh was killed by SIGSEGV under valgrind; no trace written\. valgrind said:\n {2}Process terminating with default action of signal 11/);
  assert.is((e as NativeRecordError).signal, 'SIGSEGV');
  noOutput(out);
  e = await rejects(recordNative({ program: 'sh', args: ['-c', 'echo first >&2; echo last words >&2; exit 3'], out, quiet: true }));
  assert.match(e.message, /^sh exited with code 3 under valgrind; no trace written\. Its standard error ended with:\n {2}first\n {2}last words$/);
  noOutput(out);
});

withTools('a bad shim message mid-run: the line named, the run stopped at once, no output', async () => {
  writeFileSync(join(dir, 'liar.c'), '#include <unistd.h>\n#include <valgrind/valgrind.h>\nint main(void){ VALGRIND_PRINTF("granule leave\\n"); sleep(30); return 0; }\n');
  const exe = join(dir, 'liar');
  const r = spawnSync(cc, ['-O1', '-o', exe, join(dir, 'liar.c')], { encoding: 'utf8' });
  assert.is(r.status, 0, r.stderr);
  const out = join(dir, 'liar.trace');
  const t0 = Date.now();
  const e = await rejects(recordNative({ program: exe, args: [], out, quiet: true }));
  assert.match(e.message, /^valgrind log of .*liar: line \d+: "granule leave" without a preceding "granule enter"/);
  assert.ok(Date.now() - t0 < 20_000, 'the program was not stopped');
  noOutput(out);
});

withTools('Ctrl-C while recording: the child is killed and nothing is left', async () => {
  const out = join(dir, 'interrupted.trace');
  const t0 = Date.now();
  let sent = false;
  const e = await rejects(recordNative({
    program: 'sleep', args: ['30'], out, quiet: true,
    onProgress: (n) => { if (n > 0 && !sent) { sent = true; process.kill(process.pid, 'SIGINT'); } },
  }));
  assert.instance(e, NativeRecordError);
  assert.match(e.message, /interrupted \(SIGINT\); no trace written/);
  assert.is((e as NativeRecordError).signal, 'SIGINT');
  assert.ok(Date.now() - t0 < 20_000);
  noOutput(out);
  assert.is(process.listenerCount('SIGINT'), 0);
});

test.run();
