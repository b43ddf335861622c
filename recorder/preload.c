/*
 * granule-preload: an LD_PRELOAD shim that makes valgrind lackey traces object-aware.
 *
 *   cc -O2 -g -fPIC -shared -fvisibility=hidden -o granule-preload.so recorder/preload.c
 *   LD_PRELOAD=$PWD/granule-preload.so valgrind --tool=lackey --trace-mem=yes --log-file=X prog
 *
 * It wraps the allocation functions, calls glibc's real ones through their __libc_* names (which
 * avoids the dlsym(RTLD_NEXT) bootstrapping problem: dlsym itself allocates), and reports each
 * call through a valgrind client request. Outside valgrind the requests are no-ops and the shim is
 * a thin layer of forwarding calls.
 *
 * How the reports appear in the log. VALGRIND_PRINTF hands the format and a va_list to the
 * valgrind core, which formats it and writes it to the log file as a client message: every line is
 * prefixed with "**PID** " (e.g. "**16930** granule enter"), and a message spanning several lines
 * gets the prefix on each line. The core holds a message until it ends with '\n': a message without
 * one has the next output of lackey appended to the same line, and its remainder later appears
 * without a prefix. So every report below is exactly one complete line. The client request is the
 * last instruction of a lackey superblock and lackey flushes its buffered events at the end of the
 * superblock, so the message appears after every access that precedes it in program order and
 * before every access that follows it. The request's instruction itself (a 19-byte magic sequence
 * on amd64) is logged as an "I" line just before the message.
 *
 * Protocol, version 1 (parsed by granule's lackey importer; change both together):
 *   granule-preload 1 text 0x<start> 0x<end>   each executable PT_LOAD segment of this shim, end
 *                                              exclusive; before any other granule line
 *   granule enter                              entry of an outermost wrapper call
 * then exactly one of, after the real call returns:
 *   granule alloc 0x<ptr> <size> <align>       malloc/calloc/realloc(NULL, n) (align 16),
 *                                              memalign family (requested align), valloc/pvalloc (4096)
 *   granule free 0x<ptr>                       free, or realloc(p, 0) that freed p
 *   granule realloc 0x<old> 0x<new> <size>
 *   granule leave                              nothing happened (free(NULL), a failed call)
 * Hex is lowercase without leading zeros, sizes are decimal. The importer drops the accesses between
 * "enter" and the closing line (allocator internals) and the accesses whose instruction lies in a
 * reported text range (this shim's own code, such as the va_list set-up of each request).
 *
 * The text ranges come from this object's own ELF program headers, found through the linker-defined
 * __ehdr_start, rather than from dl_iterate_phdr/dladdr: those would run libc code outside any
 * enter/leave window, and its accesses would land in the trace. Only the reading of the headers and
 * the set-up of the first request, done by shim code before its range is known, remain (a few dozen
 * accesses, once, in the constructor).
 *
 * Nested calls (glibc or the valgrind glue allocating inside a wrapper) see depth > 0 and stay
 * silent; the depth counter is initial-exec TLS so that reaching it never calls __tls_get_addr.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <link.h>
#include <stddef.h>
#include <stdint.h>
#include <valgrind/valgrind.h>

#define PROTOCOL_VERSION 1
#define MALLOC_ALIGN 16 /* glibc's MALLOC_ALIGNMENT on x86-64 */
#define PAGE 4096

extern void *__libc_malloc(size_t size);
extern void *__libc_calloc(size_t n, size_t size);
extern void *__libc_realloc(void *ptr, size_t size);
extern void __libc_free(void *ptr);
extern void *__libc_memalign(size_t align, size_t size);
extern void *__libc_valloc(size_t size);
extern void *__libc_pvalloc(size_t size);

extern const ElfW(Ehdr) __ehdr_start __attribute__((visibility("hidden")));

#define EXPORT __attribute__((visibility("default")))

static __thread int depth __attribute__((tls_model("initial-exec")));
static int announced; /* set by the first caller that prints the text ranges */

static void announce(void) {
  if (__atomic_load_n(&announced, __ATOMIC_ACQUIRE) || __atomic_exchange_n(&announced, 1, __ATOMIC_ACQ_REL)) return;
  const ElfW(Ehdr) *eh = &__ehdr_start;
  const ElfW(Phdr) *ph = (const ElfW(Phdr) *)((const char *)eh + eh->e_phoff);
  uintptr_t bias = (uintptr_t)eh; /* the segment at file offset 0 maps the ELF header */
  for (int i = 0; i < eh->e_phnum; i++)
    if (ph[i].p_type == PT_LOAD && ph[i].p_offset == 0) bias -= ph[i].p_vaddr;
  for (int i = 0; i < eh->e_phnum; i++)
    if (ph[i].p_type == PT_LOAD && (ph[i].p_flags & PF_X))
      VALGRIND_PRINTF("granule-preload %d text 0x%lx 0x%lx\n", PROTOCOL_VERSION, (unsigned long)(bias + ph[i].p_vaddr),
                      (unsigned long)(bias + ph[i].p_vaddr + ph[i].p_memsz));
}

__attribute__((constructor)) static void init(void) {
  if (RUNNING_ON_VALGRIND) announce();
}

/* Enters a wrapper; returns whether this call reports (outermost, under valgrind). */
static int enter(void) {
  if (depth++ != 0 || !RUNNING_ON_VALGRIND) return 0;
  announce();
  VALGRIND_PRINTF("granule enter\n");
  return 1;
}

static void report_alloc(int on, void *p, size_t size, size_t align) {
  if (!on) return;
  if (p) VALGRIND_PRINTF("granule alloc 0x%lx %lu %lu\n", (unsigned long)p, (unsigned long)size, (unsigned long)align);
  else VALGRIND_PRINTF("granule leave\n");
}

/* realloc semantics shared by realloc and reallocarray. */
static void report_realloc(int on, void *old, void *p, size_t size) {
  if (!on) return;
  if (!old) report_alloc(on, p, size, MALLOC_ALIGN);
  else if (p) VALGRIND_PRINTF("granule realloc 0x%lx 0x%lx %lu\n", (unsigned long)old, (unsigned long)p, (unsigned long)size);
  else if (size == 0) VALGRIND_PRINTF("granule free 0x%lx\n", (unsigned long)old); /* glibc frees on size 0 */
  else VALGRIND_PRINTF("granule leave\n");
}

EXPORT void *malloc(size_t size) {
  int on = enter();
  void *p = __libc_malloc(size);
  report_alloc(on, p, size, MALLOC_ALIGN);
  depth--;
  return p;
}

EXPORT void *calloc(size_t n, size_t size) {
  int on = enter();
  void *p = __libc_calloc(n, size);
  report_alloc(on, p, n * size, MALLOC_ALIGN); /* non-null only when n * size did not overflow */
  depth--;
  return p;
}

EXPORT void *realloc(void *old, size_t size) {
  int on = enter();
  void *p = __libc_realloc(old, size);
  report_realloc(on, old, p, size);
  depth--;
  return p;
}

EXPORT void *reallocarray(void *old, size_t n, size_t size) {
  int on = enter();
  void *p = NULL;
  size_t bytes;
  if (__builtin_mul_overflow(n, size, &bytes)) {
    errno = ENOMEM;
    if (on) VALGRIND_PRINTF("granule leave\n");
  } else {
    p = __libc_realloc(old, bytes);
    report_realloc(on, old, p, bytes);
  }
  depth--;
  return p;
}

EXPORT void free(void *ptr) {
  int on = enter();
  __libc_free(ptr);
  if (on) {
    if (ptr) VALGRIND_PRINTF("granule free 0x%lx\n", (unsigned long)ptr);
    else VALGRIND_PRINTF("granule leave\n");
  }
  depth--;
}

EXPORT void *memalign(size_t align, size_t size) {
  int on = enter();
  void *p = __libc_memalign(align, size);
  report_alloc(on, p, size, align);
  depth--;
  return p;
}

/* glibc 2.36's aligned_alloc is memalign under another name. */
EXPORT void *aligned_alloc(size_t align, size_t size) {
  int on = enter();
  void *p = __libc_memalign(align, size);
  report_alloc(on, p, size, align);
  depth--;
  return p;
}

EXPORT int posix_memalign(void **out, size_t align, size_t size) {
  int on = enter();
  int saved = errno, rc = 0;
  void *p = NULL;
  if (align == 0 || (align & (align - 1)) != 0 || align % sizeof(void *) != 0) rc = EINVAL;
  else if (!(p = __libc_memalign(align, size))) rc = ENOMEM;
  else *out = p;
  errno = saved; /* posix_memalign reports through its result and leaves errno alone */
  report_alloc(on, p, size, align);
  depth--;
  return rc;
}

EXPORT void *valloc(size_t size) {
  int on = enter();
  void *p = __libc_valloc(size);
  report_alloc(on, p, size, PAGE);
  depth--;
  return p;
}

/* pvalloc rounds the size up to whole pages; the program may use all of them. */
EXPORT void *pvalloc(size_t size) {
  int on = enter();
  void *p = __libc_pvalloc(size);
  report_alloc(on, p, (size + PAGE - 1) & ~(size_t)(PAGE - 1), PAGE);
  depth--;
  return p;
}
