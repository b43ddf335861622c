// Live monitoring costs on this machine, measured side by side in one run on the same write
// stream (the first writes of a bundled trace, its pages packed into one region):
//
//   in-guest #PF   KvmMmu: every page write-protected in the guest page table; the guest's CPL0
//                  handler takes one #PF per page (no VM exit) and logs it to the ring
//   KVM dirty log  KvmMmu: pages writable; KVM's dirty log of the plane memslot, harvested and
//                  cleared after the run (the host's view of EPT dirty tracking)
//   host baselines the same stream in this process: mprotect+SIGSEGV, userfaultfd WP, WP_ASYNC +
//                  PAGEMAP_SCAN (page-level, no virtualization)
//
// Each mechanism runs the stream twice: armed, then again with every page already dirty; the
// difference over the pages is the cost per fault (or per first write). Then the simulator's counts
// for the same stream are priced with a VT-x cost model (assumed figures, printed), to show how
// the same work maps to a host where guest faults and exits are cheap.
//
//   node --import tsx bench/hw.bench.ts [--json] [--trace T.grt] [--writes N] [--rounds R]
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { TraceReader } from '../src/trace/reader.ts';
import { EV_WRITE, EV_MODIFY } from '../src/trace/events.ts';
import { ACC_WRITE, ACC_USER } from '../src/consts.ts';
import { kvmUnavailable } from '../src/backend.ts';
import { KvmMmu, describeKvmHost } from '../src/hw/kvm-mmu.ts';
import { SimMmu } from '../src/sim-mmu.ts';
import { HostRegion, HostBatch, probeBaselines, type BaselineMode } from '../src/hw/baselines.ts';
import { machineInfo } from './machine.ts';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const argv = process.argv.slice(2);
const json = argv.includes('--json');
const arg = (name: string, d: string) => { const i = argv.indexOf(name); return i >= 0 ? argv[i + 1] ?? d : d; };
const tracePath = path.resolve(root, arg('--trace', 'traces/kvstore-native.grt'));
const WRITES = Number(arg('--writes', '200000'));
const ROUNDS = Number(arg('--rounds', '5'));
const log = (s = '') => { if (!json) console.log(s); };

// ---- the write stream: offsets into a region of the trace's distinct pages, in first-touch order
const pageIndex = new Map<number, number>();
const offsets: number[] = [];
const sizes: number[] = [];
{
  const r = TraceReader.open(tracePath);
  outer: for (const b of r.blocks()) {
    for (let i = 0; i < b.count; i++) {
      const k = b.kind[i]!;
      if (k !== EV_WRITE && k !== EV_MODIFY) continue;
      const a = b.addr[i]!;
      const s = Math.min(b.size[i]!, 8);
      if ((a % 4096) + s > 4096) continue; // keep every write inside one page: one unit per write
      const page = Math.floor(a / 4096);
      let idx = pageIndex.get(page);
      if (idx === undefined) { idx = pageIndex.size; pageIndex.set(page, idx); }
      offsets.push(idx * 4096 + (a % 4096));
      sizes.push(s);
      if (offsets.length >= WRITES) break outer;
    }
  }
  r.close();
}
const PAGES = pageIndex.size;
const N = offsets.length;
const BASE = 0x4000_0000; // GVA of the region in the guest

interface Row { mechanism: string; faults: number; armedMs: number; warmMs: number; perFaultUs: number; harvestUs: number; epochMs: number }
const rows: Row[] = [];
const notes: string[] = [];
const ms = (ns: number) => ns / 1e6;

async function kvmRows(): Promise<void> {
  const why = kvmUnavailable();
  if (why) { notes.push(`KVM rows skipped: ${why.split('\n')[0]}`); return; }
  const mmu = await KvmMmu.create({ frames: PAGES, batchCapacity: N + 1 });
  const fill = () => { mmu.batch.reset(); for (let i = 0; i < N; i++) mmu.batch.pushAddr(BASE + offsets[i]!, ACC_WRITE | ACC_USER, sizes[i]!); };
  const gpa0 = mmu.planeGpa(0);
  mmu.mapPlane(gpa0, 0, PAGES);
  mmu.mapGva(BigInt(BASE), gpa0, PAGES);
  const timed = async (h: { guestWriteProtect?: boolean }) => { fill(); const t = process.hrtime.bigint(); const r = await mmu.run(0, h); if (r.status !== 'done') throw new Error(`kvm run: ${r.status}`); return Number(process.hrtime.bigint() - t); };
  // Warm up: boot, map, first touches.
  await timed({ guestWriteProtect: true });
  mmu.harvestEptDirty(gpa0, PAGES);
  // In-guest #PF monitor.
  const t0 = process.hrtime.bigint();
  mmu.protectGva(BigInt(BASE), PAGES, true);
  const armNs = Number(process.hrtime.bigint() - t0);
  const pf0 = mmu.counters().handledPf ?? 0;
  const armed = await timed({ guestWriteProtect: true });
  const faults = (mmu.counters().handledPf ?? 0) - pf0;
  const h0 = process.hrtime.bigint();
  const dirty = mmu.dirty();
  const harvestNs = Number(process.hrtime.bigint() - h0);
  const warm = await timed({ guestWriteProtect: true });
  rows.push({ mechanism: 'in-guest #PF (KVM guest)', faults, armedMs: ms(armed), warmMs: ms(warm), perFaultUs: (armed - warm) / faults / 1e3, harvestUs: harvestNs / Math.max(1, dirty.length) / 1e3, epochMs: ms(armNs + armed + harvestNs) });
  // KVM dirty log: clear, run (first writes take KVM write faults), harvest.
  mmu.harvestEptDirty(gpa0, PAGES);
  await timed({ guestWriteProtect: true });
  mmu.harvestEptDirty(gpa0, PAGES);
  const logged = await timed({ guestWriteProtect: true });
  const d0 = process.hrtime.bigint();
  const pages = mmu.harvestEptDirty(gpa0, PAGES).length;
  const dlNs = Number(process.hrtime.bigint() - d0);
  const warm2 = await timed({ guestWriteProtect: true });
  mmu.harvestEptDirty(gpa0, PAGES);
  rows.push({ mechanism: 'KVM dirty log (plane memslot)', faults: pages, armedMs: ms(logged), warmMs: ms(warm2), perFaultUs: (logged - warm2) / Math.max(1, pages) / 1e3, harvestUs: dlNs / Math.max(1, pages) / 1e3, epochMs: ms(logged + dlNs) });
  await mmu.close();
}

function hostRows(): void {
  const probe = probeBaselines();
  const batch = new HostBatch(N + 1);
  for (let i = 0; i < N; i++) batch.push(offsets[i]!, ACC_WRITE, sizes[i]!);
  for (const mode of ['mprotect', 'uffd-wp', 'uffd-wp-async', 'soft-dirty'] as BaselineMode[]) {
    if (!probe[mode].available) { notes.push(`${mode}: unavailable here: ${probe[mode].why}`); continue; }
    const region = HostRegion.create(PAGES, mode);
    try {
      region.run(batch.records, batch.values, batch.count); // first touch
      region.harvest();
      const arm = region.arm();
      const armed = region.run(batch.records, batch.values, batch.count);
      const h = region.harvest();
      const warm = region.run(batch.records, batch.values, batch.count);
      const faults = h.pages.length;
      rows.push({ mechanism: `host ${mode}`, faults, armedMs: ms(armed.ns), warmMs: ms(warm.ns), perFaultUs: (armed.ns - warm.ns) / Math.max(1, faults) / 1e3, harvestUs: h.ns / Math.max(1, faults) / 1e3, epochMs: ms(arm.ns + armed.ns + h.ns) });
    } finally {
      region.close();
    }
  }
}

/** The simulator's counts for the same stream under guest-PT write protection, priced for VT-x. */
async function vtxModel() {
  const mmu = await SimMmu.create({ frames: PAGES });
  const gpa0 = mmu.planeGpa(0);
  mmu.mapPlane(gpa0, 0, PAGES);
  mmu.mapGva(BigInt(BASE), gpa0, PAGES);
  mmu.protectGva(BigInt(BASE), PAGES, true);
  mmu.resetCounters();
  let start = 0;
  for (let i = 0; i < N; i++) if (!mmu.batch.pushAddr(BASE + offsets[i]!, ACC_WRITE | ACC_USER, sizes[i]!)) { mmu.runSync(start, { guestWriteProtect: true }); mmu.batch.reset(); start = 0; mmu.batch.pushAddr(BASE + offsets[i]!, ACC_WRITE | ACC_USER, sizes[i]!); }
  mmu.runSync(start, { guestWriteProtect: true });
  const c = mmu.counters();
  // Assumed VT-x costs (a recent Xeon with EPT): an in-guest #PF with its handler ~1 us, a VM exit
  // round trip ~1.5 us, a 2D walk ~0.03 us per TLB miss. Not measured here: stated so the reader
  // can substitute their own.
  const cost = { guestPfUs: 1.0, vmExitUs: 1.5, walkUs: 0.03 };
  return { counts: { faults: c.handledPf ?? 0, tlbMisses: c.tlbMisses ?? 0, walks: c.walks ?? 0 }, cost, modelMs: ((c.handledPf ?? 0) * cost.guestPfUs + (c.walks ?? 0) * cost.walkUs) / 1e3, eptWpModelMs: ((c.handledPf ?? 0) * cost.vmExitUs + (c.walks ?? 0) * cost.walkUs) / 1e3 };
}

const m = machineInfo(root, ['hw', 'src/hw']);
const host = kvmUnavailable() ? 'no usable /dev/kvm' : describeKvmHost();
// Rounds interleave the mechanisms; each row is the per-field median over rounds (a fault costs
// tens of microseconds against a noisy 2-core VM's millisecond jitter).
const all: Row[] = [];
for (let round = 0; round < ROUNDS; round++) {
  rows.length = 0;
  await kvmRows();
  hostRows();
  all.push(...rows);
  if (round < ROUNDS - 1) notes.length = 0;
}
const med = (xs: number[]) => { const v = [...xs].sort((a, b) => a - b); return v[v.length >> 1]!; };
rows.length = 0;
for (const name of [...new Set(all.map((r) => r.mechanism))]) {
  const rs = all.filter((r) => r.mechanism === name);
  rows.push({ mechanism: name, faults: med(rs.map((r) => r.faults)), armedMs: med(rs.map((r) => r.armedMs)), warmMs: med(rs.map((r) => r.warmMs)), perFaultUs: med(rs.map((r) => r.perFaultUs)), harvestUs: med(rs.map((r) => r.harvestUs)), epochMs: med(rs.map((r) => r.epochMs)) });
}
const model = await vtxModel();
const ref = rows.find((r) => r.mechanism === 'host mprotect');
if (json) {
  console.log(JSON.stringify({ bench: 'granule hw', date: new Date().toISOString(), machine: m, host, trace: tracePath, writes: N, pages: PAGES, rows, vtxModel: model, notes }));
} else {
  log(`granule hw bench  ${new Date().toISOString()}`);
  log(`machine  ${m.cpu}, ${m.cores} cores, node ${m.node}, ${m.os}${m.git ? `; checkout ${m.git}` : ''}`);
  log(`host     ${host}`);
  log(`stream   ${N.toLocaleString('en-US')} writes over ${PAGES} pages from ${path.relative(root, tracePath)}; ${ROUNDS} rounds, medians`);
  log('         per fault = (armed run - the same run with every page already dirty) / faults; below ~1 us it is within the noise');
  log();
  log(`  ${'mechanism'.padEnd(32)} ${'faults'.padStart(7)} ${'per fault'.padStart(11)} ${'harvest/page'.padStart(13)} ${'epoch'.padStart(10)}  vs mprotect`);
  for (const r of rows) {
    const pf = r.perFaultUs < 1 ? '< 1 us' : `${r.perFaultUs.toFixed(2)} us`;
    const vs = !ref || r.perFaultUs < 1 || ref.perFaultUs < 1 ? '-' : (r.perFaultUs / ref.perFaultUs).toFixed(2);
    log(`  ${r.mechanism.padEnd(32)} ${String(r.faults).padStart(7)} ${pf.padStart(11)} ${(r.harvestUs.toFixed(3) + ' us').padStart(13)} ${(r.epochMs.toFixed(2) + ' ms').padStart(10)}  ${vs}`);
  }
  log();
  log(`  VT-x model (assumed: guest #PF ${model.cost.guestPfUs} us, VM exit ${model.cost.vmExitUs} us, walk ${model.cost.walkUs} us) for the simulator's counts`);
  log(`  (${model.counts.faults} faults, ${model.counts.walks} walks): in-guest #PF monitor ${model.modelMs.toFixed(2)} ms, EPT write protection ${model.eptWpModelMs.toFixed(2)} ms per epoch`);
  for (const n of notes) log(`  note: ${n}`);
}
