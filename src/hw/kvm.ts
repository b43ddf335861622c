// Typed wrappers over the granule_kvm addon, mirroring KVM's own hierarchy: a KvmSystem (/dev/kvm)
// creates KvmVms, a KvmVm owns memslots and creates KvmVcpus. Guest memory lives in FramePools
// (memfd; alias planes map one pool range as several memslots, over the pool itself or over one
// PoolView each) and GuestMemory (anonymous shared, the system region). A WriteWatch write-protects
// single pages of one PoolView (one plane) with userfaultfd. Every failing system call throws or
// rejects with a KvmError.
import { readFileSync } from 'node:fs';
import { loadKvmAddon, DEFAULT_KVM_DEVICE } from './native.ts';
import type { KvmAddon, NativeHostMemory, NativeKvmSystem, NativeKvmVcpu, NativeKvmVm, NativeWriteWatch } from './native.ts';

/** `${ioctl} failed: ${code} (${errno}): ${advice}` */
export class KvmError extends Error {
  override name = 'KvmError';
  constructor(message: string, readonly ioctl: string, readonly errno: number, readonly code: string) {
    super(message);
  }
}

/** The addon or /dev/kvm cannot be used; the message is the multi-line explanation from loadKvmAddon. */
export class KvmUnavailableError extends Error {
  override name = 'KvmUnavailableError';
}

let addonRef: KvmAddon | undefined;
function addon(devicePath = DEFAULT_KVM_DEVICE): KvmAddon {
  if (addonRef) return addonRef;
  const r = loadKvmAddon(devicePath);
  if ('error' in r) throw new KvmUnavailableError(r.error);
  r.addon.setErrorClass(KvmError);
  return (addonRef = r.addon);
}

// KVM capability numbers used here (linux/kvm.h).
export const KVM_CAP = {
  NR_VCPUS: 9,
  NR_MEMSLOTS: 10,
  MAX_VCPUS: 66,
  READONLY_MEM: 81,
  MANUAL_DIRTY_LOG_PROTECT2: 168,
  DIRTY_LOG_RING: 192,
  DIRTY_LOG_RING_ACQ_REL: 223,
} as const;

export const PAGE_SIZE = 4096;
/** run() stops a guest after this long unless told otherwise: nothing we run should take seconds. */
export const DEFAULT_RUN_TIMEOUT_MS = 10_000;

export interface Regs {
  rax: bigint; rbx: bigint; rcx: bigint; rdx: bigint; rsi: bigint; rdi: bigint; rsp: bigint; rbp: bigint;
  r8: bigint; r9: bigint; r10: bigint; r11: bigint; r12: bigint; r13: bigint; r14: bigint; r15: bigint;
  rip: bigint; rflags: bigint;
}
export type RegsInput = Partial<Record<keyof Regs, bigint | number>>;

/** struct kvm_segment; flag fields are 0/1 */
export interface Segment {
  base: bigint; limit: number; selector: number; type: number; present: number; dpl: number;
  db: number; s: number; l: number; g: number; avl: number; unusable: number;
}
/** numbers or bigints; flags may also be booleans */
export type SegmentInput = Partial<Record<keyof Segment, bigint | number | boolean>>;
export interface SregsInput {
  cs?: SegmentInput; ds?: SegmentInput; es?: SegmentInput; fs?: SegmentInput; gs?: SegmentInput;
  ss?: SegmentInput; tr?: SegmentInput; ldt?: SegmentInput;
  gdt?: { base?: bigint | number; limit?: number }; idt?: { base?: bigint | number; limit?: number };
  cr0?: bigint | number; cr2?: bigint | number; cr3?: bigint | number; cr4?: bigint | number;
  cr8?: bigint | number; efer?: bigint | number; apic_base?: bigint | number;
}

export interface ExitInfo {
  /** 'io','mmio','hlt','shutdown','fail_entry','internal_error','dirty_ring_full', or, when KVM_RUN
   *  was interrupted: 'timeout' (timeoutMs passed), 'intr' (kick()), 'closed' (close() during run) */
  reason: string;
  /** KVM_EXIT_* (KVM_EXIT_INTR for the interrupted reasons) */
  code: number;
  /** wall time spent in KVM_RUN for this call, in nanoseconds */
  ns: number;
  io?: { port: number; out: boolean; size: number; count: number; data: number };
  mmio?: { gpa: bigint; write: boolean; len: number; data: bigint };
  detail?: string;
}

export interface VmLimits {
  maxMemslots: number;
  maxVcpus: number;
  /** largest dirty ring in entries; 0 when the ring is unsupported */
  dirtyRingMax: number;
  manualProtect: boolean;
  readonlyMem: boolean;
  /** guest MAXPHYADDR: every memslot must end below 2^physAddrBits */
  physAddrBits: number;
}
export interface SlotInfo { slot: number; gpa: bigint; bytes: number; offset: number; logDirty: boolean; readonly: boolean }

/** What a VM is about to need, for KvmVm.checkPlan. */
export interface VmPlan {
  memslots: number;
  /** host memory the guest will touch (system region + frame pools) */
  bytes: number;
  vcpus?: number;
  /** extra host mappings (pools, protect() splits); compared with vm.max_map_count */
  mappings?: number;
  /** highest guest-physical address + 1 */
  gpaEnd?: bigint;
  dirtyRingEntries?: number;
}

export interface HostLimits {
  maxMapCount: number;
  mapCount: number;
  memAvailable: number;
  /** cgroup v2 memory.max minus memory.current, or Infinity without a limit */
  cgroupAvailable: number;
}

function readNumber(path: string): number | undefined {
  try {
    const t = readFileSync(path, 'utf8').trim();
    return t === 'max' ? Infinity : Number(t);
  } catch {
    return undefined;
  }
}

/** Host limits that decide whether a VM plan fits (from /proc and the cgroup filesystem). */
export function hostLimits(): HostLimits {
  const maxMapCount = readNumber('/proc/sys/vm/max_map_count') ?? 65530;
  let mapCount = 0;
  try {
    mapCount = readFileSync('/proc/self/maps', 'utf8').split('\n').length - 1;
  } catch {
    // without /proc the count stays unknown (0)
  }
  let memAvailable = Infinity;
  try {
    const m = /MemAvailable:\s+(\d+) kB/.exec(readFileSync('/proc/meminfo', 'utf8'));
    if (m) memAvailable = Number(m[1]) * 1024;
  } catch {
    // no /proc/meminfo: no check
  }
  let cgroupAvailable = Infinity;
  try {
    const cg = readFileSync('/proc/self/cgroup', 'utf8').split('\n').find((l) => l.startsWith('0::'));
    if (cg) {
      const dir = `/sys/fs/cgroup${cg.slice(3)}`;
      const max = readNumber(`${dir}/memory.max`), cur = readNumber(`${dir}/memory.current`);
      if (max !== undefined && cur !== undefined && Number.isFinite(max)) cgroupAvailable = max - cur;
    }
  } catch {
    // cgroup v1 or none: no check
  }
  return { maxMapCount, mapCount, memAvailable, cgroupAvailable };
}

const MiB = (n: number) => `${(n / 2 ** 20).toFixed(1)} MiB`;

/** Guest RAM in host memory. Shared by memslots; `buffer` is the host's view of the same bytes. */
abstract class HostMemoryBase {
  protected constructor(readonly native: NativeHostMemory, readonly bytes: number) {}
  /** The mapping itself. close() detaches it (length 0) and later reads of `buffer` throw. */
  get buffer(): ArrayBuffer {
    return this.native.buffer;
  }
  /** The memory is unmapped once no memslot uses it any more. */
  close(): void {
    this.native.close();
  }
}

/** A memfd frame pool mapped MAP_SHARED: one physical frame can back several alias memslots. */
export class FramePool extends HostMemoryBase {
  static create(bytes: number): FramePool {
    return new FramePool(new (addon().HostMemory)(bytes, 'memfd'), bytes);
  }
  /** mprotect of the host mapping: host-side write protection of frames (4 KiB aligned). */
  protect(offset: number, len: number, prot: 'r' | 'rw' | 'none'): void {
    this.native.protect(offset, len, prot);
  }
  /**
   * Another MAP_SHARED mapping of the whole pool: the same frames (writes through any mapping are
   * seen by all), but its own host page tables. Give each alias plane's memslot its own view and
   * a WriteWatch can protect one plane's page without touching the other planes.
   */
  view(): PoolView {
    return new PoolView(this.native.view(), this.bytes);
  }
}

/**
 * A FramePool mapped again (FramePool.view()). Use it as a memslot's memory and under a WriteWatch.
 * close() unmaps it once no memslot or watch uses it any more; the pool itself may close first.
 */
export class PoolView extends HostMemoryBase {
  /** @internal use FramePool.view() */
  constructor(native: NativeHostMemory, bytes: number) {
    super(native, bytes);
  }
}

/**
 * Write protection of single pages of one PoolView with userfaultfd (write-protect mode, kernel
 * faults included, so KVM's own writes for the guest trap too). The first write to a protected page
 * blocks the writer (a guest's KVM_RUN, or a JS store into view.buffer) until the watch's handler
 * thread has logged the page and lifted the protection; later writes run free until protect() again.
 * Needs a userfaultfd for kernel faults: root, CAP_SYS_PTRACE, access to /dev/userfaultfd or
 * vm.unprivileged_userfaultfd = 1; create() throws a KvmError saying which when there is none.
 */
export class WriteWatch {
  private constructor(private readonly native: NativeWriteWatch, readonly bytes: number) {}
  /** Registers the whole view (nothing is protected yet). logEntries bounds the log between drains (default 2^20). */
  static create(view: PoolView, opts: { logEntries?: number } = {}): WriteWatch {
    return new WriteWatch(new (addon().WriteWatch)(view.native, opts.logEntries), view.bytes);
  }
  /**
   * Protects (on) or releases (off) [offset, offset+len) of the view, 4 KiB aligned. Protecting
   * also makes KVM drop its writable mappings of those pages. Re-arm while no writer runs (between
   * KVM_RUNs): a write racing with it is then reported by a later drain(), never lost.
   */
  protect(offset: number, len: number, on: boolean): void {
    this.native.protect(offset, len, on);
  }
  /**
   * Byte offsets in the view (4 KiB aligned) of the pages that took a write fault since the last
   * drain, in fault order. Throws when the log overflowed (some written pages are then unknown).
   */
  drain(): Float64Array {
    return this.native.drain();
  }
  /** write faults handled since create() */
  get faults(): number {
    return this.native.faults;
  }
  /** faults whose page did not fit in the log (each also made a drain() throw) */
  get lost(): number {
    return this.native.lost;
  }
  /** where the userfaultfd came from and its features, for reports */
  get how(): string {
    return this.native.how;
  }
  /** Stops the handler thread and releases the view; writers still waiting are woken, unprotected. */
  close(): void {
    this.native.close();
  }
}

/** Anonymous shared memory for the system region (code, page tables, control block). */
export class GuestMemory extends HostMemoryBase {
  static create(bytes: number): GuestMemory {
    return new GuestMemory(new (addon().HostMemory)(bytes, 'anon'), bytes);
  }
}

export class KvmSystem {
  private constructor(private readonly native: NativeKvmSystem) {}
  /** Throws KvmUnavailableError (multi-line, with what to do) or KvmError. */
  static open(path = DEFAULT_KVM_DEVICE): KvmSystem {
    return new KvmSystem(new (addon(path).KvmSystem)(path));
  }
  get apiVersion(): number {
    return this.native.apiVersion;
  }
  checkExtension(cap: number): number {
    return this.native.checkExtension(cap);
  }
  createVm(): KvmVm {
    return new KvmVm(this.native.createVm());
  }
  /** VMs created from this system stay usable. */
  close(): void {
    this.native.close();
  }
}

export class KvmVm {
  private readonly vcpus = new Set<KvmVcpu>();
  private cachedLimits: VmLimits | undefined;
  /** @internal use KvmSystem.createVm() */
  constructor(private readonly native: NativeKvmVm) {}

  /**
   * KVM_SET_USER_MEMORY_REGION: guest-physical [gpa, gpa+bytes) -> memory[offset, offset+bytes).
   * Several slots may map the same memory range (alias planes), or each its own view of one pool
   * (FramePool.view()) to be write-protected separately. Calling it again for a live slot
   * with the same range changes only its flags.
   */
  setMemory(slot: number, gpa: bigint, memory: FramePool | PoolView | GuestMemory, offset: number, bytes: number,
    flags: { logDirty?: boolean; readonly?: boolean } = {}): void {
    const end = gpa + BigInt(bytes);
    const bits = this.limits().physAddrBits;
    if (end > 1n << BigInt(bits)) {
      throw new RangeError(`memslot ${slot}: GPA range ends at 0x${end.toString(16)}, beyond this guest's ${bits}-bit physical address space; place alias planes lower or use fewer`);
    }
    this.native.setMemory(slot, gpa, memory.native, offset, bytes, flags);
  }

  deleteMemory(slot: number): void {
    this.native.deleteMemory(slot);
  }

  /** KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2 without INITIALLY_SET; call before logging slots are created. */
  enableManualDirtyProtect(): void {
    this.native.enableManualDirtyProtect();
  }

  /** KVM_GET_DIRTY_LOG: bit i (LSB first) set = page i of the slot was written. */
  getDirtyLog(slot: number, pages?: number): Uint8Array {
    const bm = this.native.getDirtyLog(slot);
    if (pages !== undefined && Math.ceil(pages / 8) !== bm.length) {
      throw new RangeError(`getDirtyLog(slot ${slot}, ${pages}): the slot has ${bm.length * 8 >= pages ? 'fewer' : 'more'} pages (bitmap of ${bm.length} bytes); pass its page count or omit it`);
    }
    return bm;
  }

  /** KVM_CLEAR_DIRTY_LOG: clear and write-protect again the pages set in `bitmap` (bit 0 = `first`). */
  clearDirtyLog(slot: number, first: number, num: number, bitmap: Uint8Array): void {
    this.native.clearDirtyLog(slot, first, num, bitmap);
  }

  /** Per-vCPU dirty rings of `entries` (power of two); before the first createVcpu. */
  enableDirtyRing(entries: number): void {
    this.native.enableDirtyRing(entries);
  }

  /**
   * Dirty pages the vCPU published since the last harvest, as pairs [slot, page offset in slot,
   * slot, page offset, ...] (no object per entry: rings hold up to 64K of them).
   */
  harvestDirtyRing(vcpu: KvmVcpu): Float64Array {
    return vcpu.native.harvestDirtyRing();
  }

  /** KVM_RESET_DIRTY_RINGS: re-protect harvested pages and free their entries; returns how many. */
  resetDirtyRings(): number {
    return this.native.resetDirtyRings();
  }

  createVcpu(id: number): KvmVcpu {
    const v = new KvmVcpu(this.native.createVcpu(id), () => this.vcpus.delete(v));
    this.vcpus.add(v);
    return v;
  }

  limits(): VmLimits {
    return (this.cachedLimits ??= this.native.limits());
  }

  checkExtension(cap: number): number {
    return this.native.checkExtension(cap);
  }

  slots(): SlotInfo[] {
    return this.native.slots();
  }

  /**
   * Checks a plan against KVM's and the host's limits before anything is allocated; throws one
   * Error listing every problem with what to do.
   */
  checkPlan(plan: VmPlan): void {
    const lim = this.limits();
    const host = hostLimits();
    const problems: string[] = [];
    if (plan.memslots > lim.maxMemslots) {
      problems.push(`${plan.memslots} memslots needed, KVM allows ${lim.maxMemslots} (KVM_CAP_NR_MEMSLOTS): use fewer alias planes or smaller pools per slot`);
    }
    if ((plan.vcpus ?? 1) > lim.maxVcpus) {
      problems.push(`${plan.vcpus} vCPUs needed, KVM allows ${lim.maxVcpus}`);
    }
    if (plan.gpaEnd !== undefined && plan.gpaEnd > 1n << BigInt(lim.physAddrBits)) {
      problems.push(`guest-physical addresses up to 0x${plan.gpaEnd.toString(16)} needed, the guest has ${lim.physAddrBits} physical address bits: use fewer alias planes`);
    }
    if (plan.dirtyRingEntries !== undefined && plan.dirtyRingEntries > lim.dirtyRingMax) {
      problems.push(lim.dirtyRingMax === 0
        ? 'a dirty ring is needed but this KVM has none (KVM_CAP_DIRTY_LOG_RING): use the dirty log bitmaps'
        : `a dirty ring of ${plan.dirtyRingEntries} entries needed, KVM allows ${lim.dirtyRingMax}`);
    }
    const avail = Math.min(host.memAvailable, host.cgroupAvailable);
    if (plan.bytes > avail) {
      problems.push(`${MiB(plan.bytes)} of guest memory needed, ${MiB(avail)} available (${host.cgroupAvailable < host.memAvailable ? 'cgroup memory.max' : 'MemAvailable'}): use a smaller pool or free memory`);
    }
    const maps = host.mapCount + (plan.mappings ?? 0) + (plan.vcpus ?? 1) * 2 + 4;
    if (maps > host.maxMapCount) {
      problems.push(`about ${maps} host mappings needed, vm.max_map_count is ${host.maxMapCount}: raise it (sudo sysctl -w vm.max_map_count=${Math.max(maps * 2, 262144)}) or protect fewer ranges`);
    }
    // KVM memslots are not mlock()ed, so RLIMIT_MEMLOCK does not apply and is not checked.
    if (problems.length) {
      throw new Error(`The VM does not fit this host:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
    }
  }

  /** Closes the vCPUs first (a running one is stopped; its run() resolves 'closed'), then the VM. */
  close(): void {
    for (const v of [...this.vcpus]) v.close();
    this.native.close();
  }
}

export class KvmVcpu {
  /** @internal use KvmVm.createVcpu() */
  constructor(readonly native: NativeKvmVcpu, private readonly onClose: () => void) {}
  get id(): number {
    return this.native.id;
  }
  get running(): boolean {
    return this.native.running;
  }
  getRegs(): Regs {
    return this.native.getRegs();
  }
  /** Overlays the given registers on the current ones. */
  setRegs(r: RegsInput): void {
    this.native.setRegs(r);
  }
  /** Overlays the given fields (segment fields too) on the current special registers. */
  setSregs(s: SregsInput): void {
    this.native.setSregs(s);
  }
  /** KVM_GET_SUPPORTED_CPUID -> KVM_SET_CPUID2; before the first run. */
  setCpuid(): void {
    this.native.setCpuid();
  }
  /**
   * One KVM_RUN on a libuv pool thread, resolving at the next exit. timeoutMs (default 10 s; 0 = no
   * limit) stops a runaway guest: the vCPU is kicked out of KVM_RUN and the promise resolves with
   * reason 'timeout'; the guest state stays as it was when stopped.
   */
  run(opts: { timeoutMs?: number } = {}): Promise<ExitInfo> {
    const t = opts.timeoutMs ?? DEFAULT_RUN_TIMEOUT_MS;
    if (!(t >= 0) || !Number.isFinite(t)) throw new RangeError(`timeoutMs must be a finite number >= 0 (0: no limit), not ${t}`);
    return this.native.run(Math.ceil(t));
  }
  /** Stops a running KVM_RUN; its run() resolves with reason 'intr'. Returns whether it was running. */
  kick(): boolean {
    return this.native.kick();
  }
  close(): void {
    this.native.close();
    this.onClose();
  }
}
