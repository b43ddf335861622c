// granule's library entry: the simulator, the table builders, address-space descriptions, the
// walk explainer and the generated constants.
export * from './consts.ts';
export { Sim, BATCH_DONE, BATCH_FAULT, BATCH_DLOG_FULL, BATCH_BAD_RECORD } from './sim.ts';
export type { FaultRecord, Step, CpuState, SimOptions } from './sim.ts';
export { counterNames, type Counters } from './counters.ts';
export { BatchWriter } from './batch.ts';
export { FrameAllocator, EptBuilder, GuestPtBuilder, addrMaskFor, PAGE_4K, PAGE_2M, PAGE_1G, EPT_MT_WB } from './space.ts';
export type { PageSize, PhysMemory } from './space.ts';
export {
  SpaceError, parseSpace, buildSpace, loadSpace, loadSpaceFile, demoSpace, DEMO_SPACE_JSON, DEMO_GVA,
  GUEST_FLAG_NAMES, EPT_FLAG_NAMES, EPT_MEMORY_TYPES,
} from './describe.ts';
export type { Space, SpaceDescription, EptMapping, GuestMapping, Edit, CpuDescription } from './describe.ts';
export {
  explainWalk, formatWalk, formatOutcome, decodePfErrorCode, decodeExitQualification, guestBits, eptBits,
  eptMisconfigText, bitRanges, useColor,
} from './walkfmt.ts';
export type { WalkReport, WalkRef, Outcome, DecodedBit, FormatOptions } from './walkfmt.ts';
export type { Mmu, BackendName, GuestPageFlags, PlaneOptions, DirtyEntry, Handlers, RunResult, AccessSink } from './mmu.ts';
export { SimMmu, type SimMmuOptions } from './sim-mmu.ts';
export { createMmu, type BackendChoice } from './backend.ts';
