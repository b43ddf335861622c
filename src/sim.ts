// TypeScript face of the WASM simulator (sim/): loads the module, owns its memory layout, and
// converts between bigint addresses and the module's i64 parameters.
import {
  ACC_VALUE, CNT_COUNT, FR_KIND, FR_GVA, FR_GPA, FR_ACCESS, FR_LEVEL, FR_CODE, FR_EXIT_REASON,
  FR_GUEST_LEVEL, FR_INDEX, STEP_SIZE, STEP_KIND, STEP_LEVEL, STEP_FOR, STEP_FLAGS, STEP_ADDR,
  STEP_HPA, STEP_VALUE, STEP_INPUT, FAULT_NONE, EPTP_PWL_MASK, EPTP_PWL4, EPTP_AD, EPTP_RSVD_LOW,
  REC_SIZE,
} from './consts.ts';
import { counterNames, type Counters } from './counters.ts';

/** A fault as data: what stopped an access (SDM names; see docs/sim-semantics.md). */
export interface FaultRecord {
  /** FAULT_* kind */
  kind: number;
  /** CR2 for #PF; the guest-linear address for exits */
  gva: bigint;
  /** guest-physical address for exits; the HPA for FAULT_BUS; 0 for #PF and #GP */
  gpa: bigint;
  /** ACC_* kind and flags of the access */
  access: number;
  /** level where the walk stopped (guest level for #PF, EPT level for exits) */
  level: number;
  /** #PF error code or exit qualification */
  code: number;
  /** basic exit reason, or the vector (14 #PF, 13 #GP) */
  exitReason: number;
  /** for exits during the guest walk: the guest level whose entry was being located; 0 = final */
  guestLevel: number;
  /** index of the access in its batch */
  index: number;
}

export interface Step {
  kind: 'ept' | 'guest' | 'spp';
  level: number;
  /** EPT/SPP steps: the guest level whose entry is being located (0 = the final GPA) */
  forLevel: number;
  leaf: boolean;
  notPresent: boolean;
  reserved: boolean;
  /** GPA of a guest entry; HPA of an EPT or SPP entry */
  addr: bigint;
  hpa: bigint;
  value: bigint;
  /** GVA for guest steps, GPA for EPT and SPP steps */
  input: bigint;
}

export interface CpuState {
  cr3: bigint;
  wp: boolean;
  nxe: boolean;
  gbPages: boolean;
  eptp: bigint;
  eptExecOnly: boolean;
  eptGbPages: boolean;
  vpid: number;
  pml: { enabled: boolean; address: bigint; index: number };
  spp: { enabled: boolean; spptp: bigint };
}

export interface SimOptions {
  /** bytes of host-physical memory (HPA 0 .. physBytes), a multiple of 4096 */
  physBytes?: number;
  /** MAXPHYADDR, 36..52 */
  maxPhyAddr?: number;
  /** TLB sets (power of two) and ways; ways 0 disables the TLB */
  tlbSets?: number;
  tlbWays?: number;
  /** entries of the PDE paging-structure cache (power of two; 0, the default, disables it) */
  pscEntries?: number;
  /** dirty-log entries the built-in handlers may append before the batch pauses */
  dlogCapacity?: number;
  /** access records per batch and value bytes per batch */
  batchCapacity?: number;
  valueCapacity?: number;
  /** 'release' (default) or 'debug' (assertions on); or the module's bytes */
  build?: 'release' | 'debug';
  wasm?: BufferSource;
}

interface Exports {
  memory: WebAssembly.Memory;
  init(phys: bigint, sets: number, ways: number, psc: number, dlog: number, batch: number, value: number, maxPhy: number): number;
  cntPtr(): number; faultPtr(): number; stepPtr(): number; dlogPtr(): number;
  tlbKeysPtr(): number; tlbEntriesPtr(): number; tlbSetCount(): number; tlbWayCount(): number;
  batchPtr(): number; valuePtr(): number; physPtr(): number;
  setGuest(cr3: bigint, wp: number, nxe: number, gb: number): void;
  setEpt(eptp: bigint, execOnly: number, gb: number): void;
  setVpid(v: number): void;
  setPml(en: number, addr: bigint, index: number): void;
  getPmlIndex(): number;
  setSpp(en: number, spptp: bigint): void;
  resetCounters(): void;
  access(gva: bigint, acc: number, size: number, value: number): number;
  lastHpa(): bigint;
  inspect(gva: bigint, acc: number): number;
  inspectResultHpa(): bigint;
  stepCount(): number;
  runBatch(start: number, end: number, handlers: number): number;
  batchStatus(): number;
  dlogCount(): number;
  dlogReset(): void;
  invlpg(gva: bigint): void;
  invvpid(type: number, vpid: number, gva: bigint): void;
  invept(type: number, eptp: bigint): void;
  pteReservedBits(e: bigint, level: number): bigint;
  eptMisconfigReason(e: bigint, level: number): number;
  eptMisconfigBits(e: bigint, reason: number): bigint;
  eptIsMisconfigured(e: bigint, level: number): number;
}

export const BATCH_DONE = 0;
export const BATCH_FAULT = 1;
export const BATCH_DLOG_FULL = 2;
export const BATCH_BAD_RECORD = 3;

const INIT_ERRORS: Record<number, string> = {
  1: 'the requested memory does not fit in a 32-bit WebAssembly memory (at most about 4 GiB in all)',
  2: 'tlbSets and pscEntries must be powers of two (pscEntries may be 0)',
  3: 'maxPhyAddr must be between 36 and 52',
};

const moduleCache = new Map<string, Promise<WebAssembly.Module>>();

async function loadModule(build: 'release' | 'debug'): Promise<WebAssembly.Module> {
  let m = moduleCache.get(build);
  if (!m) {
    const url = new URL(`../build/sim.${build}.wasm`, import.meta.url);
    m = (async () => {
      let bytes: Uint8Array;
      if (url.protocol === 'file:') {
        const { readFile } = await import('node:fs/promises');
        try {
          bytes = await readFile(url);
        } catch (e) {
          throw new Error(`cannot read the simulator module ${url.pathname}: ${(e as Error).message}. Run \`npm run build\` first.`);
        }
      } else {
        const res = await fetch(url);
        if (!res.ok) throw new Error(`cannot fetch the simulator module ${url}: HTTP ${res.status}`);
        bytes = new Uint8Array(await res.arrayBuffer());
      }
      return WebAssembly.compile(bytes as BufferSource);
    })();
    moduleCache.set(build, m);
  }
  return m;
}

const b = (v: boolean) => (v ? 1 : 0);
const u64 = (v: bigint) => BigInt.asUintN(64, v);

export class Sim {
  readonly physBytes: number;
  readonly maxPhyAddr: number;
  readonly batchCapacity: number;
  readonly valueCapacity: number;
  readonly dlogCapacity: number;
  private readonly x: Exports;
  private state: CpuState;

  private constructor(x: Exports, o: Required<Omit<SimOptions, 'wasm' | 'build'>>) {
    this.x = x;
    this.physBytes = o.physBytes;
    this.maxPhyAddr = o.maxPhyAddr;
    this.batchCapacity = o.batchCapacity;
    this.valueCapacity = o.valueCapacity;
    this.dlogCapacity = o.dlogCapacity;
    this.state = {
      cr3: 0n, wp: true, nxe: true, gbPages: true, eptp: 0n, eptExecOnly: true, eptGbPages: true, vpid: 1,
      pml: { enabled: false, address: 0n, index: 511 }, spp: { enabled: false, spptp: 0n },
    };
    this.applyCpu();
  }

  static async create(opts: SimOptions = {}): Promise<Sim> {
    const o = {
      physBytes: opts.physBytes ?? 64 << 20,
      maxPhyAddr: opts.maxPhyAddr ?? 46,
      tlbSets: opts.tlbSets ?? 128,
      tlbWays: opts.tlbWays ?? 12,
      pscEntries: opts.pscEntries ?? 0,
      dlogCapacity: opts.dlogCapacity ?? 1 << 16,
      batchCapacity: opts.batchCapacity ?? 1 << 16,
      valueCapacity: opts.valueCapacity ?? 1 << 20,
    };
    for (const [k, v] of Object.entries(o)) {
      if (!Number.isInteger(v) || v < 0) throw new RangeError(`Sim option ${k} must be a non-negative integer, got ${v}`);
    }
    if (o.physBytes % 4096 !== 0 || o.physBytes === 0) throw new RangeError(`Sim option physBytes must be a positive multiple of 4096, got ${o.physBytes}`);
    const mod = opts.wasm ? await WebAssembly.compile(opts.wasm) : await loadModule(opts.build ?? 'release');
    const inst = await WebAssembly.instantiate(mod, {
      env: {
        abort(msg: number, file: number, line: number, col: number) {
          throw new Error(`simulator assertion failed at sim line ${line}:${col}`);
        },
      },
    });
    const x = inst.exports as unknown as Exports;
    const err = x.init(BigInt(o.physBytes), o.tlbSets, o.tlbWays, o.pscEntries, o.dlogCapacity, o.batchCapacity, o.valueCapacity, o.maxPhyAddr);
    if (err !== 0) throw new RangeError(`cannot set up the simulator: ${INIT_ERRORS[err] ?? `error ${err}`}`);
    return new Sim(x, o);
  }

  /**
   * The TLB as the module holds it, for read-only views (src/tlbview.ts): a DataView of the module's
   * memory, the offsets of the key array (u64 per entry) and the entry array (TLB_ENTRY bytes
   * each, TE_* fields), and the geometry. Valid until the next call into the simulator.
   */
  tlbArea(): { view: DataView; keys: number; entries: number; sets: number; ways: number } {
    return { view: this.view, keys: this.x.tlbKeysPtr(), entries: this.x.tlbEntriesPtr(), sets: this.x.tlbSetCount(), ways: this.x.tlbWayCount() };
  }

  /** Host-physical memory, HPA 0 .. physBytes. Views are re-made after the memory grows. */
  get phys(): Uint8Array { return new Uint8Array(this.x.memory.buffer, this.x.physPtr(), this.physBytes); }
  private get view(): DataView { return new DataView(this.x.memory.buffer); }

  private checkHpa(hpa: bigint, len: number, what: string): number {
    if (hpa < 0n || hpa + BigInt(len) > BigInt(this.physBytes)) {
      throw new RangeError(`${what}: HPA 0x${hpa.toString(16)} (+${len}) is outside the simulated memory (0x${this.physBytes.toString(16)} bytes)`);
    }
    return this.x.physPtr() + Number(hpa);
  }
  read64(hpa: bigint): bigint { return this.view.getBigUint64(this.checkHpa(hpa, 8, 'read64'), true); }
  write64(hpa: bigint, v: bigint): void { this.view.setBigUint64(this.checkHpa(hpa, 8, 'write64'), u64(v), true); }
  readBytes(hpa: bigint, len: number): Uint8Array {
    const p = this.checkHpa(hpa, len, 'readBytes');
    return new Uint8Array(this.x.memory.buffer, p, len).slice();
  }
  writeBytes(hpa: bigint, bytes: Uint8Array): void {
    const p = this.checkHpa(hpa, bytes.length, 'writeBytes');
    new Uint8Array(this.x.memory.buffer, p, bytes.length).set(bytes);
  }

  /** Loads the vCPU state (fields not given keep their values). Rejects what VM entry would. */
  setCpu(cpu: Partial<CpuState>): void {
    this.state.pml.index = this.x.getPmlIndex(); // the simulator moves it; keep it unless given
    const next: CpuState = {
      ...this.state, ...cpu,
      pml: { ...this.state.pml, ...(cpu.pml ?? {}) },
      spp: { ...this.state.spp, ...(cpu.spp ?? {}) },
    };
    const high = (v: bigint) => v >> BigInt(this.maxPhyAddr) !== 0n;
    const hex = (v: bigint) => '0x' + v.toString(16);
    if (high(next.cr3)) throw new RangeError(`cr3 ${hex(next.cr3)} sets bits at or above MAXPHYADDR (${this.maxPhyAddr})`);
    const mt = next.eptp & 7n;
    if (next.eptp !== 0n) {
      if (mt !== 0n && mt !== 6n) throw new RangeError(`eptp ${hex(next.eptp)}: memory type ${mt} is not UC (0) or WB (6)`);
      if ((next.eptp & EPTP_PWL_MASK) !== EPTP_PWL4) throw new RangeError(`eptp ${hex(next.eptp)}: bits 5:3 must be 3 (a 4-level EPT walk)`);
      if ((next.eptp & EPTP_RSVD_LOW) !== 0n || high(next.eptp)) throw new RangeError(`eptp ${hex(next.eptp)}: reserved bits set (11:7 or at/above MAXPHYADDR)`);
    }
    if (next.pml.enabled) {
      if ((next.eptp & EPTP_AD) === 0n) throw new RangeError('PML needs EPT accessed and dirty flags (eptp bit 6)');
      if ((next.pml.address & 0xfffn) !== 0n || high(next.pml.address)) throw new RangeError(`pml.address ${hex(next.pml.address)} must be 4 KiB aligned and below MAXPHYADDR`);
    }
    if (!Number.isInteger(next.pml.index) || next.pml.index < 0 || next.pml.index > 0xffff) throw new RangeError(`pml.index ${next.pml.index} is not a 16-bit value`);
    if (next.spp.enabled && ((next.spp.spptp & 0xfffn) !== 0n || high(next.spp.spptp))) throw new RangeError(`spp.spptp ${hex(next.spp.spptp)} must be 4 KiB aligned and below MAXPHYADDR`);
    if (!Number.isInteger(next.vpid) || next.vpid < 0 || next.vpid > 0xffff) throw new RangeError(`vpid ${next.vpid} is not a 16-bit value`);
    this.state = next;
    this.applyCpu();
  }

  private applyCpu(): void {
    const s = this.state;
    this.x.setGuest(s.cr3, b(s.wp), b(s.nxe), b(s.gbPages));
    this.x.setEpt(s.eptp, b(s.eptExecOnly), b(s.eptGbPages));
    this.x.setVpid(s.vpid);
    this.x.setPml(b(s.pml.enabled), s.pml.address, s.pml.index);
    this.x.setSpp(b(s.spp.enabled), s.spp.spptp);
  }

  /** The vCPU state, with the PML index as the simulator left it. */
  cpu(): CpuState {
    this.state.pml.index = this.x.getPmlIndex();
    return structuredClone(this.state);
  }

  private fault(): FaultRecord {
    const v = this.view;
    const p = this.x.faultPtr();
    const n = (off: number) => Number(v.getBigUint64(p + off, true));
    return {
      kind: n(FR_KIND), gva: v.getBigUint64(p + FR_GVA, true), gpa: v.getBigUint64(p + FR_GPA, true),
      access: n(FR_ACCESS), level: n(FR_LEVEL), code: n(FR_CODE), exitReason: n(FR_EXIT_REASON),
      guestLevel: n(FR_GUEST_LEVEL), index: n(FR_INDEX),
    };
  }
  /** The fault record of the last access, inspection or batch that stopped. */
  lastFault(): FaultRecord { return this.fault(); }

  /** One architectural access (sets A/D, fills the TLB, may fault). */
  access(gva: bigint, acc: number, size: number, value?: Uint8Array): { fault: FaultRecord | null; hpa: bigint } {
    if (!Number.isInteger(size) || size < 1 || size > 64) throw new RangeError(`access size ${size} is not 1..64`);
    let ptr = 0;
    if (value) {
      if (value.length < size) throw new RangeError(`value has ${value.length} bytes, access needs ${size}`);
      ptr = this.x.valuePtr();
      new Uint8Array(this.x.memory.buffer, ptr, size).set(value.subarray(0, size));
      acc |= ACC_VALUE;
    } else {
      acc &= ~ACC_VALUE;
    }
    const k = this.x.access(u64(gva), acc, size, ptr);
    return k === FAULT_NONE ? { fault: null, hpa: this.x.lastHpa() } : { fault: this.fault(), hpa: 0n };
  }

  /** Side-effect-free walk of the page of `gva`: every entry read and the outcome. */
  inspect(gva: bigint, acc: number): { steps: Step[]; fault: FaultRecord | null; hpa: bigint } {
    const k = this.x.inspect(u64(gva), acc & ~ACC_VALUE);
    const v = this.view;
    const base = this.x.stepPtr();
    const steps: Step[] = [];
    const kinds = ['', 'ept', 'guest', 'spp'] as const;
    for (let i = 0; i < this.x.stepCount(); i++) {
      const p = base + i * STEP_SIZE;
      const flags = v.getUint32(p + STEP_FLAGS, true);
      steps.push({
        kind: kinds[v.getUint32(p + STEP_KIND, true)] as Step['kind'],
        level: v.getUint32(p + STEP_LEVEL, true),
        forLevel: v.getUint32(p + STEP_FOR, true),
        leaf: (flags & 1) !== 0, notPresent: (flags & 2) !== 0, reserved: (flags & 4) !== 0,
        addr: v.getBigUint64(p + STEP_ADDR, true), hpa: v.getBigUint64(p + STEP_HPA, true),
        value: v.getBigUint64(p + STEP_VALUE, true), input: v.getBigUint64(p + STEP_INPUT, true),
      });
    }
    return k === FAULT_NONE ? { steps, fault: null, hpa: this.x.inspectResultHpa() } : { steps, fault: this.fault(), hpa: 0n };
  }

  // Batches: records are written straight into WASM memory by BatchWriter (src/batch.ts).
  batchView(): { records: DataView; values: Uint8Array } {
    const buf = this.x.memory.buffer;
    return {
      records: new DataView(buf, this.x.batchPtr(), this.batchCapacity * REC_SIZE),
      values: new Uint8Array(buf, this.x.valuePtr(), this.valueCapacity),
    };
  }
  /** Runs records [start, end); returns where it stopped and why (BATCH_*). */
  runBatch(start: number, end: number, handlers = 0): { next: number; status: number } {
    const next = this.x.runBatch(start, end, handlers);
    return { next, status: this.x.batchStatus() };
  }
  /** Dirty-log entries appended by the built-in handlers since the last drain; drains them. */
  drainDirtyLog(): { kind: number; addr: bigint }[] {
    const n = this.x.dlogCount();
    const v = this.view;
    const p = this.x.dlogPtr();
    const out = [];
    for (let i = 0; i < n; i++) out.push({ kind: v.getUint32(p + i * 16, true), addr: v.getBigUint64(p + i * 16 + 8, true) });
    this.x.dlogReset();
    return out;
  }

  invlpg(gva: bigint): void { this.x.invlpg(u64(gva)); }
  invvpid(type: number, vpid: number, gva = 0n): void { this.x.invvpid(type, vpid, u64(gva)); }
  invept(type: number, eptp: bigint): void { this.x.invept(type, u64(eptp)); }

  /** Reserved bits set in a guest entry at `level` (4 PML4E .. 1 PTE) under the current state. */
  pteReservedBits(entry: bigint, level: number): bigint {
    return BigInt.asUintN(64, this.x.pteReservedBits(u64(entry), level));
  }
  /** Why an EPT entry at `level` is misconfigured under the current state: EPT_MISCONF_* and the bits. */
  eptMisconfig(entry: bigint, level: number): { reason: number; bits: bigint } {
    const reason = this.x.eptMisconfigReason(u64(entry), level);
    return { reason, bits: BigInt.asUintN(64, this.x.eptMisconfigBits(u64(entry), reason)) };
  }
  /** The walk's own yes/no misconfiguration test (kept separate for speed; see sim/ept.ts). */
  eptIsMisconfigured(entry: bigint, level: number): boolean { return this.x.eptIsMisconfigured(u64(entry), level) !== 0; }

  counters(): Counters {
    const v = this.view;
    const p = this.x.cntPtr();
    const out = {} as Counters;
    for (let i = 0; i < CNT_COUNT; i++) out[counterNames[i]!] = Number(v.getBigUint64(p + i * 8, true));
    return out;
  }
  resetCounters(): void { this.x.resetCounters(); }
}
