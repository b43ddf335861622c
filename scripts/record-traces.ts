// Re-records the bundled traces in traces/ from their programs: granule's own workloads under both
// recorders and a few Debian programs under the native recorder, plus one raw lackey log for the
// import path. Then rewrites traces/MANIFEST.json, which the tests read to check every bundled
// trace still reads and replays with the counts it was recorded with.
//
//   node --import tsx scripts/record-traces.ts [NAME...]      (default: all)
//
// Needs valgrind, cc, emcc and wasm-opt (apt-get install -y valgrind gcc emscripten binaryen) and
// the programs named below (apt-get install -y sqlite3 tokyocabinet-bin bzip2).
import { spawnSync } from 'node:child_process';
import { createGzip } from 'node:zlib';
import { copyFileSync, createReadStream, createWriteStream, existsSync, mkdtempSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { pipeline } from 'node:stream/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { buildWorkload, buildPreload, packageRoot, requireTool, findProgram } from '../src/record/toolchain.ts';
import { recordNative } from '../src/record/native.ts';
import { recordWasm } from '../src/record/wasm.ts';
import { traceInfo } from '../src/trace/reader.ts';

const root = packageRoot();
const out = path.join(root, 'traces');
const inputs = path.join(out, 'inputs');
const scratch = mkdtempSync(path.join(tmpdir(), 'granule-record-'));

interface Entry { name: string; file: string; recorder: 'native' | 'wasm' | 'lackey-log'; command: string[]; description: string }

/** Deterministic text for bzip2: words from a fixed PRNG, so the input never changes. */
function textInput(bytes: number): string {
  const words = ['page', 'frame', 'epoch', 'dirty', 'alias', 'plane', 'walk', 'entry', 'fault', 'slot', 'guest', 'host', 'table', 'write', 'granule'];
  let x = 0x2545f491;
  let s = '';
  while (s.length < bytes) {
    x ^= x << 13; x ^= x >>> 17; x ^= x << 5;
    s += words[(x >>> 0) % words.length] + ((x >>> 8) % 11 === 0 ? '.\n' : ' ');
  }
  return s.slice(0, bytes);
}

type Job = { name: string; description: string; run: (file: string) => Promise<string[]>; recorder: Entry['recorder']; file?: string };

const native = (name: string, description: string, program: () => string, args: string[], o: { cwd?: string; stdin?: string } = {}): Job => ({
  name, description, recorder: 'native',
  run: async (file) => {
    // Inputs and granule's own programs sit in the scratch directory and are named relative to
    // it, so the trace (whose metadata and memory hold the command line) does not depend on where
    // the checkout is.
    let p = program();
    if (p.startsWith(root)) {
      copyFileSync(p, path.join(scratch, path.basename(p)));
      p = `./${path.basename(p)}`;
    }
    await recordNative({ program: p, args, out: file, cwd: o.cwd ?? scratch, stdin: o.stdin, quiet: true });
    return [path.basename(p), ...args];
  },
});

const wasm = (name: string, workload: string, args: string[], description: string): Job => ({
  name, description, recorder: 'wasm',
  run: async (file) => {
    const m = buildWorkload(workload, 'wasm');
    await recordWasm({ module: path.relative(process.cwd(), m), args, out: file, stdout: () => {}, stderr: () => {} });
    return [`${workload}.wasm`, ...args];
  },
});

const debian = (prog: string) => () => findProgram(prog) ?? (() => { throw new Error(`${prog} not found: apt-get install -y ${prog === 'tchtest' ? 'tokyocabinet-bin' : prog}`); })();

const JOBS: Job[] = [
  native('kvstore-native', 'memcached-like key-value store (granule workload), native under valgrind lackey + preload shim', () => buildWorkload('kvstore', 'native'), ['20000', '1']),
  wasm('kvstore-wasm', 'kvstore', ['3000', '1'], 'the same key-value store run as WASI under binaryen instrumentation, with values'),
  native('tcdb-native', 'Tokyo-Cabinet-like on-heap B+tree database (granule workload)', () => buildWorkload('tcdb', 'native'), ['2000', '1']),
  wasm('tcdb-wasm', 'tcdb', ['2000', '1'], 'the B+tree database as WASI, with values'),
  wasm('kmeans-wasm', 'kmeans', ['500', '1'], 'STAMP-like kmeans clustering (granule workload) as WASI, with values'),
  native('vacation-native', 'STAMP-like red-black-tree reservation system (granule workload)', () => buildWorkload('vacation', 'native'), []),
  native('sqlite3-native', 'Debian sqlite3 running traces/inputs/sqlite.sql on an in-memory database', debian('sqlite3'), [':memory:'], { stdin: path.join(inputs, 'sqlite.sql') }),
  native('tchtest-native', 'Debian tokyocabinet-bin: tchtest write, 1000 records into a hash database', debian('tchtest'), ['write', 'casket.tch', '1000']),
  native('bzip2-native', 'Debian bzip2 -1 compressing 16 KiB of generated text', debian('bzip2'), ['-1', '-c', 'text.txt']),
  {
    name: 'bzip2-lackey', description: 'a raw valgrind lackey log (gzip) of bzip2 with the preload shim: the import path', recorder: 'lackey-log', file: 'bzip2-lackey.log.gz',
    run: async (file) => {
      const valgrind = requireTool('valgrind', 'recording the raw lackey log');
      const log = path.join(scratch, 'bzip2.log');
      const args = ['-1', '-c', 'small.txt'];
      const r = spawnSync(valgrind, ['--tool=lackey', '--trace-mem=yes', `--log-file=${log}`, debian('bzip2')(), ...args], {
        cwd: scratch, env: { ...process.env, LD_PRELOAD: buildPreload() }, stdio: ['ignore', 'ignore', 'inherit'],
      });
      if (r.status !== 0) throw new Error(`valgrind bzip2 exited with ${r.status}`);
      await pipeline(createReadStream(log), createGzip({ level: 9 }), createWriteStream(file));
      return ['bzip2', ...args];
    },
  },
];

async function main(): Promise<void> {
  process.chdir(root);
  const want = process.argv.slice(2);
  const unknown = want.filter((n) => !JOBS.some((j) => j.name === n));
  if (unknown.length) throw new Error(`unknown trace ${unknown.join(', ')}; known: ${JOBS.map((j) => j.name).join(', ')}`);
  writeFileSync(path.join(scratch, 'text.txt'), textInput(16 << 10));
  writeFileSync(path.join(scratch, 'small.txt'), textInput(2 << 10));
  const manifestPath = path.join(out, 'MANIFEST.json');
  const manifest: Record<string, unknown>[] = existsSync(manifestPath) ? JSON.parse(readFileSync(manifestPath, 'utf8')) : [];
  for (const job of JOBS) {
    if (want.length && !want.includes(job.name)) continue;
    const file = path.join(out, job.file ?? `${job.name}.grt`);
    const tmp = `${file}.tmp`;
    process.stderr.write(`recording ${job.name} ...\n`);
    const t0 = Date.now();
    const command = await job.run(job.recorder === 'lackey-log' ? tmp : file);
    if (job.recorder === 'lackey-log') renameSync(tmp, file);
    const entry: Record<string, unknown> = {
      name: job.name, file: path.relative(root, file), recorder: job.recorder, command, description: job.description, bytes: statSync(file).size,
    };
    if (job.recorder !== 'lackey-log') {
      const i = traceInfo(file);
      entry.events = i.events;
      entry.counts = i.counts;
    }
    const k = manifest.findIndex((m) => m.name === job.name);
    if (k >= 0) manifest[k] = entry; else manifest.push(entry);
    process.stderr.write(`  ${path.relative(root, file)}: ${(Number(entry.bytes) / 1e6).toFixed(2)} MB${entry.events ? `, ${entry.events} events` : ''} in ${((Date.now() - t0) / 1000).toFixed(1)} s\n`);
  }
  manifest.sort((a, b) => String(a.name).localeCompare(String(b.name)));
  writeFileSync(`${manifestPath}.tmp`, JSON.stringify(manifest, null, 2) + '\n');
  renameSync(`${manifestPath}.tmp`, manifestPath);
}

try {
  await main();
} finally {
  rmSync(scratch, { recursive: true, force: true });
}
