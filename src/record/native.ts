// `granule record -- PROGRAM ARGS...` for native programs: the program runs under valgrind lackey
// with granule's LD_PRELOAD shim, whose allocator messages travel in the same log as the accesses.
// The log streams through a pipe on fd 3 straight into the lackey parser and the trace writer, so
// a long run needs no temporary log file; the trace appears only when the program exited 0.
import type { RecordSummaryBase } from './summary.ts';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { accessSync, closeSync, constants as fsConstants, mkdtempSync, openSync, rmSync, statSync } from 'node:fs';
import { Socket } from 'node:net';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import type { Readable } from 'node:stream';
import type { TraceMeta } from '../trace/events.ts';
import { parseLackey, PRELOAD_PROTOCOL, type LackeyStats } from '../trace/lackey.ts';
import { TraceWriter, type Codec } from '../trace/writer.ts';
import { buildPreload, requireTool } from './toolchain.ts';

export interface NativeRecordOptions {
  program: string;
  args: string[];
  out: string;
  codec?: Codec;
  /** Keep instruction fetches (lackey I lines). */
  fetches?: boolean;
  /** Working directory of the program (default: this process's). A relative `program` with a slash is resolved from it. */
  cwd?: string;
  /** The program's standard input: inherited (default), none, or the named file. */
  stdin?: 'inherit' | 'ignore' | string;
  /** Where the program's stdout and stderr go (default: this process's, or nowhere when `quiet`). */
  programOutput?: 'inherit' | 'ignore';
  /** The valgrind to run (default: found on PATH). */
  valgrind?: string;
  /** Called as the trace grows, with the number of events written so far. */
  onProgress?: (events: number) => void;
  /** Remarks about the recording (default: printed to stderr unless `quiet`). */
  onNote?: (note: string) => void;
  /** Print nothing: no notes on stderr, and the program's output discarded unless `programOutput` says otherwise. */
  quiet?: boolean;
}

export interface RecordSummary extends RecordSummaryBase {
  /** Always 0: any other exit status is an error and leaves no trace. */
  exitCode: number;
  stats: LackeyStats;
}

/** A recording that failed or was interrupted; no trace file was left. */
export class NativeRecordError extends Error {
  constructor(message: string, readonly exitCode?: number, readonly signal?: NodeJS.Signals) {
    super(message);
    this.name = 'NativeRecordError';
  }
}

export const NATIVE_SOURCE = 'granule-record-native';

/**
 * The executable `name` would run as: a path (with a slash) from `cwd`, otherwise the first match
 * on PATH. Checked here so a typo fails with a clear message before valgrind starts.
 */
export function resolveProgram(name: string, cwd = process.cwd(), PATH = process.env.PATH ?? ''): string {
  if (name === '') throw new NativeRecordError('no program to record');
  const check = (p: string): string | undefined => {
    let st;
    try {
      st = statSync(p);
    } catch {
      return 'no such file';
    }
    if (st.isDirectory()) return 'is a directory';
    if (!st.isFile()) return 'is not a regular file';
    try {
      accessSync(p, fsConstants.X_OK);
    } catch {
      return 'is not executable (chmod +x it, or check the mount)';
    }
    return undefined;
  };
  if (name.includes('/')) {
    const p = path.resolve(cwd, name);
    const problem = check(p);
    if (problem) throw new NativeRecordError(`cannot record ${name}: ${problem}${p !== name ? ` (${p})` : ''}`);
    return p;
  }
  for (const dir of PATH.split(path.delimiter)) {
    // An empty PATH entry means the current directory, as in the shell.
    const p = path.resolve(cwd, dir === '' ? '.' : dir, name);
    if (check(p) === undefined) return p;
  }
  throw new NativeRecordError(`cannot record ${name}: no such program on PATH; give a path (./${name}) if it is in the current directory`);
}

/** `valgrind-3.19.0`, from `valgrind --version`; also proves the binary runs. */
function valgrindVersion(valgrind: string): string {
  const r = spawnSync(valgrind, ['--version'], { encoding: 'utf8', timeout: 30_000 });
  if (r.error) {
    const code = (r.error as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' ? 'not found' : code === 'EACCES' ? 'not executable' : r.error.message;
    throw new NativeRecordError(`cannot run valgrind (${valgrind}): ${why}; install valgrind (e.g. apt-get install valgrind) to record native programs`);
  }
  const v = r.stdout.trim();
  if (r.status !== 0 || !/^valgrind-\S+$/.test(v)) {
    throw new NativeRecordError(`${valgrind} --version printed ${JSON.stringify(`${r.stdout}${r.stderr}`.trim().slice(0, 200))} (exit ${r.status}); is it valgrind?`);
  }
  return v;
}

// What valgrind prints on every run; dropped when showing why a run failed.
const ROUTINE = /^(Lackey, an example Valgrind tool|Copyright \(C\)|Using Valgrind-|Command: |Parent PID: )/;

/** valgrind's messages worth showing: not the banner, not lackey's closing statistics. */
function telling(messages: string[]): string[] {
  const out: string[] = [];
  for (const m of messages) {
    const text = m.replace(/^(==|--)\d+(==|--) ?/, '');
    if (/^Counted \d+ calls? to main\(\)/.test(text)) break;
    if (text.trim() === '' || ROUTINE.test(text)) continue;
    out.push(text);
  }
  return out;
}

/**
 * A FIFO for the log, opened at both ends and unlinked at once. valgrind writes each log line
 * with its own write(); Node's own stdio pipes are socket pairs, on which that costs twice the
 * whole valgrind run (kvstore 20000: 18.5 s against 9.0 s, 7.8 s writing a file). Undefined when
 * mkfifo is unavailable; the caller falls back to a socket pair.
 */
function logFifo(): { read: number; write: number } | undefined {
  let dir: string | undefined;
  try {
    dir = mkdtempSync(path.join(tmpdir(), 'granule-log-'));
    const fifo = path.join(dir, 'log');
    if (spawnSync('mkfifo', ['-m', '600', fifo]).status !== 0) return undefined;
    // Non-blocking so that opening the read end does not wait for a writer; the write end, valgrind's, blocks.
    const read = openSync(fifo, fsConstants.O_RDONLY | fsConstants.O_NONBLOCK);
    try {
      return { read, write: openSync(fifo, fsConstants.O_WRONLY) };
    } catch {
      closeSync(read);
      return undefined;
    }
  } catch {
    return undefined;
  } finally {
    if (dir) rmSync(dir, { recursive: true, force: true });
  }
}

function describeExit(code: number | null, signal: NodeJS.Signals | null): string {
  return signal ? `was killed by ${signal}` : `exited with code ${code}`;
}

/** Records one run of the program; on any failure (or Ctrl-C) no trace is left and the error says why. */
export async function recordNative(o: NativeRecordOptions): Promise<RecordSummary> {
  const t0 = performance.now();
  const notes: string[] = [];
  const note = (s: string) => {
    notes.push(s);
    if (o.onNote) o.onNote(s);
    else if (!o.quiet) process.stderr.write(`granule: ${s}\n`);
  };
  const cwd = o.cwd ?? process.cwd();
  const program = resolveProgram(o.program, cwd);
  const valgrind = o.valgrind ?? requireTool('valgrind', 'to record native programs (granule record -- PROGRAM)');
  const version = valgrindVersion(valgrind);
  const shim = buildPreload();

  let stdin: 'inherit' | 'ignore' | number = 'inherit';
  if (o.stdin === 'ignore') stdin = 'ignore';
  else if (o.stdin !== undefined && o.stdin !== 'inherit') {
    try {
      stdin = openSync(path.resolve(cwd, o.stdin), 'r');
    } catch (e) {
      throw new NativeRecordError(`cannot open ${o.stdin} for the program's standard input: ${(e as Error).message}`);
    }
  }

  const meta: TraceMeta = {
    source: NATIVE_SOURCE,
    command: [o.program, ...o.args],
    recorder: `${version} lackey + granule-preload ${PRELOAD_PROTOCOL}`,
    pageSize: 4096,
    created: new Date().toISOString(),
  };
  let writer: TraceWriter;
  try {
    writer = TraceWriter.create(o.out, meta, { codec: o.codec });
  } catch (e) {
    if (typeof stdin === 'number') closeSync(stdin);
    throw e;
  }

  // The shim goes first: a preloaded malloc listed before it would bind first and bypass it.
  const env = { ...process.env, LD_PRELOAD: process.env.LD_PRELOAD ? `${shim}:${process.env.LD_PRELOAD}` : shim };
  const output = o.programOutput ?? (o.quiet ? 'ignore' : 'inherit');
  const argv = ['--tool=lackey', '--trace-mem=yes', '--log-fd=3', program, ...o.args];
  const fifo = logFifo();
  let child: ChildProcess;
  try {
    // Discarded stderr is still read, so that a failure can quote its end (valgrind's own
    // start-up errors go there too).
    child = spawn(valgrind, argv, { cwd, env, stdio: [stdin, output, output === 'ignore' ? 'pipe' : 'inherit', fifo ? fifo.write : 'pipe'] });
  } catch (e) {
    writer.abort();
    if (fifo) closeSync(fifo.read);
    throw new NativeRecordError(`cannot start valgrind (${valgrind}): ${(e as Error).message}`);
  } finally {
    if (typeof stdin === 'number') closeSync(stdin);
    // Only valgrind may hold the write end, so that the log ends when valgrind does.
    if (fifo) closeSync(fifo.write);
  }
  let stderrTail = '';
  child.stderr?.on('data', (d: Buffer) => { stderrTail = (stderrTail + d.toString('utf8')).slice(-4096); });
  const log: Readable = fifo ? new Socket({ fd: fifo.read, readable: true, writable: false }) : (child.stdio[3] as Readable);

  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null; error?: Error }>((resolve) => {
    child.once('error', (error) => resolve({ code: null, signal: null, error }));
    // 'close', not 'exit': the end of a piped stderr is wanted for the error message.
    child.once('close', (code, signal) => resolve({ code, signal }));
  });
  let interrupted: NodeJS.Signals | undefined;
  const onSignal = (sig: NodeJS.Signals) => {
    interrupted = sig;
    child.kill('SIGKILL');
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);

  const messages: string[] = [];
  let stats: LackeyStats | undefined;
  let parseError: unknown;
  let killed = false;
  try {
    try {
      stats = await parseLackey(log, writer, {
        file: `valgrind log of ${o.program}`,
        fetches: o.fetches,
        onMessage: (m) => { if (messages.length < 1000) messages.push(m); },
        onProgress: o.onProgress && (() => o.onProgress!(writer.events)),
      });
    } catch (e) {
      parseError = e;
      // Stop the run: nothing more can be recorded, and valgrind would block on a full pipe.
      killed = child.exitCode === null && child.signalCode === null;
      child.kill('SIGKILL');
      log.destroy();
    }
    const status = await exited;

    const fail = (msg: string, exitCode?: number, signal?: NodeJS.Signals): never => {
      writer.abort();
      const said = telling(messages);
      const shown = said.length > 8 ? [...said.slice(0, 8), '...'] : said;
      const errLines = stderrTail.trimEnd().split('\n').filter((l) => l.trim() !== '').slice(-6);
      throw new NativeRecordError(
        `${msg}; no trace written${shown.length ? `. valgrind said:\n  ${shown.join('\n  ')}` : ''}` +
        `${errLines.length ? `${shown.length ? '\n' : '. '}Its standard error ended with:\n  ${errLines.join('\n  ')}` : ''}`,
        exitCode, signal);
    };
    if (interrupted) fail(`recording of ${o.program} interrupted (${interrupted})`, undefined, interrupted);
    if (status.error) fail(`cannot start valgrind (${valgrind}): ${status.error.message}`);
    // A bad log (or a failing writer) is the news when the SIGKILL was ours; otherwise a failing
    // program comes first, as it explains a log cut short.
    if (parseError !== undefined && killed && status.signal === 'SIGKILL') {
      writer.abort();
      throw parseError;
    }
    if (status.code !== 0) {
      const started = stats !== undefined || messages.length > 0;
      const why = started ? `${o.program} ${describeExit(status.code, status.signal)} under valgrind`
        : `valgrind ${describeExit(status.code, status.signal)} before ${o.program} started${output === 'inherit' ? ' (see its message above)' : ''}`;
      fail(why, status.code ?? undefined, status.signal ?? undefined);
    }
    if (parseError !== undefined) {
      writer.abort();
      throw parseError;
    }
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }

  const s = stats!;
  if (!s.shimSeen) {
    note(`${o.program} did not load granule's preload shim (a statically linked program, or one that resets LD_PRELOAD), so the trace has no allocation events: replay can monitor it only in its own layout`);
  }
  const summary = writer.close();
  return {
    out: summary.path, events: summary.events, counts: summary.counts, bytes: summary.bytes, exitCode: 0, stats: s,
    seconds: (performance.now() - t0) / 1000, notes,
  };
}
