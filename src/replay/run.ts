// Replays a file, whichever kind it is: a granule trace (read chunk by chunk) or a valgrind lackey
// log, plain or gzip (parsed as it streams; no intermediate file).
import { statSync, openSync, readSync, closeSync } from 'node:fs';
import { TraceError, type TraceMeta, type EventBlock } from '../trace/events.ts';
import { TraceReader, isGranuleTrace } from '../trace/reader.ts';
import { BlockBuilder } from '../trace/block.ts';
import { importLackey, looksLikeLackey, STDIN, type LackeyStats } from '../trace/lackey.ts';
import { Replayer, type ReplayOptions, type ReplayResult } from './replay.ts';

export type TraceFormat = 'granule' | 'lackey';

export interface ReplayFileOptions extends ReplayOptions {
  format?: TraceFormat | 'auto';
  /** lackey: keep instruction fetches (I lines) */
  fetches?: boolean;
  /** called now and then with bytes consumed of the input file (compressed bytes for .gz) */
  onProgress?: (bytes: number, total: number) => void;
}

export interface ReplayFileResult extends ReplayResult {
  source: { path: string; format: TraceFormat; bytes: number; meta?: TraceMeta; lackey?: LackeyStats };
  seconds: number;
}

/** Decides the format of `path` from its first bytes. */
export function detectFormat(path: string): TraceFormat {
  if (isGranuleTrace(path)) return 'granule';
  if (looksLikeLackey(path)) return 'lackey';
  const head = Buffer.alloc(16);
  const fd = openSync(path, 'r');
  let n = 0;
  try { n = readSync(fd, head, 0, 16, 0); } finally { closeSync(fd); }
  const shown = [...head.subarray(0, n)].map((b) => b.toString(16).padStart(2, '0')).join(' ');
  throw new TraceError(path, { offset: 0 }, n === 0 ? 'the file is empty' : `neither a granule trace nor a valgrind lackey log (it starts with ${shown})`,
    'give a trace written by granule record/import, or a log from valgrind --tool=lackey --trace-mem=yes; --format names the format if detection is wrong');
}

export async function replayFile(path: string, o: ReplayFileOptions = {}): Promise<ReplayFileResult> {
  let bytes = 0;
  let pipe = path === STDIN;
  if (!pipe) {
    try {
      const st = statSync(path);
      bytes = st.size;
      pipe = !st.isFile();
    } catch (e) {
      throw new TraceError(path, {}, `cannot read the file (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`, 'check the path');
    }
  }
  if (pipe && o.format !== 'lackey') {
    throw new TraceError(path, {}, 'is a pipe, not a file: its format cannot be sniffed and a granule trace must be a file (its reader seeks)',
      'give a file, or --format lackey to stream a lackey log through the pipe');
  }
  const format = !o.format || o.format === 'auto' ? detectFormat(path) : o.format;
  const t0 = performance.now();
  const replayer = await Replayer.create(o);
  const progress = o.onProgress;
  let meta: TraceMeta | undefined;
  let lackey: LackeyStats | undefined;
  if (format === 'granule') {
    const reader = TraceReader.open(path);
    meta = reader.meta;
    try {
      // One set of buffers for every block: the replayer keeps nothing of a block, and the
      // generator resumes only once the block has been replayed.
      for (const b of reader.blocks({ reuse: true })) {
        await replayer.block(b);
        progress?.(reader.position, bytes);
      }
    } finally {
      reader.close();
    }
  } else {
    // The parser is synchronous and the replayer is not: full blocks wait in a queue that is
    // drained after every chunk of the log.
    const queue: EventBlock[] = [];
    const drain = async () => { while (queue.length) await replayer.block(queue.shift()!); };
    const builder = new BlockBuilder((b) => queue.push(b));
    lackey = await importLackey(path, builder, { fetches: o.fetches, onProgress: progress && ((n) => progress(n, bytes)), afterChunk: drain });
    builder.flush();
    await drain();
  }
  const result = await replayer.finish();
  return { ...result, source: { path, format, bytes, meta, lackey }, seconds: (performance.now() - t0) / 1000 };
}
