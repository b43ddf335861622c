// Size classes and the vocabulary shared by the heap allocators (spread and packed), the space that
// maps their decisions into an MMU, and the retargeter. Nothing here touches an MMU: allocators
// decide addresses and frames and say what must be mapped; the space does the mapping.

export const PAGE = 4096;
/** Spread slot sizes are the powers of two from MIN_CLASS to PAGE. */
export const MIN_CLASS = 64;
/** K of the smallest class, and so the number of alias planes (slot j of any frame uses plane j). */
export const MAX_PLANES = PAGE / MIN_CLASS;
export const SPREAD_CLASSES: readonly number[] = [64, 128, 256, 512, 1024, 2048, 4096];

/**
 * Packed (traditional) size classes: 16-byte steps up to 128, then four classes per power of two
 * (the usual segregated-fit spacing: at most 25% internal waste above 128) up to a page.
 */
export const PACKED_CLASSES: readonly number[] = (() => {
  const c: number[] = [];
  for (let s = 16; s <= 128; s += 16) c.push(s);
  for (let p = 128; p < PAGE; p *= 2) for (let q = 1; q <= 4; q++) c.push(p + (q * p) / 4);
  return c;
})();

/** The alignment plain malloc promises on x86-64 glibc and in the wasm recorder. */
export const MALLOC_ALIGN = 16;

/**
 * Highest address (exclusive) an allocator hands out: the lower canonical half of a 48-bit
 * (4-level paging) address space, so every address the layouts produce is a valid user GVA.
 */
export const GVA_LIMIT = 2 ** 47;

/** Smallest spread class >= size (size 0 -> 64); null when size > 4096 (a large object). */
export function spreadClassOf(size: number): number | null {
  if (size <= MIN_CLASS) return MIN_CLASS;
  if (size > PAGE) return null;
  return 2 ** Math.ceil(Math.log2(size));
}

// Index by ceil(size / 16): the first packed class holding that many 16-byte granules.
const PACKED_BY_GRANULE: Uint8Array = (() => {
  const t = new Uint8Array(PAGE / 16 + 1);
  let ci = 0;
  for (let n = 0; n <= PAGE / 16; n++) {
    while (PACKED_CLASSES[ci]! < n * 16) ci++;
    t[n] = ci;
  }
  return t;
})();

/** Smallest packed class >= size (size 0 -> 16); null when size > 4096. */
export function packedClassOf(size: number): number | null {
  if (size > PAGE) return null;
  return PACKED_CLASSES[PACKED_BY_GRANULE[Math.ceil(size / 16)]!]!;
}

/**
 * What an allocator asks the space to map. Frames are indexes into a frame pool shared by the whole
 * heap (0, 1, 2, ... in order of first use; the space turns them into memory).
 * - slab, spread: a fresh frame for class cls; vpages[j] = GVA of V(frame, j) for j < slots
 *   (slots = K = 4096 / cls). Packed: one page of cells (slots = cells per page, vpages = [its GVA]).
 * - large: ordinary pages, gva + i * 4096 -> frames[i].
 */
export type MapRequest =
  | { kind: 'slab'; frame: number; cls: number; slots: number; vpages: number[] }
  | { kind: 'large'; gva: number; frames: number[] };

/**
 * Where an object lives. cls is null for a large object (slot -1, frame = its first frame).
 * Spread: slot is j in V(frame, j). Packed: slot is the cell index within the class page.
 */
export interface Placement {
  readonly addr: number;
  readonly size: number;
  readonly cls: number | null;
  readonly frame: number;
  readonly slot: number;
}

export interface HeapAllocator {
  readonly layout: 'spread' | 'packed';
  /** alloc(size, align) -> placement; map requests for new frames go to onMap before alloc returns. */
  alloc(size: number, align: number): Placement;
  /** Throws on an unknown address, an interior address or a double free, naming it. */
  free(addr: number): void;
  /**
   * A new placement unless the new size keeps the object's class (small) or page count (large):
   * then the same address with the new size. The caller copies min(old, new) bytes when it moves.
   */
  realloc(addr: number, size: number): Placement;
  /** The live object containing byte addr, or undefined. */
  lookup(addr: number): Placement | undefined;
  readonly framesUsed: number;
  readonly vpagesUsed: number;
  readonly liveObjects: number;
  readonly liveBytes: number;
}

/** Options both allocators take. */
export interface HeapOptions {
  /** GVA where small objects go, 4 KiB aligned. */
  heapBase: number;
  /** GVA where large objects (ordinary page runs) go, 4 KiB aligned; must not meet the small region. */
  largeBase: number;
  onMap: (r: MapRequest) => void;
  /** Frames the pool holds; allocation past it throws a RangeError. Default: unlimited. */
  maxFrames?: number;
}

export function hex(n: number): string {
  return `0x${n.toString(16)}`;
}

export function isPow2(n: number): boolean {
  return Number.isInteger(n) && n >= 1 && 2 ** Math.round(Math.log2(n)) === n;
}
