// The granularity view's sweep, off the page's thread: one 'start' message brings the simulator
// module's bytes, the trace's bytes, the epoch length and the jobs in order; the worker checks the
// trace, runs page level first, then the rest, and posts each row (with its dirty-unit map) as it
// is done. 'prefer' reorders the jobs still waiting when the selection changes. The page cancels
// a sweep by terminating the worker; every message carries the sweep's generation so a late one
// is recognised. The worker fetches nothing. Protocol types: sweep-model.ts (ToWorker, FromWorker).
import { runSweep, JobQueue, mapBuffers, SweepError, type ToWorker, type FromWorker } from './sweep-model.ts';
import { TraceError } from '../src/trace/events.ts';

interface WorkerScope {
  postMessage(m: FromWorker, transfer?: Transferable[]): void;
  addEventListener(type: 'message', f: (ev: MessageEvent<ToWorker>) => void): void;
}
const scope = self as unknown as WorkerScope;
const post = (m: FromWorker, transfer: Transferable[] = []) => scope.postMessage(m, transfer);

let queue: JobQueue | null = null;
let running = -1;

/** Lets queued messages (a 'prefer') in between two runs. */
const between = () => new Promise<void>((done) => setTimeout(done, 0));

async function start(m: Extract<ToWorker, { type: 'start' }>) {
  const { gen } = m;
  if (running >= 0) {
    post({ type: 'error', gen, message: 'this sweep worker is already running a sweep; the page must start a new worker for each one (this is a bug in the explorer)' });
    return;
  }
  running = gen;
  queue = new JobQueue(m.jobs);
  const t0 = performance.now();
  try {
    // Sim.create compiles the bytes it is given once per run (18 KiB: well under a millisecond).
    await runSweep({ name: m.name, bytes: new Uint8Array(m.bytes), epochWrites: m.epochWrites, queue, base: m.base, wasm: m.wasm }, {
      onFacts: (facts) => post({ type: 'facts', gen, facts }),
      onIdeal: (row, base) => post({ type: 'ideal', gen, row, base }),
      onRow: (key, row, map, done, total) => post({ type: 'row', gen, key, row, map, done, total }, mapBuffers(map)),
      onJobError: (key, message) => post({ type: 'job-error', gen, key, message }),
      onProgress: (p) => post({ type: 'progress', gen, ...p }),
      between,
    });
    post({ type: 'done', gen, seconds: (performance.now() - t0) / 1000 });
  } catch (e) {
    const message = e instanceof TraceError || e instanceof SweepError ? e.message : `the sweep stopped: ${(e as Error)?.message ?? String(e)}`;
    post({ type: 'error', gen, message });
  } finally {
    queue = null;
  }
}

scope.addEventListener('message', (ev) => {
  const m = ev.data;
  if (m.type === 'start') void start(m);
  else if (m.type === 'prefer' && m.gen === running) queue?.prefer(m.sel);
});
