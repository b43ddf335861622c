// Differential test of the simulator's caches and batch path against itself, on seeded random
// address spaces (test/support/random-space.ts) and random operation sequences: batches with and
// without the built-in handlers, single accesses, invlpg/invvpid/invept, VPID/WP/NXE switches and
// bit flips in live paging-structure entries (with and without invalidation).
//
// Three simulators run the same operations:
//   A  a TLB of random geometry (0..12 ways, 1..128 sets), sometimes the PDE cache; batches run
//      through runBatch (so TLB hits take the batch fast path);
//   C  the same geometry; every batch record runs on its own (access(), which never takes the
//      batch fast path, or a one-record runBatch when handlers are on);
//   B  no TLB (tlbWays 0) and no PDE cache: every access walks.
// A and C must agree exactly after every operation: results, fault records (but the record
// index), dirty log, every counter, and at the end the memory image and the PML index.
// A and B must agree wherever docs/sim-semantics.md says a TLB never changes an outcome: until the
// first paging-structure edit that software did not invalidate ("taint": a flip without INVEPT
// all-contexts or one that moves a pointer, an NXE switch without INVEPT, a store into the table
// region, a write-protect handler fix whose invlpg leaves other VPIDs' or other 4 KiB pieces'
// entries), they compare results, fault records, dirty log, memory and every counter but the TLB,
// walk and reference counts.
//
//   GRANULE_SEED=<u32>             run seed (default: random, always printed on failure)
//   GRANULE_FASTPATH_CASES=<n>     number of cases (default 60)
//   GRANULE_FASTPATH_CASE=<i>      replay only case i of the seed
//   GRANULE_FASTPATH_VERBOSE=1     one line of statistics per case

import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { randomBytes } from 'node:crypto';
import { Sim, type FaultRecord, BATCH_DONE, BATCH_FAULT, BATCH_DLOG_FULL, BATCH_BAD_RECORD } from '../src/sim.ts';
import { BatchWriter } from '../src/batch.ts';
import {
  ACC_READ, ACC_WRITE, ACC_KIND_MASK, ACC_USER, DLOG_PF, FAULT_PML_FULL, HANDLE_PF_WP, INVEPT_ALL, INVEPT_SINGLE,
  INVVPID_ADDR, INVVPID_SINGLE, INVVPID_ALL, INVVPID_SINGLE_NONGLOBAL, REC_SIZE, REC_SIZE_FIELD, REC_KIND,
} from '../src/consts.ts';
import { randomSpace, caseSeed, Rng, type RandomAccess, type RandomSpace } from './support/random-space.ts';
import { hex } from './support/format.ts';
import { RefMemory, refAccess } from './support/ref-walker.ts';
import { smallSpace, VA } from './support/small-space.ts';

const env = process.env;
const SEED = env.GRANULE_SEED !== undefined ? Number(env.GRANULE_SEED) >>> 0 : randomBytes(4).readUInt32LE(0);
const CASES = env.GRANULE_FASTPATH_CASES !== undefined ? Number(env.GRANULE_FASTPATH_CASES) : 60;
const ONLY = env.GRANULE_FASTPATH_CASE !== undefined ? Number(env.GRANULE_FASTPATH_CASE) : undefined;
const VERBOSE = env.GRANULE_FASTPATH_VERBOSE === '1';
const OPS = 160;
const BATCH_CAP = 64;
/** host memory below this holds the tables, the SPPT and the PML page (random-space.ts) */
const TABLE_LIMIT = 0x10_0000n;
/** counters a TLB or PDE cache legitimately changes */
const CACHE_COUNTERS = new Set(['tlbHits', 'tlbMisses', 'walks', 'guestRefs', 'eptRefs', 'pscHits']);

type Rec = { gva: bigint; acc: number; size: number; value?: Uint8Array };
type Op =
  | { op: 'batch'; recs: Rec[]; handlers: number }
  | { op: 'access'; rec: Rec }
  | { op: 'invlpg'; gva: bigint }
  | { op: 'invvpid'; type: number; vpid: number; gva: bigint }
  | { op: 'invept'; type: number; eptp: bigint }
  | { op: 'cpu'; cpu: { vpid?: number; wp?: boolean; nxe?: boolean }; flush: boolean }
  | { op: 'flip'; pick: number; bitPick: number; flush: boolean; onlySafe: boolean; undo: boolean };

const fmtFault = (f: FaultRecord | null): string => (f === null ? 'ok'
  : `fault kind ${f.kind} gva ${hex(f.gva)} gpa ${hex(f.gpa)} acc ${f.access} level ${f.level} code ${hex(f.code)} exit ${f.exitReason} guestLevel ${f.guestLevel}`);

interface Runner {
  name: string;
  sim: Sim;
  w: BatchWriter;
}

/** Runs a batch op through runBatch, resuming after unhandled faults and full dirty logs. */
function runBatchOp(r: Runner, recs: Rec[], handlers: number, out: string[]): void {
  r.w.reset();
  for (const a of recs) if (!r.w.push(a.gva, a.acc, a.size, a.value)) throw new Error('batch full');
  let at = 0;
  for (let guard = 0; at < recs.length; guard++) {
    if (guard > 4 * recs.length + 16) throw new Error('batch does not progress');
    const x = r.sim.runBatch(at, recs.length, handlers);
    if (x.status === BATCH_DONE) { if (x.next !== recs.length) out.push(`done at ${x.next}?`); break; }
    if (x.status === BATCH_FAULT) {
      const f = r.sim.lastFault();
      if (f.index !== x.next) out.push(`fault index ${f.index} != ${x.next}`);
      out.push(`record ${x.next}: ${fmtFault(f)}`);
      at = x.next + 1;
    } else if (x.status === BATCH_DLOG_FULL) {
      out.push(`record ${x.next}: dirty log full`);
      for (const d of r.sim.drainDirtyLog()) out.push(`dlog ${d.kind} ${hex(d.addr)}`);
      at = x.next;
    } else {
      out.push(`record ${x.next}: status ${x.status}`);
      at = x.next + 1;
    }
  }
}

/** The same batch, one record at a time: access() without handlers, a one-record runBatch with. */
function runBatchOpSingly(r: Runner, recs: Rec[], handlers: number, out: string[]): void {
  r.w.reset();
  for (const a of recs) if (!r.w.push(a.gva, a.acc, a.size, a.value)) throw new Error('batch full');
  for (let k = 0; k < recs.length; k++) {
    if (handlers === 0) {
      const a = recs[k]!;
      const x = r.sim.access(a.gva, a.acc, a.size, a.value);
      if (x.fault) out.push(`record ${k}: ${fmtFault(x.fault)}`);
      continue;
    }
    for (let guard = 0; ; guard++) {
      if (guard > 8) throw new Error('record does not progress');
      const x = r.sim.runBatch(k, k + 1, handlers);
      if (x.status === BATCH_DONE) break;
      if (x.status === BATCH_FAULT) {
        const f = r.sim.lastFault();
        if (f.index !== k) out.push(`fault index ${f.index} != ${k}`);
        out.push(`record ${k}: ${fmtFault(f)}`);
        break;
      }
      if (x.status === BATCH_DLOG_FULL) {
        out.push(`record ${k}: dirty log full`);
        for (const d of r.sim.drainDirtyLog()) out.push(`dlog ${d.kind} ${hex(d.addr)}`);
        continue;
      }
      out.push(`record ${k}: status ${x.status}`);
      break;
    }
  }
}

function countersLine(sim: Sim, skipCaches: boolean): string {
  const c = sim.counters();
  return Object.entries(c).filter(([k]) => !skipCaches || !CACHE_COUNTERS.has(k)).map(([k, v]) => `${k}=${v}`).join(' ');
}

function memDiff(a: Uint8Array, b: Uint8Array): string {
  if (Buffer.compare(a, b) === 0) return '';
  const n = Math.min(a.length, b.length);
  for (let o = 0; o < n; o += 8) {
    if (Buffer.compare(a.subarray(o, o + 8), b.subarray(o, o + 8)) !== 0) {
      const va = new DataView(a.buffer, a.byteOffset + o, 8).getBigUint64(0, true);
      const vb = new DataView(b.buffer, b.byteOffset + o, 8).getBigUint64(0, true);
      return `first differing qword at HPA ${hex(o)}: ${hex(va)} vs ${hex(vb)}`;
    }
  }
  return a.length === b.length ? '' : 'sizes differ';
}

/** The operation sequence of a case (independent of any simulator's results). */
function genOps(rng: Rng, sp: RandomSpace, vpids: number[], careful: boolean): Op[] {
  const pool = sp.accesses;
  // Hot records: mostly ones that succeed on the initial space (the reference walker says which),
  // so their pages are cached and hit again.
  const mem = new RefMemory(sp.image.slice());
  const cpu = structuredClone(sp.cpu);
  const good = pool.filter((a) => refAccess(mem, cpu, a.gva, a.acc, a.size, a.value?.slice()).fault === null);
  const hot = Array.from({ length: 6 }, () => rng.pick(good.length && rng.chance(0.85) ? good : pool));
  const inPage = (a: RandomAccess): Rec => {
    const off = BigInt(rng.int(0, 4096 - a.size));
    return { gva: (a.gva & ~0xfffn) | off, acc: a.acc, size: a.size, value: a.value };
  };
  // Mostly a handful of hot pages (so entries are hit again and again), some of the whole pool.
  const rec = (): Rec => {
    const r = rng.float();
    if (r < 0.55) return inPage(rng.pick(hot));
    if (r < 0.65) return inPage(rng.pick(pool));
    return rng.pick(pool);
  };
  const ops: Op[] = [];
  for (let i = 0; i < OPS; i++) {
    const r = rng.float();
    if (r < 0.45) {
      const n = rng.int(1, 40);
      ops.push({ op: 'batch', recs: Array.from({ length: n }, rec), handlers: rng.pick([0, 0, 15, 15, 1, 2, 4, 8]) });
    } else if (r < 0.62) {
      ops.push({ op: 'access', rec: rec() });
    } else if (r < 0.67) {
      ops.push({ op: 'invlpg', gva: rec().gva });
    } else if (r < 0.71) {
      const type = rng.pick([INVVPID_ADDR, INVVPID_SINGLE, INVVPID_ALL, INVVPID_SINGLE_NONGLOBAL]);
      ops.push({ op: 'invvpid', type, vpid: rng.pick(vpids), gva: rec().gva });
    } else if (r < 0.74) {
      const type = rng.pick([INVEPT_SINGLE, INVEPT_ALL]);
      ops.push({ op: 'invept', type, eptp: rng.chance(0.8) ? sp.cpu.eptp : sp.cpu.eptp ^ 0x1000n });
    } else if (r < 0.84) {
      const c = rng.float();
      const cpu = c < 0.5 ? { vpid: rng.pick(vpids) } : c < 0.8 ? { wp: rng.chance(0.5) } : { nxe: rng.chance(0.5) };
      ops.push({ op: 'cpu', cpu, flush: careful || rng.chance(0.5) });
    } else {
      ops.push({ op: 'flip', pick: rng.u32(), bitPick: rng.u32(), flush: careful || rng.chance(0.5), onlySafe: careful, undo: rng.chance(0.5) });
    }
  }
  return ops;
}

/**
 * Bits a flip may change in an entry without moving where any walk reads or writes (a later walk
 * through a moved pointer could set A/D flags inside another structure, an edit nobody
 * invalidated): guest R/W, U/S, PWT, PCD, A, D, G, SW_WP, ignored bits, XD, P only when clearing;
 * EPT memory type, IPAT, A, D, SPP, SVE, R/W/X only while one of them stays set. Other bits
 * (address, PS, P set) may be flipped too, but only as edits without invalidation.
 */
function safeFlip(kind: 'guest' | 'ept' | 'spp', value: bigint, bit: number): boolean {
  if (kind === 'spp') return true; // never cached
  if (kind === 'guest') {
    if (bit === 0) return (value & 1n) !== 0n;
    return [1, 2, 3, 4, 5, 6, 8, 9, 10, 11, 52, 58, 62, 63].includes(bit);
  }
  if (bit <= 2) return ((value ^ (1n << BigInt(bit))) & 7n) !== 0n && (value & 7n) !== 0n;
  return [3, 4, 5, 6, 8, 9, 10, 11, 52, 61, 63].includes(bit);
}

async function runCase(c: number): Promise<{ hits: number; cleanOps: number; ops: number }> {
  const seed = caseSeed(SEED, c);
  const sp = randomSpace(seed, { accesses: 60 });
  const rng = new Rng(seed ^ 0x1f0a57);
  const tlbWays = rng.int(0, 12);
  const tlbSets = rng.pick([1, 2, 4, 8, 32, 128]);
  const pscEntries = rng.pick([0, 0, 4, 64]);
  const dlogCapacity = rng.pick([512, 600, 1024]);
  const switchVpid = rng.chance(0.5);
  const v0 = sp.cpu.vpid;
  const vpids = switchVpid ? [v0, v0 === 0xffff ? 1 : v0 + 1] : [v0];
  // Careful cases invalidate every edit they make (and make only those a flush covers), so the
  // TLB-less comparison lasts; the others also edit behind the TLB's back.
  const careful = rng.chance(0.6);
  const ops = genOps(rng, sp, vpids, careful);
  const where = `seed ${SEED} case ${c} (case seed ${seed}; TLB ${tlbSets}x${tlbWays}, PDE cache ${pscEntries}${careful ? ', careful' : ''}`
    + `${switchVpid ? ', VPID switches' : ''}; ${sp.notes[0]})`;
  const hint = `replay: GRANULE_SEED=${SEED} GRANULE_FASTPATH_CASE=${c} node --import tsx ./node_modules/uvu/bin.js test "sim-fastpath\\.test\\.ts$"`;

  const make = async (name: string, ways: number, sets: number, psc: number): Promise<Runner> => {
    const sim = await Sim.create({
      physBytes: sp.physBytes, maxPhyAddr: sp.maxPhyAddr, tlbSets: sets, tlbWays: ways, pscEntries: psc,
      batchCapacity: BATCH_CAP, valueCapacity: BATCH_CAP * 64, dlogCapacity,
    });
    sim.phys.set(sp.image);
    const { maxPhyAddr: _m, ...cpu } = sp.cpu;
    sim.setCpu(structuredClone(cpu));
    return { name, sim, w: new BatchWriter(sim) };
  };
  const A = await make('A', tlbWays, tlbSets, pscEntries);
  const C = await make('C', tlbWays, tlbSets, pscEntries);
  const B = await make('B', 0, 1, 0);

  let clean = true;
  const flipped: { hpa: bigint; bit: number; safe: boolean }[] = [];
  let cleanOps = 0;
  const fail = (i: number, what: string, a: string, b: string) => {
    assert.unreachable(`${where}\n  op ${i} ${describe(ops[i])}: ${what}\n    ${a}\n    ${b}\n  ${hint}`);
  };
  const describe = (op: Op | undefined) => JSON.stringify(op, (_k, v) => (typeof v === 'bigint' ? hex(v) : v instanceof Uint8Array ? undefined : v));
  const compareMem = (i: number, x: Runner, y: Runner) => {
    const d = memDiff(x.sim.phys, y.sim.phys);
    if (d) fail(i, `memory ${x.name} vs ${y.name}`, d, '');
    const px = x.sim.cpu().pml.index, py = y.sim.cpu().pml.index;
    if (px !== py) fail(i, `PML index ${x.name} vs ${y.name}`, String(px), String(py));
  };
  const taint = (i: number) => {
    if (!clean) return;
    compareMem(i, A, B); // everything up to here had to agree
    clean = false;
  };
  const inspect = (r: Runner, gva: bigint, acc: number) => r.sim.inspect(gva, acc);
  // Whether a page's store would land in the table region, by page and privilege. Only flips and
  // control-bit switches change a page's HPA or turn a faulting translation into a good one; the
  // handlers change write rights, which the read below does not need.
  const tableStore = new Map<string, boolean>();
  /** Would a store of `a` land in the table region (B's translation, no TLB)? */
  const storesIntoTables = (a: Rec): boolean => {
    if ((a.acc & ACC_KIND_MASK) !== ACC_WRITE || !a.value) return false;
    const pages = [a.gva & ~0xfffn];
    const last = BigInt.asUintN(64, a.gva + BigInt(a.size - 1));
    if ((last ^ a.gva) >> 12n !== 0n) pages.push(last & ~0xfffn);
    return pages.some((g) => {
      const key = `${g}:${a.acc & ACC_USER}`;
      let v = tableStore.get(key);
      if (v === undefined) {
        // A write that succeeds translates like a read of the same privilege, and a read that
        // faults means the write faults too, except where a PML-full exit may be handled first.
        const r = inspect(B, g, (a.acc & ~ACC_KIND_MASK) | ACC_READ);
        v = r.fault === null ? r.hpa < TABLE_LIMIT : r.fault.kind === FAULT_PML_FULL;
        tableStore.set(key, v);
      }
      return v;
    });
  };

  for (let i = 0; i < ops.length; i++) {
    const op = ops[i]!;
    const outs: Record<string, string[]> = { A: [], B: [], C: [] };
    if (op.op === 'batch' || op.op === 'access') {
      const recs = op.op === 'batch' ? op.recs : [op.rec];
      if (clean && recs.some(storesIntoTables)) taint(i);
      // A fix by the write-protect handler may make the rest of its own batch differ (below).
      if (clean && op.op === 'batch' && (op.handlers & HANDLE_PF_WP) !== 0) compareMem(i, A, B);
      if (op.op === 'batch') {
        runBatchOp(A, op.recs, op.handlers, outs.A!);
        runBatchOp(B, op.recs, op.handlers, outs.B!);
        runBatchOpSingly(C, op.recs, op.handlers, outs.C!);
      } else {
        const a = op.rec;
        for (const r of [A, B, C]) {
          const x = r.sim.access(a.gva, a.acc, a.size, a.value);
          outs[r.name]!.push(x.fault ? fmtFault(x.fault) : `ok hpa ${hex(x.hpa)}`);
        }
      }
      for (const r of [A, B, C]) for (const d of r.sim.drainDirtyLog()) outs[r.name]!.push(`dlog ${d.kind} ${hex(d.addr)}`);
      // A write-protect fix is invalidated with invlpg: the current VPID's entry of one 4 KiB page.
      // Entries of other VPIDs, or of other 4 KiB pieces of a large page, keep the old rights, so
      // from the fix on (in the same batch already) A may fault where B does not.
      const pfFix = outs.B!.concat(outs.A!).some((l) => {
        const m = /^dlog (\d+) 0x([0-9a-f]+)$/.exec(l);
        return m !== null && Number(m[1]) === DLOG_PF && (switchVpid || (BigInt('0x' + m[2]) & 0x1f_ffffn) === 0n);
      });
      if (pfFix) clean = false; // memory was compared before the batch
      if (outs.A!.join('\n') !== outs.C!.join('\n')) fail(i, 'batch path (A) vs one record at a time (C)', outs.A!.join(' | '), outs.C!.join(' | '));
      if (clean && outs.A!.join('\n') !== outs.B!.join('\n')) fail(i, 'TLB (A) vs no TLB (B)', outs.A!.join(' | '), outs.B!.join(' | '));
    } else if (op.op === 'invlpg') {
      for (const r of [A, B, C]) r.sim.invlpg(op.gva);
    } else if (op.op === 'invvpid') {
      for (const r of [A, B, C]) r.sim.invvpid(op.type, op.vpid, op.gva);
    } else if (op.op === 'invept') {
      for (const r of [A, B, C]) r.sim.invept(op.type, op.eptp);
    } else if (op.op === 'cpu') {
      tableStore.clear();
      // Rights are checked against cached R/W, U/S, XD with the current WP, so a WP switch never
      // needs a flush; NXE also changes which bits are reserved, which a cached entry cannot see.
      if (op.cpu.nxe !== undefined && !op.flush && op.cpu.nxe !== A.sim.cpu().nxe) taint(i);
      for (const r of [A, B, C]) {
        r.sim.setCpu(op.cpu);
        if (op.flush) r.sim.invept(INVEPT_ALL, 0n);
      }
    } else {
      tableStore.clear();
      // Flip one bit of an entry some walk reads (located on A: the same place on all three while
      // they agree; afterwards any place will do), or flip back the last one flipped.
      let at: { hpa: bigint; bit: number; safe: boolean };
      if (op.undo && flipped.length) {
        at = flipped.pop()!; // back to the state before that flip
      } else {
        const a = sp.accesses[op.pick % sp.accesses.length]!;
        const steps = inspect(A, a.gva, a.acc).steps;
        if (steps.length === 0) continue;
        // mostly the last entries of the walk (the guest leaf, the data page's EPT entries)
        const s = steps[op.pick & 1 ? steps.length - 1 - ((op.pick >>> 8) % Math.min(6, steps.length)) : (op.pick >>> 8) % steps.length]!;
        const bits = [0, 1, 2, 63, 5, 6, 8, 9, 1, 2, 0, 63, 3, 4, 7, 12, 21, 45, 51, 61];
        const bit = bits[op.bitPick % bits.length]!;
        at = { hpa: s.hpa, bit, safe: safeFlip(s.kind, s.value, bit) };
        if (op.onlySafe && !at.safe) continue;
        flipped.push(at);
      }
      if (!op.flush || !at.safe) taint(i);
      for (const r of [A, B, C]) {
        if (at.hpa + 8n > BigInt(r.sim.physBytes)) continue;
        r.sim.write64(at.hpa, r.sim.read64(at.hpa) ^ (1n << BigInt(at.bit)));
        if (op.flush) r.sim.invept(INVEPT_ALL, 0n);
      }
    }
    const ca = countersLine(A.sim, false), cc = countersLine(C.sim, false);
    if (ca !== cc) fail(i, 'counters A vs C', ca, cc);
    if (clean) {
      const fa = countersLine(A.sim, true), fb = countersLine(B.sim, true);
      if (fa !== fb) fail(i, 'counters A vs B (but TLB/walk/reference counts)', fa, fb);
      cleanOps++;
    }
  }
  compareMem(ops.length, A, C);
  if (clean) compareMem(ops.length, A, B);
  if (VERBOSE) {
    const k = A.sim.counters();
    console.log(`case ${c}: TLB ${tlbSets}x${tlbWays}${careful ? ' careful' : ''}; A: ${k.accesses} accesses, ${k.tlbHits} hits, ${k.tlbMisses} misses, `
      + `${k.pf + k.gp + k.eptViolation + k.eptMisconfig + k.pmlFull + k.sppEvent + k.bus} faults; ${cleanOps} of ${ops.length} ops compared with B`);
  }
  return { hits: A.sim.counters().tlbHits, cleanOps, ops: ops.length };
}

test(`TLB and batch fast path change no outcome (seed ${SEED})`, async () => {
  let hits = 0, cleanOps = 0, total = 0;
  for (let c = 0; c < CASES; c++) {
    if (ONLY !== undefined && c !== ONLY) continue;
    const r = await runCase(c);
    hits += r.hits; cleanOps += r.cleanOps; total += r.ops;
  }
  if (ONLY === undefined) {
    assert.ok(hits > 1000, `the sequences hit the TLB (${hits} hits, seed ${SEED})`);
    assert.ok(cleanOps > total / 4, `a good share of the operations is compared with the TLB-less simulator (${cleanOps} of ${total}, seed ${SEED})`);
  }
});

test('records the batch fast path would serve still stop the batch when malformed; start > end returns end', async () => {
  const { sim } = await smallSpace();
  const R = ACC_READ | ACC_USER;
  sim.access(VA, R, 8); // walk and fill
  sim.access(VA + 8n, R, 8); // TLB hit: now served by the fast path
  const before = sim.counters();
  const w = new BatchWriter(sim);
  for (let k = 0; k < 4; k++) w.push(VA + BigInt(16 * k), R, 8);
  const view = sim.batchView().records;
  view.setUint8(2 * REC_SIZE + REC_SIZE_FIELD, 0); // record 2: size 0
  assert.equal(sim.runBatch(0, 4), { next: 2, status: BATCH_BAD_RECORD });
  view.setUint8(2 * REC_SIZE + REC_SIZE_FIELD, 8);
  view.setUint8(3 * REC_SIZE + REC_KIND, 3 | ACC_USER); // record 3: no such access kind
  assert.equal(sim.runBatch(2, 4), { next: 3, status: BATCH_BAD_RECORD });
  const after = sim.counters();
  assert.is(after.accesses - before.accesses, 3);
  assert.is(after.tlbHits - before.tlbHits, 3);
  assert.is(after.walks, before.walks);
  assert.equal(sim.runBatch(3, 1), { next: 1, status: BATCH_DONE });
});

test.run();
