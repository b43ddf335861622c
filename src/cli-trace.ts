// The trace commands of `granule`: import, record, replay, trace info/dump.
import { fmtBytes, fmtInt } from './report/table.ts';
import { Command, Option } from 'commander';
import { existsSync, readFileSync, statSync } from 'node:fs';
import cliProgress from 'cli-progress';
import { UsageError, InputError, type Io } from './cli-io.ts';
import { EV_READ, EV_WRITE, EV_MODIFY, EV_FETCH, EV_ALLOC, EV_FREE, EV_REALLOC, EV_THREAD, type KindCounts } from './trace/events.ts';
import { TraceWriter, type Codec } from './trace/writer.ts';
import { TraceReader, traceInfo } from './trace/reader.ts';
import { importLackey } from './trace/lackey.ts';
import { recordNative } from './record/native.ts';
import { recordWasm } from './record/wasm.ts';
import { replayFile, type ReplayFileResult } from './replay/run.ts';
import { DEFAULT_GRANULARITIES, DEFAULT_EPOCH_WRITES } from './replay/replay.ts';
import { checkGranularity } from './replay/units.ts';

const CODECS = ['deflate', 'brotli', 'none'];

// ---------------------------------------------------------------------------------------------
// Formatting

// The report's formatters: the CLI, the tables and the HTML report print the same figures.
const num = fmtInt;
export const bytes = fmtBytes;

function countsLine(c: KindCounts): string {
  const parts = [[EV_READ, 'reads'], [EV_WRITE, 'writes'], [EV_MODIFY, 'modifies'], [EV_FETCH, 'fetches'], [EV_ALLOC, 'allocs'], [EV_FREE, 'frees'], [EV_REALLOC, 'reallocs']] as const;
  const out = parts.filter(([k]) => (c[k] ?? 0) > 0).map(([k, name]) => `${num(c[k]!)} ${name}`);
  const marks = (c[7] ?? 0) + (c[EV_THREAD] ?? 0);
  if (marks) out.push(`${num(c[7] ?? 0)} epoch marks, ${num(c[EV_THREAD] ?? 0)} thread switches`);
  return out.length ? out.join(', ') : 'no events';
}

function table(rows: string[][], align: ('l' | 'r')[]): string[] {
  const w = rows[0]!.map((_, k) => Math.max(...rows.map((r) => r[k]!.length)));
  return rows.map((r) => r.map((c, k) => (align[k] === 'r' ? c.padStart(w[k]!) : c.padEnd(w[k]!))).join('  ').trimEnd());
}

/** A progress bar on stderr when it is a terminal; otherwise nothing. */
function progress(io: Io, label: string, total: number, unit: 'bytes' | 'events') {
  if (!io.tty) return { update(_n: number) {}, stop() {} };
  const bar = new cliProgress.SingleBar({
    // With no known total (a program still running) only the count moves.
    format: total ? `${label} [{bar}] {percentage}% | {done} | ETA {eta_formatted}` : `${label} {done}`,
    hideCursor: true, clearOnComplete: true, stream: process.stderr, fps: 5,
  }, cliProgress.Presets.shades_classic);
  bar.start(total || 1, 0, { done: '' });
  return {
    update(n: number) { bar.update(total ? Math.min(n, total) : 0, { done: unit === 'bytes' ? bytes(n) : `${num(n)} events` }); },
    stop() { bar.stop(); },
  };
}

// ---------------------------------------------------------------------------------------------
// Argument parsing

export function parseCount(what: string, text: string): number {
  if (!/^[0-9][0-9_]*$/.test(text)) throw new UsageError(`${what} '${text}' is not a whole number`);
  const n = Number(text.replace(/_/g, ''));
  if (!Number.isSafeInteger(n) || n < 1) throw new UsageError(`${what} must be at least 1, got ${text}`);
  return n;
}

export function parseGranularities(text: string): number[] {
  const parts = text.split(',').map((s) => s.trim()).filter((s) => s !== '');
  if (parts.length === 0) throw new UsageError(`--granularity '${text}' names no unit sizes: give a list like 4096,1024,256,64`);
  const out: number[] = [];
  for (const p of parts) {
    const m = /^([0-9]+)([kKmM]?)$/.exec(p);
    if (!m) throw new UsageError(`--granularity: '${p}' is not a size in bytes (a list looks like 4096,1024,256,64; 4k and 2m also work)`);
    const g = Number(m[1]) * (m[2] === '' ? 1 : /k/i.test(m[2]!) ? 1024 : 1 << 20);
    try { checkGranularity(g); } catch (e) { throw new UsageError(`--granularity: ${(e as Error).message}`); }
    if (!out.includes(g)) out.push(g);
  }
  return out;
}

function readInput(file: string): Uint8Array {
  try {
    return readFileSync(file);
  } catch (e) {
    throw new InputError(`--stdin ${file}: cannot read it (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  }
}

function checkOutput(out: string): void {
  if (out.endsWith('/')) throw new UsageError(`-o ${out} is a directory name: give the trace file to write, e.g. -o ${out}run.grt`);
}

// ---------------------------------------------------------------------------------------------
// granule import lackey

async function importCommand(log: string, o: { output: string; fetches?: boolean; codec: Codec }, io: Io): Promise<void> {
  checkOutput(o.output);
  const total = existsSync(log) ? statSync(log).size : 0;
  const writer = TraceWriter.create(o.output, { source: 'lackey', recorder: 'valgrind lackey --trace-mem=yes (imported)', pageSize: 4096, created: new Date().toISOString(), importedFrom: log }, { codec: o.codec });
  const bar = progress(io, 'import', total, 'bytes');
  const t0 = performance.now();
  try {
    const stats = await importLackey(log, writer, { fetches: !!o.fetches, onProgress: (n) => bar.update(n) });
    bar.stop();
    const s = writer.close();
    const secs = (performance.now() - t0) / 1000;
    io.err(`granule: wrote ${s.path}: ${num(s.events)} events (${countsLine(s.counts)}), ${bytes(s.bytes)}\n`);
    const dropped = [
      stats.fetchesSkipped ? `${num(stats.fetchesSkipped)} instruction fetches (keep them with --fetches)` : '',
      stats.droppedAllocator ? `${num(stats.droppedAllocator)} allocator-internal accesses` : '',
      stats.droppedShim ? `${num(stats.droppedShim)} accesses by the preload shim` : '',
      stats.kernelSkipped ? `${num(stats.kernelSkipped)} kernel-half accesses` : '',
    ].filter(Boolean);
    io.err(`granule: ${num(stats.lines)} lines in ${secs.toFixed(2)} s (${num(Math.round(stats.lines / Math.max(secs, 1e-9)))} lines/s)${dropped.length ? `; left out: ${dropped.join(', ')}` : ''}\n`);
  } catch (e) {
    bar.stop();
    writer.abort();
    throw e;
  }
}

// ---------------------------------------------------------------------------------------------
// granule record

async function recordCommand(argv: string[], o: { output: string; wasm?: string; fetches?: boolean; codec: Codec; stdin?: string }, io: Io): Promise<void> {
  checkOutput(o.output);
  const bar = progress(io, 'record', 0, 'events');
  const onProgress = (n: number) => bar.update(n);
  let s;
  try {
    if (o.wasm) {
      if (o.fetches) throw new UsageError('--fetches applies to native programs (lackey I lines); wasm traces hold data accesses only');
      s = await recordWasm({ module: o.wasm, args: argv, out: o.output, codec: o.codec, onProgress, stdin: o.stdin === undefined ? undefined : readInput(o.stdin) });
    } else {
      if (argv.length === 0) throw new UsageError('no program to record: granule record -o OUT -- PROGRAM ARGS... (or --wasm MODULE.wasm)');
      s = await recordNative({ program: argv[0]!, args: argv.slice(1), out: o.output, codec: o.codec, fetches: !!o.fetches, stdin: o.stdin, onProgress });
    }
  } finally {
    bar.stop();
  }
  io.err(`granule: wrote ${s.out}: ${num(s.events)} events (${countsLine(s.counts)}), ${bytes(s.bytes)} in ${s.seconds.toFixed(1)} s\n`);
}

// ---------------------------------------------------------------------------------------------
// granule replay

function replayJson(r: ReplayFileResult): object {
  return {
    trace: { path: r.source.path, format: r.source.format, bytes: r.source.bytes, meta: r.source.meta, lackey: r.source.lackey },
    backend: r.backend,
    granularities: r.granularities,
    epochWrites: r.epochWrites,
    epochMarks: r.epochMarks,
    monitor: 'guest page-table write protection, 4 KiB pages; pages mapped on first touch',
    seconds: Number(r.seconds.toFixed(3)),
    epochs: r.epochs,
    totals: r.totals,
  };
}

function replayText(r: ReplayFileResult, showEpochs: boolean): string[] {
  const t = r.totals;
  const out: string[] = [];
  const meta = r.source.meta;
  const what = r.source.format === 'granule'
    ? `granule trace, ${bytes(r.source.bytes)}${meta ? `; ${meta.source}${meta.command ? `: ${meta.command.join(' ')}` : ''}` : ''}`
    : `valgrind lackey log, ${bytes(r.source.bytes)}`;
  const events = t.reads + t.writes + t.fetches;
  out.push(`trace    ${r.source.path} (${what})`);
  out.push(`events   ${num(events)} accesses: ${num(t.reads)} reads, ${num(t.writes)} writes, ${num(t.fetches)} fetches; ${num(t.allocs)} allocs, ${num(t.frees)} frees, ${num(t.reallocs)} reallocs`);
  const last = r.epochs[r.epochs.length - 1];
  const partial = last && last.writes < r.epochWrites ? ` (the last partial: ${num(last.writes)} writes)` : '';
  out.push(`epochs   ${num(t.epochs)} of ${num(r.epochWrites)} writes${r.epochMarks ? ' or trace epoch marks' : ''}${partial}`);
  out.push(`pages    ${num(t.pagesTouched)} touched (${bytes(t.pagesTouched * 4096)})`);
  out.push('');
  const page = r.granularities.includes(4096) ? 4096 : Math.max(...r.granularities);
  const rows = [['granularity', 'dirty units', 'volume', 'x ideal', `/ ${page} B`]];
  for (const g of r.granularities) {
    const v = t.volumeBytes[g]!;
    rows.push([`${g} B`, num(t.units[g]!), bytes(v), t.idealBytes ? (v / t.idealBytes).toFixed(2) : '-', t.volumeBytes[page] ? (v / t.volumeBytes[page]!).toFixed(3) : '-']);
  }
  rows.push(['ideal', '', bytes(t.idealBytes), '1.00', t.volumeBytes[page] ? (t.idealBytes / t.volumeBytes[page]!).toFixed(3) : '-']);
  out.push('dirty data, summed over epochs (a unit is a g-aligned block of the address space):');
  out.push(...table(rows, ['l', 'r', 'r', 'r', 'r']).map((l) => '  ' + l));
  out.push('');
  const onKvm = r.backend.name === 'kvm';
  out.push(`${onKvm ? 'KVM (the guest\'s trace player and in-guest #PF monitor)' : 'simulator'}: page-level write protection in the guest page table, pages mapped on first touch`);
  if (onKvm) out.push(`  backend           ${r.backend.reason.split('\n')[0]}`);
  out.push(`  faults            ${num(t.faults.notPresent)} not-present (first touch), ${num(t.faults.writeProtect)} write-protect`);
  if (onKvm) {
    out.push('  TLB misses, walks real hardware does not count them for us (use --backend sim for the model\'s counts)');
  } else {
    out.push(`  TLB misses        ${num(t.tlbMisses)} (${events ? ((100 * t.tlbMisses) / events).toFixed(2) : '0'}% of accesses)`);
    out.push(`  walk references   ${num(t.walkRefs)} in ${num(t.walks)} walks (${t.walks ? (t.walkRefs / t.walks).toFixed(1) : '0'} per walk)`);
  }
  if (showEpochs) {
    out.push('');
    const head = ['epoch', 'writes', 'ideal', ...r.granularities.map((g) => `${g} B`), 'wp faults', 'TLB miss'];
    const erows = [head, ...r.epochs.map((e) => [String(e.index), num(e.writes), bytes(e.idealBytes), ...r.granularities.map((g) => num(e.units[g]!)), num(e.faults.writeProtect), num(e.tlbMisses)])];
    out.push('per epoch (dirty units):');
    out.push(...table(erows, head.map((_, k) => (k === 0 ? 'l' : 'r'))).map((l) => '  ' + l));
  } else if (r.epochs.length > 1) {
    out.push('');
    out.push('per-epoch figures: --epochs (a table) or --json');
  }
  out.push('');
  out.push(`replayed in ${r.seconds.toFixed(2)} s (${num(Math.round(events / Math.max(r.seconds, 1e-9)))} accesses/s)`);
  return out;
}

async function replayCommand(trace: string, o: { format: 'auto' | 'granule' | 'lackey'; epochWrites?: string; epochMarks?: boolean; granularity?: string; json?: boolean; frames?: string; fetches?: boolean; epochs?: boolean; backend: 'sim' | 'kvm' | 'auto' }, io: Io): Promise<void> {
  const granularities = o.granularity !== undefined ? parseGranularities(o.granularity) : DEFAULT_GRANULARITIES;
  const epochWrites = o.epochWrites !== undefined ? parseCount('--epoch-writes', o.epochWrites) : o.epochMarks ? Number.MAX_SAFE_INTEGER : DEFAULT_EPOCH_WRITES;
  const frames = o.frames !== undefined ? parseCount('--frames', o.frames) : undefined;
  let bar: ReturnType<typeof progress> | null = null;
  const r = await replayFile(trace, {
    format: o.format, granularities, epochWrites, epochMarks: !!o.epochMarks, frames, fetches: !!o.fetches, backend: o.backend,
    onProgress: (n, total) => { (bar ??= progress(io, 'replay', total, 'bytes')).update(n); },
  }).finally(() => bar?.stop());
  if (o.json) io.out(JSON.stringify(replayJson(r), null, 2) + '\n');
  else io.out(replayText(r, !!o.epochs).join('\n') + '\n');
}

// ---------------------------------------------------------------------------------------------
// granule trace info / dump

function infoCommand(file: string, o: { json?: boolean }, io: Io): void {
  const i = traceInfo(file);
  if (o.json) { io.out(JSON.stringify(i, null, 2) + '\n'); return; }
  const m = i.meta;
  const lines = [
    `file       ${i.path} (${bytes(i.bytes)}; ${bytes(i.rawBytes)} of events before compression)`,
    `format     granule trace ${i.version}, ${num(i.chunks)} chunks, checksums verified`,
    `source     ${m.source}${m.recorder ? ` (${m.recorder})` : ''}`,
  ];
  if (m.command) lines.push(`command    ${m.command.join(' ')}`);
  if (m.created) lines.push(`created    ${m.created}`);
  lines.push(`page size  ${m.pageSize}`);
  lines.push(`events     ${num(i.events)}: ${countsLine(i.counts)}`);
  const extra = Object.keys(m).filter((k) => !['source', 'recorder', 'command', 'created', 'pageSize'].includes(k));
  for (const k of extra) lines.push(`${k.padEnd(10)} ${typeof m[k] === 'string' ? m[k] : JSON.stringify(m[k])}`);
  io.out(lines.join('\n') + '\n');
}

function dumpCommand(file: string, o: { from?: string; limit?: string; json?: boolean }, io: Io): void {
  const from = o.from !== undefined ? parseCount('--from', o.from) - 1 : 0;
  const limit = o.limit !== undefined ? parseCount('--limit', o.limit) : 100;
  const reader = TraceReader.open(file);
  let i = 0;
  let shown = 0;
  const hex = (n: number) => '0x' + n.toString(16);
  const val = (v?: Uint8Array) => (v ? ' = ' + Buffer.from(v).toString('hex') : '');
  try {
    for (const e of reader.events()) {
      i++;
      if (i <= from) continue;
      if (shown++ >= limit) break;
      if (o.json) { io.out(JSON.stringify({ n: i, ...e, value: 'value' in e && e.value ? Buffer.from(e.value).toString('hex') : undefined }) + '\n'); continue; }
      let text: string;
      switch (e.type) {
        case 'alloc': text = `alloc   ${hex(e.addr)} ${e.size} bytes, align ${e.align}`; break;
        case 'free': text = `free    ${hex(e.addr)}`; break;
        case 'realloc': text = `realloc ${hex(e.addr)} -> ${hex(e.newAddr)} ${e.size} bytes`; break;
        case 'epoch': text = 'epoch'; break;
        case 'thread': text = `thread  ${e.tid}`; break;
        default: text = `${e.type.padEnd(7)} ${hex(e.addr)} ${e.size}${val(e.value)}`;
      }
      io.out(`${String(i).padStart(9)}  ${text}\n`);
    }
  } finally {
    reader.close();
  }
}

// ---------------------------------------------------------------------------------------------

/** --backend, the same on every command that runs accesses. */
export function backendOption(): Option {
  return new Option('--backend <backend>', 'the machine that runs the accesses: the simulator, KVM (the guest\'s trace player and in-guest monitor), or auto (KVM where it works, and says why not)').choices(['sim', 'kvm', 'auto']).default('sim');
}

export function registerTraceCommands(program: Command, io: Io): void {
  const codec = () => new Option('--codec <codec>', 'chunk compression').choices(CODECS).default('deflate');

  const imp = program.command('import').description('convert traces other tools recorded into granule traces');
  imp.command('lackey')
    .description('import a valgrind lackey --trace-mem=yes log (plain or .gz); allocation events come along when the log was made with granule\'s preload shim')
    .argument('<log>', 'the lackey log; - reads standard input')
    .requiredOption('-o, --output <file>', 'the granule trace to write (atomically)')
    .option('--fetches', 'keep instruction fetches (I lines); left out by default')
    .addOption(codec())
    .action(async (log: string, o) => importCommand(log, o, io));

  program.command('record')
    .description('run a program and record its memory accesses and allocations: native programs under valgrind lackey with granule\'s LD_PRELOAD shim, or --wasm modules instrumented by binaryen')
    .argument('[command...]', 'PROGRAM ARGS... after --, or the module\'s arguments with --wasm')
    .requiredOption('-o, --output <file>', 'the granule trace to write (atomically)')
    .option('--wasm <module>', 'record an emscripten WASI module instrumented with wasm-opt --instrument-memory')
    .option('--fetches', 'native: keep instruction fetches')
    .option('--stdin <file>', 'feed this file to the program\'s standard input')
    .addOption(codec())
    .passThroughOptions()
    .action(async (command: string[], o) => recordCommand(command, o, io));

  program.command('replay')
    .description('replay a trace in its own layout through the simulator: dirty units and volume per granularity, per epoch and in total, with faults, TLB misses and walk references')
    .argument('<trace>', 'a granule trace or a valgrind lackey log (plain or .gz); - reads a lackey log from standard input (with --format lackey)')
    .addOption(new Option('--format <format>', 'input format').choices(['auto', 'granule', 'lackey']).default('auto'))
    .option('-e, --epoch-writes <n>', `an epoch is this many write events (a modify counts once) (default: ${DEFAULT_EPOCH_WRITES})`)
    .option('--epoch-marks', 'end epochs at the trace\'s epoch marks (with --epoch-writes, at either)')
    .option('-g, --granularity <list>', `unit sizes in bytes, powers of two (default: ${DEFAULT_GRANULARITIES.join(',')})`)
    .option('--json', 'print one JSON object (nothing else on stdout)')
    .option('--epochs', 'print a per-epoch table')
    .option('--frames <n>', 'simulated frame pool: the most distinct pages the trace may touch (default: 262144; memory is committed only as pages are touched)')
    .option('--fetches', 'lackey input: replay instruction fetches too')
    .addOption(backendOption())
    .action(async (trace: string, o) => replayCommand(trace, o, io));

  const tr = program.command('trace').description('look inside granule traces');
  tr.command('info')
    .description('metadata and event counts (reads the whole file and verifies every checksum)')
    .argument('<trace>')
    .option('--json', 'as JSON')
    .action(async (file: string, o) => infoCommand(file, o, io));
  tr.command('dump')
    .description('print events as text, one per line')
    .argument('<trace>')
    .option('--from <n>', 'first event to print (1-based)')
    .option('--limit <n>', 'how many events to print (default 100)')
    .option('--json', 'JSON lines')
    .action(async (file: string, o) => dumpCommand(file, o, io));
}
