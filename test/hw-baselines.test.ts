// The host dirty-tracking baselines against brute force: random reads and writes over 64 pages for
// three epochs per mode, the harvested pages must be exactly the pages written, the faulting modes
// must fault once per dirty page, and the bytes written must be in the mapping. Modes this kernel
// lacks must say why. The addon is built here when the package's own build has not produced it.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { rng } from './support/rng.ts';
import { ACC_READ, ACC_WRITE } from '../src/consts.ts';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const SOURCE = join(root, 'hw', 'baselines', 'baselines.c');
const PAGE = 4096;

const onPath = (tool: string) => spawnSync('sh', ['-c', `command -v ${tool}`], { encoding: 'utf8' }).stdout.trim();

/** Builds the addon into a per-source cache directory unless the package build made one; returns
 *  why it cannot when a tool is missing (a failing build with all tools present is an error). */
function ensureAddon(): string | undefined {
  if (process.platform !== 'linux') return `the host baselines are Linux-only (this is ${process.platform})`;
  if (process.env.GRANULE_BASELINES_ADDON) return undefined;
  // The package build's addon, unless it predates the source (then test the source as it is).
  const built = join(root, 'build', 'Release', 'granule_baselines.node');
  if (existsSync(built) && statSync(built).mtimeMs >= statSync(SOURCE).mtimeMs) return undefined;
  const gyp = [join(root, 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'),
    join(dirname(process.execPath), '..', 'lib', 'node_modules', 'npm', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js')].find(existsSync);
  const missing = [!gyp && 'node-gyp', !onPath('cc') && 'cc', !onPath('python3') && 'python3', !onPath('make') && 'make'].filter(Boolean);
  if (missing.length) return `${missing.join(', ')} not found, so the addon cannot be built`;
  const key = createHash('sha256').update(readFileSync(SOURCE)).update(process.version).digest('hex').slice(0, 16);
  const out = join(tmpdir(), `granule-baselines-${key}`);
  const addon = join(out, 'build', 'Release', 'granule_baselines.node');
  if (!existsSync(addon)) {
    // Node's own headers when they are installed beside it (no download); else node-gyp's cache.
    const prefix = join(dirname(process.execPath), '..');
    const nodedir = existsSync(join(prefix, 'include', 'node', 'node_api.h')) ? [`--nodedir=${prefix}`] : [];
    const work = mkdtempSync(join(tmpdir(), 'granule-baselines-build-'));
    // gyp wants sources relative to the .gyp file: build a copy of the single source file.
    copyFileSync(SOURCE, join(work, 'baselines.c'));
    writeFileSync(join(work, 'binding.gyp'), JSON.stringify({
      targets: [{ target_name: 'granule_baselines', sources: ['baselines.c'], cflags: ['-O2', '-std=gnu11'], libraries: ['-lpthread'] }],
    }));
    const r = spawnSync(process.execPath, [gyp!, 'rebuild', ...nodedir], { cwd: work, encoding: 'utf8', timeout: 180_000 });
    if (r.status !== 0) {
      rmSync(work, { recursive: true, force: true });
      throw new Error(`building ${SOURCE} with node-gyp failed (exit ${r.status}):\n${(r.stdout + r.stderr).split('\n').slice(-25).join('\n')}`);
    }
    mkdirSync(dirname(out), { recursive: true });
    try {
      renameSync(work, out); // atomic: a concurrent run either sees the whole build or none
    } catch {
      rmSync(work, { recursive: true, force: true }); // another run finished first
    }
  }
  process.env.GRANULE_BASELINES_ADDON = addon;
  return undefined;
}

const skipWhy = ensureAddon();
if (skipWhy) console.log(`hw-baselines.test.ts: skipping: ${skipWhy}`);
const t = skipWhy ? test.skip : test;
const B = await import('../src/hw/baselines.ts');
const probe = skipWhy ? undefined : B.probeBaselines();

const pagesOf = (off: number, size: number) => {
  const out: number[] = [];
  for (let p = Math.floor(off / PAGE); p <= Math.floor((off + size - 1) / PAGE); p++) out.push(p);
  return out;
};

t('probe: every mode answers; mprotect works on Linux; unavailable modes say why', () => {
  for (const m of B.BASELINE_MODES) {
    const p = probe![m];
    assert.type(p.available, 'boolean', m);
    if (!p.available) {
      assert.ok(p.why && p.why.length > 20, `${m} is unavailable without a reason`);
      console.log(`  ${m}: unavailable here: ${p.why}`);
    }
  }
  assert.ok(probe!.mprotect.available, probe!.mprotect.why);
  // The probe must agree with the kernel's own configuration where it publishes one.
  let cfg = '';
  try {
    cfg = spawnSync('sh', ['-c', 'zcat /proc/config.gz 2>/dev/null'], { encoding: 'utf8', maxBuffer: 1 << 26 }).stdout;
  } catch { /* no config published: nothing to cross-check */ }
  if (cfg.includes('# CONFIG_MEM_SOFT_DIRTY is not set')) {
    assert.not.ok(probe!['soft-dirty'].available);
    assert.match(probe!['soft-dirty'].why!, 'CONFIG_MEM_SOFT_DIRTY');
  }
  if (cfg.includes('CONFIG_MEM_SOFT_DIRTY=y')) assert.ok(probe!['soft-dirty'].available, probe!['soft-dirty'].why);
  if (cfg.includes('# CONFIG_USERFAULTFD is not set')) assert.not.ok(probe!['uffd-wp'].available);
});

for (const mode of B.BASELINE_MODES) {
  const available = !!probe?.[mode].available;
  const tm = skipWhy || !available ? test.skip : test;
  tm(`${mode}: 3 epochs of random accesses over 64 pages harvest exactly the pages written`, () => {
    const PAGES = 64;
    const region = B.HostRegion.create(PAGES, mode);
    try {
      const mem = new Uint8Array(region.buffer);
      assert.is(mem.length, PAGES * PAGE);
      const shadow = new Uint8Array(PAGES * PAGE); // starts zeroed like the region
      const rand = rng(0xba5e + mode.length);
      const batch = new B.HostBatch(64);
      for (let epoch = 0; epoch < 3; epoch++) {
        region.arm();
        const dirty = new Set<number>();
        batch.reset();
        const n = 150 + Math.floor(rand() * 100);
        for (let i = 0; i < n; i++) {
          const size = rand() < 0.5 ? [1, 2, 4, 8, 16, 32, 64][Math.floor(rand() * 7)]! : 1 + Math.floor(rand() * 64);
          // a few accesses straddle a page boundary on purpose
          const off = rand() < 0.1
            ? (1 + Math.floor(rand() * (PAGES - 1))) * PAGE - 1 - Math.floor(rand() * (size - 1))
            : Math.floor(rand() * (PAGES * PAGE - size));
          // Writes cluster in half the pages so that some pages are only ever read.
          const write = rand() < 0.4 && Math.floor(off / PAGE) % 2 === epoch % 2;
          if (!write) {
            batch.push(off, ACC_READ, size);
          } else if (rand() < 0.8) {
            const v = new Uint8Array(size).map(() => 1 + Math.floor(rand() * 255));
            batch.push(off, ACC_WRITE, size, v);
            shadow.set(v, off);
            for (const p of pagesOf(off, size)) dirty.add(p);
          } else {
            batch.push(off, ACC_WRITE, size); // a value-less write: same bytes, still a write
            for (const p of pagesOf(off, size)) dirty.add(p);
          }
          if (batch.count === 40) {
            region.run(batch.records, batch.values, batch.count);
            batch.reset();
          }
        }
        const run = region.run(batch.records, batch.values, batch.count);
        assert.ok(run.ns > 0);
        const h = region.harvest();
        assert.equal(h.pages, [...dirty].sort((a, b) => a - b), `${mode} epoch ${epoch}: harvested pages`);
        assert.ok(dirty.size > 5 && dirty.size < PAGES, `epoch ${epoch} dirtied ${dirty.size} pages: a weak test`);
        assert.equal(Array.from(mem), Array.from(shadow), `${mode} epoch ${epoch}: region bytes`);
      }
    } finally {
      region.close();
    }
  });

  const placements = mode === 'uffd-wp' ? (['same', 'any'] as const) : ([undefined] as const);
  for (const handlerCpu of placements) tm(`${mode}${handlerCpu ? ` (handler thread on ${handlerCpu} CPU)` : ''}: faults count dirty pages (faulting modes) or stay 0 (asynchronous modes); JS writes are tracked; harvest copies`, () => {
    const region = B.HostRegion.create(32, mode, { handlerCpu });
    if (handlerCpu) assert.match(region.how, `handler thread on ${handlerCpu === 'same' ? 'the faulting' : 'any'} CPU`);
    try {
      const faulting = B.FAULTING_MODES.includes(mode);
      const batch = new B.HostBatch();
      const written = [1, 2, 7, 30];
      region.arm();
      for (const p of written) {
        batch.push(p * PAGE + 100, ACC_WRITE, 8, new Uint8Array([p, 2, 3, 4, 5, 6, 7, 8]));
        batch.push(p * PAGE + 200, ACC_WRITE, 8, new Uint8Array([p, 9, 9, 9, 9, 9, 9, 9])); // same page again: no new fault
      }
      batch.push(5 * PAGE, ACC_READ, 64);
      const r = region.run(batch.records, batch.values, batch.count);
      assert.is(r.faults, faulting ? written.length : 0);
      // Where the kernel resolves the fault itself it is still a (minor) fault of this thread.
      if (mode === 'uffd-wp-async') assert.ok(r.minorFaults >= written.length, `minorFaults ${r.minorFaults}`);
      // A store from JavaScript into the buffer goes through the same mechanism.
      new Uint8Array(region.buffer)[20 * PAGE + 5] = 0xee;
      const copy = new Uint8Array(5 * PAGE);
      const h = region.harvest(copy);
      assert.equal(h.pages, [1, 2, 7, 20, 30]);
      h.pages.forEach((p, i) => assert.equal(copy.subarray(i * PAGE, (i + 1) * PAGE), new Uint8Array(region.buffer, p * PAGE, PAGE)));
      assert.is(copy[3 * PAGE + 5], 0xee);
      // A new epoch forgets the old one; nothing written, nothing reported, no faults.
      region.arm();
      batch.reset();
      batch.push(3 * PAGE, ACC_READ, 16);
      assert.is(region.run(batch.records, batch.values, batch.count).faults, 0);
      assert.equal(region.harvest().pages, []);
    } finally {
      region.close();
    }
    assert.is(region.buffer.byteLength, 0, 'close() detaches the buffer');
    assert.throws(() => region.arm(), /closed/);
  });

  if (!skipWhy && !available) {
    test(`${mode}: unavailable here, and creating it says why instead of crashing`, () => {
      assert.throws(() => B.HostRegion.create(8, mode), (e: Error) => e instanceof B.BaselineError && e.message.includes(mode) && e.message.length > 60);
    });
  }
}

t('a bad record is refused before any access, naming the record and its byte offset', () => {
  const region = B.HostRegion.create(4, 'mprotect');
  try {
    region.arm();
    const b = new B.HostBatch();
    b.push(100, ACC_WRITE, 8, new Uint8Array(8).fill(1));
    b.push(4 * PAGE - 4, ACC_WRITE, 8, new Uint8Array(8).fill(2)); // runs past the end
    assert.throws(() => region.run(b.records, b.values, b.count), /record 1 \(byte 16 of the records\): offset 0x3ffc \+ size 8 is past the end/);
    assert.is(new Uint8Array(region.buffer)[100], 0, 'record 0 must not have run');
    assert.equal(region.harvest().pages, []);
    const bad = new Uint8Array(16);
    bad[9] = 0; // size 0
    assert.throws(() => region.run(bad, new Uint8Array(0), 1), /record 0 \(byte 9 of the records\): access size 0 is not 1\.\.64/);
    bad[9] = 4;
    bad[8] = ACC_WRITE | 8; // a value past the value area
    bad[12] = 6;
    assert.throws(() => region.run(bad, new Uint8Array(8), 1), /value bytes 6\.\.10 are past the end of the value area \(8 bytes\)/);
    assert.throws(() => region.run(bad, new Uint8Array(8), 2), /count 2 exceeds the 1 records/);
  } finally {
    region.close();
  }
  assert.throws(() => B.HostRegion.create(4, 'nope' as never), /unknown host baseline mode 'nope'/);
  assert.throws(() => B.HostRegion.create(0, 'mprotect'), /positive whole number of pages/);
});

test('an addon that cannot be loaded is explained: what failed and what to do', () => {
  const missing = join(tmpdir(), 'granule-no-such-dir', 'granule_baselines.node');
  const r = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', `
    const B = await import(${JSON.stringify(join(root, 'src', 'hw', 'baselines.ts'))});
    const p = B.probeBaselines();
    console.log(JSON.stringify(p.mprotect));
    try { B.HostRegion.create(4, 'mprotect'); } catch (e) { console.log(e.message); }`],
  { cwd: root, encoding: 'utf8', env: { ...process.env, GRANULE_BASELINES_ADDON: missing } });
  assert.is(r.status, 0, r.stderr);
  const [json, ...msg] = r.stdout.trim().split('\n');
  assert.is(JSON.parse(json!).available, false);
  const text = msg.join('\n');
  assert.match(text, 'granule_baselines.node) is not available');
  assert.match(text, `what failed: ${missing} does not exist (from $GRANULE_BASELINES_ADDON)`);
  assert.match(text, 'what to do:');
  assert.match(text, 'node scripts/build-native.mjs');
});

test.run();
