// `granule record --wasm`: runs a C program compiled with emscripten (standalone WASI) and
// instrumented with binaryen's `--instrument-memory` under @wasmer/wasi, and writes every load and
// store it makes (exact address, size and value) to a trace. When the module was linked with
// recorder/wasm-malloc.c its malloc family calls the host (import module "granule"), and a
// WasmHeap places the objects and the allocations become alloc/free/realloc events.
//
// binaryen 108's instrumentation: before each load, env.load_ptr(id, bytes, offset, ptr) -> ptr
// (the address is ptr + offset, unsigned), after it env.load_val_<type>(id, value) -> value; before
// each store, env.store_ptr(...) then env.store_val_<type>(id, value) with the value being stored.
// A sub-word access (load8_u into i64, store16 from i32...) has bytes < the type's size: its value
// is the low `bytes` bytes, little-endian. binaryen leaves some accesses out: atomic
// read-modify-write and cmpxchg, bulk memory (memory.copy, memory.fill), and the SIMD lane, splat
// and extending loads; plain v128.load / v128.store get their *_ptr call but no *_val call (there
// is no v128 value import), so they are recorded at the *_ptr call, without a value. The
// emscripten builds used here (no -pthread, -mbulk-memory or -msimd128) contain none of these.
import type { RecordSummaryBase } from './summary.ts';
import { readFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import * as path from 'node:path';
import { init, WASI } from '@wasmer/wasi';
import { EV_READ, EV_WRITE } from '../trace/events.ts';
import type { TraceMeta } from '../trace/events.ts';
import { TraceWriter } from '../trace/writer.ts';
import type { Codec } from '../trace/writer.ts';
import { WasmHeap, HeapError, DEFAULT_ALIGN, WASM_PAGE } from './wasm-heap.ts';
import { ENV_NOOPS, HOST_ALLOC_IMPORTS, INSTRUMENT_IMPORTS, WASI_MODULE } from './wasm-imports.ts';

export const WASM_RECORDER = 'binaryen instrument-memory + @wasmer/wasi 1.2.2 + granule wasm-heap 1';
/** The page granule monitors; the wasm page size is stored beside it as `wasmPageSize`. */
const MONITOR_PAGE = 4096;
const PROGRESS_EVERY = 1 << 20;
/** Bytes of a v128 access, which binaryen instruments without a value call. */
const V128 = 16;

export interface WasmRecordOptions {
  module: string;
  args: string[];
  out: string;
  codec?: Codec;
  /** The program's environment; empty by default so that traces do not depend on the caller's. */
  env?: Record<string, string>;
  /** Called about every million events, from inside the run. */
  onProgress?: (events: number) => void;
  /** Stop the program once the trace holds this many events and keep the trace (`truncated`). */
  maxEvents?: number;
  /** Highest address (exclusive) the host heap may use; default 2^32. */
  heapLimit?: number;
  /** The program's standard input (default: empty). */
  stdin?: Uint8Array;
  /** Where the program's output goes once it has run (default: this process's stdout / stderr). */
  stdout?: (data: Uint8Array) => void;
  stderr?: (data: Uint8Array) => void;
  /** Remarks about the recording (default: printed to stderr). */
  onNote?: (note: string) => void;
}

export interface RecordSummary extends RecordSummaryBase {
  /** The program's exit status; -1 when it was stopped by maxEvents. */
  exitCode: number;
  allocRouted: boolean;
  truncated: boolean;
}

/** A recording that failed; no trace file was left. */
export class WasmRecordError extends Error {
  constructor(readonly file: string, message: string, readonly events = 0, readonly exitCode?: number) {
    super(message);
    this.name = 'WasmRecordError';
  }
}

/**
 * Checks that `mod` carries binaryen's memory instrumentation and imports nothing this recorder
 * cannot provide (WASI functions are checked against @wasmer/wasi when the run starts).
 * `hostMalloc`: the module routes its allocations to the host (recorder/wasm-malloc.c).
 */
export function checkInstrumented(mod: WebAssembly.Module, file: string): { hostMalloc: boolean } {
  const imports = WebAssembly.Module.imports(mod);
  const has = (m: string, n: string) => imports.some((i) => i.module === m && i.name === n);
  if (!has('env', 'load_ptr') && !has('env', 'store_ptr')) {
    throw new WasmRecordError(
      file,
      `${file} has no memory-instrumentation imports (env.load_ptr, env.store_ptr): ` +
        'instrument it with `wasm-opt --instrument-memory IN -o OUT` (binaryen)',
    );
  }
  let hostMalloc = false;
  for (const i of imports) {
    const name = `${i.module}.${i.name}`;
    const cannot = (why: string) => new WasmRecordError(file, `${file} imports ${name} (${i.kind}), which the wasm recorder cannot provide: ${why}`);
    if (i.module === 'env') {
      if (i.kind === 'memory') throw cannot('the module must define and export its memory (link with emcc -sSTANDALONE_WASM)');
      if (i.kind !== 'function' || !(INSTRUMENT_IMPORTS.has(i.name) || ENV_NOOPS.has(i.name))) {
        throw cannot('only binaryen --instrument-memory imports come from env; build with emcc -sSTANDALONE_WASM and without JS library functions');
      }
    } else if (i.module === 'granule') {
      if (i.kind !== 'function' || !HOST_ALLOC_IMPORTS.has(i.name)) {
        throw cannot(`the granule module provides only ${[...HOST_ALLOC_IMPORTS].join(', ')} (recorder/wasm-malloc.c)`);
      }
      hostMalloc = true;
    } else if (i.module !== WASI_MODULE) {
      throw cannot(`only env, granule and ${WASI_MODULE} imports are provided`);
    } else if (i.kind !== 'function') {
      throw cannot('WASI imports must be functions');
    }
  }
  return { hostMalloc };
}

let wasiReady: Promise<void> | undefined;

class ProgramExit {
  constructor(readonly code: number) {}
}
class StopRecording {}

/** Records one run of `o.module` into `o.out`; on any failure no trace is left and a WasmRecordError says why. */
export async function recordWasm(o: WasmRecordOptions): Promise<RecordSummary> {
  const t0 = performance.now();
  const file = o.module;
  const notes: string[] = [];
  const note = (s: string) => {
    notes.push(s);
    (o.onNote ?? ((m: string) => process.stderr.write(`granule: ${m}\n`)))(s);
  };
  if (o.maxEvents !== undefined && !(Number.isInteger(o.maxEvents) && o.maxEvents >= 1)) {
    throw new RangeError(`maxEvents must be a positive integer, got ${o.maxEvents}`);
  }

  let bytes: Buffer;
  try {
    bytes = readFileSync(file);
  } catch (e) {
    throw new WasmRecordError(file, `${file}: cannot read the module: ${(e as Error).message}`);
  }
  let mod: WebAssembly.Module;
  try {
    mod = await WebAssembly.compile(bytes as Uint8Array<ArrayBuffer>);
  } catch (e) {
    throw new WasmRecordError(file, `${file}: not a valid WebAssembly module: ${(e as Error).message}`);
  }
  const { hostMalloc } = checkInstrumented(mod, file);
  const exports = WebAssembly.Module.exports(mod);
  if (!exports.some((e) => e.name === '_start' && e.kind === 'function')) {
    throw new WasmRecordError(file, `${file} exports no _start function: build a program with a main (emcc -sSTANDALONE_WASM)`);
  }
  if (!exports.some((e) => e.name === 'memory' && e.kind === 'memory')) {
    throw new WasmRecordError(file, `${file} exports no memory named "memory" (emcc -sSTANDALONE_WASM exports it)`);
  }
  if (!hostMalloc) {
    note(
      `${file} has no granule.* allocation imports: its own malloc runs inside the module, so its bookkeeping is ` +
        'recorded as program accesses and the trace has no alloc/free events (link recorder/wasm-malloc.c with -sMALLOC=none to route them)',
    );
  }

  wasiReady ??= init();
  await wasiReady;
  // argv[0] is the module's base name, not the path it was found at: the program keeps argv in
  // its memory, so a path-dependent argv[0] would make the same run give different traces.
  const wasi = new WASI({ args: [path.basename(file), ...o.args], env: o.env ?? {} });
  if (o.stdin) wasi.setStdinBuffer(o.stdin);
  const wasiImports = (wasi.getImports(mod) as Record<string, Record<string, unknown>>)[WASI_MODULE] ?? {};
  for (const i of WebAssembly.Module.imports(mod)) {
    if (i.module === WASI_MODULE && typeof wasiImports[i.name] !== 'function') {
      throw new WasmRecordError(file, `${file} imports ${WASI_MODULE}.${i.name}, which @wasmer/wasi 1.2.2 does not provide`);
    }
  }

  // ---- The hot path: two calls per access. One value buffer, views per size, no allocation. ----
  // A load's load_ptr and load_val are adjacent (only the load runs between them), so one slot
  // holds its address. A store's value operand is evaluated between store_ptr and store_val and
  // may itself load or call functions that store (`*p = *q`, `*p = f()`), so pending stores form
  // a stack.
  let sink: TraceWriter | undefined;
  let n = 0; // events written
  let stopAt = 0; // next event count at which checkpoint() runs (progress, maxEvents)
  let loadAddr = 0;
  let loadSize = 0;
  const pending: number[] = []; // address * 16 + size (size <= 8, address < 2^33: exact)
  const val = new Uint8Array(8);
  const dv = new DataView(val.buffer);
  const views: Uint8Array[] = [];
  for (const k of [1, 2, 4, 8]) views[k] = val.subarray(0, k);
  const maxEvents = o.maxEvents ?? Infinity;
  let nextProgress = o.onProgress ? PROGRESS_EVERY : Infinity;
  const checkpoint = () => {
    if (n >= maxEvents) throw new StopRecording();
    if (n >= nextProgress) {
      o.onProgress!(n);
      nextProgress += PROGRESS_EVERY;
    }
    stopAt = Math.min(maxEvents, nextProgress);
  };
  const loadAt = (_id: number, bytes: number, offset: number, ptr: number) => {
    loadAddr = (ptr >>> 0) + (offset >>> 0);
    loadSize = bytes;
    if (bytes === V128) unpaired(EV_READ, loadAddr);
    return ptr;
  };
  const storeAt = (_id: number, bytes: number, offset: number, ptr: number) => {
    if (bytes === V128) unpaired(EV_WRITE, (ptr >>> 0) + (offset >>> 0));
    else pending.push(((ptr >>> 0) + (offset >>> 0)) * 16 + bytes);
    return ptr;
  };
  const unpaired = (kind: typeof EV_READ | typeof EV_WRITE, at: number) => {
    if (n >= stopAt) checkpoint();
    sink!.access(kind, at, V128);
    n++;
  };
  const read = () => {
    if (n >= stopAt) checkpoint();
    sink!.access(EV_READ, loadAddr, loadSize, views[loadSize]);
    n++;
  };
  const write = () => {
    if (n >= stopAt) checkpoint();
    const top = pending.pop()!;
    const size = top % 16;
    sink!.access(EV_WRITE, (top - size) / 16, size, views[size]);
    n++;
  };
  const env: Record<string, (...a: never[]) => unknown> = {
    load_ptr: loadAt,
    store_ptr: storeAt,
    load_val_i32: (_id: number, v: number) => (dv.setInt32(0, v, true), read(), v),
    load_val_i64: (_id: number, v: bigint) => (dv.setBigInt64(0, v, true), read(), v),
    load_val_f32: (_id: number, v: number) => (dv.setFloat32(0, v, true), read(), v),
    load_val_f64: (_id: number, v: number) => (dv.setFloat64(0, v, true), read(), v),
    store_val_i32: (_id: number, v: number) => (dv.setInt32(0, v, true), write(), v),
    store_val_i64: (_id: number, v: bigint) => (dv.setBigInt64(0, v, true), write(), v),
    store_val_f32: (_id: number, v: number) => (dv.setFloat32(0, v, true), write(), v),
    store_val_f64: (_id: number, v: number) => (dv.setFloat64(0, v, true), write(), v),
    emscripten_notify_memory_growth: () => undefined,
    memory_grow_pre: (_id: number, delta: number) => delta,
    memory_grow_post: (_id: number, result: number) => result,
  };

  // ---- Allocation through the host heap; wasm passes i32, so sizes and pointers are made unsigned. ----
  let heap: WasmHeap | undefined;
  let refused = 0;
  const allocated = (p: number, bytes: number, align: number) => {
    if (!p) refused++;
    else {
      if (n >= stopAt) checkpoint();
      sink!.alloc(p, bytes, align);
      n++;
    }
    return p;
  };
  const granule = {
    malloc: (sz: number) => allocated(heap!.malloc(sz >>> 0), sz >>> 0, DEFAULT_ALIGN),
    aligned_alloc: (al: number, sz: number) => allocated(heap!.alignedAlloc(al >>> 0, sz >>> 0), sz >>> 0, al >>> 0 || 1),
    calloc: (cnt: number, sz: number) => allocated(heap!.calloc(cnt >>> 0, sz >>> 0), (cnt >>> 0) * (sz >>> 0), DEFAULT_ALIGN),
    realloc: (ptr: number, sz: number) => {
      const old = ptr >>> 0;
      const p = heap!.realloc(old, sz >>> 0);
      if (old === 0) return allocated(p, sz >>> 0, DEFAULT_ALIGN);
      if (!p) refused++;
      else {
        if (n >= stopAt) checkpoint();
        sink!.realloc(old, p, sz >>> 0);
        n++;
      }
      return p;
    },
    free: (ptr: number) => {
      const p = ptr >>> 0;
      if (p === 0) return;
      if (n >= stopAt) checkpoint();
      heap!.free(p);
      sink!.free(p);
      n++;
    },
  };
  // exit(-1) in C passes -1 as the u32 status; read it back as the int the program wrote.
  const proc_exit = (code: number) => {
    throw new ProgramExit(code | 0);
  };

  let instance: WebAssembly.Instance;
  try {
    instance = await WebAssembly.instantiate(mod, {
      [WASI_MODULE]: { ...wasiImports, proc_exit },
      env,
      granule,
    });
    wasi.instantiate(instance, {});
  } catch (e) {
    throw new WasmRecordError(file, `${file}: cannot instantiate the module: ${(e as Error).message}`);
  }
  const memory = instance.exports.memory as WebAssembly.Memory;
  // Everything the module uses at start (data, stack) lies within its initial memory, so the host
  // heap begins where that memory ends.
  const heapBase = memory.buffer.byteLength;
  if (hostMalloc) heap = new WasmHeap(memory, { base: heapBase, limit: o.heapLimit });

  const meta: TraceMeta = {
    source: 'granule-record-wasm',
    command: [file, ...o.args],
    recorder: WASM_RECORDER,
    pageSize: MONITOR_PAGE,
    wasmPageSize: WASM_PAGE,
    created: new Date().toISOString(),
    moduleSha256: createHash('sha256').update(bytes).digest('hex'),
    allocRouted: hostMalloc,
    ...(hostMalloc ? { heapBase } : {}),
    ...(o.maxEvents !== undefined ? { maxEvents: o.maxEvents } : {}),
  };
  const writer = TraceWriter.create(o.out, meta, { codec: o.codec });
  sink = writer;
  stopAt = Math.min(maxEvents, nextProgress);

  let exitCode = 0;
  let truncated = false;
  let failure: unknown;
  try {
    (instance.exports._start as () => void)();
  } catch (e) {
    if (e instanceof ProgramExit) exitCode = e.code;
    else if (e instanceof StopRecording) truncated = true;
    else failure = e;
  }
  passThrough(wasi, o);

  if (failure !== undefined || (exitCode !== 0 && !truncated)) {
    writer.abort();
    throw runFailure(file, failure, exitCode, n, heap?.refusal);
  }
  if (refused) note(`the host heap refused ${refused} allocation request(s) (the program got NULL); the last: ${heap!.refusal}`);
  if (truncated) {
    note(`stopped ${file} after ${n} events (maxEvents); the trace holds the run up to that point`);
    exitCode = -1;
  }
  let done;
  try {
    done = writer.close();
  } catch (e) {
    throw new WasmRecordError(file, `${file}: the run ended but the trace could not be written: ${(e as Error).message}`, n);
  }
  return {
    out: done.path,
    events: done.events,
    counts: done.counts,
    bytes: done.bytes,
    exitCode,
    seconds: (performance.now() - t0) / 1000,
    allocRouted: hostMalloc,
    truncated,
    notes,
  };
}

function passThrough(wasi: WASI, o: WasmRecordOptions): void {
  const out = wasi.getStdoutBuffer();
  const err = wasi.getStderrBuffer();
  if (out.length) (o.stdout ?? ((b) => process.stdout.write(b)))(out);
  if (err.length) (o.stderr ?? ((b) => process.stderr.write(b)))(err);
}

function runFailure(file: string, e: unknown, exitCode: number, events: number, refusal: string | undefined): WasmRecordError {
  const after = `after ${events} events; no trace written`;
  if (e === undefined) {
    const oom = refusal ? `; the host heap had refused an allocation: ${refusal}` : '';
    return new WasmRecordError(file, `${file}: the program exited with code ${exitCode} ${after}${oom}`, events, exitCode);
  }
  if (e instanceof HeapError) return new WasmRecordError(file, `${file}: ${e.message} (${after})`, events);
  const err = e instanceof Error ? e : new Error(String(e));
  const trap = e instanceof WebAssembly.RuntimeError || (e instanceof RangeError && /call stack/.test(err.message));
  if (trap) return new WasmRecordError(file, `${file}: the program trapped: ${err.message}${trapSite(err)} ${after}`, events);
  return new WasmRecordError(file, `${file}: recording failed: ${err.message} (${after})`, events);
}

/** The innermost wasm frame of a trap, from V8's stack text: function (name or index) and module byte offset. */
function trapSite(e: Error): string {
  const m = /at (?:(\S+) \()?wasm:\/\/wasm\/[^:]*:wasm-function\[(\d+)\]:(0x[0-9a-f]+)/.exec(e.stack ?? '');
  if (!m) return '';
  const fn = m[1] && !/^wasm:/.test(m[1]) ? m[1] : `function ${m[2]}`;
  return ` (in ${fn}, module offset ${m[3]})`;
}
