// Streaming trace writer: events are encoded into one chunk buffer (bounded by chunkEvents and
// CHUNK_FLUSH_BYTES), each full chunk is compressed and written with synchronous I/O, and the file
// appears under its name only when close() has written the end record and synced it.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { randomBytes } from 'node:crypto';
import * as zlib from 'node:zlib';
import { ADDR_LIMIT, EV_ALLOC, EV_EPOCH, EV_FETCH, EV_FREE, EV_KINDS, EV_REALLOC, EV_THREAD } from './events.ts';
import type { AccessKind, EventSink, KindCounts, TraceMeta } from './events.ts';
import { syncDir, abortOnExit, finished } from '../fsync.ts';
import {
  ALIGN_CODE_EXPLICIT, ALIGN_CODE_SHIFT, CHUNK_FLUSH_BYTES, CHUNK_HEADER_BYTES, CODEC_BROTLI, CODEC_DEFLATE, CODEC_NAMES,
  CODEC_NONE, DEFAULT_CHUNK_EVENTS, FILE_HEADER_BYTES, MAGIC, MAX_CHUNK_EVENTS, MAX_EVENT_BYTES, MAX_META_BYTES,
  MAX_VALUE_BYTES, REC_CHUNK, REC_END, SIZE_CODE_EXPLICIT, SIZE_CODE_SHIFT, TAG_VALUE, VERSION_MAJOR, VERSION_MINOR,
  checkAccess, checkAlloc, checkFree, checkRealloc, checkThread, crc32, cursorAfter, endRecordBytes, metaProblem,
  putSvarint, putU64, putUvarint, sizeCode,
} from './format.ts';

export type Codec = 'none' | 'deflate' | 'brotli';

export interface WriterOptions {
  /** Compression of each chunk's payload (default 'deflate'). */
  codec?: Codec;
  /** Events per chunk (default 65536, at most 2^20). A chunk also ends once its payload reaches 4 MiB. */
  chunkEvents?: number;
  /** Compression level: deflate 0..9 (default 1), brotli 0..11 (default 4). */
  level?: number;
}

export interface TraceSummary {
  path: string;
  events: number;
  counts: KindCounts;
  chunks: number;
  /** Size of the finished file. */
  bytes: number;
}

// Levels chosen by throughput (see docs/trace-format.md, "Compression"): deflate 1 keeps most of
// level 6's ratio on event payloads at several times its speed; brotli above 5 is far slower.
const DEFAULT_LEVEL = { none: 0, deflate: 1, brotli: 4 } as const;


export class TraceWriter implements EventSink {
  /** Starts a trace at `path`; the events go to a temp file beside it until close(). */
  static create(file: string, meta: TraceMeta, opts: WriterOptions = {}): TraceWriter {
    const problem = metaProblem(meta);
    if (problem) throw new TypeError(`${file}: ${problem}`);
    const codec = opts.codec ?? 'deflate';
    const codecId = CODEC_NAMES.indexOf(codec);
    if (codecId < 0) throw new RangeError(`${file}: codec must be one of ${CODEC_NAMES.join(', ')}, got ${String(codec)}`);
    const chunkEvents = opts.chunkEvents ?? DEFAULT_CHUNK_EVENTS;
    if (!(Number.isInteger(chunkEvents) && chunkEvents >= 1 && chunkEvents <= MAX_CHUNK_EVENTS)) {
      throw new RangeError(`${file}: chunkEvents must be an integer from 1 to ${MAX_CHUNK_EVENTS}, got ${chunkEvents}`);
    }
    const level = opts.level ?? DEFAULT_LEVEL[codec];
    const maxLevel = codec === 'brotli' ? 11 : codec === 'deflate' ? 9 : 0;
    if (!(Number.isInteger(level) && level >= 0 && level <= maxLevel)) {
      throw new RangeError(`${file}: level for codec ${codec} must be an integer from 0 to ${maxLevel}, got ${level}`);
    }
    const json = Buffer.from(JSON.stringify(meta), 'utf8');
    if (json.length > MAX_META_BYTES) throw new RangeError(`${file}: metadata is ${json.length} bytes as JSON; the limit is ${MAX_META_BYTES}`);

    const tmp = path.join(path.dirname(file), `.${path.basename(file)}.${process.pid}-${randomBytes(4).toString('hex')}.tmp`);
    let fd: number;
    try {
      fd = fs.openSync(tmp, 'wx');
    } catch (e) {
      throw new Error(`${file}: cannot create the trace: ${(e as Error).message}`, { cause: e });
    }
    const w = new TraceWriter(file, tmp, fd, codecId, level, chunkEvents);
    try {
      const head = Buffer.alloc(FILE_HEADER_BYTES + json.length + 4);
      head.set(MAGIC, 0);
      head.writeUInt16LE(VERSION_MAJOR, 8);
      head.writeUInt16LE(VERSION_MINOR, 10);
      head.writeUInt32LE(json.length, 12);
      head.set(json, FILE_HEADER_BYTES);
      head.writeUInt32LE(crc32(head.subarray(0, FILE_HEADER_BYTES + json.length)), FILE_HEADER_BYTES + json.length);
      w.write(head);
    } catch (e) {
      w.abort();
      throw e;
    }
    abortOnExit(w);
    return w;
  }

  private buf = Buffer.alloc(64 * 1024);
  private pos = 0;
  private inChunk = 0;
  // Delta bases, reset at each chunk so chunks decode independently.
  private fetchCur = 0;
  private dataCur = 0;
  private heapCur = 0;
  private total = 0;
  private readonly kindCounts: KindCounts = new Array(EV_KINDS).fill(0);
  private chunks = 0;
  private bytes = 0;
  private state: 'open' | 'closed' | 'aborted' = 'open';
  private readonly where: string;

  private constructor(
    readonly path: string,
    private readonly tmp: string,
    private fd: number,
    private readonly codec: number,
    private readonly level: number,
    private readonly chunkEvents: number,
  ) {
    this.where = `${path}: `;
  }

  get events(): number { return this.total; }
  get counts(): KindCounts { return this.kindCounts.slice(); }

  access(kind: AccessKind, addr: number, size: number, value?: Uint8Array): void {
    if (!((kind === 0 || kind === 1 || kind === 2 || kind === 3) && Number.isInteger(addr) && addr >= 0 && addr < ADDR_LIMIT &&
        Number.isInteger(size) && size >= 1 && size < ADDR_LIMIT &&
        (value === undefined || (value instanceof Uint8Array && value.length === size && size <= MAX_VALUE_BYTES)))) {
      checkAccess(this.where, this.total + 1, kind, addr, size, value);
    }
    const room = value === undefined ? MAX_EVENT_BYTES : MAX_EVENT_BYTES + size;
    if (this.pos + room > this.buf.length || this.state !== 'open') this.reserve(room);
    const buf = this.buf;
    let pos = this.pos;
    const code = sizeCode(size);
    buf[pos++] = kind | (value === undefined ? 0 : TAG_VALUE) | (code << SIZE_CODE_SHIFT);
    if (kind === EV_FETCH) {
      pos = putSvarint(buf, pos, addr - this.fetchCur);
      this.fetchCur = cursorAfter(addr, size);
    } else {
      pos = putSvarint(buf, pos, addr - this.dataCur);
      this.dataCur = cursorAfter(addr, size);
    }
    if (code === SIZE_CODE_EXPLICIT) pos = putUvarint(buf, pos, size);
    if (value !== undefined) {
      if (size <= 16) for (let i = 0; i < size; i++) buf[pos + i] = value[i];
      else buf.set(value, pos);
      pos += size;
    }
    this.pos = pos;
    this.kindCounts[kind]++;
    this.done();
  }

  alloc(addr: number, size: number, align: number): void {
    checkAlloc(this.where, this.total + 1, EV_ALLOC, addr, size, align);
    this.reserve(MAX_EVENT_BYTES);
    const log = Math.round(Math.log2(align));
    const buf = this.buf;
    let pos = this.pos;
    if (log < ALIGN_CODE_EXPLICIT) {
      buf[pos++] = EV_ALLOC | (log << ALIGN_CODE_SHIFT);
    } else {
      buf[pos++] = EV_ALLOC | (ALIGN_CODE_EXPLICIT << ALIGN_CODE_SHIFT);
      buf[pos++] = log;
    }
    pos = putSvarint(buf, pos, addr - this.heapCur);
    pos = putUvarint(buf, pos, size);
    this.heapCur = cursorAfter(addr, size);
    this.pos = pos;
    this.kindCounts[EV_ALLOC]++;
    this.done();
  }

  free(addr: number): void {
    checkFree(this.where, this.total + 1, EV_FREE, addr);
    this.reserve(MAX_EVENT_BYTES);
    this.buf[this.pos] = EV_FREE;
    this.pos = putSvarint(this.buf, this.pos + 1, addr - this.heapCur);
    this.heapCur = addr;
    this.kindCounts[EV_FREE]++;
    this.done();
  }

  realloc(addr: number, newAddr: number, size: number): void {
    checkRealloc(this.where, this.total + 1, EV_REALLOC, addr, newAddr, size);
    this.reserve(MAX_EVENT_BYTES);
    const buf = this.buf;
    buf[this.pos] = EV_REALLOC;
    let pos = putSvarint(buf, this.pos + 1, addr - this.heapCur);
    pos = putSvarint(buf, pos, newAddr - addr);
    pos = putUvarint(buf, pos, size);
    this.heapCur = cursorAfter(newAddr, size);
    this.pos = pos;
    this.kindCounts[EV_REALLOC]++;
    this.done();
  }

  epoch(): void {
    this.reserve(1);
    this.buf[this.pos++] = EV_EPOCH;
    this.kindCounts[EV_EPOCH]++;
    this.done();
  }

  thread(tid: number): void {
    checkThread(this.where, this.total + 1, EV_THREAD, tid);
    this.reserve(MAX_EVENT_BYTES);
    this.buf[this.pos] = EV_THREAD;
    this.pos = putUvarint(this.buf, this.pos + 1, tid);
    this.kindCounts[EV_THREAD]++;
    this.done();
  }

  /** Ends the last chunk, writes the end record, syncs, and renames the temp file to `path`. */
  close(): TraceSummary {
    this.checkOpen();
    try {
      this.flush();
      const kinds = EV_KINDS;
      const end = Buffer.alloc(endRecordBytes(kinds));
      const view = new DataView(end.buffer, end.byteOffset, end.length);
      end[0] = REC_END;
      end[1] = kinds;
      view.setUint32(4, this.chunks, true);
      putU64(view, 8, this.total);
      for (let k = 0; k < kinds; k++) putU64(view, 16 + 8 * k, this.kindCounts[k]);
      view.setUint32(end.length - 4, crc32(end.subarray(0, end.length - 4)), true);
      this.write(end);
      fs.fsyncSync(this.fd);
      fs.closeSync(this.fd);
      this.fd = -1;
      fs.renameSync(this.tmp, this.path);
    } catch (e) {
      this.abort();
      throw e;
    }
    this.state = 'closed';
    finished(this);
    syncDir(path.dirname(this.path));
    return { path: this.path, events: this.total, counts: this.kindCounts.slice(), chunks: this.chunks, bytes: this.bytes };
  }

  /** Drops the trace: closes and removes the temp file. Does nothing after close() or a first abort(). */
  abort(): void {
    if (this.state !== 'open') return;
    this.state = 'aborted';
    finished(this);
    if (this.fd >= 0) {
      try { fs.closeSync(this.fd); } catch { /* already failing; the unlink matters more */ }
      this.fd = -1;
    }
    try { fs.unlinkSync(this.tmp); } catch { /* gone already */ }
  }

  private checkOpen(): void {
    if (this.state !== 'open') throw new Error(`${this.path}: the trace writer is ${this.state}`);
  }

  private reserve(room: number): void {
    this.checkOpen();
    const need = this.pos + room;
    if (need <= this.buf.length) return;
    let n = this.buf.length * 2;
    while (n < need) n *= 2;
    const bigger = Buffer.alloc(n);
    bigger.set(this.buf.subarray(0, this.pos));
    this.buf = bigger;
  }

  private done(): void {
    this.total++;
    if (++this.inChunk >= this.chunkEvents || this.pos >= CHUNK_FLUSH_BYTES) this.flush();
  }

  private flush(): void {
    if (this.inChunk === 0) return;
    try {
      const raw = this.buf.subarray(0, this.pos);
      let codec = this.codec;
      let stored: Uint8Array = raw;
      if (codec === CODEC_DEFLATE) stored = zlib.deflateRawSync(raw, { level: this.level });
      else if (codec === CODEC_BROTLI) {
        stored = zlib.brotliCompressSync(raw, {
          params: { [zlib.constants.BROTLI_PARAM_QUALITY]: this.level, [zlib.constants.BROTLI_PARAM_SIZE_HINT]: raw.length },
        });
      }
      // Codec is per chunk: an incompressible chunk is stored as it is.
      if (stored.length >= raw.length) { codec = CODEC_NONE; stored = raw; }
      const head = Buffer.alloc(CHUNK_HEADER_BYTES);
      head[0] = REC_CHUNK;
      head[1] = codec;
      head.writeUInt32LE(this.inChunk, 4);
      head.writeUInt32LE(raw.length, 8);
      head.writeUInt32LE(stored.length, 12);
      head.writeUInt32LE(crc32(stored), 16);
      head.writeUInt32LE(crc32(head.subarray(0, 20)), 20);
      this.write(head);
      this.write(stored);
    } catch (e) {
      this.abort();
      throw e;
    }
    this.chunks++;
    this.pos = 0;
    this.inChunk = 0;
    this.fetchCur = this.dataCur = this.heapCur = 0;
  }

  private write(data: Uint8Array): void {
    let off = 0;
    while (off < data.length) off += fs.writeSync(this.fd, data, off, data.length - off);
    this.bytes += data.length;
  }
}

