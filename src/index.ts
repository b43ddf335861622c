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
export { KvmMmu, kvmPlaneGpa, type KvmMmuOptions } from './hw/kvm-mmu.ts';
export { kvmUnavailable, type MmuOptions } from './backend.ts';

// Traces: the format, importers and recorders, replay.
export * from './trace/events.ts';
export { TraceWriter, type Codec, type WriterOptions, type TraceSummary } from './trace/writer.ts';
export { TraceReader, isGranuleTrace, traceInfo, type TraceInfo } from './trace/reader.ts';
export { BlockBuilder, EventCollector, emitBlock, blockEvents } from './trace/block.ts';
export { importLackey, parseLackey, looksLikeLackey, type LackeyStats } from './trace/lackey.ts';
export { recordNative, type NativeRecordOptions } from './record/native.ts';
export { recordWasm, type WasmRecordOptions } from './record/wasm.ts';
export { replayFile, type ReplayFileOptions, type ReplayFileResult } from './replay/run.ts';
export { Replayer, type ReplayOptions, type ReplayResult, type EpochResult } from './replay/replay.ts';

// The mechanism: layouts, monitoring, checkpoints, reports.
export { SpreadAllocator } from './alloc/spread.ts';
export { PackedAllocator } from './alloc/packed.ts';
export { Retargeter } from './alloc/retarget.ts';
export { MonitoredSpace, MONITOR_MODES, PLANE_STRIDE, type MonitorMode, type DirtyUnit } from './layout/space.ts';
export { runMonitor, type MonitorOptions, type MonitorResult, type EpochStats, type Layout } from './monitor/engine.ts';
export { compareTrace, type CompareOptions } from './monitor/compare.ts';
export { CheckpointWriter, type CheckpointMeta } from './checkpoint/writer.ts';
export { restoreImage, verifyChain, type RestoreResult } from './checkpoint/restore.ts';
export { formatCompareTable } from './report/table.ts';
export { renderCompareHtml, writeReport } from './report/html.ts';
export type { CompareResult, CompareRow, CompareEpoch } from './report/types.ts';
