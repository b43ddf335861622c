// Reads through the simulator's own inspection walk, so tests check what the MMU translates to,
// not the monitored space's bookkeeping (which MonitoredSpace.readGva uses).
import { ACC_READ } from '../../src/consts.ts';
import type { MonitoredSpace } from '../../src/layout/space.ts';

const PAGE = 4096;

export function readGvaWalk(space: MonitoredSpace, gva: number, n: number): Uint8Array {
  const sim = space.sim.sim;
  const out = new Uint8Array(n);
  for (let done = 0; done < n;) {
    const a = gva + done;
    const take = Math.min(n - done, PAGE - (a % PAGE));
    const r = sim.inspect(BigInt(a), ACC_READ);
    if (r.fault) throw new Error(`cannot read 0x${a.toString(16)}: the walk faults (kind ${r.fault.kind})`);
    out.set(sim.readBytes(r.hpa, take), done);
    done += take;
  }
  return out;
}
