// What every `granule` command shares: where output goes, and which errors are the user's
// (a clear message and an exit code) rather than granule's (a stack trace worth reporting).
import { TraceError } from './trace/events.ts';
import { ReplayError } from './replay/replay.ts';
import { ToolError, BuildError } from './record/toolchain.ts';
import { NativeRecordError } from './record/native.ts';
import { WasmRecordError } from './record/wasm.ts';
import { CheckpointError } from './checkpoint/format.ts';
import { MonitorError } from './monitor/engine.ts';
import { CompareError } from './monitor/compare.ts';
import { SpaceError as LayoutError } from './layout/space.ts';
import { ReportWriteError, ReportLibraryError } from './report/html.ts';

export interface Io {
  out: (s: string) => void;
  err: (s: string) => void;
  color: boolean;
  /** stderr is a terminal: progress may be drawn there */
  tty?: boolean;
}

/** A bad argument: exit code 2. */
export class UsageError extends Error {}

/** Bad input or a missing tool, already worded for the user: exit code 1. */
export class InputError extends Error {}

export function isInputError(e: unknown): e is Error {
  return e instanceof InputError || e instanceof TraceError || e instanceof ReplayError || e instanceof ToolError
    || e instanceof BuildError || e instanceof NativeRecordError || e instanceof WasmRecordError
    || e instanceof CheckpointError || e instanceof MonitorError || e instanceof LayoutError || e instanceof CompareError
    || e instanceof ReportWriteError || e instanceof ReportLibraryError;
}

/** Exit code for an input error: 130 when the user interrupted a recording (as a shell reports SIGINT). */
export function inputErrorCode(e: Error): number {
  return e instanceof NativeRecordError && e.signal === 'SIGINT' ? 130 : 1;
}
