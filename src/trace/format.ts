// Layout of granule's binary trace file (docs/trace-format.md is the byte-exact description; keep
// the two in step), the varint helpers shared by the writer and the reader, and the argument checks
// every EventSink that stores events applies, so a bad event fails the same way everywhere.
import { ADDR_LIMIT, EV_NAMES } from './events.ts';

/**
 * First eight bytes of every trace. The non-ASCII first byte makes text tools treat the file as
 * binary and catches 7-bit transfers; CR LF catches newline conversion; 0x1A stops `type` on DOS
 * (the PNG signature's tricks).
 */
export const MAGIC = Uint8Array.of(0x89, 0x47, 0x52, 0x4e, 0x4c, 0x0d, 0x0a, 0x1a); // \x89 G R N L \r \n \x1a

export const VERSION_MAJOR = 1;
export const VERSION_MINOR = 0;

/** magic(8) major(u16) minor(u16) metaLength(u32); then the JSON and its CRC. Frozen for every major. */
export const FILE_HEADER_BYTES = 16;
export const MAX_META_BYTES = 1 << 20;

export const REC_CHUNK = 0x43; // 'C'
export const REC_END = 0x45; // 'E'

/** type(u8) codec(u8) reserved(u16) count(u32) rawLength(u32) storedLength(u32) payloadCrc(u32) headerCrc(u32) */
export const CHUNK_HEADER_BYTES = 24;

export const CODEC_NONE = 0;
export const CODEC_DEFLATE = 1;
export const CODEC_BROTLI = 2;
export const CODEC_NAMES = ['none', 'deflate', 'brotli'] as const;

/** A reader refuses larger chunks, so a corrupt length is an error rather than an out-of-memory. */
export const MAX_CHUNK_RAW = 16 << 20;
/** deflate and brotli never grow incompressible input by more than a few bytes per 16 KiB. */
export const MAX_CHUNK_STORED = MAX_CHUNK_RAW + (1 << 20);
export const MAX_CHUNK_EVENTS = 1 << 20;
/** The writer ends a chunk once its payload reaches this, whatever chunkEvents says. */
export const CHUNK_FLUSH_BYTES = 4 << 20;
/** Largest value an access may carry; with CHUNK_FLUSH_BYTES this keeps every chunk below MAX_CHUNK_RAW. */
export const MAX_VALUE_BYTES = 1 << 20;
export const DEFAULT_CHUNK_EVENTS = 65536;

/** type(u8) kinds(u8) reserved(u16) chunks(u32) events(u64) counts(kinds x u64) crc(u32) */
export const endRecordBytes = (kinds: number) => 16 + 8 * kinds + 4;

// Event tag byte: kind in bits 3:0; for accesses bit 4 = value follows and bits 7:5 = size code
// (2^code bytes, 7 = explicit varint); for alloc bits 7:4 = log2(alignment) (15 = a byte follows).
export const TAG_KIND_MASK = 0x0f;
export const TAG_VALUE = 0x10;
export const SIZE_CODE_SHIFT = 5;
export const SIZE_CODE_EXPLICIT = 7;
export const ALIGN_CODE_SHIFT = 4;
export const ALIGN_CODE_EXPLICIT = 15;
/** Size code per access size (1, 2, 4 ... 64), SIZE_CODE_EXPLICIT for every other size. */
export function sizeCode(size: number): number {
  switch (size) {
    case 1: return 0;
    case 2: return 1;
    case 4: return 2;
    case 8: return 3;
    case 16: return 4;
    case 32: return 5;
    case 64: return 6;
    default: return SIZE_CODE_EXPLICIT;
  }
}

/** Varints carry at most 53 bits: 8 groups of 7 (unsigned) or 6 + 7 x 7 (signed). */
export const MAX_VARINT_BYTES = 8;
/** tag + three varints, the largest an event can be apart from its value bytes. */
export const MAX_EVENT_BYTES = 1 + 1 + 3 * MAX_VARINT_BYTES;

/**
 * Unsigned LEB128 of an integer in [0, 2^53). Arithmetic instead of `>>>` above 2^31 because
 * bitwise operators truncate to 32 bits. Returns the position after the varint.
 */
export function putUvarint(buf: Uint8Array, pos: number, v: number): number {
  while (v >= 0x80000000) {
    buf[pos++] = (v % 128) | 0x80;
    v = Math.floor(v / 128);
  }
  while (v >= 0x80) {
    buf[pos++] = (v & 0x7f) | 0x80;
    v >>>= 7;
  }
  buf[pos++] = v;
  return pos;
}

/**
 * Signed varint for deltas in (-2^53, 2^53): sign in bit 0 of the first byte, then the magnitude
 * (6 bits in the first byte, 7 in each later one). Zigzag would need 2|d| - 1, which a double
 * cannot hold exactly above 2^53; sign and magnitude never form a number larger than |d|.
 */
export function putSvarint(buf: Uint8Array, pos: number, d: number): number {
  let sign = 0;
  if (d < 0) { sign = 1; d = -d; }
  if (d < 64) {
    buf[pos++] = (d << 1) | sign;
    return pos;
  }
  buf[pos++] = ((d % 64) << 1) | sign | 0x80;
  return putUvarint(buf, pos, Math.floor(d / 64));
}

export { crc32 } from './codec.ts';

/** u64 fields hold counts below 2^53: written as two little-endian u32 halves. */
export function putU64(view: DataView, off: number, v: number): void {
  view.setUint32(off, v % 0x100000000, true);
  view.setUint32(off + 4, Math.floor(v / 0x100000000), true);
}
export function getU64(view: DataView, off: number): number {
  return view.getUint32(off + 4, true) * 0x100000000 + view.getUint32(off, true);
}

/** Where the next access address is delta-coded from: the end of this one (sequential runs cost one byte). */
export function cursorAfter(addr: number, size: number): number {
  const end = addr + size;
  // A rounded sum is >= 2^53 exactly when the true one is, so writer and reader agree.
  return end < ADDR_LIMIT ? end : addr;
}

export function hex(v: number): string {
  return '0x' + v.toString(16);
}

// ---- argument checks (RangeError naming the event and the field) ----

function bad(where: string, n: number, kind: number, field: string, want: string, got: unknown): never {
  const shown = typeof got === 'number' && Number.isInteger(got) && got >= 0x10000 ? `${got} (${hex(got)})` : String(got);
  throw new RangeError(`${where}event ${n} (${EV_NAMES[kind]}): ${field} must be ${want}, got ${shown}`);
}

function checkAddr(where: string, n: number, kind: number, field: string, a: number): void {
  if (!(Number.isInteger(a) && a >= 0 && a < ADDR_LIMIT)) bad(where, n, kind, field, 'an integer in [0, 2^53)', a);
}

function checkCount(where: string, n: number, kind: number, field: string, v: number, min: number, max = ADDR_LIMIT - 1): void {
  if (!(Number.isInteger(v) && v >= min && v <= max)) bad(where, n, kind, field, `an integer in [${min}, ${max === ADDR_LIMIT - 1 ? '2^53' : max + 1})`, v);
}

/**
 * `where` prefixes the message (a file name and ': ', or ''); `n` is the event's 1-based number
 * in its stream.
 */
export function checkAccess(where: string, n: number, kind: number, addr: number, size: number, value: Uint8Array | undefined): void {
  if (!(kind === 0 || kind === 1 || kind === 2 || kind === 3)) {
    throw new RangeError(`${where}event ${n}: access kind must be EV_READ, EV_WRITE, EV_MODIFY or EV_FETCH (0..3), got ${kind}`);
  }
  checkAddr(where, n, kind, 'addr', addr);
  checkCount(where, n, kind, 'size', size, 1);
  if (value !== undefined) {
    if (!(value instanceof Uint8Array)) bad(where, n, kind, 'value', 'a Uint8Array', Object.prototype.toString.call(value));
    if (value.length !== size) bad(where, n, kind, 'value length', `equal to size (${size})`, value.length);
    if (size > MAX_VALUE_BYTES) bad(where, n, kind, 'size of an access with a value', `at most ${MAX_VALUE_BYTES}`, size);
  }
}

export function checkAlloc(where: string, n: number, kind: number, addr: number, size: number, align: number): void {
  checkAddr(where, n, kind, 'addr', addr);
  checkCount(where, n, kind, 'size', size, 0);
  if (!(Number.isInteger(align) && align >= 1 && align <= 2 ** 52 && Math.log2(align) % 1 === 0)) {
    bad(where, n, kind, 'align', 'a power of two from 1 to 2^52', align);
  }
}

export function checkFree(where: string, n: number, kind: number, addr: number): void {
  checkAddr(where, n, kind, 'addr', addr);
}

export function checkRealloc(where: string, n: number, kind: number, addr: number, newAddr: number, size: number): void {
  checkAddr(where, n, kind, 'addr', addr);
  checkAddr(where, n, kind, 'newAddr', newAddr);
  checkCount(where, n, kind, 'size', size, 0);
}

export function checkThread(where: string, n: number, kind: number, tid: number): void {
  checkCount(where, n, kind, 'tid', tid, 0);
}

/** What is wrong with a metadata object, or undefined. Shared by the writer (before writing) and the reader. */
export function metaProblem(meta: unknown): string | undefined {
  if (meta === null || typeof meta !== 'object' || Array.isArray(meta)) return 'metadata must be a JSON object';
  const m = meta as Record<string, unknown>;
  if (typeof m.source !== 'string' || m.source === '') return 'metadata.source must be a non-empty string';
  if (!(Number.isInteger(m.pageSize) && (m.pageSize as number) > 0)) return `metadata.pageSize must be a positive integer, got ${JSON.stringify(m.pageSize)}`;
  if (m.command !== undefined && !(Array.isArray(m.command) && m.command.every((a) => typeof a === 'string'))) {
    return 'metadata.command must be an array of strings';
  }
  if (m.recorder !== undefined && typeof m.recorder !== 'string') return 'metadata.recorder must be a string';
  if (m.created !== undefined && typeof m.created !== 'string') return 'metadata.created must be a string';
  return undefined;
}
