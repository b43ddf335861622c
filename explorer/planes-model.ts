// The alias-plane view's logic, free of the DOM (tested in Node: test/explorer-sweep.test.ts). A
// small monitored space on the simulator holds one slab frame of the spread layout, filled with
// objects of one size class; a snapshot reads, for that frame, its K virtual pages V(f, j), each
// guest PTE (value, bits, the plane page it targets), the K plane pages plane(p) + f * 4096 and
// their EPT entries (all onto the one host frame), and the frame's bytes. setUnit regroups the
// frame between epochs (MonitoredSpace.setGranularity) and the diff of two snapshots shows what
// changed: guest PTEs, never the EPT or the bytes.
import { PTE_ADDR, EPT_ADDR, ACC_WRITE, ACC_USER } from '../src/consts.ts';
import { hex } from '../src/walkfmt.ts';
import { MonitoredSpace } from '../src/layout/space.ts';
import { SpreadAllocator } from '../src/alloc/spread.ts';
import { PAGE, type MapRequest, type Placement } from '../src/alloc/classes.ts';
import { HEAP_BASE, LARGE_BASE } from '../src/monitor/engine.ts';
import type { FaultRecord } from '../src/sim.ts';

/** Size classes with more than one slot per frame (4096 is a plain page: one V page, one plane). */
export const PLANE_CLASSES: readonly number[] = [64, 128, 256, 512, 1024, 2048];

/** The unit sizes a frame of class `cls` can be grouped in: cls, 2 cls, ... 4096. */
export function unitsFor(cls: number): number[] {
  const out: number[] = [];
  for (let u = cls; u <= PAGE; u *= 2) out.push(u);
  return out;
}

/** One V page of the frame and its guest PTE. */
export interface PteRow {
  j: number;
  /** V(f, j) */
  gva: bigint;
  /** where the PTE lives (host-physical), and its value */
  entryHpa: bigint;
  value: bigint;
  /** the plane page it maps (GPA) and that plane's number */
  target: bigint;
  plane: number;
  /** the group leader of slot j at this unit size: target plane = leader */
  leader: number;
}

/** One plane page of the frame and its EPT entry. */
export interface EptRow {
  p: number;
  /** plane(p) + f * 4096 */
  gpa: bigint;
  entryHpa: bigint;
  value: bigint;
  /** the host frame it maps */
  hpa: bigint;
}

export interface PlanesSnapshot {
  /** pool frame, size class, slots K, unit size, slots per unit */
  frame: number;
  cls: number;
  k: number;
  unit: number;
  group: number;
  ptes: PteRow[];
  epts: EptRow[];
  /** the frame's 4096 bytes */
  bytes: Uint8Array;
}

export interface PlanesDiff {
  /** V pages whose PTE value changed (any bit) */
  ptes: number[];
  /** of those, the ones that now map another plane page */
  retargeted: number[];
  /** plane pages whose EPT entry changed */
  epts: number[];
  /** bytes of the frame that changed */
  bytes: number;
}

export function diffSnapshots(a: PlanesSnapshot, b: PlanesSnapshot): PlanesDiff {
  const ptes: number[] = [], retargeted: number[] = [], epts: number[] = [];
  const n = Math.max(a.ptes.length, b.ptes.length);
  for (let j = 0; j < n; j++) {
    const x = a.ptes[j], y = b.ptes[j];
    if (!x || !y || x.value !== y.value) ptes.push(j);
    if (!x || !y || x.target !== y.target) retargeted.push(j);
  }
  const m = Math.max(a.epts.length, b.epts.length);
  for (let p = 0; p < m; p++) {
    const x = a.epts[p], y = b.epts[p];
    if (!x || !y || x.value !== y.value || x.entryHpa !== y.entryHpa) epts.push(p);
  }
  let bytes = Math.abs(a.bytes.length - b.bytes.length);
  for (let i = 0; i < Math.min(a.bytes.length, b.bytes.length); i++) if (a.bytes[i] !== b.bytes[i]) bytes++;
  return { ptes, retargeted, epts, bytes };
}

const plural = (n: number, one: string, many = `${one}s`) => `${n} ${n === 1 ? one : many}`;

/** The diff in words: '12 guest PTEs rewritten (8 point to another plane page), 0 EPT entries changed, 0 bytes moved'. */
export function diffText(d: PlanesDiff): { ptes: string; ept: string; bytes: string } {
  const groupOnly = d.ptes.length - d.retargeted.length;
  return {
    ptes: `${plural(d.ptes.length, 'guest PTE')} rewritten: ${plural(d.retargeted.length, 'now maps', 'now map')} another plane page`
      + (groupOnly ? `, ${groupOnly} kept ${groupOnly === 1 ? 'its' : 'their'} plane page and changed only the group field (SW_GROUP) the #PF handler reads` : ''),
    ept: `${plural(d.epts.length, 'EPT entry', 'EPT entries')} changed`,
    bytes: `${plural(d.bytes, 'byte')} of the frame changed`,
  };
}

/** Byte `i` of object `n`: its number, then a fill, so each slot reads differently. */
export function objectBytes(n: number, len: number): Uint8Array {
  const out = new Uint8Array(len).fill(0x10 + (n % 0xe0));
  const tag = new TextEncoder().encode(`obj${n}`);
  out.set(tag.subarray(0, Math.min(len, tag.length)));
  return out;
}

const noFault = (f: FaultRecord) => {
  throw new Error(`unexpected fault (kind ${f.kind}, code ${hex(f.code)}) at ${hex(f.gva)} while filling the frame: this is a bug in the explorer`);
};

export interface PlanesOptions {
  /** size class of the objects: one of PLANE_CLASSES */
  cls: number;
  /** the frame's starting unit size (default: one slot) */
  unit?: number;
  /** the simulator module's bytes (the browser) */
  wasm?: BufferSource;
}

/** One slab frame of the spread layout, full of objects, on a small monitored space (gpt-wp). */
export class PlanesLab {
  private constructor(
    readonly space: MonitoredSpace,
    readonly frame: number,
    readonly cls: number,
    readonly k: number,
    readonly vpages: readonly number[],
    readonly objects: readonly Placement[],
  ) {}

  static async create(o: PlanesOptions): Promise<PlanesLab> {
    if (!PLANE_CLASSES.includes(o.cls)) throw new RangeError(`size class ${o.cls} is not one of ${PLANE_CLASSES.join(', ')}`);
    const unit = o.unit ?? o.cls;
    if (!unitsFor(o.cls).includes(unit)) throw new RangeError(`unit ${unit} is not one of ${unitsFor(o.cls).join(', ')} for class ${o.cls}`);
    const space = await MonitoredSpace.create({ mode: 'gpt-wp', frames: 256, wasm: o.wasm });
    try {
      let slab: Extract<MapRequest, { kind: 'slab' }> | null = null;
      const alloc = new SpreadAllocator({
        heapBase: HEAP_BASE, largeBase: LARGE_BASE,
        onMap: (r: MapRequest) => {
          space.onMap(r, unit);
          if (r.kind === 'slab' && !slab) slab = r;
        },
      });
      const k = PAGE / o.cls;
      const objects: Placement[] = [];
      for (let i = 0; i < k; i++) objects.push(alloc.alloc(o.cls, 16));
      const s = slab as Extract<MapRequest, { kind: 'slab' }> | null;
      if (!s) throw new Error('the allocator mapped no slab frame: this is a bug in the explorer');
      // The objects are initialised through the simulator, as a program would: writes to protected
      // V pages, caught by the in-guest #PF handler; then the epoch ends, and everything is armed again.
      const b = space.mmu.batch;
      for (const [n, obj] of objects.entries()) {
        const bytes = objectBytes(n, obj.size);
        for (let off = 0; off < bytes.length; off += 64) {
          const len = Math.min(64, bytes.length - off);
          if (!b.pushAddrValue(obj.addr + off, ACC_WRITE | ACC_USER, len, bytes, off)) {
            await space.runBatch(noFault);
            b.pushAddrValue(obj.addr + off, ACC_WRITE | ACC_USER, len, bytes, off);
          }
        }
      }
      await space.runBatch(noFault);
      space.harvest();
      return new PlanesLab(space, space.poolFrame(s.frame), o.cls, k, s.vpages, objects);
    } catch (e) {
      await space.close();
      throw e;
    }
  }

  get unit(): number { return this.space.unitOf(this.frame); }

  /** The frame as the tables see it now. */
  snapshot(): PlanesSnapshot {
    const sim = this.space.sim;
    const f = this.frame;
    const plane0 = sim.planeGpa(0);
    const stride = sim.planeGpa(1) - plane0;
    const m = this.space.groupOf(f);
    const ptes: PteRow[] = this.vpages.map((v, j) => {
      const l = sim.gpt.leafEntry(BigInt(v));
      if (!l) throw new Error(`V(${f}, ${j}) = ${hex(v)} is not mapped: this is a bug in the explorer`);
      const target = l.value & PTE_ADDR;
      return { j, gva: BigInt(v), entryHpa: l.hpa, value: l.value, target, plane: Number((target - plane0) / stride), leader: j - (j % m) };
    });
    const epts: EptRow[] = Array.from({ length: this.k }, (_, p) => {
      const gpa = sim.planeGpa(p) + BigInt(f * PAGE);
      const l = sim.ept.leafEntry(gpa);
      if (!l) throw new Error(`plane page ${hex(gpa)} is not mapped in the EPT: this is a bug in the explorer`);
      return { p, gpa, entryHpa: l.hpa, value: l.value, hpa: l.value & EPT_ADDR };
    });
    return { frame: f, cls: this.cls, k: this.k, unit: this.space.unitOf(f), group: m, ptes, epts, bytes: this.space.frameBytes(f) };
  }

  /** Regroups the frame (between epochs); returns setGranularity's count of PTEs moved to another plane page. */
  setUnit(unit: number): number {
    if (!unitsFor(this.cls).includes(unit)) throw new RangeError(`unit ${unit} is not one of ${unitsFor(this.cls).join(', ')} for class ${this.cls}`);
    return this.space.setGranularity(this.frame, unit);
  }

  close(): Promise<void> { return this.space.close(); }
}
