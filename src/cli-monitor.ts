// The monitoring commands of `granule`: compare, checkpoint, restore.
import { Command, Option } from 'commander';
import { createHash } from 'node:crypto';
import { createReadStream, statSync } from 'node:fs';
import { UsageError, InputError, type Io } from './cli-io.ts';
import { parseGranularities, parseCount, bytes, backendOption } from './cli-trace.ts';
import { runMonitor, checkMonitorOptions, MonitorError, type Layout } from './monitor/engine.ts';
import { compareTrace, DEFAULT_COMPARE_GRANULARITIES, DEFAULT_COMPARE_MODES } from './monitor/compare.ts';
import { MONITOR_MODES, mmuNeeds, type MonitorMode } from './layout/space.ts';
import { kvmLacks, type BackendChoice } from './backend.ts';
import { CheckpointWriter } from './checkpoint/writer.ts';
import { restoreImage, verifyChain } from './checkpoint/restore.ts';
import { CheckpointError } from './checkpoint/format.ts';
import { traceInfo } from './trace/reader.ts';
import { EV_ALLOC } from './trace/events.ts';
import { existsSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { formatCompareTable, fmtInt } from './report/table.ts';
import { renderCompareHtml, writeReport } from './report/html.ts';
import { DEFAULT_EPOCH_WRITES } from './replay/replay.ts';

const num = fmtInt;
const PAGE = 4096;

function parseEpochWrites(text: string | undefined): number {
  return text === undefined ? DEFAULT_EPOCH_WRITES : parseCount('--epoch-writes', text);
}

/** A granularity list for monitoring: 64..4096 bytes, or 'adaptive'. */
function parseMonitorGranularities(text: string): (number | 'adaptive')[] {
  const out: (number | 'adaptive')[] = [];
  const fixed = text.split(',').map((s) => s.trim()).filter((s) => s && s !== 'adaptive');
  if (fixed.length) {
    for (const g of parseGranularities(fixed.join(','))) {
      if (g < 64 || g > PAGE) throw new UsageError(`--granularity ${g}: monitoring units are 64 to 4096 bytes (the spread layout's slots; 4096 is page level; SPP uses 128)`);
      out.push(g);
    }
  }
  if (/(^|,)\s*adaptive\s*(,|$)/.test(text)) out.push('adaptive');
  if (out.length === 0) throw new UsageError(`--granularity '${text}' names no unit sizes: give a list like 4096,256,64,adaptive`);
  return out;
}

function parseModes(text: string): MonitorMode[] {
  const out = text.split(',').map((s) => s.trim()).filter(Boolean);
  for (const m of out) if (!MONITOR_MODES.includes(m as MonitorMode)) throw new UsageError(`--modes: unknown mode '${m}'; modes are ${MONITOR_MODES.join(', ')}`);
  return out as MonitorMode[];
}

async function sha256(path: string): Promise<string> {
  const h = createHash('sha256');
  for await (const c of createReadStream(path)) h.update(c as Buffer);
  return h.digest('hex');
}

// ---------------------------------------------------------------------------------------------

/** Which MMU ran and why, on stderr, when it may not be the one asked for or the default. */
function sayBackend(io: Io, asked: BackendChoice, ran: { name: string; reason: string }): void {
  if (asked !== 'sim' || ran.name !== 'sim') io.err(`granule: backend ${ran.name}: ${ran.reason.split('\n')[0]}\n`);
}

async function compareCommand(trace: string, o: { json?: boolean; html?: string; epochWrites?: string; granularity?: string; modes?: string; frames?: string; spp?: boolean; block?: boolean; live?: boolean; backend: BackendChoice }, io: Io): Promise<void> {
  const epochWrites = parseEpochWrites(o.epochWrites);
  const granularities = o.granularity ? parseMonitorGranularities(o.granularity) : DEFAULT_COMPARE_GRANULARITIES;
  const modes = o.modes ? parseModes(o.modes) : DEFAULT_COMPARE_MODES;
  const frames = o.frames ? parseCount('--frames', o.frames) : undefined;
  const r = await compareTrace(trace, {
    modes, granularities, epochWrites, frames, spp: o.spp !== false, block: !!o.block, backend: o.backend, live: !!o.live,
    onRun: io.tty ? (label, k, of) => io.err(`\r\x1b[2Kcompare: run ${k + 1} of ${of}: ${label}`) : undefined,
  });
  if (io.tty) io.err('\r\x1b[2K');
  if (r.backend) sayBackend(io, o.backend, r.backend);
  if (o.html) {
    writeReport(o.html, renderCompareHtml(r));
    io.err(`granule: wrote ${o.html}\n`);
  }
  if (o.json) io.out(JSON.stringify(r, null, 2) + '\n');
  else io.out(formatCompareTable(r, { color: io.color }) + '\n');
}

async function checkpointCommand(trace: string, o: { output: string; mode: MonitorMode; layout: Layout; granularity?: string; epochWrites?: string; frames?: string; backend: BackendChoice }, io: Io): Promise<void> {
  const epochWrites = parseEpochWrites(o.epochWrites);
  const gText = o.granularity ?? (o.mode === 'spp' ? '128' : '64');
  const [g] = parseMonitorGranularities(gText);
  if (gText.includes(',')) throw new UsageError('--granularity: checkpoint takes one unit size (or adaptive)');
  let st;
  try { st = statSync(trace); } catch (e) { throw new InputError(`${trace}: cannot read the trace (${(e as NodeJS.ErrnoException).code})`); }
  // Everything that can be refused is refused before the directory is touched.
  try {
    checkMonitorOptions({ mode: o.mode, layout: o.layout, granularity: g!, epochWrites });
  } catch (e) {
    throw e instanceof MonitorError ? new UsageError(e.message) : e;
  }
  const lacks = kvmLacks(mmuNeeds(o.mode));
  if (o.backend === 'kvm' && lacks) throw new UsageError(`--backend kvm --mode ${o.mode}: ${lacks}`);
  if (o.layout !== 'trace' && traceInfo(trace).counts[EV_ALLOC] === 0) {
    throw new InputError(`${trace} has no allocation events, so its objects cannot be placed in the ${o.layout} layout: record it with granule record (which reports allocations), or give --layout trace`);
  }
  const existed = existsSync(o.output);
  const writer = CheckpointWriter.create(o.output, {
    trace: { path: trace, bytes: st.size, sha256: await sha256(trace) },
    mode: o.mode, layout: o.layout, granularity: g!, epochWrites, created: new Date().toISOString(),
  });
  let total = 0;
  let base = 0;
  let closed = false;
  try {
    const r = await runMonitor(trace, {
      mode: o.mode, layout: o.layout, granularity: g!, epochWrites, frames: o.frames ? parseCount('--frames', o.frames) : undefined, backend: o.backend,
      onEpoch: (e, units, space) => {
        if (e.index === 0) {
          const frames = [];
          for (let f = 0; f < space.framesUsed; f++) frames.push({ frame: f, bytes: space.frameBytes(f) });
          writer.writeBase(frames);
          base = space.framesUsed * PAGE;
        } else {
          total += writer.writeIncrement(e.index, units.map((u) => ({ frame: u.frame, offset: u.offset, bytes: space.readUnit(u) }))).dataBytes;
        }
      },
    });
    await r.space.close();
    const c = writer.close();
    closed = true;
    sayBackend(io, o.backend, r.backend);
    io.err(`granule: wrote ${c.dir}: base image ${bytes(base)} (${num(base / PAGE)} frames) and ${r.epochs.length - 1} increments holding ${bytes(total)} of dirty data; ${bytes(c.bytes)} on disk\n`);
  } finally {
    if (!closed) {
      writer.abort();
      // A refused or failed run leaves nothing: the directory was new or empty, so every file in
      // it is this run's. (A crash, which runs no finally, leaves its complete epochs.)
      if (existed) for (const f of readdirSync(o.output)) rmSync(join(o.output, f), { force: true });
      else rmSync(o.output, { recursive: true, force: true });
    }
  }
}

async function restoreCommand(dir: string, o: { epoch?: string; verify?: boolean; json?: boolean; backend: BackendChoice }, io: Io): Promise<void> {
  const epoch = o.epoch === undefined ? undefined : Number(o.epoch);
  if (epoch !== undefined && (!Number.isSafeInteger(epoch) || epoch < 0)) throw new UsageError(`--epoch must be a whole number, got '${o.epoch}'`);
  // Every file is checked, not only those up to the epoch asked for: damage anywhere is news.
  // Damage after the epoch asked for does not stop its restore (that is what earlier epochs are
  // for); it is reported as a warning.
  try {
    const chain = verifyChain(dir);
    for (const n of chain.notes) io.err(`granule: note: ${n}\n`);
  } catch (e) {
    const file = e instanceof CheckpointError ? String(e.file ?? '') : '';
    const m = /epoch-(\d+)\.gck$/.exec(file);
    if (epoch === undefined || !m || Number(m[1]) <= epoch) throw e;
    io.err(`granule: warning: ${(e as Error).message}\n`);
  }
  const r = restoreImage(dir, epoch);
  const m = r.meta;
  const imageBytes = r.frames.size * PAGE;
  const out: Record<string, unknown> = { dir, epoch: r.epoch, frames: r.frames.size, imageBytes, files: r.filesRead.length, meta: m };
  if (o.verify) {
    let digest: string;
    try { digest = await sha256(m.trace.path); } catch (e) { throw new InputError(`${dir}: the checkpoint was made from ${m.trace.path}, which cannot be read (${(e as NodeJS.ErrnoException).code}); --verify re-runs it`); }
    if (digest !== m.trace.sha256) throw new InputError(`${dir}: ${m.trace.path} is not the trace this checkpoint was made from (its SHA-256 differs); --verify needs the original`);
    const run = await runMonitor(m.trace.path, { mode: m.mode as MonitorMode, layout: m.layout as Layout, granularity: m.granularity, epochWrites: m.epochWrites, stopAfter: r.epoch, backend: o.backend });
    try {
      sayBackend(io, o.backend, run.backend);
      if (run.epochs.length <= r.epoch) throw new InputError(`${dir}: the trace has only ${run.epochs.length} epochs, the checkpoint claims epoch ${r.epoch}`);
      const machine = run.backend.name === 'kvm' ? 'the KVM guest\'s' : 'the simulator\'s';
      const zero = new Uint8Array(PAGE);
      let mismatches = 0;
      let first = '';
      let restoredEnd = 0;
      for (const f of r.frames.keys()) restoredEnd = Math.max(restoredEnd, f + 1);
      const end = Math.max(run.space.framesUsed, restoredEnd);
      for (let f = 0; f < end; f++) {
        const want = f < run.space.framesUsed ? run.space.frameBytes(f) : zero;
        const got = r.frames.get(f) ?? zero;
        for (let i = 0; i < PAGE; i++) {
          if (want[i] !== got[i]) {
            mismatches++;
            if (!first) first = `frame ${f} offset ${i}: restored ${got[i]}, ${machine} ${want[i]}`;
            break;
          }
        }
      }
      out.verified = mismatches === 0;
      out.framesCompared = run.space.framesUsed;
      out.backend = run.backend.name;
      if (mismatches) throw new InputError(`${dir}: the image restored at epoch ${r.epoch} differs from ${machine} in ${mismatches} frames (first: ${first})`);
    } finally {
      await run.space.close();
    }
  }
  if (o.json) io.out(JSON.stringify(out, null, 2) + '\n');
  else {
    io.out(`restored epoch ${r.epoch} of ${dir}: ${num(r.frames.size)} frames (${bytes(imageBytes)}) from ${r.filesRead.length} files; ${m.mode}, ${m.layout} layout, ${m.granularity === 'adaptive' ? 'adaptive' : `${m.granularity} B`} units, epochs of ${num(m.epochWrites)} writes\n`);
    if (o.verify) io.out(`verified: identical to ${out.backend === 'kvm' ? 'the KVM guest\'s' : 'the simulator\'s'} memory at the end of epoch ${r.epoch} (${num(out.framesCompared as number)} frames), replaying ${m.trace.path}\n`);
  }
}

// ---------------------------------------------------------------------------------------------

export function registerMonitorCommands(program: Command, io: Io): void {
  program.command('compare')
    .description('run a trace under every monitoring mode and granularity (spread layout) against page level (packed layout) and the byte-exact ideal: checkpoint bytes, faults, exits, TLB misses, walk references, table memory')
    .argument('<trace>', 'an object-aware granule trace (from granule record)')
    .option('--json', 'print the result as JSON')
    .option('--html <file>', 'also write an HTML report with charts')
    .option('-e, --epoch-writes <n>', `an epoch is this many write events (default: ${DEFAULT_EPOCH_WRITES})`)
    .option('-g, --granularity <list>', `unit sizes, 64..4096, and/or adaptive (default: ${DEFAULT_COMPARE_GRANULARITIES.join(',')})`)
    .option('--modes <list>', `monitoring mechanisms on the spread layout (default: ${DEFAULT_COMPARE_MODES.join(',')})`)
    .option('--no-spp', 'leave out SPP at 128 B on the packed layout')
    .option('--block', 'also compare in the trace\'s own layout (page level, SPP, idealized g-aligned blocks); the only way to compare a trace without allocation events')
    .option('--live', 'also run the host baselines (mprotect, userfaultfd WP, WP_ASYNC + PAGEMAP_SCAN, soft-dirty where the kernel has it) on the page-level row\'s accesses, natively in this process, and report their costs')
    .option('--frames <n>', 'frame pool (default 65536)')
    .addOption(backendOption())
    .action(async (trace: string, o) => compareCommand(trace, o, io));

  program.command('checkpoint')
    .description('incremental checkpoints of a trace\'s memory: a base image after the first epoch, then exactly the dirty units of each epoch')
    .argument('<trace>', 'a granule trace')
    .requiredOption('-o, --output <dir>', 'checkpoint directory (must not exist or be empty)')
    .addOption(new Option('-m, --mode <mode>', 'monitoring mechanism').choices(MONITOR_MODES).default('gpt-wp'))
    .addOption(new Option('--layout <layout>', 'heap layout').choices(['spread', 'packed', 'trace']).default('spread'))
    .option('-g, --granularity <g>', 'unit size 64..4096, or adaptive (default: 64; 128 with --mode spp)')
    .option('-e, --epoch-writes <n>', `an epoch is this many write events (default: ${DEFAULT_EPOCH_WRITES})`)
    .option('--frames <n>', 'frame pool (default 65536)')
    .addOption(backendOption())
    .action(async (trace: string, o) => checkpointCommand(trace, o, io));

  program.command('restore')
    .description('rebuild the memory image at the end of an epoch from a checkpoint directory; --verify compares it with a fresh run of the trace')
    .argument('<dir>', 'a directory written by granule checkpoint')
    .option('--epoch <e>', 'the epoch to restore (default: the latest)')
    .option('--verify', 're-run the trace to that epoch and compare the images byte for byte')
    .option('--json', 'print the result as JSON')
    .addOption(backendOption())
    .action(async (dir: string, o) => restoreCommand(dir, o, io));
}
