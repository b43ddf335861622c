// The smallest long-mode guest the addon tests run: CPL0 code in the system region at GPA 0,
// identity-mapped with 2 MiB pages, alias planes at 0x1_0000_0000 + p GiB (one 2 MiB page each),
// and a few instruction encodings for hand-written guest code.
import type { GuestMemory, KvmVcpu } from '../../src/hw/kvm.ts';

export const PORT = 0x4e0;
export const PLANE = (p: number) => 0x1_0000_0000n + (BigInt(p) << 30n);

export const le = (v: bigint, n: number) => Array.from({ length: n }, (_, i) => Number((v >> BigInt(8 * i)) & 0xffn));
export const movabsRax = (v: bigint) => [0x48, 0xb8, ...le(v, 8)];
export const movByteAtRax = (b: number) => [0xc6, 0x00, b];
/** mov dx, 0x4e0; mov eax, 1; out dx, eax */
export const outPort = [0x66, 0xba, PORT & 0xff, PORT >> 8, 0xb8, 1, 0, 0, 0, 0xef];
export const HLT = 0xf4;

/**
 * Page tables at GPA 0x1000..: GPA 0 and the first 2 MiB of planes 0..planes-1 (PDPT slot 4 + p
 * covers GPA (4 + p) GiB), each mapped 1:1 with one 2 MiB page.
 */
export function identityTables(mem: GuestMemory, planes: number): void {
  const dv = new DataView(mem.buffer);
  const entry = (at: number, v: bigint) => dv.setBigUint64(at, v, true);
  const P_RW = 3n, PS = 0x80n;
  entry(0x1000, 0x2000n | P_RW); // PML4[0] -> PDPT
  entry(0x2000, 0x3000n | P_RW); // PDPT[0] -> PD for GPA 0
  entry(0x3000, 0n | PS | P_RW);
  for (let p = 0; p < planes; p++) {
    const i = 4 + p, pd = 0x4000 + p * 0x1000;
    entry(0x2000 + i * 8, BigInt(pd) | P_RW);
    entry(pd, (BigInt(i) << 30n) | PS | P_RW);
  }
}

/** 64-bit mode at CPL0 with the tables of identityTables. */
export function longMode(vcpu: KvmVcpu): void {
  vcpu.setCpuid();
  const flat = { base: 0n, limit: 0xffffffff, present: 1, s: 1, g: 1, dpl: 0 };
  const data = { ...flat, selector: 0x10, type: 3, db: 1 };
  vcpu.setSregs({
    cs: { ...flat, selector: 0x08, type: 11, l: 1, db: 0 }, ds: data, es: data, ss: data,
    cr0: 0x80010033n, // PG WP NE ET MP PE
    cr3: 0x1000n, cr4: 0x20n /* PAE */, efer: 0x500n, // LMA LME
  });
}
