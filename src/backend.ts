// Backend selection: `auto` takes the KVM backend where it works, else the simulator, and says
// which ran and why.
import { SimMmu, type SimMmuOptions } from './sim-mmu.ts';
import type { Mmu } from './mmu.ts';

export type BackendChoice = 'auto' | 'sim' | 'kvm';

const KVM_MISSING = 'the KVM backend (hw/) is not part of this build yet';

export async function createMmu(choice: BackendChoice = 'auto', opts: SimMmuOptions = {}): Promise<Mmu> {
  if (choice === 'kvm') {
    throw new Error(`--backend kvm: ${KVM_MISSING}; use --backend sim (or auto).`);
  }
  if (choice !== 'auto' && choice !== 'sim') {
    throw new RangeError(`unknown backend '${String(choice)}': use auto, sim or kvm`);
  }
  return SimMmu.create(opts, choice === 'sim' ? 'simulator requested (--backend sim)' : `simulator: ${KVM_MISSING}`);
}
