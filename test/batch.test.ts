// The batch path: many accesses in one call, built-in handlers, the dirty log filling up,
// malformed records, and SPP (SDM Vol. 3C 29.3.4) with its handler.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { Sim, BATCH_BAD_RECORD, BATCH_DLOG_FULL, BATCH_DONE, BATCH_FAULT } from '../src/sim.ts';
import { BatchWriter } from '../src/batch.ts';
import { smallSpace, VA } from './support/small-space.ts';
import {
  ACC_WRITE, ACC_USER, PTE_RW, PTE_SW_WP, EPT_R, EPT_X, EPT_SPP, SPPT_P, EQ_SPP, EQ_WRITE,
  FAULT_EPT_VIOLATION, FAULT_SPP_MISS, HANDLE_PF_WP, HANDLE_SPP, DLOG_SPP, REC_SIZE_FIELD, EXIT_SPP_EVENT,
} from '../src/consts.ts';

const W = ACC_WRITE | ACC_USER;

async function space(opts: { dlogCapacity?: number } = {}) {
  return smallSpace({ dlogCapacity: opts.dlogCapacity ?? 1024 });
}

test('a full dirty log pauses the batch; after draining, it resumes where it stopped', async () => {
  const { sim, gpt } = await space({ dlogCapacity: 2 });
  for (let i = 0n; i < 4n; i++) {
    const l = gpt.leafEntry(VA + i * 0x1000n)!;
    sim.write64(l.hpa, (l.value & ~PTE_RW) | PTE_SW_WP);
  }
  const b = new BatchWriter(sim);
  for (let i = 0n; i < 4n; i++) b.push(VA + i * 0x1000n, W, 8);
  let r = sim.runBatch(0, b.count, HANDLE_PF_WP);
  assert.equal(r, { next: 2, status: BATCH_DLOG_FULL });
  assert.is(sim.drainDirtyLog().length, 2);
  r = sim.runBatch(r.next, b.count, HANDLE_PF_WP);
  assert.equal(r, { next: 4, status: BATCH_DONE });
  assert.equal(sim.drainDirtyLog().map((e) => e.addr), [VA + 0x2000n, VA + 0x3000n]);
  assert.is(sim.counters().handledPf, 4);
});

test('a malformed record stops the batch at that record', async () => {
  const { sim } = await space();
  const b = new BatchWriter(sim);
  b.push(VA, W, 8);
  b.push(VA + 8n, W, 8);
  sim.batchView().records.setUint8(16 + REC_SIZE_FIELD, 0);
  assert.equal(sim.runBatch(0, 2), { next: 1, status: BATCH_BAD_RECORD });
});

test('29.3.4: SPP grants writes per 128-byte sub-page; misses exit; the handler grants and logs', async () => {
  const { sim, ept, tables } = await space();
  // Page GPA 0x5000: readable, not writable, SPP on.
  const leaf = ept.leafEntry(0x5000n)!;
  sim.write64(leaf.hpa, (leaf.value & ~7n) | EPT_R | EPT_X | EPT_SPP);
  const root = tables.alloc();
  sim.setCpu({ spp: { enabled: true, spptp: root } });
  // Before the SPPT has a path for the page: SPP-related event.
  let r = sim.access(VA + 0x5000n, W, 4);
  assert.is(r.fault?.kind, FAULT_SPP_MISS);
  assert.is(r.fault?.exitReason, EXIT_SPP_EVENT);
  // Build the path: levels 4, 3, 2 valid; level-1 vector grants sub-page 0 only (bit 0).
  let table = root;
  for (let level = 4; level > 1; level--) {
    const next = tables.alloc();
    sim.write64(table + ((0x5000n >> BigInt(3 + 9 * level)) & 511n) * 8n, next | SPPT_P);
    table = next;
  }
  const vec = table + 5n * 8n;
  sim.write64(vec, 1n);
  assert.is(sim.access(VA + 0x5000n + 0x10n, W, 4).fault, null, 'sub-page 0 granted');
  r = sim.access(VA + 0x5000n + 3n * 128n + 4n, W, 4);
  assert.is(r.fault?.kind, FAULT_EPT_VIOLATION);
  assert.ok((r.fault!.code & EQ_SPP) !== 0 && (r.fault!.code & EQ_WRITE) !== 0);
  // A write straddling sub-pages 1 and 2: the handler grants each in turn.
  const b = new BatchWriter(sim);
  b.push(VA + 0x5000n + 2n * 128n - 2n, W, 4);
  assert.equal(sim.runBatch(0, 1, HANDLE_SPP), { next: 1, status: BATCH_DONE });
  assert.equal(sim.drainDirtyLog(), [
    { kind: DLOG_SPP, addr: 0x5000n + 128n },
    { kind: DLOG_SPP, addr: 0x5000n + 256n },
  ]);
  assert.is(sim.read64(vec), 1n | (1n << 2n) | (1n << 4n));
  assert.is(sim.counters().handledSpp, 2);
  // Without the handler, the batch reports the fault and the record index.
  b.reset();
  b.push(VA + 0x5000n + 7n * 128n, W, 1);
  const s = sim.runBatch(0, 1, 0);
  assert.is(s.status, BATCH_FAULT);
  assert.is(sim.lastFault().gpa, 0x5000n + 7n * 128n);
});

test.run();
