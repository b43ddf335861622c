// The host-side allocator behind a recorded wasm program's malloc (recorder/wasm-malloc.c routes
// every call here). It places objects in the module's own linear memory, above everything the
// module used when it started, and keeps all its bookkeeping in JS so that none of its work shows
// up among the recorded loads and stores.
//
// Policy (deterministic: addresses depend only on the sequence of calls):
// - Small objects (rounded up to a multiple of 16 bytes, at most SMALL_MAX) live in per-class
//   slabs: page-aligned runs of whole 4 KiB pages cut into equal slots. A freed slot goes on its
//   class's free list and the most recently freed slot is reused first (LIFO, as glibc's tcache).
//   A class slot of s bytes at slab offset i*s is aligned to the largest power of two dividing s
//   (up to 4096), so an aligned request of alignment a is served from class roundUp(size, a).
//   Slabs are never given back.
// - Large objects take runs of whole 4 KiB pages, first fit in address order among free runs,
//   else from the top of the heap; freed runs coalesce with free neighbours, and a free run that
//   reaches the top lowers it.
// - realloc stays in place when the new size fits the slot and still uses more than half of it,
//   or (large objects) by shrinking the run or extending it into a free neighbour or the top;
//   otherwise it allocates, copies min(old, new) bytes and frees.
// - malloc(0) and realloc(p, 0) return a fresh 16-byte slot, never 0.
// - Requests the heap cannot meet (past `limit`, or the memory cannot grow) return 0, as C
//   allows, and `refusal` says why; freeing or reallocating a pointer that is not a live object
//   throws a HeapError naming the address, since the program itself is then wrong.

export const GRANULE = 16;
export const SMALL_MAX = 2048;
export const RUN_PAGE = 4096;
export const WASM_PAGE = 65536;
/** Largest alignment served; larger requests are refused (return 0). */
export const MAX_ALIGN = 1 << 24;
/** The alignment a plain malloc gives (max_align_t on wasm32 is 16, for long double). */
export const DEFAULT_ALIGN = 16;

const SLAB_MIN_SLOTS = 8;
const ADDR_SPACE = 2 ** 32;

export class HeapError extends Error {
  constructor(readonly addr: number, message: string) {
    super(message);
    this.name = 'HeapError';
  }
}

export interface WasmHeapOptions {
  /** Lowest address the heap may use (rounded up to 4 KiB); must be above all the module's own data. */
  base: number;
  /** Highest address (exclusive) the heap may use; default 2^32. */
  limit?: number;
}

interface SizeClass {
  slot: number;
  slabBytes: number;
  slabSlots: number;
  /** The slab being carved and how many of its slots are handed out; -1: none yet. */
  slab: number;
  carved: number;
  free: number[];
}

interface Run {
  addr: number;
  size: number;
}

const hex = (n: number) => `0x${n.toString(16)}`;
const roundUp = (n: number, a: number) => Math.ceil(n / a) * a;
const isPow2 = (n: number) => Number.isInteger(n) && n > 0 && (n & (n - 1)) === 0 && n <= 2 ** 30;

export class WasmHeap {
  readonly base: number;
  readonly limit: number;
  /** Why the last request that returned 0 was refused. */
  refusal: string | undefined;

  private top: number;
  private readonly classes = new Map<number, SizeClass>();
  /** Free page runs (large objects only), sorted by address, never adjacent to each other. */
  private readonly runs: Run[] = [];
  /** Live objects: address -> requested size, and capacity (slot or run bytes). */
  private readonly sizes = new Map<number, number>();
  private readonly caps = new Map<number, number>();
  /** Addresses once handed out and since freed, to tell a double free from a wild pointer. */
  private readonly freed = new Set<number>();
  private liveBytes = 0;

  constructor(private readonly memory: WebAssembly.Memory, opts: WasmHeapOptions) {
    this.base = roundUp(Math.max(opts.base, RUN_PAGE), RUN_PAGE);
    this.limit = Math.min(opts.limit ?? ADDR_SPACE, ADDR_SPACE);
    if (this.base >= this.limit) throw new RangeError(`wasm heap: base ${hex(this.base)} is not below the limit ${hex(this.limit)}`);
    this.top = this.base;
  }

  /** Address just past the highest byte the heap has ever handed out or holds free. */
  get end(): number {
    return this.top;
  }
  get liveObjects(): number {
    return this.sizes.size;
  }
  /** Sum of the requested sizes of live objects. */
  get live(): number {
    return this.liveBytes;
  }
  /** Requested size of the live object at `ptr`, or undefined. */
  sizeOf(ptr: number): number | undefined {
    return this.sizes.get(ptr);
  }

  malloc(size: number): number {
    return this.alloc(size, DEFAULT_ALIGN);
  }

  alignedAlloc(align: number, size: number): number {
    if (!isPow2(align)) return this.refuse(`alignment ${align} is not a power of two`);
    if (align > MAX_ALIGN) return this.refuse(`alignment ${align} is above the largest served (${MAX_ALIGN})`);
    return this.alloc(size, Math.max(align, DEFAULT_ALIGN));
  }

  calloc(n: number, size: number): number {
    const total = n * size;
    if (total >= ADDR_SPACE) return this.refuse(`calloc(${n}, ${size}) overflows 32 bits`);
    const p = this.alloc(total, DEFAULT_ALIGN);
    // Reused slots and runs hold old data; only memory fresh from memory.grow is known zero.
    if (p) new Uint8Array(this.memory.buffer, p, total).fill(0);
    return p;
  }

  /** realloc(0, n) is malloc(n). On refusal the old object is untouched and 0 is returned. */
  realloc(ptr: number, size: number): number {
    if (ptr === 0) return this.malloc(size);
    const old = this.sizes.get(ptr);
    if (old === undefined) throw this.badPointer('realloc', ptr);
    const cap = this.caps.get(ptr)!;
    if (size >= ADDR_SPACE) return this.refuse(`cannot allocate ${size} bytes`);
    if (cap <= SMALL_MAX) {
      if (size <= cap && Math.max(size, 1) * 2 > cap) return this.resized(ptr, old, size);
    } else if (size > SMALL_MAX && this.resizeRun(ptr, cap, roundUp(size, RUN_PAGE))) {
      return this.resized(ptr, old, size);
    }
    const q = this.alloc(size, DEFAULT_ALIGN);
    if (!q) return 0;
    const bytes = new Uint8Array(this.memory.buffer);
    bytes.copyWithin(q, ptr, ptr + Math.min(old, size));
    this.free(ptr);
    return q;
  }

  free(ptr: number): void {
    if (ptr === 0) return;
    const size = this.sizes.get(ptr);
    if (size === undefined) throw this.badPointer('free', ptr);
    const cap = this.caps.get(ptr)!;
    this.sizes.delete(ptr);
    this.caps.delete(ptr);
    this.freed.add(ptr);
    this.liveBytes -= size;
    if (cap <= SMALL_MAX) this.classes.get(cap)!.free.push(ptr);
    else this.releaseRun(ptr, cap);
  }

  private resized(ptr: number, old: number, size: number): number {
    this.sizes.set(ptr, size);
    this.liveBytes += size - old;
    return ptr;
  }

  private badPointer(op: string, ptr: number): HeapError {
    const what = this.freed.has(ptr)
      ? `${op}(${hex(ptr)}): the object at ${hex(ptr)} was already freed (double free or use after free)`
      : `${op}(${hex(ptr)}): ${hex(ptr)} is not an address malloc returned`;
    return new HeapError(ptr, `${what}; the recorded program has a memory bug`);
  }

  private refuse(why: string): number {
    this.refusal = why;
    return 0;
  }

  private alloc(size: number, align: number): number {
    if (!(size >= 0) || size >= ADDR_SPACE) return this.refuse(`cannot allocate ${size} bytes`);
    const slot = roundUp(Math.max(size, 1), Math.max(align, GRANULE));
    let p: number;
    if (slot <= SMALL_MAX && align <= RUN_PAGE) {
      p = this.allocSlot(slot);
      if (!p) return 0;
      this.caps.set(p, slot);
    } else {
      const bytes = roundUp(Math.max(size, 1), RUN_PAGE);
      p = this.allocRun(bytes, Math.max(align, RUN_PAGE));
      if (!p) return 0;
      this.caps.set(p, bytes);
    }
    this.sizes.set(p, size);
    this.freed.delete(p);
    this.liveBytes += size;
    return p;
  }

  private allocSlot(slot: number): number {
    let c = this.classes.get(slot);
    if (!c) {
      const slabBytes = roundUp(slot * SLAB_MIN_SLOTS, RUN_PAGE);
      c = { slot, slabBytes, slabSlots: Math.floor(slabBytes / slot), slab: -1, carved: 0, free: [] };
      this.classes.set(slot, c);
    }
    if (c.free.length) return c.free.pop()!;
    if (c.slab < 0 || c.carved === c.slabSlots) {
      const slab = this.allocRun(c.slabBytes, RUN_PAGE);
      if (!slab) return 0;
      c.slab = slab;
      c.carved = 0;
    }
    return c.slab + c.slot * c.carved++;
  }

  /** First fit in address order among free runs, else from the top. */
  private allocRun(bytes: number, align: number): number {
    for (let i = 0; i < this.runs.length; i++) {
      const r = this.runs[i];
      const start = roundUp(r.addr, align);
      if (start + bytes > r.addr + r.size) continue;
      const tail = r.addr + r.size - (start + bytes);
      const pieces: Run[] = [];
      if (start > r.addr) pieces.push({ addr: r.addr, size: start - r.addr });
      if (tail > 0) pieces.push({ addr: start + bytes, size: tail });
      this.runs.splice(i, 1, ...pieces);
      return start;
    }
    const start = roundUp(this.top, align);
    if (!this.ensure(start + bytes, bytes)) return 0;
    if (start > this.top) this.insertRun(this.top, start - this.top);
    this.top = start + bytes;
    return start;
  }

  /** Makes [.., end) usable: within the limit and backed by linear memory. */
  private ensure(end: number, request: number): boolean {
    if (end > this.limit) {
      this.refuse(`cannot allocate ${request} bytes: the heap would reach ${hex(end)}, past its limit ${hex(this.limit)}`);
      return false;
    }
    const have = this.memory.buffer.byteLength;
    if (end <= have) return true;
    const pages = Math.ceil((end - have) / WASM_PAGE);
    try {
      this.memory.grow(pages);
    } catch {
      this.refuse(
        `cannot allocate ${request} bytes: linear memory cannot grow from ${have / WASM_PAGE} to ${have / WASM_PAGE + pages} ` +
          `wasm pages (the module's declared maximum or the engine's limit; link with a larger -sMAXIMUM_MEMORY)`,
      );
      return false;
    }
    return true;
  }

  /** Changes a large object's run to `bytes` in place if it can. */
  private resizeRun(ptr: number, cap: number, bytes: number): boolean {
    if (bytes === cap) return true;
    if (bytes < cap) {
      this.caps.set(ptr, bytes);
      this.releaseRun(ptr + bytes, cap - bytes);
      return true;
    }
    const end = ptr + cap;
    const extra = bytes - cap;
    if (end === this.top) {
      if (!this.ensure(ptr + bytes, bytes)) {
        this.refusal = undefined; // moving may still succeed
        return false;
      }
      this.top = ptr + bytes;
    } else {
      const i = this.runs.findIndex((r) => r.addr === end);
      if (i < 0 || this.runs[i].size < extra) return false;
      const r = this.runs[i];
      if (r.size === extra) this.runs.splice(i, 1);
      else this.runs[i] = { addr: r.addr + extra, size: r.size - extra };
    }
    this.caps.set(ptr, bytes);
    return true;
  }

  private releaseRun(addr: number, size: number): void {
    const i = this.insertRun(addr, size);
    const last = this.runs[i];
    if (i === this.runs.length - 1 && last.addr + last.size === this.top) {
      this.runs.pop();
      this.top = last.addr;
    }
  }

  /** Inserts a free run, merging with neighbours; returns its index. */
  private insertRun(addr: number, size: number): number {
    let lo = 0;
    let hi = this.runs.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (this.runs[mid].addr < addr) lo = mid + 1;
      else hi = mid;
    }
    let i = lo;
    const run: Run = { addr, size };
    const next = this.runs[i];
    if (next && addr + size === next.addr) {
      run.size += next.size;
      this.runs.splice(i, 1);
    }
    const prev = this.runs[i - 1];
    if (prev && prev.addr + prev.size === addr) {
      prev.size += run.size;
      return i - 1;
    }
    this.runs.splice(i, 0, run);
    return i;
  }
}
