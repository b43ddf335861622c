// `granule compare` on the bundled object-aware key-value traces, as a benchmark: checkpoint-data
// ratios (against page level and the byte ideal, adaptive against the best and worst fixed
// granularity) and the replay time of each mode, measured in one run on this machine.
//
//   npm run bench                      (all benchmarks)
//   node --import tsx bench/compare.bench.ts [--json] [--quick] [TRACE...]
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { compareTrace } from '../src/monitor/compare.ts';
import { formatCompareTable } from '../src/report/table.ts';
import type { CompareResult, CompareRow } from '../src/report/types.ts';
import { machineInfo } from './machine.ts';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const argv = process.argv.slice(2);
const json = argv.includes('--json');
const quick = argv.includes('--quick');
for (const a of argv) if (a.startsWith('--') && !['--json', '--quick'].includes(a)) { console.error(`unknown option ${a}; usage: compare.bench.ts [--json] [--quick] [TRACE...]`); process.exit(2); }
const traces = argv.filter((a) => !a.startsWith('--'));
if (traces.length === 0) traces.push(...(quick ? ['traces/kvstore-wasm.grt'] : ['traces/kvstore-native.grt', 'traces/kvstore-wasm.grt']));

const m = machineInfo(root, ['src']);
const results: { trace: string; result: CompareResult; summary: Record<string, number | string> }[] = [];
for (const t of traces) {
  const r = await compareTrace(path.resolve(root, t), { epochWrites: 10000 });
  const gpt = r.rows.filter((x) => x.mode === 'gpt-wp');
  const fixed = gpt.filter((x) => typeof x.granularity === 'number');
  const by = (g: number | 'adaptive') => gpt.find((x) => x.granularity === g)!;
  const best = fixed.reduce((a, b) => (b.checkpointBytes < a.checkpointBytes ? b : a));
  const worst = fixed.reduce((a, b) => (b.checkpointBytes > a.checkpointBytes ? b : a));
  const spp = r.rows.find((x) => x.mode === 'spp');
  const events = r.trace.events;
  const perMode: Record<string, number> = {};
  for (const row of r.rows.filter((x) => x.seconds > 0)) perMode[row.label] = Math.round(events / row.seconds);
  results.push({
    trace: t, result: r,
    summary: {
      at64OverPage: by(64).overPage, at64OverIdeal: by(64).overIdeal,
      adaptiveBytesOverBestFixed: by('adaptive').checkpointBytes / best.checkpointBytes,
      adaptiveBytesOverWorstFixed: by('adaptive').checkpointBytes / worst.checkpointBytes,
      adaptiveFaultsOverFinest: by('adaptive').faults / by(64).faults,
      bestFixed: String(best.granularity), worstFixed: String(worst.granularity),
      sppOverPage: spp?.overPage ?? NaN,
    },
  });
  if (!json) {
    console.log(`granule compare bench  ${new Date().toISOString()}`);
    console.log(`machine  ${m.cpu}, ${m.cores} cores, ${m.memGiB} GiB, node ${m.node}, ${m.os}${m.git ? `; checkout ${m.git}` : ''}`);
    console.log(formatCompareTable(r));
    console.log();
    const s = results[results.length - 1]!.summary;
    const f = (x: number | string) => (typeof x === 'number' ? x.toFixed(3) : x);
    console.log(`  64 B / page level ${f(s.at64OverPage!)}, 64 B / ideal ${f(s.at64OverIdeal!)}, SPP / page level ${f(s.sppOverPage!)}`);
    console.log(`  adaptive (guest-PT WP): bytes ${f(s.adaptiveBytesOverBestFixed!)} of the best fixed (${s.bestFixed} B) and ${f(s.adaptiveBytesOverWorstFixed!)} of the worst (${s.worstFixed} B); faults ${f(s.adaptiveFaultsOverFinest!)} of 64 B`);
    console.log('  replay rate per run (events/s):');
    for (const row of r.rows.filter((x: CompareRow) => x.seconds > 0)) console.log(`    ${row.label.padEnd(26)} ${(events / row.seconds / 1e6).toFixed(2).padStart(6)} M/s  (${row.seconds.toFixed(2)} s)`);
    console.log();
  }
}
if (json) console.log(JSON.stringify({ bench: 'granule compare', date: new Date().toISOString(), machine: m, results: results.map((x) => ({ trace: x.trace, summary: x.summary, rows: x.result.rows.map(({ epochs: _e, ...row }) => row) })) }));
