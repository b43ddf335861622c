// Importer for valgrind lackey `--trace-mem=yes` logs, plus the granule preload shim's allocator
// messages that travel in the same log as client-request output (`**PID** granule ...`).
//
// Logs run to hundreds of millions of lines, so the hot path works on the raw bytes of each chunk:
// no readline, no string per line, no regex. Only the rare lines (valgrind's own messages, client
// output) are decoded to strings. Accepted line shapes (lackey's own printf formats):
//   `I  04016f0,3`      instruction fetch (kept only with `fetches`)
//   ` S 1ffefffd38,8`   write      ` L 04222c0,8`  read      ` M 0421e80,4`  modify
//   `==PID== text`, `--PID-- text`   valgrind's messages: ignored (passed to onMessage)
//   `**PID** text`      client output: granule shim protocol, anything else ignored
// Hex digits of either case and any width are accepted. A CR before the LF is accepted too (lackey
// never writes one, but a log that went through a Windows tool would otherwise fail on every line).
// Blank lines are skipped.
import { createReadStream, openSync, readSync, closeSync, statSync } from 'node:fs';
import { once } from 'node:events';
import { Socket } from 'node:net';
import { createGunzip, gunzipSync, constants as zlibConstants } from 'node:zlib';
import { Readable } from 'node:stream';
import { ADDR_LIMIT, EV_FETCH, EV_MODIFY, EV_READ, EV_WRITE, TraceError, type AccessKind, type EventSink } from './events.ts';

export interface LackeyOptions {
  /** Named in errors. */
  file: string;
  /** Keep `I` lines as EV_FETCH events (default: count them and drop them). */
  fetches?: boolean;
  /** Called after each input chunk with the bytes of log text consumed so far. */
  onProgress?: (bytesRead: number) => void;
  /** Called with each of valgrind's own `==PID==` / `--PID--` lines (without the line end). */
  onMessage?: (line: string) => void;
  /** awaited after each input chunk is parsed */
  afterChunk?: () => Promise<void>;
}

export interface LackeyStats {
  lines: number;
  /** Events emitted to the sink through `access` (data accesses, and fetches when kept). */
  accesses: number;
  /** `I` lines not emitted because `fetches` was off. */
  fetchesSkipped: number;
  /** Accesses dropped because they fell between `granule enter` and its closing line. */
  droppedAllocator: number;
  /** Accesses dropped because their instruction lies in the shim's text. */
  droppedShim: number;
  /** Accesses at kernel-half addresses (vsyscall page), which a trace cannot represent. */
  kernelSkipped: number;
  allocs: number;
  frees: number;
  reallocs: number;
  /** `**PID**` lines that were not granule shim messages (other client output), ignored. */
  clientLines: number;
  /** valgrind's own `==PID==` and `--PID--` lines, ignored. */
  valgrindLines: number;
  /** Whether the shim announced itself (`granule-preload 1 text ...`). */
  shimSeen: boolean;
  /** The shim's executable ranges [start, end) as it reported them. */
  shimText: [number, number][];
}

/** Version of the shim protocol this parser speaks; the shim prints it first. */
export const PRELOAD_PROTOCOL = 1;

/** x86-64 kernel half: from here up, addresses are the kernel's (in practice the vsyscall page). */
const KERNEL_HALF = 0xffff800000000000;
const TWO_64 = 2 ** 64;
/** Most accesses held back waiting for the shim to announce its text (see Held). */
const HOLD_LIMIT = 1 << 20;
/** A line longer than this is not lackey output; stop before buffering a whole binary file. */
const MAX_LINE = 1 << 16;

const ADVICE = 'is this a lackey --trace-mem=yes log?';
const PROTOCOL_ADVICE =
  'the allocator shim\'s messages are out of order: the log was cut or edited, or the program is multithreaded (threads interleave allocator calls, which granule record does not support)';

const NL = 0x0a, CR = 0x0d, SP = 0x20, COMMA = 0x2c;

/** Hex digit value per byte, -1 for non-digits. */
const HEX = new Int8Array(256).fill(-1);
for (let i = 0; i < 10; i++) HEX[0x30 + i] = i;
for (let i = 0; i < 6; i++) { HEX[0x61 + i] = 10 + i; HEX[0x41 + i] = 10 + i; }

/** Access kind per byte after the leading space (S, L, M), -1 otherwise. */
const DATA_KIND = new Int8Array(256).fill(-1);
DATA_KIND[0x53] = EV_WRITE;
DATA_KIND[0x4c] = EV_READ;
DATA_KIND[0x4d] = EV_MODIFY;

function shown(buf: Uint8Array, start: number, end: number): string {
  let e = end;
  if (e > start && buf[e - 1] === CR) e--;
  const text = Buffer.from(buf.buffer, buf.byteOffset + start, Math.min(e - start, 61)).toString('latin1');
  // eslint-disable-next-line no-control-regex
  const clean = text.replace(/[\x00-\x1f\x7f-\x9f]/g, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`);
  return e - start > 60 ? `${clean.slice(0, 60)}...` : clean;
}

/**
 * Accesses seen before the shim announced its text range, each with its instruction's address.
 * The shim runs code before it can say where its code is (its constructor reads its own ELF
 * headers and sets up the first request), so the accesses are held until the announcement and
 * filtered then. A log without the shim releases them unfiltered after HOLD_LIMIT or at its end.
 */
class Held {
  n = 0;
  kind = new Uint8Array(4096);
  addr = new Float64Array(4096);
  size = new Float64Array(4096);
  pc = new Float64Array(4096);

  push(kind: number, addr: number, size: number, pc: number): void {
    if (this.n === this.kind.length) {
      const grow = <T extends Uint8Array | Float64Array>(a: T): T => {
        const b = new (a.constructor as new (n: number) => T)(a.length * 2);
        b.set(a);
        return b;
      };
      this.kind = grow(this.kind);
      this.addr = grow(this.addr);
      this.size = grow(this.size);
      this.pc = grow(this.pc);
    }
    const i = this.n++;
    this.kind[i] = kind;
    this.addr[i] = addr;
    this.size[i] = size;
    this.pc[i] = pc;
  }
}

/**
 * The parse state machine. push() takes chunks in order (lines may span chunks); finish() ends the
 * input. Errors are TraceErrors naming the file and the 1-based line.
 */
export class LackeyParser {
  readonly stats: LackeyStats = {
    lines: 0, accesses: 0, fetchesSkipped: 0, droppedAllocator: 0, droppedShim: 0, kernelSkipped: 0,
    allocs: 0, frees: 0, reallocs: 0, clientLines: 0, valgrindLines: 0, shimSeen: false, shimText: [],
  };
  private readonly file: string;
  private readonly fetches: boolean;
  private readonly onMessage?: (line: string) => void;
  private readonly sink: EventSink;
  /** The unterminated tail of the previous chunk. */
  private carry: Buffer | null = null;
  private bytes = 0;
  private sawAccessLine = false;
  /** Line of the open `granule enter`, 0 when outside an allocator call. */
  private windowLine = 0;
  /** Whether the latest `I` line lies in the shim's text. */
  private pcInShim = false;
  /** The latest `I` line's address. */
  private pc = -1;
  private held: Held | null = new Held();
  private readonly shimText: number[] = []; // [start, end) pairs

  constructor(sink: EventSink, opts: LackeyOptions) {
    this.sink = sink;
    this.file = opts.file;
    this.fetches = opts.fetches ?? false;
    this.onMessage = opts.onMessage;
  }

  /** Bytes of log text consumed so far. */
  get bytesRead(): number { return this.bytes; }

  push(chunk: Uint8Array): void {
    this.bytes += chunk.length;
    let start = 0;
    if (this.carry !== null) {
      const nl = chunk.indexOf(NL);
      if (nl < 0) {
        this.carry = Buffer.concat([this.carry, chunk]);
        if (this.carry.length > MAX_LINE) this.tooLong();
        return;
      }
      const line = Buffer.concat([this.carry, chunk.subarray(0, nl + 1)]);
      this.carry = null;
      this.parseLines(line, 0, line.length);
      start = nl + 1;
    }
    const last = chunk.lastIndexOf(NL);
    if (last >= start) this.parseLines(chunk, start, last + 1);
    const tail = Math.max(last + 1, start);
    if (tail < chunk.length) {
      // Copy: a view would keep the whole chunk alive.
      this.carry = Buffer.from(chunk.subarray(tail));
      if (this.carry.length > MAX_LINE) this.tooLong();
    }
  }

  finish(): LackeyStats {
    if (this.carry !== null) {
      // A complete last line without its newline is fine; a cut one fails in parseLines.
      const line = Buffer.concat([this.carry, Buffer.of(NL)]);
      this.carry = null;
      this.parseLines(line, 0, line.length);
    }
    this.release();
    if (this.bytes === 0) throw new TraceError(this.file, {}, 'the file is empty', 'expected a valgrind lackey --trace-mem=yes log');
    if (!this.sawAccessLine) {
      throw new TraceError(this.file, {}, `no memory access lines (" S", " L", " M" or "I") in ${this.stats.lines} lines`,
        'this is probably not a lackey log; record one with valgrind --tool=lackey --trace-mem=yes');
    }
    if (this.windowLine !== 0) {
      throw new TraceError(this.file, { line: this.windowLine }, 'the log ends inside the allocator call that begins here ("granule enter" without its closing line)',
        'the log is incomplete: the program or valgrind stopped inside malloc/free');
    }
    return this.stats;
  }

  private tooLong(): never {
    throw new TraceError(this.file, { line: this.stats.lines + 1 }, `a line longer than ${MAX_LINE} bytes`, ADVICE);
  }

  /** Every line in [pos, end) ends with LF; `end` is just past the last one. */
  private parseLines(buf: Uint8Array, pos: number, end: number): void {
    const st = this.stats;
    const sink = this.sink;
    while (pos < end) {
      st.lines++;
      const c = buf[pos];
      let kind: number;
      let p: number;
      if (c === SP) {
        kind = DATA_KIND[buf[pos + 1]];
        if (kind < 0 || buf[pos + 2] !== SP) this.fail(buf, pos, 'expected " S", " L" or " M" and a space');
        p = pos + 3;
      } else if (c === 0x49 /* I */) {
        kind = EV_FETCH;
        p = pos + 1;
        if (buf[p] !== SP) this.fail(buf, pos, 'expected spaces after "I"');
        while (buf[p] === SP) p++;
      } else {
        pos = this.otherLine(buf, pos);
        continue;
      }
      // Address: hex of any width. Exact below 2^53; beyond that only its range matters.
      const a0 = p;
      let addr = 0;
      let h: number;
      while ((h = HEX[buf[p]]) >= 0) { addr = addr * 16 + h; p++; }
      if (p === a0) this.fail(buf, pos, 'expected a hex address');
      const a1 = p;
      if (buf[p] !== COMMA) this.fail(buf, pos, 'expected "," after the address');
      p++;
      const s0 = p;
      let size = 0;
      let d: number;
      while ((d = buf[p] - 0x30) >= 0 && d <= 9) { size = size * 10 + d; p++; }
      if (p === s0) this.fail(buf, pos, 'expected a decimal size after ","');
      if (buf[p] === CR) p++;
      if (buf[p] !== NL) this.fail(buf, pos, 'expected the end of the line after the size');
      if (size === 0 || p - s0 > 9) this.fail(buf, pos, 'expected a size from 1 to 999999999');
      pos = p + 1;
      this.sawAccessLine = true;

      if (addr >= ADDR_LIMIT) {
        this.outOfRange(buf, a0, a1, pos, addr, kind);
        continue;
      }
      if (kind === EV_FETCH) {
        this.pc = addr;
        this.pcInShim = this.shimText.length !== 0 && this.inShim(addr);
        if (!this.fetches) { st.fetchesSkipped++; continue; }
      }
      if (this.windowLine !== 0) st.droppedAllocator++;
      else if (this.pcInShim) st.droppedShim++;
      else if (this.held !== null) this.hold(kind, addr, size);
      else { sink.access(kind as AccessKind, addr, size); st.accesses++; }
    }
  }

  private hold(kind: number, addr: number, size: number): void {
    const held = this.held!;
    if (this.stats.shimSeen || held.n === HOLD_LIMIT) {
      this.release();
      if (this.shimText.length !== 0 && this.inShim(this.pc)) this.stats.droppedShim++;
      else { this.sink.access(kind as AccessKind, addr, size); this.stats.accesses++; }
      return;
    }
    held.push(kind, addr, size, this.pc);
  }

  /** Emits the held accesses, minus those the shim's instructions made, and stops holding. */
  private release(): void {
    const h = this.held;
    if (h === null) return;
    this.held = null;
    const st = this.stats;
    const filter = this.shimText.length !== 0;
    for (let i = 0; i < h.n; i++) {
      if (filter && this.inShim(h.pc[i])) st.droppedShim++;
      else { this.sink.access(h.kind[i] as AccessKind, h.addr[i], h.size[i]); st.accesses++; }
    }
  }

  private inShim(pc: number): boolean {
    const r = this.shimText;
    for (let i = 0; i < r.length; i += 2) if (pc >= r[i] && pc < r[i + 1]) return true;
    return false;
  }

  /** An access line whose address is 2^53 or more: the kernel half is skipped, the rest refused. */
  private outOfRange(buf: Uint8Array, a0: number, aEnd: number, next: number, addr: number, kind: number): void {
    let first = a0;
    while (first < aEnd && buf[first] === 0x30) first++;
    const digits = aEnd - first;
    // Rounding on the way up cannot carry a kernel address past 2^64, hence <=.
    if (digits <= 16 && addr >= KERNEL_HALF && addr <= TWO_64) {
      this.stats.kernelSkipped++;
      if (kind === EV_FETCH) { this.pc = addr; this.pcInShim = false; }
      return;
    }
    const lineStart = this.lineStartBefore(buf, a0);
    const text = Buffer.from(buf.buffer, buf.byteOffset + first, Math.min(digits, 40)).toString('latin1');
    throw new TraceError(this.file, { line: this.stats.lines },
      `address 0x${text} in "${shown(buf, lineStart, next - 1)}" is 2^53 or more, which a trace cannot hold`,
      'only user-space addresses of x86-64 (below 2^47) and kernel-half addresses (skipped) are expected in a lackey log');
  }

  private lineStartBefore(buf: Uint8Array, p: number): number {
    while (p > 0 && buf[p - 1] !== NL) p--;
    return p;
  }

  private fail(buf: Uint8Array, start: number, expected: string): never {
    let e = buf.indexOf(NL, start);
    if (e < 0) e = buf.length;
    throw new TraceError(this.file, { line: this.stats.lines }, `cannot parse "${shown(buf, start, e)}": ${expected}`, ADVICE);
  }

  /** Lines other than accesses; returns the start of the next line. */
  private otherLine(buf: Uint8Array, pos: number): number {
    const nl = buf.indexOf(NL, pos);
    const c = buf[pos];
    if (c === NL || (c === CR && nl === pos + 1)) return nl + 1;
    const c1 = buf[pos + 1];
    if ((c === 0x3d /* = */ && c1 === 0x3d) || (c === 0x2d /* - */ && c1 === 0x2d)) {
      this.stats.valgrindLines++;
      if (this.onMessage) this.onMessage(Buffer.from(buf.buffer, buf.byteOffset + pos, nl - pos).toString('utf8').replace(/\r$/, ''));
      return nl + 1;
    }
    if (c === 0x2a /* * */ && c1 === 0x2a) {
      const text = Buffer.from(buf.buffer, buf.byteOffset + pos, nl - pos).toString('latin1').replace(/\r$/, '');
      const m = /^\*\*\d+\*\* (.*)$/s.exec(text);
      if (!m) this.fail(buf, pos, 'expected "**PID** " and client output');
      this.clientLine(m[1], buf, pos);
      return nl + 1;
    }
    this.fail(buf, pos, 'expected an access line (" S", " L", " M", "I"), a valgrind message (==PID==) or client output (**PID**)');
  }

  private clientLine(text: string, buf: Uint8Array, pos: number): void {
    const st = this.stats;
    if (text.startsWith('granule-preload ')) {
      const f = text.trimEnd().split(' ');
      if (f[1] !== String(PRELOAD_PROTOCOL)) {
        throw new TraceError(this.file, { line: st.lines }, `the log comes from granule-preload protocol ${JSON.stringify(f[1])}; this granule reads protocol ${PRELOAD_PROTOCOL}`,
          'rebuild the shim with this granule (granule record builds its own) or upgrade granule to read this log');
      }
      if (f.length !== 5 || f[2] !== 'text') this.fail(buf, pos, 'expected "granule-preload 1 text 0x<start> 0x<end>"');
      const start = this.ptr(f[3], buf, pos), end = this.ptr(f[4], buf, pos);
      if (end < start) this.fail(buf, pos, 'the shim\'s text range ends before it starts');
      this.shimText.push(start, end);
      st.shimText.push([start, end]);
      st.shimSeen = true;
      return;
    }
    if (!text.startsWith('granule ')) { st.clientLines++; return; }
    // Object events must follow every access before them.
    this.release();
    const f = text.trimEnd().split(' ');
    const op = f[1];
    const sink = this.sink;
    if (op === 'enter') {
      if (f.length !== 2) this.fail(buf, pos, 'expected "granule enter"');
      if (this.windowLine !== 0) {
        throw new TraceError(this.file, { line: st.lines }, `"granule enter" inside the allocator call begun at line ${this.windowLine}`, PROTOCOL_ADVICE);
      }
      this.windowLine = st.lines;
      return;
    }
    if (op !== 'alloc' && op !== 'free' && op !== 'realloc' && op !== 'leave') {
      this.fail(buf, pos, 'expected a granule shim message (enter, alloc, free, realloc, leave)');
    }
    if (this.windowLine === 0) {
      throw new TraceError(this.file, { line: st.lines }, `"granule ${op}" without a preceding "granule enter"`, PROTOCOL_ADVICE);
    }
    switch (op) {
      case 'leave':
        if (f.length !== 2) this.fail(buf, pos, 'expected "granule leave"');
        break;
      case 'alloc': {
        if (f.length !== 5) this.fail(buf, pos, 'expected "granule alloc 0x<ptr> <size> <align>"');
        const p = this.ptr(f[2], buf, pos), size = this.dec(f[3], buf, pos), align = this.dec(f[4], buf, pos);
        if (!(align >= 1 && align <= 2 ** 52 && Math.log2(align) % 1 === 0)) {
          this.fail(buf, pos, 'expected the alignment to be a power of two');
        }
        // A failed allocation returns NULL: no object.
        if (p !== 0) { sink.alloc(p, size, align); st.allocs++; }
        break;
      }
      case 'free': {
        if (f.length !== 3) this.fail(buf, pos, 'expected "granule free 0x<ptr>"');
        const p = this.ptr(f[2], buf, pos);
        if (p !== 0) { sink.free(p); st.frees++; } // free(NULL) does nothing
        break;
      }
      case 'realloc': {
        if (f.length !== 5) this.fail(buf, pos, 'expected "granule realloc 0x<old> 0x<new> <size>"');
        const old = this.ptr(f[2], buf, pos), nu = this.ptr(f[3], buf, pos), size = this.dec(f[4], buf, pos);
        // C's corner cases, in case the shim passes them through: realloc(NULL, n) allocates (with
        // malloc's alignment, 16 on x86-64 glibc), realloc(p, 0) returning NULL freed p, and any
        // other NULL result failed and left p as it was.
        if (old === 0) { if (nu !== 0) { sink.alloc(nu, size, 16); st.allocs++; } }
        else if (nu === 0) { if (size === 0) { sink.free(old); st.frees++; } }
        else { sink.realloc(old, nu, size); st.reallocs++; }
        break;
      }
    }
    this.windowLine = 0;
  }

  private ptr(s: string, buf: Uint8Array, pos: number): number {
    if (s === '(nil)') return 0;
    if (!/^0x[0-9a-fA-F]{1,16}$/.test(s)) this.fail(buf, pos, `expected a 0x-prefixed hex pointer, got "${s}"`);
    const v = parseInt(s.slice(2), 16);
    if (v >= ADDR_LIMIT) this.fail(buf, pos, `pointer ${s} is 2^53 or more, which a trace cannot hold`);
    return v;
  }

  private dec(s: string, buf: Uint8Array, pos: number): number {
    if (!/^\d{1,15}$/.test(s)) this.fail(buf, pos, `expected a decimal number, got "${s}"`);
    return Number(s);
  }
}

/** Parse a lackey log from a byte stream into `sink`, in order. */
export async function parseLackey(input: AsyncIterable<Buffer> | NodeJS.ReadableStream, sink: EventSink, opts: LackeyOptions): Promise<LackeyStats> {
  const parser = new LackeyParser(sink, opts);
  const it = (input as AsyncIterable<Buffer | string>)[Symbol.asyncIterator]();
  try {
    for (;;) {
      let r: IteratorResult<Buffer | string>;
      // Only read errors are the log's; the sink's (a full disk under the writer) pass unchanged.
      try {
        r = await it.next();
      } catch (e) {
        throw asTraceError(e, opts.file, parser.bytesRead);
      }
      if (r.done) break;
      parser.push(typeof r.value === 'string' ? Buffer.from(r.value, 'latin1') : r.value);
      opts.onProgress?.(parser.bytesRead);
      // An asynchronous consumer (replay on a backend whose runs are asynchronous) catches up
      // here, so at most one chunk's events wait in memory.
      if (opts.afterChunk) await opts.afterChunk();
    }
  } catch (e) {
    try {
      await it.return?.();
    } catch {
      // The first error is the one to report.
    }
    throw e;
  }
  return parser.finish();
}

function asTraceError(e: unknown, file: string, offset: number): Error {
  if (e instanceof TraceError) return e;
  const err = e as NodeJS.ErrnoException;
  if (err?.code === 'Z_BUF_ERROR' || /unexpected end of file/i.test(String(err?.message))) {
    return new TraceError(file, {}, `the gzip stream is truncated after ${offset} bytes of log`, 'the file was cut short (an interrupted copy or download?); fetch or recompress it');
  }
  if (typeof err?.code === 'string' && err.code.startsWith('Z_')) {
    return new TraceError(file, {}, `the gzip stream is corrupt after ${offset} bytes of log (${err.message})`, 'the file is damaged; fetch or recompress it');
  }
  if (err?.code === 'ENOENT') return new TraceError(file, {}, 'no such file', 'check the path');
  if (err?.code === 'EISDIR') return new TraceError(file, {}, 'is a directory, not a lackey log', '');
  if (err?.code === 'EACCES') return new TraceError(file, {}, 'permission denied', 'check the file\'s permissions');
  return e instanceof Error ? e : new Error(String(e));
}

function gzipError(e: unknown, file: string, rawOffset: number): Error {
  const err = e as NodeJS.ErrnoException;
  if (err?.code === 'Z_BUF_ERROR' || /unexpected end of file/i.test(String(err?.message))) {
    return new TraceError(file, { offset: rawOffset }, 'the gzip stream is truncated: the file ends before the compressed data does',
      'the file was cut short (an interrupted copy or download?); fetch or recompress it');
  }
  if (typeof err?.code === 'string' && err.code.startsWith('Z_')) {
    return new TraceError(file, {}, `the gzip stream is corrupt (${err.message})`, 'the file is damaged; fetch or recompress it');
  }
  return asTraceError(e, file, rawOffset);
}

function readHead(path: string, n: number): Buffer {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch (e) {
    throw asTraceError(e, path, 0);
  }
  try {
    const b = Buffer.alloc(n);
    const got = readSync(fd, b, 0, n, 0);
    return b.subarray(0, got);
  } catch (e) {
    throw asTraceError(e, path, 0);
  } finally {
    closeSync(fd);
  }
}

const isGzip = (b: Uint8Array) => b.length >= 2 && b[0] === 0x1f && b[1] === 0x8b;

interface OpenedLog { stream: Readable; rawBytes: () => number }

function isFifo(path: string): boolean {
  try {
    return statSync(path).isFIFO();
  } catch {
    return false;
  }
}

function isRegularFile(path: string): boolean {
  try {
    return statSync(path).isFile();
  } catch {
    return true; // let the open below report the error, naming the file
  }
}

/**
 * A pipe or FIFO (`/dev/stdin`, `<(zcat ...)`) cannot be read twice: the gzip magic is sniffed
 * from its first chunk, which then goes on to the parser or the decompressor.
 */
function openPipe(path: string): OpenedLog {
  // A FIFO is opened here (waiting for its writer, as `cat` would) and read as a socket: a
  // threadpool read blocked on a FIFO would keep the process from exiting on Ctrl-C.
  const raw = path === STDIN ? process.stdin : isFifo(path) ? new Socket({ fd: openSync(path, 'r'), readable: true, writable: false }) : createReadStream(path, { highWaterMark: 1 << 20 });
  // An open error may come before anyone iterates; the iterator reports it then.
  raw.on('error', () => {});
  async function* chunks(): AsyncGenerator<Buffer> {
    const it = raw[Symbol.asyncIterator]() as AsyncIterator<Buffer>;
    try {
      const first = await it.next();
      if (first.done) return;
      if (!isGzip(first.value)) {
        yield first.value;
        for (let r = await it.next(); !r.done; r = await it.next()) yield r.value;
        return;
      }
      const gunzip = createGunzip();
      (async () => {
        gunzip.write(first.value);
        for (let r = await it.next(); !r.done; r = await it.next()) if (!gunzip.write(r.value)) await once(gunzip, 'drain');
        gunzip.end();
      })().catch((e) => gunzip.destroy(e));
      try {
        for await (const c of gunzip) yield c as Buffer;
      } catch (e) {
        throw gzipError(e, path, (raw as { bytesRead?: number }).bytesRead ?? 0);
      }
    } catch (e) {
      throw e instanceof TraceError ? e : asTraceError(e, path, (raw as { bytesRead?: number }).bytesRead ?? 0);
    } finally {
      raw.destroy();
    }
  }
  return { stream: Readable.from(chunks(), { objectMode: false }), rawBytes: () => (raw as { bytesRead?: number }).bytesRead ?? 0 };
}

/** The file name that means standard input. */
export const STDIN = '-';

function openLog(path: string): OpenedLog {
  if (path === STDIN || !isRegularFile(path)) return openPipe(path);
  const gz = isGzip(readHead(path, 2));
  const raw = createReadStream(path, { highWaterMark: 1 << 20 });
  if (!gz) return { stream: raw, rawBytes: () => raw.bytesRead };
  const gunzip = createGunzip();
  // Errors of either stage reach the consumer through the last stage, rewritten to name the file.
  raw.on('error', (e) => gunzip.destroy(e));
  raw.pipe(gunzip);
  async function* chunks() {
    try {
      for await (const c of gunzip) yield c as Buffer;
    } catch (e) {
      throw gzipError(e, path, raw.bytesRead);
    } finally {
      raw.destroy();
    }
  }
  return { stream: Readable.from(chunks(), { objectMode: false }), rawBytes: () => raw.bytesRead };
}

/** A byte stream of the log at `path`, decompressed when it starts with the gzip magic. Errors name the file. */
export function openLackeyStream(path: string): NodeJS.ReadableStream {
  return openLog(path).stream;
}

/**
 * Import the lackey log at `path` (plain or gzip). onProgress reports bytes of the file read so
 * far (compressed bytes for gzip), comparable to the file's size.
 */
export async function importLackey(path: string, sink: EventSink, opts: Omit<LackeyOptions, 'file'> = {}): Promise<LackeyStats> {
  const log = openLog(path);
  const onProgress = opts.onProgress;
  return parseLackey(log.stream, sink, { ...opts, file: path, onProgress: onProgress && (() => onProgress(log.rawBytes())) });
}

/**
 * Whether the file looks like a lackey or valgrind log: its first complete lines (up to 8) are all
 * access lines, valgrind messages or client output, and there is at least one. For replay's
 * --format auto, so it must be cheap and never throw on unreadable input.
 */
export function looksLikeLackey(path: string): boolean {
  let head: Buffer;
  if (path === STDIN || !isRegularFile(path)) return false;
  try {
    head = readHead(path, 4096);
  } catch {
    return false;
  }
  if (isGzip(head)) {
    try {
      // Lackey text compresses ~10x, so the first 4 KiB hold plenty of lines.
      head = gunzipSync(head, { finishFlush: zlibConstants.Z_SYNC_FLUSH /* a cut stream is fine */ }).subarray(0, 4096);
    } catch {
      return false;
    }
  }
  const text = head.toString('latin1');
  const lines = text.split('\n');
  if (lines.length > 1) lines.pop(); // possibly cut by the read
  let good = 0;
  for (const l of lines.slice(0, 8)) {
    const line = l.replace(/\r$/, '');
    if (line === '') continue;
    if (!/^(?:I {1,2}[0-9a-fA-F]+,\d+| [SLM] [0-9a-fA-F]+,\d+|==\d+==.*|--\d+--.*|\*\*\d+\*\* .*)$/.test(line)) return false;
    good++;
  }
  return good > 0;
}
