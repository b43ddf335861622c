// Streaming trace reader: one chunk in memory at a time (at most MAX_CHUNK_STORED + MAX_CHUNK_RAW
// bytes plus its columns), every length checked against a limit and the file size before anything
// is allocated, every checksum checked before anything is decoded.
import { openFileSource, BytesSource, type ByteSource } from './source.ts';
import { inflateRaw, brotliDecompress } from './codec.ts';
import { ADDR_LIMIT, EV_ALLOC, EV_EPOCH, EV_FETCH, EV_FREE, EV_KINDS, EV_REALLOC, EV_THREAD, TraceError } from './events.ts';
import type { EventBlock, KindCounts, TraceEvent, TraceMeta } from './events.ts';
import { allocBlock, eventAt } from './block.ts';
import {
  ALIGN_CODE_EXPLICIT, ALIGN_CODE_SHIFT, CHUNK_HEADER_BYTES, CODEC_BROTLI, CODEC_DEFLATE, CODEC_NAMES, CODEC_NONE, FILE_HEADER_BYTES, MAGIC,
  MAX_CHUNK_EVENTS, MAX_CHUNK_RAW, MAX_CHUNK_STORED, MAX_META_BYTES, MAX_VALUE_BYTES, MAX_VARINT_BYTES, REC_CHUNK, REC_END,
  SIZE_CODE_EXPLICIT, SIZE_CODE_SHIFT, TAG_KIND_MASK, TAG_VALUE, VERSION_MAJOR, crc32, cursorAfter, endRecordBytes, getU64, hex, metaProblem,
} from './format.ts';

const CORRUPT = 'the file is damaged; restore it from a copy or re-record it';
const CUT = 'the trace was cut short (copy interrupted, disk full, or the recorder was killed); re-record it';
const WRITER_BUG = 'the data passed its checksum, so granule wrote it this way: please report it with the file';

export interface BlockOptions {
  /**
   * Reuse one set of buffers for every block (default false: every block is fresh and may be
   * kept). With reuse, a block and its values are valid only until the generator resumes.
   */
  reuse?: boolean;
}

/** One chunk as the reader saw it. */
interface ChunkInfo { index: number; offset: number; rawBytes: number; storedBytes: number; codec: number }

/** Little-endian fields of a byte array, without Node's Buffer (the reader also runs in browsers). */
const u16 = (b: Uint8Array, o: number) => b[o]! | (b[o + 1]! << 8);
const u32 = (b: Uint8Array, o: number) => (b[o]! | (b[o + 1]! << 8) | (b[o + 2]! << 16) | (b[o + 3]! << 24)) >>> 0;
const sameBytes = (a: Uint8Array, b: Uint8Array) => a.length === b.length && a.every((x, i) => x === b[i]);

export class TraceReader {
  /** Opens a trace file and checks its magic, header checksum and version. */
  static open(file: string): TraceReader {
    return TraceReader.fromSource(file, openFileSource(file));
  }

  /** A trace held in memory (a fetch, a file picked in a browser); `name` stands for the path in messages. */
  static fromBytes(name: string, bytes: Uint8Array): TraceReader {
    return TraceReader.fromSource(name, new BytesSource(bytes));
  }

  private static fromSource(file: string, src: ByteSource): TraceReader {
    try {
      const size = src.size;
      const head = new Uint8Array(FILE_HEADER_BYTES);
      const got = src.read(head, FILE_HEADER_BYTES, 0);
      const magicSeen = Math.min(got, MAGIC.length);
      if (got === 0) throw new TraceError(file, { offset: 0 }, 'the file is empty, not a granule trace', 'give a file written by granule import/record');
      if (!sameBytes(head.subarray(0, magicSeen), MAGIC.subarray(0, magicSeen))) throw badMagic(file, head.subarray(0, magicSeen));
      if (got < FILE_HEADER_BYTES) {
        throw new TraceError(file, { offset: got }, `file ends inside the header (${FILE_HEADER_BYTES} bytes needed, ${got} present)`, CUT);
      }
      const major = u16(head, 8);
      const minor = u16(head, 10);
      const metaLen = u32(head, 12);
      if (metaLen > MAX_META_BYTES) {
        throw new TraceError(file, { offset: 12 }, `metadata length ${metaLen} is over the limit of ${MAX_META_BYTES} bytes`, CORRUPT);
      }
      const headerEnd = FILE_HEADER_BYTES + metaLen + 4;
      if (size < headerEnd) {
        throw new TraceError(file, { offset: size }, `file ends inside the metadata (header says ${metaLen + 4} bytes, ${size - FILE_HEADER_BYTES} present)`, CUT);
      }
      const all = new Uint8Array(headerEnd);
      if (src.read(all, headerEnd, 0) < headerEnd) throw new TraceError(file, { offset: size }, 'file shrank while being read', CUT);
      const stored = u32(all, headerEnd - 4);
      const computed = crc32(all.subarray(0, headerEnd - 4));
      if (stored !== computed) {
        throw new TraceError(file, { offset: headerEnd - 4 }, `header checksum mismatch (stored ${hex(stored)}, computed ${hex(computed)})`, CORRUPT);
      }
      // The header layout is the same in every major version, so a version check after the
      // checksum tells a newer file from a damaged one.
      if (major > VERSION_MAJOR) {
        throw new TraceError(file, { offset: 8 }, `written by a newer granule (trace format version ${major}.${minor}; this granule reads version ${VERSION_MAJOR})`, 'upgrade granule');
      }
      if (major < VERSION_MAJOR) {
        throw new TraceError(file, { offset: 8 }, `unknown trace format version ${major}.${minor} (this granule reads version ${VERSION_MAJOR})`, 'the file comes from a pre-release granule; re-record it');
      }
      let meta: unknown;
      try {
        meta = JSON.parse(new TextDecoder().decode(all.subarray(FILE_HEADER_BYTES, FILE_HEADER_BYTES + metaLen)));
      } catch (e) {
        throw new TraceError(file, { offset: FILE_HEADER_BYTES }, `metadata is not valid JSON (${(e as Error).message})`, WRITER_BUG);
      }
      const problem = metaProblem(meta);
      if (problem) throw new TraceError(file, { offset: FILE_HEADER_BYTES }, problem, WRITER_BUG);
      return new TraceReader(file, src, size, headerEnd, { major, minor }, meta as TraceMeta);
    } catch (e) {
      src.close();
      throw e;
    }
  }

  private constructor(
    readonly path: string,
    private src: ByteSource | null,
    /** the file's size in bytes */
    readonly size: number,
    private readonly dataStart: number,
    readonly version: { major: number; minor: number },
    readonly meta: TraceMeta,
  ) {
    this.consumed = dataStart;
  }

  private consumed: number;

  /**
   * Bytes of the file read so far by the most recently advanced blocks()/events() iteration: the
   * end of the last chunk yielded (the file size once the end record has been checked). For
   * progress reports against the file size.
   */
  get position(): number { return this.consumed; }

  /**
   * The trace's chunks, decoded, in order. A chunk is yielded only after its checksum and its
   * whole payload have been checked; a damaged or truncated file throws a TraceError when the
   * reader reaches the damage (after the good chunks before it). The end record is checked after
   * the last chunk, so a file cut at a chunk boundary throws too. In a block, `values` holds the
   * chunk's decompressed payload and `valueOff` points at each value inside it.
   */
  *blocks(opts: BlockOptions = {}): Generator<EventBlock> {
    for (const [block] of this.chunks(opts.reuse ?? false)) yield block;
  }

  /** Every event as an object. Convenient, but a few times slower than blocks(). */
  *events(): Generator<TraceEvent> {
    for (const b of this.blocks({ reuse: true })) {
      for (let i = 0; i < b.count; i++) yield eventAt(b, i);
    }
  }

  close(): void {
    this.src?.close();
    this.src = null;
  }

  /** @internal Chunks with their file position and sizes (for traceInfo). */
  *chunks(reuse: boolean): Generator<[EventBlock, ChunkInfo]> {
    if (!this.src) throw new Error(`${this.path}: the trace reader is closed`);
    const file = this.path;
    const src = this.src;
    const size = this.size;
    const head = new Uint8Array(Math.max(CHUNK_HEADER_BYTES, endRecordBytes(EV_KINDS)));
    const counts: KindCounts = new Array(EV_KINDS).fill(0);
    let events = 0;
    let index = 0;
    let off = this.dataStart;
    let storedBuf = new Uint8Array(0);
    let cols = allocBlock(0);
    for (;;) {
      const avail = size - off;
      if (avail <= 0) {
        const after = index === 0 ? 'after the header' : `after chunk ${index - 1}`;
        throw new TraceError(file, { offset: off }, `file ends ${after} without an end record (${events} events read)`, CUT);
      }
      const got = src.read(head, Math.min(head.length, avail), off);
      const type = head[0];
      if (type === REC_END) {
        checkEnd(file, off, head, got, size, index, events, counts);
        this.consumed = size;
        return;
      }
      if (type !== REC_CHUNK) {
        throw new TraceError(file, { offset: off }, `unknown record type ${hex(type)} where chunk ${index} or the end record should start`, CORRUPT);
      }
      if (got < CHUNK_HEADER_BYTES) {
        throw new TraceError(file, { offset: off }, `file ends inside the header of chunk ${index} (${CHUNK_HEADER_BYTES} bytes needed, ${got} present)`, CUT);
      }
      const storedHeadCrc = u32(head, 20);
      const headCrc = crc32(head.subarray(0, 20));
      if (storedHeadCrc !== headCrc) {
        throw new TraceError(file, { offset: off }, `checksum mismatch in the header of chunk ${index} (stored ${hex(storedHeadCrc)}, computed ${hex(headCrc)})`, CORRUPT);
      }
      const codec = head[1];
      const count = u32(head, 4);
      const rawLen = u32(head, 8);
      const storedLen = u32(head, 12);
      const bad = (what: string) => new TraceError(file, { offset: off }, `chunk ${index}: ${what}`, WRITER_BUG);
      if (codec > CODEC_BROTLI) {
        throw new TraceError(file, { offset: off + 1 }, `chunk ${index} uses codec ${codec}, which this granule does not know (file format ${this.version.major}.${this.version.minor})`, 'upgrade granule');
      }
      if (u16(head, 2) !== 0) throw bad(`reserved header bytes are ${hex(u16(head, 2))}, not 0`);
      if (rawLen > MAX_CHUNK_RAW) throw bad(`payload length ${rawLen} is over the limit of ${MAX_CHUNK_RAW}`);
      if (storedLen > MAX_CHUNK_STORED) throw bad(`stored length ${storedLen} is over the limit of ${MAX_CHUNK_STORED}`);
      if (count < 1 || count > MAX_CHUNK_EVENTS || count > rawLen) throw bad(`event count ${count} is impossible for a ${rawLen}-byte payload`);
      if (codec === CODEC_NONE && storedLen !== rawLen) throw bad(`stored length ${storedLen} differs from payload length ${rawLen} without compression`);
      const payloadOff = off + CHUNK_HEADER_BYTES;
      if (size - payloadOff < storedLen) {
        throw new TraceError(file, { offset: size }, `file ends inside chunk ${index} (header at offset ${off} says ${storedLen} bytes, ${size - payloadOff} present)`, CUT);
      }
      let stored: Uint8Array;
      if (reuse) {
        if (storedBuf.length < storedLen) storedBuf = new Uint8Array(Math.max(storedLen, storedBuf.length * 2));
        stored = storedBuf.subarray(0, storedLen);
      } else {
        stored = new Uint8Array(storedLen);
      }
      if (src.read(stored, storedLen, payloadOff) < storedLen) throw new TraceError(file, { offset: payloadOff }, 'file shrank while being read', CUT);
      const storedCrc = u32(head, 16);
      const crc = crc32(stored);
      if (crc !== storedCrc) {
        throw new TraceError(file, { offset: payloadOff }, `checksum mismatch in chunk ${index} (chunk at offset ${off}, ${storedLen}-byte payload; stored ${hex(storedCrc)}, computed ${hex(crc)})`, CORRUPT);
      }
      let raw: Uint8Array = stored;
      if (codec !== CODEC_NONE) {
        try {
          raw = codec === CODEC_DEFLATE ? inflateRaw(stored, rawLen) : brotliDecompress(stored, rawLen);
        } catch (e) {
          throw bad(`${CODEC_NAMES[codec]} payload does not decompress to ${rawLen} bytes (${(e as Error).message})`);
        }
        if (raw.length !== rawLen) throw bad(`${CODEC_NAMES[codec]} payload decompresses to ${raw.length} bytes, header says ${rawLen}`);
      }
      let block: EventBlock;
      if (reuse) {
        if (cols.kind.length < count) cols = allocBlock(Math.max(count, cols.kind.length * 2));
        block = {
          count, kind: cols.kind.subarray(0, count), addr: cols.addr.subarray(0, count), size: cols.size.subarray(0, count),
          arg: cols.arg.subarray(0, count), valueOff: cols.valueOff.subarray(0, count), values: raw,
        };
      } else {
        block = allocBlock(count, raw);
      }
      try {
        decodePayload(raw, count, block);
      } catch (e) {
        if (!(e instanceof PayloadError)) throw e;
        const at = codec === CODEC_NONE ? payloadOff + e.pos : off;
        throw new TraceError(file, { offset: at }, `chunk ${index}, event ${events + e.event + 1} (payload byte ${e.pos}): ${e.message}`, WRITER_BUG);
      }
      block.count = count;
      const kinds = block.kind;
      for (let i = 0; i < count; i++) counts[kinds[i]]++;
      events += count;
      this.consumed = payloadOff + storedLen;
      yield [block, { index, offset: off, rawBytes: rawLen, storedBytes: storedLen, codec }];
      index++;
      off = payloadOff + storedLen;
    }
  }
}

function checkEnd(file: string, off: number, head: Uint8Array, got: number, size: number, chunks: number, events: number, counts: KindCounts): void {
  const kinds = got >= 2 ? head[1] : EV_KINDS;
  if (kinds !== EV_KINDS) {
    throw new TraceError(file, { offset: off + 1 }, `end record counts ${kinds} event kinds; version ${VERSION_MAJOR} has ${EV_KINDS}`, CORRUPT);
  }
  const len = endRecordBytes(kinds);
  if (size - off < len) {
    throw new TraceError(file, { offset: size }, `file ends inside the end record (${len} bytes needed, ${size - off} present)`, CUT);
  }
  const view = new DataView(head.buffer, head.byteOffset, head.length);
  const stored = view.getUint32(len - 4, true);
  const computed = crc32(head.subarray(0, len - 4));
  if (stored !== computed) {
    throw new TraceError(file, { offset: off }, `checksum mismatch in the end record (stored ${hex(stored)}, computed ${hex(computed)})`, CORRUPT);
  }
  const wantChunks = view.getUint32(4, true);
  const wantEvents = getU64(view, 8);
  const wantCounts = Array.from({ length: kinds }, (_, k) => getU64(view, 16 + 8 * k));
  if (wantChunks !== chunks || wantEvents !== events || wantCounts.some((c, k) => c !== counts[k])) {
    throw new TraceError(file, { offset: off },
      `end record says ${wantChunks} chunks and ${wantEvents} events (per kind ${wantCounts.join('/')}), the file holds ${chunks} chunks and ${events} events (${counts.join('/')})`, CORRUPT);
  }
  if (off + len !== size) {
    throw new TraceError(file, { offset: off + len }, `${plural(size - off - len, 'unexpected byte')} after the end record`, 'the file was appended to or damaged; restore it from a copy or re-record it');
  }
}

const plural = (n: number, what: string) => `${n} ${what}${n === 1 ? '' : 's'}`;

function badMagic(file: string, start: Uint8Array): TraceError {
  const bytes = Array.from(start, (b) => b.toString(16).padStart(2, '0')).join(' ');
  let advice = 'give a file written by granule import/record, or use --format lackey for a valgrind log';
  if (start[0] === 0x1f && start[1] === 0x8b) advice = 'the file is gzip-compressed; gunzip it first, or give a file written by granule import/record';
  return new TraceError(file, { offset: 0 }, `bad magic: this is not a granule trace (starts with ${bytes})`, advice);
}

class PayloadError extends Error {
  constructor(readonly pos: number, readonly event: number, message: string) { super(message); }
}

// The decoder keeps its position in a local and reads one-byte varints inline; longer varints go
// through these readers, which take the position and leave the new one in `rp` (no result pairs).
let rp = 0;

function readUvarint(raw: Uint8Array, p: number, end: number, event: number): number {
  let v = 0;
  let mul = 1;
  for (let n = 0; ; n++) {
    if (p >= end) throw new PayloadError(p, event, 'payload ends inside an event');
    if (n === MAX_VARINT_BYTES) throw new PayloadError(p, event, `varint longer than ${MAX_VARINT_BYTES} bytes`);
    const b = raw[p++];
    v += (b & 0x7f) * mul;
    if (b < 0x80) break;
    mul *= 128;
  }
  if (v >= ADDR_LIMIT) throw new PayloadError(p, event, `varint ${v} is 2^53 or more`);
  rp = p;
  return v;
}

function readSvarint(raw: Uint8Array, p: number, end: number, event: number): number {
  if (p >= end) throw new PayloadError(p, event, 'payload ends inside an event');
  const b = raw[p++];
  let mag = (b >> 1) & 63;
  if (b & 0x80) {
    mag += readUvarint(raw, p, end, event) * 64;
    if (mag >= ADDR_LIMIT) throw new PayloadError(rp, event, 'address delta is 2^53 or more');
  } else {
    rp = p;
  }
  return b & 1 ? -mag : mag;
}

function badAddr(p: number, event: number, a: number): never {
  throw new PayloadError(p, event, `address ${a} is outside [0, 2^53)`);
}

function reserved(p: number, event: number, tag: number): never {
  throw new PayloadError(p, event, `reserved bits set in event tag ${hex(tag)}`);
}

/** Decodes `count` events filling `raw` exactly into the block's columns (every column written). */
function decodePayload(raw: Uint8Array, count: number, b: EventBlock): void {
  const { kind: kindCol, addr: addrCol, size: sizeCol, arg: argCol, valueOff: valCol } = b;
  const end = raw.length;
  let p = 0;
  let fetchCur = 0;
  let dataCur = 0;
  let heapCur = 0;
  for (let i = 0; i < count; i++) {
    if (p >= end) throw new PayloadError(p, i, `payload ends after ${i} of ${count} events`);
    const tag = raw[p++];
    const kind = tag & TAG_KIND_MASK;
    kindCol[i] = kind;
    if (kind <= EV_FETCH) {
      let delta: number;
      const b0 = p < end ? raw[p] : 0x80;
      if (b0 < 0x80) {
        delta = b0 & 1 ? -(b0 >> 1) : b0 >> 1;
        p++;
      } else {
        delta = readSvarint(raw, p, end, i);
        p = rp;
      }
      const fetch = kind === EV_FETCH;
      const addr = (fetch ? fetchCur : dataCur) + delta;
      if (!(addr >= 0 && addr < ADDR_LIMIT)) badAddr(p, i, addr);
      const code = tag >> SIZE_CODE_SHIFT;
      let size: number;
      if (code !== SIZE_CODE_EXPLICIT) {
        size = 1 << code;
      } else {
        size = readUvarint(raw, p, end, i);
        p = rp;
        if (size === 0) throw new PayloadError(p, i, 'access size 0');
      }
      addrCol[i] = addr;
      sizeCol[i] = size;
      argCol[i] = 0;
      if (tag & TAG_VALUE) {
        if (size > MAX_VALUE_BYTES || p + size > end) throw new PayloadError(p, i, `value of ${size} bytes does not fit in the payload`);
        valCol[i] = p;
        p += size;
      } else {
        valCol[i] = -1;
      }
      if (fetch) fetchCur = cursorAfter(addr, size);
      else dataCur = cursorAfter(addr, size);
      continue;
    }
    valCol[i] = -1;
    const high = tag >> ALIGN_CODE_SHIFT;
    switch (kind) {
      case EV_ALLOC: {
        let log = high;
        if (log === ALIGN_CODE_EXPLICIT) {
          if (p >= end) throw new PayloadError(p, i, 'payload ends inside an event');
          log = raw[p++];
          if (log > 52) throw new PayloadError(p, i, `alignment 2^${log} is over 2^52`);
        }
        const addr = heapCur + readSvarint(raw, p, end, i);
        if (!(addr >= 0 && addr < ADDR_LIMIT)) badAddr(rp, i, addr);
        const size = readUvarint(raw, rp, end, i);
        p = rp;
        addrCol[i] = addr;
        sizeCol[i] = size;
        argCol[i] = 2 ** log;
        heapCur = cursorAfter(addr, size);
        break;
      }
      case EV_FREE: {
        if (high !== 0) reserved(p, i, tag);
        const addr = heapCur + readSvarint(raw, p, end, i);
        p = rp;
        if (!(addr >= 0 && addr < ADDR_LIMIT)) badAddr(p, i, addr);
        addrCol[i] = addr;
        sizeCol[i] = 0;
        argCol[i] = 0;
        heapCur = addr;
        break;
      }
      case EV_REALLOC: {
        if (high !== 0) reserved(p, i, tag);
        const addr = heapCur + readSvarint(raw, p, end, i);
        if (!(addr >= 0 && addr < ADDR_LIMIT)) badAddr(rp, i, addr);
        const newAddr = addr + readSvarint(raw, rp, end, i);
        if (!(newAddr >= 0 && newAddr < ADDR_LIMIT)) badAddr(rp, i, newAddr);
        const size = readUvarint(raw, rp, end, i);
        p = rp;
        addrCol[i] = addr;
        sizeCol[i] = size;
        argCol[i] = newAddr;
        heapCur = cursorAfter(newAddr, size);
        break;
      }
      case EV_EPOCH:
        if (high !== 0) reserved(p, i, tag);
        addrCol[i] = 0;
        sizeCol[i] = 0;
        argCol[i] = 0;
        break;
      case EV_THREAD:
        if (high !== 0) reserved(p, i, tag);
        addrCol[i] = 0;
        sizeCol[i] = 0;
        argCol[i] = readUvarint(raw, p, end, i);
        p = rp;
        break;
      default:
        throw new PayloadError(p - 1, i, `unknown event kind ${kind} (tag ${hex(tag)})`);
    }
  }
  if (p !== end) throw new PayloadError(p, count - 1, `${plural(end - p, 'byte')} left over after the last of ${plural(count, 'event')}`);
}

/** True when the file starts with the trace magic (false for missing, short or other files). */
export function isGranuleTrace(file: string): boolean {
  let src: ByteSource | null = null;
  try {
    src = openFileSource(file);
    const buf = new Uint8Array(MAGIC.length);
    return src.read(buf, MAGIC.length, 0) === MAGIC.length && sameBytes(buf, MAGIC);
  } catch {
    return false;
  } finally {
    src?.close();
  }
}

export interface TraceInfo {
  path: string;
  /** "major.minor" */
  version: string;
  meta: TraceMeta;
  events: number;
  counts: KindCounts;
  chunks: number;
  /** File size. */
  bytes: number;
  /** Sum of the chunks' decompressed payloads. */
  rawBytes: number;
}

/** Reads and checks the whole file (every checksum, every event, the end record). */
export function traceInfo(file: string): TraceInfo {
  return infoOf(TraceReader.open(file));
}

/** traceInfo of a trace held in memory. */
export function traceInfoBytes(name: string, bytes: Uint8Array): TraceInfo {
  return infoOf(TraceReader.fromBytes(name, bytes));
}

function infoOf(r: TraceReader): TraceInfo {
  try {
    const counts: KindCounts = new Array(EV_KINDS).fill(0);
    let events = 0;
    let chunks = 0;
    let rawBytes = 0;
    for (const [b, c] of r.chunks(true)) {
      for (let i = 0; i < b.count; i++) counts[b.kind[i]]++;
      events += b.count;
      rawBytes += c.rawBytes;
      chunks++;
    }
    return { path: r.path, version: `${r.version.major}.${r.version.minor}`, meta: r.meta, events, counts, chunks, bytes: r.size, rawBytes };
  } finally {
    r.close();
  }
}
