/*
 * granule guest ABI: the fixed guest-physical layout, the control block and the exit protocol
 * shared by the guest (hw/guest/), its test harness (hw/guest/harness.c) and the KVM addon / TS
 * side. docs/guest.md explains the protocol as a whole; this header is the authority for numbers.
 *
 * Included from C and from assembly (.S files run through the C preprocessor): everything the
 * assembler sees is a plain #define; the struct and the static asserts are C only.
 */
#ifndef GRANULE_GUEST_H
#define GRANULE_GUEST_H

/* Bumped whenever a number or a field meaning below changes; the guest reports it (gc_abi). */
#define GG_ABI_VERSION 2
/* "granuleG" little-endian: written to gc_magic by the player before exit INIT, and stored at
 * byte 8 of guest.bin so a host can check the image before loading it. */
#define GG_MAGIC 0x47656c756e617267

/* ---- Guest-physical layout of the system region (memslot 0, 16 MiB at GPA 0), and where the guest
 * sees it: like a kernel, in the upper half, at GVA GG_KBASE + GPA (GG_GVA(gpa)). The whole lower
 * canonical half (GVA 0 .. 2^47) is left to the trace; the upper half is the guest's.
 * Guest mapping per range (GVA = GG_GVA(GPA)), as the host must write it in the guest page tables:
 *   0x000000-0x000fff  not present (null page)
 *   0x001000-0x001fff  control block                        user RW, XD
 *   0x010000-0x01ffff  guest image, CPL0 part                supervisor R, executable
 *   0x020000-0x02ffff  guest image, CPL3 player              user R, executable
 *   0x030000-0x030fff  GDT, IDT, TSS (written by init)       supervisor RW, XD
 *   0x040000-0x043fff  kernel stack                          supervisor RW, XD
 *   0x048000-0x04bfff  user stack                            user RW, XD
 *   0x080000-0x0fffff  sync list (PTE addresses, host-written) supervisor R, XD
 *   0x100000-0x1fffff  dirty ring                            supervisor RW, XD
 *   0x200000-0x5fffff  batch records                         user R, XD
 *   0x600000-0x7fffff  batch value area                      user R, XD
 *   0x800000-0xffffff  guest page-table pages (host-owned)   supervisor RW, XD
 * Everything else in the region: not present. Non-leaf entries: P|RW|US (leaves decide; U/S=1 on
 * upper-half pages is fine in 4-level paging, so CPL3 reaches the user pages above).
 */
/* GVA of GPA 0: PML4[511], PDPT[510], the top 2 GiB, where Linux links its kernel. Every system
 * GVA then fits a sign-extended 32-bit immediate or displacement (gcc's -mcmodel=kernel), so the
 * CPL0 code keeps its one-instruction constant addressing: no movabs, no extra instructions. */
#define GG_KBASE 0xffffffff80000000
#define GG_GVA(gpa) (GG_KBASE + (gpa))
#define GG_SYS_SIZE 0x1000000
#define GG_CB_GPA 0x1000
#define GG_IMAGE_GPA 0x10000 /* guest.bin is loaded here; the entry point is its first byte */
#define GG_IMAGE_MAX 0x20000 /* bytes of guest.bin at most: kernel part + player part */
#define GG_PLAYER_GPA 0x20000 /* the player part of guest.bin starts here (image offset 0x10000) */
#define GG_TABLES_GPA 0x30000
#define GG_GDT_GPA 0x30000 /* 8 descriptors (the TSS one takes two) */
#define GG_IDT_GPA 0x30040 /* GG_IDT_VECTORS gates of 16 bytes */
#define GG_TSS_GPA 0x30280 /* 104-byte 64-bit TSS, then its I/O permission bitmap */
#define GG_TSS_LIMIT 261 /* 104 + 157 bitmap bytes (ports 0..0x4e7) + the 0xff terminator - 1 */
#define GG_TABLES_SIZE 0x390 /* GDT + IDT + TSS, as one blob copied by init */
#define GG_KSTACK_GPA 0x40000
#define GG_KSTACK_TOP 0x44000
#define GG_USTACK_GPA 0x48000
#define GG_USTACK_TOP 0x4c000
#define GG_SYNC_GPA 0x80000
#define GG_SYNC_MAX 0x10000 /* u64 entries that fit the sync list (512 KiB) */
#define GG_RING_GPA 0x100000
#define GG_RING_MAX 0x20000 /* u64 entries that fit the ring area (1 MiB) */
#define GG_REC_GPA 0x200000
#define GG_REC_MAX 0x40000 /* 16-byte records that fit the record area (4 MiB) */
#define GG_VAL_GPA 0x600000
#define GG_VAL_SIZE 0x200000
#define GG_PT_GPA 0x800000 /* page-table pages: the host allocates them from here up to the end */

/* Self-referencing PML4 slot. The host sets PML4[GG_PT_SELF_SLOT] = CR3 page | P | RW (supervisor,
 * not user). Then the leaf PTE of any lower-half GVA v sits at GVA
 * GG_PT_SELF_BASE + (v >> 12) * 8, which is how the #PF handler finds it in four instructions
 * instead of a 20-instruction walk (guest CPL0 code is emulated on PVM hosts). The slot takes
 * GVAs 0xffffff0000000000-0xffffff7fffffffff, next to the system region's PML4[511]; the lower
 * half is the trace's, and no other upper-half GVA is mapped. */
#define GG_PT_SELF_SLOT 510
#define GG_PT_SELF_BASE 0xffffff0000000000

/* granule_consts.h's PTE bits for the assembler, which cannot include that header. */
#define GG_PTE_P 0x1
#define GG_PTE_RW 0x2
#define GG_PTE_SW_WP 0x200
#define GG_PTE_SW_GROUP_SHIFT 52

/* Selectors of the guest's GDT. The host enters with CS = GG_SEL_KCODE and the data segments =
 * GG_SEL_KDATA (flat, base 0), so the guest's own GDT agrees with what the host loaded. */
#define GG_SEL_KCODE 0x08 /* 64-bit code, DPL 0 */
#define GG_SEL_KDATA 0x10 /* data, DPL 0 */
#define GG_SEL_UDATA 0x1b /* data, DPL 3 (index 3, RPL 3) */
#define GG_SEL_UCODE 0x23 /* 64-bit code, DPL 3 (index 4, RPL 3) */
#define GG_SEL_TSS 0x28 /* 64-bit TSS, two slots */

/* IDT: vectors 0..31 are exceptions. 14 (#PF) is the monitor. GG_VEC_SYNC (#BP, raised by
 * `int3`, gate DPL 3) is the player's one way into CPL0, the sync service (see gc_sync). Any other
 * exception, or a vector above the IDT limit (#GP), reports exit FAULT. (On the PVM host measured,
 * `int n` from CPL3 raised #UD and `syscall` stayed at CPL3; `int3` works, and is a trap, so the
 * return lands past it.) */
#define GG_IDT_VECTORS 32
#define GG_VEC_SYNC 3
#define GG_VEC_PF 14

/* ---- Exits: `out %eax, %dx` with dx = GG_EXIT_PORT, a 4-byte write of the code. A host sees
 * KVM_EXIT_IO, direction out, port GG_EXIT_PORT, size 4, count 1, data = the code. The player runs
 * with IOPL 3 and the TSS's I/O bitmap also grants GG_EXIT_PORT alone: the PVM host measured drops
 * IOPL on the way to CPL3 but honours the bitmap. */
#define GG_EXIT_PORT 0x4e0
#define GG_EXIT_BATCH_DONE 1 /* player finished the batch; gc_next == gc_start + gc_count */
#define GG_EXIT_RING_FULL 2 /* #PF handler: gc_ring_head reached gc_ring_cap; drain, reset, resume */
#define GG_EXIT_FAULT 3 /* unexpected exception: gc_fault_* hold it; resuming exits 3 again */
#define GG_EXIT_INIT 4 /* init done, player running at CPL3, waiting for the first batch */
#define GG_EXIT_BAD_BATCH 5 /* the batch or the record at gc_next is malformed; resuming re-reads
                               the batch fields and starts over */

/* Stores without ACC_VALUE write this byte to every byte they cover. */
#define GG_FILL_BYTE 0x5a

/* ---- Control block at GG_CB_GPA (user RW: the player writes its fields; so does the handler).
 * Every field is a u64 so assembly addresses it as GG_GVA(GG_CB_GPA) + GC_*; byte offsets below.
 * "host" = written by the host while the vCPU is stopped; "player" / "handler" = written by the
 * guest while it runs. */
#define GC_MAGIC 0 /* player: GG_MAGIC, set before exit INIT */
#define GC_ABI 8 /* player: GG_ABI_VERSION, set before exit INIT */
#define GC_START 16 /* host: index of the batch's first record (record i at GG_REC_GPA + 16 i) */
#define GC_COUNT 24 /* host: records in the batch; start + count <= GG_REC_MAX */
#define GC_REPEAT 32 /* host: times to play the batch over (0 counts as 1): benchmarks only */
#define GC_NEXT 40 /* player: index of the record being played (the faulting one at exits 2, 3
                      and 5); start + count at exit 1 */
#define GC_LOAD_XOR 48 /* player, at exit 1: XOR of every value loaded in the batch (see below) */
#define GC_SYNC 56 /* host sets nonzero to have the player call the sync service (int3) before
                      its next batch; the player clears it. The service re-stores the
                      gc_sync_count PTEs listed at GG_SYNC_GPA (by GPA: it reaches each at
                      GG_GVA(gpa)), then reloads CR3. */
#define GC_RING_HEAD 64 /* handler: entries written to the dirty ring; host resets it to 0 after
                           draining entries [0, head) */
#define GC_RING_CAP 72 /* host: ring capacity in entries, 1..GG_RING_MAX */
#define GC_PF_COUNT 80 /* handler: write-protect faults resolved, since boot (host may reset) */
#define GC_FAULT_VECTOR 88 /* at exit FAULT: exception vector */
#define GC_FAULT_ERROR 96 /* at exit FAULT: error code (0 for vectors without one) */
#define GC_FAULT_CR2 104 /* at exit FAULT: CR2 (meaningful for vector 14) */
#define GC_FAULT_RIP 112 /* at exit FAULT: RIP of the faulting instruction */
#define GC_FAULT_CS 120 /* at exit FAULT: CS, whose low 2 bits are the CPL that faulted */
#define GC_FAULT_RFLAGS 128 /* at exit FAULT: RFLAGS */
#define GC_FAULT_RSP 136 /* at exit FAULT: RSP at the time of the fault */
#define GC_FAULT_SS 144 /* at exit FAULT: SS */
#define GC_SYNC_COUNT 152 /* host: entries in the sync list (u64 GPAs of paging-structure entries,
                            at GG_SYNC_GPA), 0..GG_SYNC_MAX; the service sets it to 0 */
#define GC_SIZE 160

/*
 * Dirty ring entries (u64, at GG_RING_GPA + 8 i): GVA of the unprotected page | unit offset.
 * The current handler unprotects whole pages, so the low 12 bits are 0; a group-aware handler may
 * later put the unit's offset in them.
 *
 * LOAD_XOR: the player reads each record as 1, 2, 4 or 8 bytes in one mov, or as size/8 8-byte
 * movs (16..64, multiples of 8), or as size 1-byte movs (any other size); every chunk read,
 * zero-extended to 64 bits, is XORed in. A fetch (ACC_FETCH) is played as a 1-byte read.
 * Stores use the same chunks, with bytes from the value area (ACC_VALUE) or GG_FILL_BYTE.
 */

#ifndef __ASSEMBLER__
#include <stddef.h>
#include <stdint.h>
#include "granule_consts.h"

struct gg_control {
  uint64_t gc_magic;
  uint64_t gc_abi;
  uint64_t gc_start;
  uint64_t gc_count;
  uint64_t gc_repeat;
  uint64_t gc_next;
  uint64_t gc_load_xor;
  uint64_t gc_sync;
  uint64_t gc_ring_head;
  uint64_t gc_ring_cap;
  uint64_t gc_pf_count;
  uint64_t gc_fault_vector;
  uint64_t gc_fault_error;
  uint64_t gc_fault_cr2;
  uint64_t gc_fault_rip;
  uint64_t gc_fault_cs;
  uint64_t gc_fault_rflags;
  uint64_t gc_fault_rsp;
  uint64_t gc_fault_ss;
  uint64_t gc_sync_count;
};

/* A batch record, the REC_* layout of granule_consts.h. */
struct gg_record {
  uint64_t gva; /* REC_GVA */
  uint8_t kind; /* REC_KIND: ACC_* */
  uint8_t size; /* REC_SIZE_FIELD: 1..64 */
  uint16_t reserved;
  uint32_t value; /* REC_VALUE: offset of the value bytes in the value area */
};

#define GG_ASSERT_OFF(f, o) _Static_assert(offsetof(struct gg_control, f) == (o), #f " offset")
GG_ASSERT_OFF(gc_magic, GC_MAGIC);
GG_ASSERT_OFF(gc_abi, GC_ABI);
GG_ASSERT_OFF(gc_start, GC_START);
GG_ASSERT_OFF(gc_count, GC_COUNT);
GG_ASSERT_OFF(gc_repeat, GC_REPEAT);
GG_ASSERT_OFF(gc_next, GC_NEXT);
GG_ASSERT_OFF(gc_load_xor, GC_LOAD_XOR);
GG_ASSERT_OFF(gc_sync, GC_SYNC);
GG_ASSERT_OFF(gc_ring_head, GC_RING_HEAD);
GG_ASSERT_OFF(gc_ring_cap, GC_RING_CAP);
GG_ASSERT_OFF(gc_pf_count, GC_PF_COUNT);
GG_ASSERT_OFF(gc_fault_vector, GC_FAULT_VECTOR);
GG_ASSERT_OFF(gc_fault_error, GC_FAULT_ERROR);
GG_ASSERT_OFF(gc_fault_cr2, GC_FAULT_CR2);
GG_ASSERT_OFF(gc_fault_rip, GC_FAULT_RIP);
GG_ASSERT_OFF(gc_fault_cs, GC_FAULT_CS);
GG_ASSERT_OFF(gc_fault_rflags, GC_FAULT_RFLAGS);
GG_ASSERT_OFF(gc_fault_rsp, GC_FAULT_RSP);
GG_ASSERT_OFF(gc_fault_ss, GC_FAULT_SS);
GG_ASSERT_OFF(gc_sync_count, GC_SYNC_COUNT);
#undef GG_ASSERT_OFF
_Static_assert(sizeof(struct gg_control) == GC_SIZE, "control block size");
_Static_assert(sizeof(struct gg_record) == 16, "record size");
_Static_assert(sizeof(struct gg_record) == REC_SIZE && offsetof(struct gg_record, gva) == REC_GVA &&
                   offsetof(struct gg_record, kind) == REC_KIND &&
                   offsetof(struct gg_record, size) == REC_SIZE_FIELD &&
                   offsetof(struct gg_record, value) == REC_VALUE,
               "record layout matches REC_*");
_Static_assert(GG_PTE_P == PTE_P && GG_PTE_RW == PTE_RW && GG_PTE_SW_WP == PTE_SW_WP && GG_PTE_SW_GROUP_SHIFT == PTE_SW_GROUP_SHIFT, "PTE bits match granule_consts.h");
_Static_assert(GG_RING_MAX * 8 == GG_REC_GPA - GG_RING_GPA, "ring area");
_Static_assert(GG_REC_MAX * 16 == GG_VAL_GPA - GG_REC_GPA, "record area");
_Static_assert(GG_VAL_GPA + GG_VAL_SIZE == GG_PT_GPA, "value area");
_Static_assert(GG_GDT_GPA + 64 <= GG_IDT_GPA && GG_IDT_GPA + GG_IDT_VECTORS * 16 <= GG_TSS_GPA &&
                   GG_TSS_GPA + GG_TSS_LIMIT + 1 <= GG_TABLES_GPA + GG_TABLES_SIZE && GG_TABLES_SIZE % 8 == 0,
               "tables blob");
_Static_assert(GG_TSS_LIMIT == 104 + GG_EXIT_PORT / 8 + 1, "the I/O bitmap ends right after the exit port's byte");
_Static_assert(GG_SYNC_GPA + GG_SYNC_MAX * 8 == GG_RING_GPA, "sync list area");
_Static_assert(GG_KBASE == 0xffffffff80000000 && GG_SYS_SIZE <= 0x80000000,
               "the system region's GVAs must stay in the top 2 GiB (sign-extended 32-bit addressing)");
#endif

#endif
