// The result of `granule compare`: what the comparison computes and the text and HTML reports
// render. Plain JSON (no bigint, no Map) so that `--json` prints it as is and the HTML report
// embeds it verbatim.

/** One epoch of one configuration (a row of CompareResult). */
export interface CompareEpoch {
  /** 0-based epoch number */
  index: number;
  /** write events in this epoch */
  writes: number;
  /** distinct bytes written in this epoch: what a byte-exact checkpoint would copy */
  idealBytes: number;
  /** bytes this configuration copied into the checkpoint for this epoch */
  checkpointBytes: number;
  /** monitored units found dirty in this epoch */
  dirtyUnits: number;
  /** in-guest page faults (#PF) taken */
  faults: number;
  /** VM exits, all reasons together */
  exits: number;
  /** null where the backend cannot count them (kvm: the TLB is the CPU's) */
  tlbMisses: number | null;
  /** memory references made by page walks (guest page table and EPT); null on the kvm backend */
  walkRefs: number | null;
  /** guest page tables + EPT (+ SPP table) bytes at the end of the epoch; absent for rows without an MMU */
  tableBytes?: number;
  /** virtual address space mapped at the end of the epoch */
  vaBytes?: number;
}

/** One configuration: a monitoring mode on a layout at one granularity (or adaptive). */
export interface CompareRow {
  /** e.g. 'gpt-wp' (guest page-table write protection, in-guest #PF), 'ept-wp' (EPT write protection, VM exits), 'ept-dirty' (EPT D bits harvested), 'pml' (PML log, PML-full exits), 'spp' (SPP 128 B on the packed layout), 'page' (page-level on the packed layout: the traditional baseline), 'ideal' (byte-exact, from the trace) */
  mode: string;
  /** 'trace': the trace's own addresses. Rows of mode 'ideal' or 'block' come from the trace alone, with no MMU: their fault, TLB, walk, table and VA columns are shown as a dash */
  layout: 'spread' | 'packed' | 'trace';
  /** unit size in bytes, or 'adaptive' */
  granularity: number | 'adaptive';
  /** short human label, e.g. 'gpt-wp 64 B', 'adaptive (gpt-wp)', 'page level (packed)' */
  label: string;
  /** total over epochs (base excluded) */
  checkpointBytes: number;
  /** checkpointBytes / the page-level baseline's checkpointBytes */
  overPage: number;
  /** checkpointBytes / ideal bytes */
  overIdeal: number;
  dirtyUnits: number;
  faults: number;
  /** by reason, e.g. {eptViolation: 12, pmlFull: 3} */
  exits: Record<string, number>;
  /** null on the kvm backend (see CompareEpoch) */
  tlbMisses: number | null;
  walkRefs: number | null;
  /** guest page tables + EPT (kvm: the guest tables only) */
  tableBytes: number;
  /** virtual address space mapped */
  vaBytes: number;
  /** wall time of this configuration's run */
  seconds: number;
  /** host baselines (compare --live): what the mechanism cost, summed over epochs after the base */
  host?: HostCosts;
  epochs: CompareEpoch[];
}

export interface CompareResult {
  trace: { path: string; events: number; source?: string; command?: string[] };
  /** writes per epoch (the last epoch may have fewer) */
  epochWrites: number;
  epochs: number;
  /** distinct bytes written, summed over epochs */
  idealBytes: number;
  machine?: { cpu: string; node: string };
  /** the MMU the monitored rows ran on, and why */
  backend?: { name: 'sim' | 'kvm'; reason: string };
  /** in the order the reports show them */
  rows: CompareRow[];
  /** e.g. why a mode was skipped */
  notes: string[];
  /** ISO time */
  generated: string;
}

/** A host baseline's costs (compare --live), in milliseconds summed over the epochs after the base. */
export interface HostCosts {
  /** protecting or clearing the region at each epoch's start */
  armMs: number;
  /** the accesses, with the mechanism's faults */
  runMs: number;
  /** collecting the dirty pages */
  harvestMs: number;
  /** copying them out (the checkpoint copy) */
  copyMs: number;
  /** faults the monitor handled (0 where the kernel resolves them itself) */
  faults: number;
  /** minor faults the kernel took during the runs (where WP_ASYNC and soft-dirty faults show) */
  minorFaults: number;
  /** how the mechanism was opened */
  how: string;
}
