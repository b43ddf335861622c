// EventBlock helpers: build blocks from a stream of events without a file (replay straight from
// a lackey log), turn blocks back into sink calls or event objects, and collect events for tests.
import {
  EV_ALLOC, EV_EPOCH, EV_FETCH, EV_FREE, EV_MODIFY, EV_NAMES, EV_READ, EV_REALLOC, EV_THREAD, EV_WRITE,
} from './events.ts';
import type { AccessKind, EventBlock, EventSink, TraceEvent } from './events.ts';
import { DEFAULT_CHUNK_EVENTS, checkAccess, checkAlloc, checkFree, checkRealloc, checkThread } from './format.ts';

/** A zeroed block with room for `n` events (valueOff -1, no values). */
export function allocBlock(n: number, values: Uint8Array = new Uint8Array(0)): EventBlock {
  return {
    count: 0,
    kind: new Uint8Array(n),
    addr: new Float64Array(n),
    size: new Float64Array(n),
    arg: new Float64Array(n),
    valueOff: new Int32Array(n).fill(-1),
    values,
  };
}

/**
 * Collects events into blocks of `capacity` events and hands each full block to `onBlock` before
 * the event call that filled it returns. Every block is fresh (the builder keeps no reference to
 * it), so a consumer may hold on to blocks. Arguments are checked as TraceWriter checks them.
 */
export class BlockBuilder implements EventSink {
  private block: EventBlock;
  private values: Uint8Array = new Uint8Array(0);
  private valuesUsed = 0;
  private total = 0;

  constructor(private readonly onBlock: (b: EventBlock) => void, private readonly capacity = DEFAULT_CHUNK_EVENTS) {
    if (!(Number.isInteger(capacity) && capacity >= 1)) throw new RangeError(`BlockBuilder: capacity must be a positive integer, got ${capacity}`);
    this.block = allocBlock(capacity);
  }

  /** Events handed over or pending so far. */
  get events(): number { return this.total; }

  access(kind: AccessKind, addr: number, size: number, value?: Uint8Array): void {
    checkAccess('', this.total + 1, kind, addr, size, value);
    const b = this.block;
    const i = b.count;
    b.kind[i] = kind;
    b.addr[i] = addr;
    b.size[i] = size;
    if (value !== undefined) {
      const need = this.valuesUsed + size;
      if (need > this.values.length) {
        const bigger = new Uint8Array(Math.max(need, this.values.length * 2, 4096));
        bigger.set(this.values.subarray(0, this.valuesUsed));
        this.values = bigger;
      }
      this.values.set(value, this.valuesUsed);
      b.valueOff[i] = this.valuesUsed;
      this.valuesUsed = need;
    }
    this.added();
  }

  alloc(addr: number, size: number, align: number): void {
    checkAlloc('', this.total + 1, EV_ALLOC, addr, size, align);
    this.put(EV_ALLOC, addr, size, align);
  }

  free(addr: number): void {
    checkFree('', this.total + 1, EV_FREE, addr);
    this.put(EV_FREE, addr, 0, 0);
  }

  realloc(addr: number, newAddr: number, size: number): void {
    checkRealloc('', this.total + 1, EV_REALLOC, addr, newAddr, size);
    this.put(EV_REALLOC, addr, size, newAddr);
  }

  epoch(): void {
    this.put(EV_EPOCH, 0, 0, 0);
  }

  thread(tid: number): void {
    checkThread('', this.total + 1, EV_THREAD, tid);
    this.put(EV_THREAD, 0, 0, tid);
  }

  /** Hands over the events collected so far as a (shorter) block; does nothing when there are none. */
  flush(): void {
    const b = this.block;
    if (b.count === 0) return;
    const n = b.count;
    const out: EventBlock = n === this.capacity
      ? b
      : { count: n, kind: b.kind.slice(0, n), addr: b.addr.slice(0, n), size: b.size.slice(0, n), arg: b.arg.slice(0, n), valueOff: b.valueOff.slice(0, n), values: b.values };
    out.values = this.values.subarray(0, this.valuesUsed);
    this.block = allocBlock(this.capacity);
    this.values = new Uint8Array(0);
    this.valuesUsed = 0;
    this.onBlock(out);
  }

  private put(kind: number, addr: number, size: number, arg: number): void {
    const b = this.block;
    const i = b.count;
    b.kind[i] = kind;
    b.addr[i] = addr;
    b.size[i] = size;
    b.arg[i] = arg;
    this.added();
  }

  private added(): void {
    this.total++;
    if (++this.block.count === this.capacity) this.flush();
  }
}

/** Replays a block into a sink, in order. Values are passed as views into block.values. */
export function emitBlock(block: EventBlock, sink: EventSink): void {
  const { kind, addr, size, arg, valueOff, values } = block;
  for (let i = 0; i < block.count; i++) {
    const k = kind[i];
    switch (k) {
      case EV_READ: case EV_WRITE: case EV_MODIFY: case EV_FETCH: {
        const off = valueOff[i];
        sink.access(k, addr[i], size[i], off < 0 ? undefined : values.subarray(off, off + size[i]));
        break;
      }
      case EV_ALLOC: sink.alloc(addr[i], size[i], arg[i]); break;
      case EV_FREE: sink.free(addr[i]); break;
      case EV_REALLOC: sink.realloc(addr[i], arg[i], size[i]); break;
      case EV_EPOCH: sink.epoch(); break;
      case EV_THREAD: sink.thread(arg[i]); break;
      default: throw new RangeError(`emitBlock: event ${i} has unknown kind ${k}`);
    }
  }
}

/** Event `i` of a block as an object; a value is copied out of block.values into a plain Uint8Array. */
export function eventAt(block: EventBlock, i: number): TraceEvent {
  const k = block.kind[i];
  switch (k) {
    case EV_READ: case EV_WRITE: case EV_MODIFY: case EV_FETCH: {
      const off = block.valueOff[i];
      const ev: TraceEvent = { type: EV_NAMES[k] as 'read', addr: block.addr[i], size: block.size[i] };
      if (off >= 0) ev.value = new Uint8Array(block.values.subarray(off, off + block.size[i]));
      return ev;
    }
    case EV_ALLOC: return { type: 'alloc', addr: block.addr[i], size: block.size[i], align: block.arg[i] };
    case EV_FREE: return { type: 'free', addr: block.addr[i] };
    case EV_REALLOC: return { type: 'realloc', addr: block.addr[i], newAddr: block.arg[i], size: block.size[i] };
    case EV_EPOCH: return { type: 'epoch' };
    case EV_THREAD: return { type: 'thread', tid: block.arg[i] };
    default: throw new RangeError(`eventAt: event ${i} has unknown kind ${k}`);
  }
}

export function blockEvents(block: EventBlock): TraceEvent[] {
  const out: TraceEvent[] = new Array(block.count);
  for (let i = 0; i < block.count; i++) out[i] = eventAt(block, i);
  return out;
}

const ACCESS_KIND: Record<string, AccessKind> = { read: EV_READ, write: EV_WRITE, modify: EV_MODIFY, fetch: EV_FETCH };

/** Sends event objects to a sink (the inverse of EventCollector). */
export function emitEvents(events: Iterable<TraceEvent>, sink: EventSink): void {
  for (const e of events) {
    switch (e.type) {
      case 'read': case 'write': case 'modify': case 'fetch': sink.access(ACCESS_KIND[e.type], e.addr, e.size, e.value); break;
      case 'alloc': sink.alloc(e.addr, e.size, e.align); break;
      case 'free': sink.free(e.addr); break;
      case 'realloc': sink.realloc(e.addr, e.newAddr, e.size); break;
      case 'epoch': sink.epoch(); break;
      case 'thread': sink.thread(e.tid); break;
      default: throw new RangeError(`emitEvents: unknown event type ${String((e as { type: unknown }).type)}`);
    }
  }
}

/** Keeps every event as an object (values copied): for tests and small tools. */
export class EventCollector implements EventSink {
  readonly events: TraceEvent[] = [];
  access(kind: AccessKind, addr: number, size: number, value?: Uint8Array): void {
    const ev: TraceEvent = { type: EV_NAMES[kind] as 'read', addr, size };
    if (value !== undefined) ev.value = new Uint8Array(value);
    this.events.push(ev);
  }
  alloc(addr: number, size: number, align: number): void { this.events.push({ type: 'alloc', addr, size, align }); }
  free(addr: number): void { this.events.push({ type: 'free', addr }); }
  realloc(addr: number, newAddr: number, size: number): void { this.events.push({ type: 'realloc', addr, newAddr, size }); }
  epoch(): void { this.events.push({ type: 'epoch' }); }
  thread(tid: number): void { this.events.push({ type: 'thread', tid }); }
}
