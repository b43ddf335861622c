// Which bytes an epoch wrote, and from that the dirty units at any power-of-two granularity.
// One 4096-bit bitmap per written page is enough for every unit size: blocks below a page are
// groups of bits, blocks above a page are groups of pages. Monitoring is block-granular in the
// trace's own layout: a unit is a g-aligned block of the address space.

const PAGE = 4096;
const WORDS = PAGE / 32;

/** Granularities granule accepts: powers of two from 1 byte to 1 GiB. */
export function checkGranularity(g: number): void {
  if (!Number.isInteger(g) || g < 1 || g > 2 ** 30 || (g & (g - 1)) !== 0) {
    throw new RangeError(`granularity ${g} is not a power of two between 1 and 1073741824 bytes`);
  }
}

export class EpochBitmap {
  private readonly pages = new Map<number, Uint32Array>();
  private readonly spare: Uint32Array[] = [];
  private lastPage = -1;
  private lastBits: Uint32Array | null = null;

  /** Marks bytes [addr, addr + size) written. */
  write(addr: number, size: number): void {
    let page = Math.floor(addr / PAGE);
    let off = addr - page * PAGE;
    while (size > 0) {
      const n = Math.min(size, PAGE - off);
      setBits(this.bitsOf(page), off, n);
      size -= n;
      page++;
      off = 0;
    }
  }

  private bitsOf(page: number): Uint32Array {
    if (page === this.lastPage) return this.lastBits!;
    let bits = this.pages.get(page);
    if (!bits) {
      bits = this.spare.pop() ?? new Uint32Array(WORDS);
      this.pages.set(page, bits);
    }
    this.lastPage = page;
    this.lastBits = bits;
    return bits;
  }

  /** Pages with at least one written byte. */
  get pageCount(): number { return this.pages.size; }

  /** Distinct bytes written: the byte-exact ideal. */
  idealBytes(): number {
    let n = 0;
    for (const bits of this.pages.values()) for (let i = 0; i < WORDS; i++) n += popcount(bits[i]!);
    return n;
  }

  /** Distinct g-aligned blocks holding at least one written byte. */
  units(g: number): number {
    checkGranularity(g);
    if (g >= PAGE) {
      if (g === PAGE) return this.pages.size;
      const per = g / PAGE;
      const seen = new Set<number>();
      for (const p of this.pages.keys()) seen.add(Math.floor(p / per));
      return seen.size;
    }
    let n = 0;
    if (g >= 32) {
      const per = g / 32;
      for (const bits of this.pages.values()) {
        for (let i = 0; i < WORDS; i += per) {
          let any = 0;
          for (let k = 0; k < per; k++) any |= bits[i + k]!;
          if (any !== 0) n++;
        }
      }
      return n;
    }
    const mask = (1 << g) - 1;
    for (const bits of this.pages.values()) {
      for (let i = 0; i < WORDS; i++) {
        const w = bits[i]!;
        if (w === 0) continue;
        for (let s = 0; s < 32; s += g) if (((w >>> s) & mask) !== 0) n++;
      }
    }
    return n;
  }

  /** Forgets everything (a new epoch); keeps the bitmaps for reuse. */
  clear(): void {
    for (const bits of this.pages.values()) { bits.fill(0); this.spare.push(bits); }
    this.pages.clear();
    this.lastPage = -1;
    this.lastBits = null;
  }
}

function setBits(bits: Uint32Array, off: number, n: number): void {
  const end = off + n;
  const first = off >>> 5;
  const last = (end - 1) >>> 5;
  if (first === last) {
    const width = end - off;
    bits[first]! |= (width === 32 ? 0xffffffff : ((1 << width) - 1)) << (off & 31);
    return;
  }
  bits[first]! |= 0xffffffff << (off & 31);
  for (let i = first + 1; i < last; i++) bits[i] = 0xffffffff;
  const tail = end & 31;
  bits[last]! |= tail === 0 ? 0xffffffff : (1 << tail) - 1;
}

function popcount(x: number): number {
  x -= (x >>> 1) & 0x55555555;
  x = (x & 0x33333333) + ((x >>> 2) & 0x33333333);
  x = (x + (x >>> 4)) & 0x0f0f0f0f;
  return Math.imul(x, 0x01010101) >>> 24;
}
