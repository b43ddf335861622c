/*
 * granule wasm allocation shim: the allocator of a workload built with emscripten
 * (-sSTANDALONE_WASM -sMALLOC=none). Every allocation is a call to the host, which places the
 * object inside this module's exported linear memory (growing it itself) and records the event.
 * The allocator's own bookkeeping therefore never appears among the instrumented loads and stores,
 * and the host may lay objects out however the replay wants.
 *
 * Host contract, import module "granule" (all i32, wasm32 addresses):
 *   malloc(size) -> ptr                  0 on failure
 *   aligned_alloc(align, size) -> ptr    align is a power of two >= 1
 *   calloc(n, size) -> ptr               the host zeroes the bytes and checks n*size overflow
 *   realloc(ptr, size) -> ptr            ptr may be 0 (acts as malloc); 0 on failure, ptr then intact
 *                                        (size 0 with a live ptr: the host's choice, free or shrink)
 *   free(ptr)                            ptr may be 0 (no-op)
 *
 * Link with -sALLOW_MEMORY_GROWTH=1 and a large -sMAXIMUM_MEMORY, so that the module's memory
 * declares room to grow; nothing in the module grows it (sbrk is not linked with MALLOC=none).
 */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>

#define GRANULE_IMPORT(name) __attribute__((import_module("granule"), import_name(#name)))

GRANULE_IMPORT(malloc) void *granule_host_malloc(size_t size);
GRANULE_IMPORT(aligned_alloc) void *granule_host_aligned_alloc(size_t align, size_t size);
GRANULE_IMPORT(calloc) void *granule_host_calloc(size_t n, size_t size);
GRANULE_IMPORT(realloc) void *granule_host_realloc(void *ptr, size_t size);
GRANULE_IMPORT(free) void granule_host_free(void *ptr);

static int is_pow2(size_t x) { return x != 0 && (x & (x - 1)) == 0; }

void *malloc(size_t size) {
  void *p = granule_host_malloc(size);
  if (!p) errno = ENOMEM;
  return p;
}

void free(void *ptr) { granule_host_free(ptr); }

void *calloc(size_t n, size_t size) {
  void *p = granule_host_calloc(n, size);
  if (!p) errno = ENOMEM;
  return p;
}

void *realloc(void *ptr, size_t size) {
  void *p = granule_host_realloc(ptr, size);
  if (!p && size) errno = ENOMEM;
  return p;
}

void *aligned_alloc(size_t align, size_t size) {
  if (!is_pow2(align)) {
    errno = EINVAL;
    return 0;
  }
  void *p = granule_host_aligned_alloc(align, size);
  if (!p) errno = ENOMEM;
  return p;
}

void *memalign(size_t align, size_t size) { return aligned_alloc(align, size); }

int posix_memalign(void **out, size_t align, size_t size) {
  if (!is_pow2(align) || align % sizeof(void *) != 0) return EINVAL;
  void *p = granule_host_aligned_alloc(align, size);
  if (!p) return ENOMEM;
  *out = p;
  return 0;
}

/* granule's page, not the wasm page: these ask for page-aligned objects in granule's terms. */
void *valloc(size_t size) { return aligned_alloc(4096, size); }
void *pvalloc(size_t size) { return aligned_alloc(4096, (size + 4095) & ~(size_t)4095); }

void *reallocarray(void *ptr, size_t n, size_t size) {
  if (size && n > SIZE_MAX / size) {
    errno = ENOMEM;
    return 0;
  }
  return realloc(ptr, n * size);
}

/* emscripten's libc allocates through these names where dlmalloc would normally provide them
 * (__environ setup, mmap emulation); route them to the host too so every heap object is known. */
void *emscripten_builtin_malloc(size_t size) { return malloc(size); }
void emscripten_builtin_free(void *ptr) { free(ptr); }
void *emscripten_builtin_memalign(size_t align, size_t size) { return aligned_alloc(align, size); }
