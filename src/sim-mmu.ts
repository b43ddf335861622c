// The Mmu on the simulator. Host-physical layout: table frames (EPT, guest page tables, the PML
// log) first, then the data frame pool. Guest page-table pages live in the top half of GPA
// space, mapped 1:1 to their table frames in the EPT; planes go below.
import {
  PTE_RW, PTE_US, PTE_XD, PTE_D, PTE_SW_WP, PTE_SW_GROUP, PTE_ADDR, EPT_R, EPT_W, EPT_X, EPT_D, EPT_SW_WP, INVEPT_SINGLE,
  HANDLE_PF_WP, HANDLE_EPT_WP, HANDLE_PML_FULL, HANDLE_SPP, DLOG_PF, DLOG_EPT, DLOG_PML, EPT_SPP, SPPT_P,
} from './consts.ts';
import { Sim, BATCH_DONE, BATCH_FAULT, BATCH_DLOG_FULL, BATCH_BAD_RECORD, type SimOptions } from './sim.ts';
import { BatchWriter } from './batch.ts';
import { FrameAllocator, EptBuilder, GuestPtBuilder, addrMaskFor, EPT_MT_WB, PAGE_4K } from './space.ts';
import { groupField, checkPages, checkCanonicalRange, checkFrameRange, type Mmu, type PlaneOptions, type GuestPageFlags, type Handlers, type RunResult, type DirtyEntry } from './mmu.ts';

export interface SimMmuOptions extends Omit<SimOptions, 'physBytes'> {
  /** data frames in the pool (default 4096 = 16 MiB) */
  frames?: number;
  /** host memory for page tables (default 4 MiB) */
  tableBytes?: number;
  /** EPT accessed/dirty flags (default true) */
  eptAd?: boolean;
  /** page-modification logging (default false; needs eptAd) */
  pml?: boolean;
}

const hex = (v: bigint) => '0x' + v.toString(16);
const PAGE = 4096n;

export class SimMmu implements Mmu {
  readonly backend = 'sim' as const;
  readonly reason: string;
  readonly maxPhyAddr: number;
  readonly frames: number;
  readonly batch: BatchWriter;
  readonly ept: EptBuilder;
  readonly gpt: GuestPtBuilder;
  private readonly poolBase: bigint;
  /** poolBase as a number (an offset into sim.phys) */
  private readonly poolStart: number;
  private readonly tables: FrameAllocator;
  private readonly pmlPage: bigint;
  private readonly gpaLimit: bigint;
  /** The EPTP set at construction; nothing in SimMmu changes it later (invept names it). */
  private readonly eptp: bigint;

  private constructor(readonly sim: Sim, o: { frames: number; tableBytes: number; eptAd: boolean; pml: boolean }, reason: string) {
    this.reason = reason;
    this.maxPhyAddr = sim.maxPhyAddr;
    this.frames = o.frames;
    const mask = addrMaskFor(sim.maxPhyAddr);
    const tables = new FrameAllocator(0n, BigInt(o.tableBytes));
    this.tables = tables;
    this.poolBase = BigInt(o.tableBytes);
    this.poolStart = o.tableBytes;
    this.gpaLimit = 1n << BigInt(sim.maxPhyAddr - 1);
    this.ept = new EptBuilder(sim, tables, mask);
    this.gpt = new GuestPtBuilder(sim, tables, new FrameAllocator(this.gpaLimit, this.gpaLimit * 2n), this.ept, mask);
    this.pmlPage = tables.alloc();
    this.eptp = this.ept.eptp(o.eptAd);
    sim.setCpu({ cr3: this.gpt.cr3, eptp: this.eptp, pml: { enabled: o.pml, address: this.pmlPage, index: 511 } });
    this.batch = new BatchWriter(sim);
  }

  static async create(opts: SimMmuOptions = {}, reason = 'simulator selected'): Promise<SimMmu> {
    const frames = opts.frames ?? 4096;
    const tableBytes = opts.tableBytes ?? 4 << 20;
    if (!Number.isInteger(frames) || frames < 1) throw new RangeError(`frames must be a positive integer, got ${frames}`);
    if (!Number.isInteger(tableBytes) || tableBytes % 4096 !== 0 || tableBytes < 16384) throw new RangeError(`tableBytes must be a multiple of 4096, at least 16384, got ${tableBytes}`);
    const eptAd = opts.eptAd ?? true;
    const pml = opts.pml ?? false;
    if (pml && !eptAd) throw new RangeError('PML needs EPT accessed and dirty flags (eptAd)');
    const sim = await Sim.create({ ...opts, physBytes: tableBytes + frames * 4096 });
    return new SimMmu(sim, { frames, tableBytes, eptAd, pml }, reason);
  }

  private checkGpa(what: string, gpa: bigint, count: number): void {
    checkPages(what, gpa, count);
    if (gpa < 0n || gpa + BigInt(count) * PAGE > this.gpaLimit) {
      throw new RangeError(`${what}: GPA ${hex(gpa)} + ${count} pages is outside the plane area 0..${hex(this.gpaLimit)} (the top half of GPA space holds the guest's page tables)`);
    }
  }
  private checkGva(what: string, gva: bigint, count: number): void {
    checkCanonicalRange(what, gva, count);
  }
  private leafOrThrow(what: string, gva: bigint) {
    const l = this.gpt.leafEntry(gva);
    if (!l) throw new RangeError(`${what}: GVA ${hex(gva)} is not mapped`);
    return l;
  }
  private eptLeafOrThrow(what: string, gpa: bigint) {
    const l = this.ept.leafEntry(gpa);
    if (!l) throw new RangeError(`${what}: GPA ${hex(gpa)} is not mapped in the EPT`);
    return l;
  }

  /** Plane p starts at p GiB: 64 planes of up to 2^18 frames stay far below the page tables' half. */
  planeGpa(p: number): bigint { return BigInt(p) << 30n; }

  mapPlane(gpa: bigint, first: number, count: number, opts: PlaneOptions = {}): void {
    this.checkGpa('mapPlane', gpa, count);
    if (!Number.isInteger(first) || first < 0 || first + count > this.frames) {
      throw new RangeError(`mapPlane: frames ${first}..${first + count - 1} are outside the pool of ${this.frames} frames`);
    }
    const flags = EPT_R | (opts.writable === false ? 0n : EPT_W) | (opts.exec === false ? 0n : EPT_X) | EPT_MT_WB;
    for (let i = 0; i < count; i++) {
      this.ept.map(gpa + BigInt(i) * PAGE, this.poolBase + BigInt(first + i) * PAGE, PAGE_4K, flags);
    }
  }

  mapGva(gva: bigint, gpa: bigint, count: number, f: GuestPageFlags = {}): void {
    this.checkGva('mapGva', gva, count);
    this.checkGpa('mapGva', gpa, count);
    const flags = (f.writable === false ? 0n : PTE_RW) | (f.user === false ? 0n : PTE_US) | (f.noExec ? PTE_XD : 0n);
    for (let i = 0n; i < BigInt(count); i++) this.gpt.map(gva + i * PAGE, gpa + i * PAGE, PAGE_4K, flags);
  }

  remapGva(gva: bigint, gpa: bigint, count: number): void {
    this.checkGva('remapGva', gva, count);
    this.checkGpa('remapGva', gpa, count);
    for (let i = 0n; i < BigInt(count); i++) {
      const l = this.leafOrThrow('remapGva', gva + i * PAGE);
      this.sim.write64(l.hpa, (l.value & ~PTE_ADDR) | (gpa + i * PAGE));
      this.sim.invlpg(gva + i * PAGE);
    }
  }

  unmapGva(gva: bigint, count: number): void {
    this.checkGva('unmapGva', gva, count);
    for (let i = 0n; i < BigInt(count); i++) {
      const l = this.leafOrThrow('unmapGva', gva + i * PAGE);
      this.sim.write64(l.hpa, 0n);
      this.sim.invlpg(gva + i * PAGE);
    }
  }

  protectGva(gva: bigint, count: number, protect: boolean, group = 1): void {
    this.checkGva('protectGva', gva, count);
    const field = groupField('protectGva', group);
    for (let i = 0n; i < BigInt(count); i++) {
      const l = this.leafOrThrow('protectGva', gva + i * PAGE);
      const v = protect ? (l.value & ~PTE_RW & ~PTE_SW_GROUP) | PTE_SW_WP | field : (l.value | PTE_RW) & ~PTE_SW_WP & ~PTE_SW_GROUP;
      if (v === l.value) continue;
      this.sim.write64(l.hpa, v);
      // The group field is read by the handler from memory; the TLB holds nothing of it.
      if ((v ^ l.value) & ~PTE_SW_GROUP) this.sim.invlpg(gva + i * PAGE);
    }
  }

  harvestGuestDirty(gva: bigint, count: number): Uint8Array {
    this.checkGva('harvestGuestDirty', gva, count);
    const out = new Uint8Array(count);
    for (let i = 0; i < count; i++) {
      const v = gva + BigInt(i) * PAGE;
      const l = this.gpt.leafEntry(v);
      if (!l || (l.value & PTE_D) === 0n) continue;
      out[i] = 1;
      this.sim.write64(l.hpa, l.value & ~PTE_D);
      this.sim.invlpg(v);
    }
    return out;
  }

  protectGpa(gpa: bigint, count: number, protect: boolean): void {
    this.checkGpa('protectGpa', gpa, count);
    let changed = false;
    for (let i = 0n; i < BigInt(count); i++) {
      const l = this.eptLeafOrThrow('protectGpa', gpa + i * PAGE);
      const v = protect ? (l.value & ~EPT_W) | EPT_SW_WP : (l.value | EPT_W) & ~EPT_SW_WP;
      if (v !== l.value) { this.sim.write64(l.hpa, v); changed = true; }
    }
    if (changed) this.sim.invept(INVEPT_SINGLE, this.eptp);
  }

  async run(start = 0, h: Handlers = {}): Promise<RunResult> {
    return this.runSync(start, h);
  }

  /** run() without the Promise, for callers that know they have the simulator. */
  runSync(start = 0, h: Handlers = {}): RunResult {
    const bits = (h.guestWriteProtect ? HANDLE_PF_WP : 0) | (h.eptWriteProtect ? HANDLE_EPT_WP : 0)
      | (h.pmlFull ? HANDLE_PML_FULL : 0) | (h.spp ? HANDLE_SPP : 0);
    const { next, status } = this.sim.runBatch(start, this.batch.count, bits);
    if (status === BATCH_DONE) return { next, status: 'done', fault: null };
    if (status === BATCH_FAULT) return { next, status: 'fault', fault: this.sim.lastFault() };
    if (status === BATCH_DLOG_FULL) return { next, status: 'log-full', fault: null };
    if (status === BATCH_BAD_RECORD) throw new RangeError(`batch record ${next} is malformed (size must be 1..64, kind r/w/x, value inside the value area)`);
    throw new Error(`simulator returned unknown batch status ${status}`);
  }

  dirty(): DirtyEntry[] {
    const src = { [DLOG_PF]: 'pf', [DLOG_EPT]: 'ept', [DLOG_PML]: 'pml' } as Record<number, DirtyEntry['source']>;
    return this.sim.drainDirtyLog().map((e) => ({ source: src[e.kind] ?? 'spp', addr: e.addr }));
  }

  harvestEptDirty(gpa: bigint, count: number): bigint[] {
    this.checkGpa('harvestEptDirty', gpa, count);
    const out: bigint[] = [];
    for (let i = 0n; i < BigInt(count); i++) {
      const l = this.ept.leafEntry(gpa + i * PAGE);
      if (!l || (l.value & EPT_D) === 0n) continue;
      this.sim.write64(l.hpa, l.value & ~EPT_D);
      out.push(gpa + i * PAGE);
    }
    // Cached translations remember D = 1; drop them so the next write sets D again.
    if (out.length) this.sim.invept(INVEPT_SINGLE, this.eptp);
    return out;
  }

  harvestPml(): bigint[] {
    const { pml } = this.sim.cpu();
    const out: bigint[] = [];
    const first = pml.index > 511 ? 0 : pml.index + 1;
    for (let i = 511; i >= first; i--) out.push(this.sim.read64(this.pmlPage + BigInt(i) * 8n));
    this.sim.setCpu({ pml: { ...pml, index: 511 } });
    return out;
  }

  private frameHpa(frame: number, offset: number, len: number): bigint {
    checkFrameRange(this.frames, frame, offset, len);
    return this.poolBase + BigInt(frame) * PAGE + BigInt(offset);
  }
  readFrame(frame: number, offset: number, len: number): Uint8Array { return this.sim.readBytes(this.frameHpa(frame, offset, len), len); }
  readFrameInto(frame: number, offset: number, len: number, dst: Uint8Array, at: number): void {
    checkFrameRange(this.frames, frame, offset, len);
    // The pool starts at poolBase (< 2^32: it is in the WASM memory) and phys is a view, not a copy.
    const start = this.poolStart + frame * 4096 + offset;
    dst.set(this.sim.phys.subarray(start, start + len), at);
  }
  writeFrame(frame: number, offset: number, bytes: Uint8Array): void { this.sim.writeBytes(this.frameHpa(frame, offset, bytes.length), bytes); }

  private sppRoot: bigint | null = null;

  /**
   * Sub-page write permissions (SPP, SDM 29.3.4) for the GPA page `gpa`: its EPT leaf loses W and
   * gains the SPP bit, and its SPP vector becomes `vector` (bit 2i grants writes to the 128-byte
   * sub-page i). The SPP table is built on first use and SPP enabled in the vCPU.
   */
  setSubPageWrites(gpa: bigint, vector: bigint): void {
    this.checkGpa('setSubPageWrites', gpa, 1);
    if (this.sppRoot === null) {
      this.sppRoot = this.tables.alloc();
      this.sim.setCpu({ spp: { enabled: true, spptp: this.sppRoot } });
    }
    let table = this.sppRoot;
    for (let level = 4; level > 1; level--) {
      const slot = table + ((gpa >> BigInt(3 + 9 * level)) & 511n) * 8n;
      let e = this.sim.read64(slot);
      if ((e & SPPT_P) === 0n) { e = this.tables.alloc() | SPPT_P; this.sim.write64(slot, e); }
      table = e & ~0xfffn;
    }
    this.sim.write64(table + ((gpa >> 12n) & 511n) * 8n, vector);
    const l = this.eptLeafOrThrow('setSubPageWrites', gpa);
    const v = (l.value & ~EPT_W) | EPT_SPP;
    if (v !== l.value) this.sim.write64(l.hpa, v);
    this.sim.invept(INVEPT_SINGLE, this.eptp);
  }

  /** Host memory holding paging structures so far: EPT, guest page tables and the PML page. */
  get tableBytes(): number { return Number(this.tables.used); }

  counters() { return this.sim.counters(); }
  resetCounters(): void { this.sim.resetCounters(); }
  async close(): Promise<void> {}
}

