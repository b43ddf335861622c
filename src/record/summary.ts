// What both recorders report about a trace they wrote.
import type { KindCounts } from '../trace/events.ts';

export interface RecordSummaryBase {
  out: string;
  events: number;
  counts: KindCounts;
  bytes: number;
  exitCode: number;
  seconds: number;
  notes: string[];
}
