// The adaptive granularity policy: per slab frame, from what the monitor saw in the epoch that
// just ended, pick the unit for the next one. It reads the guest PTE D flags of the frame's V
// pages, one per slot whatever the current grouping (the guest table keeps per-slot information
// even when the EPT-level unit is coarse), and:
//   split  when the dirty groups were sparsely written (at most half of their slots): halve the
//          group, so the next epoch copies less;
//   merge  when every dirty group was written in full twice in a row: double the group, so the
//          next epoch takes fewer faults (gpt-wp, ept-wp) or fewer PML entries for the same bytes.
// Frames nobody wrote keep their unit. Changes are guest-PTE rewrites only (setGranularity).
import type { MonitoredSpace } from '../layout/space.ts';

export class AdaptivePolicy {
  /** every frame starts at its slot size: the finest unit */
  static readonly START = 64;
  /** consecutive fully-written epochs per frame */
  private readonly full = new Map<number, number>();

  constructor(private readonly space: MonitoredSpace) {}

  /** Decides and applies the next epoch's grouping; returns the guest PTEs rewritten. */
  endEpoch(): number {
    let rewritten = 0;
    for (const f of this.space.slabs) {
      const written = this.space.slotWrites(f);
      const unit = this.space.unitOf(f);
      const cls = unit / this.space.groupOf(f);
      const m = this.space.groupOf(f);
      let dirtyGroups = 0;
      let slotsInDirty = 0;
      let writtenSlots = 0;
      for (let lead = 0; lead < written.length; lead += m) {
        let w = 0;
        for (let j = lead; j < lead + m; j++) if (written[j]) w++;
        if (w === 0) continue;
        dirtyGroups++;
        slotsInDirty += m;
        writtenSlots += w;
      }
      if (dirtyGroups === 0) continue;
      if (m > 1 && writtenSlots * 2 <= slotsInDirty) {
        this.full.delete(f);
        rewritten += this.space.setGranularity(f, (m / 2) * cls);
      } else if (writtenSlots === slotsInDirty) {
        const n = (this.full.get(f) ?? 0) + 1;
        this.full.set(f, n);
        if (n >= 2 && m < written.length) {
          this.full.delete(f);
          rewritten += this.space.setGranularity(f, m * 2 * cls);
        }
      } else {
        this.full.delete(f);
      }
    }
    return rewritten;
  }
}
