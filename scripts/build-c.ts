// Builds the C side of the recorders: the valgrind allocation shim and every bundled workload,
// native and wasm. Fail-soft for missing toolchains (one line saying what was skipped and why, exit
// 0), so that building granule does not require valgrind or emscripten; a real compile error fails.
//   node --import tsx scripts/build-c.ts
import { BuildError, ToolError, WORKLOADS, buildPreload, buildWorkload, packageRoot } from '../src/record/toolchain.ts';
import { relative } from 'node:path';

const show = (p: string) => relative(packageRoot(), p) || p;

function step(what: string, build: () => string[]): boolean {
  try {
    const outs = build();
    console.log(`build-c: ${what}: ${outs.length === 1 ? show(outs[0]) : `${outs.length} files in ${show(outs[0]).replace(/\/[^/]*$/, '')}`}`);
    return true;
  } catch (e) {
    if (e instanceof ToolError) {
      console.log(`build-c: skipped ${what}: ${e.message}`);
      return true;
    }
    console.error(`build-c: ${what} failed: ${e instanceof BuildError || e instanceof Error ? e.message : String(e)}`);
    return false;
  }
}

let ok = step('allocation shim', () => [buildPreload()]);
ok = step('native workloads', () => WORKLOADS.map((w) => buildWorkload(w.name, 'native'))) && ok;
ok = step('wasm workloads', () => WORKLOADS.map((w) => buildWorkload(w.name, 'wasm'))) && ok;
process.exit(ok ? 0 : 1);
