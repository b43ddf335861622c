#!/usr/bin/env node
// `npm run bench`: every benchmark in turn, each given the same arguments (--json, --quick, ...).
import { spawnSync } from 'node:child_process';

const args = process.argv.slice(2);
let failed = 0;
for (const b of ['bench/sim.bench.ts', 'bench/trace.bench.ts', 'bench/compare.bench.ts', 'bench/hw.bench.ts']) {
  const r = spawnSync(process.execPath, ['--import', 'tsx', b, ...args], { stdio: 'inherit' });
  if (r.status !== 0) { failed = r.status ?? 1; console.error(`${b} failed (exit ${r.status})`); }
  if (!args.includes('--json')) console.log();
}
process.exit(failed);
