/*
 * The CPL0 part of the granule guest: init, the exception stubs, the write-protect #PF handler
 * (the in-guest monitor), the sync service and the fault reporter. docs/guest.md tells the whole
 * story; hw/include/granule_guest.h has the numbers.
 *
 * On PVM hosts every guest CPL0 instruction is emulated (tens of microseconds per trip into CPL0),
 * so this file is written for instruction count, not elegance: the #PF fast path is 30
 * instructions, init 16, and every address is a link-time constant (the image always loads at
 * GG_IMAGE_GPA and runs at GG_GVA(GG_IMAGE_GPA), in the top 2 GiB, so every constant address is a
 * sign-extended 32-bit immediate or displacement).
 *
 * Pieces sit at fixed image offsets (.org) so that the IDT, a static blob here, can hold their
 * addresses as plain constants: gas cannot split a relocatable address into gate fields.
 */
#include "granule_guest.h"

#define CB(off) GG_GVA(GG_CB_GPA + (off))
#define IMG(off) GG_GVA(GG_IMAGE_GPA + (off))

#define OFF_INIT 0x40
#define OFF_STUBS 0x200 /* 32 exception stubs of 16 bytes */
#define OFF_SYNC 0x400
#define OFF_PF 0x440
#define OFF_TABLES 0x800

/* Vectors for which the CPU pushes an error code. */
#define ERRCODE_MASK ((1 << 8) | (1 << 10) | (1 << 11) | (1 << 12) | (1 << 13) | (1 << 14) | (1 << 17) | (1 << 21) | (1 << 29) | (1 << 30))

/* The only #PF the monitor resolves: present page, write, user mode, nothing else (no PKE, CET or
 * SGX bits can appear: the guest enables none of them). */
#define PFEC_WP_FAULT 7

	.section .kernel, "ax"
	.code64

/* Image offset 0: the entry point, then the header a host may check before loading. */
	.globl guest_entry
guest_entry:
	jmp init
	.org 8
	.quad GG_MAGIC
	.long GG_ABI_VERSION
	.long GG_PLAYER_GPA - GG_IMAGE_GPA

/*
 * Entered from the host in 64-bit mode at CPL0 (CS = GG_SEL_KCODE, paging on, CR3 = the host's
 * PML4). Installs the guest's GDT, IDT and TSS and drops to the player at CPL3 with IOPL 3 (so the
 * player's `out` exits without a trip through CPL0; see GG_TSS_LIMIT for hosts that drop IOPL)
 * and IF 0 (no interrupts are ever wanted).
 */
	.org OFF_INIT
init:
	mov $GG_GVA(GG_KSTACK_TOP), %rsp
	lea tables(%rip), %rsi
	mov $GG_GVA(GG_TABLES_GPA), %rdi
	mov $(GG_TABLES_SIZE / 8), %ecx
	cld
	rep movsq
	lgdt gdtr(%rip)
	lidt idtr(%rip)
	mov $GG_SEL_TSS, %eax
	ltr %ax
	pushq $GG_SEL_UDATA
	pushq $GG_GVA(GG_USTACK_TOP) /* pushq sign-extends its 32-bit immediate */
	pushq $0x3002 /* IOPL 3, reserved bit 1 */
	pushq $GG_SEL_UCODE
	pushq $GG_GVA(GG_PLAYER_GPA)
	iretq

/* Exception stubs: make every frame look alike (vector, error code, CPU frame) for the reporter. */
	.org OFF_STUBS
	.irp v, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
	.org OFF_STUBS + \v * 16
	.if ((ERRCODE_MASK >> \v) & 1) == 0
	pushq $0
	.endif
	pushq $\v
	jmp report
	.endr

/*
 * Vector GG_VEC_SYNC (int3 from the player when gc_sync is set). Makes PTE changes the host wrote
 * while the vCPU was stopped take effect: re-storing each listed paging-structure entry from CPL0
 * is a guest write the hypervisor sees (a shadow-paging host, like PVM, otherwise keeps using its
 * stale shadow of the entry), and the CR3 reload drops the guest TLB (enough on EPT hosts).
 * The list holds GPAs; the page-table area is mapped at GG_GVA(gpa), i.e. gpa + GG_KBASE, and
 * GG_KBASE (-2^31) is the instructions' sign-extended displacement.
 */
	.org OFF_SYNC
sync_entry:
	push %rax
	push %rcx
	push %rdx
	mov CB(GC_SYNC_COUNT), %rcx
	jrcxz 2f
1:	mov GG_GVA(GG_SYNC_GPA - 8)(, %rcx, 8), %rdx
	mov GG_KBASE(%rdx), %rax
	mov %rax, GG_KBASE(%rdx)
	loop 1b
	mov %rcx, CB(GC_SYNC_COUNT)
2:	mov %cr3, %rax
	mov %rax, %cr3
	pop %rdx
	pop %rcx
	pop %rax
	iretq

/*
 * Vector 14. Resolves a user write to a page the monitor protected (leaf PTE has PTE_SW_WP):
 * clears PTE_SW_WP, sets R/W, invlpg, logs the page in the dirty ring, and returns so the store
 * retries. A leaf whose PTE_SW_GROUP field n is non-zero belongs to a group of 2^n pages (the
 * aligned block around it, whose PTEs are adjacent in one table): the handler unprotects every
 * still-protected page of the block too, so one fault opens the whole unit. The host protects a page by setting PTE_SW_WP and clearing R/W together, so one xor
 * flips both; should R/W already be 1 the xor leaves neither set, and the retry faults again into
 * the reporter instead of looping. Exits RING_FULL after appending the last free entry; the host
 * drains, resets gc_ring_head and resumes here.
 */
	.org OFF_PF
pf_entry:
	cmpq $PFEC_WP_FAULT, (%rsp)
	jne pf_other
	push %rax
	push %rdx
	push %rcx
	mov %cr2, %rcx
	mov %rcx, %rdx
	shr $9, %rdx
	and $-8, %rdx
	movabs $GG_PT_SELF_BASE, %rax
	add %rax, %rdx /* the leaf PTE's address, through the self-referencing PML4 slot */
	mov (%rdx), %rax
	test $GG_PTE_SW_WP, %eax
	jz pf_not_ours
	xor $(GG_PTE_SW_WP | GG_PTE_RW), %rax
	mov %rax, (%rdx)
	and $-4096, %rcx
	invlpg (%rcx)
	shr $GG_PTE_SW_GROUP_SHIFT, %rax
	and $7, %eax
	jnz pf_group
pf_log:
	mov CB(GC_RING_HEAD), %rax
	mov %rcx, GG_GVA(GG_RING_GPA)(, %rax, 8)
	inc %rax
	mov %rax, CB(GC_RING_HEAD)
	incq CB(GC_PF_COUNT)
	cmp CB(GC_RING_CAP), %rax
	jae pf_ring_full
pf_return:
	pop %rcx
	pop %rdx
	pop %rax
	add $8, %rsp
	iretq
pf_ring_full:
	mov $GG_EXIT_RING_FULL, %eax
	mov $GG_EXIT_PORT, %edx
	out %eax, %dx
	jmp pf_return
/* eax = n, rdx = the faulting page's PTE, rcx = the faulting page. */
pf_group:
	push %rsi
	push %rdi
	push %rcx
	mov %eax, %ecx
	mov $8, %esi
	shl %cl, %rsi /* the group's PTE bytes, 8 << n */
	lea -1(%rsi), %rdi
	not %rdi
	and %rdi, %rdx /* its first PTE */
	add %rdx, %rsi /* and its end */
	mov (%rsp), %rcx
	shl $9, %rdi
	and %rdi, %rcx /* its first page: ~((8 << n) - 1) << 9 = ~((4096 << n) - 1) */
1:	mov (%rdx), %rax
	mov %eax, %edi
	and $(GG_PTE_P | GG_PTE_SW_WP | GG_PTE_RW), %edi
	cmp $(GG_PTE_P | GG_PTE_SW_WP), %edi
	jne 2f
	xor $(GG_PTE_SW_WP | GG_PTE_RW), %rax
	mov %rax, (%rdx)
	invlpg (%rcx)
2:	add $8, %rdx
	add $4096, %rcx
	cmp %rsi, %rdx
	jb 1b
	pop %rcx
	pop %rdi
	pop %rsi
	jmp pf_log
pf_not_ours:
	pop %rcx
	pop %rdx
	pop %rax
pf_other:
	pushq $GG_VEC_PF
	/* fall through */

/* Any other exception: copy the frame to the control block and exit FAULT, for good. */
report:
	popq CB(GC_FAULT_VECTOR)
	popq CB(GC_FAULT_ERROR)
	popq CB(GC_FAULT_RIP)
	popq CB(GC_FAULT_CS)
	popq CB(GC_FAULT_RFLAGS)
	popq CB(GC_FAULT_RSP)
	popq CB(GC_FAULT_SS)
	mov %cr2, %rax
	mov %rax, CB(GC_FAULT_CR2)
1:	mov $GG_EXIT_FAULT, %eax
	mov $GG_EXIT_PORT, %edx
	out %eax, %dx
	jmp 1b

/* GDT, IDT and TSS, copied by init to GG_GVA(GG_TABLES_GPA) (they must be writable: ltr marks the TSS
 * descriptor busy, and the image's pages are read-only). */
.macro gate addr, dpl
	.quad ((\addr) & 0xffff) | (GG_SEL_KCODE << 16) | ((0x8e | ((\dpl) << 5)) << 40) | ((((\addr) >> 16) & 0xffff) << 48)
	.quad ((\addr) >> 32) & 0xffffffff /* offset 63:32, then 32 reserved zero bits */
.endm

#define TABLE(gpa) (OFF_TABLES + (gpa) - GG_TABLES_GPA)

	.org TABLE(GG_GDT_GPA)
tables:
	.quad 0
	.quad 0x00af9a000000ffff /* GG_SEL_KCODE: 64-bit code, DPL 0 */
	.quad 0x00cf92000000ffff /* GG_SEL_KDATA */
	.quad 0x00cff2000000ffff /* GG_SEL_UDATA: DPL 3 */
	.quad 0x00affa000000ffff /* GG_SEL_UCODE: 64-bit code, DPL 3 */
	/* GG_SEL_TSS: available 64-bit TSS */
	.quad GG_TSS_LIMIT | ((GG_GVA(GG_TSS_GPA) & 0xffffff) << 16) | (0x89 << 40) | (((GG_GVA(GG_TSS_GPA) >> 24) & 0xff) << 56)
	.quad (GG_GVA(GG_TSS_GPA) >> 32) & 0xffffffff
	.quad 0

	.org TABLE(GG_IDT_GPA)
	.irp v, 0,1,2
	gate IMG(OFF_STUBS + \v * 16), 0
	.endr
	gate IMG(OFF_SYNC), 3 /* GG_VEC_SYNC */
	.irp v, 4,5,6,7,8,9,10,11,12,13
	gate IMG(OFF_STUBS + \v * 16), 0
	.endr
	gate IMG(OFF_PF), 0 /* GG_VEC_PF */
	.irp v, 15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
	gate IMG(OFF_STUBS + \v * 16), 0
	.endr

	.org TABLE(GG_TSS_GPA)
	.long 0
	.quad GG_GVA(GG_KSTACK_TOP) /* RSP0: the stack for exceptions from CPL3 */
	.fill 11, 8, 0 /* RSP1, RSP2, reserved, IST1..7, reserved */
	.word 0
	.word 104 /* the I/O permission bitmap follows */
	/* Ports 0..0x4e7 denied except the four bytes of GG_EXIT_PORT (`out %eax`), then the
	 * terminating 0xff. */
	.fill GG_EXIT_PORT / 8, 1, 0xff
	.byte 0xff & ~(0xf << (GG_EXIT_PORT % 8))
	.byte 0xff
	.org TABLE(GG_TSS_GPA) + GG_TSS_LIMIT + 1
	.org TABLE(GG_TABLES_GPA) + GG_TABLES_SIZE

gdtr:
	.word 8 * 8 - 1
	.quad GG_GVA(GG_GDT_GPA)
idtr:
	.word GG_IDT_VECTORS * 16 - 1
	.quad GG_GVA(GG_IDT_GPA)

/* The player's entry, first thing in its part of the image (GG_GVA(GG_PLAYER_GPA)). iretq leaves RSP
 * 16-byte aligned; the call makes it look like any C function's entry. */
	.section .player.entry, "ax"
	.globl player_entry
player_entry:
	call player_main
	ud2

	.section .note.GNU-stack, "", @progbits
