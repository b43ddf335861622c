// Trace import and replay rates, each next to a plain pass over the same file, measured side by
// side in one run (rounds interleave every measurement; ratios are paired per round, then medians):
//
//   import   a valgrind lackey log (gzip; the bundled one repeated REPEAT times, so each pass is long
//            enough to time on a noisy VM):
//              plain    gunzip and split into lines (count the newlines) over the importer's own stream
//              parse    importLackey into a sink that keeps nothing: parsing alone
//              import   importLackey into a TraceWriter (deflate) in a temp dir: `granule import lackey`
//   replay   a granule trace:
//              decode   TraceReader.blocks({ reuse: true }), touching every event: the floor for any replay
//              replay   replayFile with the default granularities: `granule replay`
//
//   npm run bench                          (all benchmarks)
//   node --import tsx bench/trace.bench.ts [--json] [--rounds N] [--quick] [--lackey LOG.gz] [--trace T.grt]
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { gunzipSync, gzipSync } from 'node:zlib';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { importLackey, openLackeyStream } from '../src/trace/lackey.ts';
import { TraceWriter } from '../src/trace/writer.ts';
import { TraceReader, traceInfo } from '../src/trace/reader.ts';
import type { EventSink } from '../src/trace/events.ts';
import { replayFile } from '../src/replay/run.ts';
import { machineInfo, median } from './machine.ts';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const argv = process.argv.slice(2);
const flag = (name: string) => argv.includes(name);
const value = (name: string, dflt: string) => { const i = argv.indexOf(name); return i >= 0 ? argv[i + 1] ?? '' : dflt; };
const known = new Set(['--json', '--quick', '--rounds', '--lackey', '--trace']);
for (let i = 0; i < argv.length; i++) {
  if (!known.has(argv[i]!)) { console.error(`unknown argument ${argv[i]}; usage: trace.bench.ts [--json] [--rounds N] [--quick] [--lackey LOG.gz] [--trace T.grt]`); process.exit(2); }
  if (['--rounds', '--lackey', '--trace'].includes(argv[i]!)) i++;
}
const json = flag('--json');
const ROUNDS = Number(value('--rounds', flag('--quick') ? '2' : '5'));
if (!Number.isInteger(ROUNDS) || ROUNDS < 1) { console.error('--rounds needs a positive integer'); process.exit(2); }
const lackeySource = path.resolve(value('--lackey', path.join(root, 'traces/bzip2-lackey.log.gz')));
const REPEAT = flag('--quick') ? 1 : 5;
const tracePath = path.resolve(value('--trace', path.join(root, 'traces/sqlite3-native.grt')));
for (const f of [lackeySource, tracePath]) {
  try { statSync(f); } catch { console.error(`${f} is missing: re-record the bundled traces (node --import tsx scripts/record-traces.ts) or name another file`); process.exit(1); }
}
const log = (s = '') => { if (!json) console.log(s); };

const discard: EventSink = { access() {}, alloc() {}, free() {}, realloc() {}, epoch() {}, thread() {} };
const tmp = mkdtempSync(path.join(os.tmpdir(), 'granule-bench-'));
// The shim's protocol is balanced line by line, so a repeated log is still a valid log.
const lackeyLog = path.join(tmp, 'lackey.log.gz');
{
  const raw = gunzipSync(readFileSync(lackeySource));
  const sep = raw[raw.length - 1] === 10 ? [] : [Buffer.from('\n')];
  writeFileSync(lackeyLog, gzipSync(Buffer.concat(Array.from({ length: REPEAT }, () => [raw, ...sep]).flat()), { level: 6 }));
}

async function plainLines(): Promise<number> {
  let n = 0;
  // The importer's own stream (same buffer sizes), so the only difference is the parsing.
  for await (const chunk of openLackeyStream(lackeyLog) as AsyncIterable<Buffer>) {
    let i = -1;
    while ((i = chunk.indexOf(10, i + 1)) !== -1) n++;
  }
  return n;
}

function plainDecode(): number {
  const r = TraceReader.open(tracePath);
  let n = 0;
  let sum = 0;
  try {
    for (const b of r.blocks({ reuse: true })) { // as replayFile reads
      for (let i = 0; i < b.count; i++) sum += b.addr[i]! + b.size[i]! + b.kind[i]!;
      n += b.count;
    }
  } finally { r.close(); }
  if (sum < 0) throw new Error('unreachable');
  return n;
}

async function time<T>(f: () => Promise<T> | T): Promise<[number, T]> {
  const t0 = performance.now();
  const v = await f();
  return [(performance.now() - t0) / 1000, v];
}

const info = traceInfo(tracePath);
const rates = { plain: [] as number[], parse: [] as number[], import: [] as number[], decode: [] as number[], replay: [] as number[] };
const ratios = { parseToPlain: [] as number[], importToPlain: [] as number[], replayToDecode: [] as number[] };
let lines = 0;
let accesses = 0;
log(`granule trace bench  ${new Date().toISOString()}`);
const m = machineInfo(root, ['src/trace', 'src/replay']);
log(`machine  ${m.cpu}, ${m.cores} cores, ${m.memGiB} GiB, node ${m.node}, ${m.os}${m.git ? `; checkout ${m.git}` : ''}`);
log(`import   ${path.relative(root, lackeySource)} x ${REPEAT} (${(statSync(lackeyLog).size / 1e6).toFixed(1)} MB gzip)`);
log(`replay   ${path.relative(root, tracePath)} (${(info.bytes / 1e6).toFixed(1)} MB, ${info.events.toLocaleString('en-US')} events)`);
log(`         ${ROUNDS} rounds (+1 warm-up), medians`);
try {
  for (let round = -1; round < ROUNDS; round++) {
    // The order rotates from round to round: whatever runs first after a GC or a JIT tier-up
    // should not always be the same measurement.
    let tPlain = 0, tParse = 0, tImport = 0, tDecode = 0, tReplay = 0, n = 0, events = 0;
    let st: Awaited<ReturnType<typeof importLackey>> | undefined;
    let r: Awaited<ReturnType<typeof replayFile>> | undefined;
    const steps = [
      async () => { [tPlain, n] = await time(plainLines); },
      async () => { [tParse, st] = await time(() => importLackey(lackeyLog, discard)); },
      async () => {
        const w = TraceWriter.create(path.join(tmp, 'bench.grt'), { source: 'bench', pageSize: 4096 });
        [tImport] = await time(async () => { await importLackey(lackeyLog, w); w.close(); });
      },
      async () => { [tDecode, events] = await time(plainDecode); },
      async () => { [tReplay, r] = await time(() => replayFile(tracePath)); },
    ];
    for (let k = 0; k < steps.length; k++) await steps[(k + Math.max(round, 0)) % steps.length]!();
    if (!st || !r) throw new Error('a measurement did not run');
    if (round < 0) continue;
    lines = n;
    if (st.lines !== n && st.lines !== n + 1) throw new Error(`line counts differ: plain ${n}, importer ${st.lines}`);
    accesses = r.totals.reads + r.totals.writes + r.totals.fetches;
    rates.plain.push(n / tPlain); rates.parse.push(n / tParse); rates.import.push(n / tImport);
    rates.decode.push(events / tDecode); rates.replay.push(events / tReplay);
    ratios.parseToPlain.push(tPlain / tParse); ratios.importToPlain.push(tPlain / tImport); ratios.replayToDecode.push(tDecode / tReplay);
  }
} finally {
  rmSync(tmp, { recursive: true, force: true });
}

const med = Object.fromEntries(Object.entries(rates).map(([k, v]) => [k, median(v)]));
const rat = Object.fromEntries(Object.entries(ratios).map(([k, v]) => [k, median(v)]));
if (json) {
  console.log(JSON.stringify({
    bench: 'granule trace', date: new Date().toISOString(), machine: m, rounds: ROUNDS,
    inputs: { lackey: { path: lackeySource, repeat: REPEAT, bytes: statSync(lackeyLog).size, lines }, trace: { path: tracePath, bytes: info.bytes, events: info.events, accesses } },
    ratesPerSecond: { ...med, unit: { plain: 'lines', parse: 'lines', import: 'lines', decode: 'events', replay: 'events' } },
    ratios: rat,
  }));
} else {
  const M = (x: number) => (x / 1e6).toFixed(2).padStart(7);
  log();
  log(`  lackey log, ${lines.toLocaleString('en-US')} lines            M lines/s   vs plain`);
  log(`    plain  gunzip + split lines             ${M(med.plain!)}     1`);
  log(`    parse  importLackey, nothing kept       ${M(med.parse!)}     ${rat.parseToPlain!.toFixed(3)}`);
  log(`    import importLackey -> granule trace    ${M(med.import!)}     ${rat.importToPlain!.toFixed(3)}`);
  log();
  log(`  granule trace, ${info.events.toLocaleString('en-US')} events         M events/s  vs decode`);
  log(`    decode TraceReader.blocks({reuse})      ${M(med.decode!)}     1`);
  log(`    replay through the simulator            ${M(med.replay!)}     ${rat.replayToDecode!.toFixed(3)}`);
}
