/*
 * Host-process dirty-page tracking baselines (no virtualization), as a Node-API addon in plain C.
 *
 * One region = one anonymous private mapping of N 4 KiB pages in this process, tracked by one of:
 *   mprotect       PROT_READ per epoch; a SIGSEGV handler logs the page and makes it writable
 *   uffd-wp        userfaultfd write-protect; a handler thread logs the page and clears WP (wakes)
 *   uffd-wp-async  UFFD_FEATURE_WP_ASYNC: the kernel resolves write faults itself; PAGEMAP_SCAN
 *                  reports the written pages and re-protects them in the same call
 *   soft-dirty     /proc/self/clear_refs "4" + pagemap bit 55 (absent when the kernel is built
 *                  without CONFIG_MEM_SOFT_DIRTY; the probe says so instead of failing later)
 * JS calls once per batch (run) and once per epoch (arm, harvest); the accesses themselves are
 * real loads and stores issued here, so every fault is a real fault of the mechanism.
 *
 * The JS side is src/hw/baselines.ts; docs/baselines.md explains the measurements.
 */
#define _GNU_SOURCE
#ifndef NAPI_VERSION
#define NAPI_VERSION 8
#endif
#include <node_api.h>

#include <emmintrin.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

/* Headers older than Linux 6.7 (Debian 12 ships 6.1 UAPI headers) lack these. The values are the
 * kernel UAPI's (include/uapi/linux/userfaultfd.h, include/uapi/linux/fs.h); whether the running
 * kernel supports them is decided at run time by UFFDIO_API and by PAGEMAP_SCAN itself. */
#ifndef UFFD_USER_MODE_ONLY
#define UFFD_USER_MODE_ONLY 1
#endif
#ifndef USERFAULTFD_IOC_NEW
#define USERFAULTFD_IOC_NEW _IO(0xAA, 0x00)
#endif
#ifndef UFFD_FEATURE_WP_UNPOPULATED
#define UFFD_FEATURE_WP_UNPOPULATED (1 << 13)
#endif
#ifndef UFFD_FEATURE_WP_ASYNC
#define UFFD_FEATURE_WP_ASYNC (1 << 15)
#endif
#ifndef PAGEMAP_SCAN
struct page_region {
  uint64_t start, end, categories;
};
struct pm_scan_arg {
  uint64_t size, flags, start, end, walk_end, vec, vec_len, max_pages;
  uint64_t category_inverted, category_mask, category_anyof_mask, return_mask;
};
#define PAGEMAP_SCAN _IOWR('f', 16, struct pm_scan_arg)
#define PAGE_IS_WPALLOWED (1 << 0)
#define PAGE_IS_WRITTEN (1 << 1)
#define PM_SCAN_WP_MATCHING (1 << 0)
#define PM_SCAN_CHECK_WPASYNC (1 << 1)
#endif

#define PAGE 4096u
#define PAGE_SHIFT 12
#define PM_SOFT_DIRTY (UINT64_C(1) << 55)
/* Record layout: REC_* in scripts/constants.mjs (hw/include/granule_consts.h). Kept literal here
 * so this file compiles on its own as the single source of the addon. */
#define REC_SIZE 16
#define REC_OFF 0   /* u64 byte offset into the region (a GVA elsewhere) */
#define REC_KIND 8  /* u8 ACC_* kind and flags */
#define REC_SZ 9    /* u8 access size 1..64 */
#define REC_VALUE 12 /* u32 offset of the value bytes in the value area */
#define ACC_KIND_MASK 3
#define ACC_WRITE 1
#define ACC_VALUE 8
#define MAX_PAGES (UINT32_C(1) << 26) /* 256 GiB: page numbers stay u32, the logs stay small */

enum mode { M_MPROTECT, M_UFFD_WP, M_UFFD_ASYNC, M_SOFT_DIRTY, M_COUNT };
static const char *const MODE_NAMES[M_COUNT] = {"mprotect", "uffd-wp", "uffd-wp-async", "soft-dirty"};

typedef struct region {
  enum mode mode;
  uint8_t *base;
  size_t pages, len;
  int uffd, pagemap_fd, clear_refs_fd;
  pthread_t thread;
  int thread_started;
  int same_cpu; /* uffd-wp: run the handler thread on the faulting thread's CPU during run() */
  /* Written by the fault path (signal handler or uffd thread), read by the JS thread after run().
   * Pre-allocated: the signal handler must not allocate. */
  uint64_t *bitmap;
  uint32_t *log;
  uint32_t log_count;
  uint64_t faults;
  int armed;
  int fault_error; /* errno of a failed unprotect in the fault path; run() reports it */
  const char *fault_error_op;
  int sig_slot;
  struct page_region *vec;
  size_t vec_cap;
  uint64_t *pm_buf;
  /* lifetime: the JS handle and the ArrayBuffer each hold one reference */
  int refs;
  int tracking; /* the mechanism is set up (cleared by teardown) */
  int mapped;
  napi_ref buffer_ref;
  char how[256]; /* how the mechanism was opened, for the probe's detail */
} region_t;

/* ---------- errors ---------- */

/* The errno's name, as hw/src/errors.cc gives it (strerrorname_np: glibc 2.32 and later). */
static const char *errno_name(int e) {
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 32))
  const char *n = strerrorname_np(e);
  return n ? n : "errno";
#else
  (void)e;
  return "errno";
#endif
}

/* "<op> failed: ENAME (n): <advice>" */
static void set_err(char *err, size_t n, const char *op, int e, const char *advice) {
  snprintf(err, n, "%s failed: %s (%d): %s", op, errno_name(e), e, advice ? advice : strerror(e));
}

static uint64_t now_ns(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

static long thread_minflt(void) {
  struct rusage u;
  if (getrusage(RUSAGE_THREAD, &u) != 0) return 0;
  return u.ru_minflt;
}

/* ---------- the dirty log shared by the faulting modes ---------- */

/* Async-signal-safe (lock-free atomics only): called from the SIGSEGV handler and the uffd thread. */
static void log_page(region_t *r, size_t pg) {
  uint64_t bit = UINT64_C(1) << (pg & 63);
  uint64_t old = __atomic_fetch_or(&r->bitmap[pg >> 6], bit, __ATOMIC_ACQ_REL);
  if (!(old & bit)) {
    uint32_t i = __atomic_fetch_add(&r->log_count, 1, __ATOMIC_ACQ_REL);
    if (i < r->pages) r->log[i] = (uint32_t)pg;
  }
}

static void log_reset(region_t *r) {
  memset(r->bitmap, 0, ((r->pages + 63) / 64) * 8);
  __atomic_store_n(&r->log_count, 0, __ATOMIC_RELEASE);
}

/* ---------- mprotect + SIGSEGV ---------- */

#define SIG_SLOTS 256
static region_t *sig_regions[SIG_SLOTS];
static int sig_high; /* slots in use are below this; the handler scans no further */
static int sig_users;
static struct sigaction sig_old; /* whoever had SIGSEGV before us (Node's WebAssembly trap handler) */
static pthread_mutex_t sig_mu = PTHREAD_MUTEX_INITIALIZER;

static void sig_chain(int sig, siginfo_t *si, void *ctx) {
  if (sig_old.sa_flags & SA_SIGINFO) {
    if (sig_old.sa_sigaction) {
      sig_old.sa_sigaction(sig, si, ctx);
      return;
    }
  } else if (sig_old.sa_handler != SIG_DFL && sig_old.sa_handler != SIG_IGN) {
    sig_old.sa_handler(sig);
    return;
  }
  /* Nobody else wants it: restore the default so the faulting instruction, re-executed on return,
   * ends the process the way it would have without us (sigaction is async-signal-safe). */
  struct sigaction dfl;
  memset(&dfl, 0, sizeof dfl);
  dfl.sa_handler = SIG_DFL;
  sigaction(sig, &dfl, NULL);
}

static void segv_handler(int sig, siginfo_t *si, void *ctx) {
  int saved = errno;
  uintptr_t a = (uintptr_t)si->si_addr;
  int high = __atomic_load_n(&sig_high, __ATOMIC_ACQUIRE);
  for (int i = 0; i < high; i++) {
    region_t *r = __atomic_load_n(&sig_regions[i], __ATOMIC_ACQUIRE);
    if (!r || a < (uintptr_t)r->base || a >= (uintptr_t)r->base + r->len) continue;
    if (si->si_code != SEGV_ACCERR || !__atomic_load_n(&r->armed, __ATOMIC_ACQUIRE)) break;
    size_t pg = (a - (uintptr_t)r->base) >> PAGE_SHIFT;
    log_page(r, pg);
    __atomic_fetch_add(&r->faults, 1, __ATOMIC_RELAXED);
    if (mprotect(r->base + pg * PAGE, PAGE, PROT_READ | PROT_WRITE) != 0) {
      /* Typically ENOMEM: alternating RO/RW pages split the mapping into more VMAs than
       * vm.max_map_count allows. Unprotect everything so the program can go on, and make run()
       * fail: the pages written from now on would be missed. */
      r->fault_error = errno;
      r->fault_error_op = "mprotect(PROT_READ|PROT_WRITE) of one page in the SIGSEGV handler";
      __atomic_store_n(&r->armed, 0, __ATOMIC_RELEASE);
      mprotect(r->base, r->len, PROT_READ | PROT_WRITE);
    }
    errno = saved;
    return;
  }
  errno = saved;
  sig_chain(sig, si, ctx);
}

static int sig_attach(region_t *r, char *err, size_t n) {
  pthread_mutex_lock(&sig_mu);
  int slot = -1;
  for (int i = 0; i < SIG_SLOTS; i++)
    if (!sig_regions[i]) { slot = i; break; }
  if (slot < 0) {
    pthread_mutex_unlock(&sig_mu);
    snprintf(err, n, "too many mprotect regions open at once (%d): close some first", SIG_SLOTS);
    return -1;
  }
  if (sig_users == 0) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = segv_handler;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_RESTART;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGSEGV, &sa, &sig_old) != 0) {
      set_err(err, n, "sigaction(SIGSEGV)", errno, NULL);
      pthread_mutex_unlock(&sig_mu);
      return -1;
    }
  }
  sig_users++;
  r->sig_slot = slot;
  __atomic_store_n(&sig_regions[slot], r, __ATOMIC_RELEASE);
  if (slot + 1 > sig_high) __atomic_store_n(&sig_high, slot + 1, __ATOMIC_RELEASE);
  pthread_mutex_unlock(&sig_mu);
  return 0;
}

static void sig_detach(region_t *r) {
  pthread_mutex_lock(&sig_mu);
  __atomic_store_n(&sig_regions[r->sig_slot], NULL, __ATOMIC_RELEASE);
  if (--sig_users == 0) {
    struct sigaction cur;
    /* Put the previous handler back only if nobody replaced ours in the meantime. */
    if (sigaction(SIGSEGV, NULL, &cur) == 0 && (cur.sa_flags & SA_SIGINFO) && cur.sa_sigaction == segv_handler)
      sigaction(SIGSEGV, &sig_old, NULL);
    __atomic_store_n(&sig_high, 0, __ATOMIC_RELEASE);
  }
  pthread_mutex_unlock(&sig_mu);
}

/* ---------- userfaultfd ---------- */

static uint64_t uffd_supported; /* features the kernel offers, cached after the first query */
static int uffd_queried;
static char uffd_query_err[512];

/* Opens a userfaultfd the way this process is allowed to: the syscall with UFFD_USER_MODE_ONLY
 * (enough for our user-mode accesses and allowed unprivileged since Linux 5.11 even when
 * vm.unprivileged_userfaultfd = 0), the syscall without it (kernels before 5.11), then
 * /dev/userfaultfd (Linux 6.1+, governed by the device node's file mode). */
static int uffd_open(int flags, char *how, size_t hn, char *err, size_t n) {
#ifdef __NR_userfaultfd
  int fd = (int)syscall(__NR_userfaultfd, flags | UFFD_USER_MODE_ONLY);
  if (fd >= 0) {
    snprintf(how, hn, "userfaultfd(2) with UFFD_USER_MODE_ONLY");
    return fd;
  }
  int e1 = errno;
  fd = (int)syscall(__NR_userfaultfd, flags);
  if (fd >= 0) {
    snprintf(how, hn, "userfaultfd(2)");
    return fd;
  }
  int e2 = errno;
#else
  int e1 = ENOSYS, e2 = ENOSYS;
#endif
  int dev = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);
  int e3 = errno;
  if (dev >= 0) {
    int fd2 = ioctl(dev, USERFAULTFD_IOC_NEW, flags);
    e3 = errno;
    close(dev);
    if (fd2 >= 0) {
      snprintf(how, hn, "/dev/userfaultfd");
      return fd2;
    }
  }
  char sysctl[64] = "unreadable";
  int sf = open("/proc/sys/vm/unprivileged_userfaultfd", O_RDONLY | O_CLOEXEC);
  if (sf >= 0) {
    ssize_t k = read(sf, sysctl, sizeof sysctl - 1);
    sysctl[k > 0 ? k : 0] = 0;
    if (k > 0 && sysctl[k - 1] == '\n') sysctl[k - 1] = 0;
    close(sf);
  }
  snprintf(err, n,
           "userfaultfd(2) failed: %s (%d) with UFFD_USER_MODE_ONLY, %s (%d) without, and /dev/userfaultfd: %s (%d). "
           "ENOSYS means the kernel lacks CONFIG_USERFAULTFD; EPERM means this process may not use it "
           "(vm.unprivileged_userfaultfd = %s; allow it with `sysctl vm.unprivileged_userfaultfd=1`, run with "
           "CAP_SYS_PTRACE, or give this user access to /dev/userfaultfd on Linux 6.1+); a container's seccomp "
           "profile may also block the syscall",
           errno_name(e1), e1, errno_name(e2), e2, errno_name(e3), e3, sysctl);
  return -1;
}

static int uffd_query(char *err, size_t n) {
  if (uffd_queried) {
    if (uffd_query_err[0]) {
      snprintf(err, n, "%s", uffd_query_err);
      return -1;
    }
    return 0;
  }
  char how[96];
  int fd = uffd_open(O_CLOEXEC | O_NONBLOCK, how, sizeof how, uffd_query_err, sizeof uffd_query_err);
  if (fd >= 0) {
    /* UFFDIO_API with no features requested reports every feature the kernel has. */
    struct uffdio_api api = {.api = UFFD_API, .features = 0};
    if (ioctl(fd, UFFDIO_API, &api) != 0)
      set_err(uffd_query_err, sizeof uffd_query_err, "ioctl(UFFDIO_API)", errno, "the userfaultfd API handshake failed");
    else
      uffd_supported = api.features;
    close(fd);
  }
  uffd_queried = 1;
  if (uffd_query_err[0]) {
    snprintf(err, n, "%s", uffd_query_err);
    return -1;
  }
  return 0;
}

static void *uffd_thread_main(void *arg) {
  region_t *r = arg;
  struct uffd_msg msgs[16];
  for (;;) {
    ssize_t k = read(r->uffd, msgs, sizeof msgs); /* blocks; a cancellation point for close() */
    if (k < 0) {
      if (errno == EINTR || errno == EAGAIN) continue;
      return NULL;
    }
    for (size_t i = 0; i < (size_t)k / sizeof msgs[0]; i++) {
      if (msgs[i].event != UFFD_EVENT_PAGEFAULT) continue;
      uintptr_t a = (uintptr_t)msgs[i].arg.pagefault.address & ~(uintptr_t)(PAGE - 1);
      if (a < (uintptr_t)r->base || a >= (uintptr_t)r->base + r->len) continue;
      if (msgs[i].arg.pagefault.flags & UFFD_PAGEFAULT_FLAG_WP) {
        log_page(r, (a - (uintptr_t)r->base) >> PAGE_SHIFT);
        __atomic_fetch_add(&r->faults, 1, __ATOMIC_RELAXED);
      }
      /* Clearing WP also wakes the faulting thread (no DONTWAKE). */
      struct uffdio_writeprotect wp = {.range = {.start = a, .len = PAGE}, .mode = 0};
      int tries = 0;
      while (ioctl(r->uffd, UFFDIO_WRITEPROTECT, &wp) != 0) {
        if (errno == EAGAIN && ++tries < 1000) continue;
        /* Never leave the faulting thread blocked: drop tracking of the whole range and wake it. */
        r->fault_error = errno;
        r->fault_error_op = "ioctl(UFFDIO_WRITEPROTECT) clearing one page in the handler thread";
        struct uffdio_range all = {.start = (uintptr_t)r->base, .len = r->len};
        ioctl(r->uffd, UFFDIO_UNREGISTER, &all);
        ioctl(r->uffd, UFFDIO_WAKE, &all);
        break;
      }
    }
  }
  return NULL;
}

static int uffd_setup(region_t *r, char *err, size_t n) {
  if (uffd_query(err, n) != 0) return -1;
  uint64_t want = 0;
  if (r->mode == M_UFFD_ASYNC) {
    if (!(uffd_supported & UFFD_FEATURE_WP_ASYNC)) {
      snprintf(err, n,
               "this kernel's userfaultfd lacks UFFD_FEATURE_WP_ASYNC (features 0x%llx): it needs Linux 6.7 or later",
               (unsigned long long)uffd_supported);
      return -1;
    }
    want = UFFD_FEATURE_WP_ASYNC | (uffd_supported & UFFD_FEATURE_WP_UNPOPULATED);
  }
  if (!(uffd_supported & UFFD_FEATURE_PAGEFAULT_FLAG_WP)) {
    snprintf(err, n,
             "this kernel's userfaultfd lacks write-protect support (UFFD_FEATURE_PAGEFAULT_FLAG_WP not in features "
             "0x%llx): it needs Linux 5.7 or later with CONFIG_HAVE_ARCH_USERFAULTFD_WP",
             (unsigned long long)uffd_supported);
    return -1;
  }
  char how[96];
  r->uffd = uffd_open(O_CLOEXEC, how, sizeof how, err, n);
  if (r->uffd < 0) return -1;
  struct uffdio_api api = {.api = UFFD_API, .features = want};
  if (ioctl(r->uffd, UFFDIO_API, &api) != 0) {
    set_err(err, n, "ioctl(UFFDIO_API)", errno, "the kernel refused the requested userfaultfd features");
    return -1;
  }
  struct uffdio_register reg = {.range = {.start = (uintptr_t)r->base, .len = r->len}, .mode = UFFDIO_REGISTER_MODE_WP};
  if (ioctl(r->uffd, UFFDIO_REGISTER, &reg) != 0) {
    set_err(err, n, "ioctl(UFFDIO_REGISTER, MODE_WP)", errno,
            "write-protect registration of anonymous memory was refused (it needs Linux 5.7+)");
    return -1;
  }
  if (!(reg.ioctls & ((uint64_t)1 << _UFFDIO_WRITEPROTECT))) {
    snprintf(err, n, "UFFDIO_REGISTER succeeded but UFFDIO_WRITEPROTECT is not offered for this range");
    return -1;
  }
  snprintf(r->how, sizeof r->how, "%s, features 0x%llx of 0x%llx%s", how, (unsigned long long)want,
           (unsigned long long)uffd_supported,
           r->mode == M_UFFD_ASYNC ? "" : r->same_cpu ? ", handler thread on the faulting CPU" : ", handler thread on any CPU");
  if (r->mode == M_UFFD_ASYNC) {
    r->pagemap_fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
    if (r->pagemap_fd < 0) {
      set_err(err, n, "open(/proc/self/pagemap)", errno, "PAGEMAP_SCAN needs /proc mounted");
      return -1;
    }
    r->vec_cap = r->pages / 2 + 1; /* the worst case: alternating written and clean pages */
    r->vec = calloc(r->vec_cap, sizeof *r->vec);
    if (!r->vec) {
      set_err(err, n, "calloc", ENOMEM, NULL);
      return -1;
    }
    return 0;
  }
  /* Signals are for the JS thread: block them all in the handler thread. */
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  int e = pthread_create(&r->thread, NULL, uffd_thread_main, r);
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  if (e != 0) {
    set_err(err, n, "pthread_create (userfaultfd handler thread)", e, NULL);
    return -1;
  }
  r->thread_started = 1;
  return 0;
}

/* PAGEMAP_SCAN over the region for written pages. With `out`, reports them; with `protect`, also
 * write-protects them again in the same walk (get and re-arm without a race). */
static int pm_scan(region_t *r, int protect, uint32_t *out, size_t *count, char *err, size_t n) {
  struct pm_scan_arg a;
  memset(&a, 0, sizeof a);
  a.size = sizeof a;
  a.flags = (protect ? PM_SCAN_WP_MATCHING : 0) | PM_SCAN_CHECK_WPASYNC;
  a.start = (uintptr_t)r->base;
  a.end = (uintptr_t)r->base + r->len;
  a.category_mask = PAGE_IS_WRITTEN;
  a.return_mask = PAGE_IS_WRITTEN;
  size_t k = 0;
  for (;;) {
    /* Without an output vector the walk only re-protects (PM_SCAN_WP_MATCHING), all in one call. */
    a.vec = out ? (uintptr_t)r->vec : 0;
    a.vec_len = out ? r->vec_cap : 0;
    long got = ioctl(r->pagemap_fd, PAGEMAP_SCAN, &a);
    if (got < 0) {
      set_err(err, n, "ioctl(/proc/self/pagemap, PAGEMAP_SCAN)", errno,
              errno == ENOTTY || errno == EINVAL ? "this kernel lacks PAGEMAP_SCAN (it needs Linux 6.7 or later)"
                                                  : "the page scan of the region failed");
      return -1;
    }
    for (long i = 0; i < got; i++)
      for (uint64_t p = r->vec[i].start; p < r->vec[i].end; p += PAGE)
        if (out) out[k++] = (uint32_t)((p - (uintptr_t)r->base) >> PAGE_SHIFT);
        else k++;
    if (a.walk_end >= a.end || a.walk_end == 0) break;
    a.start = a.walk_end;
  }
  *count = k;
  return 0;
}

/* ---------- soft-dirty ---------- */

static int soft_dirty_setup(region_t *r, char *err, size_t n) {
  r->clear_refs_fd = open("/proc/self/clear_refs", O_WRONLY | O_CLOEXEC);
  if (r->clear_refs_fd < 0) {
    set_err(err, n, "open(/proc/self/clear_refs)", errno, "soft-dirty needs /proc mounted and writable");
    return -1;
  }
  r->pagemap_fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
  if (r->pagemap_fd < 0) {
    set_err(err, n, "open(/proc/self/pagemap)", errno, "soft-dirty needs /proc mounted");
    return -1;
  }
  r->pm_buf = malloc(r->pages * 8);
  if (!r->pm_buf) {
    set_err(err, n, "malloc", ENOMEM, NULL);
    return -1;
  }
  snprintf(r->how, sizeof r->how, "/proc/self/clear_refs 4 + /proc/self/pagemap bit 55");
  return 0;
}

/* ---------- region life cycle ---------- */

static void region_teardown(region_t *r) {
  if (!r->tracking) return;
  r->tracking = 0;
  __atomic_store_n(&r->armed, 0, __ATOMIC_RELEASE);
  if (r->thread_started) {
    pthread_cancel(r->thread);
    pthread_join(r->thread, NULL);
    r->thread_started = 0;
  }
  if (r->sig_slot >= 0) {
    sig_detach(r);
    r->sig_slot = -1;
  }
  /* Leave the memory plainly readable and writable for whoever still holds the buffer. */
  if (r->uffd >= 0) close(r->uffd); /* unregisters the range and wakes any waiter */
  r->uffd = -1;
  if (r->mapped) mprotect(r->base, r->len, PROT_READ | PROT_WRITE);
  if (r->pagemap_fd >= 0) close(r->pagemap_fd);
  if (r->clear_refs_fd >= 0) close(r->clear_refs_fd);
  r->pagemap_fd = r->clear_refs_fd = -1;
}

static void region_unref(region_t *r) {
  if (--r->refs > 0) return;
  region_teardown(r);
  if (r->mapped) munmap(r->base, r->len);
  free(r->bitmap);
  free(r->log);
  free(r->vec);
  free(r->pm_buf);
  free(r);
}

static region_t *region_open(size_t pages, enum mode mode, int same_cpu, char *err, size_t n) {
  if (pages < 1 || pages > MAX_PAGES) {
    snprintf(err, n, "a region has 1..%u pages, not %zu", (unsigned)MAX_PAGES, pages);
    return NULL;
  }
  region_t *r = calloc(1, sizeof *r);
  if (!r) {
    set_err(err, n, "calloc", ENOMEM, NULL);
    return NULL;
  }
  r->mode = mode;
  r->pages = pages;
  r->len = pages * PAGE;
  r->uffd = r->pagemap_fd = r->clear_refs_fd = -1;
  r->sig_slot = -1;
  r->same_cpu = same_cpu;
  r->refs = 1;
  r->tracking = 1;
  r->bitmap = calloc((pages + 63) / 64, 8);
  r->log = calloc(pages, sizeof *r->log);
  if (!r->bitmap || !r->log) {
    set_err(err, n, "calloc (dirty log)", ENOMEM, NULL);
    goto fail;
  }
  void *m = mmap(NULL, r->len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (m == MAP_FAILED) {
    set_err(err, n, "mmap (anonymous region)", errno, NULL);
    goto fail;
  }
  r->base = m;
  r->mapped = 1;
  /* Page granularity for every mode: a transparent huge page would be protected, scanned and
   * reported as 512 pages at once. */
  madvise(r->base, r->len, MADV_NOHUGEPAGE);
  /* Populate with real pages now, so no mode pays first-touch faults inside an epoch and
   * write-protection (which acts on present PTEs) covers every page. */
  memset(r->base, 0, r->len);
  switch (mode) {
  case M_MPROTECT:
    snprintf(r->how, sizeof r->how, "mprotect(PROT_READ) + SIGSEGV handler (SA_SIGINFO), chained to the previous handler");
    if (sig_attach(r, err, n) != 0) goto fail;
    break;
  case M_UFFD_WP:
  case M_UFFD_ASYNC:
    if (uffd_setup(r, err, n) != 0) goto fail;
    break;
  case M_SOFT_DIRTY:
    if (soft_dirty_setup(r, err, n) != 0) goto fail;
    break;
  default:
    break;
  }
  return r;
fail:
  region_unref(r);
  return NULL;
}

/* Starts an epoch: everything written from now on is reported by the next harvest. */
static int region_arm(region_t *r, char *err, size_t n) {
  if (!r->tracking) {
    snprintf(err, n, "the region is closed");
    return -1;
  }
  log_reset(r);
  r->fault_error = 0; /* a new epoch; a mechanism that really broke fails again below */
  switch (r->mode) {
  case M_MPROTECT:
    __atomic_store_n(&r->armed, 1, __ATOMIC_RELEASE);
    if (mprotect(r->base, r->len, PROT_READ) != 0) {
      set_err(err, n, "mprotect(PROT_READ) of the region", errno, NULL);
      return -1;
    }
    break;
  case M_UFFD_WP: {
    struct uffdio_writeprotect wp = {.range = {.start = (uintptr_t)r->base, .len = r->len}, .mode = UFFDIO_WRITEPROTECT_MODE_WP};
    if (ioctl(r->uffd, UFFDIO_WRITEPROTECT, &wp) != 0) {
      set_err(err, n, "ioctl(UFFDIO_WRITEPROTECT, MODE_WP) of the region", errno, NULL);
      return -1;
    }
    break;
  }
  case M_UFFD_ASYNC: {
    /* Re-protect whatever was written since the last harvest, reporting nothing. */
    size_t dummy;
    if (pm_scan(r, 1, NULL, &dummy, err, n) != 0) return -1;
    break;
  }
  case M_SOFT_DIRTY:
    if (pwrite(r->clear_refs_fd, "4", 1, 0) != 1) {
      set_err(err, n, "write(/proc/self/clear_refs, \"4\")", errno, "clearing the soft-dirty bits was refused");
      return -1;
    }
    break;
  default:
    break;
  }
  r->armed = 1;
  return 0;
}

typedef uint16_t __attribute__((aligned(1), may_alias)) u16u;
typedef uint32_t __attribute__((aligned(1), may_alias)) u32u;
typedef uint64_t __attribute__((aligned(1), may_alias)) u64u;

static volatile uint64_t sink;

/* Exactly the bytes [p, p+size): one instruction for sizes 1, 2, 4, 8 and 16, otherwise the
 * fewest such pieces. Volatile so the compiler keeps every access as written. */
static inline uint64_t do_load(const uint8_t *p, unsigned size) {
  uint64_t acc = 0;
  while (size >= 16) {
    __m128i v = _mm_loadu_si128((const __m128i *)p);
    __asm__ volatile("" : "+x"(v));
    acc += (uint64_t)_mm_cvtsi128_si64(v);
    p += 16, size -= 16;
  }
  if (size >= 8) acc += *(const volatile u64u *)p, p += 8, size -= 8;
  if (size >= 4) acc += *(const volatile u32u *)p, p += 4, size -= 4;
  if (size >= 2) acc += *(const volatile u16u *)p, p += 2, size -= 2;
  if (size) acc += *(const volatile uint8_t *)p;
  return acc;
}

static inline void do_store(uint8_t *p, const uint8_t *v, unsigned size) {
  while (size >= 16) {
    __m128i x = _mm_loadu_si128((const __m128i *)v);
    __asm__ volatile("" : "+x"(x));
    _mm_storeu_si128((__m128i *)p, x);
    __asm__ volatile("" ::: "memory");
    p += 16, v += 16, size -= 16;
  }
  if (size >= 8) *(volatile u64u *)p = *(const u64u *)v, p += 8, v += 8, size -= 8;
  if (size >= 4) *(volatile u32u *)p = *(const u32u *)v, p += 4, v += 4, size -= 4;
  if (size >= 2) *(volatile u16u *)p = *(const u16u *)v, p += 2, v += 2, size -= 2;
  if (size) *(volatile uint8_t *)p = *v;
}

/* Validates the whole batch first, so a bad record leaves no half-performed batch behind. */
static int batch_check(region_t *r, const uint8_t *rec, size_t count, size_t vlen, char *err, size_t n) {
  for (size_t i = 0; i < count; i++) {
    const uint8_t *q = rec + i * REC_SIZE;
    uint64_t off;
    uint32_t voff;
    memcpy(&off, q + REC_OFF, 8);
    memcpy(&voff, q + REC_VALUE, 4);
    unsigned kind = q[REC_KIND], size = q[REC_SZ];
    if (size < 1 || size > 64) {
      snprintf(err, n, "record %zu (byte %zu of the records): access size %u is not 1..64", i, i * REC_SIZE + REC_SZ, size);
      return -1;
    }
    if ((kind & ACC_KIND_MASK) == 3) {
      snprintf(err, n, "record %zu (byte %zu of the records): access kind %u is not 0 (read), 1 (write) or 2 (fetch)", i,
               i * REC_SIZE + REC_KIND, kind & ACC_KIND_MASK);
      return -1;
    }
    if (off > r->len || size > r->len - off) {
      snprintf(err, n,
               "record %zu (byte %zu of the records): offset 0x%llx + size %u is past the end of the region (%zu bytes, "
               "%zu pages)",
               i, i * REC_SIZE + REC_OFF, (unsigned long long)off, size, r->len, r->pages);
      return -1;
    }
    if ((kind & ACC_KIND_MASK) == ACC_WRITE && (kind & ACC_VALUE) && ((uint64_t)voff + size > vlen)) {
      snprintf(err, n,
               "record %zu (byte %zu of the records): value bytes %u..%u are past the end of the value area (%zu bytes)",
               i, i * REC_SIZE + REC_VALUE, voff, voff + size, vlen);
      return -1;
    }
  }
  return 0;
}

/* uffd-wp hands every fault to another thread and back. Across two CPUs each handoff is a
 * cross-CPU wake-up, whose latency depends on whether the other CPU is idle (on a VM, a halted
 * vCPU): measured here from 5 to 75 us per fault from run to run. On one CPU it is a plain context
 * switch, stable at about 4 us. By default run() pins both threads to the CPU it is on, restoring
 * the caller's affinity afterwards; `anyCpu` leaves placement to the scheduler. */
static int pin_begin(region_t *r, cpu_set_t *saved) {
  if (r->mode != M_UFFD_WP || !r->same_cpu || !r->thread_started) return 0;
  int cpu = sched_getcpu();
  if (cpu < 0 || pthread_getaffinity_np(pthread_self(), sizeof *saved, saved) != 0) return 0;
  cpu_set_t one;
  CPU_ZERO(&one);
  CPU_SET(cpu, &one);
  if (pthread_setaffinity_np(pthread_self(), sizeof one, &one) != 0) return 0;
  pthread_setaffinity_np(r->thread, sizeof one, &one);
  return 1;
}

static void pin_end(int pinned, const cpu_set_t *saved) {
  if (pinned) pthread_setaffinity_np(pthread_self(), sizeof *saved, saved);
}

static void batch_run(region_t *r, const uint8_t *rec, size_t count, const uint8_t *values) {
  uint64_t acc = 0;
  uint8_t cur[64];
  for (size_t i = 0; i < count; i++) {
    const uint8_t *q = rec + i * REC_SIZE;
    uint64_t off = *(const u64u *)(q + REC_OFF);
    unsigned kind = q[REC_KIND], size = q[REC_SZ];
    uint8_t *p = r->base + off;
    if ((kind & ACC_KIND_MASK) != ACC_WRITE) {
      acc += do_load(p, size);
    } else if (kind & ACC_VALUE) {
      do_store(p, values + *(const u32u *)(q + REC_VALUE), size);
    } else {
      /* A write without a value (as in the simulator): store the bytes already there. */
      memcpy(cur, p, size);
      do_store(p, cur, size);
    }
  }
  sink += acc;
}

static int region_harvest(region_t *r, uint32_t *out, size_t *count, char *err, size_t n) {
  if (!r->tracking) {
    snprintf(err, n, "the region is closed");
    return -1;
  }
  size_t k = 0;
  switch (r->mode) {
  case M_MPROTECT:
  case M_UFFD_WP: {
    uint32_t c = __atomic_load_n(&r->log_count, __ATOMIC_ACQUIRE);
    if (c > r->pages) c = (uint32_t)r->pages;
    memcpy(out, r->log, c * sizeof *out);
    k = c;
    break;
  }
  case M_UFFD_ASYNC:
    if (pm_scan(r, 1, out, &k, err, n) != 0) return -1;
    break;
  case M_SOFT_DIRTY: {
    size_t want = r->pages * 8;
    off_t at = (off_t)(((uintptr_t)r->base >> PAGE_SHIFT) * 8);
    size_t got = 0;
    while (got < want) {
      ssize_t g = pread(r->pagemap_fd, (uint8_t *)r->pm_buf + got, want - got, at + (off_t)got);
      if (g <= 0) {
        set_err(err, n, "pread(/proc/self/pagemap)", g < 0 ? errno : EIO, "reading the soft-dirty bits failed");
        return -1;
      }
      got += (size_t)g;
    }
    for (size_t i = 0; i < r->pages; i++)
      if (r->pm_buf[i] & PM_SOFT_DIRTY) out[k++] = (uint32_t)i;
    break;
  }
  default:
    break;
  }
  *count = k;
  return 0;
}

static int cmp_u32(const void *a, const void *b) {
  uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
  return x < y ? -1 : x > y;
}

/* ---------- probe: the real code path on a small region ---------- */

static void probe_mode(enum mode mode, int *ok, char *why, size_t wn, char *detail, size_t dn) {
  char err[1024] = "";
  *ok = 0;
  detail[0] = 0;
  region_t *r = region_open(4, mode, 1, err, sizeof err);
  if (!r) {
    snprintf(why, wn, "%s", err);
    return;
  }
  snprintf(detail, dn, "%s", r->how);
  static const uint8_t one = 0x5a;
  uint8_t rec[REC_SIZE * 2];
  uint32_t out[4];
  size_t k;
  /* Two epochs: page 2 written (page 1 only read), then page 0 written. */
  for (int epoch = 0; epoch < 2; epoch++) {
    size_t wpage = epoch == 0 ? 2 : 0;
    memset(rec, 0, sizeof rec);
    uint64_t off = wpage * PAGE + 7, roff = 1 * PAGE + 3;
    memcpy(rec + REC_OFF, &off, 8);
    rec[REC_KIND] = ACC_WRITE | ACC_VALUE;
    rec[REC_SZ] = 1;
    memcpy(rec + REC_SIZE + REC_OFF, &roff, 8);
    rec[REC_SIZE + REC_SZ] = 8;
    uint64_t f0 = r->faults;
    if (region_arm(r, err, sizeof err) != 0) {
      snprintf(why, wn, "%s", err);
      goto done;
    }
    cpu_set_t saved;
    int pinned = pin_begin(r, &saved);
    batch_run(r, rec, 2, &one);
    pin_end(pinned, &saved);
    if (r->fault_error) {
      set_err(why, wn, r->fault_error_op, r->fault_error, NULL);
      goto done;
    }
    if (region_harvest(r, out, &k, err, sizeof err) != 0) {
      snprintf(why, wn, "%s", err);
      goto done;
    }
    uint64_t faults = r->faults - f0;
    int faulting = mode == M_MPROTECT || mode == M_UFFD_WP;
    if (mode == M_SOFT_DIRTY && k == 0) {
      snprintf(why, wn,
               "pagemap bit 55 (soft-dirty) stayed 0 after a write that followed `echo 4 > /proc/self/clear_refs`: "
               "this kernel is built without CONFIG_MEM_SOFT_DIRTY");
      goto done;
    }
    if (k != 1 || out[0] != wpage || (faulting && faults != 1) || r->base[off] != one) {
      char got[64] = "";
      for (size_t i = 0; i < k && i < 4; i++) snprintf(got + strlen(got), sizeof got - strlen(got), "%s%u", i ? "," : "", out[i]);
      snprintf(why, wn,
               "self-test failed in epoch %d: wrote page %zu and read page 1, harvested {%s} with %llu faults%s; the "
               "mechanism does not track writes on this kernel",
               epoch, wpage, got, (unsigned long long)faults, r->base[off] != one ? ", and the byte written is missing" : "");
      goto done;
    }
  }
  *ok = 1;
done:
  region_unref(r);
}

/* ---------- Node-API glue ---------- */

#define NAPI_CALL(env, call)                                                                                            \
  do {                                                                                                                  \
    if ((call) != napi_ok) {                                                                                            \
      const napi_extended_error_info *info_;                                                                            \
      napi_get_last_error_info((env), &info_);                                                                          \
      napi_throw_error((env), "GRANULE_BASELINES_NAPI", info_ && info_->error_message ? info_->error_message : #call);   \
      return NULL;                                                                                                      \
    }                                                                                                                   \
  } while (0)

static napi_value throw_msg(napi_env env, const char *msg) {
  napi_throw_error(env, "GRANULE_BASELINES", msg);
  return NULL;
}

static int parse_mode(napi_env env, napi_value v, enum mode *m) {
  char s[32];
  size_t len;
  if (napi_get_value_string_utf8(env, v, s, sizeof s, &len) != napi_ok) return -1;
  for (int i = 0; i < M_COUNT; i++)
    if (strcmp(s, MODE_NAMES[i]) == 0) {
      *m = (enum mode)i;
      return 0;
    }
  return -1;
}

static napi_value make_number(napi_env env, double d) {
  napi_value v;
  napi_create_double(env, d, &v);
  return v;
}

static void set_num(napi_env env, napi_value obj, const char *key, double d) {
  napi_set_named_property(env, obj, key, make_number(env, d));
}

static void handle_finalize(napi_env env, void *data, void *hint) {
  (void)hint;
  region_t *r = data;
  /* The buffer may outlive the handle: stop tracking now, unmap when the buffer goes too. */
  region_teardown(r);
  if (r->buffer_ref) {
    napi_delete_reference(env, r->buffer_ref);
    r->buffer_ref = NULL;
  }
  region_unref(r);
}

static void buffer_finalize(napi_env env, void *data, void *hint) {
  (void)env;
  (void)data;
  region_unref(hint);
}

static region_t *get_region(napi_env env, napi_value v) {
  void *p = NULL;
  napi_valuetype t;
  if (napi_typeof(env, v, &t) != napi_ok || t != napi_external || napi_get_value_external(env, v, &p) != napi_ok || !p) {
    throw_msg(env, "expected a region handle from create()");
    return NULL;
  }
  return p;
}

static int get_bytes(napi_env env, napi_value v, const char *what, uint8_t **data, size_t *len) {
  bool is;
  napi_typedarray_type type;
  void *d;
  size_t n;
  if (napi_is_typedarray(env, v, &is) != napi_ok || !is ||
      napi_get_typedarray_info(env, v, &type, &n, &d, NULL, NULL) != napi_ok || type != napi_uint8_array) {
    char m[128];
    snprintf(m, sizeof m, "%s must be a Uint8Array", what);
    throw_msg(env, m);
    return -1;
  }
  *data = d;
  *len = n;
  return 0;
}

/* create(pages, mode, anyCpu?) -> { handle, buffer, how } */
static napi_value js_create(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  double pages;
  enum mode mode;
  if (argc < 2 || napi_get_value_double(env, argv[0], &pages) != napi_ok || pages != (double)(size_t)pages)
    return throw_msg(env, "create(pages, mode): pages must be a positive integer");
  if (parse_mode(env, argv[1], &mode) != 0)
    return throw_msg(env, "create(pages, mode): mode must be one of mprotect, uffd-wp, uffd-wp-async, soft-dirty");
  bool any_cpu = false;
  if (argc > 2) napi_get_value_bool(env, argv[2], &any_cpu);
  char err[1024];
  region_t *r = region_open((size_t)pages, mode, !any_cpu, err, sizeof err);
  if (!r) return throw_msg(env, err);
  napi_value handle, buffer, out;
  if (napi_create_external(env, r, handle_finalize, NULL, &handle) != napi_ok) {
    region_unref(r);
    return throw_msg(env, "napi_create_external failed");
  }
  r->refs++; /* the buffer's reference, dropped by buffer_finalize */
  if (napi_create_external_arraybuffer(env, r->base, r->len, buffer_finalize, r, &buffer) != napi_ok) {
    r->refs--;
    return throw_msg(env, "napi_create_external_arraybuffer failed (is this a runtime without external buffers?)");
  }
  napi_create_reference(env, buffer, 0, &r->buffer_ref);
  NAPI_CALL(env, napi_create_object(env, &out));
  napi_set_named_property(env, out, "handle", handle);
  napi_set_named_property(env, out, "buffer", buffer);
  napi_value how;
  napi_create_string_utf8(env, r->how, NAPI_AUTO_LENGTH, &how);
  napi_set_named_property(env, out, "how", how);
  return out;
}

static napi_value js_arm(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  region_t *r = argc ? get_region(env, argv[0]) : NULL;
  if (!r) return argc ? NULL : throw_msg(env, "arm(handle)");
  char err[1024];
  uint64_t t0 = now_ns();
  if (region_arm(r, err, sizeof err) != 0) return throw_msg(env, err);
  uint64_t t1 = now_ns();
  napi_value out;
  NAPI_CALL(env, napi_create_object(env, &out));
  set_num(env, out, "ns", (double)(t1 - t0));
  return out;
}

/* run(handle, records, values, count) -> { faults, ns, minorFaults } */
static napi_value js_run(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 4) return throw_msg(env, "run(handle, records, values, count)");
  region_t *r = get_region(env, argv[0]);
  if (!r) return NULL;
  uint8_t *rec, *val;
  size_t rlen, vlen;
  if (get_bytes(env, argv[1], "records", &rec, &rlen) || get_bytes(env, argv[2], "values", &val, &vlen)) return NULL;
  double dc;
  if (napi_get_value_double(env, argv[3], &dc) != napi_ok || dc < 0 || dc != (double)(size_t)dc)
    return throw_msg(env, "run(): count must be a non-negative integer");
  size_t count = (size_t)dc;
  char err[1024];
  if (count > rlen / REC_SIZE) {
    snprintf(err, sizeof err, "run(): count %zu exceeds the %zu records (16 bytes each) in the records array", count,
             rlen / REC_SIZE);
    return throw_msg(env, err);
  }
  if (!r->tracking) return throw_msg(env, "the region is closed");
  if (batch_check(r, rec, count, vlen, err, sizeof err) != 0) return throw_msg(env, err);
  uint64_t f0 = __atomic_load_n(&r->faults, __ATOMIC_ACQUIRE);
  cpu_set_t saved;
  int pinned = pin_begin(r, &saved);
  long m0 = thread_minflt();
  uint64_t t0 = now_ns();
  batch_run(r, rec, count, val);
  uint64_t t1 = now_ns();
  long m1 = thread_minflt();
  pin_end(pinned, &saved);
  uint64_t f1 = __atomic_load_n(&r->faults, __ATOMIC_ACQUIRE);
  if (r->fault_error) {
    set_err(err, sizeof err, r->fault_error_op, r->fault_error,
            r->fault_error == ENOMEM
                ? "the region was split into more mappings than vm.max_map_count allows; use fewer pages per region or "
                  "raise vm.max_map_count. Tracking stopped: this epoch's dirty set is incomplete"
                : "tracking stopped: this epoch's dirty set is incomplete");
    return throw_msg(env, err);
  }
  napi_value out;
  NAPI_CALL(env, napi_create_object(env, &out));
  set_num(env, out, "faults", (double)(f1 - f0));
  set_num(env, out, "ns", (double)(t1 - t0));
  set_num(env, out, "minorFaults", (double)(m1 - m0));
  return out;
}

/* harvest(handle, copyTo?) -> { pages: Uint32Array (ascending), ns, copyNs } */
static napi_value js_harvest(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  region_t *r = argc ? get_region(env, argv[0]) : NULL;
  if (!r) return argc ? NULL : throw_msg(env, "harvest(handle)");
  uint8_t *dst = NULL;
  size_t dlen = 0;
  if (argc > 1) {
    napi_valuetype t;
    napi_typeof(env, argv[1], &t);
    if (t != napi_undefined && t != napi_null && get_bytes(env, argv[1], "harvest(): copyTo", &dst, &dlen)) return NULL;
  }
  void *pages_data;
  napi_value ab, arr, out;
  NAPI_CALL(env, napi_create_arraybuffer(env, r->pages * 4, &pages_data, &ab));
  uint32_t *pages = pages_data;
  size_t k;
  char err[1024];
  uint64_t t0 = now_ns();
  if (region_harvest(r, pages, &k, err, sizeof err) != 0) return throw_msg(env, err);
  uint64_t t1 = now_ns();
  /* The logs are in fault order; everything else reports ascending pages. */
  if (r->mode == M_MPROTECT || r->mode == M_UFFD_WP) qsort(pages, k, sizeof *pages, cmp_u32);
  double copy_ns = 0;
  if (dst) {
    if (dlen < k * PAGE) {
      snprintf(err, sizeof err, "harvest(): copyTo holds %zu bytes but the %zu dirty pages need %zu", dlen, k,
               (size_t)(k * PAGE));
      return throw_msg(env, err);
    }
    uint64_t c0 = now_ns();
    for (size_t i = 0; i < k; i++) memcpy(dst + i * PAGE, r->base + (size_t)pages[i] * PAGE, PAGE);
    copy_ns = (double)(now_ns() - c0);
  }
  NAPI_CALL(env, napi_create_typedarray(env, napi_uint32_array, k, ab, 0, &arr));
  NAPI_CALL(env, napi_create_object(env, &out));
  napi_set_named_property(env, out, "pages", arr);
  set_num(env, out, "ns", (double)(t1 - t0));
  set_num(env, out, "copyNs", copy_ns);
  return out;
}

static napi_value js_close(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  region_t *r = argc ? get_region(env, argv[0]) : NULL;
  if (!r) return argc ? NULL : throw_msg(env, "close(handle)");
  region_teardown(r);
  if (r->buffer_ref) {
    napi_value buf;
    /* Detach so no view can reach the unmapped memory; then the mapping can go right away. */
    int gone = 1;
    if (napi_get_reference_value(env, r->buffer_ref, &buf) == napi_ok && buf) {
      bool detached = false;
      napi_is_detached_arraybuffer(env, buf, &detached);
      gone = detached || napi_detach_arraybuffer(env, buf) == napi_ok;
    }
    if (gone && r->mapped) {
      munmap(r->base, r->len);
      r->mapped = 0;
    }
    napi_delete_reference(env, r->buffer_ref);
    r->buffer_ref = NULL;
  }
  return NULL;
}

/* probe() -> { [mode]: { available, why?, detail? } } */
static napi_value js_probe(napi_env env, napi_callback_info info) {
  (void)info;
  napi_value out;
  NAPI_CALL(env, napi_create_object(env, &out));
  for (int m = 0; m < M_COUNT; m++) {
    int ok;
    char why[1536], detail[256];
    why[0] = 0;
    probe_mode((enum mode)m, &ok, why, sizeof why, detail, sizeof detail);
    napi_value o, b, s;
    NAPI_CALL(env, napi_create_object(env, &o));
    napi_get_boolean(env, ok, &b);
    napi_set_named_property(env, o, "available", b);
    if (!ok) {
      napi_create_string_utf8(env, why, NAPI_AUTO_LENGTH, &s);
      napi_set_named_property(env, o, "why", s);
    }
    if (detail[0]) {
      napi_create_string_utf8(env, detail, NAPI_AUTO_LENGTH, &s);
      napi_set_named_property(env, o, "detail", s);
    }
    napi_set_named_property(env, out, MODE_NAMES[m], o);
  }
  return out;
}

static napi_value init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"create", NULL, js_create, NULL, NULL, NULL, napi_default, NULL},
      {"arm", NULL, js_arm, NULL, NULL, NULL, napi_default, NULL},
      {"run", NULL, js_run, NULL, NULL, NULL, napi_default, NULL},
      {"harvest", NULL, js_harvest, NULL, NULL, NULL, napi_default, NULL},
      {"close", NULL, js_close, NULL, NULL, NULL, napi_default, NULL},
      {"probe", NULL, js_probe, NULL, NULL, NULL, napi_default, NULL},
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
