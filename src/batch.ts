// Fills the simulator's batch area with access records (layout: REC_* in the constants table).
import { REC_SIZE, REC_GVA, REC_KIND, REC_SIZE_FIELD, REC_VALUE, ACC_VALUE } from './consts.ts';
import type { Sim } from './sim.ts';

export class BatchWriter {
  private records: DataView;
  private values: Uint8Array;
  /** records written */
  count = 0;
  /** value bytes written */
  valueBytes = 0;
  constructor(private readonly sim: Sim) {
    ({ records: this.records, values: this.values } = sim.batchView());
  }
  get full(): boolean { return this.count >= this.sim.batchCapacity; }
  /** Whether `records` more records with `valueBytes` bytes of values in all still fit. */
  hasRoom(records: number, valueBytes: number): boolean {
    return this.count + records <= this.sim.batchCapacity && this.valueBytes + valueBytes <= this.values.length;
  }
  /** Appends one access; returns false when the batch (records or value bytes) is full. */
  push(gva: bigint, acc: number, size: number, value?: Uint8Array): boolean {
    if (size < 1 || size > 64 || !Number.isInteger(size)) throw new RangeError(`access size ${size} at GVA 0x${gva.toString(16)} is not 1..64`);
    if (this.count >= this.sim.batchCapacity) return false;
    if (value && this.valueBytes + size > this.values.length) return false;
    const p = this.count * REC_SIZE;
    const r = this.records;
    r.setBigUint64(p + REC_GVA, BigInt.asUintN(64, gva), true);
    r.setUint8(p + REC_KIND, value ? acc | ACC_VALUE : acc & ~ACC_VALUE);
    r.setUint8(p + REC_SIZE_FIELD, size);
    r.setUint32(p + REC_VALUE, this.valueBytes, true);
    if (value) {
      this.values.set(value.subarray(0, size), this.valueBytes);
      this.valueBytes += size;
    }
    this.count++;
    return true;
  }
  /** push() without a value for an address below 2^53 given as a number: replay's hot path,
   *  which would otherwise pay a BigInt per access. */
  pushAddr(addr: number, acc: number, size: number): boolean {
    if (this.count >= this.sim.batchCapacity) return false;
    const p = this.count * REC_SIZE;
    const r = this.records;
    r.setUint32(p + REC_GVA, addr >>> 0, true);
    r.setUint32(p + REC_GVA + 4, Math.floor(addr / 0x100000000), true);
    r.setUint8(p + REC_KIND, acc & ~ACC_VALUE);
    r.setUint8(p + REC_SIZE_FIELD, size);
    r.setUint32(p + REC_VALUE, 0, true);
    this.count++;
    return true;
  }
  /** pushAddr() with `size` bytes to store, taken from `bytes` at `off`. */
  pushAddrValue(addr: number, acc: number, size: number, bytes: Uint8Array, off: number): boolean {
    if (this.count >= this.sim.batchCapacity || this.valueBytes + size > this.values.length) return false;
    const p = this.count * REC_SIZE;
    const r = this.records;
    r.setUint32(p + REC_GVA, addr >>> 0, true);
    r.setUint32(p + REC_GVA + 4, Math.floor(addr / 0x100000000), true);
    r.setUint8(p + REC_KIND, acc | ACC_VALUE);
    r.setUint8(p + REC_SIZE_FIELD, size);
    r.setUint32(p + REC_VALUE, this.valueBytes, true);
    this.values.set(bytes.subarray(off, off + size), this.valueBytes);
    this.valueBytes += size;
    this.count++;
    return true;
  }
  reset(): void { this.count = 0; this.valueBytes = 0; }
}
