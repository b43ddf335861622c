// The imports a granule-built WebAssembly module may have, in one place: the build check in
// toolchain.ts, the recorder's check in wasm.ts and the tests all use these sets.

export const WASI_MODULE = 'wasi_snapshot_preview1';

/** binaryen --instrument-memory's env imports: one before and one after each load or store. */
export const INSTRUMENT_IMPORTS: ReadonlySet<string> = new Set([
  'load_ptr', 'load_val_i32', 'load_val_i64', 'load_val_f32', 'load_val_f64',
  'store_ptr', 'store_val_i32', 'store_val_i64', 'store_val_f32', 'store_val_f64',
]);

/** Emscripten's standalone runtime may import the first (with its own allocator, whose sbrk grows
 *  memory) to say memory grew; newer binaryen (e.g. the npm build that assemblyscript brings,
 *  version 116+) also instruments memory.grow with the other two. None of them is an access: they
 *  pass their argument through, and the host can ignore them. */
export const ENV_NOOPS: ReadonlySet<string> = new Set(['emscripten_notify_memory_growth', 'memory_grow_pre', 'memory_grow_post']);

/** The "granule" module's functions, which recorder/wasm-malloc.c forwards the malloc family to. */
export const HOST_ALLOC_IMPORTS: ReadonlySet<string> = new Set(['malloc', 'aligned_alloc', 'calloc', 'realloc', 'free']);
