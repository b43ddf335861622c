// backend.ts for the browser (the explorer): only the simulator exists there.
import { SimMmu, type SimMmuOptions } from './sim-mmu.ts';
import type { Mmu } from './mmu.ts';

export type BackendChoice = 'auto' | 'sim' | 'kvm';
export type MmuOptions = SimMmuOptions & { eptWriteProtect?: boolean; runTimeoutMs?: number; image?: string; ringCapacity?: number; device?: string; dirtyRingEntries?: number };

const NO_KVM = 'a web page cannot open /dev/kvm: the explorer runs the simulator';

export function kvmUnavailable(): string {
  return NO_KVM;
}

export async function createMmu(choice: BackendChoice = 'auto', opts: MmuOptions = {}): Promise<Mmu> {
  if (choice === 'kvm') throw new Error(`--backend kvm: ${NO_KVM}`);
  return SimMmu.create(opts, choice === 'sim' ? 'simulator requested' : `simulator: ${NO_KVM}`);
}
