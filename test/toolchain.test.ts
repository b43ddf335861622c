// The C toolchain of the recorders: tool lookup, the valgrind allocation shim and its log protocol
// under lackey, and the bundled workloads built natively and to instrumented wasm (deterministic,
// and printing the same line on both targets). Tests that need a tool skip, saying why, only when
// the tool is absent.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawnSync } from 'node:child_process';
import { chmodSync, closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  BuildError,
  ToolError,
  WORKLOADS,
  buildNative,
  buildPreload,
  buildWasm,
  buildWorkload,
  findProgram,
  packageRoot,
  requireTool,
} from '../src/record/toolchain.ts';
import { ENV_NOOPS, HOST_ALLOC_IMPORTS, INSTRUMENT_IMPORTS, WASI_MODULE } from '../src/record/wasm-imports.ts';

const dir = mkdtempSync(join(tmpdir(), 'granule-toolchain-'));
const root = packageRoot();

function available(tool: 'valgrind' | 'cc' | 'emcc' | 'wasm-opt'): boolean {
  try {
    requireTool(tool, 'this test');
    return true;
  } catch (e) {
    if (!(e instanceof ToolError)) throw e;
    return false;
  }
}
const haveCc = available('cc');
const haveWasm = available('emcc') && available('wasm-opt');
/** The shim needs valgrind's headers too; a ToolError from its build means they are missing. */
function shimBuilds(): boolean {
  try {
    buildPreload();
    return true;
  } catch (e) {
    if (!(e instanceof ToolError)) throw e;
    console.log(`  ${e.message}`);
    return false;
  }
}
const haveValgrind = haveCc && available('valgrind') && shimBuilds();
const skip = (name: string, why: string) => console.log(`  skipped "${name}": ${why}`);
const wasmImports = (file: string) => WebAssembly.Module.imports(new WebAssembly.Module(readFileSync(file)));

function withPath<T>(path: string, f: () => T): T {
  const saved = { PATH: process.env.PATH, CC: process.env.CC };
  process.env.PATH = path;
  delete process.env.CC;
  try {
    return f();
  } finally {
    process.env.PATH = saved.PATH;
    if (saved.CC === undefined) delete process.env.CC;
    else process.env.CC = saved.CC;
  }
}

test('packageRoot is the directory of granule package.json', () => {
  assert.is(JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')).name, 'granule');
  assert.ok(existsSync(join(root, 'recorder', 'preload.c')));
});

test('findProgram finds executables on PATH only', () => {
  const bin = join(dir, 'bin');
  mkdirSync(bin);
  writeFileSync(join(bin, 'granule-tool'), '#!/bin/sh\n');
  chmodSync(join(bin, 'granule-tool'), 0o755);
  writeFileSync(join(bin, 'granule-data'), 'not a program');
  mkdirSync(join(bin, 'granule-dir'));
  withPath(`/nonexistent:${bin}`, () => {
    assert.is(findProgram('granule-tool'), join(bin, 'granule-tool'));
    assert.is(findProgram('granule-data'), undefined);
    assert.is(findProgram('granule-dir'), undefined);
    assert.is(findProgram('sh'), undefined);
  });
  assert.is(findProgram(join(bin, 'granule-tool')), join(bin, 'granule-tool'));
});

test('requireTool names the tool, its purpose and how to install it', () => {
  withPath(join(dir, 'empty'), () => {
    try {
      requireTool('valgrind', 'granule record needs it to trace native programs');
      assert.unreachable('requireTool found valgrind on an empty PATH');
    } catch (e) {
      assert.instance(e, ToolError);
      assert.is((e as Error).message, 'valgrind not found on PATH: granule record needs it to trace native programs. Install it: apt-get install -y valgrind');
    }
    assert.throws(() => requireTool('wasm-opt', 'x'), (e: Error) => e instanceof ToolError && /apt-get install -y binaryen/.test(e.message));
    assert.throws(() => buildNative([join(dir, 'x.c')], join(dir, 'x')), (e: Error) => e instanceof ToolError && /^cc not found on PATH/.test(e.message));
  });
});

test('buildNative surfaces compiler errors and leaves no output', () => {
  if (!haveCc) return skip('buildNative errors', 'no C compiler on PATH');
  const src = join(dir, 'broken.c');
  writeFileSync(src, 'int main(void) { return undeclared_thing; }\n');
  const out = join(dir, 'out', 'broken');
  assert.throws(() => buildNative([src], out), (e: Error) => e instanceof BuildError && /undeclared_thing/.test(e.message) && e.message.includes('broken.c'));
  assert.not.ok(existsSync(out));
  assert.equal(readdirSync(join(dir, 'out')), [], 'a temporary file was left behind');
});

test('buildPreload builds the shim once', () => {
  if (!haveValgrind) return skip('buildPreload', 'valgrind, its headers or a C compiler is missing');
  const so = buildPreload();
  assert.ok(so.endsWith('granule-preload.so'));
  const before = statSync(so).mtimeMs;
  assert.is(buildPreload(), so);
  assert.is(statSync(so).mtimeMs, before, 'rebuilt although preload.c did not change');
  const syms = spawnSync('nm', ['-D', '--defined-only', so], { encoding: 'utf8' });
  if (syms.status === 0)
    for (const f of ['malloc', 'calloc', 'realloc', 'free', 'posix_memalign', 'aligned_alloc', 'memalign', 'valloc', 'pvalloc', 'reallocarray'])
      assert.match(syms.stdout, new RegExp(` T ${f}\\n`), `the shim does not export ${f}`);
});

interface Run { code: number | null; out: string; err: string }

function runNative(exe: string, args: string[], env: NodeJS.ProcessEnv = process.env): Run {
  const r = spawnSync(exe, args, { encoding: 'utf8', env });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

/** "NAME allocs=A frees=F reallocs=R" from a workload's stderr. */
function counts(err: string) {
  const m = /allocs=(\d+) frees=(\d+) reallocs=(\d+)/.exec(err);
  if (!m) throw new Error(`no allocation counts on stderr: ${err}`);
  return { allocs: Number(m[1]), frees: Number(m[2]), reallocs: Number(m[3]) };
}

const SMALL: Record<string, string> = { kvstore: '1500', tcdb: '1000', kmeans: '200', vacation: '300' };

for (const w of WORKLOADS) {
  test(`${w.name}: native build is deterministic and seeded`, () => {
    if (!haveCc) return skip(`${w.name} native`, 'no C compiler on PATH');
    const exe = buildWorkload(w.name, 'native');
    const a = runNative(exe, w.defaultArgs);
    assert.is(a.code, 0, a.err);
    assert.match(a.out, new RegExp(`^${w.name} size=${w.defaultArgs[0]} seed=${w.defaultArgs[1]} .* checksum=[0-9a-f]{16}\\n$`));
    assert.is(runNative(exe, w.defaultArgs).out, a.out, 'a second run printed something else');
    assert.is(runNative(exe, []).out, a.out, 'defaultArgs differ from the program defaults');
    const c = counts(a.err);
    assert.ok(c.allocs > 100, `only ${c.allocs} allocations`);
    assert.is(c.frees, c.allocs, 'the workload should free everything it allocated');
    const other = runNative(exe, [w.defaultArgs[0], '2']);
    assert.is.not(other.out.match(/checksum=\w+/)![0], a.out.match(/checksum=\w+/)![0], 'seed 2 gave the same checksum');
    const bad = runNative(exe, ['lots']);
    assert.is(bad.code, 2);
    assert.match(bad.err, /usage: .*SIZE.*got 'lots'/s);
  });
}

// ---- wasm: run the instrumented module with pass-through instrumentation and a bump allocator ----

let WASIClass: typeof import('node:wasi').WASI | undefined;
async function loadWasi() {
  if (!WASIClass) {
    // node:wasi announces itself as experimental on load; that line is noise in test output.
    const emit = process.emitWarning;
    process.emitWarning = (() => {}) as typeof process.emitWarning;
    try {
      WASIClass = (await import('node:wasi')).WASI;
    } finally {
      process.emitWarning = emit;
    }
  }
  return WASIClass;
}

async function runWasm(file: string, args: string[]) {
  const WASI = await loadWasi();
  const outFile = join(dir, 'wasm.out'), errFile = join(dir, 'wasm.err');
  const stdout = openSync(outFile, 'w'), stderr = openSync(errFile, 'w');
  let memory!: WebAssembly.Memory;
  let top = 0, accesses = 0;
  const host = { allocs: 0, frees: 0, reallocs: 0 };
  const sizes = new Map<number, number>();
  const alloc = (size: number, align = 16) => {
    top ||= memory.buffer.byteLength; // everything below is the module's own
    const p = Math.ceil(top / align) * align;
    top = p + Math.max(size, 1);
    if (top > memory.buffer.byteLength) memory.grow(Math.ceil((top - memory.buffer.byteLength) / 65536));
    sizes.set(p, size);
    return p;
  };
  const env: Record<string, (...a: any[]) => any> = { load_ptr: (_i, _b, _o, p) => p, store_ptr: (_i, _b, _o, p) => p };
  for (const t of ['i32', 'i64', 'f32', 'f64'])
    env[`load_val_${t}`] = env[`store_val_${t}`] = (_id: number, v: unknown) => (accesses++, v);
  const granule = {
    malloc: (size: number) => (host.allocs++, alloc(size)),
    aligned_alloc: (align: number, size: number) => (host.allocs++, alloc(size, align)),
    calloc: (n: number, size: number) => {
      host.allocs++;
      const p = alloc(n * size);
      new Uint8Array(memory.buffer, p, n * size).fill(0);
      return p;
    },
    realloc: (old: number, size: number) => {
      if (old) host.reallocs++;
      else host.allocs++;
      const p = alloc(size);
      if (old) new Uint8Array(memory.buffer).copyWithin(p, old, old + Math.min(sizes.get(old)!, size));
      return p;
    },
    free: (p: number) => {
      if (p) host.frees++;
    },
  };
  try {
    const wasi = new WASI({ version: 'preview1', args: [file, ...args], env: {}, stdout, stderr, returnOnExit: true });
    const mod = await WebAssembly.compile(readFileSync(file));
    const instance = await WebAssembly.instantiate(mod, { wasi_snapshot_preview1: wasi.wasiImport, env, granule } as WebAssembly.Imports);
    memory = instance.exports.memory as WebAssembly.Memory;
    const code = wasi.start(instance);
    return { code, out: readFileSync(outFile, 'utf8'), err: readFileSync(errFile, 'utf8'), host, accesses };
  } finally {
    closeSync(stdout);
    closeSync(stderr);
  }
}

for (const w of WORKLOADS) {
  test(`${w.name}: instrumented wasm build agrees with the native build`, async () => {
    if (!haveWasm) return skip(`${w.name} wasm`, 'emcc or wasm-opt not on PATH');
    const wasm = buildWorkload(w.name, 'wasm');
    const imports = wasmImports(wasm);
    for (const i of imports)
      assert.ok(
        i.module === WASI_MODULE ||
          (i.module === 'granule' && HOST_ALLOC_IMPORTS.has(i.name)) ||
          (i.module === 'env' && (INSTRUMENT_IMPORTS.has(i.name) || ENV_NOOPS.has(i.name))),
        `unexpected import ${i.module}.${i.name}`,
      );
    assert.ok(imports.some((i) => i.module === 'granule' && i.name === 'malloc'));
    assert.ok(imports.some((i) => i.module === 'env' && i.name === 'store_ptr'), 'not instrumented');

    const args = [SMALL[w.name], '7'];
    const a = await runWasm(wasm, args);
    assert.is(a.code, 0, a.err);
    assert.is((await runWasm(wasm, args)).out, a.out, 'a second wasm run printed something else');
    const c = counts(a.err);
    assert.equal(a.host, c, 'the host saw other allocation calls than the workload made');
    assert.ok(a.accesses > 10000, `only ${a.accesses} instrumented accesses`);
    if (haveCc) {
      const native = runNative(buildWorkload(w.name, 'native'), args);
      assert.is(a.out, native.out, 'native and wasm builds disagree');
      assert.equal(counts(native.err), c);
    }
  });
}

test('buildWasm without host malloc or instrumentation links emscripten allocator', () => {
  if (!haveWasm) return skip('buildWasm options', 'emcc or wasm-opt not on PATH');
  const src = join(dir, 'plain.c');
  writeFileSync(src, '#include <stdlib.h>\n#include <stdio.h>\nint main(int c, char **v) { char *volatile p = malloc(c * 10); p[0] = 1; printf("%d\\n", p[0]); free(p); return 0; }\n');
  const out = buildWasm([src], join(dir, 'plain.wasm'), { instrument: false, hostMalloc: false });
  const imports = wasmImports(out).filter((i) => i.module !== WASI_MODULE);
  // emscripten's own sbrk tells the embedder when it grows memory; nothing else may be imported.
  assert.equal(imports, [{ module: 'env', name: 'emscripten_notify_memory_growth', kind: 'function' }]);
});

test('buildWasm names C symbols that nobody defines', () => {
  if (!haveWasm) return skip('buildWasm undefined symbols', 'emcc or wasm-opt not on PATH');
  const src = join(dir, 'undefined.c');
  writeFileSync(src, 'int granule_nowhere(int);\nint main(void) { return granule_nowhere(3); }\n');
  const out = join(dir, 'undefined.wasm');
  assert.throws(() => buildWasm([src], out), (e: Error) => e instanceof BuildError && /env\.granule_nowhere/.test(e.message));
  assert.not.ok(existsSync(out));
});

// ---- valgrind lackey with the shim ----

const LINE = /^\*\*\d+\*\* (granule-preload 1 text 0x[0-9a-f]+ 0x[0-9a-f]+|granule (enter|leave|alloc 0x[1-9a-f][0-9a-f]* \d+ \d+|free 0x[1-9a-f][0-9a-f]*|realloc 0x[1-9a-f][0-9a-f]* 0x[1-9a-f][0-9a-f]* \d+))$/;

/** Runs exe under lackey with the shim; returns the granule reports (prefix stripped) and stderr. */
function underLackey(exe: string, args: string[]) {
  const log = join(dir, 'lackey.log');
  const r = spawnSync('valgrind', ['--tool=lackey', '--trace-mem=yes', `--log-file=${log}`, exe, ...args], {
    encoding: 'utf8',
    env: { ...process.env, LD_PRELOAD: buildPreload() },
  });
  assert.is(r.status, 0, r.stderr);
  const lines = readFileSync(log, 'utf8').split('\n');
  const reports: string[] = [];
  let accesses = 0;
  for (const l of lines) {
    if (l.startsWith('**')) {
      assert.match(l, LINE, 'a report outside the protocol grammar');
      reports.push(l.replace(/^\*\*\d+\*\* /, ''));
    } else if (/^ [LSM] /.test(l)) accesses++;
  }
  return { reports, stderr: r.stderr, stdout: r.stdout, accesses };
}

/** Checks the framing (text lines first, enter followed by exactly one closing line); returns the closing lines. */
function closings(reports: string[]): string[] {
  let i = 0;
  while (reports[i]?.startsWith('granule-preload')) i++;
  assert.ok(i >= 1, 'no granule-preload text line before the first report');
  const out: string[] = [];
  for (; i < reports.length; i += 2) {
    assert.is(reports[i], 'granule enter', `report ${i}`);
    assert.ok(reports[i + 1] && reports[i + 1] !== 'granule enter' && !reports[i + 1].startsWith('granule-preload'), `enter ${i} not closed`);
    out.push(reports[i + 1].replace(/^granule /, ''));
  }
  return out;
}

test('under lackey the shim reports every allocation call exactly', () => {
  if (!haveValgrind) return skip('shim protocol', 'valgrind, its headers or a C compiler is missing');
  const exe = join(dir, 'alloc-calls');
  const r = spawnSync(requireTool('cc', 'test'), ['-O0', '-fno-builtin', '-o', exe, join(root, 'test', 'fixtures', 'alloc-calls.c')], { encoding: 'utf8' });
  assert.is(r.status, 0, r.stderr);
  const run = underLackey(exe, []);
  const expected = run.stderr.split('\n').filter((l) => /^(alloc|free|realloc|leave)/.test(l));
  assert.ok(expected.length >= 25, run.stderr);
  assert.equal(closings(run.reports), expected);
});

test('under lackey the shim reports as many allocations as each workload makes', () => {
  if (!haveValgrind) return skip('shim counts', 'valgrind, its headers or a C compiler is missing');
  for (const w of WORKLOADS) {
    const run = underLackey(buildWorkload(w.name, 'native'), [SMALL[w.name], '3']);
    const c = counts(run.stderr);
    const kinds = closings(run.reports).map((l) => l.split(' ')[0]);
    const n = (k: string) => kinds.filter((x) => x === k).length;
    assert.equal({ allocs: n('alloc'), frees: n('free'), reallocs: n('realloc') }, c, w.name);
    assert.is(n('leave'), 0, `${w.name}: a call that did nothing`);
    assert.ok(run.accesses > 10000, `${w.name}: only ${run.accesses} accesses in the log`);
  }
});

test.after(() => rmSync(dir, { recursive: true, force: true }));

test.run();
