// A small seeded generator (mulberry32, public domain): the same numbers from the same 32-bit seed,
// for the explorer's practice problems, the randomized tests and the benchmarks.
export class Rng {
  private s: number;
  constructor(seed: number) { this.s = seed >>> 0; }
  u32(): number {
    this.s = (this.s + 0x6d2b79f5) >>> 0;
    let t = this.s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  }
  /** in [0, 1) */
  float(): number { return this.u32() / 4294967296; }
  /** integer in [lo, hi] */
  int(lo: number, hi: number): number { return lo + Math.floor(this.float() * (hi - lo + 1)); }
  chance(p: number): boolean { return this.float() < p; }
  pick<T>(a: readonly T[]): T { return a[Math.floor(this.float() * a.length)]!; }
  /** one of `items` with probability proportional to its weight */
  weighted<T>(items: readonly (readonly [T, number])[]): T {
    const total = items.reduce((s, [, w]) => s + w, 0);
    let x = this.float() * total;
    for (const [v, w] of items) { if ((x -= w) < 0) return v; }
    return items[items.length - 1]![0];
  }
  /** bigint in [lo, hi) */
  big(lo: bigint, hi: bigint): bigint {
    let r = 0n;
    for (let i = 0; i < 3; i++) r = (r << 32n) | BigInt(this.u32());
    return lo + (r % (hi - lo));
  }
  bytes(n: number): Uint8Array { return Uint8Array.from({ length: n }, () => this.u32() & 0xff); }
}
