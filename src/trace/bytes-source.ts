// A trace's bytes in memory, and the interface the reader reads every source through.

export interface ByteSource {
  readonly size: number;
  /** Reads up to `len` bytes at `pos` into `buf`; returns how many arrived (fewer only at the end). */
  read(buf: Uint8Array, len: number, pos: number): number;
  close(): void;
}

export class BytesSource implements ByteSource {
  constructor(private readonly bytes: Uint8Array) {}
  get size(): number { return this.bytes.length; }
  read(buf: Uint8Array, len: number, pos: number): number {
    const n = Math.max(0, Math.min(len, this.bytes.length - pos));
    buf.set(this.bytes.subarray(pos, pos + n));
    return n;
  }
  close(): void {}
}
