// The explorer's granularity and alias-plane views, the parts free of the DOM (explorer/sweep-model.ts,
// explorer/planes-model.ts): the sweep's jobs and their order, the row cache, the dirty-unit map
// compacted per epoch, and the sweep's rows against `granule compare`'s (compareTrace) for the
// same trace, modes, unit sizes and epoch length; then the alias planes of one slab frame, and
// what a regroup changes (guest PTE targets) and what it does not (EPT entries, bytes).
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  sweepJobs, jobKey, jobForSelection, orderJobs, JobQueue, RowCache, sessionKey, MapRecorder, partBase, dirtyCounts, epochMask,
  epochMapBytes, partGrid, mapGeometry, partRect, hitTest, countBins, binOf, runSweep, checkTrace, fileProblem, parseEpochWrites,
  SweepError, GRANULARITIES, MAX_FILE_BYTES, progressText, PAGE_KEY, type CompactMap, type SpaceShape, type Selection,
} from '../explorer/sweep-model.ts';
import { compareTrace } from '../src/monitor/compare.ts';
import { runMonitor } from '../src/monitor/engine.ts';
import type { CompareRow } from '../src/report/types.ts';
import { TraceWriter } from '../src/trace/writer.ts';
import { TraceError, EV_WRITE, EV_READ } from '../src/trace/events.ts';
import { packageRoot } from '../src/record/toolchain.ts';
import { PlanesLab, diffSnapshots, diffText, unitsFor, objectBytes, PLANE_CLASSES } from '../explorer/planes-model.ts';
import { guestBits, eptBits } from '../src/walkfmt.ts';
import { groupField, groupOfField } from '../src/mmu.ts';
import { PLANE_STRIDE } from '../src/layout/space.ts';
import { PTE_RW, PTE_SW_WP, PTE_P, EPT_R, EPT_W } from '../src/consts.ts';

const root = packageRoot();
const kvPath = join(root, 'traces', 'kvstore-wasm.grt');
const kvBytes = new Uint8Array(readFileSync(kvPath));
const wasm = new Uint8Array(readFileSync(join(root, 'build', 'sim.release.wasm')));
const tmp = mkdtempSync(join(tmpdir(), 'granule-explorer-sweep-'));
test.after(() => rmSync(tmp, { recursive: true, force: true }));

// ---------------------------------------------------------------------------------------------
// Jobs and their order

test('sweepJobs: page level, SPP, then every spread mode at every unit size and adaptive (34 runs)', () => {
  const jobs = sweepJobs();
  assert.is(jobs.length, 2 + 4 * (GRANULARITIES.length + 1));
  assert.is(PAGE_KEY, 'page/packed/4096');
  assert.is(jobKey(jobs[0]!), PAGE_KEY);
  assert.is(jobKey(jobs[1]!), 'spp/packed/128');
  assert.is(new Set(jobs.map(jobKey)).size, jobs.length, 'keys are unique');
  assert.is(jobKey(jobForSelection({ mode: 'ept-wp', granularity: 256 })), 'ept-wp/spread/256');
  assert.is(jobKey(jobForSelection({ mode: 'page', granularity: 64 })), PAGE_KEY, 'page level ignores the unit');
  assert.is(jobKey(jobForSelection({ mode: 'spp', granularity: 'adaptive' })), 'spp/packed/128');
  assert.is(jobKey(jobForSelection({ mode: 'pml', granularity: 'adaptive' })), 'pml/spread/adaptive');
  assert.throws(() => jobForSelection({ mode: 'gpt-wp', granularity: 96 }), /no configuration gpt-wp\/spread\/96/);
});

test('orderJobs: page level first, then the selection, its mode nearest first, then the other modes', () => {
  const sel: Selection = { mode: 'ept-dirty', granularity: 256 };
  const order = orderJobs(sweepJobs(), sel).map(jobKey);
  assert.is(order.length, sweepJobs().length);
  assert.equal(order.slice(0, 2), [PAGE_KEY, 'ept-dirty/spread/256']);
  assert.equal(new Set(order.slice(2, 4)), new Set(['ept-dirty/spread/512', 'ept-dirty/spread/128']));
  assert.ok(order.slice(2, 2 + 7).every((k) => k.startsWith('ept-dirty/')), 'the rest of the selected mode next');
  assert.equal(new Set(order.slice(9, 12)), new Set(['gpt-wp/spread/256', 'ept-wp/spread/256', 'pml/spread/256']), 'then the selected unit in the other modes');
  // page level selected: it is first, and the rest keeps compare's order among equals
  const p = orderJobs(sweepJobs(), { mode: 'page', granularity: 64 }).map(jobKey);
  assert.is(p[0], PAGE_KEY);
  // a queue reorders what is left
  const q = new JobQueue(orderJobs(sweepJobs(), sel));
  assert.is(jobKey(q.take()!), PAGE_KEY);
  q.prefer({ mode: 'pml', granularity: 'adaptive' });
  assert.is(q.keys()[0], 'pml/spread/adaptive');
  assert.is(q.keys()[1], 'pml/spread/64');
  assert.is(q.size, sweepJobs().length - 1);
});

test('RowCache: rows by trace and epoch length; missing jobs; the oldest session goes first', () => {
  const c = new RowCache(2);
  const s1 = sessionKey('bundled:a', 10000), s2 = sessionKey('bundled:a', 5000), s3 = sessionKey('file:b', 10000);
  assert.is.not(s1, s2);
  const fake = { row: { checkpointBytes: 1 } as CompareRow, map: { parts: new Uint8Array(), slab: new Uint8Array(), epochs: [] } };
  c.put(s1, PAGE_KEY, fake);
  c.put(s1, 'gpt-wp/spread/64', { error: 'boom' });
  assert.ok(c.has(s1, PAGE_KEY));
  assert.not.ok(c.has(s2, PAGE_KEY));
  assert.is(c.missing(s1, sweepJobs()).length, sweepJobs().length - 2);
  c.put(s2, PAGE_KEY, fake);
  c.get(s1, PAGE_KEY); // s1 used again: s2 is now the oldest
  c.put(s3, PAGE_KEY, fake);
  assert.ok(c.has(s1, PAGE_KEY));
  assert.not.ok(c.has(s2, PAGE_KEY));
  assert.ok(c.has(s3, PAGE_KEY));
  assert.equal(c.keys(s1), [PAGE_KEY, 'gpt-wp/spread/64']);
});

// ---------------------------------------------------------------------------------------------
// The map

/** A space of three frames: a slab of 64-byte slots grouped by 4 (256 B units), a plain page, a slab of 1024 B slots. */
const shape: SpaceShape = {
  isSlab: (f) => f === 0 || f === 2,
  unitOf: (f) => (f === 0 ? 256 : f === 1 ? 4096 : 1024),
  groupOf: (f) => (f === 0 ? 4 : 1),
  framesUsed: 4,
};

test('MapRecorder: units become sorted frame*64+part codes; parts per frame; bytes per epoch equal the units\' bytes', () => {
  const r = new MapRecorder(false);
  r.record([], shape);
  r.record([{ frame: 0, offset: 256, len: 256 }, { frame: 1, offset: 0, len: 4096 }, { frame: 0, offset: 0, len: 256 }], shape);
  r.record([{ frame: 2, offset: 1024, len: 1024 }, { frame: 0, offset: 3840, len: 256 }], shape);
  const m = r.finish(shape);
  assert.equal([...m.parts], [64, 1, 4, 1], 'frame 3 (never written) is drawn as one part');
  assert.equal([...m.slab], [1, 0, 1, 0]);
  assert.is(m.epochs.length, 3);
  assert.equal([...m.epochs[1]!], [0, 1, 2, 3, 4, 5, 6, 7, 64]);
  assert.equal([...m.epochs[2]!], [60, 61, 62, 63, 129]);
  assert.is(epochMapBytes(m, 1), 256 + 256 + 4096);
  assert.is(epochMapBytes(m, 2), 1024 + 256);
  const base = partBase(m);
  assert.equal([...base], [0, 64, 65, 69, 70]);
  const counts = dirtyCounts(m, base);
  assert.is(counts.length, 70);
  assert.is(counts[0], 1);
  assert.is(counts[64], 1);
  assert.is(counts[66], 1);
  assert.is(counts[65], 0);
  assert.is(counts.reduce((s, x) => s + x, 0), 9 + 5);
  const mask = epochMask(m, 2, base);
  assert.equal([...mask.subarray(60, 64)], [1, 1, 1, 1]);
  assert.is(mask[66], 1);
  assert.is(mask.reduce((s, x) => s + x, 0), 5);
  // SPP: plain pages in 32 sub-pages of 128 bytes
  const s = new MapRecorder(true);
  s.record([{ frame: 1, offset: 384, len: 128 }], shape);
  const sm = s.finish(shape);
  assert.is(sm.parts[1], 32);
  assert.equal([...sm.epochs[0]!], [64 + 3]);
  assert.is(epochMapBytes(sm, 0), 128);
});

test('map geometry: part grids, cells that fit, rectangles inside their frame, hit tests', () => {
  assert.equal(partGrid(64), { cols: 8, rows: 8 });
  assert.equal(partGrid(32), { cols: 8, rows: 4 });
  assert.equal(partGrid(16), { cols: 4, rows: 4 });
  assert.equal(partGrid(2), { cols: 2, rows: 1 });
  assert.equal(partGrid(1), { cols: 1, rows: 1 });
  const g = mapGeometry(150, 800);
  assert.ok(g.cell >= 6 && g.cell <= 72);
  assert.ok(g.perRow * (g.cell + g.gap) - g.gap <= 800);
  assert.ok(g.height <= 420 + g.cell + g.gap);
  const big = mapGeometry(100_000, 800);
  assert.is(big.cell, 6, 'cells never shrink below 6 px');
  const m: CompactMap = { parts: Uint8Array.from([64, 1, 16]), slab: Uint8Array.from([1, 0, 1]), epochs: [] };
  for (let f = 0; f < 3; f++) {
    let area = 0;
    for (let p = 0; p < m.parts[f]!; p++) {
      const [x, y, w, h] = partRect(g, m.parts[f]!, f, p);
      area += w * h;
      assert.equal(hitTest(g, m, x + w / 2, y + h / 2), { frame: f, part: p }, `frame ${f} part ${p}`);
    }
    assert.is(area, g.cell * g.cell, `frame ${f}: its parts tile its cell`);
  }
  assert.is(hitTest(g, m, g.cell + 0.5 * g.gap, 1), null, 'the gap between frames');
  assert.is(hitTest(g, m, 3 * (g.cell + g.gap) + 1, 1), null, 'past the last frame');
});

test('count legend: never dirty, then doubling ranges ending at the total, every count in one bin', () => {
  assert.equal(countBins(0).map((b) => b.label), ['never dirty']);
  assert.equal(countBins(1).map((b) => b.label), ['never dirty', '1 epoch']);
  const bins = countBins(42);
  assert.equal(bins.map((b) => b.label), ['never dirty', '1 epoch', '2–3 epochs', '4–7 epochs', '8–15 epochs', '16–42 epochs']);
  for (let n = 0; n <= 42; n++) {
    const b = bins[binOf(bins, n)]!;
    assert.ok(n >= b.lo && n <= b.hi, `${n} in ${b.label}`);
  }
});

// ---------------------------------------------------------------------------------------------
// Inputs

test('file checks, epoch length, progress text', () => {
  assert.match(fileProblem('big.grt', MAX_FILE_BYTES + 1)!, /big\.grt is 64\.0 MiB, over the explorer's limit of 64\.0 MiB.*granule compare big\.grt/);
  assert.is(fileProblem('ok.grt', 1000), null);
  assert.match(fileProblem('e.grt', 0)!, /e\.grt is empty/);
  assert.is(parseEpochWrites(' 5,000 '), 5000);
  assert.throws(() => parseEpochWrites('abc'), /'abc' is not a whole number of writes/);
  assert.throws(() => parseEpochWrites('0'), /outside 1 to/);
  assert.throws(() => parseEpochWrites('1.5'), /not a whole number/);
  assert.is(progressText({ done: 2, total: 34, label: 'EPT WP 256 B', epoch: 12, epochs: 43 }), 'computing… (3 of 34): EPT WP 256 B, epoch 12 of 43');
});

test('checkTrace: facts of a good trace; a cut one fails at its offset; one without allocations is refused as compare does', () => {
  const f = checkTrace('kv.grt', kvBytes);
  assert.ok(f.events > 100_000 && f.writes > 10_000);
  assert.throws(() => checkTrace('cut.grt', kvBytes.subarray(0, kvBytes.length - 5000)), (e: unknown) => e instanceof TraceError && /^cut\.grt: offset \d+/.test((e as Error).message));
  assert.throws(() => checkTrace('text.grt', new TextEncoder().encode('hello')), (e: unknown) => e instanceof TraceError && /text\.grt/.test((e as Error).message));
  const t = join(tmp, 'noalloc.grt');
  const w = TraceWriter.create(t, { source: 'hand', pageSize: 4096 });
  for (let i = 0; i < 50; i++) {
    w.access(EV_WRITE, 0x7ffd_0000_0000 + i * 128, 8, new Uint8Array(8).fill(i));
    w.access(EV_READ, 0x7ffd_0000_0000 + i * 64, 8);
  }
  w.close();
  assert.throws(() => checkTrace('noalloc.grt', new Uint8Array(readFileSync(t))), (e: unknown) => e instanceof SweepError && /noalloc\.grt has no allocation events, so its objects cannot be placed in the spread layout/.test((e as Error).message));
});

// ---------------------------------------------------------------------------------------------
// The sweep against granule compare

/** A row without its wall time. */
const timeless = (r: CompareRow) => ({ ...r, seconds: 0 });

test('runSweep: rows equal compareTrace\'s for kvstore-wasm at two unit sizes, and each map adds up to its row', async () => {
  const epochWrites = 5000;
  const granularities = [1024, 64];
  const cmp = await compareTrace({ name: 'kvstore-wasm.grt', bytes: kvBytes }, { modes: ['gpt-wp'], granularities, epochWrites });
  const sel: Selection = { mode: 'gpt-wp', granularity: 64 };
  const jobs = sweepJobs().filter((j) => j.rowMode === 'page' || j.rowMode === 'spp' || (j.rowMode === 'gpt-wp' && granularities.includes(j.granularity as number)));
  const queue = new JobQueue(orderJobs(jobs, sel));
  const rows = new Map<string, CompareRow>();
  const maps = new Map<string, CompactMap>();
  const order: string[] = [];
  let ideal: CompareRow | null = null;
  let progress = 0;
  await runSweep({ name: 'kvstore-wasm.grt', bytes: kvBytes, epochWrites, queue, wasm }, {
    onIdeal: (row) => { ideal = row; },
    onRow: (key, row, map, done, total) => { rows.set(key, row); maps.set(key, map); order.push(key); assert.is(total, 4); assert.is(done, order.length); },
    onProgress: () => { progress++; },
  });
  assert.equal(order.slice(0, 2), [PAGE_KEY, 'gpt-wp/spread/64'], 'page level, then the selection');
  assert.ok(progress >= 4);
  for (const want of cmp.rows) {
    if (want.mode === 'ideal') {
      assert.equal(timeless(ideal!), timeless(want), 'the ideal row');
      continue;
    }
    const key = jobKey(want);
    assert.ok(rows.has(key), `a row for ${key}`);
    assert.equal(timeless(rows.get(key)!), timeless(want), key);
    const map = maps.get(key)!;
    assert.is(map.epochs.length, want.epochs.length, `${key}: one map entry per epoch`);
    want.epochs.forEach((e, i) => assert.is(epochMapBytes(map, i), e.checkpointBytes, `${key} epoch ${i}: the map's bytes are the checkpoint's`));
  }
  assert.is(rows.size, cmp.rows.length - 1);
});

test('runSweep: a run that outgrows its pool is run again with a larger one, and gives the same rows', async () => {
  const epochWrites = 20_000;
  const cmp = await compareTrace({ name: 'kvstore-wasm.grt', bytes: kvBytes }, { modes: ['gpt-wp'], granularities: [64], epochWrites, spp: false });
  const jobs = sweepJobs().filter((j) => j.rowMode === 'page' || (j.rowMode === 'gpt-wp' && j.granularity === 64));
  const rows = new Map<string, CompareRow>();
  // 4 frames hold no run of this trace: every job needs retries (4 -> 16 -> 64 -> ...).
  await runSweep({ name: 'kvstore-wasm.grt', bytes: kvBytes, epochWrites, queue: new JobQueue(jobs), wasm, frames: 4 }, {
    onRow: (key, row) => rows.set(key, row),
    onJobError: (key, message) => assert.unreachable(`${key}: ${message}`),
  });
  for (const want of cmp.rows.filter((r) => r.mode !== 'ideal')) assert.equal(timeless(rows.get(jobKey(want))!), timeless(want), jobKey(want));
});

test('runSweep: a later sweep of the same trace reuses the page-level figures; a failing job is reported and the rest go on', async () => {
  const epochWrites = 20_000;
  const page = await runMonitor({ name: 'kv', bytes: kvBytes }, { mode: 'gpt-wp', layout: 'packed', granularity: 4096, epochWrites });
  await page.space.close();
  const pageBytes = page.epochs.slice(1).reduce((s, e) => s + e.checkpointBytes, 0);
  const idealBytes = page.epochs.slice(1).reduce((s, e) => s + e.idealBytes, 0);
  const jobs = [jobForSelection({ mode: 'pml', granularity: 256 })];
  const rows: CompareRow[] = [];
  const errors: string[] = [];
  await runSweep({ name: 'kv', bytes: kvBytes, epochWrites, queue: new JobQueue([{ ...jobs[0]!, granularity: 96, label: 'bad' }, ...jobs]), base: { idealBytes, pageBytes } }, {
    onRow: (_k, row) => rows.push(row),
    onJobError: (key, message) => errors.push(`${key}: ${message}`),
  });
  assert.is(rows.length, 1);
  assert.is(rows[0]!.overPage, rows[0]!.checkpointBytes / pageBytes);
  assert.equal(errors.length, 1);
  assert.match(errors[0]!, /pml\/spread\/96: bad: granularity 96 is not a power of two/);
  // with neither a baseline nor page level first, the sweep refuses to start
  try {
    await runSweep({ name: 'kv', bytes: kvBytes, epochWrites, queue: new JobQueue(jobs) }, { onRow: () => {} });
    assert.unreachable('no baseline');
  } catch (e) {
    assert.match((e as Error).message, /must run page level first/);
  }
});

// ---------------------------------------------------------------------------------------------
// Alias planes

test('planes: K V pages map the plane pages of their group leaders; every plane page maps the one frame', async () => {
  const lab = await PlanesLab.create({ cls: 256, wasm });
  try {
    const s = lab.snapshot();
    assert.is(s.k, 16);
    assert.is(s.unit, 256);
    assert.is(s.group, 1);
    const hpa = s.epts[0]!.hpa;
    for (const e of s.epts) {
      assert.is(e.gpa, BigInt(e.p * PLANE_STRIDE + s.frame * 4096), `plane ${e.p}: plane(p) + f * 4096`);
      assert.is(e.hpa, hpa, `plane ${e.p}: the same host frame`);
      assert.ok((e.value & EPT_R) !== 0n && (e.value & EPT_W) !== 0n, 'gpt-wp leaves the EPT writable');
    }
    for (const r of s.ptes) {
      assert.is(r.plane, r.j, `fine units: V(f, ${r.j}) maps plane ${r.j}`);
      assert.is(r.target, s.epts[r.j]!.gpa);
      assert.ok((r.value & PTE_P) !== 0n && (r.value & PTE_RW) === 0n && (r.value & PTE_SW_WP) !== 0n, 'armed: write-protected');
    }
    // the objects' bytes are in the frame, slot by slot
    for (let n = 0; n < 16; n++) assert.equal([...s.bytes.subarray(n * 256, n * 256 + 256)], [...objectBytes(n, 256)], `object ${n}`);
    assert.equal(unitsFor(256), [256, 512, 1024, 2048, 4096]);
    assert.equal(PLANE_CLASSES, [64, 128, 256, 512, 1024, 2048]);
  } finally {
    await lab.close();
  }
});

test('planes: regrouping rewrites guest PTEs only; the diff names them, and no EPT entry or byte changes', async () => {
  const lab = await PlanesLab.create({ cls: 64, wasm });
  try {
    const a = lab.snapshot();
    const moved = lab.setUnit(1024);
    const b = lab.snapshot();
    assert.is(b.unit, 1024);
    assert.is(b.group, 16);
    const d = diffSnapshots(a, b);
    assert.is(d.retargeted.length, moved, 'the PTEs setGranularity rewrote');
    assert.is(moved, 64 - 4, 'every slot but the 4 group leaders');
    assert.equal(d.epts, []);
    assert.is(d.bytes, 0);
    for (const r of b.ptes) assert.is(r.plane, r.j - (r.j % 16), `V(f, ${r.j}) maps its leader's plane`);
    // the group field changed in every PTE (leaders too), so every PTE's value changed
    assert.is(d.ptes.length, 64);
    assert.is(groupOfField(b.ptes[5]!.value), 16);
    assert.is(groupOfField(a.ptes[5]!.value), 1);
    assert.ok(guestBits(b.ptes[5]!.value, 1).includes('SW_GROUP=16'), 'the view shows the group');
    assert.not.ok(guestBits(a.ptes[5]!.value, 1).some((x) => x.startsWith('SW_GROUP')), 'a group of one is not shown');
    const t = diffText(d);
    assert.is(t.ept, '0 EPT entries changed');
    assert.is(t.bytes, '0 bytes of the frame changed');
    assert.match(t.ptes, /^64 guest PTEs rewritten: 60 now map another plane page, 4 kept their plane page and changed only the group field/);
    // the same unit again: nothing to do
    assert.is(lab.setUnit(1024), 0);
    assert.equal(diffSnapshots(b, lab.snapshot()), { ptes: [], retargeted: [], epts: [], bytes: 0 });
    // back to one slot per unit
    assert.is(lab.setUnit(64), 60);
    const c = lab.snapshot();
    assert.equal(c.ptes.map((r) => r.plane), c.ptes.map((r) => r.j));
    assert.equal(c.ptes.map((r) => r.value), a.ptes.map((r) => r.value), 'the PTEs are as they were');
    assert.throws(() => lab.setUnit(32), /unit 32 is not one of 64, 128/);
  } finally {
    await lab.close();
  }
});

test('planes: entry decoding (walkfmt, as the view renders it) and the group field', () => {
  const v = 0x8000_0000_1234_5267n | (3n << 52n);
  assert.is(groupOfField(v), 8);
  assert.equal(guestBits(v, 1), ['P', 'RW', 'US', 'A', 'D', 'SW_WP', 'SW_GROUP=8', 'XD']);
  assert.equal(eptBits(0x4000_0000n | 0x37n | 0x300n, 1), ['R', 'W', 'X', 'MT=WB', 'A', 'D']);
  for (const pages of [1, 2, 4, 8, 16, 32, 64, 128]) assert.is(groupOfField(groupField('test', pages) | 0x8000_0000_0000_0267n), pages, `groupOfField inverts groupField (${pages})`);
});

test.run();
