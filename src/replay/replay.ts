// Replay of a trace in its own layout through the simulator. Every access runs through the 2D
// walk: pages are mapped on first touch (the not-present #PF is real and counted), every mapped
// page is write-protected in the guest page table, and the simulator's built-in #PF handler
// unprotects a page at its first write of an epoch, as an in-guest page-level monitor would.
// Alongside, an EpochBitmap keeps the bytes written so dirty units at every granularity and the
// byte-exact ideal come from the same events.
import { ACC_READ, ACC_WRITE, ACC_FETCH, ACC_USER, FAULT_PF, PFEC_P, CNT_TLB_MISSES, CNT_WALKS, CNT_GUEST_REFS, CNT_EPT_REFS, CNT_HANDLED_PF } from '../consts.ts';
import { counterNames } from '../counters.ts';
import type { Mmu } from '../mmu.ts';
import { createMmu, type BackendChoice } from '../backend.ts';
import type { FaultRecord } from '../sim.ts';
import { EV_READ, EV_WRITE, EV_MODIFY, EV_FETCH, EV_ALLOC, EV_FREE, EV_REALLOC, EV_EPOCH, EV_THREAD, type EventBlock } from '../trace/events.ts';
import { EpochBitmap, checkGranularity } from './units.ts';

export const DEFAULT_GRANULARITIES = [4096, 2048, 1024, 512, 256, 128, 64];
export const DEFAULT_EPOCH_WRITES = 10000;
/** Accesses must lie in the lower canonical half: granule replays user-space traces. */
const USER_LIMIT = 2 ** 47;
const PAGE = 4096;
const PIECE = 64;

export interface ReplayOptions {
  /** unit sizes to count (powers of two); default 4096 down to 64 */
  granularities?: number[];
  /** an epoch ends after this many write events (a modify counts once) */
  epochWrites?: number;
  /** also end an epoch at each epoch mark in the trace */
  epochMarks?: boolean;
  /** data frames in the simulated pool: the most distinct pages the trace may touch */
  frames?: number;
  tlbSets?: number;
  tlbWays?: number;
  /** which machine runs the accesses: the simulator (default), KVM, or auto (KVM where it works) */
  backend?: BackendChoice;
}

export interface EpochResult {
  index: number;
  /** write events (writes + modifies) */
  writes: number;
  reads: number;
  fetches: number;
  /** distinct bytes written: the byte-exact ideal */
  idealBytes: number;
  /** distinct dirty units per granularity (keys are the granularity in bytes) */
  units: Record<string, number>;
  /** units x granularity */
  volumeBytes: Record<string, number>;
  faults: { notPresent: number; writeProtect: number };
  tlbMisses: number;
  walks: number;
  /** paging-structure entry reads: guest entries plus EPT entries */
  walkRefs: number;
  allocs: number;
  frees: number;
  reallocs: number;
}

export type ReplayTotals = Omit<EpochResult, 'index'> & { epochs: number; pagesTouched: number };

export interface ReplayResult {
  /** the backend that ran the accesses, and why it was chosen */
  backend: { name: string; reason: string };
  granularities: number[];
  epochWrites: number;
  epochMarks: boolean;
  epochs: EpochResult[];
  totals: ReplayTotals;
}

export class ReplayError extends Error {}

const hex = (n: number | bigint) => '0x' + n.toString(16);

function emptyEpoch(index: number): EpochResult {
  return {
    index, writes: 0, reads: 0, fetches: 0, idealBytes: 0, units: {}, volumeBytes: {},
    faults: { notPresent: 0, writeProtect: 0 }, tlbMisses: 0, walks: 0, walkRefs: 0, allocs: 0, frees: 0, reallocs: 0,
  };
}

export class Replayer {
  readonly granularities: number[];
  readonly epochWrites: number;
  readonly epochMarks: boolean;
  private readonly bitmap = new EpochBitmap();
  private readonly epochs: EpochResult[] = [];
  private cur = emptyEpoch(0);
  /** events seen in the current epoch (any kind), so an empty tail adds no epoch */
  private curEvents = 0;
  private nextFrame = 0;
  private readonly mapped = new Set<number>();
  private counterBase: number[];

  private constructor(readonly mmu: Mmu, o: Required<Pick<ReplayOptions, 'granularities' | 'epochWrites' | 'epochMarks'>>) {
    this.granularities = o.granularities;
    this.epochWrites = o.epochWrites;
    this.epochMarks = o.epochMarks;
    this.counterBase = this.counterArray();
  }

  static async create(o: ReplayOptions = {}): Promise<Replayer> {
    const granularities = [...new Set(o.granularities ?? DEFAULT_GRANULARITIES)];
    if (granularities.length === 0) throw new RangeError('no granularities given');
    granularities.forEach(checkGranularity);
    const epochWrites = o.epochWrites ?? DEFAULT_EPOCH_WRITES;
    if (!Number.isSafeInteger(epochWrites) || epochWrites < 1) throw new RangeError(`epoch length ${epochWrites} is not a positive number of writes`);
    const frames = o.frames ?? 1 << 18;
    // Page tables for a sparse 47-bit space: one guest PT page per 2 MiB touched, plus the
    // EPT for the frames; 1/64 of the pool (at least 4 MiB) leaves room for scattered traces.
    const tableBytes = Math.max(4 << 20, Math.ceil(frames / 64) * PAGE * 4);
    const mmu = await createMmu(o.backend ?? 'sim', { frames, tableBytes, tlbSets: o.tlbSets, tlbWays: o.tlbWays });
    return new Replayer(mmu, { granularities, epochWrites, epochMarks: !!o.epochMarks });
  }

  /** Distinct pages touched so far. */
  get pagesTouched(): number { return this.mapped.size; }

  /** Replays one block of events, in order. */
  async block(b: EventBlock): Promise<void> {
    const { kind, addr, size } = b;
    const batch = this.mmu.batch;
    const n = this.epochWrites;
    for (let i = 0; i < b.count; i++) {
      const k = kind[i]!;
      this.curEvents++;
      if (k <= EV_FETCH) {
        const a = addr[i]!;
        const s = size[i]!;
        if (a + s > USER_LIMIT) {
          throw new ReplayError(`access at ${hex(a)} (${s} bytes) is above the 47-bit user half of the address space; granule replays user-space traces`);
        }
        const acc = (k === EV_READ ? ACC_READ : k === EV_FETCH ? ACC_FETCH : ACC_WRITE) | ACC_USER;
        for (let off = 0; off < s; off += PIECE) {
          const piece = Math.min(PIECE, s - off);
          if (!batch.pushAddr(a + off, acc, piece)) { await this.flush(); batch.pushAddr(a + off, acc, piece); }
        }
        if (k === EV_WRITE || k === EV_MODIFY) {
          this.bitmap.write(a, s);
          if (++this.cur.writes === n) await this.endEpoch();
        } else if (k === EV_READ) {
          this.cur.reads++;
        } else {
          this.cur.fetches++;
        }
      } else if (k === EV_ALLOC) {
        this.cur.allocs++;
      } else if (k === EV_FREE) {
        this.cur.frees++;
      } else if (k === EV_REALLOC) {
        this.cur.reallocs++;
      } else if (k === EV_EPOCH) {
        if (this.epochMarks && this.curEvents > 1) await this.endEpoch();
      } else if (k !== EV_THREAD) {
        throw new ReplayError(`unknown event kind ${k}`);
      }
    }
  }

  /** Runs the queued accesses, mapping pages on first touch and harvesting the monitor's log. */
  private async flush(): Promise<void> {
    const mmu = this.mmu;
    let start = 0;
    if (mmu.batch.count === 0) return;
    for (;;) {
      const r = await mmu.run(start, { guestWriteProtect: true });
      if (r.status === 'done') break;
      if (r.status === 'log-full') { this.reprotect(); start = r.next; continue; }
      const f = r.fault!;
      if (f.kind === FAULT_PF && (f.code & PFEC_P) === 0) {
        this.mapPage(Number(f.gva) - (Number(f.gva) % PAGE), f);
        this.cur.faults.notPresent++;
        start = r.next;
        continue;
      }
      throw new ReplayError(`access at ${hex(f.gva)} faulted unexpectedly (fault kind ${f.kind}, code ${hex(f.code)}); this is a bug in granule's replay, please report it with the trace`);
    }
    mmu.batch.reset();
  }

  private mapPage(page: number, f: FaultRecord): void {
    if (this.mapped.has(page)) {
      throw new ReplayError(`page ${hex(page)} faulted as not present after it was mapped (code ${hex(f.code)}); this is a bug in granule's replay`);
    }
    const frame = this.nextFrame++;
    if (frame >= this.mmu.frames) {
      throw new ReplayError(`the trace touches more than ${this.mmu.frames} distinct pages (${this.mmu.frames * 4} KiB); give a larger pool, e.g. --frames ${this.mmu.frames * 4}`);
    }
    const gpa = this.mmu.planeGpa(0) + BigInt(frame) * 4096n;
    this.mmu.mapPlane(gpa, frame, 1);
    this.mmu.mapGva(BigInt(page), gpa, 1);
    this.mmu.protectGva(BigInt(page), 1, true);
    this.mapped.add(page);
  }

  /** Re-arms the monitor on the pages its handler unprotected: one protectGva per run of adjacent pages. */
  private reprotect(): void {
    const d = this.mmu.dirty();
    if (d.length === 0) return;
    const pages = new Float64Array(d.length);
    for (let i = 0; i < d.length; i++) pages[i] = Number(d[i]!.addr) / PAGE;
    pages.sort();
    let first = pages[0]!;
    let next = first + 1;
    for (let i = 1; i <= pages.length; i++) {
      const p = i < pages.length ? pages[i]! : -1;
      if (p === next - 1) continue; // the same page twice
      if (p === next) { next++; continue; }
      this.mmu.protectGva(BigInt(first * PAGE), next - first, true);
      first = p;
      next = p + 1;
    }
  }

  private counterArray(): number[] {
    const c = this.mmu.counters();
    return counterNames.map((name) => c[name] ?? 0);
  }

  private async endEpoch(): Promise<void> {
    await this.flush();
    this.reprotect();
    const e = this.cur;
    const now = this.counterArray();
    const d = (slot: number) => now[slot]! - this.counterBase[slot]!;
    e.faults.writeProtect = d(CNT_HANDLED_PF);
    e.tlbMisses = d(CNT_TLB_MISSES);
    e.walks = d(CNT_WALKS);
    e.walkRefs = d(CNT_GUEST_REFS) + d(CNT_EPT_REFS);
    this.counterBase = now;
    e.idealBytes = this.bitmap.idealBytes();
    for (const g of this.granularities) {
      const u = this.bitmap.units(g);
      e.units[g] = u;
      e.volumeBytes[g] = u * g;
    }
    this.bitmap.clear();
    this.epochs.push(e);
    this.cur = emptyEpoch(this.epochs.length);
    this.curEvents = 0;
  }

  /** Ends the last (possibly partial) epoch, sums the totals and releases the machine. */
  async finish(): Promise<ReplayResult> {
    if (this.curEvents > 0 || this.epochs.length === 0) await this.endEpoch();
    await this.mmu.close();
    const t: ReplayTotals = { ...emptyEpoch(0), epochs: this.epochs.length, pagesTouched: this.mapped.size } as ReplayTotals;
    delete (t as Partial<EpochResult>).index;
    for (const g of this.granularities) { t.units[g] = 0; t.volumeBytes[g] = 0; }
    for (const e of this.epochs) {
      t.writes += e.writes; t.reads += e.reads; t.fetches += e.fetches; t.idealBytes += e.idealBytes;
      for (const g of this.granularities) { t.units[g]! += e.units[g]!; t.volumeBytes[g]! += e.volumeBytes[g]!; }
      t.faults.notPresent += e.faults.notPresent; t.faults.writeProtect += e.faults.writeProtect;
      t.tlbMisses += e.tlbMisses; t.walks += e.walks; t.walkRefs += e.walkRefs;
      t.allocs += e.allocs; t.frees += e.frees; t.reallocs += e.reallocs;
    }
    return { backend: { name: this.mmu.backend, reason: this.mmu.reason }, granularities: this.granularities, epochWrites: this.epochWrites, epochMarks: this.epochMarks, epochs: this.epochs, totals: t };
  }
}
