// Host-process dirty-page tracking baselines, without virtualization: what programs use today to
// find the pages they wrote (mprotect + SIGSEGV, userfaultfd write-protect, userfaultfd WP_ASYNC +
// PAGEMAP_SCAN, soft-dirty). The accesses run natively in this process inside the addon
// (hw/baselines/baselines.c), one call per batch, so the costs measured are the mechanisms' own.
// docs/baselines.md explains the modes, the probes and how to read the numbers.
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { release, machine, cpus } from 'node:os';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { REC_SIZE, REC_GVA, REC_KIND, REC_SIZE_FIELD, REC_VALUE, ACC_WRITE, ACC_VALUE } from '../consts.ts';
import { packageRoot } from '../record/toolchain.ts';

export type BaselineMode = 'mprotect' | 'uffd-wp' | 'uffd-wp-async' | 'soft-dirty';
export const BASELINE_MODES: readonly BaselineMode[] = ['mprotect', 'uffd-wp', 'uffd-wp-async', 'soft-dirty'];
/** Modes where every first write to a protected page is a fault the monitor sees (and counts). */
export const FAULTING_MODES: readonly BaselineMode[] = ['mprotect', 'uffd-wp'];

export interface BaselineProbe {
  available: boolean;
  /** why the mode cannot be used here (what failed, and what to do) */
  why?: string;
  /** how the mechanism was opened (for example `userfaultfd(2) with UFFD_USER_MODE_ONLY`) */
  detail?: string;
}
export interface RunResult {
  /** faults the monitor handled (SIGSEGV handler or userfaultfd thread); 0 in the no-fault modes */
  faults: number;
  /** wall time of the accesses, faults included */
  ns: number;
  /** minor page faults of this thread during the run (getrusage): where the kernel resolves the
   *  write fault itself (uffd-wp-async, soft-dirty) this is where those faults show */
  minorFaults: number;
}
export interface HarvestResult {
  /** the pages written since arm(), ascending */
  pages: number[];
  /** wall time of collecting them (log copy, PAGEMAP_SCAN, or pagemap read) */
  ns: number;
  /** wall time of copying the dirty pages into `copyTo` (0 without it) */
  copyNs: number;
}

interface Addon {
  create(pages: number, mode: BaselineMode, anyCpu: boolean): { handle: object; buffer: ArrayBuffer; how: string };
  arm(h: object): { ns: number };
  run(h: object, records: Uint8Array, values: Uint8Array, count: number): RunResult;
  harvest(h: object, copyTo?: Uint8Array): { pages: Uint32Array; ns: number; copyNs: number };
  close(h: object): void;
  probe(): Record<BaselineMode, BaselineProbe>;
}

/** The addon cannot be loaded or a mechanism failed; the message says what failed and what to do. */
export class BaselineError extends Error {
  override name = 'BaselineError';
}

export const ADDON_ENV = 'GRANULE_BASELINES_ADDON';

/** Where the addon is looked for: $GRANULE_BASELINES_ADDON when set, else the node-gyp output. */
export function addonPath(): string {
  return process.env[ADDON_ENV] || join(packageRoot(), 'build', 'Release', 'granule_baselines.node');
}

let addon: Addon | undefined;
let loadError: string | undefined;

function load(): Addon {
  if (addon) return addon;
  if (loadError) throw new BaselineError(loadError);
  const path = addonPath();
  const fromEnv = !!process.env[ADDON_ENV];
  let failure: string;
  if (process.platform !== 'linux') {
    failure = `the host baselines use Linux interfaces (userfaultfd, /proc/self/pagemap, PAGEMAP_SCAN); this is ${process.platform}`;
  } else if (!existsSync(path)) {
    failure = `${path} does not exist${fromEnv ? ` (from $${ADDON_ENV})` : ''}`;
  } else {
    try {
      addon = createRequire(import.meta.url)(path) as Addon;
      return addon;
    } catch (e) {
      failure = `loading ${path} failed: ${(e as Error).message.split('\n')[0]}`;
    }
  }
  loadError = [
    'granule: the host-baselines addon (granule_baselines.node) is not available.',
    `  what failed: ${failure}`,
    '  what to do:  build it with `node scripts/build-native.mjs` (npm install runs it; it needs a C',
    '               compiler, python3 and node-gyp, and says which of them is missing), or set',
    `               ${ADDON_ENV} to the path of a granule_baselines.node built for this Node`,
    `               (${process.version}, Node-API 8).`,
    '  The simulator and the KVM backend do not need it; only the host-baseline modes do.',
  ].join('\n');
  throw new BaselineError(loadError);
}

/** Why the addon cannot be loaded (multi-line), or undefined when it loads. */
export function baselinesLoadError(): string | undefined {
  try {
    load();
    return undefined;
  } catch (e) {
    return (e as Error).message;
  }
}

let kernelConfig: string | null | undefined;
/** The running kernel's build configuration when it publishes one (/proc/config.gz), else null. */
function readKernelConfig(): string | null {
  if (kernelConfig !== undefined) return kernelConfig;
  try {
    kernelConfig = gunzipSync(readFileSync('/proc/config.gz')).toString('latin1');
  } catch {
    try {
      kernelConfig = readFileSync(`/boot/config-${release()}`, 'latin1');
    } catch {
      kernelConfig = null;
    }
  }
  return kernelConfig;
}

/** The config line for `option` (e.g. `# CONFIG_MEM_SOFT_DIRTY is not set`), as corroboration. */
function configEvidence(option: string): string | undefined {
  const cfg = readKernelConfig();
  if (!cfg) return undefined;
  const line = cfg.split('\n').find((l) => l.startsWith(`${option}=`) || l === `# ${option} is not set`);
  return line ?? `${option} absent`;
}

let probed: Record<BaselineMode, BaselineProbe> | undefined;

/** Which modes work in this process on this kernel, each found by running the mode's own code on
 *  a small region (two epochs, checked against the pages written), never by version numbers. */
export function probeBaselines(): Record<BaselineMode, BaselineProbe> {
  if (probed) return probed;
  let a: Addon;
  try {
    a = load();
  } catch (e) {
    const why = (e as Error).message;
    return Object.fromEntries(BASELINE_MODES.map((m) => [m, { available: false, why }])) as Record<BaselineMode, BaselineProbe>;
  }
  const r = a.probe();
  const evidence: Partial<Record<BaselineMode, string>> = { 'soft-dirty': 'CONFIG_MEM_SOFT_DIRTY', 'uffd-wp': 'CONFIG_USERFAULTFD', 'uffd-wp-async': 'CONFIG_USERFAULTFD' };
  for (const m of BASELINE_MODES) {
    const opt = evidence[m];
    const ev = !r[m].available && opt ? configEvidence(opt) : undefined;
    if (ev) r[m].why = `${r[m].why} (kernel ${release()} config: ${ev})`;
  }
  return (probed = r);
}

/** The host the baselines ran on, for reports (the kernel version matters most). */
export function hostInfo(): { kernel: string; machine: string; cpu: string; cpus: number } {
  const c = cpus();
  return { kernel: release(), machine: machine(), cpu: c[0]?.model ?? 'unknown', cpus: c.length };
}

export interface HostRegionOptions {
  /** uffd-wp only: where the fault-handler thread runs during run(). 'same' (the default) pins it
   *  and the calling thread to the caller's current CPU for the batch, so each fault is a context
   *  switch (stable, about 4 us here); 'any' leaves it to the scheduler, so each fault is a
   *  cross-CPU wake-up whose cost swings with idle-CPU wake latency (5 to 75 us on this VM). */
  handlerCpu?: 'same' | 'any';
}

/** An anonymous mapping of `pages` 4 KiB pages in this process whose writes one mode tracks.
 *  An epoch is arm() (protect / clear), run() batches, harvest() (the pages written). Use it from
 *  one thread; close() it when done (the buffer is detached then). */
export class HostRegion {
  /** the mapping itself: read the dirty pages' bytes from it for a checkpoint */
  readonly buffer: ArrayBuffer;
  /** how the mechanism was opened */
  readonly how: string;
  private closed = false;

  private constructor(
    private readonly a: Addon,
    private readonly handle: object,
    buffer: ArrayBuffer,
    how: string,
    readonly pages: number,
    readonly mode: BaselineMode,
  ) {
    this.buffer = buffer;
    this.how = how;
  }

  /** Maps and populates the region (zero-filled, no transparent huge pages) and sets the mode up.
   *  Throws BaselineError saying what failed (e.g. `userfaultfd(2) failed: EPERM (1): ...`),
   *  also for a mode whose probe failed. */
  static create(pages: number, mode: BaselineMode, options: HostRegionOptions = {}): HostRegion {
    if (!BASELINE_MODES.includes(mode)) throw new BaselineError(`unknown host baseline mode '${mode}': use one of ${BASELINE_MODES.join(', ')}`);
    if (!Number.isInteger(pages) || pages < 1) throw new BaselineError(`a host region needs a positive whole number of pages, not ${pages}`);
    const a = load();
    // A mode can open fine and still track nothing (soft-dirty without CONFIG_MEM_SOFT_DIRTY):
    // only the probe's self-test tells, so a mode that failed it is refused here.
    const p = probeBaselines()[mode];
    if (!p.available) throw new BaselineError(`host baseline '${mode}' is not available here: ${p.why}`);
    try {
      const { handle, buffer, how } = a.create(pages, mode, options.handlerCpu === 'any');
      return new HostRegion(a, handle, buffer, how, pages, mode);
    } catch (e) {
      throw new BaselineError(`cannot set up host baseline '${mode}' (${pages} pages): ${(e as Error).message}`);
    }
  }

  /** Starts an epoch: mprotect(PROT_READ) / UFFDIO_WRITEPROTECT / PAGEMAP_SCAN re-protect /
   *  clear_refs 4. Returns the time it took. */
  arm(): { ns: number } {
    return this.call(() => this.a.arm(this.handle));
  }

  /** Performs `count` access records (REC_* layout, 16 bytes each: u64 byte offset into the
   *  region, u8 kind, u8 size 1..64, u32 value offset) as real loads and stores of exactly those
   *  bytes. Kind: ACC_READ 0, ACC_WRITE 1 (ACC_FETCH 2 reads); a write stores `values` at the value
   *  offset when the kind has ACC_VALUE (8), else rewrites the bytes already there (as the
   *  simulator's value-less writes do). The whole batch is checked before the first access. */
  run(records: Uint8Array, values: Uint8Array, count: number): RunResult {
    return this.call(() => this.a.run(this.handle, records, values, count));
  }

  /** The pages written since arm(), ascending. With `copyTo` (at least pages*4096 bytes) their
   *  bytes are also copied there, packed in that order: the checkpoint copy, timed as copyNs.
   *  In uffd-wp-async mode the scan also re-protects what it reports, so call it once per epoch. */
  harvest(copyTo?: Uint8Array): HarvestResult {
    const h = this.call(() => this.a.harvest(this.handle, copyTo));
    return { pages: Array.from(h.pages), ns: h.ns, copyNs: h.copyNs };
  }

  /** Stops tracking, detaches `buffer` and unmaps the region. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.a.close(this.handle);
  }

  private call<T>(f: () => T): T {
    if (this.closed) throw new BaselineError(`the ${this.mode} host region is closed`);
    try {
      return f();
    } catch (e) {
      throw new BaselineError(`host baseline '${this.mode}': ${(e as Error).message}`);
    }
  }
}

/** A growable batch of access records in the layout run() takes. */
export class HostBatch {
  records: Uint8Array;
  values: Uint8Array;
  count = 0;
  valueBytes = 0;
  private view: DataView;
  constructor(capacity = 4096, valueCapacity = capacity * 8) {
    this.records = new Uint8Array(capacity * REC_SIZE);
    this.values = new Uint8Array(valueCapacity);
    this.view = new DataView(this.records.buffer);
  }
  /** Appends an access at byte `offset` of the region; a write with `value` stores those bytes. */
  push(offset: number, kind: number, size: number, value?: Uint8Array): void {
    if ((this.count + 1) * REC_SIZE > this.records.length) this.grow();
    if (value) {
      if (value.length < size) throw new RangeError(`value of ${value.length} bytes for a ${size}-byte access`);
      while (this.valueBytes + size > this.values.length) {
        const v = new Uint8Array(this.values.length * 2);
        v.set(this.values);
        this.values = v;
      }
      this.values.set(value.subarray(0, size), this.valueBytes);
    }
    const p = this.count * REC_SIZE;
    this.view.setBigUint64(p + REC_GVA, BigInt(offset), true);
    this.view.setUint8(p + REC_KIND, value && (kind & 3) === ACC_WRITE ? kind | ACC_VALUE : kind & ~ACC_VALUE);
    this.view.setUint8(p + REC_SIZE_FIELD, size);
    this.view.setUint32(p + REC_VALUE, value ? this.valueBytes : 0, true);
    if (value) this.valueBytes += size;
    this.count++;
  }
  reset(): void {
    this.count = 0;
    this.valueBytes = 0;
  }
  private grow(): void {
    const r = new Uint8Array(this.records.length * 2);
    r.set(this.records);
    this.records = r;
    this.view = new DataView(r.buffer);
  }
}
