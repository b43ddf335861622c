// The checkpoint writer and restore as the epoch loop uses them: every epoch restores byte for byte
// against a model image, files appear only complete, a crash at the worst moment leaves the last
// complete epoch restorable, and an existing directory is never touched.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CheckpointWriter, _testHooks, type CheckpointMeta, type Unit } from '../src/checkpoint/writer.ts';
import { CheckpointError, readManifest, restoreImage, verifyChain } from '../src/checkpoint/restore.ts';
import { rng, type SeededRandom } from './support/rng.ts';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const tmp = mkdtempSync(join(tmpdir(), 'granule-checkpoint-'));
test.after(() => rmSync(tmp, { recursive: true, force: true }));
let n = 0;
const fresh = () => join(tmp, `c${n++}`);

const META: CheckpointMeta = {
  trace: { path: 'traces/x.grt', bytes: 123, sha256: 'ab'.repeat(32) },
  mode: 'gpt-wp', layout: 'spread', granularity: 64, epochWrites: 1000,
};
// Tests that are not about durability skip fsync to stay fast.
const FAST = { sync: false } as const;

type Image = Map<number, Uint8Array>;
const copyImage = (img: Image): Image => new Map([...img].map(([f, b]) => [f, b.slice()]));

/** Units of one epoch: mixed sizes, repeats and overlaps within a frame, and some frames new since the base. */
function randomUnits(r: SeededRandom, frames: number, count: number): Unit[] {
  const units: Unit[] = [];
  for (let i = 0; i < count; i++) {
    const frame = r() < 0.1 ? frames + ((r() * 8) | 0) : (r() * frames) | 0;
    const size = [1, 8, 64, 64, 128, 4096, 100][(r() * 7) | 0]!;
    const offset = size === 4096 ? 0 : Math.min(4096 - size, (r() * 4096) | 0);
    units.push({ frame, offset, bytes: r.bytes(size) });
    if (r() < 0.2) units.push({ frame, offset: Math.max(0, offset - 3), bytes: r.bytes(Math.min(size, 4096 - Math.max(0, offset - 3))) });
  }
  return units;
}

function apply(img: Image, units: Iterable<Unit>): void {
  for (const u of units) {
    let f = img.get(u.frame);
    if (!f) img.set(u.frame, (f = new Uint8Array(4096)));
    f.set(u.bytes, u.offset);
  }
}

function assertImage(got: Image, want: Image, what: string): void {
  assert.equal([...got.keys()].sort((a, b) => a - b), [...want.keys()].sort((a, b) => a - b), `${what}: frame set`);
  for (const [f, b] of want) {
    if (!Buffer.from(got.get(f)!).equals(Buffer.from(b))) assert.unreachable(`${what}: frame ${f} differs`);
  }
}

/** Writes a checkpoint of `epochs` random increments over a `frames`-frame base; returns the image after each epoch. */
function writeRandom(dir: string, seed: number, frames: number, epochs: number, unitsPerEpoch: number, opts: object = FAST): Image[] {
  const r = rng(seed);
  const img: Image = new Map();
  for (let f = 0; f < frames; f++) img.set(f * 3, r.bytes(4096)); // sparse frame numbers
  const w = CheckpointWriter.create(dir, META, opts);
  w.writeBase([...img].map(([frame, bytes]) => ({ frame, bytes })));
  const images = [copyImage(img)];
  for (let e = 1; e <= epochs; e++) {
    const units = randomUnits(r, frames * 3, unitsPerEpoch);
    const s = w.writeIncrement(e, units);
    assert.is(s.units, units.length);
    assert.is(s.dataBytes, units.reduce((t, u) => t + u.bytes.length, 0));
    apply(img, units);
    images.push(copyImage(img));
  }
  w.close();
  return images;
}

test('every epoch restores byte for byte (overlaps, repeats, frames new since the base), with and without compression', () => {
  for (const codec of ['deflate', 'none'] as const) {
    const dir = fresh();
    const images = writeRandom(dir, 7, 20, 6, 60, { ...FAST, codec });
    for (let e = 0; e < images.length; e++) {
      const r = restoreImage(dir, e);
      assert.is(r.epoch, e);
      assertImage(r.frames, images[e]!, `${codec} epoch ${e}`);
      assert.equal(r.filesRead, [join(dir, 'manifest.json'), ...Array.from({ length: e + 1 }, (_, i) => join(dir, `epoch-${String(i).padStart(6, '0')}.gck`))]);
    }
    const latest = restoreImage(dir);
    assert.is(latest.epoch, 6);
    assertImage(latest.frames, images[6]!, `${codec} latest`);
    assert.equal({ ...latest.meta, created: undefined }, { ...META, created: undefined });
    assert.type(latest.meta.created, 'string');
  }
});

test('increments larger than a block, empty increments and a base-only checkpoint restore exactly', () => {
  const dir = fresh();
  const r = rng(3);
  const base = new Map<number, Uint8Array>();
  for (let f = 0; f < 300; f++) base.set(f, f % 2 ? r.bytes(4096) : new Uint8Array(4096).fill(f & 0xff));
  const w = CheckpointWriter.create(dir, META, FAST);
  const b = w.writeBase([...base].map(([frame, bytes]) => ({ frame, bytes })));
  assert.is(b.dataBytes, 300 * 4096);
  // 20 000 64-byte units in random order: several 1 MiB blocks of unit records
  const units: Unit[] = [];
  for (let i = 0; i < 20000; i++) units.push({ frame: (r() * 400) | 0, offset: ((r() * 64) | 0) * 64, bytes: r.bytes(64) });
  w.writeIncrement(1, units);
  const empty = w.writeIncrement(2, []);
  assert.is(empty.units, 0);
  w.close();
  const img = copyImage(base);
  apply(img, units);
  assertImage(restoreImage(dir, 0).frames, base, 'base');
  assertImage(restoreImage(dir, 1).frames, img, 'epoch 1');
  assertImage(restoreImage(dir, 2).frames, img, 'epoch 2 (empty)');
  const manifest = readManifest(dir);
  assert.ok(manifest.epochs[1]!.bytes > 1 << 20);

  const only = fresh();
  const w2 = CheckpointWriter.create(only, META, FAST);
  w2.writeBase([{ frame: 5, bytes: base.get(1)! }]);
  assert.equal(w2.close(), { dir: only, epochs: 1, latest: 0, bytes: readManifest(only).epochs[0]!.bytes });
  assertImage(restoreImage(only).frames, new Map([[5, base.get(1)!]]), 'base only');
});

test('units are copied when written: the caller may reuse its buffers', () => {
  const dir = fresh();
  const w = CheckpointWriter.create(dir, META, FAST);
  const buf = new Uint8Array(4096).fill(1);
  w.writeBase([{ frame: 0, bytes: buf }]);
  buf.fill(9);
  const u = new Uint8Array(16).fill(2);
  w.writeIncrement(1, [{ frame: 0, offset: 0, bytes: u }]);
  u.fill(7);
  w.close();
  const f = restoreImage(dir).frames.get(0)!;
  assert.equal([f[0], f[15], f[16], f[4095]], [2, 2, 1, 1]);
});

test('only complete files under final names; the manifest lists each with its size and sha-256 after every epoch', () => {
  const dir = fresh();
  const w = CheckpointWriter.create(dir, META); // durable mode: fsync and rename as in real runs
  assert.equal(readdirSync(dir), ['manifest.json']);
  assert.equal(readManifest(dir).epochs, []);
  w.writeBase([{ frame: 1, bytes: new Uint8Array(4096).fill(3) }]);
  for (let e = 1; e <= 3; e++) {
    w.writeIncrement(e, [{ frame: e, offset: 64 * e, bytes: new Uint8Array(64).fill(e) }]);
    const names = readdirSync(dir).sort();
    assert.equal(names, [...Array.from({ length: e + 1 }, (_, i) => `epoch-00000${i}.gck`), 'manifest.json']);
    const m = readManifest(dir);
    assert.is(m.closed, false);
    assert.is(m.epochs.length, e + 1);
    for (const entry of m.epochs) {
      const bytes = readFileSync(join(dir, entry.file));
      assert.is(entry.bytes, bytes.length);
      assert.is(entry.sha256, createHash('sha256').update(bytes).digest('hex'));
    }
  }
  const sum = w.close();
  assert.is(sum.epochs, 4);
  assert.is(readManifest(dir).closed, true);
  assert.equal(verifyChain(dir), { epochs: 4, latest: 3, bytes: sum.bytes, closed: true, notes: [] });
  assert.throws(() => w.writeIncrement(4, []), /the checkpoint writer is closed/);
});

test('a non-empty directory or a file is refused, naming it, and left untouched; a missing one is created', () => {
  const dir = fresh();
  mkdirSync(dir);
  writeFileSync(join(dir, 'keep.txt'), 'mine');
  const before = statSync(join(dir, 'keep.txt')).mtimeMs;
  assert.throws(() => CheckpointWriter.create(dir, META), (e: unknown) =>
    e instanceof CheckpointError && e.file === dir && /not empty \(1 entry: keep\.txt\); nothing was changed\. give a new or empty directory/.test(e.message));
  assert.equal(readdirSync(dir), ['keep.txt']);
  assert.is(readFileSync(join(dir, 'keep.txt'), 'utf8'), 'mine');
  assert.is(statSync(join(dir, 'keep.txt')).mtimeMs, before);

  // an existing checkpoint is never overwritten
  const done = fresh();
  writeRandom(done, 1, 2, 1, 3);
  const snapshot = readdirSync(done).map((f) => readFileSync(join(done, f)).toString('hex'));
  assert.throws(() => CheckpointWriter.create(done, META), /is not empty/);
  assert.equal(readdirSync(done).map((f) => readFileSync(join(done, f)).toString('hex')), snapshot);

  const file = join(tmp, `file${n++}`);
  writeFileSync(file, 'x');
  assert.throws(() => CheckpointWriter.create(file, META), (e: unknown) => e instanceof CheckpointError && e.file === file && /not a directory/.test(e.message));

  const empty = fresh();
  mkdirSync(empty);
  CheckpointWriter.create(empty, META, FAST).close();
  const nested = join(fresh(), 'a', 'b');
  CheckpointWriter.create(nested, META, FAST).close();
  assert.equal(readdirSync(nested), ['manifest.json']);
});

test('bad arguments are errors naming the epoch and unit; the writer stays usable and leaves no temp file', () => {
  const dir = fresh();
  assert.throws(() => CheckpointWriter.create(dir, { ...META, mode: '' }), /meta\.mode must be a non-empty string/);
  assert.throws(() => CheckpointWriter.create(dir, { ...META, trace: { path: 'x', bytes: 1, sha256: 'nothex' } }), /meta\.trace\.sha256/);
  const w = CheckpointWriter.create(dir, META, FAST);
  assert.throws(() => w.writeIncrement(1, []), /write the base \(writeBase\) before epoch 1/);
  assert.throws(() => w.writeBase([{ frame: 0, bytes: new Uint8Array(100) }]), /base, frame 1 \(number 0\): bytes must be a Uint8Array of 4096 bytes, got 100 bytes/);
  w.writeBase([{ frame: 0, bytes: new Uint8Array(4096) }]);
  assert.throws(() => w.writeBase([]), /the base \(epoch 0\) is written already/);
  assert.throws(() => w.writeIncrement(2, []), /epoch must be 1 \(the one after the latest, 0\), got 2/);
  const ok = { frame: 0, offset: 0, bytes: new Uint8Array(8) };
  assert.throws(() => w.writeIncrement(1, [ok, { frame: 0, offset: 4090, bytes: new Uint8Array(8) }]), /epoch 1, unit 2 \(frame 0\): offset must be an integer with offset \+ length <= 4096, got 4090 \+ 8/);
  assert.throws(() => w.writeIncrement(1, [{ frame: -1, offset: 0, bytes: new Uint8Array(8) }]), /unit 1: frame must be an integer/);
  assert.throws(() => w.writeIncrement(1, [{ frame: 1, offset: 0, bytes: new Uint8Array(0) }]), /bytes is empty/);
  const failing = function* () { yield ok; throw new Error('simulator failed'); };
  assert.throws(() => w.writeIncrement(1, failing()), /simulator failed/);
  assert.equal(readdirSync(dir).sort(), ['epoch-000000.gck', 'manifest.json']);
  w.writeIncrement(1, [{ frame: 0, offset: 8, bytes: Uint8Array.of(42) }]);
  w.close();
  assert.is(restoreImage(dir).frames.get(0)![8], 42);
});

test('restore: epoch beyond the latest names the latest; missing directory, manifest or base are clear errors', () => {
  const dir = fresh();
  writeRandom(dir, 2, 3, 2, 5);
  assert.throws(() => restoreImage(dir, 3), (e: unknown) =>
    e instanceof CheckpointError && e.file === join(dir, 'manifest.json') && /epoch 3 is not in this checkpoint: the latest complete epoch is 2\. give an epoch from 0 to 2/.test(e.message));
  assert.throws(() => restoreImage(dir, -1), RangeError);
  const missing = fresh();
  assert.throws(() => restoreImage(missing), (e: unknown) => e instanceof CheckpointError && e.file === missing && /no such checkpoint directory/.test(e.message));
  const emptyDir = fresh();
  mkdirSync(emptyDir);
  assert.throws(() => verifyChain(emptyDir), (e: unknown) => e instanceof CheckpointError && e.file === join(emptyDir, 'manifest.json') && /not a granule checkpoint directory/.test(e.message));
  const noBase = fresh();
  CheckpointWriter.create(noBase, META, FAST).close();
  assert.throws(() => restoreImage(noBase), /has no complete epoch: the writer stopped before the base image was written/);
  assert.throws(() => verifyChain(noBase), /has no complete epoch/);
});

/** The fenced block after "<!-- worked-example -->" in the docs, as bytes. */
function docExample(): Buffer {
  const doc = readFileSync(join(root, 'docs', 'checkpoint-format.md'), 'utf8');
  const m = doc.match(/<!-- worked-example -->\s*```[a-z]*\n([\s\S]*?)```/);
  if (!m) throw new Error('docs/checkpoint-format.md has no worked example block');
  const hex: string[] = [];
  for (const line of m[1]!.split('\n')) {
    const body = line.match(/^[0-9a-f]{4}  ((?:[0-9a-f]{2} ?)+)/);
    if (body) hex.push(...body[1]!.trim().split(/\s+/));
  }
  return Buffer.from(hex.join(''), 'hex');
}

test('the worked example in docs/checkpoint-format.md is byte for byte what the writer produces', () => {
  const dir = fresh();
  _testHooks.chainId = Uint8Array.from({ length: 16 }, (_, i) => i * 0x11);
  let w: CheckpointWriter;
  try {
    w = CheckpointWriter.create(dir, { ...META, created: '2025-01-01T00:00:00.000Z' }, { codec: 'none', sync: false });
  } finally {
    delete _testHooks.chainId;
  }
  w.writeBase([{ frame: 2, bytes: new Uint8Array(4096) }]);
  w.writeIncrement(1, [{ frame: 2, offset: 0x40, bytes: Uint8Array.of(0xde, 0xad, 0xbe, 0xef, 1, 2, 3, 4) }, { frame: 300, offset: 4000, bytes: Uint8Array.of(0xaa, 0xaa, 0xaa) }]);
  w.close();
  assert.is(readFileSync(join(dir, 'epoch-000001.gck')).toString('hex'), docExample().toString('hex'));
  const img = restoreImage(dir).frames;
  assert.equal([...img.get(2)!.subarray(0x3f, 0x49)], [0, 0xde, 0xad, 0xbe, 0xef, 1, 2, 3, 4, 0]);
  assert.equal([...img.get(300)!.subarray(3999, 4003)], [0, 0xaa, 0xaa, 0xaa]);
});

// ---- crashes: a child process kills itself with SIGKILL (no exit hooks run) at the worst moments ----

function crashRun(dir: string, killAt: 'epoch' | 'manifest', killEpoch: number): void {
  const script = join(tmp, `child${n++}.ts`);
  writeFileSync(script, `
    import { CheckpointWriter, _testHooks } from ${JSON.stringify(join(root, 'src/checkpoint/writer.ts'))};
    const w = CheckpointWriter.create(${JSON.stringify(dir)}, ${JSON.stringify(META)});
    let epoch = 0;
    _testHooks.beforeRename = (what) => { if (what === ${JSON.stringify(killAt)} && epoch === ${killEpoch}) process.kill(process.pid, 'SIGKILL'); };
    w.writeBase([{ frame: 0, bytes: new Uint8Array(4096).fill(1) }, { frame: 1, bytes: new Uint8Array(4096).fill(2) }]);
    for (epoch = 1; epoch <= 5; epoch++) w.writeIncrement(epoch, [{ frame: epoch % 3, offset: epoch * 64, bytes: new Uint8Array(64).fill(epoch + 10) }]);
    w.close();
  `);
  const r = spawnSync(process.execPath, ['--import', 'tsx', script], { cwd: root, encoding: 'utf8' });
  assert.is(r.signal, 'SIGKILL', r.stderr);
}

function expectedAfter(epoch: number): Image {
  const img: Image = new Map([[0, new Uint8Array(4096).fill(1)], [1, new Uint8Array(4096).fill(2)]]);
  for (let e = 1; e <= epoch; e++) apply(img, [{ frame: e % 3, offset: e * 64, bytes: new Uint8Array(64).fill(e + 10) }]);
  return img;
}

test('killed between an increment and the manifest: the orphan is ignored and the last complete epoch restores', () => {
  const dir = fresh();
  crashRun(dir, 'manifest', 3);
  assert.equal(readdirSync(dir).filter((f) => !f.endsWith('.tmp')).sort(), ['epoch-000000.gck', 'epoch-000001.gck', 'epoch-000002.gck', 'epoch-000003.gck', 'manifest.json']);
  const r = restoreImage(dir);
  assert.is(r.epoch, 2);
  assertImage(r.frames, expectedAfter(2), 'after crash');
  assert.throws(() => restoreImage(dir, 3), /the latest complete epoch is 2 \(the run stopped before closing the checkpoint\)/);
  const v = verifyChain(dir);
  assert.equal([v.epochs, v.closed], [3, false]);
  assert.ok(v.notes.some((s) => s.startsWith(join(dir, 'epoch-000003.gck')) && /not listed in the manifest.*ignored/.test(s)), v.notes.join('\n'));
  assert.ok(v.notes.some((s) => /stopped before closing the checkpoint; epochs 0..2 are complete/.test(s)));
  assert.ok(v.notes.some((s) => /temp file of a writer that was killed/.test(s)), 'the manifest temp file is left by SIGKILL and reported');
});

test('killed with an increment complete but not yet renamed: the temp file is ignored and noted', () => {
  const dir = fresh();
  crashRun(dir, 'epoch', 4);
  const names = readdirSync(dir).sort();
  assert.equal(names.filter((f) => !f.startsWith('.')), ['epoch-000000.gck', 'epoch-000001.gck', 'epoch-000002.gck', 'epoch-000003.gck', 'manifest.json']);
  assert.ok(names.some((f) => /^\.epoch-000004\.gck\.\d+-[0-9a-f]+\.tmp$/.test(f)), names.join(' '));
  assertImage(restoreImage(dir).frames, expectedAfter(3), 'after crash');
  assert.ok(verifyChain(dir).notes.some((s) => /\.epoch-000004\.gck\..*\.tmp: temp file of a writer that was killed/.test(s)));
});

test('a process that exits in the middle of an epoch leaves no temp file', () => {
  const dir = fresh();
  const script = join(tmp, `child${n++}.ts`);
  writeFileSync(script, `
    import { CheckpointWriter } from ${JSON.stringify(join(root, 'src/checkpoint/writer.ts'))};
    const w = CheckpointWriter.create(${JSON.stringify(dir)}, ${JSON.stringify(META)});
    w.writeBase([{ frame: 0, bytes: new Uint8Array(4096) }]);
    w.writeIncrement(1, (function* () { yield { frame: 0, offset: 0, bytes: new Uint8Array(8) }; process.exit(130); })());
  `);
  const r = spawnSync(process.execPath, ['--import', 'tsx', script], { cwd: root, encoding: 'utf8' });
  assert.is(r.status, 130, r.stderr);
  assert.equal(readdirSync(dir).sort(), ['epoch-000000.gck', 'manifest.json']);
  assert.is(restoreImage(dir).epoch, 0);
});

test.run();
