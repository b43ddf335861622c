// Loading the granule_kvm addon (hw/src, built by scripts/build-native.mjs at install). When it
// cannot be used, loadKvmAddon says why in several lines and what to do, so the caller can print
// that and fall back to the simulator.
import { existsSync, readFileSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { findProgram, packageRoot } from '../record/toolchain.ts';
import type { ExitInfo, Regs, RegsInput, SregsInput, VmLimits, SlotInfo } from './kvm.ts';

export interface NativeHostMemory {
  readonly buffer: ArrayBuffer;
  readonly bytes: number;
  protect(offset: number, len: number, prot: 'r' | 'rw' | 'none'): void;
  /** another mapping of a memfd pool (hw/src/memory.cc); throws for anonymous memory */
  view(): NativeHostMemory;
  close(): void;
}
/** hw/src/wpwatch.cc */
export interface NativeWriteWatch {
  readonly faults: number;
  readonly lost: number;
  readonly how: string;
  protect(offset: number, len: number, on: boolean): void;
  drain(): Float64Array;
  close(): void;
}
export interface NativeKvmSystem {
  readonly apiVersion: number;
  checkExtension(cap: number): number;
  createVm(): NativeKvmVm;
  close(): void;
}
export interface NativeKvmVm {
  setMemory(slot: number, gpa: bigint, mem: NativeHostMemory, offset: number, bytes: number,
    flags: { logDirty?: boolean; readonly?: boolean }): void;
  deleteMemory(slot: number): void;
  enableManualDirtyProtect(): void;
  getDirtyLog(slot: number): Uint8Array;
  clearDirtyLog(slot: number, first: number, num: number, bitmap: Uint8Array): void;
  enableDirtyRing(entries: number): void;
  resetDirtyRings(): number;
  createVcpu(id: number): NativeKvmVcpu;
  limits(): VmLimits;
  checkExtension(cap: number): number;
  slots(): SlotInfo[];
  close(): void;
}
export interface NativeKvmVcpu {
  readonly id: number;
  readonly running: boolean;
  getRegs(): Regs;
  setRegs(r: RegsInput): void;
  setSregs(s: SregsInput): void;
  setCpuid(): void;
  /** timeoutMs 0: no limit */
  run(timeoutMs: number): Promise<ExitInfo>;
  kick(): boolean;
  /** [slot, page offset, slot, page offset, ...] */
  harvestDirtyRing(): Float64Array;
  close(): void;
}
export interface KvmAddon {
  HostMemory: new (bytes: number, kind: 'memfd' | 'anon') => NativeHostMemory;
  KvmSystem: new (path: string) => NativeKvmSystem;
  WriteWatch: new (view: NativeHostMemory, logEntries?: number) => NativeWriteWatch;
  setErrorClass(ctor: new (message: string, ioctl: string, errno: number, code: string) => Error): void;
}

export const ADDON_ENV = 'GRANULE_KVM_ADDON';
export const DEFAULT_KVM_DEVICE = '/dev/kvm';

/** $GRANULE_KVM_ADDON when set, else node-gyp's output in the package. */
export function kvmAddonPath(): string {
  return process.env[ADDON_ENV] || join(packageRoot(), 'build', 'Release', 'granule_kvm.node');
}

const FALLBACK = 'Until then granule runs on the simulator backend (--backend sim), which needs none of this.';

const onPath = (names: string[]): boolean => names.some((n) => findProgram(n) !== undefined);

function buildAdvice(): string[] {
  const missing: string[] = [];
  if (!onPath(['c++', 'g++', 'clang++'])) missing.push('a C++ compiler (g++)');
  if (!onPath(['make'])) missing.push('make');
  if (!onPath(['python3'])) missing.push('python3 (node-gyp runs on it)');
  const lines: string[] = [];
  if (missing.length) {
    lines.push(`  Missing on this machine: ${missing.join(', ')}.`);
    lines.push('  Install the build tools: apt-get install -y g++ make python3   (Debian/Ubuntu; or your distribution\'s packages)');
  }
  lines.push(`  ${missing.length ? 'Then build' : 'Build'} the addon: npm rebuild granule   (in a checkout of granule: node scripts/build-native.mjs)`);
  return lines;
}

function deviceProblem(path: string, err: NodeJS.ErrnoException): string {
  if (err.code === 'ENOENT' || err.code === 'ENODEV' || err.code === 'ENXIO') {
    return [
      `The KVM backend is unavailable: ${path} does not exist.`,
      '  KVM needs hardware virtualization exposed to this kernel.',
      '  To fix: load the module (sudo modprobe kvm_intel, or kvm_amd), enable VT-x/AMD-V in the firmware,',
      '  or, inside a virtual machine or container, enable nested virtualization / pass /dev/kvm through',
      '  (docker run --device /dev/kvm ...).',
      FALLBACK,
    ].join('\n');
  }
  if (err.code === 'EACCES' || err.code === 'EPERM') {
    let owner = '', group = 'kvm';
    try {
      const st = statSync(path);
      const line = readFileSync('/etc/group', 'utf8').split('\n').find((l) => l.split(':')[2] === String(st.gid));
      if (line) group = line.split(':')[0];
      owner = ` (group ${line ? group : st.gid}, mode ${(st.mode & 0o777).toString(8)})`;
    } catch {
      // the owner is only a hint
    }
    return [
      `The KVM backend is unavailable: permission denied opening ${path}${owner}.`,
      `  To fix: add yourself to the ${group} group and start a new login session:`,
      `    sudo usermod -aG ${group} $USER      (then log out and in, or run: newgrp ${group})`,
      `  or ask the administrator for read/write access to ${path}.`,
      FALLBACK,
    ].join('\n');
  }
  return [
    `The KVM backend is unavailable: opening ${path} failed: ${err.message}.`,
    '  Another hypervisor may hold the virtualization extensions (EBUSY), or the device is not KVM.',
    FALLBACK,
  ].join('\n');
}

type LoadResult = { addon: KvmAddon } | { error: string };
const cache = new Map<string, LoadResult>();

/**
 * The addon, or a multi-line explanation of why it cannot be used here (no build, no /dev/kvm, no
 * permission) ending in what to do. The device is opened once to check; the result is cached.
 */
export function loadKvmAddon(devicePath = DEFAULT_KVM_DEVICE): LoadResult {
  let r = cache.get(devicePath);
  if (!r) cache.set(devicePath, (r = load(devicePath)));
  return r;
}

function load(devicePath: string): LoadResult {
  if (process.platform !== 'linux') {
    return ({ error: [`The KVM backend is unavailable: KVM is a Linux interface and this is ${process.platform}.`, FALLBACK].join('\n') });
  }
  const path = kvmAddonPath();
  const fromEnv = process.env[ADDON_ENV] ? ` (from $${ADDON_ENV})` : '';
  if (!existsSync(path)) {
    return ({
      error: [
        `The KVM backend is unavailable: its native addon ${path}${fromEnv} is not built.`,
        '  It is compiled from hw/src when granule is installed (node-gyp, node-addon-api); that build was skipped or failed.',
        ...buildAdvice(),
        FALLBACK,
      ].join('\n'),
    });
  }
  let addon: KvmAddon;
  try {
    addon = createRequire(import.meta.url)(path) as KvmAddon;
  } catch (e) {
    const msg = (e as Error).message.split('\n')[0];
    const abi = /NODE_MODULE_VERSION|different Node\.js version|invalid ELF|wrong ELF class/.test(msg);
    return ({
      error: [
        `The KVM backend is unavailable: ${path}${fromEnv} exists but cannot be loaded:`,
        `  ${msg}`,
        abi ? `  It was built for another Node.js or platform than this one (${process.version}, ${process.arch}).` : '  The build may be incomplete or damaged.',
        ...buildAdvice(),
        FALLBACK,
      ].join('\n'),
    });
  }
  try {
    const sys = new addon.KvmSystem(devicePath);
    sys.close();
  } catch (e) {
    const err = e as NodeJS.ErrnoException & { errno?: number };
    // The addon reports errno names in `code` (KvmError); map them onto Node's convention.
    return ({ error: deviceProblem(devicePath, { ...err, message: err.message, code: err.code }) });
  }
  return ({ addon });
}

/** Forget the cached result (tests, or after the user fixed the problem in a long-lived process). */
export function resetKvmAddonCache(): void {
  cache.clear();
}
