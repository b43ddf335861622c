// Trace events: the one vocabulary shared by the trace file format, the importers, the recorders
// and replay. Addresses are JS numbers: exact below 2^53, which covers every user-half x86-64
// address (< 2^47) and every wasm32 address; producers refuse anything larger by name.

export const EV_READ = 0;
export const EV_WRITE = 1;
/** A read and a write of the same bytes by one instruction (lackey ` M`). Counts as one write. */
export const EV_MODIFY = 2;
export const EV_FETCH = 3;
export const EV_ALLOC = 4;
export const EV_FREE = 5;
export const EV_REALLOC = 6;
export const EV_EPOCH = 7;
export const EV_THREAD = 8;
export const EV_KINDS = 9;

export type AccessKind = typeof EV_READ | typeof EV_WRITE | typeof EV_MODIFY | typeof EV_FETCH;

export const EV_NAMES = ['read', 'write', 'modify', 'fetch', 'alloc', 'free', 'realloc', 'epoch', 'thread'] as const;
export type EventName = (typeof EV_NAMES)[number];

/** Largest address (exclusive) a trace event may carry. */
export const ADDR_LIMIT = 2 ** 53;

/** One event as an object: for tests, tools and small traces. Bulk paths use EventBlock. */
export type TraceEvent =
  | { type: 'read' | 'write' | 'modify' | 'fetch'; addr: number; size: number; value?: Uint8Array }
  | { type: 'alloc'; addr: number; size: number; align: number }
  | { type: 'free'; addr: number }
  | { type: 'realloc'; addr: number; newAddr: number; size: number }
  | { type: 'epoch' }
  | { type: 'thread'; tid: number };

/**
 * Where events go. The trace writer, the block builder (for replay straight from a lackey log) and
 * test collectors implement it; importers and recorders produce into it in program order.
 * `value`, when given, holds exactly `size` bytes in memory order (little-endian for integers);
 * the sink copies what it keeps, so producers may reuse the buffer.
 */
export interface EventSink {
  access(kind: AccessKind, addr: number, size: number, value?: Uint8Array): void;
  /** `align` is the alignment the program asked for (the allocator's default for plain malloc). */
  alloc(addr: number, size: number, align: number): void;
  free(addr: number): void;
  /** The object at `addr` now lives at `newAddr` with `size` bytes (which may equal `addr`). */
  realloc(addr: number, newAddr: number, size: number): void;
  epoch(): void;
  thread(tid: number): void;
}

/**
 * A run of events in columns, as decoded from one chunk (bounded size). Per kind:
 *   access:  addr, size, valueOff (-1 when no value; else `size` bytes at values[valueOff])
 *   alloc:   addr, size, arg = alignment
 *   free:    addr
 *   realloc: addr = old address, arg = new address, size = new size
 *   epoch:   nothing
 *   thread:  arg = thread id
 * Unused columns hold 0 (valueOff -1).
 */
export interface EventBlock {
  count: number;
  kind: Uint8Array;
  addr: Float64Array;
  size: Float64Array;
  arg: Float64Array;
  valueOff: Int32Array;
  values: Uint8Array;
}

/** Metadata stored in a trace's header. Unknown keys are kept on read and rewritten on copy. */
export interface TraceMeta {
  /** What produced the events: 'lackey', 'granule-record-native', 'granule-record-wasm', 'hand'... */
  source: string;
  /** The traced program's command line, as argv. */
  command?: string[];
  /** Recorder and version, e.g. 'valgrind-3.19.0 lackey + granule-preload 1'. */
  recorder?: string;
  pageSize: number;
  /** ISO time of recording. */
  created?: string;
  [key: string]: unknown;
}

/** Counts per event kind, indexed by EV_*. */
export type KindCounts = number[];

/** A failure tied to a file and a byte offset (or a line, for text logs). */
export class TraceError extends Error {
  constructor(
    readonly file: string,
    readonly where: { offset?: number; line?: number },
    readonly problem: string,
    readonly advice = '',
  ) {
    const at = where.line !== undefined ? `line ${where.line}` : where.offset !== undefined ? `offset ${where.offset}` : '';
    super(`${file}${at ? `: ${at}` : ''}: ${problem}${advice ? `. ${advice}` : ''}`);
    this.name = 'TraceError';
  }
}
