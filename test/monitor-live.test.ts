// compare --live: the host baselines replay the page-level row's accesses natively and must find
// its dirty pages in every epoch and end with its bytes; their rows and costs reach the JSON, the
// text table and the HTML report; a recording that disagrees with a baseline is an error.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { join } from 'node:path';
import { compareTrace } from '../src/monitor/compare.ts';
import { LiveRecorder, hostRows, LiveError } from '../src/monitor/live.ts';
import { runMonitor } from '../src/monitor/engine.ts';
import { baselinesLoadError, probeBaselines, FAULTING_MODES, type BaselineMode } from '../src/hw/baselines.ts';
import { formatCompareTable } from '../src/report/table.ts';
import { renderCompareHtml } from '../src/report/html.ts';
import { packageRoot } from '../src/record/toolchain.ts';

const why = baselinesLoadError();
if (why) console.log(`monitor-live.test.ts: skipped on this machine, the host baselines addon is unavailable:\n${why}`);
const liveTest = (name: string, fn: () => Promise<void>) => test(name, async () => { if (!why) await fn(); });
const trace = join(packageRoot(), 'traces', 'kvstore-wasm.grt');

liveTest('every available host baseline finds the page-level row\'s dirty pages, faults and bytes; soft-dirty is left out with its reason', async () => {
  const r = await compareTrace(trace, { epochWrites: 6000, modes: ['gpt-wp'], granularities: [4096], spp: false, live: true });
  const page = r.rows.find((x) => x.mode === 'page')!;
  const probe = probeBaselines();
  const available = (Object.keys(probe) as BaselineMode[]).filter((m) => probe[m].available);
  assert.ok(available.includes('mprotect'), 'mprotect works everywhere');
  const hosts = r.rows.filter((x) => x.host);
  assert.equal(hosts.map((x) => x.mode), available.map((m) => `host-${m}`));
  assert.equal(r.rows.slice(1, 1 + hosts.length), hosts, 'host rows follow the page-level row');
  for (const h of hosts) {
    assert.is(h.checkpointBytes, page.checkpointBytes, `${h.mode}: bytes`);
    assert.is(h.dirtyUnits, page.dirtyUnits, `${h.mode}: pages`);
    h.epochs.forEach((e, i) => assert.is(e.checkpointBytes, page.epochs[i]!.checkpointBytes, `${h.mode}: epoch ${i}`));
    const faulting = FAULTING_MODES.includes(h.mode.slice(5) as BaselineMode);
    assert.is(h.faults, faulting ? page.faults : 0, `${h.mode}: one fault per dirty page where the monitor sees faults`);
    assert.ok(h.host!.runMs > 0 && h.host!.armMs >= 0 && h.host!.copyMs >= 0, `${h.mode}: costs measured`);
    assert.is(h.tlbMisses, null);
  }
  for (const m of Object.keys(probe) as BaselineMode[]) {
    if (!probe[m].available) assert.ok(r.notes.some((n) => n.startsWith(`Host baseline ${m} left out:`)), `note for ${m}`);
  }
  const text = formatCompareTable(r);
  assert.match(text, /Live costs per epoch, in ms/);
  assert.match(text, /host mprotect \(no VM\)\s+[\d,]+\s+[\d.]+/);
  const html = renderCompareHtml(r);
  assert.match(html, /<h2 id="host-heading">Host baselines, live<\/h2>/);
  assert.match(html, /<th scope="row">host mprotect \(no VM\)<\/th>/);
});

liveTest('a recording that disagrees with what a baseline finds is an error naming the mode and the epoch', async () => {
  const rec = new LiveRecorder();
  const r = await runMonitor(trace, { mode: 'gpt-wp', layout: 'packed', granularity: 4096, epochWrites: 6000, onAccess: rec.onAccess, onEpoch: (_e, units, space) => rec.onEpoch(units, space) });
  const frames = Array.from({ length: r.space.framesUsed }, (_, f) => r.space.frameBytes(f));
  await r.space.close();
  assert.ok(rec.epochs.length > 3);
  // As recorded, it holds.
  hostRows(rec, frames.length, (f) => frames[f]!, 1, 1);
  // A page the monitor did not report: the baseline finds it.
  rec.epochs[2]!.dirty.pop();
  assert.throws(() => hostRows(rec, frames.length, (f) => frames[f]!, 1, 1), (e: unknown) => e instanceof LiveError && /host baseline mprotect, epoch 2: found \d+ dirty pages where the page-level monitor found \d+/.test((e as Error).message));
});

test.run();
