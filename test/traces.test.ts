// The bundled traces (traces/MANIFEST.json, written by scripts/record-traces.ts): every one reads
// with the counts it was recorded with and replays, and one is replayed against an independent
// computation of its dirty units.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { traceInfo, TraceReader } from '../src/trace/reader.ts';
import { TraceWriter } from '../src/trace/writer.ts';
import { importLackey } from '../src/trace/lackey.ts';
import { EV_ALLOC, EV_FREE } from '../src/trace/events.ts';
import { replayFile } from '../src/replay/run.ts';
import type { ReplayResult } from '../src/replay/replay.ts';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
interface Entry { name: string; file: string; recorder: 'native' | 'wasm' | 'lackey-log'; command: string[]; events?: number; counts?: number[] }
const manifest: Entry[] = JSON.parse(readFileSync(join(root, 'traces/MANIFEST.json'), 'utf8'));
const tmp = mkdtempSync(join(tmpdir(), 'granule-traces-'));
test.after(() => rmSync(tmp, { recursive: true, force: true }));

/** What must hold for any replay, whatever the trace. */
function invariants(name: string, r: ReplayResult) {
  const t = r.totals;
  const gs = [...r.granularities].sort((a, b) => b - a);
  for (const e of [...r.epochs, { ...t, index: 'totals' }]) {
    const where = `${name} epoch ${e.index}`;
    for (let k = 1; k < gs.length; k++) {
      const big = gs[k - 1]!, small = gs[k]!;
      assert.ok(e.units[small]! >= e.units[big]!, `${where}: more units at ${small} than at ${big}`);
      assert.ok(e.volumeBytes[small]! <= e.volumeBytes[big]!, `${where}: less volume at ${small} than at ${big}`);
    }
    assert.ok(e.idealBytes <= e.volumeBytes[gs[gs.length - 1]!]!, `${where}: ideal within the finest volume`);
    assert.ok(e.writes === 0 || e.idealBytes > 0, `${where}: writes leave dirty bytes`);
    assert.is(e.faults.writeProtect, e.units[4096], `${where}: one write-protect fault per dirty page`);
  }
  assert.is(t.faults.notPresent, t.pagesTouched, `${name}: one not-present fault per page touched`);
  assert.is(t.epochs, Math.max(1, Math.ceil(t.writes / r.epochWrites)), `${name}: epochs of ${r.epochWrites} writes`);
}

test('every trace file in traces/ is in the manifest', () => {
  const files = readdirSync(join(root, 'traces')).filter((f) => f.endsWith('.grt') || f.endsWith('.gz'));
  assert.equal(files.sort(), manifest.map((m) => m.file.replace(/^traces\//, '')).sort());
  assert.ok(manifest.some((m) => m.recorder === 'native') && manifest.some((m) => m.recorder === 'wasm') && manifest.some((m) => m.recorder === 'lackey-log'));
});

for (const m of manifest) {
  test(`${m.name}: reads with its recorded counts and replays`, async () => {
    const file = join(root, m.file);
    if (m.recorder !== 'lackey-log') {
      const info = traceInfo(file);
      assert.is(info.events, m.events);
      assert.equal(info.counts, m.counts);
      assert.is(info.meta.source, m.recorder === 'native' ? 'granule-record-native' : 'granule-record-wasm');
      assert.ok(info.counts[EV_ALLOC]! > 0, 'object-aware: the trace has alloc events');
      // Our own workloads free everything they allocate.
      if (!/sqlite|tchtest|bzip2/.test(m.name)) assert.is(info.counts[EV_FREE], info.counts[EV_ALLOC]);
    }
    const r = await replayFile(file);
    assert.is(r.source.format, m.recorder === 'lackey-log' ? 'lackey' : 'granule');
    assert.ok(r.totals.writes > 0 && r.totals.pagesTouched > 0);
    invariants(m.name, r);
  });
}

test('kvstore-native: replay equals an independent computation from the events', async () => {
  const file = join(root, 'traces/kvstore-native.grt');
  const N = 4000;
  const gs = [4096, 1024, 256, 64, 16];
  const want: { writes: number; ideal: number; units: number[] }[] = [];
  let bytes = new Set<number>();
  let writes = 0;
  let pending = false;
  const close = () => {
    want.push({ writes, ideal: bytes.size, units: gs.map((g) => new Set([...bytes].map((b) => Math.floor(b / g))).size) });
    bytes = new Set(); writes = 0; pending = false;
  };
  const reader = TraceReader.open(file);
  for (const e of reader.events()) {
    pending = true;
    if (e.type === 'write' || e.type === 'modify') {
      for (let b = e.addr; b < e.addr + e.size; b++) bytes.add(b);
      if (++writes === N) close();
    }
  }
  reader.close();
  if (pending) close();
  const r = await replayFile(file, { granularities: gs, epochWrites: N });
  assert.is(r.epochs.length, want.length);
  r.epochs.forEach((e, k) => {
    assert.is(e.writes, want[k]!.writes, `epoch ${k} writes`);
    assert.is(e.idealBytes, want[k]!.ideal, `epoch ${k} ideal`);
    gs.forEach((g, j) => assert.is(e.units[g], want[k]!.units[j], `epoch ${k} units at ${g}`));
  });
});

test('the bundled lackey log replays the same directly and after import', async () => {
  const log = join(root, 'traces/bzip2-lackey.log.gz');
  const out = join(tmp, 'bzip2.grt');
  const w = TraceWriter.create(out, { source: 'lackey', pageSize: 4096 });
  const stats = await importLackey(log, w);
  w.close();
  assert.ok(stats.shimSeen && stats.allocs > 0, 'the log was made with the preload shim');
  const direct = await replayFile(log, { granularities: [4096, 128, 64], epochWrites: 3000 });
  const imported = await replayFile(out, { granularities: [4096, 128, 64], epochWrites: 3000 });
  assert.equal(direct.epochs, imported.epochs);
  assert.equal(direct.totals, imported.totals);
  assert.is(direct.source.lackey!.lines, stats.lines);
});

test.run();
