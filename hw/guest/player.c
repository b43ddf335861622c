/*
 * The trace player: CPL3 code that performs a batch's accesses as real loads and stores of the
 * recorded sizes and values, so the guest MMU (and the #PF monitor) see exactly what the trace
 * did. It runs natively even on PVM hosts, and leaves the guest only with `out` (IOPL 3) at the end
 * of a batch or for a malformed one. Chunking and LOAD_XOR are defined in granule_guest.h.
 *
 * The player's pages are user read-only: no writable globals (the link fails if any appear); all
 * state lives in registers, on the user stack, or in the control block.
 */
#include "granule_guest.h"

/* The guest sees its system region in the upper half (GG_GVA); the lower half is the trace's. */
#define CB ((volatile struct gg_control *)GG_GVA(GG_CB_GPA))
#define RECORDS ((const volatile struct gg_record *)GG_GVA(GG_REC_GPA))
#define VALUES ((const volatile uint8_t *)GG_GVA(GG_VAL_GPA))

static const uint8_t fill[64] = {
#define F8 GG_FILL_BYTE, GG_FILL_BYTE, GG_FILL_BYTE, GG_FILL_BYTE, GG_FILL_BYTE, GG_FILL_BYTE, GG_FILL_BYTE, GG_FILL_BYTE
    F8, F8, F8, F8, F8, F8, F8, F8,
#undef F8
};

static inline void exit_with(uint32_t code) {
  /* "memory": the host reads and writes the control block and the batch during the exit. */
  __asm__ volatile("outl %0, %w1" : : "a"(code), "Nd"(GG_EXIT_PORT) : "memory");
}

static inline uint64_t rd(const void *p, unsigned size) {
  uint64_t v = 0;
  __builtin_memcpy(&v, p, size);
  return v;
}

/* Loads: every chunk through a volatile pointer of the chunk's width, so the compiler keeps the
 * exact size and count of memory accesses. */
static uint64_t load(uintptr_t gva, unsigned size) {
  switch (size) {
  case 1: return *(volatile uint8_t *)gva;
  case 2: return *(volatile uint16_t *)gva;
  case 4: return *(volatile uint32_t *)gva;
  case 8: return *(volatile uint64_t *)gva;
  }
  uint64_t x = 0;
  if ((size & 7) == 0) {
    for (unsigned k = 0; k < size; k += 8) x ^= *(volatile uint64_t *)(gva + k);
  } else {
    for (unsigned k = 0; k < size; k++) x ^= *(volatile uint8_t *)(gva + k);
  }
  return x;
}

static void store(uintptr_t gva, unsigned size, const uint8_t *v) {
  switch (size) {
  case 1: *(volatile uint8_t *)gva = v[0]; return;
  case 2: *(volatile uint16_t *)gva = (uint16_t)rd(v, 2); return;
  case 4: *(volatile uint32_t *)gva = (uint32_t)rd(v, 4); return;
  case 8: *(volatile uint64_t *)gva = rd(v, 8); return;
  }
  if ((size & 7) == 0) {
    for (unsigned k = 0; k < size; k += 8) *(volatile uint64_t *)(gva + k) = rd(v + k, 8);
  } else {
    for (unsigned k = 0; k < size; k++) *(volatile uint8_t *)(gva + k) = v[k];
  }
}

/* Plays records [start, start + count) once; returns the XOR of the loaded chunks, or sets *bad
 * and stops at a malformed record (gc_next names it). */
static uint64_t play(uint64_t start, uint64_t count, int *bad) {
  uint64_t x = 0;
  for (uint64_t i = start; i < start + count; i++) {
    CB->gc_next = i;
    const volatile struct gg_record *r = &RECORDS[i];
    uintptr_t gva = r->gva;
    unsigned kind = r->kind, size = r->size;
    if (size - 1u >= 64u) {
      *bad = 1;
      return x;
    }
    switch (kind & ACC_KIND_MASK) {
    case ACC_READ: x ^= load(gva, size); break;
    case ACC_FETCH: x ^= load(gva, 1); break;
    case ACC_WRITE: {
      const uint8_t *v = fill;
      if (kind & ACC_VALUE) {
        uint32_t off = r->value;
        if (off > GG_VAL_SIZE - size) {
          *bad = 1;
          return x;
        }
        v = (const uint8_t *)(VALUES + off);
      }
      store(gva, size, v);
      break;
    }
    default: *bad = 1; return x;
    }
  }
  return x;
}

__attribute__((noreturn)) void player_main(void);

void player_main(void) {
  CB->gc_magic = GG_MAGIC;
  CB->gc_abi = GG_ABI_VERSION;
  exit_with(GG_EXIT_INIT);
  for (;;) {
    if (CB->gc_sync) {
      CB->gc_sync = 0;
      __asm__ volatile("int3" : : : "memory"); /* GG_VEC_SYNC */
    }
    uint64_t start = CB->gc_start, count = CB->gc_count, repeat = CB->gc_repeat;
    if (repeat == 0) repeat = 1;
    CB->gc_next = start;
    if (start > GG_REC_MAX || count > GG_REC_MAX - start) {
      exit_with(GG_EXIT_BAD_BATCH);
      continue;
    }
    uint64_t x = 0;
    int bad = 0;
    for (uint64_t p = 0; p < repeat && !bad; p++) x ^= play(start, count, &bad);
    if (bad) {
      exit_with(GG_EXIT_BAD_BATCH);
      continue;
    }
    CB->gc_load_xor = x;
    CB->gc_next = start + count;
    exit_with(GG_EXIT_BATCH_DONE);
  }
}
