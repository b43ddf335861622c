// Builds the C side of the trace recorders: the LD_PRELOAD allocation shim for valgrind runs, the
// bundled workloads, and any C program as a native executable or as an instrumented WASI module.
// Outputs go under build/c/ of the package (or a per-user cache when that is not writable), are
// rebuilt only when a source is newer, and are written to a temporary name and renamed, so a failed
// or concurrent build never leaves a half-written file behind.
import { spawnSync } from 'node:child_process';
import { accessSync, constants, existsSync, mkdirSync, readFileSync, renameSync, rmSync, statSync } from 'node:fs';
import { homedir } from 'node:os';
import { delimiter, dirname, isAbsolute, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ENV_NOOPS, HOST_ALLOC_IMPORTS, WASI_MODULE } from './wasm-imports.ts';

let root: string | undefined;

/** The directory holding granule's package.json, from src/ (tsx) or from the bundle in dist/. */
export function packageRoot(): string {
  if (root) return root;
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const pkg = join(dir, 'package.json');
    if (existsSync(pkg)) {
      try {
        if (JSON.parse(readFileSync(pkg, 'utf8')).name === 'granule') return (root = dir);
      } catch {
        // an unreadable package.json further down is not ours; keep walking up
      }
    }
    const up = dirname(dir);
    if (up === dir) throw new Error(`cannot find granule's package.json above ${fileURLToPath(import.meta.url)}`);
    dir = up;
  }
}

function isExecutableFile(path: string): boolean {
  try {
    if (!statSync(path).isFile()) return false;
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** Looks name up on PATH (or checks it directly when it contains a slash), without a shell. */
export function findProgram(name: string): string | undefined {
  if (name.includes('/')) return isExecutableFile(name) ? name : undefined;
  // `npm run` puts node_modules/.bin first on PATH, and assemblyscript brings binaryen's npm build
  // there (a newer wasm-opt than emscripten's). Tools are looked up in the system's directories
  // first, so `npm test` and a plain `node` run build the same modules; node_modules/.bin is the
  // fallback.
  const dirs = (process.env.PATH ?? '').split(delimiter).filter(Boolean);
  const npmBin = (d: string) => /[\\/]node_modules[\\/]\.bin[\\/]?$/.test(d);
  for (const dir of [...dirs.filter((d) => !npmBin(d)), ...dirs.filter(npmBin)]) {
    const path = join(dir, name);
    if (isExecutableFile(path)) return path;
  }
  return undefined;
}

/** A program granule needs is missing; the message says which, what for, and how to install it. */
export class ToolError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ToolError';
  }
}

/** A build ran and failed; the message carries the tool's own output. */
export class BuildError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'BuildError';
  }
}

type Tool = 'valgrind' | 'cc' | 'emcc' | 'wasm-opt';

const INSTALL: Record<Tool, string> = {
  valgrind: 'apt-get install -y valgrind',
  cc: 'apt-get install -y gcc (or set CC to a C compiler)',
  emcc: 'apt-get install -y emscripten (or install the emsdk and source its emsdk_env.sh)',
  'wasm-opt': 'apt-get install -y binaryen',
};

/** The path of a required tool, or a ToolError naming it, what it is needed for and how to get it. */
export function requireTool(name: Tool, purpose: string): string {
  const candidates = name === 'cc' ? [process.env.CC, 'cc', 'gcc', 'clang'] : [name];
  for (const c of candidates) {
    const path = c ? findProgram(c) : undefined;
    if (path) return path;
  }
  throw new ToolError(`${name} not found on PATH: ${purpose}. Install it: ${INSTALL[name]}`);
}

let outDir: string | undefined;

/** build/c of the package, or ~/.cache/granule/c when the package directory is read-only. */
function buildDir(): string {
  if (outDir) return outDir;
  const local = join(packageRoot(), 'build', 'c');
  try {
    mkdirSync(local, { recursive: true });
    accessSync(local, constants.W_OK);
    return (outDir = local);
  } catch {
    const cache = join(process.env.XDG_CACHE_HOME || join(homedir(), '.cache'), 'granule', 'c');
    mkdirSync(cache, { recursive: true });
    return (outDir = cache);
  }
}

const show = (path: string) => {
  const rel = relative(packageRoot(), path);
  return rel && !rel.startsWith('..') && !isAbsolute(rel) ? rel : path;
};

function mtime(path: string): number {
  try {
    return statSync(path).mtimeMs;
  } catch {
    return -1;
  }
}

/** Whether out exists and is at least as new as every input. */
function upToDate(out: string, inputs: string[]): boolean {
  const t = mtime(out);
  return t >= 0 && inputs.every((i) => mtime(i) <= t);
}

function tempBeside(out: string, suffix = ''): string {
  return `${out}.${process.pid}.${Math.random().toString(36).slice(2, 8)}.tmp${suffix}`;
}

/** Runs a build tool quietly; on failure throws with what it printed. */
function run(tool: string, args: string[], what: string, env?: NodeJS.ProcessEnv): void {
  const r = spawnSync(tool, args, { encoding: 'utf8', env: env ?? process.env, maxBuffer: 64 << 20 });
  if (r.error) throw new BuildError(`${what}: cannot run ${tool}: ${r.error.message}`);
  if (r.status !== 0) {
    const out = `${r.stdout ?? ''}${r.stderr ?? ''}`.trim();
    const how = r.signal ? `was killed by ${r.signal}` : `exited with code ${r.status}`;
    throw new BuildError(`${what}: ${tool} ${how}${out ? `:\n${out}` : ' without output'}`);
  }
}

/** Runs build(tmp) and renames tmp to out; removes tmp if anything fails. */
function atomically(out: string, build: (tmp: string) => void, suffix = ''): string {
  mkdirSync(dirname(out), { recursive: true });
  const tmp = tempBeside(out, suffix);
  try {
    build(tmp);
    renameSync(tmp, out);
  } finally {
    rmSync(tmp, { force: true });
  }
  return out;
}

/** build/c/granule-preload.so, rebuilt when recorder/preload.c is newer or the library is missing. */
export function buildPreload(): string {
  const src = join(packageRoot(), 'recorder', 'preload.c');
  const out = join(buildDir(), 'granule-preload.so');
  if (upToDate(out, [src])) return out;
  const cc = requireTool('cc', 'granule record needs it to build its allocation shim for valgrind runs');
  return atomically(out, (tmp) => {
    try {
      run(cc, ['-O2', '-g', '-fPIC', '-shared', '-fvisibility=hidden', '-o', tmp, src], `building ${show(out)} from ${show(src)}`);
    } catch (e) {
      if (e instanceof BuildError && /valgrind\/valgrind\.h/.test(e.message) && /No such file|not found/.test(e.message))
        throw new ToolError(
          `valgrind's headers (valgrind/valgrind.h) not found: granule record needs them to build its allocation shim. Install it: ${INSTALL.valgrind}`,
        );
      throw e;
    }
  });
}

export interface Workload {
  /** The program is workloads/NAME.c under the package root. */
  name: string;
  /** [SIZE, SEED], the program's own defaults. */
  defaultArgs: string[];
}

/** The bundled C workloads. */
export const WORKLOADS: Workload[] = [
  // memcached-like key-value cache: hash table, slab-class items (48-1000 B), LRU eviction, get/set/append/delete
  { name: 'kvstore', defaultArgs: ['12000', '1'] },
  // Tokyo-Cabinet-like on-heap B+tree: records, realloc-grown leaf arrays, index nodes, puts/gets/deletes/range scans
  { name: 'tcdb', defaultArgs: ['8000', '1'] },
  // STAMP-like k-means: point rows, centres, per-pass accumulator arrays, 3 to 5 clusters
  { name: 'kmeans', defaultArgs: ['1200', '1'] },
  // STAMP-like travel reservations: red-black trees of customers, cars, flights and rooms; reserve/cancel/update
  { name: 'vacation', defaultArgs: ['2000', '1'] },
];

const COMMON_HEADER = 'workloads/common.h';

/** Builds a bundled workload: build/c/native/NAME or build/c/wasm/NAME.wasm (instrumented). */
export function buildWorkload(name: string, target: 'native' | 'wasm'): string {
  const w = WORKLOADS.find((x) => x.name === name);
  if (!w) throw new Error(`unknown workload '${name}': the workloads are ${WORKLOADS.map((x) => x.name).join(', ')}`);
  const src = join(packageRoot(), 'workloads', `${w.name}.c`);
  const header = join(packageRoot(), COMMON_HEADER);
  if (target === 'native') {
    const out = join(buildDir(), 'native', name);
    return upToDate(out, [src, header]) ? out : buildNative([src], out);
  }
  const out = join(buildDir(), 'wasm', `${name}.wasm`);
  return upToDate(out, [src, header, wasmMallocSource()]) ? out : buildWasm([src], out);
}

/** Compiles C sources into a native executable with the system compiler (-O2 -g). */
export function buildNative(sources: string[], out: string): string {
  const cc = requireTool('cc', 'granule needs it to build C programs for native tracing');
  return atomically(out, (tmp) => run(cc, ['-std=gnu11', '-O2', '-g', '-o', tmp, ...sources], `building ${show(out)} from ${sources.map(show).join(' ')}`));
}

function wasmMallocSource(): string {
  return join(packageRoot(), 'recorder', 'wasm-malloc.c');
}

/**
 * What a linked (not yet instrumented) module may import: WASI, granule's allocator, and (only
 * with emscripten's own allocator, whose sbrk grows memory: env.emscripten_notify_memory_growth)
 * the env notifications the host ignores. Anything else is a C symbol nobody defined.
 */
function allowedImport(module: string, name: string, hostMalloc: boolean): boolean {
  if (module === WASI_MODULE) return true;
  if (hostMalloc) return module === 'granule' && HOST_ALLOC_IMPORTS.has(name);
  return module === 'env' && ENV_NOOPS.has(name);
}

/**
 * Compiles C sources to a standalone WASI module with emscripten. With hostMalloc (default) the
 * allocator is recorder/wasm-malloc.c, which forwards to the host's "granule" imports; with
 * instrument (default) binaryen's --instrument-memory then routes every load and store through
 * env.load_* / env.store_* imports.
 */
export function buildWasm(sources: string[], out: string, opts: { instrument?: boolean; hostMalloc?: boolean } = {}): string {
  const instrument = opts.instrument ?? true;
  const hostMalloc = opts.hostMalloc ?? true;
  const emcc = requireTool('emcc', 'granule needs it to build C programs to WebAssembly');
  // emcc runs wasm-opt itself when optimising, so it is needed even without instrumentation.
  const wasmOpt = requireTool('wasm-opt', 'granule needs it (binaryen) to build and instrument WebAssembly');
  const what = `building ${show(out)} from ${sources.map(show).join(' ')}`;
  const args = ['-std=gnu11', '-O2', '-sSTANDALONE_WASM', '-sALLOW_MEMORY_GROWTH=1', '-sMAXIMUM_MEMORY=1GB', '-Wl,--export=__heap_base'];
  if (hostMalloc) {
    // The granule.* imports are named malloc, free...; emscripten's JS-side check mistakes them for
    // undefined C symbols. Real undefined symbols still show up, as imports, in checkImports below.
    args.push('-sMALLOC=none', '-sERROR_ON_UNDEFINED_SYMBOLS=0', wasmMallocSource());
  }
  return atomically(
    out,
    (tmp) => {
      const linked = instrument ? tempBeside(out, '.wasm') : tmp;
      try {
        run(emcc, [...args, ...sources, '-o', linked], what);
        checkImports(linked, what, hostMalloc);
        if (instrument) run(wasmOpt, ['--instrument-memory', linked, '-o', tmp], `${what}: instrumenting`);
      } finally {
        if (linked !== tmp) rmSync(linked, { force: true });
      }
    },
    '.wasm',
  );
}

function checkImports(file: string, what: string, hostMalloc: boolean): void {
  const imports = WebAssembly.Module.imports(new WebAssembly.Module(readFileSync(file)));
  const foreign = imports.filter((i) => !allowedImport(i.module, i.name, hostMalloc));
  if (foreign.length)
    throw new BuildError(
      `${what}: the module needs ${foreign.map((i) => `${i.module}.${i.name}`).join(', ')}, which neither libc nor granule's host provides. Define the missing functions in the program's sources`,
    );
}
