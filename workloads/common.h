/*
 * Shared helpers of granule's C workloads: argument parsing, a seeded PRNG, a checksum, and
 * counted allocation wrappers.
 *
 * The workloads must print the same line for the same arguments whether built natively or to
 * wasm32, so nothing here depends on the width of long or size_t, on addresses or on time.
 * Allocation goes through plain malloc/calloc/realloc/free (the recorders' shims route those);
 * the wrappers only count calls, so that a test can compare the counts with what a recorder saw.
 */
#ifndef GRANULE_WORKLOAD_COMMON_H
#define GRANULE_WORKLOAD_COMMON_H

#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- PRNG: splitmix64, small, fast and identical on every target ---- */

typedef struct { uint64_t s; } rng_t;

static inline uint64_t rng_next(rng_t *r) {
  uint64_t z = (r->s += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

/* Uniform in [0, n) for n >= 1; the tiny modulo bias does not matter for a workload. */
static inline uint32_t rng_below(rng_t *r, uint32_t n) { return (uint32_t)(rng_next(r) % n); }

/* Skewed toward small values: a cheap stand-in for the Zipf-like popularity of real keys. */
static inline uint32_t rng_skewed(rng_t *r, uint32_t n) { return rng_below(r, rng_below(r, n) + 1); }

/* ---- checksum: FNV-1a style mixing of 64-bit words ---- */

static inline uint64_t mix64(uint64_t h, uint64_t v) {
  h ^= v;
  h *= 0x100000001b3ULL;
  return h ^ (h >> 29);
}

static inline uint64_t mix_bytes(uint64_t h, const unsigned char *p, uint32_t n) {
  for (uint32_t i = 0; i < n; i++) h = (h ^ p[i]) * 0x100000001b3ULL;
  return h;
}

#define CHECKSUM_INIT 0xcbf29ce484222325ULL

/* ---- counted allocation ---- */

static uint64_t wl_allocs, wl_frees, wl_reallocs;

static inline void wl_oom(const char *what, uint64_t bytes) {
  fprintf(stderr, "out of memory: %s of %" PRIu64 " bytes failed\n", what, bytes);
  exit(3);
}

static inline void *wl_malloc(size_t n) {
  void *p = malloc(n);
  if (!p) wl_oom("malloc", n);
  wl_allocs++;
  return p;
}

static inline void *wl_calloc(size_t n, size_t size) {
  void *p = calloc(n, size);
  if (!p) wl_oom("calloc", (uint64_t)n * size);
  wl_allocs++;
  return p;
}

/* Never called with NULL or 0, so every call is a move-or-resize the recorders report as realloc. */
static inline void *wl_realloc(void *old, size_t n) {
  void *p = realloc(old, n);
  if (!p) wl_oom("realloc", n);
  wl_reallocs++;
  return p;
}

static inline void wl_free(void *p) {
  free(p);
  wl_frees++;
}

/* ---- command line and report ---- */

/* stdout gets a static buffer so that stdio never allocates: a recorder then sees only the
 * workload's own objects, and the counts printed by wl_finish match the recorded events. */
static char wl_stdout_buf[1024];

/* Parses NAME [SIZE] [SEED]; exits with a usage message on bad input. */
static inline void wl_args(int argc, char **argv, const char *name, uint32_t def_size, uint32_t min_size,
                    uint32_t *size, uint64_t *seed) {
  setvbuf(stdout, wl_stdout_buf, _IOFBF, sizeof wl_stdout_buf);
  *size = def_size;
  *seed = 1;
  for (int i = 1; i < argc && i <= 2; i++) {
    char *end;
    unsigned long long v = strtoull(argv[i], &end, 0);
    if (*argv[i] == '\0' || *argv[i] == '-' || *end != '\0' || (i == 1 && (v < min_size || v > 100000000ULL))) {
      fprintf(stderr, "usage: %s [SIZE] [SEED]\n  SIZE: integer %" PRIu32 "..100000000 (default %" PRIu32
              "); SEED: unsigned integer (default 1); got '%s'\n", name, min_size, def_size, argv[i]);
      exit(2);
    }
    if (i == 1) *size = (uint32_t)v;
    else *seed = v;
  }
  if (argc > 3) {
    fprintf(stderr, "usage: %s [SIZE] [SEED]: too many arguments\n", name);
    exit(2);
  }
}

/* One summary line on stdout, allocation counts on stderr (for tests comparing with a recorder). */
static inline void wl_finish(const char *name, uint32_t size, uint64_t seed, uint64_t checksum, const char *stats) {
  printf("%s size=%" PRIu32 " seed=%" PRIu64 " %s checksum=%016" PRIx64 "\n", name, size, seed, stats, checksum);
  fflush(stdout);
  fprintf(stderr, "%s allocs=%" PRIu64 " frees=%" PRIu64 " reallocs=%" PRIu64 "\n", name, wl_allocs, wl_frees,
          wl_reallocs);
}

#endif
