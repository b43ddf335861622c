// Event lists as the columnar blocks replay consumes, through the library's own BlockBuilder.
import { BlockBuilder, emitEvents, allocBlock } from '../../src/trace/block.ts';
import type { EventBlock, TraceEvent } from '../../src/trace/events.ts';

export function toBlock(events: TraceEvent[]): EventBlock {
  let out: EventBlock = allocBlock(0);
  const builder = new BlockBuilder((b) => { out = b; }, Math.max(1, events.length));
  emitEvents(events, builder);
  builder.flush();
  return out;
}
