// The monitored address space on either backend's MMU: the heap in the spread layout (or the packed
// baseline), the trace's own pages for everything else, alias planes, per-frame granularity, and
// the monitoring mechanisms that report dirty units.
//
// GPA space: plane p (0 <= p < 64) starts at the backend's mmu.planeGpa(p) (PLANE_STRIDE apart on
// both backends); its page planeGpa(p) + f * 4096 maps to frame f in the EPT. A slab frame of class c has K = 4096 / c
// slots and all K of its plane pages mapped when it is created; nothing in the EPT changes after.
// The guest page table maps V(f, j) to the plane page of j's group leader: with groups of m slots,
// leader(j) = floor(j / m) * m. Pages that are not slabs (large objects, the trace's own pages) use
// plane 0 only.
//
// Monitoring mechanisms (DESIGN.md section 2):
//   gpt-wp     guest page-table write protection: a write to a protected V page is a #PF in the
//              guest; the in-guest handler (the simulator's built-in one, or the KVM guest's) logs
//              the page, sets R/W on every V page of the group (the aligned block of m pages its
//              PTE_SW_GROUP field names) and invalidates them, and the access retries.
//   ept-wp     EPT write protection of the plane pages: a write is an EPT violation (a VM exit);
//              the simulator's built-in host handler grants W on that GPA page and logs it.
//   ept-dirty  no faults: the EPT D flags of the plane pages are harvested (and cleared) per epoch.
//   pml        page-modification logging: the CPU logs GPAs as it sets EPT D flags; a full log is a
//              PML-full exit, drained by the built-in handler; the rest is harvested per epoch.
//   spp        sub-page write permissions: every plane page is write-protected in the EPT with
//              SPP on and an all-deny vector; a write is an EPT violation (a VM exit) for its
//              128-byte sub-page, which the built-in handler grants and logs. Units are 128 bytes
//              whatever the layout; meant for the packed layout, the hardware alternative.
import { SimMmu } from '../sim-mmu.ts';
import type { FaultRecord } from '../sim.ts';
import type { Mmu, DirtyEntry } from '../mmu.ts';
import { createMmu, type BackendChoice, type MmuOptions } from '../backend.ts';
import type { Counters } from '../counters.ts';
import { MAX_PLANES, PAGE, type MapRequest } from '../alloc/classes.ts';

export type MonitorMode = 'gpt-wp' | 'ept-wp' | 'ept-dirty' | 'pml' | 'spp';
export const MONITOR_MODES: MonitorMode[] = ['gpt-wp', 'ept-wp', 'ept-dirty', 'pml', 'spp'];
/** SPP's sub-page size (SDM 29.3.4) */
export const SPP_UNIT = 128;

/** GPA distance between alias planes: room for 2^18 frames (1 GiB) in each. */
export const PLANE_STRIDE = 2 ** 30;
const MAX_POOL = PLANE_STRIDE / PAGE;

const SLAB = 1;
const PLAIN = 2;

export class SpaceError extends Error {}
/** The run needs more pool frames than the space was created with (a larger pool runs it). */
export class OutOfFramesError extends SpaceError {}

const hex = (n: number | bigint) => '0x' + n.toString(16);

export interface SpaceOptions {
  mode: MonitorMode;
  /** pool frames: the most distinct frames (slabs, large-object pages, the trace's own pages) */
  frames?: number;
  tlbSets?: number;
  tlbWays?: number;
  /** the MMU to run on (default sim) */
  backend?: BackendChoice;
  /** keep each written slab frame's guest PTE D flags at harvest, for slotWrites (the adaptive policy) */
  trackSlots?: boolean;
  /** the simulator module's bytes (a browser or worker has no file to load it from); default: build/sim.release.wasm */
  wasm?: BufferSource;
}

/** A dirty unit: bytes [offset, offset + len) of pool frame `frame`. */
export interface DirtyUnit { frame: number; offset: number; len: number }

export interface SpaceCounters {
  faults: number;
  exits: Record<string, number>;
  /** null where the backend cannot count them (KVM: the TLB and the walks are the CPU's) */
  tlbMisses: number | null;
  walkRefs: number | null;
}

/** What a mode asks of the MMU beyond the common interface (createMmu and kvmLacks read it). */
export function mmuNeeds(mode: MonitorMode): Pick<MmuOptions, 'pml' | 'eptWriteProtect' | 'spp'> {
  return { pml: mode === 'pml', eptWriteProtect: mode === 'ept-wp', spp: mode === 'spp' };
}

export class MonitoredSpace {
  readonly mmu: Mmu;
  readonly mode: MonitorMode;
  /** per pool frame: SLAB, PLAIN or 0 */
  private kind: Uint8Array;
  /** slab frames: slot size; plain frames: 4096 */
  private cls: Uint16Array;
  /** slab frames: slots per unit (m) */
  private group: Uint8Array;
  /** slab frames: GVA of V(f, 0); plain frames: the page's GVA */
  private gva: Float64Array;
  /** page number of a mapped GVA page -> frame * 64 + slot (plain pages: slot 0) */
  private readonly byPage = new Map<number, number>();
  /** allocator frame index -> pool frame */
  private readonly poolOf: number[] = [];
  private nextFrame = 0;
  /** slab frames in creation order, for harvesting and granularity changes */
  readonly slabs: number[] = [];
  /** units dirtied this epoch: key frame * 4096 + offset -> length */
  private readonly dirty = new Map<number, number>();
  /** gpt-wp: first V page and page count of each group the handler opened this epoch */
  private readonly lifted: number[] = [];
  /** trackSlots: guest PTE D flags of the slab frames written in the last epoch */
  private readonly slotDirty = new Map<number, Uint8Array>();
  private readonly trackSlots: boolean;
  private faults = 0;
  /** GPA distance between alias planes on this backend */
  private readonly stride: number;
  private counterBase: Counters;
  /** accesses ran since the last harvest */
  private epochOpen = false;

  private constructor(mmu: Mmu, mode: MonitorMode, trackSlots: boolean) {
    this.mmu = mmu;
    this.mode = mode;
    this.trackSlots = trackSlots;
    this.stride = Number(mmu.planeGpa(1) - mmu.planeGpa(0));
    const n = mmu.frames;
    this.kind = new Uint8Array(n);
    this.cls = new Uint16Array(n);
    this.group = new Uint8Array(n);
    this.gva = new Float64Array(n);
    this.counterBase = mmu.counters();
  }

  static async create(o: SpaceOptions): Promise<MonitoredSpace> {
    const frames = o.frames ?? 1 << 16;
    if (frames > MAX_POOL) throw new SpaceError(`a pool of ${frames} frames does not fit a plane (${MAX_POOL} frames at most)`);
    // Tables: the EPT maps up to 64 plane pages per slab frame; the guest table maps 64 V pages.
    const tableBytes = Math.max(8 << 20, Math.ceil(frames / 16) * PAGE * 4);
    // What the mode needs decides the backend too: auto runs on the simulator what KVM lacks, and says why.
    const mmu = await createMmu(o.backend ?? 'sim', { frames, tableBytes, tlbSets: o.tlbSets, tlbWays: o.tlbWays, maxPhyAddr: 46, wasm: o.wasm, ...mmuNeeds(o.mode) });
    return new MonitoredSpace(mmu, o.mode, o.trackSlots ?? false);
  }

  /** The simulator under this space, for tools that inspect its tables; throws on other backends. */
  get sim(): SimMmu {
    if (!(this.mmu instanceof SimMmu)) throw new SpaceError(`this monitored space runs on the ${this.mmu.backend} backend, not the simulator`);
    return this.mmu;
  }

  close(): Promise<void> { return this.mmu.close(); }

  // ---- mapping ------------------------------------------------------------------------------

  private newFrame(): number {
    const f = this.nextFrame++;
    if (f >= this.mmu.frames) throw new OutOfFramesError(`out of frames: the run needs more than ${this.mmu.frames} (${this.mmu.frames * 4} KiB); give a larger pool with --frames`);
    return f;
  }

  private gpaOf(plane: number, frame: number): bigint { return this.mmu.planeGpa(plane) + BigInt(frame * PAGE); }
  private planeOf(gpa: bigint): { plane: number; frame: number; offset: number } {
    const g = Number(gpa - this.mmu.planeGpa(0));
    const plane = Math.floor(g / this.stride);
    const rest = g - plane * this.stride;
    return { plane, frame: Math.floor(rest / PAGE), offset: rest % PAGE };
  }

  /** The allocator's map requests: slabs get K V pages onto K planes, large objects plain pages. */
  onMap = (r: MapRequest, granularity: number): void => {
    // A slab with a single V page (a packed page of cells, or a spread slab of class 4096) is an
    // ordinary page: one GPA page, one unit.
    if (r.kind === 'slab' && r.vpages.length === 1) {
      const f = this.newFrame();
      this.poolOf[r.frame] = f;
      this.mapPlain(f, r.vpages[0]!);
    } else if (r.kind === 'slab') {
      const f = this.newFrame();
      this.poolOf[r.frame] = f;
      const k = r.slots;
      this.kind[f] = SLAB;
      this.cls[f] = r.cls;
      this.group[f] = Math.max(1, Math.min(k, Math.floor(granularity / r.cls)));
      this.gva[f] = r.vpages[0]!;
      for (let p = 0; p < k; p++) this.mmu.mapPlane(this.gpaOf(p, f), f, 1);
      for (let j = 0; j < k; j++) {
        const v = r.vpages[j]!;
        this.byPage.set(v / PAGE, f * MAX_PLANES + j);
        this.mmu.mapGva(BigInt(v), this.gpaOf(this.leader(f, j), f), 1);
      }
      this.slabs.push(f);
      this.armFrame(f);
    } else {
      r.frames.forEach((af, i) => {
        const f = this.newFrame();
        this.poolOf[af] = f;
        this.mapPlain(f, r.gva + i * PAGE);
      });
    }
  };

  private mapPlain(f: number, page: number): void {
    this.kind[f] = PLAIN;
    this.cls[f] = PAGE;
    this.group[f] = 1;
    this.gva[f] = page;
    this.byPage.set(page / PAGE, f * MAX_PLANES);
    this.mmu.mapPlane(this.gpaOf(0, f), f, 1);
    this.mmu.mapGva(BigInt(page), this.gpaOf(0, f), 1);
    this.armFrame(f);
  }

  /** A page of the trace's own layout, mapped on first touch. */
  mapOwnPage(page: number): void {
    if (this.byPage.has(page / PAGE)) throw new SpaceError(`page ${hex(page)} faulted as not present after it was mapped`);
    this.mapPlain(this.newFrame(), page);
  }

  private leader(f: number, j: number): number { const m = this.group[f]!; return j - (j % m); }
  private slots(f: number): number { return this.kind[f] === SLAB ? PAGE / this.cls[f]! : 1; }
  private vpage(f: number, j: number): number { return this.gva[f]! + j * PAGE; }

  /** Pool frame of an allocator frame. */
  poolFrame(allocFrame: number): number { return this.poolOf[allocFrame]!; }

  // ---- granularity --------------------------------------------------------------------------

  /** Slots per unit of a slab frame (1 for plain pages). */
  groupOf(f: number): number { return this.group[f]!; }

  /** Unit size of a frame in bytes (slot size x slots per group; 4096 for plain pages). */
  unitOf(f: number): number { return this.kind[f] === SLAB ? this.cls[f]! * this.group[f]! : PAGE; }

  /**
   * Regroups a slab frame's slots into units of `unit` bytes (at least its slot size): rewrites the
   * guest PTEs of its V pages to the new leaders' plane pages and invalidates them. No byte moves
   * and the EPT is untouched. Returns the number of PTEs rewritten.
   */
  setGranularity(f: number, unit: number): number {
    if (!Number.isInteger(unit) || unit < 64 || unit > PAGE || (unit & (unit - 1)) !== 0) {
      throw new RangeError(`setGranularity: unit ${unit} is not a power of two from 64 to 4096 bytes`);
    }
    // Units already seen this epoch were recorded with the old grouping, and protections granted
    // under it; a regroup is therefore an epoch-boundary operation.
    if (this.epochOpen) throw new SpaceError('setGranularity: change granularity between epochs (after harvest(), before the next access), not during one');
    if (this.kind[f] !== SLAB) return 0;
    const k = this.slots(f);
    const m = Math.max(1, Math.min(k, Math.floor(unit / this.cls[f]!)));
    if (m === this.group[f]) return 0;
    const before = this.group[f]!;
    this.group[f] = m;
    let n = 0;
    for (let j = 0; j < k; j++) {
      const was = j - (j % before);
      const now = j - (j % m);
      if (was === now) continue;
      this.mmu.remapGva(BigInt(this.vpage(f, j)), this.gpaOf(now, f), 1);
      n++;
    }
    // Between epochs every page is protected; the handler's group (PTE_SW_GROUP) follows the unit.
    if (this.mode === 'gpt-wp') this.mmu.protectGva(BigInt(this.vpage(f, 0)), k, true, m);
    return n;
  }

  /**
   * setGranularity for a region: every slab frame with a V page in [gva, gva + bytes). Returns
   * the frames regrouped and the guest PTEs rewritten.
   */
  setGranularityRange(gva: number, bytes: number, unit: number): { frames: number; ptes: number } {
    let frames = 0;
    let ptes = 0;
    for (const f of this.slabs) {
      const lo = this.gva[f]!;
      const hi = lo + this.slots(f) * PAGE;
      if (hi <= gva || lo >= gva + bytes) continue;
      const n = this.setGranularity(f, unit);
      if (n > 0) frames++;
      ptes += n;
    }
    return { frames, ptes };
  }

  // ---- monitoring ---------------------------------------------------------------------------

  /** Arms one frame for the current mode (at creation, and after its units were harvested). */
  private armFrame(f: number): void {
    const k = this.slots(f);
    if (this.mode === 'gpt-wp') {
      this.mmu.protectGva(BigInt(this.vpage(f, 0)), k, true, this.group[f]!);
    } else if (this.mode === 'ept-wp') {
      for (let p = 0; p < k; p++) this.mmu.protectGpa(this.gpaOf(p, f), 1, true);
    } else if (this.mode === 'spp') {
      for (let p = 0; p < k; p++) this.sim.setSubPageWrites(this.gpaOf(p, f), 0n);
    }
  }

  private record(f: number, offset: number, len: number): void {
    const key = f * PAGE + offset;
    if (!this.dirty.has(key)) this.dirty.set(key, len);
  }

  /** The unit holding GVA page `page` (a V page or a plain page). */
  private unitOfPage(pageNumber: number): { f: number; lead: number } | undefined {
    const e = this.byPage.get(pageNumber);
    if (e === undefined) return undefined;
    const f = Math.floor(e / MAX_PLANES);
    return { f, lead: this.leader(f, e % MAX_PLANES) };
  }

  /** A page the in-guest #PF handler opened: its unit, and the group to protect again at harvest. */
  private recordGvaPage(gva: bigint): void {
    const u = this.unitOfPage(Number(gva) / PAGE);
    if (!u) throw new SpaceError(`the in-guest monitor reported GVA ${hex(gva)}, which is no page of this space`);
    const { f, lead } = u;
    const m = this.group[f]!;
    this.faults++;
    this.record(f, lead * this.cls[f]!, m * this.cls[f]!);
    this.lifted.push(this.vpage(f, lead), m);
  }

  /** Runs queued accesses with this mode's handlers; `onFault` resolves what they do not (a fault
   *  ends the run at that access, which `onFault` must make retryable). */
  async runBatch(onFault: (f: FaultRecord) => void): Promise<void> {
    const mmu = this.mmu;
    const handlers = { guestWriteProtect: this.mode === 'gpt-wp', eptWriteProtect: this.mode === 'ept-wp', pmlFull: this.mode === 'pml', spp: this.mode === 'spp' };
    let start = 0;
    if (mmu.batch.count > 0) this.epochOpen = true;
    for (;;) {
      const r = await mmu.run(start, handlers);
      this.drainLog();
      if (r.status === 'done') break;
      if (r.status === 'fault') onFault(r.fault!);
      start = r.next;
    }
    mmu.batch.reset();
  }

  /** Units the built-in handlers logged: in-guest #PF pages, EPT exits, PML drains, SPP grants. */
  private drainLog(): void {
    for (const e of this.mmu.dirty()) this.recordEntry(e);
  }

  private recordEntry(e: DirtyEntry): void {
    if (e.source === 'pf') this.recordGvaPage(e.addr);
    else this.recordGpa(e.addr);
  }

  private recordGpa(gpa: bigint): void {
    const { plane, frame: f, offset } = this.planeOf(gpa);
    // PML also logs the guest's own page-table pages (the CPU sets their A/D flags with writes
    // the EPT sees); they live above the planes and are not data.
    if (plane >= MAX_PLANES) return;
    if (this.mode === 'spp') {
      // The handler logs the page's GPA with the sub-page number in bits 11:7.
      // Every plane page maps the whole frame, so the offset in the page is the offset in the frame.
      if (this.kind[f] !== 0) this.record(f, offset, SPP_UNIT);
      return;
    }
    if (this.kind[f] === SLAB) this.record(f, plane * this.cls[f]!, this.group[f]! * this.cls[f]!);
    else if (this.kind[f] === PLAIN) this.record(f, 0, PAGE);
    else throw new SpaceError(`the monitor reported GPA ${hex(gpa)}, which maps no frame in use`);
  }

  /**
   * Ends an epoch: collects its dirty units (per mode), re-arms the monitor, and returns the units
   * with the counters of the epoch.
   */
  harvest(): { units: DirtyUnit[]; counters: SpaceCounters } {
    const mmu = this.mmu;
    this.drainLog();
    // Before re-arming: on KVM a protection change clears D (the shadow entry must turn read-only).
    if (this.trackSlots) this.keepSlotFlags();
    if (this.mode === 'gpt-wp') {
      for (let i = 0; i < this.lifted.length; i += 2) mmu.protectGva(BigInt(this.lifted[i]!), this.lifted[i + 1]!, true, this.lifted[i + 1]!);
      this.lifted.length = 0;
    } else if (this.mode === 'ept-wp') {
      for (const key of this.dirty.keys()) {
        const f = Math.floor(key / PAGE);
        const plane = this.kind[f] === SLAB ? (key % PAGE) / this.cls[f]! : 0;
        mmu.protectGpa(this.gpaOf(plane, f), 1, true);
      }
    } else if (this.mode === 'spp') {
      const pages = new Set<number>();
      for (const key of this.dirty.keys()) pages.add(Math.floor(key / PAGE));
      for (const f of pages) for (let p = 0; p < this.slots(f); p++) this.sim.setSubPageWrites(this.gpaOf(p, f), 0n);
    } else {
      if (this.mode === 'pml') { for (const gpa of mmu.harvestPml()) this.recordGpa(gpa); }
      // D flags: the harvest for ept-dirty; for PML, clearing them is what makes the CPU log the
      // page again next epoch (a check: every D page must already have been logged).
      // One call per plane, over the frames that have a page in it (plane 0: every frame in use;
      // plane p: the span of slabs with more than p slots): the backend invalidates once per call
      // rather than once per dirty page, and walks no plane page that cannot be mapped.
      const lo: number[] = [0], hi: number[] = [this.nextFrame];
      for (const f of this.slabs) {
        for (let p = 1; p < this.slots(f); p++) {
          if (lo[p] === undefined || f < lo[p]!) lo[p] = f;
          if (hi[p] === undefined || f + 1 > hi[p]!) hi[p] = f + 1;
        }
      }
      for (let p = 0; p < hi.length; p++) {
        if (hi[p]! > lo[p]!) for (const gpa of mmu.harvestEptDirty(this.gpaOf(p, lo[p]!), hi[p]! - lo[p]!)) this.recordGpa(gpa);
      }
    }
    if (this.trackSlots) this.keepSlotFlags();
    const units = [...this.dirty].map(([key, len]) => ({ frame: Math.floor(key / PAGE), offset: key % PAGE, len }));
    this.dirty.clear();
    this.epochOpen = false;
    const now = this.mmu.counters();
    // By name: a counter this backend does not keep is null (KVM has no TLB or walk counts).
    const d = (name: string) => (now[name] === undefined ? null : now[name]! - (this.counterBase[name] ?? 0));
    const dn = (name: string) => d(name) ?? 0;
    const exits: Record<string, number> = {};
    // VM exits the monitoring caused (the KVM guest's ring-full exits included).
    for (const name of ['eptViolation', 'pmlFull', 'ringFull']) if (dn(name)) exits[name] = dn(name);
    const guestRefs = d('guestRefs'), eptRefs = d('eptRefs');
    const counters: SpaceCounters = {
      faults: this.mode === 'gpt-wp' ? this.faults : this.mode === 'ept-wp' ? dn('handledEpt') : this.mode === 'spp' ? dn('handledSpp') : 0,
      exits,
      tlbMisses: d('tlbMisses'),
      walkRefs: guestRefs === null || eptRefs === null ? null : guestRefs + eptRefs,
    };
    this.faults = 0;
    this.counterBase = now;
    return { units, counters };
  }

  /** Guest PTE D flags of the slab frames with units this epoch (others cannot have any). */
  private keepSlotFlags(): void {
    for (const key of this.dirty.keys()) {
      const f = Math.floor(key / PAGE);
      if (this.kind[f] !== SLAB || this.slotDirty.has(f)) continue;
      this.slotDirty.set(f, this.mmu.harvestGuestDirty(BigInt(this.vpage(f, 0)), this.slots(f)));
    }
  }

  /**
   * Which slots of a slab frame were written in the epoch just harvested (trackSlots), from the
   * guest PTE D flags of its V pages. The two levels at work: whatever the EPT-level unit, the
   * guest table still has one PTE, and one D flag, per slot. Each frame's flags are handed out once.
   */
  slotWrites(f: number): boolean[] {
    if (!this.trackSlots) throw new SpaceError('slotWrites: create the space with trackSlots');
    const flags = this.slotDirty.get(f);
    this.slotDirty.delete(f);
    return Array.from({ length: this.slots(f) }, (_, j) => !!flags?.[j]);
  }

  // ---- data and sizes -----------------------------------------------------------------------

  readUnit(u: DirtyUnit): Uint8Array { return this.mmu.readFrame(u.frame, u.offset, u.len); }

  /** Where a GVA lies in the frame pool seen as one region: frame * 4096 + offset in the page. */
  regionOffset(gva: number): number {
    const e = this.byPage.get(Math.floor(gva / PAGE));
    if (e === undefined) throw new SpaceError(`no page of this space maps ${hex(gva)}`);
    return Math.floor(e / MAX_PLANES) * PAGE + (gva % PAGE);
  }

  /** Bytes at a GVA of this space, through its own map of pages to frames (no walk, no side effects). */
  readGva(gva: number, n: number): Uint8Array {
    const out = new Uint8Array(n);
    for (let done = 0; done < n;) {
      const a = gva + done;
      const e = this.byPage.get(Math.floor(a / PAGE));
      if (e === undefined) throw new SpaceError(`cannot read ${hex(a)}: no page of this space maps it`);
      const take = Math.min(n - done, PAGE - (a % PAGE));
      this.mmu.readFrameInto(Math.floor(e / MAX_PLANES), a % PAGE, take, out, done);
      done += take;
    }
    return out;
  }
  /** Whether a pool frame is a slab of the spread layout (its units can be finer than a page). */
  isSlab(f: number): boolean { return this.kind[f] === SLAB; }
  frameBytes(f: number): Uint8Array { return this.mmu.readFrame(f, 0, PAGE); }
  get framesUsed(): number { return this.nextFrame; }
  get tableBytes(): number { return this.mmu.tableBytes; }
  get vaBytes(): number { return this.byPage.size * PAGE; }
  isMapped(pageNumber: number): boolean { return this.byPage.has(pageNumber); }
}
