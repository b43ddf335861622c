// backend.ts for the browser (the explorer): only the simulator exists there.
import { SimMmu } from './sim-mmu.ts';
import type { Mmu } from './mmu.ts';
// Types only (erased from the bundle): the same option set as on Node.
import type { BackendChoice, MmuOptions } from './backend.ts';

export type { BackendChoice, MmuOptions };

const NO_KVM = 'a web page cannot open /dev/kvm: the explorer runs the simulator';

export function kvmUnavailable(): string {
  return NO_KVM;
}

export function kvmLacks(): string {
  return NO_KVM;
}

export async function createMmu(choice: BackendChoice = 'auto', opts: MmuOptions = {}): Promise<Mmu> {
  if (choice === 'kvm') throw new Error(`--backend kvm: ${NO_KVM}`);
  return SimMmu.create(opts, choice === 'sim' ? 'simulator requested' : `simulator: ${NO_KVM}`);
}
