// Backend selection: `auto` takes the KVM backend where it works, else the simulator, and says
// which ran and why.
import { existsSync } from 'node:fs';
import { SimMmu, type SimMmuOptions } from './sim-mmu.ts';
import { KvmMmu, describeKvmHost, guestImagePath, type KvmMmuOptions } from './hw/kvm-mmu.ts';
import { loadKvmAddon, DEFAULT_KVM_DEVICE } from './hw/native.ts';
import type { Mmu } from './mmu.ts';

export type BackendChoice = 'auto' | 'sim' | 'kvm';

/** Options of both backends; each ignores what only the other one has (the simulator's TLB shape, the guest's timeout). */
export type MmuOptions = SimMmuOptions & Omit<KvmMmuOptions, 'frames' | 'batchCapacity' | 'valueCapacity' | 'planeTracking'> & {
  /** EPT-level write protection will be used (protectGpa): on KVM, planes get write watches */
  eptWriteProtect?: boolean;
  /** sub-page write permissions will be used (the simulator's setSubPageWrites) */
  spp?: boolean;
};

/** What the KVM backend cannot do whatever the host: the features asked for that it lacks, or null. */
export function kvmLacks(opts: Pick<MmuOptions, 'pml' | 'eptWriteProtect' | 'spp'>): string | null {
  if (opts.spp) return 'sub-page write permissions (spp): KVM offers no SPP interface to user space (it was proposed upstream, never merged); use --backend sim';
  if (opts.pml && opts.eptWriteProtect) return 'PML and EPT write protection together: the kvm backend tracks planes one way per VM (dirty ring or write watch)';
  return null;
}

/**
 * Why the KVM backend cannot serve these options here, or null when it can: the addon and the
 * device (the multi-line explanation of src/hw/native.ts), the guest image, or a feature it lacks.
 */
export function kvmUnavailable(opts: MmuOptions = {}): string | null {
  const lacks = kvmLacks(opts);
  if (lacks) return lacks;
  const r = loadKvmAddon(opts.device ?? DEFAULT_KVM_DEVICE);
  if ('error' in r) return r.error;
  const image = opts.image ?? guestImagePath();
  if (!existsSync(image)) {
    return [
      `The KVM backend is unavailable: its guest image ${image} is not built.`,
      '  Build it with: node --import tsx scripts/build-guest.ts   (needs gcc and binutils: apt-get install -y gcc binutils)',
      'Until then granule runs on the simulator backend (--backend sim), which needs none of this.',
    ].join('\n');
  }
  return null;
}

function kvmOptions(opts: MmuOptions): KvmMmuOptions {
  const { frames, runTimeoutMs, image, ringCapacity, device, batchCapacity, valueCapacity, dirtyRingEntries, planes } = opts;
  return {
    frames, runTimeoutMs, image, ringCapacity, device, batchCapacity, valueCapacity, dirtyRingEntries, planes,
    // PML's counterpart is KVM's dirty ring; EPT write protection's, a userfaultfd watch per plane.
    planeTracking: opts.pml ? 'dirty-ring' : opts.eptWriteProtect ? 'write-watch' : 'dirty-log',
  };
}

export async function createMmu(choice: BackendChoice = 'auto', opts: MmuOptions = {}): Promise<Mmu> {
  if (choice !== 'auto' && choice !== 'sim' && choice !== 'kvm') {
    throw new RangeError(`unknown backend '${String(choice)}': use auto, sim or kvm`);
  }
  if (choice === 'sim') return SimMmu.create(opts, 'simulator requested (--backend sim)');
  const why = kvmUnavailable(opts);
  if (choice === 'kvm') {
    if (why) throw new Error(`--backend kvm: ${why}`);
    return KvmMmu.create(kvmOptions(opts), `${describeKvmHost()}, requested (--backend kvm)`);
  }
  if (why) return SimMmu.create(opts, `simulator: ${why}`);
  try {
    return await KvmMmu.create(kvmOptions(opts), `${describeKvmHost()}, chosen by --backend auto (addon, /dev/kvm and the guest image are all here)`);
  } catch (e) {
    return SimMmu.create(opts, `simulator: the KVM backend is here but failed to start: ${(e as Error).message}`);
  }
}
