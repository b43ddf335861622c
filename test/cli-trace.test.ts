// The trace commands as a user runs them (bin/granule.js as a child process): import, record,
// replay, trace info/dump; their output, exit codes (0 done, 1 bad input, 2 usage) and that a
// failure leaves no output file behind.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { gunzipSync } from 'node:zlib';
import { closeSync, copyFileSync, existsSync, mkdtempSync, openSync, readFileSync, readdirSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { replayFile } from '../src/replay/run.ts';
import { TraceReader } from '../src/trace/reader.ts';
import { importLackey } from '../src/trace/lackey.ts';
import { EventCollector } from '../src/trace/block.ts';
import { buildWorkload, findProgram } from '../src/record/toolchain.ts';
import { kvmUnavailable } from '../src/backend.ts';
import { TraceWriter } from '../src/trace/writer.ts';
import { EV_READ, EV_WRITE } from '../src/trace/events.ts';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const bin = join(root, 'bin', 'granule.js');
const dir = mkdtempSync(join(tmpdir(), 'granule-cli-trace-'));
const kv = join(root, 'traces/kvstore-native.grt');
const lackeyLog = join(root, 'traces/bzip2-lackey.log.gz');

function run(args: string[]) {
  const r = spawnSync(process.execPath, [bin, ...args], { cwd: dir, encoding: 'utf8', env: { ...process.env, NO_COLOR: '1' } });
  return { code: r.status, out: r.stdout, err: r.stderr };
}
const noStack = (s: string) => assert.not.match(s, /^\s+at .+:\d+:\d+\)?$/m, `a stack trace in:\n${s}`);
/** Nothing but `keep` in the scratch directory: no partial output, no temp file. */
const onlyFiles = (keep: string[]) => assert.equal(readdirSync(dir).sort(), [...keep].sort());

test.before(() => {
  const b = spawnSync(process.execPath, ['scripts/build.mjs'], { cwd: root, encoding: 'utf8' });
  if (b.status !== 0) throw new Error(`scripts/build.mjs failed:\n${b.stderr}`);
});
test.after(() => rmSync(dir, { recursive: true, force: true }));

test('replay --json prints one JSON object, equal to the library result, with totals the sums of epochs', async () => {
  const r = run(['replay', kv, '--json', '-g', '4096,1k,64', '-e', '5000']);
  assert.is(r.code, 0, r.err);
  const j = JSON.parse(r.out);
  assert.equal(j.granularities, [4096, 1024, 64]);
  const lib = await replayFile(kv, { granularities: [4096, 1024, 64], epochWrites: 5000 });
  assert.equal(j.epochs, JSON.parse(JSON.stringify(lib.epochs)));
  assert.equal(j.totals, JSON.parse(JSON.stringify(lib.totals)));
  for (const e of j.epochs) for (const k of ['index', 'writes', 'idealBytes', 'units', 'volumeBytes']) assert.ok(k in e, `epoch field ${k}`);
  for (const g of ['4096', '1024', '64']) {
    assert.is(j.totals.units[g], j.epochs.reduce((s: number, e: any) => s + e.units[g], 0));
    assert.is(j.totals.volumeBytes[g], j.epochs.reduce((s: number, e: any) => s + e.volumeBytes[g], 0));
  }
  assert.is(j.totals.epochs, j.epochs.length);
  assert.is(j.totals.writes, j.epochs.reduce((s: number, e: any) => s + e.writes, 0));
  assert.is(j.totals.idealBytes, j.epochs.reduce((s: number, e: any) => s + e.idealBytes, 0));
  assert.ok(j.epochs.slice(0, -1).every((e: any) => e.writes === 5000), 'full epochs of 5000 writes');
  assert.is(r.err, '', 'nothing on stderr when it is not a terminal');
});

test('replay prints a readable table; --epochs adds one row per epoch', () => {
  const r = run(['replay', kv, '--epochs', '-g', '4096,64']);
  assert.is(r.code, 0, r.err);
  assert.match(r.out, /granularity\s+dirty units\s+volume/);
  assert.match(r.out, /^\s+4096 B\s+[\d,]+\s/m);
  assert.match(r.out, /not-present \(first touch\)/);
  assert.match(r.out, /per epoch/);
});

test('replay reads lackey logs (gzip) by detection or --format, and refuses the wrong --format', () => {
  const auto = run(['replay', lackeyLog, '--json', '-g', '4096,64']);
  assert.is(auto.code, 0, auto.err);
  assert.is(JSON.parse(auto.out).trace.format, 'lackey');
  const forced = run(['replay', lackeyLog, '--json', '-g', '4096,64', '--format', 'lackey']);
  assert.equal(JSON.parse(forced.out).totals, JSON.parse(auto.out).totals);
  const wrong = run(['replay', lackeyLog, '--format', 'granule']);
  assert.is(wrong.code, 1);
  assert.match(wrong.err, /bzip2-lackey\.log\.gz.*offset 0/);
  noStack(wrong.err);
});

test('import lackey: the written trace holds exactly the events the importer produces', async () => {
  const r = run(['import', 'lackey', lackeyLog, '-o', 'bz.grt']);
  assert.is(r.code, 0, r.err);
  assert.match(r.err, /wrote bz\.grt: [\d,]+ events/);
  const want = new EventCollector();
  await importLackey(lackeyLog, want);
  const reader = TraceReader.open(join(dir, 'bz.grt'));
  const got = [...reader.events()];
  reader.close();
  assert.is(got.length, want.events.length);
  assert.equal(got, want.events);
  assert.ok(got.some((e) => e.type === 'alloc'), 'the shim\'s allocation events came along');
  const info = run(['trace', 'info', 'bz.grt', '--json']);
  assert.is(JSON.parse(info.out).events, got.length);
  const dump = run(['trace', 'dump', 'bz.grt', '--limit', '3']);
  assert.is(dump.out.trim().split('\n').length, 3);
  rmSync(join(dir, 'bz.grt'));
});

test('a lackey log on standard input (plain or gzip) imports and replays like the file', () => {
  const gz = readFileSync(lackeyLog);
  const viaPipe = (args: string[], input: Buffer) => spawnSync(process.execPath, [bin, ...args], { cwd: dir, input, encoding: 'utf8' });
  const a = viaPipe(['import', 'lackey', '-', '-o', 'pipe-gz.grt'], gz);
  assert.is(a.status, 0, a.stderr);
  const b = viaPipe(['import', 'lackey', '-', '-o', 'pipe-plain.grt'], gunzipSync(gz));
  assert.is(b.status, 0, b.stderr);
  const events = (f: string) => { const r = TraceReader.open(join(dir, f)); const e = [...r.events()]; r.close(); return e; };
  const fromGz = events('pipe-gz.grt');
  assert.ok(fromGz.length > 100000);
  assert.equal(fromGz, events('pipe-plain.grt'), 'the same events from gzip and plain');
  const file = run(['replay', lackeyLog, '--json']);
  const piped = viaPipe(['replay', '-', '--format', 'lackey', '--json'], gz);
  assert.is(piped.status, 0, piped.stderr);
  assert.equal(JSON.parse(piped.stdout).totals, JSON.parse(file.out).totals);
  const auto = viaPipe(['replay', '-'], gz);
  assert.is(auto.status, 1);
  assert.match(auto.stderr, /is a pipe.*--format lackey/);
  for (const f of ['pipe-gz.grt', 'pipe-plain.grt']) rmSync(join(dir, f));
});

test('Ctrl-C during an import exits 130 and leaves no temp file', async () => {
  const fifo = join(dir, 'slow.fifo');
  spawnSync('mkfifo', [fifo]);
  const child = spawn(process.execPath, [bin, 'import', 'lackey', 'slow.fifo', '-o', 'int.grt'], { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });
  // Keep the writer end open: the import waits for more lines until it is interrupted.
  const writer = openSync(fifo, 'w');
  writeSync(writer, gunzipSync(readFileSync(lackeyLog)).subarray(0, 1 << 20).toString().replace(/[^\n]*$/, ''));
  const started = Date.now();
  while (!readdirSync(dir).some((f) => f.endsWith('.tmp')) && Date.now() - started < 10000) await new Promise((r) => setTimeout(r, 50));
  assert.ok(readdirSync(dir).some((f) => f.endsWith('.tmp')), 'the import started writing');
  child.kill('SIGINT');
  const [code] = await once(child, 'exit');
  closeSync(writer);
  assert.is(code, 130);
  rmSync(fifo);
  onlyFiles([]);
});

test('import lackey: a garbage line is named by number and nothing is written', () => {
  writeFileSync(join(dir, 'bad.log'), 'I  04016f0,3\n S 1ffefffd38,8\n L 04222c0,8\nhello world\n');
  const r = run(['import', 'lackey', 'bad.log', '-o', 'bad.grt']);
  assert.is(r.code, 1);
  assert.match(r.err, /bad\.log: line 4: cannot parse "hello world"/);
  noStack(r.err);
  onlyFiles(['bad.log']);
  rmSync(join(dir, 'bad.log'));
});

test('bad traces: truncated, empty, not a trace, missing: exit 1 naming the file and position', () => {
  const buf = readFileSync(kv);
  writeFileSync(join(dir, 'cut.grt'), buf.subarray(0, Math.floor(buf.length / 2)));
  for (const args of [['replay', 'cut.grt'], ['trace', 'info', 'cut.grt']]) {
    const r = run(args);
    assert.is(r.code, 1, `${args.join(' ')}: ${r.err}`);
    assert.match(r.err, /cut\.grt: offset \d+: .*(cut short|ends inside|truncated)/i);
    noStack(r.err);
  }
  writeFileSync(join(dir, 'empty.grt'), '');
  assert.match(run(['replay', 'empty.grt']).err, /empty\.grt.*empty/);
  writeFileSync(join(dir, 'notes.txt'), 'just some text\n');
  const nt = run(['replay', 'notes.txt']);
  assert.is(nt.code, 1);
  assert.match(nt.err, /neither a granule trace nor a valgrind lackey log/);
  const missing = run(['replay', 'nothere.grt']);
  assert.is(missing.code, 1);
  assert.match(missing.err, /nothere\.grt.*cannot read/);
  for (const f of ['cut.grt', 'empty.grt', 'notes.txt']) rmSync(join(dir, f));
});

test('usage errors: exit 2 with the reason', () => {
  const cases: [string[], RegExp][] = [
    [['replay', kv, '-g', '4096,48'], /'48'|48 is not a power of two/],
    [['replay', kv, '-g', 'abc'], /'abc' is not a size/],
    [['replay', kv, '-e', '0'], /at least 1/],
    [['replay', kv, '--format', 'csv'], /invalid/i],
    [['record', '-o', 'x.grt'], /no program to record/],
    [['import', 'lackey', lackeyLog], /required option.*--output/],
  ];
  for (const [args, re] of cases) {
    const r = run(args);
    assert.is(r.code, 2, `${args.join(' ')}: ${r.err}`);
    assert.match(r.err, re);
    noStack(r.err);
  }
  onlyFiles([]);
});

test('record: a missing program and an uninstrumented module fail clearly and leave nothing', () => {
  const a = run(['record', '-o', 'x.grt', '--', './no-such-program', '1']);
  assert.is(a.code, 1);
  assert.match(a.err, /no-such-program/);
  noStack(a.err);
  writeFileSync(join(dir, 'plain.wasm'), Buffer.from([0, 0x61, 0x73, 0x6d, 1, 0, 0, 0]));
  const b = run(['record', '--wasm', 'plain.wasm', '-o', 'y.grt']);
  assert.is(b.code, 1);
  assert.match(b.err, /plain\.wasm.*instrument/);
  noStack(b.err);
  onlyFiles(['plain.wasm']);
  rmSync(join(dir, 'plain.wasm'));
});

test('record end to end: a workload natively (valgrind) and as wasm, then replay both', () => {
  if (!findProgram('valgrind') || !findProgram('emcc') || !findProgram('wasm-opt')) {
    console.log('  skipped: valgrind, emcc or wasm-opt missing (apt-get install -y valgrind emscripten binaryen)');
    return;
  }
  copyFileSync(buildWorkload('kvstore', 'native'), join(dir, 'kvstore'));
  const n = run(['record', '-o', 'kv-native.grt', '--', './kvstore', '200', '3']);
  assert.is(n.code, 0, n.err);
  const w = run(['record', '--wasm', buildWorkload('kvstore', 'wasm'), '-o', 'kv-wasm.grt', '--', '200', '3']);
  assert.is(w.code, 0, w.err);
  assert.match(n.out + w.out, /kvstore size=200 seed=3/);
  for (const f of ['kv-native.grt', 'kv-wasm.grt']) {
    const info = JSON.parse(run(['trace', 'info', f, '--json']).out);
    assert.ok(info.counts[4] > 0, `${f} has alloc events`);
    const r = run(['replay', f, '--json']);
    assert.is(r.code, 0, r.err);
    assert.ok(JSON.parse(r.out).totals.writes > 0);
  }
  // Same program, same arguments: both recorders see the same objects.
  const allocs = (f: string) => JSON.parse(run(['trace', 'info', f, '--json']).out).counts[4];
  assert.ok(existsSync(join(dir, 'kv-native.grt')));
  assert.is(allocs('kv-native.grt'), allocs('kv-wasm.grt'));
});

test('replay --backend kvm runs the trace on real hardware and agrees with the simulator', async () => {
  const why = kvmUnavailable();
  if (why) { console.log(`  skipped: KVM is not available here: ${why.split('\n')[0]}`); return; }
  const w = TraceWriter.create(join(dir, 'high.grt'), { source: 'hand', pageSize: 4096 });
  for (let i = 0; i < 400; i++) {
    w.access(EV_WRITE, 0x4000000 + ((i * 7919) % (8 * 4096)), 8);
    w.access(EV_READ, 0x1ffeff0000 + ((i * 104729) % (4 * 4096)), 4);
  }
  w.close();
  const sim = run(['replay', 'high.grt', '--json', '-e', '100', '-g', '4096,64']);
  const kvm = run(['replay', 'high.grt', '--json', '-e', '100', '-g', '4096,64', '--backend', 'kvm']);
  assert.is(kvm.code, 0, kvm.err);
  const a = JSON.parse(sim.out), b = JSON.parse(kvm.out);
  assert.is(b.backend.name, 'kvm');
  assert.match(b.backend.reason, /KVM on Linux/);
  assert.equal(b.epochs.map((e: any) => [e.units, e.faults]), a.epochs.map((e: any) => [e.units, e.faults]));
  const text = run(['replay', 'high.grt', '-e', '100', '--backend', 'kvm']);
  assert.match(text.out, /KVM \(the guest's trace player and in-guest #PF monitor\)/);
  rmSync(join(dir, 'high.grt'));
});

test.run();
