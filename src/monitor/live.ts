// `granule compare --live`: the host baselines as rows. The page-level run (packed layout, one
// unit per page) is recorded as it goes, each access at its pool frame and offset; its epochs are
// then replayed natively in this process, in a region of as many pages as that run used, under each
// host mechanism (mprotect + SIGSEGV, userfaultfd WP, WP_ASYNC + PAGEMAP_SCAN, soft-dirty where the
// kernel has it). Same accesses, same pages, so a baseline must find exactly the page-level row's
// dirty pages in every epoch and end with the same bytes; only the costs differ, and those are
// what these rows measure: arming, running (faults included), harvesting and copying per epoch.
import { ACC_KIND_MASK, ACC_WRITE } from '../consts.ts';
import { release } from 'node:os';
import { HostBatch, HostRegion, probeBaselines, BASELINE_MODES, type BaselineMode } from '../hw/baselines.ts';
import { cpuModel } from '../host.ts';
import { ratios } from './sweep.ts';
import type { MonitoredSpace, DirtyUnit } from '../layout/space.ts';
import type { CompareRow, HostCosts } from '../report/types.ts';

const PAGE = 4096;

/** Collects the page-level run's accesses per epoch, at pool frame offsets (the region's layout). */
export class LiveRecorder {
  /** per epoch: the accesses, and the frames the monitor found dirty */
  readonly epochs: { batch: HostBatch; dirty: number[] }[] = [];
  private gva: number[] = [];
  private meta: number[] = [];
  private vals: number[] = [];
  private bytes = new Uint8Array(1 << 16);
  private byteCount = 0;

  /** MonitorOptions.onAccess: an access as queued (GVA, size, ACC_* kind, its bytes when a write). */
  onAccess = (gva: number, size: number, acc: number, vals: Uint8Array | null, voff: number): void => {
    this.gva.push(gva);
    this.meta.push(size * 256 + (acc & 0xff));
    if (vals && (acc & ACC_KIND_MASK) === ACC_WRITE) {
      while (this.byteCount + size > this.bytes.length) {
        const b = new Uint8Array(this.bytes.length * 2);
        b.set(this.bytes);
        this.bytes = b;
      }
      this.bytes.set(vals.subarray(voff, voff + size), this.byteCount);
      this.vals.push(this.byteCount);
      this.byteCount += size;
    } else {
      this.vals.push(-1);
    }
  };

  /** MonitorOptions.onEpoch: every page the epoch touched is mapped now, so its accesses get their frames. */
  onEpoch = (units: DirtyUnit[], space: MonitoredSpace): void => {
    const batch = new HostBatch(Math.max(16, this.gva.length + 16), Math.max(64, this.byteCount));
    for (let i = 0; i < this.gva.length; i++) {
      const size = Math.floor(this.meta[i]! / 256);
      const acc = this.meta[i]! & 0xff;
      const v = this.vals[i]!;
      // An access may cross into a page on another frame: split it there.
      for (let off = 0; off < size;) {
        const a = this.gva[i]! + off;
        const n = Math.min(size - off, PAGE - (a % PAGE));
        const at = space.regionOffset(a);
        batch.push(at, acc & ACC_KIND_MASK, n, v >= 0 ? this.bytes.subarray(v + off, v + off + n) : undefined);
        off += n;
      }
    }
    this.epochs.push({ batch, dirty: [...new Set(units.map((u) => u.frame))].sort((a, b) => a - b) });
    this.gva = [];
    this.meta = [];
    this.vals = [];
    this.byteCount = 0;
  };
}

export class LiveError extends Error {}

/**
 * Replays the recorded epochs under each available host mode and returns their rows (epoch 0, the
 * base image, is run but left out of the sums like every other row's), and a note per mode that
 * could not run here. `finalFrames` is the page-level run's memory at the end, which each region
 * must equal.
 */
export function hostRows(rec: LiveRecorder, pages: number, finalFrames: (f: number) => Uint8Array, idealBytes: number, pageBytes: number): { rows: CompareRow[]; notes: string[] } {
  const rows: CompareRow[] = [];
  const notes: string[] = [];
  const probe = probeBaselines();
  for (const mode of BASELINE_MODES) {
    if (!probe[mode].available) {
      notes.push(`Host baseline ${mode} left out: ${probe[mode].why}`);
      continue;
    }
    rows.push(runMode(mode, rec, pages, finalFrames, idealBytes, pageBytes));
  }
  notes.push(`Host baselines (--live): the page-level row's accesses replayed natively in this process (no VM) on Linux ${release()}, ${cpuModel()}; their times cover arming, the accesses with their faults, harvesting and copying the dirty pages, not the trace decoding and layout work that the other rows' times include.`);
  return { rows, notes };
}

function runMode(mode: BaselineMode, rec: LiveRecorder, pages: number, finalFrames: (f: number) => Uint8Array, idealBytes: number, pageBytes: number): CompareRow {
  const t0 = performance.now();
  const region = HostRegion.create(Math.max(1, pages), mode);
  const copy = new Uint8Array(Math.max(1, pages) * PAGE);
  const costs: HostCosts = { armMs: 0, runMs: 0, harvestMs: 0, copyMs: 0, faults: 0, minorFaults: 0, how: region.how };
  const epochs: CompareRow['epochs'] = [];
  let checkpointBytes = 0;
  let dirtyUnits = 0;
  try {
    rec.epochs.forEach((e, index) => {
      const arm = region.arm();
      const run = region.run(e.batch.records, e.batch.values, e.batch.count);
      const h = region.harvest(copy);
      if (h.pages.length !== e.dirty.length || h.pages.some((p, i) => p !== e.dirty[i])) {
        const missing = e.dirty.filter((p) => !h.pages.includes(p));
        const extra = h.pages.filter((p) => !e.dirty.includes(p));
        throw new LiveError(`host baseline ${mode}, epoch ${index}: found ${h.pages.length} dirty pages where the page-level monitor found ${e.dirty.length} (missing ${missing.slice(0, 5).join(', ') || 'none'}; extra ${extra.slice(0, 5).join(', ') || 'none'}); one of the two is wrong, please report it with the trace`);
      }
      const bytes = h.pages.length * PAGE;
      epochs.push({ index, writes: 0, idealBytes: 0, checkpointBytes: bytes, dirtyUnits: h.pages.length, faults: run.faults, exits: 0, tlbMisses: null, walkRefs: null });
      if (index === 0) return;
      checkpointBytes += bytes;
      dirtyUnits += h.pages.length;
      costs.armMs += arm.ns / 1e6;
      costs.runMs += run.ns / 1e6;
      costs.harvestMs += h.ns / 1e6;
      costs.copyMs += h.copyNs / 1e6;
      costs.faults += run.faults;
      costs.minorFaults += run.minorFaults;
    });
    const mem = new Uint8Array(region.buffer);
    for (let f = 0; f < pages; f++) {
      const want = finalFrames(f);
      const got = mem.subarray(f * PAGE, (f + 1) * PAGE);
      if (!Buffer.from(got).equals(Buffer.from(want))) throw new LiveError(`host baseline ${mode}: page ${f} ends with other bytes than the page-level run's frame ${f}; please report it with the trace`);
    }
  } finally {
    region.close();
  }
  return {
    mode: `host-${mode}`, layout: 'packed', granularity: PAGE, label: `host ${mode} (no VM)`,
    checkpointBytes, ...ratios(checkpointBytes, idealBytes, pageBytes),
    dirtyUnits, faults: costs.faults, exits: {}, tlbMisses: null, walkRefs: null, tableBytes: 0, vaBytes: pages * PAGE,
    seconds: (performance.now() - t0) / 1000, epochs, host: costs,
  };
}
