// A small space for simulator tests: eight 4 KiB guest pages at VA -> GPA 0..0x8000, and GPA
// 0..64 KiB -> HPA 1 MiB in the EPT; table frames at HPA 8..16 MiB.
import { Sim, type SimOptions } from '../../src/sim.ts';
import { FrameAllocator, EptBuilder, GuestPtBuilder, addrMaskFor } from '../../src/space.ts';

export const VA = 0x40_0000n;

export async function smallSpace(opts: SimOptions & { eptAd?: boolean } = {}) {
  const { eptAd, ...simOpts } = opts;
  const sim = await Sim.create({ physBytes: 16 << 20, ...simOpts });
  const mask = addrMaskFor(sim.maxPhyAddr);
  const tables = new FrameAllocator(0x80_0000n, 0x100_0000n);
  const ept = new EptBuilder(sim, tables, mask);
  const gpt = new GuestPtBuilder(sim, tables, new FrameAllocator(0x1000_0000n, 0x2000_0000n), ept, mask);
  ept.mapRange(0n, 0x10_0000n, 0x10_000n);
  for (let i = 0n; i < 8n; i++) gpt.map(VA + i * 0x1000n, i * 0x1000n);
  sim.setCpu({ cr3: gpt.cr3, eptp: ept.eptp(eptAd ?? true), vpid: 1 });
  return { sim, ept, gpt, tables };
}
