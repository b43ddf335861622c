// @ts-nocheck: AssemblyScript (u64, load<T>, __heap_base), not TypeScript; tsconfig includes bench/.
// Decode-only baseline for bench/sim.bench.ts (AssemblyScript; compiled by the bench with `npx asc`
// into a temp dir, never part of the simulator build). It walks a record buffer laid out exactly
// like the simulator's batch area (REC_SIZE = 16: u64 gva @0, u8 kind @8, u8 size @9, u32 value
// offset @12), performs the same per-record loads and validation as sim/batch.ts runBatch, and folds
// gva/kind/size/offset into a checksum instead of translating, so the loop cannot be optimised away.
// This is the practical upper bound for any runBatch: it does everything except the access itself.
//
// No static data (no strings, no memory.data), so the module's memory holds only what JS copies in.

const REC_SIZE: usize = 16;
const ACC_VALUE: u32 = 8;

/** Returns a 64-byte aligned pointer to `bytes` of zeroed memory (grows memory as needed). */
export function reserve(bytes: u32): usize {
  const base: usize = (<usize>__heap_base + 63) & ~(<usize>63);
  const end = <u64>base + <u64>bytes;
  const pages = <i32>((end + 0xffff) >> 16);
  const have = memory.size();
  if (pages > have && memory.grow(pages - have) < 0) return 0;
  return base;
}

let badRecord: u32 = 0xffffffff;
/** Index of the first malformed record seen by the last decode (0xffffffff: none). */
export function lastBad(): u32 { return badRecord; }

/**
 * Decodes records [start, end) at `buf`; `valueCap` bounds value offsets as in runBatch.
 * Returns the checksum (a rotate-xor-add fold of every field).
 */
export function decode(buf: usize, start: u32, end: u32, valueCap: u32): u64 {
  badRecord = 0xffffffff;
  let h: u64 = 0x9e3779b97f4a7c15;
  for (let i = start; i < end; i++) {
    const r = buf + <usize>i * REC_SIZE;
    const gva = load<u64>(r);
    const access = <u32>load<u8>(r, 8);
    const size = <u32>load<u8>(r, 9);
    const voff = load<u32>(r, 12);
    if (size == 0 || size > 64 || (access & 3) == 3 || ((access & ACC_VALUE) != 0 && <u64>voff + size > valueCap)) {
      badRecord = i;
      return h;
    }
    h = rotl<u64>(h, 5) ^ (gva + (<u64>access << 56) + (<u64>size << 48) + <u64>voff);
  }
  return h;
}
