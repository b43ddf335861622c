/*
 * Standalone test of build/hw/guest.bin on raw KVM ioctls, until the addon can load it: boots the
 * guest, plays batches of loads and stores, checks memory, the load XOR, the in-guest write-protect
 * monitor (dirty ring, PTE bits, ring-full exits), malformed batches and the fault report, then
 * prints timings as lines "figure <name> <value> <unit>".
 *
 *   guest-harness [path/to/guest.bin]     (default: guest.bin beside this executable)
 *
 * Exit status: 0 all checks passed, 1 a check failed, 2 KVM or the image could not be set up.
 * The host side here is what the addon will do; docs/guest.md describes the protocol.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <linux/kvm.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "granule_consts.h"
#include "granule_guest.h"

/* Test data region: DATA_PAGES pages of memslot 1 (GPA DATA_GPA, the first alias plane's place),
 * mapped user RW at DATA_GVA. */
#define DATA_GPA UINT64_C(0x100000000)
#define DATA_GVA UINT64_C(0x4000000000)
#define DATA_PAGES 1024
#define DATA_SIZE (DATA_PAGES * 4096)
#define UNMAPPED_GVA UINT64_C(0x5000000000)
/* Data pages 0..LOW_PAGES-1 are also mapped at GVA 0 up (the lower half is all the trace's). */
#define LOW_GVA UINT64_C(0)
#define LOW_PAGES 8

#define LEAF_SYS (PTE_P | PTE_A | PTE_D)
#define TABLE_FLAGS (PTE_P | PTE_RW | PTE_US | PTE_A)

struct vm {
  int kvm, fd, vcpu;
  struct kvm_run *run;
  uint8_t *sys;  /* the 16 MiB system region, GPA 0 */
  uint8_t *data; /* memslot 1 */
  uint64_t pt_next, pml4;
};

static int failures;

static void die(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fputs("guest-harness: ", stderr);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
  exit(2);
}

static void check(int ok, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fputs(ok ? "ok   " : "FAIL ", stdout);
  vprintf(fmt, ap);
  fputc('\n', stdout);
  va_end(ap);
  if (!ok) failures++;
}

static int xioctl(int fd, unsigned long req, void *arg, const char *name) {
  int r;
  do r = ioctl(fd, req, arg);
  while (r < 0 && errno == EINTR);
  if (r < 0) die("%s failed: %s (%d)", name, strerror(errno), errno);
  return r;
}
#define IOCTL(fd, req, arg) xioctl((fd), (req), (void *)(uintptr_t)(arg), #req)

static double now_ns(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1e9 + t.tv_nsec;
}

static volatile struct gg_control *cb(struct vm *vm) { return (volatile struct gg_control *)(vm->sys + GG_CB_GPA); }
static struct gg_record *records(struct vm *vm) { return (struct gg_record *)(vm->sys + GG_REC_GPA); }
static uint8_t *values(struct vm *vm) { return vm->sys + GG_VAL_GPA; }
static uint64_t *ring(struct vm *vm) { return (uint64_t *)(vm->sys + GG_RING_GPA); }

/* ---- guest page tables, written by the host in the system region ---- */

static uint64_t *table(struct vm *vm, uint64_t gpa) { return (uint64_t *)(vm->sys + gpa); }

static uint64_t alloc_table(struct vm *vm) {
  if (vm->pt_next >= GG_SYS_SIZE) die("out of page-table pages in the system region");
  uint64_t gpa = vm->pt_next;
  vm->pt_next += 4096;
  memset(vm->sys + gpa, 0, 4096);
  return gpa;
}

/* The leaf PTE slot for gva, creating intermediate tables on the way. */
static uint64_t *leaf(struct vm *vm, uint64_t gva) {
  uint64_t t = vm->pml4;
  for (int shift = 39; shift > 12; shift -= 9) {
    uint64_t *e = &table(vm, t)[(gva >> shift) & 511];
    if (!(*e & PTE_P)) *e = alloc_table(vm) | TABLE_FLAGS;
    t = *e & PTE_ADDR;
  }
  return &table(vm, t)[(gva >> 12) & 511];
}

static void map_range(struct vm *vm, uint64_t gva, uint64_t gpa, uint64_t len, uint64_t flags) {
  for (uint64_t o = 0; o < len; o += 4096) *leaf(vm, gva + o) = (gpa + o) | flags;
}

/* System-region GPAs [gpa, gpa + len) at their upper-half GVAs, GG_GVA(gpa). */
static void map_sys(struct vm *vm, uint64_t gpa, uint64_t len, uint64_t flags) { map_range(vm, GG_GVA(gpa), gpa, len, flags); }

static void build_page_tables(struct vm *vm) {
  vm->pt_next = GG_PT_GPA;
  vm->pml4 = alloc_table(vm);
  table(vm, vm->pml4)[GG_PT_SELF_SLOT] = vm->pml4 | PTE_P | PTE_RW | PTE_A;
  const uint64_t U = PTE_US, W = PTE_RW, X = PTE_XD;
  map_sys(vm, GG_CB_GPA, 4096, LEAF_SYS | U | W | X);
  map_sys(vm, GG_IMAGE_GPA, 0x10000, LEAF_SYS);
  map_sys(vm, GG_PLAYER_GPA, 0x10000, LEAF_SYS | U);
  map_sys(vm, GG_TABLES_GPA, 4096, LEAF_SYS | W | X);
  map_sys(vm, GG_KSTACK_GPA, GG_KSTACK_TOP - GG_KSTACK_GPA, LEAF_SYS | W | X);
  map_sys(vm, GG_USTACK_GPA, GG_USTACK_TOP - GG_USTACK_GPA, LEAF_SYS | U | W | X);
  map_sys(vm, GG_SYNC_GPA, GG_RING_GPA - GG_SYNC_GPA, LEAF_SYS | X);
  map_sys(vm, GG_RING_GPA, GG_REC_GPA - GG_RING_GPA, LEAF_SYS | W | X);
  map_sys(vm, GG_REC_GPA, GG_PT_GPA - GG_REC_GPA, LEAF_SYS | U | X);
  /* Page-table pages come last so the mapping covers the tables the loop itself allocates. */
  map_sys(vm, GG_PT_GPA, GG_SYS_SIZE - GG_PT_GPA, LEAF_SYS | W | X);
  map_range(vm, DATA_GVA, DATA_GPA, DATA_SIZE, LEAF_SYS | U | W | X);
  /* The first data pages again at the bottom of the lower half, GVA 0 up, where the system region
   * sat before it moved to the upper half: a trace may use those GVAs now (test_low). */
  map_range(vm, LOW_GVA, DATA_GPA, LOW_PAGES * 4096, LEAF_SYS | U | W | X);
}

static uint64_t *data_pte(struct vm *vm, unsigned page) { return leaf(vm, DATA_GVA + page * UINT64_C(4096)); }

/* Protects every data page: PTE_SW_WP set and R/W clear together (the handler's invariant), then
 * asks for the sync service, since the guest's TLB and a shadow-paging host's shadow entries
 * still hold the old, writable translations. */
static void protect_all(struct vm *vm) {
  uint64_t *list = (uint64_t *)(vm->sys + GG_SYNC_GPA);
  for (unsigned p = 0; p < DATA_PAGES; p++) {
    uint64_t *e = data_pte(vm, p);
    *e = (*e & ~PTE_RW) | PTE_SW_WP;
    list[p] = (uint64_t)((uint8_t *)e - vm->sys);
  }
  cb(vm)->gc_sync_count = DATA_PAGES;
  cb(vm)->gc_sync = 1;
}

/* ---- VM setup ---- */

static void load_image(struct vm *vm, const char *path) {
  int fd = open(path, O_RDONLY);
  if (fd < 0) die("cannot open %s: %s; build it with `node --import tsx scripts/build-guest.ts`", path, strerror(errno));
  ssize_t n = read(fd, vm->sys + GG_IMAGE_GPA, GG_IMAGE_MAX + 1);
  close(fd);
  if (n < 0) die("cannot read %s: %s", path, strerror(errno));
  if (n > GG_IMAGE_MAX) die("%s: larger than %d bytes, the image area (0x%x-0x%x)", path, GG_IMAGE_MAX, GG_IMAGE_GPA, GG_IMAGE_GPA + GG_IMAGE_MAX);
  uint64_t magic;
  uint32_t abi;
  memcpy(&magic, vm->sys + GG_IMAGE_GPA + 8, 8);
  memcpy(&abi, vm->sys + GG_IMAGE_GPA + 16, 4);
  if (n < 24 || magic != GG_MAGIC) die("%s: not a granule guest image (no magic at byte offset 8); rebuild it", path);
  if (abi != GG_ABI_VERSION) die("%s: guest ABI %u at byte offset 16, this harness speaks %u; rebuild both", path, abi, GG_ABI_VERSION);
}

static void set_cpuid(struct vm *vm) {
  for (int n = 64;; n *= 2) {
    struct kvm_cpuid2 *c = calloc(1, sizeof *c + n * sizeof(struct kvm_cpuid_entry2));
    c->nent = n;
    if (ioctl(vm->kvm, KVM_GET_SUPPORTED_CPUID, c) < 0) {
      free(c);
      if (errno == E2BIG && n < 4096) continue;
      die("KVM_GET_SUPPORTED_CPUID failed: %s (%d)", strerror(errno), errno);
    }
    /* Long mode and NX must be in the guest's CPUID or KVM refuses EFER.LME/NXE. */
    IOCTL(vm->vcpu, KVM_SET_CPUID2, c);
    free(c);
    return;
  }
}

static void enter_long_mode(struct vm *vm) {
  struct kvm_sregs s;
  IOCTL(vm->vcpu, KVM_GET_SREGS, &s);
  struct kvm_segment code = {.base = 0, .limit = 0xffffffff, .selector = GG_SEL_KCODE, .type = 11, .present = 1, .dpl = 0, .db = 0, .s = 1, .l = 1, .g = 1};
  struct kvm_segment data = {.base = 0, .limit = 0xffffffff, .selector = GG_SEL_KDATA, .type = 3, .present = 1, .dpl = 0, .db = 1, .s = 1, .l = 0, .g = 1};
  s.cs = code;
  s.ds = s.es = s.fs = s.gs = s.ss = data;
  s.tr = (struct kvm_segment){.base = GG_GVA(GG_TSS_GPA), .limit = GG_TSS_LIMIT, .selector = GG_SEL_TSS, .type = 11, .present = 1};
  s.gdt.base = GG_GVA(GG_GDT_GPA);
  s.gdt.limit = 63;
  s.idt.base = GG_GVA(GG_IDT_GPA);
  s.idt.limit = GG_IDT_VECTORS * 16 - 1;
  s.cr0 = 0x80050033; /* PG AM WP NE ET MP PE */
  s.cr4 = 0x620;      /* OSXMMEXCPT OSFXSR PAE */
  s.efer = 0xd00;     /* NXE LMA LME */
  s.cr3 = vm->pml4;
  IOCTL(vm->vcpu, KVM_SET_SREGS, &s);
  struct kvm_regs r = {0};
  r.rip = GG_GVA(GG_IMAGE_GPA);
  r.rsp = GG_GVA(GG_KSTACK_TOP);
  r.rflags = 2;
  IOCTL(vm->vcpu, KVM_SET_REGS, &r);
}

static void setup(struct vm *vm, const char *image) {
  memset(vm, 0, sizeof *vm);
  vm->kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
  if (vm->kvm < 0) die("cannot open /dev/kvm: %s (%d)", strerror(errno), errno);
  if (ioctl(vm->kvm, KVM_GET_API_VERSION, 0) != KVM_API_VERSION) die("unexpected KVM API version");
  vm->fd = IOCTL(vm->kvm, KVM_CREATE_VM, 0);
  vm->sys = mmap(NULL, GG_SYS_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  vm->data = mmap(NULL, DATA_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (vm->sys == MAP_FAILED || vm->data == MAP_FAILED) die("mmap failed: %s", strerror(errno));
  struct kvm_userspace_memory_region sys = {.slot = 0, .guest_phys_addr = 0, .memory_size = GG_SYS_SIZE, .userspace_addr = (uintptr_t)vm->sys};
  struct kvm_userspace_memory_region dat = {.slot = 1, .guest_phys_addr = DATA_GPA, .memory_size = DATA_SIZE, .userspace_addr = (uintptr_t)vm->data};
  IOCTL(vm->fd, KVM_SET_USER_MEMORY_REGION, &sys);
  IOCTL(vm->fd, KVM_SET_USER_MEMORY_REGION, &dat);
  vm->vcpu = IOCTL(vm->fd, KVM_CREATE_VCPU, 0);
  int size = IOCTL(vm->kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
  vm->run = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, vm->vcpu, 0);
  if (vm->run == MAP_FAILED) die("mmap of the vCPU run area failed: %s", strerror(errno));
  set_cpuid(vm);
  load_image(vm, image);
  build_page_tables(vm);
  enter_long_mode(vm);
}

static const char *exit_name(unsigned r) {
  switch (r) {
  case KVM_EXIT_HLT: return "HLT";
  case KVM_EXIT_MMIO: return "MMIO";
  case KVM_EXIT_IO: return "IO";
  case KVM_EXIT_SHUTDOWN: return "SHUTDOWN (triple fault)";
  case KVM_EXIT_FAIL_ENTRY: return "FAIL_ENTRY";
  case KVM_EXIT_INTERNAL_ERROR: return "INTERNAL_ERROR";
  default: return "other";
  }
}

/* Runs the vCPU to its next granule exit and returns the code; any other exit is fatal. */
static unsigned run(struct vm *vm) {
  for (;;) {
    if (ioctl(vm->vcpu, KVM_RUN, 0) < 0) {
      if (errno == EINTR || errno == EAGAIN) continue;
      die("KVM_RUN failed: %s (%d)", strerror(errno), errno);
    }
    struct kvm_run *r = vm->run;
    if (r->exit_reason == KVM_EXIT_IO && r->io.port == GG_EXIT_PORT && r->io.direction == KVM_EXIT_IO_OUT && r->io.size == 4) {
      uint32_t code;
      memcpy(&code, (uint8_t *)r + r->io.data_offset, 4);
      return code;
    }
    struct kvm_regs regs;
    ioctl(vm->vcpu, KVM_GET_REGS, &regs);
    die("unexpected exit %u (%s) at rip 0x%llx%s", r->exit_reason, exit_name(r->exit_reason), regs.rip,
        r->exit_reason == KVM_EXIT_IO ? " (port I/O other than the exit port)" : "");
  }
}

static void report_fault(struct vm *vm) {
  volatile struct gg_control *c = cb(vm);
  printf("     guest fault: vector %llu, error code 0x%llx, CR2 0x%llx, rip 0x%llx, cs 0x%llx, rflags 0x%llx, rsp 0x%llx, record %llu\n",
         (unsigned long long)c->gc_fault_vector, (unsigned long long)c->gc_fault_error, (unsigned long long)c->gc_fault_cr2,
         (unsigned long long)c->gc_fault_rip, (unsigned long long)c->gc_fault_cs, (unsigned long long)c->gc_fault_rflags,
         (unsigned long long)c->gc_fault_rsp, (unsigned long long)c->gc_next);
}

/* ---- batches ---- */

struct batch {
  struct vm *vm;
  uint32_t n, vals;
  uint8_t *expect; /* the data region as it must be after the batch */
  uint64_t xor;    /* expected gc_load_xor */
};

static uint64_t rng = 0x9e3779b97f4a7c15;
static uint8_t rand8(void) {
  rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
  return (uint8_t)rng;
}

static void batch_begin(struct batch *b, struct vm *vm) {
  b->vm = vm;
  b->n = 0;
  b->vals = 0;
  b->xor = 0;
  if (!b->expect) b->expect = malloc(DATA_SIZE);
  memcpy(b->expect, vm->data, DATA_SIZE);
}

static struct gg_record *add(struct batch *b, uint64_t gva, uint8_t kind, uint8_t size) {
  struct gg_record *r = &records(b->vm)[b->n++];
  *r = (struct gg_record){.gva = gva, .kind = kind | ACC_USER, .size = size};
  return r;
}

/* A store of `size` random bytes (or the fill byte) at data offset `off`, through GVA `gva`. */
static void store_via(struct batch *b, uint64_t gva, uint64_t off, uint8_t size, int with_value) {
  struct gg_record *r = add(b, gva, ACC_WRITE | (with_value ? ACC_VALUE : 0), size);
  for (unsigned k = 0; k < size; k++) {
    uint8_t v = with_value ? rand8() : GG_FILL_BYTE;
    if (with_value) values(b->vm)[b->vals + k] = v;
    b->expect[off + k] = v;
  }
  if (with_value) r->value = b->vals, b->vals += size;
}

static void store(struct batch *b, uint64_t off, uint8_t size, int with_value) { store_via(b, DATA_GVA + off, off, size, with_value); }

static uint64_t chunk(const uint8_t *p, unsigned n) {
  uint64_t v = 0;
  memcpy(&v, p, n);
  return v;
}

/* A load through GVA `gva` of data offset `off`, and its contribution to gc_load_xor per the
 * chunking rule of granule_guest.h. */
static void load_via(struct batch *b, uint64_t gva, uint64_t off, uint8_t size, uint8_t kind) {
  add(b, gva, kind, size);
  const uint8_t *p = b->expect + off;
  if (kind == ACC_FETCH) b->xor ^= p[0];
  else if (size == 1 || size == 2 || size == 4 || size == 8) b->xor ^= chunk(p, size);
  else if (size % 8 == 0)
    for (unsigned k = 0; k < size; k += 8) b->xor ^= chunk(p + k, 8);
  else
    for (unsigned k = 0; k < size; k++) b->xor ^= p[k];
}

static void load(struct batch *b, uint64_t off, uint8_t size, uint8_t kind) { load_via(b, DATA_GVA + off, off, size, kind); }

static unsigned play(struct vm *vm, uint64_t start, uint64_t count, uint64_t repeat) {
  cb(vm)->gc_start = start;
  cb(vm)->gc_count = count;
  cb(vm)->gc_repeat = repeat;
  return run(vm);
}

static unsigned batch_run(struct batch *b) { return play(b->vm, 0, b->n, 1); }

static void check_batch_done(struct batch *b, unsigned code, const char *what) {
  volatile struct gg_control *c = cb(b->vm);
  check(code == GG_EXIT_BATCH_DONE, "%s: exit %u (want %u, batch done)", what, code, GG_EXIT_BATCH_DONE);
  if (code == GG_EXIT_FAULT) report_fault(b->vm);
  check(c->gc_next == b->n, "%s: gc_next %llu == %u records", what, (unsigned long long)c->gc_next, b->n);
  check(c->gc_load_xor == b->xor, "%s: gc_load_xor 0x%llx == 0x%llx", what, (unsigned long long)c->gc_load_xor, (unsigned long long)b->xor);
  size_t bad = DATA_SIZE;
  for (size_t i = 0; i < DATA_SIZE; i++)
    if (b->vm->data[i] != b->expect[i]) {
      bad = i;
      break;
    }
  check(bad == DATA_SIZE, "%s: data region holds exactly the stored bytes%s", what, bad == DATA_SIZE ? "" : " (first difference below)");
  if (bad != DATA_SIZE) printf("     data offset 0x%zx: 0x%02x, want 0x%02x\n", bad, b->vm->data[bad], b->expect[bad]);
}

static int cmp_u64(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return x < y ? -1 : x > y;
}

/* Checks that the ring's entries [0, head) are exactly the given data pages, each once. */
static void check_ring(struct vm *vm, const uint64_t *got, size_t ngot, const unsigned *pages, size_t npages, const char *what) {
  uint64_t *want = malloc(npages * 8), *have = malloc((ngot + 1) * 8);
  for (size_t i = 0; i < npages; i++) want[i] = DATA_GVA + pages[i] * UINT64_C(4096);
  memcpy(have, got, ngot * 8);
  qsort(want, npages, 8, cmp_u64);
  qsort(have, ngot, 8, cmp_u64);
  int same = ngot == npages && memcmp(want, have, ngot * 8) == 0;
  check(same, "%s: dirty ring lists the %zu pages written, each once (got %zu entries)", what, npages, ngot);
  if (!same)
    for (size_t i = 0; i < ngot; i++) printf("     ring[%zu] = 0x%llx\n", i, (unsigned long long)got[i]);
  (void)vm;
  free(want);
  free(have);
}

/* ---- the checks ---- */

static void test_boot(struct vm *vm) {
  double t = now_ns();
  unsigned code = run(vm);
  t = now_ns() - t;
  check(code == GG_EXIT_INIT, "boot: first exit is %u (want %u, init done)", code, GG_EXIT_INIT);
  if (code == GG_EXIT_FAULT) report_fault(vm);
  check(cb(vm)->gc_magic == GG_MAGIC && cb(vm)->gc_abi == GG_ABI_VERSION, "boot: control block carries the magic and ABI %d", GG_ABI_VERSION);
  printf("figure boot_us %.1f us\n", t / 1e3);
}

static void test_play(struct vm *vm, struct batch *b) {
  static const uint8_t sizes[] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 12, 13, 15, 16, 17, 24, 31, 32, 40, 48, 56, 63, 64};
  batch_begin(b, vm);
  uint64_t off = 64 * 4096 + 3, offs[sizeof sizes];
  for (unsigned i = 0; i < sizeof sizes; i++) offs[i] = off, store(b, off, sizes[i], 1), off += sizes[i] + 5;
  store(b, 70 * 4096 + 100, 16, 0);
  store(b, 70 * 4096 + 200, 3, 0);
  store(b, 71 * 4096 + 4092, 8, 1);   /* straddles a page boundary */
  store(b, 72 * 4096 + 4064, 64, 1);  /* ends exactly at a page boundary */
  store(b, 64 * 4096 + 10, 4, 1);     /* overwrites part of an earlier store */
  for (unsigned i = 0; i < sizeof sizes; i++) load(b, offs[i], sizes[i], ACC_READ);
  load(b, 70 * 4096 + 100, 16, ACC_READ);
  load(b, 71 * 4096 + 4090, 12, ACC_READ);
  load(b, 71 * 4096 + 4092, 8, ACC_READ);
  load(b, 64 * 4096 + 3, 64, ACC_FETCH);
  load(b, 900 * 4096, 8, ACC_READ);   /* never written: zero */
  check_batch_done(b, batch_run(b), "play");
  /* The same records again: stores are idempotent, so memory and the XOR must come out the same. */
  check_batch_done(b, batch_run(b), "replay");
  /* A batch that starts mid-buffer. */
  uint64_t start = b->n;
  struct gg_record *r = &records(vm)[start];
  *r = (struct gg_record){.gva = DATA_GVA + 80 * 4096, .kind = ACC_WRITE | ACC_USER, .size = 2};
  unsigned code = play(vm, start, 1, 1);
  check(code == GG_EXIT_BATCH_DONE && cb(vm)->gc_next == start + 1 && vm->data[80 * 4096] == GG_FILL_BYTE && vm->data[80 * 4096 + 1] == GG_FILL_BYTE &&
            vm->data[80 * 4096 + 2] == 0,
        "offset batch: [%llu, +1) stores 2 fill bytes", (unsigned long long)start);
}

/* Trace GVAs at the bottom of the lower half, where the system region used to be identity-mapped:
 * GVA 0 itself, the old control block's page (a trace store there must not reach the real one, now
 * in the upper half) and a straddle between two low pages. */
static void test_low(struct vm *vm, struct batch *b) {
  batch_begin(b, vm);
  store_via(b, LOW_GVA, 0, 8, 1);
  store_via(b, LOW_GVA + GG_CB_GPA + GC_RING_HEAD, GG_CB_GPA + GC_RING_HEAD, 8, 1);
  store_via(b, LOW_GVA + 0x15cc, 0x15cc, 4, 1);
  store_via(b, LOW_GVA + 0x2ffc, 0x2ffc, 8, 0);
  load_via(b, LOW_GVA + 0x15c8, 0x15c8, 16, ACC_READ);
  load_via(b, DATA_GVA, 0, 8, ACC_READ); /* the same frame through its other GVA */
  load_via(b, LOW_GVA + 0x2ffc, 0x2ffc, 8, ACC_READ);
  check_batch_done(b, batch_run(b), "low GVAs");
  check(cb(vm)->gc_ring_head == 0, "low GVAs: a trace store to GVA 0x%x leaves the control block alone", GG_CB_GPA + GC_RING_HEAD);
}

static void test_monitor(struct vm *vm, struct batch *b) {
  volatile struct gg_control *c = cb(vm);
  protect_all(vm);
  c->gc_ring_head = 0;
  c->gc_ring_cap = GG_RING_MAX;
  c->gc_pf_count = 0;
  batch_begin(b, vm);
  /* Pages 64, 70 and 71 were written by test_play: their writable translations may still be
   * cached, so these faults also show that protect_all's PTE edits reach the guest. */
  static const unsigned pages[] = {0, 1, 5, 17, 64, 70, 71, 100, 200, 201, 511, 1023};
  enum { NPAGES = sizeof pages / sizeof pages[0] };
  store(b, 0 * 4096 + 8, 8, 1);
  store(b, 5 * 4096 + 16, 4, 1);
  store(b, 1 * 4096 + 4000, 64, 1);
  store(b, 5 * 4096 + 100, 1, 1); /* second and third stores to page 5: no new fault */
  store(b, 5 * 4096 + 4095, 1, 0);
  store(b, 17 * 4096, 2, 1);
  store(b, 64 * 4096 + 3, 8, 1);
  store(b, 70 * 4096 + 4095, 2, 1); /* straddles 70/71 */
  store(b, 100 * 4096 + 7, 13, 1);
  store(b, 200 * 4096 + 4092, 8, 1); /* straddles 200/201: two faults */
  store(b, 511 * 4096 + 24, 32, 1);
  store(b, 1023 * 4096 + 4088, 8, 1);
  store(b, 1 * 4096 + 8, 8, 0);
  load(b, 300 * 4096, 8, ACC_READ); /* reads of protected pages do not fault */
  load(b, 5 * 4096 + 16, 4, ACC_READ);
  check_batch_done(b, batch_run(b), "monitor");
  check(c->gc_ring_head == NPAGES && c->gc_pf_count == NPAGES, "monitor: %d faults resolved, %d ring entries (head %llu, count %llu)", NPAGES,
        NPAGES, (unsigned long long)c->gc_ring_head, (unsigned long long)c->gc_pf_count);
  check_ring(vm, ring(vm), c->gc_ring_head, pages, NPAGES, "monitor");
  unsigned wrong = 0;
  for (unsigned p = 0, k = 0; p < DATA_PAGES; p++) {
    int written = k < NPAGES && pages[k] == p;
    if (written) k++;
    uint64_t e = *data_pte(vm, p);
    int want_rw = written;
    if (!!(e & PTE_RW) != want_rw || !!(e & PTE_SW_WP) == want_rw) wrong++;
  }
  check(wrong == 0, "monitor: written pages are RW without PTE_SW_WP, the other %d still protected (%u wrong PTEs)", DATA_PAGES - NPAGES, wrong);
}

static void test_ring_full(struct vm *vm, struct batch *b) {
  volatile struct gg_control *c = cb(vm);
  protect_all(vm);
  c->gc_ring_head = 0;
  c->gc_ring_cap = 4;
  c->gc_pf_count = 0;
  batch_begin(b, vm);
  /* Half of them were unprotected (and written) by test_monitor: re-protection must take. */
  static const unsigned pages[10] = {3, 0, 40, 5, 77, 100, 114, 511, 151, 1023};
  for (unsigned i = 0; i < 10; i++) store(b, pages[i] * 4096 + 64, 8, 1);
  uint64_t drained[16];
  size_t nd = 0;
  unsigned code, fulls = 0;
  uint64_t nexts[4] = {0};
  /* Ring full: drain [0, head), reset the head, resume; the handler then returns to the store. */
  for (code = batch_run(b); code == GG_EXIT_RING_FULL && fulls < 4; code = run(vm)) {
    nexts[fulls++] = c->gc_next;
    for (uint64_t i = 0; i < c->gc_ring_head && nd < 16; i++) drained[nd++] = ring(vm)[i];
    c->gc_ring_head = 0;
  }
  for (uint64_t i = 0; i < c->gc_ring_head && nd < 16; i++) drained[nd++] = ring(vm)[i];
  check(fulls == 2 && nexts[0] == 3 && nexts[1] == 7, "ring full: cap 4, 10 faults -> 2 ring-full exits at records 3 and 7 (got %u at %llu, %llu)", fulls,
        (unsigned long long)nexts[0], (unsigned long long)nexts[1]);
  check_batch_done(b, code, "ring full");
  check_ring(vm, drained, nd, pages, 10, "ring full");
  int in_order = nd == 10;
  for (unsigned i = 0; in_order && i < 10; i++) in_order = drained[i] == DATA_GVA + pages[i] * UINT64_C(4096);
  check(in_order, "ring full: entries come in fault order across drains");
  c->gc_ring_cap = GG_RING_MAX;
}

static void test_bad_batch(struct vm *vm) {
  volatile struct gg_control *c = cb(vm);
  unsigned code = play(vm, GG_REC_MAX - 1, 2, 1);
  check(code == GG_EXIT_BAD_BATCH, "bad batch: start + count beyond GG_REC_MAX exits %u (want %u)", code, GG_EXIT_BAD_BATCH);
  struct gg_record *r = records(vm);
  r[0] = (struct gg_record){.gva = DATA_GVA, .kind = ACC_READ | ACC_USER, .size = 8};
  r[1] = (struct gg_record){.gva = DATA_GVA, .kind = ACC_READ | ACC_USER, .size = 65};
  code = play(vm, 0, 2, 1);
  check(code == GG_EXIT_BAD_BATCH && c->gc_next == 1, "bad batch: size 65 at record 1 exits %u with gc_next %llu", code, (unsigned long long)c->gc_next);
  r[1] = (struct gg_record){.gva = DATA_GVA, .kind = ACC_WRITE | ACC_VALUE | ACC_USER, .size = 8, .value = GG_VAL_SIZE - 4};
  code = play(vm, 0, 2, 1);
  check(code == GG_EXIT_BAD_BATCH && c->gc_next == 1, "bad batch: value bytes past the value area exit %u with gc_next %llu", code, (unsigned long long)c->gc_next);
  r[1].value = 0;
  code = play(vm, 0, 2, 1);
  check(code == GG_EXIT_BATCH_DONE, "bad batch: the player recovers once the batch is fixed (exit %u)", code);
}

/* Runs `count` records (already written) `repeat` times and returns ns per access. */
static double time_accesses(struct vm *vm, uint64_t count, uint64_t repeat) {
  double t = now_ns();
  unsigned code = play(vm, 0, count, repeat);
  t = now_ns() - t;
  if (code != GG_EXIT_BATCH_DONE) die("timing batch ended with exit %u", code);
  return t / (double)(count * repeat);
}

static void timings(struct vm *vm) {
  volatile struct gg_control *c = cb(vm);
  struct gg_record *r = records(vm);
  /* Loads and stores: 8 bytes every 16 over the whole (writable) data region, many passes in one
   * KVM_RUN, so the one exit is noise. */
  const uint64_t n = DATA_SIZE / 16, passes = 16;
  for (uint64_t i = 0; i < n; i++) r[i] = (struct gg_record){.gva = DATA_GVA + i * 16, .kind = ACC_READ | ACC_USER, .size = 8};
  time_accesses(vm, n, 1); /* warm the guest TLB and the host's shadow entries */
  double load_ns = time_accesses(vm, n, passes);
  for (uint64_t i = 0; i < n; i++) r[i] = (struct gg_record){.gva = DATA_GVA + i * 16, .kind = ACC_WRITE | ACC_VALUE | ACC_USER, .size = 8, .value = (uint32_t)(i * 8 % GG_VAL_SIZE)};
  time_accesses(vm, n, 1);
  double store_ns = time_accesses(vm, n, passes);
  printf("figure load_ns %.3f ns/access (%llu 8-byte loads in one KVM_RUN)\n", load_ns, (unsigned long long)(n * passes));
  printf("figure store_ns %.3f ns/access (%llu 8-byte stores in one KVM_RUN)\n", store_ns, (unsigned long long)(n * passes));

  /* Exit round trip: empty batches, each one `out` and back. */
  const int exits = 2000;
  double t = now_ns();
  for (int i = 0; i < exits; i++)
    if (play(vm, 0, 0, 1) != GG_EXIT_BATCH_DONE) die("empty batch did not end with exit 1");
  double exit_ns = (now_ns() - t) / exits;
  printf("figure exit_ns %.0f ns/exit (KVM_RUN -> out -> KVM_RUN, %d round trips)\n", exit_ns, exits);

  /* The sync service with an empty list (int3 -> CR3 reload -> iretq) on top of an empty batch,
   * then with the whole data region's PTEs listed. */
  const int syncs = 200;
  t = now_ns();
  for (int i = 0; i < syncs; i++) {
    c->gc_sync = 1;
    if (play(vm, 0, 0, 1) != GG_EXIT_BATCH_DONE) die("sync batch did not end with exit 1");
  }
  double sync_ns = (now_ns() - t) / syncs - exit_ns;
  printf("figure sync_ns %.0f ns/sync (player -> CPL0 service, empty list, CR3 reload -> player)\n", sync_ns);
  const int listed = 4;
  double sync_list_ns = 0;
  for (int i = 0; i < listed; i++) {
    protect_all(vm);
    t = now_ns();
    if (play(vm, 0, 0, 1) != GG_EXIT_BATCH_DONE || c->gc_sync_count != 0) die("sync batch did not end with exit 1 and an empty list");
    sync_list_ns += now_ns() - t;
  }
  double sync_pte_ns = (sync_list_ns / listed - exit_ns - sync_ns) / DATA_PAGES;
  printf("figure sync_pte_ns %.0f ns/PTE (re-storing one listed PTE in the sync service)\n", sync_pte_ns);

  /* Write-protect fault round trip: one store per protected page; subtract the unfaulted cost. */
  for (uint64_t p = 0; p < DATA_PAGES; p++)
    r[p] = (struct gg_record){.gva = DATA_GVA + p * 4096 + 512, .kind = ACC_WRITE | ACC_USER, .size = 8};
  const int rounds = 4;
  double pf_total = 0;
  for (int k = 0; k < rounds; k++) {
    protect_all(vm);
    c->gc_ring_head = 0;
    c->gc_pf_count = 0;
    t = now_ns();
    unsigned code = play(vm, 0, DATA_PAGES, 1);
    pf_total += now_ns() - t;
    if (code != GG_EXIT_BATCH_DONE || c->gc_pf_count != DATA_PAGES) die("fault timing batch: exit %u, %llu faults", code, (unsigned long long)c->gc_pf_count);
  }
  double pf_ns = (pf_total / rounds - exit_ns - sync_ns - DATA_PAGES * (sync_pte_ns + store_ns)) / DATA_PAGES;
  printf("figure pf_ns %.0f ns/fault (write-protect #PF -> CPL0 monitor -> retried store, %d faults)\n", pf_ns, rounds * DATA_PAGES);
}

static void test_fault(struct vm *vm) {
  volatile struct gg_control *c = cb(vm);
  struct gg_record *r = records(vm);
  r[0] = (struct gg_record){.gva = DATA_GVA, .kind = ACC_READ | ACC_USER, .size = 8};
  r[1] = (struct gg_record){.gva = UNMAPPED_GVA + 0x123, .kind = ACC_WRITE | ACC_USER, .size = 4};
  unsigned code = play(vm, 0, 2, 1);
  check(code == GG_EXIT_FAULT, "fault: a store to an unmapped GVA exits %u (want %u)", code, GG_EXIT_FAULT);
  check(c->gc_fault_vector == GG_VEC_PF && c->gc_fault_error == (PFEC_WR | PFEC_US) && c->gc_fault_cr2 == UNMAPPED_GVA + 0x123,
        "fault: vector %llu, error code %llu, CR2 0x%llx (want 14, 6, 0x%llx)", (unsigned long long)c->gc_fault_vector,
        (unsigned long long)c->gc_fault_error, (unsigned long long)c->gc_fault_cr2, (unsigned long long)(UNMAPPED_GVA + 0x123));
  check((c->gc_fault_cs & 3) == 3 && c->gc_fault_rip >= GG_GVA(GG_PLAYER_GPA) && c->gc_fault_rip < GG_GVA(GG_PLAYER_GPA) + 0x10000 && c->gc_next == 1,
        "fault: at CPL3 in the player (rip 0x%llx), gc_next %llu names the record", (unsigned long long)c->gc_fault_rip, (unsigned long long)c->gc_next);
  check(run(vm) == GG_EXIT_FAULT, "fault: resuming exits FAULT again");
}

static const char *default_image(char *buf, size_t len) {
  ssize_t n = readlink("/proc/self/exe", buf, len - 16);
  if (n < 0) return "guest.bin";
  buf[n] = 0;
  strcat(dirname(buf), "/guest.bin");
  return buf;
}

int main(int argc, char **argv) {
  char buf[PATH_MAX];
  const char *image = argc > 1 ? argv[1] : default_image(buf, sizeof buf);
  if (argc > 2 || (argc > 1 && argv[1][0] == '-')) {
    fprintf(stderr, "usage: guest-harness [path/to/guest.bin]\n");
    return 2;
  }
  setvbuf(stdout, NULL, _IOLBF, 0);
  struct vm vm;
  struct batch b = {0};
  setup(&vm, image);
  test_boot(&vm);
  if (failures) return 1; /* nothing else can work */
  test_play(&vm, &b);
  test_low(&vm, &b);
  test_monitor(&vm, &b);
  test_ring_full(&vm, &b);
  test_bad_batch(&vm);
  timings(&vm);
  test_fault(&vm);
  printf("%s: %d check%s failed\n", failures ? "FAILED" : "passed", failures, failures == 1 ? "" : "s");
  return failures ? 1 : 0;
}
