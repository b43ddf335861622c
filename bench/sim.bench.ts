// Throughput of the WASM simulator's batch path (runBatch), measured side by side in one run:
//
//   decode    bench/decode.ts, compiled here with `npx asc` using the simulator's release options:
//             the same per-record loads and validation as runBatch over a byte-identical copy of the
//             tlb-hit records, folding every field into a checksum. The practical limit.
//   tlb-hit   8-byte reads/writes over 12 pages already in the TLB (every lookup hits). The 12 pages
//             sit in distinct TLB sets at ways 0..11, so the lookup cost is the average over way
//             positions and the same in every round; "best case" puts them all at way 0.
//   walk      random 8-byte reads/writes over 1 GiB of GVA mapped with 4 KiB guest pages (onto 256
//             frames) and 4 KiB EPT pages: nearly every access misses the TLB and walks 24 entries.
//   js decode informational: the same decode loop in JS over the simulator's batch DataView.
//
// Main regime: one batch of the default capacity (65536 records, 1 MiB, cache-resident as records
// freshly written by BatchWriter are) run 16 times. Streamed regime: 1 Mi distinct records (16 MiB).
// Rounds interleave every measurement; ratios are paired per round, then medians are reported.
//
//   npm run bench                                  (builds everything first)
//   npm run build:sim && node --import tsx bench/sim.bench.ts [--json] [--rounds N] [--quick] [--wasm F]
//
// --json prints one JSON object (use `npm run -s bench -- --json` to keep npm's banner off stdout).
// --wasm F measures another build of the simulator with the exports src/sim.ts expects (e.g. a
// variant of sim/ compiled under /tmp) against the same baseline. Targets that are missed are
// printed as MISS; the exit code is 0 unless the bench itself fails.
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Sim, BATCH_DONE } from '../src/sim.ts';
import { BatchWriter } from '../src/batch.ts';
import { FrameAllocator, EptBuilder, GuestPtBuilder, addrMaskFor, PAGE_4K } from '../src/space.ts';
import { ACC_READ, ACC_WRITE, ACC_USER, ACC_VALUE, REC_SIZE, INVVPID_ALL } from '../src/consts.ts';
import type { Counters } from '../src/counters.ts';
import { machineInfo, median } from './machine.ts';
import { Rng } from '../src/rng.ts';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const argv = process.argv.slice(2);
const json = argv.includes('--json');
const quick = argv.includes('--quick');
const roundsArg = argv.indexOf('--rounds');
const wasmArg = argv.indexOf('--wasm');
for (const a of argv) {
  const isValue = (roundsArg >= 0 && a === argv[roundsArg + 1]) || (wasmArg >= 0 && a === argv[wasmArg + 1]);
  if (!['--json', '--quick', '--rounds', '--wasm'].includes(a) && !isValue) {
    console.error(`unknown argument ${a}; usage: sim.bench.ts [--json] [--rounds N] [--quick] [--wasm other-sim.wasm]`);
    process.exit(2);
  }
}
/** the simulator module measured: build/sim.release.wasm, or a variant built elsewhere (same exports) */
const simWasmPath = wasmArg >= 0 ? path.resolve(argv[wasmArg + 1] ?? '') : path.join(root, 'build/sim.release.wasm');

// ---- configuration -------------------------------------------------------------------------
const MAX_PHY = 46;
const ROUNDS = roundsArg >= 0 ? Number(argv[roundsArg + 1]) : quick ? 3 : 15;
const WARMUP_ROUNDS = quick ? 1 : 2;
if (!Number.isInteger(ROUNDS) || ROUNDS < 1) { console.error('--rounds needs a positive integer'); process.exit(2); }
/** main regime: one batch of the default capacity, run PASSES times */
const BATCH_RECORDS = 1 << 16;
const PASSES = quick ? 4 : 16;
/** streamed regime: distinct records read once per run */
const N_STREAM = quick ? 1 << 18 : 1 << 20;
const WRITE_FRACTION = 0.25;
const TLB_SETS = 128;
const TLB_WAYS = 12;
const EPT_AD = true;
/** the walk-heavy area: 1 GiB of GVA, 4 KiB pages, onto DATA_FRAMES guest frames */
const WALK_BASE = 0x7fc0_0000_0000n; // 1 GiB aligned: PML4 index 255, PDPT index 256
const WALK_PAGES = 1 << 18;
const DATA_FRAMES = 256;
/** tlb-hit pages: one per way position, in consecutive (distinct) TLB sets */
const HOT_PAGES = TLB_WAYS;
const HOT_BASE = 0x5555_4000_0000n;

// Host-physical layout of each simulator: table frames, then the data frames.
const TABLES_HPA = 0x10_0000n; // 1 MiB ..
const DATA_HPA = 0x100_0000n; // 16 MiB .. 16 MiB + DATA_FRAMES pages
const PHYS_BYTES = Number(DATA_HPA) + DATA_FRAMES * 4096;
const DATA_GPA = 0x0n;
const TABLES_GPA = 0x1000_0000n; // guest-physical frames of the guest page tables

// hit simulator's batch area: [warm: spread | warm: best case | hit batch | hit stream]
const WARM_FILLS = HOT_PAGES * TLB_WAYS;
const SPREAD_AT = 0;
const BEST_AT = WARM_FILLS;
const HIT_AT = 2 * WARM_FILLS;
const STREAM_AT = HIT_AT + BATCH_RECORDS;
const HIT_CAPACITY = STREAM_AT + N_STREAM;

// ---- helpers -------------------------------------------------------------------------------
const log = (s = '') => { if (!json) console.log(s); };
const nowNs = () => process.hrtime.bigint();
const M = (r: number) => (r / 1e6).toFixed(r >= 1e8 ? 0 : r >= 1e7 ? 1 : 2);
const hex = (v: bigint) => '0x' + v.toString(16);


function machine() {
  return {
    ...machineInfo(root, ['sim']),
    simWasm: path.relative(root, simWasmPath).startsWith('..') ? simWasmPath : path.relative(root, simWasmPath),
    simWasmSha256: createHash('sha256').update(simWasm).digest('hex').slice(0, 16),
  };
}

// ---- the decode-only baseline, compiled from bench/decode.ts -------------------------------
interface DecodeExports {
  memory: WebAssembly.Memory;
  reserve(bytes: number): number;
  decode(buf: number, start: number, end: number, valueCap: number): bigint;
  lastBad(): number;
}

async function buildDecoder(): Promise<DecodeExports> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'granule-bench-'));
  try {
    // Same optimisation options as the simulator's release target, but never its output files.
    const cfg = JSON.parse(readFileSync(path.join(root, 'asconfig.json'), 'utf8'));
    const release = { ...(cfg.targets?.release ?? {}) };
    for (const k of ['outFile', 'textFile', 'sourceMap', 'debug']) delete release[k];
    const options = { ...(cfg.options ?? {}), ...release };
    writeFileSync(path.join(dir, 'asconfig.json'), JSON.stringify({ options }));
    const out = path.join(dir, 'decode.wasm');
    try {
      execFileSync('npx', ['--no-install', 'asc', path.join(root, 'bench/decode.ts'), '--config', path.join(dir, 'asconfig.json'), '-o', out],
        { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
    } catch (e) {
      const err = e as { stderr?: Buffer; stdout?: Buffer };
      throw new Error(`npx asc bench/decode.ts failed:\n${err.stderr?.toString() ?? ''}${err.stdout?.toString() ?? ''}`);
    }
    const inst = await WebAssembly.instantiate(readFileSync(out), { env: { abort() { throw new Error('decode.ts abort'); } } });
    return inst.instance.exports as unknown as DecodeExports;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** The same decode in JS over a DataView (informational; JS has no cheap u64, so two u32 halves). */
function jsDecode(v: DataView, start: number, end: number, valueCap: number): number {
  let h = 0x7f4a7c15 | 0;
  for (let i = start; i < end; i++) {
    const r = i * REC_SIZE;
    const lo = v.getUint32(r, true);
    const hi = v.getUint32(r + 4, true);
    const access = v.getUint8(r + 8);
    const size = v.getUint8(r + 9);
    const voff = v.getUint32(r + 12, true);
    if (size === 0 || size > 64 || (access & 3) === 3 || ((access & ACC_VALUE) !== 0 && voff + size > valueCap)) throw new Error(`bad record ${i}`);
    h = ((h << 5) | (h >>> 27)) ^ ((lo + hi + (access << 24) + (size << 16) + voff) | 0);
  }
  return h;
}

// ---- setup ---------------------------------------------------------------------------------
const tSetup = nowNs();
const decoder = await buildDecoder();
let simWasm: Uint8Array<ArrayBuffer>;
try {
  simWasm = new Uint8Array(readFileSync(simWasmPath));
} catch (e) {
  console.error(`cannot read the simulator module ${simWasmPath}: ${(e as Error).message}${wasmArg < 0 ? ' (run npm run build:sim first)' : ''}`);
  process.exit(1);
}

/** A simulator with guest tables and an EPT (4 KiB pages), data GPA frames mapped 1:1 onto HPA. */
async function makeSim(batchCapacity: number) {
  const sim = await Sim.create({ wasm: simWasm, physBytes: PHYS_BYTES, maxPhyAddr: MAX_PHY, tlbSets: TLB_SETS, tlbWays: TLB_WAYS, batchCapacity });
  const mask = addrMaskFor(MAX_PHY);
  const tables = new FrameAllocator(TABLES_HPA, DATA_HPA);
  const ept = new EptBuilder(sim, tables, mask);
  const gpt = new GuestPtBuilder(sim, tables, new FrameAllocator(TABLES_GPA, TABLES_GPA + 0x1000_0000n), ept, mask);
  ept.mapRange(DATA_GPA, DATA_HPA, BigInt(DATA_FRAMES) * PAGE_4K);
  const frame = (i: number) => DATA_GPA + (BigInt(i % DATA_FRAMES) << 12n);
  return { sim, tables, map: (gva: bigint, i: number) => gpt.map(gva, frame(i)), go: () => sim.setCpu({ cr3: gpt.cr3, eptp: ept.eptp(EPT_AD), vpid: 1 }) };
}

const rand = new Rng(0x6a0f5);
const kind = () => (rand.float() < WRITE_FRACTION ? ACC_WRITE : ACC_READ) | ACC_USER;
const offset = () => BigInt(Math.floor(rand.float() * 512) * 8);
function writer(sim: Sim) {
  const w = new BatchWriter(sim);
  return { w, push: (gva: bigint, acc: number) => { if (!w.push(gva, acc, 8)) throw new Error('batch full'); } };
}

// Walk-heavy simulator: 1 GiB mapped, one batch of random accesses over it.
const walk = await makeSim(BATCH_RECORDS);
for (let i = 0; i < WALK_PAGES; i++) walk.map(WALK_BASE + (BigInt(i) << 12n), i);
walk.go();
const walkW = writer(walk.sim);
for (let i = 0; i < BATCH_RECORDS; i++) walkW.push(WALK_BASE + (BigInt(Math.floor(rand.float() * WALK_PAGES)) << 12n) + offset(), kind());

// TLB-hit simulator: hot page p in set (base + p); TLB_WAYS - 1 filler pages in each of those sets.
// A warm-up makes exactly TLB_WAYS fills per set (the FIFO pointer ends where it started), so the
// hot pages land on the same ways every round: way p ("spread"), or way 0 ("best case").
const hit = await makeSim(HIT_CAPACITY);
const hotPage = (p: number) => HOT_BASE + (BigInt(p) << 12n);
const filler = (p: number, k: number) => hotPage(p) + BigInt(k * TLB_SETS) * PAGE_4K;
for (let p = 0; p < HOT_PAGES; p++) {
  hit.map(hotPage(p), p);
  for (let k = 1; k < TLB_WAYS; k++) hit.map(filler(p, k), p * TLB_WAYS + k);
}
hit.go();
const hitW = writer(hit.sim);
const warm = (wayOf: (p: number) => number) => {
  for (let p = 0; p < HOT_PAGES; p++) {
    let k = 1;
    for (let way = 0; way < TLB_WAYS; way++) {
      if (way === wayOf(p)) hitW.push(hotPage(p), ACC_WRITE | ACC_USER); // a write, so D is set and later writes hit
      else hitW.push(filler(p, k++), ACC_READ | ACC_USER);
    }
  }
};
warm((p) => p);
warm(() => 0);
const hot = () => hotPage(Math.floor(rand.float() * HOT_PAGES)) + offset();
for (let i = 0; i < BATCH_RECORDS + N_STREAM; i++) hitW.push(hot(), kind());
if (hitW.w.count !== HIT_CAPACITY) throw new Error(`wrote ${hitW.w.count} records, expected ${HIT_CAPACITY}`);

// The decoder gets byte-identical, 64-byte aligned copies of the tlb-hit records (batch, stream).
const { records } = hit.sim.batchView();
const decBatch = decoder.reserve((BATCH_RECORDS + N_STREAM) * REC_SIZE);
if (decBatch === 0) throw new Error('decode module: cannot grow memory');
const decStream = decBatch + BATCH_RECORDS * REC_SIZE;
new Uint8Array(decoder.memory.buffer, decBatch, (BATCH_RECORDS + N_STREAM) * REC_SIZE)
  .set(new Uint8Array(records.buffer, records.byteOffset + HIT_AT * REC_SIZE, (BATCH_RECORDS + N_STREAM) * REC_SIZE));
const setupMs = Number(nowNs() - tSetup) / 1e6;

// ---- measurement ---------------------------------------------------------------------------
function run(sim: Sim, start: number, end: number): void {
  const r = sim.runBatch(start, end, 0);
  if (r.status !== BATCH_DONE || r.next !== end) {
    const f = sim.lastFault();
    throw new Error(`runBatch [${start}, ${end}) stopped at ${r.next} with status ${r.status}: fault kind ${f.kind} at GVA ${hex(f.gva)} GPA ${hex(f.gpa)} code ${hex(BigInt(f.code))}`);
  }
}
/** accesses per second of `passes` runs of `fn` over `n` records */
function timed(fn: () => void, n: number, passes: number): number {
  const t0 = nowNs();
  for (let p = 0; p < passes; p++) fn();
  return (n * passes) / (Number(nowNs() - t0) / 1e9);
}
const sum = (a: Counters, b: Counters) => { for (const k of Object.keys(b)) a[k] = (a[k] ?? 0) + b[k]!; return a; };
let checksum = 0n;
let jsChecksum = 0;
const valueCap = hit.sim.valueCapacity;
const decode = (buf: number, n: number) => {
  checksum ^= decoder.decode(buf, 0, n, valueCap);
  if (decoder.lastBad() >>> 0 !== 0xffffffff) throw new Error(`decode: bad record ${decoder.lastBad()}`);
};
const warmHit = (at: number) => { hit.sim.invvpid(INVVPID_ALL, 0); run(hit.sim, at, at + WARM_FILLS); hit.sim.resetCounters(); };

const rates = { decode: [] as number[], tlb: [] as number[], tlbBest: [] as number[], walk: [] as number[], js: [] as number[], decodeStream: [] as number[], tlbStream: [] as number[] };
const ratios = { tlb: [] as number[], tlbBest: [] as number[], walk: [] as number[], tlbStream: [] as number[] };
const cTlb: Counters = {};
const cWalk: Counters = {};
const cStream: Counters = {};
const tMeasure = nowNs();
for (let round = -WARMUP_ROUNDS; round < ROUNDS; round++) {
  // main regime
  const d = timed(() => decode(decBatch, BATCH_RECORDS), BATCH_RECORDS, PASSES);
  warmHit(SPREAD_AT);
  const t = timed(() => run(hit.sim, HIT_AT, HIT_AT + BATCH_RECORDS), BATCH_RECORDS, PASSES);
  const ct = hit.sim.counters();
  walk.sim.invvpid(INVVPID_ALL, 0);
  walk.sim.resetCounters();
  const wr = timed(() => run(walk.sim, 0, BATCH_RECORDS), BATCH_RECORDS, PASSES);
  const cw = walk.sim.counters();
  warmHit(BEST_AT);
  const tb = timed(() => run(hit.sim, HIT_AT, HIT_AT + BATCH_RECORDS), BATCH_RECORDS, PASSES);
  const ctb = hit.sim.counters();
  const j = timed(() => { jsChecksum ^= jsDecode(records, HIT_AT, HIT_AT + BATCH_RECORDS, valueCap); }, BATCH_RECORDS, PASSES);
  // streamed regime
  const ds = timed(() => decode(decStream, N_STREAM), N_STREAM, 1);
  warmHit(SPREAD_AT);
  const ts = timed(() => run(hit.sim, STREAM_AT, STREAM_AT + N_STREAM), N_STREAM, 1);
  const cs = hit.sim.counters();
  if (round < 0) continue;
  rates.decode.push(d); rates.tlb.push(t); rates.tlbBest.push(tb); rates.walk.push(wr); rates.js.push(j);
  rates.decodeStream.push(ds); rates.tlbStream.push(ts);
  ratios.tlb.push(t / d); ratios.tlbBest.push(tb / d); ratios.walk.push(wr / d); ratios.tlbStream.push(ts / ds);
  sum(cTlb, ct); sum(cTlb, ctb); sum(cWalk, cw); sum(cStream, cs);
}
const measureMs = Number(nowNs() - tMeasure) / 1e6;

// ---- report --------------------------------------------------------------------------------
const stat = (xs: number[], records: number, passes: number) => ({
  accesses: records * passes, records, passes, medianPerSec: Math.round(median(xs)),
  minPerSec: Math.round(Math.min(...xs)), maxPerSec: Math.round(Math.max(...xs)), samplesPerSec: xs.map(Math.round),
});
const results = {
  decodeWasm: stat(rates.decode, BATCH_RECORDS, PASSES),
  tlbHit: stat(rates.tlb, BATCH_RECORDS, PASSES),
  walk: stat(rates.walk, BATCH_RECORDS, PASSES),
  tlbHitBestCase: stat(rates.tlbBest, BATCH_RECORDS, PASSES),
  decodeJs: stat(rates.js, BATCH_RECORDS, PASSES),
  streamed: {
    decodeWasm: stat(rates.decodeStream, N_STREAM, 1),
    tlbHit: stat(rates.tlbStream, N_STREAM, 1),
  },
};
const ratio = {
  tlbHitToDecode: median(ratios.tlb),
  walkToDecode: median(ratios.walk),
  tlbHitBestCaseToDecode: median(ratios.tlbBest),
  streamedTlbHitToDecode: median(ratios.tlbStream),
  jsDecodeToWasmDecode: median(rates.js) / median(rates.decode),
};
const per = (c: Counters, k: string, d: string) => (c[k] ?? 0) / (c[d] || NaN);
const faults = (c: Counters) => ['pf', 'gp', 'eptViolation', 'eptMisconfig', 'pmlFull', 'sppEvent', 'bus'].reduce((a, k) => a + (c[k] ?? 0), 0);
const evidence = {
  tlbHit: {
    accesses: cTlb.accesses ?? 0, hitsPerAccess: per(cTlb, 'tlbHits', 'accesses'), missesPerAccess: per(cTlb, 'tlbMisses', 'accesses'),
    walksPerAccess: per(cTlb, 'walks', 'accesses'), faults: faults(cTlb),
  },
  walk: {
    accesses: cWalk.accesses ?? 0,
    missesPerAccess: per(cWalk, 'tlbMisses', 'accesses'),
    walksPerAccess: per(cWalk, 'walks', 'accesses'),
    refsPerWalk: ((cWalk.guestRefs ?? 0) + (cWalk.eptRefs ?? 0)) / (cWalk.walks || NaN),
    guestRefsPerWalk: per(cWalk, 'guestRefs', 'walks'),
    eptRefsPerWalk: per(cWalk, 'eptRefs', 'walks'),
    pscHitsPerWalk: per(cWalk, 'pscHits', 'walks'),
    adWritesPerAccess: per(cWalk, 'adWrites', 'accesses'),
    faults: faults(cWalk),
  },
  tlbHitStreamed: { accesses: cStream.accesses ?? 0, hitsPerAccess: per(cStream, 'tlbHits', 'accesses'), faults: faults(cStream) },
};
const targets = [
  { name: 'tlb-hit stream within 2x of the plain decode loop', target: 'tlbHit/decode >= 0.5', measured: ratio.tlbHitToDecode, pass: ratio.tlbHitToDecode >= 0.5 },
  { name: 'walk-heavy stream at least 10 M accesses/s', target: 'walk >= 10000000 accesses/s', measured: results.walk.medianPerSec, pass: results.walk.medianPerSec >= 10e6 },
];
const report = {
  bench: 'granule sim',
  date: new Date().toISOString(),
  machine: machine(),
  config: {
    rounds: ROUNDS, warmupRounds: WARMUP_ROUNDS,
    statistic: 'median over interleaved rounds; ratios are paired within each round, then the median is taken',
    decodeBaseline: 'wasm: bench/decode.ts compiled by npx asc with the release target options of asconfig.json',
    regimes: {
      main: `one ${BATCH_RECORDS}-record batch (${BATCH_RECORDS * REC_SIZE >> 10} KiB, the default batchCapacity) run ${PASSES} times`,
      streamed: `${N_STREAM} distinct records (${N_STREAM * REC_SIZE >> 20} MiB) run once`,
    },
    walkArea: { gvaBase: hex(WALK_BASE), bytes: WALK_PAGES * 4096, guestPageSize: 4096, eptPageSize: 4096, dataFrames: DATA_FRAMES, tableBytes: Number(walk.tables.used) },
    tlbHit: { pages: HOT_PAGES, ways: 'hot page p at way p (best case: all at way 0)' },
    accessSize: 8, writeFraction: WRITE_FRACTION, privilege: 'user', values: false, handlers: 0,
    eptAd: EPT_AD, tlb: { sets: TLB_SETS, ways: TLB_WAYS },
    setupMs: Math.round(setupMs), measureMs: Math.round(measureMs),
  },
  results,
  ratios: ratio,
  evidence,
  targets,
  checksums: { decodeWasm: hex(BigInt.asUintN(64, checksum)), decodeJs: jsChecksum >>> 0 },
};

if (json) {
  console.log(JSON.stringify(report));
} else {
  const m = report.machine;
  const x = (r: number) => `decode is ${(1 / r).toFixed(r < 0.1 ? 1 : 2)}x faster`;
  log(`granule sim bench  ${report.date}`);
  log(`machine  ${m.cpu}, ${m.cores} cores, ${m.memGiB} GiB, node ${m.node} (V8 ${m.v8}), ${m.os}, ${m.kernel}`);
  log(`sim      ${m.simWasm} sha256 ${m.simWasmSha256}${m.git ? `; checkout at ${m.git}` : ''}`);
  log(`setup    8-byte user accesses, ${WRITE_FRACTION * 100}% writes, no values, no handlers; EPT A/D ${EPT_AD ? 'on' : 'off'}; TLB ${TLB_SETS}x${TLB_WAYS}; ` +
    `walk: 1 GiB GVA in 4 KiB guest pages onto ${DATA_FRAMES} frames, 4 KiB EPT pages`);
  log(`         ${ROUNDS} interleaved rounds (+${WARMUP_ROUNDS} warm-up), medians; decode baseline in WASM (bench/decode.ts); setup ${Math.round(setupMs)} ms`);
  log();
  const row = (name: string, s: ReturnType<typeof stat>, r: string) =>
    log(`  ${name.padEnd(34)} ${String(s.accesses).padStart(8)}  ${M(s.medianPerSec).padStart(6)} M/s  ${(M(s.minPerSec) + '..' + M(s.maxPerSec)).padStart(12)}   ${r}`);
  const head = (title: string) => log(`  ${title.padEnd(34)} ${'accesses'.padStart(8)}  ${'median'.padStart(10)}  ${'min..max M/s'.padStart(12)}   ratio to decode (median of per-round ratios)`);
  head(`${BATCH_RECORDS}-record batch, ${PASSES} passes`);
  row('decode only (wasm)', results.decodeWasm, '1');
  row('tlb-hit, ways 0..11 (runBatch)', results.tlbHit, `${ratio.tlbHitToDecode.toFixed(3)}  (${x(ratio.tlbHitToDecode)})`);
  row('walk-heavy (runBatch)', results.walk, `${ratio.walkToDecode.toFixed(4)}  (${x(ratio.walkToDecode)})`);
  row('tlb-hit, all at way 0 (info)', results.tlbHitBestCase, `${ratio.tlbHitBestCaseToDecode.toFixed(3)}  (${x(ratio.tlbHitBestCaseToDecode)})`);
  row('decode only (js, info)', results.decodeJs, `${ratio.jsDecodeToWasmDecode.toFixed(3)}`);
  head(`streamed, ${N_STREAM * REC_SIZE >> 20} MiB of records (info)`);
  row('decode only (wasm)', results.streamed.decodeWasm, '1');
  row('tlb-hit, ways 0..11 (runBatch)', results.streamed.tlbHit, `${ratio.streamedTlbHitToDecode.toFixed(3)}  (${x(ratio.streamedTlbHitToDecode)})`);
  log();
  const e = evidence;
  log(`counters tlb-hit:  hits/access ${e.tlbHit.hitsPerAccess.toFixed(4)}, misses/access ${e.tlbHit.missesPerAccess.toFixed(4)}, walks/access ${e.tlbHit.walksPerAccess.toFixed(4)}, faults ${e.tlbHit.faults}`);
  log(`counters walk:     misses/access ${e.walk.missesPerAccess.toFixed(4)}, walks/access ${e.walk.walksPerAccess.toFixed(4)}, ` +
    `refs/walk ${e.walk.refsPerWalk.toFixed(2)} (guest ${e.walk.guestRefsPerWalk.toFixed(2)} + EPT ${e.walk.eptRefsPerWalk.toFixed(2)}), ` +
    `PSC hits/walk ${e.walk.pscHitsPerWalk.toFixed(2)}, A/D writes/access ${e.walk.adWritesPerAccess.toFixed(3)}, faults ${e.walk.faults}`);
  log();
  log('targets (a miss is reported, not an error)');
  log(`  ${targets[0]!.pass ? 'PASS' : 'MISS'}  ${targets[0]!.name}: tlb-hit/decode = ${ratio.tlbHitToDecode.toFixed(3)}, needs >= 0.5`);
  log(`  ${targets[1]!.pass ? 'PASS' : 'MISS'}  ${targets[1]!.name}: ${M(results.walk.medianPerSec)} M/s`);
  log(`(measured in ${(measureMs / 1000).toFixed(1)} s)`);
}
