// Live monitoring costs on this machine, measured side by side in one run on the same write stream,
// with the host named (PVM shadow paging and VT-x differ by an order of magnitude; see
// ../shared/DESIGN.md section 3):
//
//   in-guest #PF      KvmMmu: every page write-protected in the guest page table (protectGva); the
//                     guest's CPL0 handler takes one #PF per page (no VM exit to userspace) and logs
//                     it to its ring. Its arm includes the KVM_RUN in which the guest re-stores the
//                     changed entries (the sync list: on this shadow-paging host the guest does not
//                     see entries the host edits); a VT-x host would not need it.
//   EPT write-protect KvmMmu planeTracking 'write-watch': the plane's mapping of the pool under a
//                     userfaultfd write watch (protectGpa); a guest write exits to KVM, whose fault
//                     waits for the watch thread to log the page and lift the protection (the
//                     eptWriteProtect handler; dirty() entries of source 'ept').
//   KVM dirty log     KvmMmu planeTracking 'dirty-log': pages writable; KVM_GET/CLEAR_DIRTY_LOG of the
//                     plane memslot (the host's view of EPT dirty flags). Arm = the clear (an empty
//                     run() applies it).
//   KVM dirty ring    KvmMmu planeTracking 'dirty-ring' (PML's counterpart): KVM logs each first write
//                     to a per-vCPU ring; a full ring exits (pmlFull, PML-full's counterpart) and is
//                     drained; harvestPml() collects the rest and its reset re-arms (no arm step).
//   host baselines    the same stream in this process, no virtualization: mprotect+SIGSEGV,
//                     userfaultfd WP, WP_ASYNC + PAGEMAP_SCAN (soft-dirty where the kernel has it).
//
// The stream (--pages N, default 4096; 1024 with --quick): the bundled traces touch only ~10-150
// pages, too few for sub-microsecond costs to clear the noise, so the trace's write pattern is
// tiled: k = ceil(N / T) copies of the trace's T pages (in first-touch order) sit side by side in
// one region, and the stream's j-th write (of --writes, default 200000) is the trace's write number
// floor(j * W / L) (W writes in the trace, L in the stream) with its in-page offset and size (at
// most 8 bytes), landing in copy j mod k: k copies of the program writing in lock step, each on its
// own pages (k is raised until at least N distinct pages are written). `--pages 0` instead takes the trace's first --writes writes on the trace's own pages,
// packed (the first version of this bench). Writes crossing a page are dropped.
//
// Per mechanism, each round (rounds interleave the mechanisms; reported figures are medians over
// --rounds, default 5, 3 with --quick): a fresh VM or region, a first-touch run, one unmeasured
// epoch, then one measured epoch = arm (protect / clear everything) + run (the stream, faults
// included) + harvest (the dirty set) + copy (the dirty pages' bytes, packed into one preallocated
// buffer: readFrameInto on KVM, HostRegion.harvest(copyTo)'s memcpy for the baselines); the next epoch's arm is this one's re-arm. Between
// run and harvest the stream runs once more with every page already dirty ("warm"): per first
// write = (run - warm) / dirty pages. Then the simulator's counts for the same stream (guest #PF,
// EPT violations, PML-full exits, walks) are priced with a stated VT-x cost model.
//
//   node --import tsx bench/hw.bench.ts [--json] [--quick] [--trace T.grt] [--writes N] [--pages N] [--rounds R]
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { TraceReader } from '../src/trace/reader.ts';
import { EV_WRITE, EV_MODIFY } from '../src/trace/events.ts';
import { ACC_WRITE, ACC_USER } from '../src/consts.ts';
import { kvmUnavailable } from '../src/backend.ts';
import { KvmMmu, describeKvmHost, kvmPlaneGpa, GG, type PlaneTracking } from '../src/hw/kvm-mmu.ts';
import { SimMmu } from '../src/sim-mmu.ts';
import type { Handlers, Counters } from '../src/mmu.ts';
import { HostRegion, probeBaselines, HostBatch, BASELINE_MODES, FAULTING_MODES, type BaselineMode } from '../src/hw/baselines.ts';
import { machineInfo, median } from './machine.ts';

const t00 = performance.now();
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const argv = process.argv.slice(2);
const USAGE = 'usage: hw.bench.ts [--json] [--quick] [--trace T.grt] [--writes N] [--pages N] [--rounds R]';
const valued = new Set(['--trace', '--writes', '--pages', '--rounds']);
for (let i = 0; i < argv.length; i++) {
  const a = argv[i]!;
  if (a === '--json' || a === '--quick') continue;
  if (valued.has(a) && i + 1 < argv.length) { i++; continue; }
  console.error(`${valued.has(a) ? `${a} needs a value` : `unknown argument ${a}`}; ${USAGE}`);
  process.exit(2);
}
const json = argv.includes('--json');
const quick = argv.includes('--quick');
const arg = (name: string, d: string) => { const i = argv.indexOf(name); return i >= 0 ? argv[i + 1]! : d; };
const count = (name: string, d: number, min: number, max: number) => {
  const v = Number(arg(name, String(d)));
  if (!Number.isInteger(v) || v < min || v > max) { console.error(`${name} must be an integer ${min}..${max}, got ${arg(name, '')}; ${USAGE}`); process.exit(2); }
  return v;
};
const tracePath = path.resolve(root, arg('--trace', 'traces/kvstore-native.grt'));
// One batch per run: the guest's record area holds GG.REC_MAX records.
const WRITES = count('--writes', quick ? 100_000 : 200_000, 1, GG.REC_MAX - 1);
const PAGES_WANTED = count('--pages', quick ? 1024 : 4096, 0, 1 << 18);
const ROUNDS = count('--rounds', quick ? 3 : 5, 1, 1000);
const log = (s = '') => { if (!json) console.log(s); };
const PAGE = 4096;

// ---- the write stream: byte offsets into a region of FRAMES pages, and sizes ----
const tPage: number[] = [], tOff: number[] = [], tSize: number[] = [];
const pageIndex = new Map<number, number>();
{
  const limit = PAGES_WANTED === 0 ? WRITES : 20_000_000;
  const r = TraceReader.open(tracePath);
  outer: for (const b of r.blocks()) {
    for (let i = 0; i < b.count; i++) {
      const k = b.kind[i]!;
      if (k !== EV_WRITE && k !== EV_MODIFY) continue;
      const a = b.addr[i]!;
      const s = Math.min(b.size[i]!, 8);
      if ((a % PAGE) + s > PAGE) continue; // keep every write inside one page: one unit per write
      const page = Math.floor(a / PAGE);
      let idx = pageIndex.get(page);
      if (idx === undefined) { idx = pageIndex.size; pageIndex.set(page, idx); }
      tPage.push(idx); tOff.push(a % PAGE); tSize.push(s);
      if (tPage.length >= limit) break outer;
    }
  }
  r.close();
}
if (tPage.length === 0) { console.error(`${tracePath}: no writes`); process.exit(1); }
const TRACE_PAGES = pageIndex.size;
const W = tPage.length;
const L = PAGES_WANTED === 0 ? W : WRITES;
// Copies: enough that at least --pages distinct pages are written (a copy samples every k-th
// write of the trace, so a copy can miss a rarely written page).
const tile = (copies: number) => {
  const frames = copies * TRACE_PAGES;
  const offsets = new Float64Array(L), sizes = new Uint8Array(L), touched = new Uint8Array(frames);
  for (let j = 0; j < L; j++) {
    const t = PAGES_WANTED === 0 ? j : Math.floor((j * W) / L);
    const page = (j % copies) * TRACE_PAGES + tPage[t]!;
    offsets[j] = page * PAGE + tOff[t]!;
    sizes[j] = tSize[t]!;
    touched[page] = 1;
  }
  return { copies, frames, offsets, sizes, touched, dirty: touched.reduce((a, x) => a + x, 0) };
};
let stream = tile(PAGES_WANTED === 0 ? 1 : Math.ceil(PAGES_WANTED / TRACE_PAGES));
while (stream.dirty < PAGES_WANTED && stream.frames + TRACE_PAGES <= 1 << 18 && stream.copies < L) stream = tile(stream.copies + 1);
const { copies: COPIES, frames: FRAMES, offsets, sizes, touched, dirty: DIRTY } = stream;
const streamText = PAGES_WANTED === 0
  ? `the first ${L.toLocaleString('en-US')} writes of ${path.relative(root, tracePath)} on its own ${FRAMES} pages`
  : `${L.toLocaleString('en-US')} writes: ${path.relative(root, tracePath)}'s ${W.toLocaleString('en-US')} writes over ${TRACE_PAGES} pages, tiled ${COPIES}x (${FRAMES} pages)`;
const BASE = 0x4000_0000; // GVA of the region in the guest
const now = () => process.hrtime.bigint();
const since = (t: bigint) => Number(now() - t);

// ---- one measured epoch per round and mechanism ----
interface Sample {
  /** pages in the harvested dirty set */
  pages: number;
  /** faults the mechanism's handler saw (guest #PF, watch faults, SIGSEGV, uffd messages); for
   *  the logs (dirty log, ring, WP_ASYNC) the first writes, i.e. the pages */
  faults: number;
  armNs: number; runNs: number; warmNs: number; harvestNs: number; copyNs: number;
  /** KVM_RUN returns during the armed run, and of them PML-full (ring-full) exits */
  exits?: number; pmlFull?: number;
}
interface Mechanism {
  name: string;
  kind: 'kvm' | 'host';
  /** per-round samples (rounds where it ran) */
  samples: Sample[];
  skipped?: string;
}
const mechanisms: Mechanism[] = [];
const notes = new Set<string>();
const mech = (name: string, kind: 'kvm' | 'host') => {
  let m = mechanisms.find((x) => x.name === name);
  if (!m) { m = { name, kind, samples: [] }; mechanisms.push(m); }
  return m;
};
const checkSet = (name: string, frames: number[]) => {
  const set = new Set(frames);
  let missing = 0, extra = 0;
  for (let f = 0; f < FRAMES; f++) { if (touched[f] && !set.has(f)) missing++; if (!touched[f] && set.has(f)) extra++; }
  if (missing || extra) notes.add(`${name}: the dirty set differs from the pages written (${missing} missing, ${extra} extra)`);
};

interface KvmSpec {
  name: string;
  tracking: PlaneTracking;
  h: Handlers;
  arm(mmu: KvmMmu, fill: () => void): Promise<void>;
  /** the dirty set as frame numbers */
  harvest(mmu: KvmMmu): number[];
  /** faults seen by the mechanism's handler between two counter snapshots, and the dirty pages */
  faults(c0: Counters, c1: Counters, pages: number): number;
}
const gpa0 = kvmPlaneGpa(0);
const gpaFrame = (g: bigint) => Number((g - gpa0) >> 12n);
const kvmSpecs: KvmSpec[] = [
  {
    name: 'in-guest #PF (guest PT)',
    tracking: 'dirty-log', // never harvested here: after the first touch KVM's log costs nothing
    h: { guestWriteProtect: true },
    async arm(mmu) {
      mmu.protectGva(BigInt(BASE), FRAMES, true);
      mmu.batch.reset();
      await mmu.run(0, { guestWriteProtect: true }); // the guest re-stores the changed entries
    },
    harvest: (mmu) => mmu.dirty().filter((e) => e.source === 'pf').map((e) => Math.floor((Number(e.addr) - BASE) / PAGE)),
    faults: (c0, c1) => (c1.handledPf ?? 0) - (c0.handledPf ?? 0),
  },
  {
    name: 'EPT write-protect (write watch)',
    tracking: 'write-watch',
    h: { eptWriteProtect: true },
    async arm(mmu) { mmu.protectGpa(gpa0, FRAMES, true); },
    harvest: (mmu) => mmu.dirty().filter((e) => e.source === 'ept').map((e) => gpaFrame(e.addr)),
    faults: (c0, c1) => (c1.handledEpt ?? 0) - (c0.handledEpt ?? 0),
  },
  {
    name: 'KVM dirty log (memslot)',
    tracking: 'dirty-log',
    h: {},
    async arm(mmu) { mmu.batch.reset(); await mmu.run(0); }, // applies KVM_CLEAR_DIRTY_LOG of the last harvest
    harvest: (mmu) => mmu.harvestEptDirty(gpa0, FRAMES).map(gpaFrame),
    faults: (_c0, _c1, pages) => pages,
  },
  {
    name: 'KVM dirty ring (PML)',
    tracking: 'dirty-ring',
    h: { pmlFull: true },
    async arm() { /* harvestPml's KVM_RESET_DIRTY_RINGS re-arms */ },
    harvest: (mmu) => [...new Set([...mmu.dirty().filter((e) => e.source === 'pml').map((e) => gpaFrame(e.addr)), ...mmu.harvestPml().map(gpaFrame)])],
    faults: (_c0, _c1, pages) => pages,
  },
];

const RING_ENTRIES = Math.min(1 << 16, 2 ** Math.ceil(Math.log2(FRAMES + 1024)));
notes.add(`KVM dirty ring (PML): a ${RING_ENTRIES}-entry ring, which holds the epoch, so no ring-full exits are in these figures (test/hw-kvm-mmu.test.ts covers them)`);
async function kvmSample(s: KvmSpec, copyTo: Uint8Array): Promise<Sample> {
  // The ring holds the whole epoch: a ring-full drain mid-run resets (re-arms) the pages logged so
  // far, so the warm run would fault again and the subtraction would undercount.
  const ring = s.tracking === 'dirty-ring' ? { dirtyRingEntries: RING_ENTRIES } : {};
  const mmu = await KvmMmu.create({ frames: FRAMES, batchCapacity: L + 1, planeTracking: s.tracking, ...ring });
  try {
    mmu.mapPlane(gpa0, 0, FRAMES);
    mmu.mapGva(BigInt(BASE), gpa0, FRAMES);
    const fill = () => { mmu.batch.reset(); for (let i = 0; i < L; i++) mmu.batch.pushAddr(BASE + offsets[i]!, ACC_WRITE | ACC_USER, sizes[i]!); };
    const play = async () => {
      fill();
      const t = now();
      const r = await mmu.run(0, s.h);
      if (r.status !== 'done') throw new Error(`kvm run stopped: ${r.status}${r.fault ? ` at record ${r.fault.index}, GVA 0x${r.fault.gva.toString(16)}` : ''}`);
      return since(t);
    };
    await play(); // first touch: the pool's pages and KVM's mappings come into being
    s.harvest(mmu);
    let out: Sample | undefined;
    for (let epoch = 0; epoch < 2; epoch++) { // epoch 0 warms the re-arm path; epoch 1 is measured
      const c0 = mmu.counters();
      let t = now();
      await s.arm(mmu, fill);
      const armNs = since(t);
      const cA = mmu.counters();
      const runNs = await play();
      const c1 = mmu.counters();
      const warmNs = await play();
      t = now();
      const frames = s.harvest(mmu);
      const harvestNs = since(t);
      t = now();
      for (let i = 0; i < frames.length; i++) mmu.readFrameInto(frames[i]!, 0, PAGE, copyTo, i * PAGE);
      const copyNs = since(t);
      const c2 = mmu.counters();
      if (epoch === 1) {
        checkSet(s.name, frames);
        out = { pages: frames.length, faults: s.faults(c0, c2, frames.length), armNs, runNs, warmNs, harvestNs, copyNs, exits: c1.exits! - cA.exits!, pmlFull: c1.pmlFull! - cA.pmlFull! };
      }
    }
    return out!;
  } finally {
    await mmu.close();
  }
}

function hostSample(mode: BaselineMode, batch: HostBatch, copyTo: Uint8Array): Sample {
  const region = HostRegion.create(FRAMES, mode);
  try {
    const play = () => {
      const t = now();
      const r = region.run(batch.records, batch.values, batch.count);
      return { ns: since(t), faults: r.faults };
    };
    play(); // first touch
    region.harvest();
    let out: Sample | undefined;
    for (let epoch = 0; epoch < 2; epoch++) {
      let t = now();
      region.arm();
      const armNs = since(t);
      const run = play();
      const warm = play();
      t = now();
      const h = region.harvest(copyTo);
      const wall = since(t);
      if (epoch === 1) {
        checkSet(`host ${mode}`, h.pages);
        const faults = FAULTING_MODES.includes(mode) ? run.faults : h.pages.length;
        out = { pages: h.pages.length, faults, armNs, runNs: run.ns, warmNs: warm.ns, harvestNs: wall - h.copyNs, copyNs: h.copyNs };
      }
    }
    return out!;
  } finally {
    region.close();
  }
}

const kvmWhy = kvmUnavailable();
if (kvmWhy) notes.add(`KVM rows skipped: ${kvmWhy.split('\n')[0]}`);
const probe = probeBaselines();
const hostModes = BASELINE_MODES.filter((m) => {
  if (!probe[m].available) notes.add(`host ${m}: unavailable here: ${probe[m].why}`);
  return probe[m].available;
});
const batch = new HostBatch(L + 1);
for (let i = 0; i < L; i++) batch.push(offsets[i]!, ACC_WRITE, sizes[i]!);
const copyTo = new Uint8Array(FRAMES * PAGE);

for (let round = 0; round < ROUNDS; round++) {
  if (!kvmWhy) {
    for (const s of kvmSpecs) {
      const m = mech(s.name, 'kvm');
      if (m.skipped) continue;
      try {
        m.samples.push(await kvmSample(s, copyTo));
      } catch (e) {
        const msg = (e as Error).message.split('\n')[0]!;
        m.skipped = msg;
      }
    }
  }
  for (const mode of hostModes) {
    const m = mech(`host ${mode}`, 'host');
    if (m.skipped) continue;
    try { m.samples.push(hostSample(mode, batch, copyTo)); } catch (e) { m.skipped = (e as Error).message.split('\n')[0]; }
  }
}

// ---- the simulator's counts for the same stream, priced for VT-x ----
async function simCounts(kind: 'gpt-wp' | 'ept-wp' | 'pml'): Promise<Counters> {
  const mmu = await SimMmu.create({ frames: FRAMES, pml: kind === 'pml' });
  const g0 = mmu.planeGpa(0);
  mmu.mapPlane(g0, 0, FRAMES);
  mmu.mapGva(BigInt(BASE), g0, FRAMES);
  const h: Handlers = kind === 'gpt-wp' ? { guestWriteProtect: true } : kind === 'ept-wp' ? { eptWriteProtect: true } : { pmlFull: true };
  const playAll = () => {
    for (let i = 0; i < L;) {
      mmu.batch.reset();
      while (i < L && mmu.batch.pushAddr(BASE + offsets[i]!, ACC_WRITE | ACC_USER, sizes[i]!)) i++;
      for (let start = 0; ;) {
        const r = mmu.runSync(start, h);
        if (r.status === 'done') break;
        if (r.status !== 'log-full') throw new Error(`simulator (${kind}): ${r.status}`);
        mmu.dirty();
        start = r.next;
      }
      mmu.dirty();
    }
  };
  playAll(); // first touch, as on the live backends
  mmu.harvestEptDirty(g0, FRAMES);
  if (kind === 'pml') mmu.harvestPml();
  if (kind === 'gpt-wp') mmu.protectGva(BigInt(BASE), FRAMES, true);
  if (kind === 'ept-wp') mmu.protectGpa(g0, FRAMES, true);
  mmu.resetCounters();
  playAll();
  return mmu.counters();
}
// Assumed VT-x costs (a recent Xeon with EPT): an in-guest #PF with its handler ~1 us, a VM exit
// round trip (EPT violation or PML-full, handled in the kernel) ~1.5 us, a 2D walk ~0.03 us per
// TLB miss, a PML-full drain ~0.01 us per logged entry. Not measured here: stated so the reader
// can substitute their own.
const cost = { guestPfUs: 1.0, vmExitUs: 1.5, walkUs: 0.03, pmlEntryUs: 0.01 };
const sc = { gptWp: await simCounts('gpt-wp'), eptWp: await simCounts('ept-wp'), pml: await simCounts('pml') };
const walkMs = (c: Counters) => ((c.walks ?? 0) * cost.walkUs) / 1e3;
const vtx = {
  cost,
  inGuestPf: { guestPf: sc.gptWp.handledPf ?? 0, walks: sc.gptWp.walks ?? 0, ms: ((sc.gptWp.handledPf ?? 0) * cost.guestPfUs) / 1e3 + walkMs(sc.gptWp) },
  eptWriteProtect: { eptViolationExits: sc.eptWp.eptViolation ?? 0, walks: sc.eptWp.walks ?? 0, ms: ((sc.eptWp.eptViolation ?? 0) * cost.vmExitUs) / 1e3 + walkMs(sc.eptWp) },
  pml: { pmlFullExits: sc.pml.pmlFull ?? 0, logged: sc.pml.pmlLogged ?? 0, walks: sc.pml.walks ?? 0, ms: ((sc.pml.pmlFull ?? 0) * cost.vmExitUs + (sc.pml.pmlLogged ?? 0) * cost.pmlEntryUs) / 1e3 + walkMs(sc.pml) },
  eptDirtyLog: { exits: 0, walks: sc.pml.walks ?? 0, ms: walkMs(sc.pml) },
};

// ---- summaries ----
const us = (ns: number) => ns / 1e3;
const msOf = (ns: number) => ns / 1e6;
interface Row {
  mechanism: string; kind: 'kvm' | 'host'; rounds: number; pages: number; faults: number;
  /** per first write, median over rounds, and the rounds' min and max */
  perFaultUs: number; perFaultMinUs: number; perFaultMaxUs: number;
  /** whole epoch, medians: arm, run, harvest, copy and their per-round total */
  armMs: number; runMs: number; warmMs: number; harvestMs: number; copyMs: number; epochMs: number;
  exits?: number; pmlFull?: number;
  perFaultVsMprotect?: number; epochVsMprotect?: number;
}
const rows: Row[] = [];
for (const m of mechanisms) {
  if (m.skipped) notes.add(`${m.name}: skipped: ${m.skipped}`);
  if (m.samples.length === 0) continue;
  const ss = m.samples;
  const pf = ss.map((s) => us(s.runNs - s.warmNs) / Math.max(1, s.pages));
  rows.push({
    mechanism: m.name, kind: m.kind, rounds: ss.length,
    pages: median(ss.map((s) => s.pages)), faults: median(ss.map((s) => s.faults)),
    perFaultUs: median(pf), perFaultMinUs: Math.min(...pf), perFaultMaxUs: Math.max(...pf),
    armMs: msOf(median(ss.map((s) => s.armNs))), runMs: msOf(median(ss.map((s) => s.runNs))), warmMs: msOf(median(ss.map((s) => s.warmNs))),
    harvestMs: msOf(median(ss.map((s) => s.harvestNs))), copyMs: msOf(median(ss.map((s) => s.copyNs))),
    epochMs: msOf(median(ss.map((s) => s.armNs + s.runNs + s.harvestNs + s.copyNs))),
    ...(m.kind === 'kvm' ? { exits: median(ss.map((s) => s.exits ?? 0)), pmlFull: median(ss.map((s) => s.pmlFull ?? 0)) } : {}),
  });
}
const ref = rows.find((r) => r.mechanism === 'host mprotect');
for (const r of rows) {
  if (!ref) break;
  r.perFaultVsMprotect = r.perFaultUs / ref.perFaultUs;
  r.epochVsMprotect = r.epochMs / ref.epochMs;
}
const row = (name: string) => rows.find((r) => r.mechanism === name);
const ratio = (a: string, b: string, f: 'perFaultUs' | 'epochMs') => { const x = row(a), y = row(b); return x && y ? x[f] / y[f] : undefined; };
const G = 'in-guest #PF (guest PT)', E = 'EPT write-protect (write watch)', DL = 'KVM dirty log (memslot)', DR = 'KVM dirty ring (PML)';
const ratios = {
  eptWpVsInGuestPf: ratio(E, G, 'perFaultUs'),
  eptWpVsUffdWp: ratio(E, 'host uffd-wp', 'perFaultUs'),
  inGuestPfVsMprotect: ratio(G, 'host mprotect', 'perFaultUs'),
  dirtyRingVsDirtyLog: ratio(DR, DL, 'perFaultUs'),
  epochDirtyLogVsInGuestPf: ratio(DL, G, 'epochMs'),
  epochDirtyRingVsUffdAsync: ratio(DR, 'host uffd-wp-async', 'epochMs'),
};
const host = kvmWhy ? 'no usable /dev/kvm' : describeKvmHost();
const machine = machineInfo(root, ['hw', 'src/hw']);
const elapsedS = (performance.now() - t00) / 1e3;

if (json) {
  console.log(JSON.stringify({
    bench: 'granule hw', date: new Date().toISOString(), machine, host, quick,
    stream: { text: streamText, trace: tracePath, traceWrites: W, tracePages: TRACE_PAGES, copies: COPIES, writes: L, regionPages: FRAMES, dirtyPages: DIRTY },
    rounds: ROUNDS, rows, ratios, vtxModel: vtx, notes: [...notes], elapsedS,
    samples: Object.fromEntries(mechanisms.map((m) => [m.name, m.samples])),
  }));
} else {
  const f2 = (x: number) => x.toFixed(2);
  const pfText = (r: Row) => `${r.perFaultUs.toFixed(r.perFaultUs < 10 ? 2 : 1)} [${r.perFaultMinUs.toFixed(1)}..${r.perFaultMaxUs.toFixed(1)}]`;
  const x = (v: number | undefined) => (v === undefined ? '-' : v >= 10 ? v.toFixed(0) + 'x' : v.toFixed(2) + 'x');
  log(`granule hw bench  ${new Date().toISOString()}${quick ? '  (--quick)' : ''}`);
  log(`machine  ${machine.cpu}, ${machine.cores} cores, node ${machine.node}, ${machine.os}${machine.git ? `; checkout ${machine.git}` : ''}`);
  log(`host     ${host}`);
  log(`stream   ${streamText}; ${DIRTY} pages written; ${ROUNDS} rounds, medians`);
  log();
  log('per first write = (armed run - the same run with every page already dirty) / dirty pages, us, median [min..max over rounds];');
  log('faults = seen by the handler (for the logs: pages logged); exits = KVM_RUN returns to this process in the armed run');
  log(`  ${'mechanism'.padEnd(32)} ${'pages'.padStart(6)} ${'faults'.padStart(6)} ${'exits'.padStart(6)} ${'per first write'.padStart(20)}  vs mprotect`);
  for (const r of rows) {
    const exits = r.kind === 'kvm' ? `${r.exits}${r.pmlFull ? ` (${r.pmlFull} full)` : ''}` : '-';
    log(`  ${r.mechanism.padEnd(32)} ${String(r.pages).padStart(6)} ${String(r.faults).padStart(6)} ${exits.padStart(6)} ${pfText(r).padStart(20)}  ${x(r.perFaultVsMprotect)}`);
  }
  log();
  log('whole epoch (arm + run + harvest + copy the dirty pages), ms, medians; total = median of the rounds\' sums');
  log(`  ${'mechanism'.padEnd(32)} ${'arm'.padStart(7)} ${'run'.padStart(8)} ${'(warm)'.padStart(8)} ${'harvest'.padStart(8)} ${'copy'.padStart(7)} ${'total'.padStart(8)}  vs mprotect`);
  for (const r of rows) {
    log(`  ${r.mechanism.padEnd(32)} ${f2(r.armMs).padStart(7)} ${f2(r.runMs).padStart(8)} ${('(' + f2(r.warmMs) + ')').padStart(8)} ${f2(r.harvestMs).padStart(8)} ${f2(r.copyMs).padStart(7)} ${f2(r.epochMs).padStart(8)}  ${x(r.epochVsMprotect)}`);
  }
  log();
  const rt = (label: string, v: number | undefined) => (v === undefined ? '' : `${label} ${x(v)}`);
  log(`ratios   per first write: ${[rt('EPT write-protect / in-guest #PF', ratios.eptWpVsInGuestPf), rt('EPT write-protect / host uffd-wp', ratios.eptWpVsUffdWp), rt('in-guest #PF / host mprotect', ratios.inGuestPfVsMprotect), rt('dirty ring / dirty log', ratios.dirtyRingVsDirtyLog)].filter(Boolean).join('; ')}`);
  log(`         whole epoch: ${[rt('dirty log / in-guest #PF', ratios.epochDirtyLogVsInGuestPf), rt('dirty ring / host uffd-wp-async', ratios.epochDirtyRingVsUffdAsync)].filter(Boolean).join('; ')}`);
  log();
  log(`VT-x model: the simulator's counts for this stream priced with assumed costs (guest #PF ${cost.guestPfUs} us, VM exit ${cost.vmExitUs} us,`);
  log(`  walk ${cost.walkUs} us per TLB miss, PML drain ${cost.pmlEntryUs} us per entry), per epoch:`);
  const here = (name: string) => { const r = row(name); return r ? `; measured here ${f2(r.runMs - r.warmMs)} ms (${f2(r.perFaultUs)} us per page)` : ''; };
  log(`  in-guest #PF         ${vtx.inGuestPf.guestPf} guest #PF, ${vtx.inGuestPf.walks} walks: ${f2(vtx.inGuestPf.ms)} ms${here(G)}`);
  log(`  EPT write-protect    ${vtx.eptWriteProtect.eptViolationExits} EPT-violation exits, ${vtx.eptWriteProtect.walks} walks: ${f2(vtx.eptWriteProtect.ms)} ms${here(E)}`);
  log(`  PML                  ${vtx.pml.pmlFullExits} PML-full exits for ${vtx.pml.logged} logged GPAs, ${vtx.pml.walks} walks: ${f2(vtx.pml.ms)} ms${here(DR)}`);
  log(`  EPT dirty flags      no exits, ${vtx.eptDirtyLog.walks} walks: ${f2(vtx.eptDirtyLog.ms)} ms (plus the harvest's scan of the EPT)${here(DL)}`);
  for (const n of notes) log(`note: ${n}`);
  log(`ran in ${elapsedS.toFixed(1)} s`);
}
