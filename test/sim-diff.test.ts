// Differential property test: the WASM simulator (src/sim.ts) against the independent reference
// walker (test/support/ref-walker.ts) on seeded random address spaces (test/support/random-space.ts).
//
//   GRANULE_SEED=<u32>        run seed (default: random, always printed)
//   GRANULE_DIFF_CASES=<n>    number of spaces (default 40, ~100 accesses each)
//   GRANULE_DIFF_CASE=<i>     replay only case i of the seed
//   GRANULE_DIFF_ACCESSES=<n> accesses per space (default 100)
//   GRANULE_DIFF_VERBOSE=1    print every access of the replayed case
//
// Each space runs through the simulator twice: with its TLB in normal use (a per-case TLB geometry,
// sometimes tiny so entries are evicted, sometimes with the optional paging-structure cache), and
// with invept(INVEPT_ALL) before every access (default geometry). Both must agree with the reference after every access
// (fault record, or HPA) and at the end (the whole host memory image and the PML index). In the
// flushed run every access walks, so the per-access guest and EPT reference counts are compared too.

import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { randomBytes } from 'node:crypto';
import {
  INVEPT_ALL, FAULT_NONE, FAULT_PF, FAULT_GP, FAULT_EPT_VIOLATION, FAULT_EPT_MISCONFIG,
  FAULT_PML_FULL, FAULT_SPP_MISS, FAULT_SPP_MISCONFIG, FAULT_BUS, EQ_GLA_XLATE, EQ_SPP, EPTP_AD,
  PTE_P, PTE_RW, PTE_US, PTE_XD, EPT_W, EPT_SPP, ACC_READ, ACC_WRITE, ACC_FETCH, ACC_USER,
} from '../src/consts.ts';
import { Sim, type FaultRecord } from '../src/sim.ts';
import { RefMemory, refAccess, faultName, type RefCpu, type RefResult, type RefCounts } from './support/ref-walker.ts';
import { randomSpace, caseSeed, Rng, type RandomSpace, type RandomAccess } from './support/random-space.ts';
import { fmtResult, accName, hex } from './support/format.ts';
import { SpaceBuilder, K4 } from './support/space-builder.ts';

const DEFAULT_CASES = 40;
const env = process.env;
const SEED = env.GRANULE_SEED !== undefined ? Number(env.GRANULE_SEED) >>> 0 : randomBytes(4).readUInt32LE(0);
const CASES = env.GRANULE_DIFF_CASES !== undefined ? Number(env.GRANULE_DIFF_CASES) : DEFAULT_CASES;
const ONLY = env.GRANULE_DIFF_CASE !== undefined ? Number(env.GRANULE_DIFF_CASE) : undefined;
const ACCESSES = env.GRANULE_DIFF_ACCESSES !== undefined ? Number(env.GRANULE_DIFF_ACCESSES) : 100;
const VERBOSE = env.GRANULE_DIFF_VERBOSE === '1';
const MAX_DETAILED = 6;

type Mode = 'tlb' | 'flush';

/** The access flags both sides see (ACC_VALUE is a batch-record flag; fault records leave it out). */
const accOf = (a: RandomAccess): number => a.acc;

function describeAccess(i: number, a: RandomAccess): string {
  return `#${i} ${accName(accOf(a))} gva=${hex(a.gva)} size=${a.size} (${a.tag})`
    + (a.value ? ` value=${Buffer.from(a.value).toString('hex')}` : '');
}

function replayHint(c: number): string {
  return `replay: GRANULE_SEED=${SEED} GRANULE_DIFF_CASE=${c}` + (ACCESSES !== 100 ? ` GRANULE_DIFF_ACCESSES=${ACCESSES}` : '')
    + ` node --import tsx ./node_modules/uvu/bin.js test "sim-diff\\.test\\.ts$"`;
}

/** Compare a simulator result with the reference; return the differing fields (empty if equal). */
function diffResult(sim: { fault: FaultRecord | null; hpa: bigint }, ref: RefResult): string[] {
  const out: string[] = [];
  if ((sim.fault === null) !== (ref.fault === null)) return ['outcome'];
  if (sim.hpa !== ref.hpa) out.push('hpa');
  if (sim.fault && ref.fault) {
    const s = sim.fault, r = ref.fault;
    if (s.kind !== r.kind) return ['kind'];
    // FAULT_BUS is not architectural: only its kind, access and the offending HPA are specified.
    const fields: (keyof typeof r)[] = r.kind === FAULT_BUS
      ? ['access', 'gpa']
      : ['gva', 'gpa', 'access', 'level', 'code', 'exitReason', 'guestLevel'];
    for (const f of fields) if (s[f] !== r[f]) out.push(f);
  }
  return out;
}

function fmtSteps(sim: Sim, a: RandomAccess): string {
  try {
    const ins = sim.inspect(a.gva, a.acc);
    const lines = ins.steps.map((s) =>
      `    ${s.kind.padEnd(5)} L${s.level}${s.kind !== 'guest' ? ` for=${s.forLevel}` : ''} addr=${hex(s.addr)} hpa=${hex(s.hpa)}`
      + ` value=${hex(s.value)} input=${hex(s.input)}${s.leaf ? ' leaf' : ''}${s.notPresent ? ' not-present' : ''}${s.reserved ? ' reserved' : ''}`);
    return `  sim.inspect (after the access): ${fmtResult(ins)}\n${lines.join('\n')}`;
  } catch (e) {
    return `  sim.inspect failed: ${(e as Error).message}`;
  }
}

function memDiff(ref: Uint8Array, sim: Uint8Array, initial: Uint8Array, guarded: Set<number>, max = 8): string[] {
  const out: string[] = [];
  const rv = new DataView(ref.buffer, ref.byteOffset, ref.byteLength);
  const sv = new DataView(sim.buffer, sim.byteOffset, sim.byteLength);
  const iv = new DataView(initial.buffer, initial.byteOffset, initial.byteLength);
  let count = 0;
  for (let o = 0; o < ref.length; o += 8) {
    const r = rv.getBigUint64(o, true), s = sv.getBigUint64(o, true);
    if (r === s) continue;
    count++;
    if (out.length < max) {
      out.push(`    hpa ${hex(o)}${guarded.has(o >> 12) ? ' (table page)' : ''}: initial ${hex(iv.getBigUint64(o, true))}`
        + ` ref ${hex(r)} sim ${hex(s)} (xor ${hex(r ^ s)})`);
    }
  }
  if (count > max) out.push(`    ... ${count - max} more differing words`);
  return out;
}

function simCpu(c: RefCpu): Parameters<Sim['setCpu']>[0] {
  return {
    cr3: c.cr3, wp: c.wp, nxe: c.nxe, gbPages: c.gbPages, eptp: c.eptp, eptExecOnly: c.eptExecOnly,
    eptGbPages: c.eptGbPages, vpid: c.vpid, pml: { ...c.pml }, spp: { ...c.spp },
  };
}

/** TLB geometry and paging-structure cache of the 'tlb' run: neither may change any outcome. */
interface SimShape {
  tlbSets?: number;
  tlbWays?: number;
  pscEntries?: number;
}

function shapeFor(seed: number): SimShape {
  const rng = new Rng(seed ^ 0x5eed);
  const geo = rng.pick([{}, {}, { tlbSets: 1, tlbWays: 1 }, { tlbSets: 2, tlbWays: 2 }, { tlbSets: 4, tlbWays: 1 }, { tlbSets: 1, tlbWays: 4 }]);
  return rng.chance(0.3) ? { ...geo, pscEntries: rng.pick([1, 4, 16]) } : geo;
}

async function newSim(s: RandomSpace, shape: SimShape = {}): Promise<Sim> {
  const sim = await Sim.create({ physBytes: s.physBytes, maxPhyAddr: s.maxPhyAddr, ...shape });
  sim.phys.set(s.image);
  sim.setCpu(simCpu(s.cpu));
  return sim;
}

interface RefRun {
  results: RefResult[];
  counts: RefCounts[];
  mem: RefMemory;
  cpu: RefCpu;
}

function runRef(s: RandomSpace, upTo = s.accesses.length): RefRun {
  const mem = new RefMemory(s.image.slice());
  const cpu = structuredClone(s.cpu);
  const results: RefResult[] = [];
  const counts: RefCounts[] = [];
  for (let i = 0; i < upTo; i++) {
    const a = s.accesses[i];
    const c = { guestRefs: 0, eptRefs: 0 };
    results.push(refAccess(mem, cpu, a.gva, accOf(a), a.size, a.value?.slice(), c));
    counts.push(c);
  }
  return { results, counts, mem, cpu };
}

/** After an end-of-run memory mismatch: the first access after which the two memories differ. */
async function firstMemoryDivergence(s: RandomSpace, mode: Mode, shape: SimShape): Promise<number> {
  const sim = await newSim(s, shape);
  const mem = new RefMemory(s.image.slice());
  const cpu = structuredClone(s.cpu);
  for (let i = 0; i < s.accesses.length; i++) {
    const a = s.accesses[i];
    if (mode === 'flush') sim.invept(INVEPT_ALL, 0n);
    sim.access(a.gva, a.acc, a.size, a.value?.slice());
    refAccess(mem, cpu, a.gva, accOf(a), a.size, a.value?.slice());
    if (Buffer.compare(Buffer.from(sim.phys), Buffer.from(mem.bytes)) !== 0) return i;
  }
  return -1;
}

/** Short outcome label for the histogram. */
function label(r: RefResult): string {
  if (!r.fault) return r.pieces.length > 1 ? 'ok (straddling)' : 'ok';
  const f = r.fault;
  if (f.kind === FAULT_EPT_VIOLATION) {
    return `EPT_VIOLATION ${f.code & EQ_SPP ? '(SPP)' : f.code & EQ_GLA_XLATE ? '(final GPA)' : `(guest paging L${f.guestLevel})`}`;
  }
  if (f.kind === FAULT_EPT_MISCONFIG || f.kind === FAULT_PML_FULL) {
    return `${faultName(f.kind)} (${f.guestLevel ? 'guest paging' : 'final GPA'})`;
  }
  if (f.kind === FAULT_PF) return `PF ${f.code & 8 ? '(RSVD)' : f.code & 1 ? '(rights)' : '(not present)'}`;
  return faultName(f.kind);
}

interface Failure {
  caseNo: number;
  mode: Mode;
  text: string;
}

async function checkCase(c: number, hist: Map<string, number>, sideHist: Map<string, number>, failures: Failure[]): Promise<void> {
  const seed = caseSeed(SEED, c);
  const s = randomSpace(seed, { accesses: ACCESSES });
  const ref = runRef(s);
  for (const r of ref.results) hist.set(label(r), (hist.get(label(r)) ?? 0) + 1);
  const logged = ref.cpu.pml.enabled ? (s.cpu.pml.index - ref.cpu.pml.index + 0x10000) % 0x10000 : 0;
  sideHist.set('PML entries logged', (sideHist.get('PML entries logged') ?? 0) + logged);
  sideHist.set('cases with EPT A/D', (sideHist.get('cases with EPT A/D') ?? 0) + ((s.cpu.eptp & EPTP_AD) ? 1 : 0));
  sideHist.set('cases with SPP enabled', (sideHist.get('cases with SPP enabled') ?? 0) + (s.cpu.spp.enabled ? 1 : 0));
  await checkSpace(s, ref, c, `seed ${SEED} case ${c} (case seed ${seed}); ${s.notes.join('\n    ')}`, replayHint(c), failures, shapeFor(seed));
}

/** Run `s` through the simulator (TLB on, then flushed before every access) against `ref`. */
async function checkSpace(s: RandomSpace, ref: RefRun, c: number, header: string, hint: string, failures: Failure[], tlbShape: SimShape = {}): Promise<void> {
  for (const mode of ['tlb', 'flush'] as const) {
    const shape = mode === 'tlb' ? tlbShape : {};
    const sim = await newSim(s, shape);
    const modeName = mode === 'tlb' && Object.keys(shape).length ? `tlb ${JSON.stringify(shape)}` : mode;
    const hasCounters = 'guestRefs' in sim.counters() && 'eptRefs' in sim.counters();
    let broke = false;
    for (let i = 0; i < s.accesses.length; i++) {
      const a = s.accesses[i];
      if (mode === 'flush') sim.invept(INVEPT_ALL, 0n);
      const before = mode === 'flush' && hasCounters ? sim.counters() : undefined;
      const got = sim.access(a.gva, a.acc, a.size, a.value?.slice());
      const want = ref.results[i];
      if (VERBOSE && mode === 'tlb') console.log(`  ${describeAccess(i, a)}\n    ref ${fmtResult(want)}\n    sim ${fmtResult(got)}`);
      const d = diffResult(got, want);
      if (d.length) {
        failures.push({
          caseNo: c, mode,
          text: `${header}\n  mode ${modeName}: access ${describeAccess(i, a)}\n  differs in: ${d.join(', ')}\n`
            + `  ref: ${fmtResult(want)}\n  sim: ${fmtResult(got)}\n${fmtSteps(sim, a)}\n  ${hint}`,
        });
        broke = true;
        break; // later accesses would only cascade
      }
      if (before) {
        const after = sim.counters();
        const g = after.guestRefs - before.guestRefs, e = after.eptRefs - before.eptRefs;
        const rc = ref.counts[i];
        if (g !== rc.guestRefs || e !== rc.eptRefs) {
          failures.push({
            caseNo: c, mode,
            text: `${header}\n  mode ${modeName}: access ${describeAccess(i, a)}: reference counts differ:`
              + ` ref guest=${rc.guestRefs} ept=${rc.eptRefs}, sim guest=${g} ept=${e}\n  result ${fmtResult(want)}\n${fmtSteps(sim, a)}\n  ${hint}`,
          });
          broke = true;
          break;
        }
      }
    }
    if (broke) continue;
    const simIndex = sim.cpu().pml.index;
    const md = memDiff(ref.mem.bytes, sim.phys, s.image, s.guarded);
    if (md.length || simIndex !== ref.cpu.pml.index) {
      const at = md.length ? await firstMemoryDivergence(s, mode, shape) : -1;
      failures.push({
        caseNo: c, mode,
        text: `${header}\n  mode ${modeName}: end state differs; pml.index ref ${ref.cpu.pml.index} sim ${simIndex}\n${md.join('\n')}`
          + (at >= 0 ? `\n  memory first differs after access ${describeAccess(at, s.accesses[at])}\n  ref: ${fmtResult(ref.results[at])}` : '')
          + `\n  ${hint}`,
      });
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Directed cases: small hand-built spaces for rules the random spaces hit only rarely, and the
// minimal reproductions of every mismatch found so far. Expected results come from the reference.

const DV = 0x0000_1234_5678_9000n; // guest page, and DV + 4K
const DG = 0x0000_0080_0000_3000n; // its GPA (DV + 4K is at DG + 0x4000)
const DH = 0x10_0000n;             // its HPA (DV + 4K is at DH + 0x5000)
const LEAF = PTE_P | PTE_RW | PTE_US;

function directedBase(): SpaceBuilder {
  const b = new SpaceBuilder({ physBytes: 8 << 20, maxPhyAddr: 46, tableLimit: 0x10_0000n });
  b.mapGuest(DV, DG, K4, LEAF);
  b.mapEpt(DG, DH, K4);
  b.mapGuest(DV + K4, DG + 0x4000n, K4, LEAF);
  b.mapEpt(DG + 0x4000n, DH + 0x5000n, K4);
  return b;
}

const da = (gva: bigint, acc: number, size: number, value?: number[]): RandomAccess =>
  ({ gva, acc, size, value: value ? Uint8Array.from(value) : undefined, tag: 'directed' });
const bytes = (n: number, v: number): number[] => new Array<number>(n).fill(v);

const directed: { name: string; make: () => { b: SpaceBuilder; cpu: RefCpu; accesses: RandomAccess[] } }[] = [
  {
    name: '29.3.4 / SDM "Exit Qualification for SPP-Related Events": an SPPT miss sets bit 11 of the qualification',
    make: () => {
      const b = directedBase();
      b.set(b.eptEntry(DG, 1)!, EPT_SPP, EPT_W);
      b.sppEntry(DG + 0x4000n, 1); // an SPPT exists, but not for DG's 1G region
      b.write(b.sppEntry(DG, 4), 0n);
      return { b, cpu: b.cpu({ spp: { enabled: true, spptp: b.sppRoot! } }), accesses: [da(DV, ACC_WRITE, 8, bytes(8, 1))] };
    },
  },
  {
    name: 'docs "One access": straddle whose first page maps beyond memory and whose second page is not present: '
      + 'the second page\'s #PF (bytes are accessed only when all pages translate)',
    make: () => {
      const b = directedBase();
      const leaf = b.eptEntry(DG, 1)!;
      b.write(leaf, (b.read(leaf) & 0xfffn) | 0x1000_0000n);
      b.set(b.guestEntry(DV + K4, 1)!.hpa, 0n, PTE_P);
      return { b, cpu: b.cpu(), accesses: [da(DV + 0xffcn, ACC_READ, 8)] };
    },
  },
  {
    name: '4.10 / docs TLB: a translation cached by a read must not let a later write skip guest D, EPT D and the PML log',
    make: () => {
      const b = directedBase();
      const pml = b.allocTable();
      const cpu = b.cpu({ pml: { enabled: true, address: pml, index: 5 } });
      cpu.eptp |= EPTP_AD;
      return { b, cpu, accesses: [da(DV, ACC_READ, 8), da(DV + 8n, ACC_READ | ACC_USER, 8), da(DV + 16n, ACC_WRITE, 4, [1, 2, 3, 4]), da(DV + 16n, ACC_WRITE, 4, [5, 6, 7, 8])] };
    },
  },
  {
    name: '29.3.6: the PML log fills up mid-run: PML-full on the next dirtying, later reads through cached translations still work',
    make: () => {
      const b = directedBase();
      const pml = b.allocTable();
      const cpu = b.cpu({ pml: { enabled: true, address: pml, index: 4 } });
      cpu.eptp |= EPTP_AD;
      return { b, cpu, accesses: [da(DV, ACC_READ, 8), da(DV, ACC_WRITE, 8, bytes(8, 9)), da(DV + K4, ACC_WRITE, 8, bytes(8, 7)), da(DV, ACC_READ, 8), da(DV + K4, ACC_READ, 8)] };
    },
  },
  {
    name: '4.6 / 4.10.4.1: denied accesses through a cached translation fault like a walk (level, code)',
    make: () => {
      const b = directedBase();
      b.set(b.guestEntry(DV, 2)!.hpa, 0n, PTE_RW);
      b.set(b.guestEntry(DV, 1)!.hpa, PTE_XD);
      b.set(b.eptEntry(DG + 0x4000n, 2)!, 0n, EPT_W);
      return {
        b, cpu: b.cpu(),
        accesses: [da(DV, ACC_READ, 8), da(DV, ACC_WRITE | ACC_USER, 8, bytes(8, 1)), da(DV, ACC_FETCH, 8), da(DV, ACC_READ, 8),
          da(DV + K4, ACC_READ, 8), da(DV + K4, ACC_WRITE, 8, bytes(8, 2)), da(DV + K4, ACC_READ, 8)],
      };
    },
  },
  {
    name: '4.8 / 29.3.3.2: guest A/D updates need EPT write access to the table page; SPP never grants them',
    make: () => {
      const b = directedBase();
      const pd = b.guestEntry(DV, 2)!;
      const leaf = b.eptEntry(pd.gpa & ~0xfffn, 1)!;
      b.set(leaf, EPT_SPP, EPT_W);
      b.setSpp(pd.gpa, 0xffffffff);
      return { b, cpu: b.cpu({ spp: { enabled: true, spptp: b.sppRoot! } }), accesses: [da(DV, ACC_READ, 8), da(DV, ACC_READ, 8)] };
    },
  },
  {
    name: '29.3.4: SPP grants sub-pages 0-1 then denies sub-page 2 in the same page, with the TLB warm',
    make: () => {
      const b = directedBase();
      b.set(b.eptEntry(DG, 1)!, EPT_SPP, EPT_W);
      b.setSpp(DG, 0b11);
      const cpu = b.cpu({ spp: { enabled: true, spptp: b.sppRoot! } });
      cpu.eptp |= EPTP_AD;
      return { b, cpu, accesses: [da(DV + 0xf8n, ACC_WRITE, 8, bytes(8, 3)), da(DV + 0xfcn, ACC_WRITE, 8, bytes(8, 4)), da(DV + 0x10n, ACC_READ, 8), da(DV + 0x10n, ACC_WRITE, 8, bytes(8, 5))] };
    },
  },
];

for (const [i, d] of directed.entries()) {
  test(`directed: ${d.name}`, async () => {
    const { b, cpu, accesses } = d.make();
    const s: RandomSpace = {
      seed: 0, physBytes: b.physBytes, maxPhyAddr: b.maxPhyAddr, image: b.image, cpu, guarded: b.guarded, accesses, notes: [],
    };
    const failures: Failure[] = [];
    await checkSpace(s, runRef(s), i, `directed case "${d.name}"`, 'replay: node --import tsx ./node_modules/uvu/bin.js test "sim-diff\\.test\\.ts$"', failures);
    if (failures.length) console.log(`\n${failures.map((f) => f.text).join('\n\n')}\n`);
    assert.is(failures.length, 0, 'the simulator differs from the reference (see the log above)');
  });
}

// ---------------------------------------------------------------------------------------------

test(`simulator agrees with the reference walker on random spaces (GRANULE_SEED=${SEED})`, async () => {
  const hist = new Map<string, number>();
  const side = new Map<string, number>();
  const failures: Failure[] = [];
  const cases = ONLY !== undefined ? [ONLY] : Array.from({ length: CASES }, (_, i) => i);
  console.log(`\nsim-diff: GRANULE_SEED=${SEED}, ${cases.length} case(s) x ${ACCESSES} accesses, TLB on and flushed`);
  const run = async (c: number) => {
    try {
      await checkCase(c, hist, side, failures);
    } catch (e) {
      failures.push({ caseNo: c, mode: 'tlb', text: `seed ${SEED} case ${c}: threw ${(e as Error).stack}\n  ${replayHint(c)}` });
    }
  };
  for (const c of cases) await run(c);
  // The seed is random per run; a rare outcome may not come up in the default cases. More cases
  // of the same seed are drawn until every outcome has (the coverage check below stays strict).
  const coverage = ONLY === undefined && CASES >= DEFAULT_CASES && ACCESSES >= 100;
  const RARE = ['SPP_MISCONFIG', 'SPP_MISS', 'EPT_MISCONFIG', 'PML_FULL', 'BUS', 'GP'];
  for (let c = CASES; coverage && c < CASES * 4 && RARE.some((r) => ![...hist.keys()].some((k) => k.split(' ')[0] === r)); c++) await run(c);

  const total = [...hist.values()].reduce((a, b) => a + b, 0);
  const rows = [...hist.entries()].sort((a, b) => b[1] - a[1])
    .map(([k, v]) => `  ${k.padEnd(36)} ${String(v).padStart(6)}  ${(100 * v / total).toFixed(1).padStart(5)}%`);
  console.log(`outcome histogram (reference, ${total} accesses):\n${rows.join('\n')}`);
  console.log([...side.entries()].map(([k, v]) => `  ${k}: ${v}`).join('\n'));

  if (failures.length) {
    const cases = new Set(failures.map((f) => f.caseNo));
    const shown = failures.slice(0, MAX_DETAILED).map((f) => f.text).join('\n\n');
    const rest = failures.length > MAX_DETAILED
      ? `\n\n... and ${failures.length - MAX_DETAILED} more (cases ${[...cases].join(', ')})` : '';
    console.log(`\nMISMATCHES (${failures.length} in ${cases.size} case(s); GRANULE_SEED=${SEED}):\n\n${shown}${rest}\n`);
  }
  assert.is(failures.length, 0, `${failures.length} mismatch(es) between the simulator and the reference (GRANULE_SEED=${SEED}); see the log above`);

  // The run must have exercised every outcome (a default-sized or larger run).
  if (ONLY === undefined && CASES >= DEFAULT_CASES && ACCESSES >= 100) {
    const kinds = new Set<number>();
    for (const k of hist.keys()) {
      const name = k.split(' ')[0];
      const idx = ['ok', 'PF', 'GP', 'EPT_VIOLATION', 'EPT_MISCONFIG', 'PML_FULL', 'SPP_MISS', 'SPP_MISCONFIG', 'BUS'].indexOf(name);
      if (idx >= 0) kinds.add(idx);
    }
    for (const k of [FAULT_NONE, FAULT_PF, FAULT_GP, FAULT_EPT_VIOLATION, FAULT_EPT_MISCONFIG, FAULT_PML_FULL,
      FAULT_SPP_MISS, FAULT_SPP_MISCONFIG, FAULT_BUS]) {
      assert.ok(kinds.has(k), `outcome ${faultName(k)} never occurred (GRANULE_SEED=${SEED})`);
    }
    for (const sub of ['EPT_VIOLATION (SPP)', 'EPT_VIOLATION (final GPA)', 'ok (straddling)']) {
      assert.ok(hist.has(sub), `${sub} never occurred (GRANULE_SEED=${SEED})`);
    }
    assert.ok([...hist.keys()].some((k) => k.startsWith('EPT_VIOLATION (guest paging')), 'no EPT violation on a guest paging access');
    assert.ok((side.get('PML entries logged') ?? 0) > 0, 'nothing was logged to the PML');
  }
});

test.run();
