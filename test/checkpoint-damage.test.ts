// Damage to a checkpoint directory is always a CheckpointError naming the damaged file: every byte
// of every file is covered by a checksum, and the chain (chain id, epoch, previous-file digest,
// manifest digests) catches whole files that are missing, swapped, renamed or from another run.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { cpSync, mkdtempSync, readFileSync, renameSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CheckpointWriter, type CheckpointMeta } from '../src/checkpoint/writer.ts';
import { CheckpointError, restoreImage, verifyChain } from '../src/checkpoint/restore.ts';
import { crc32 } from '../src/trace/format.ts';
import { encodeManifest, parseManifest, sha256 } from '../src/checkpoint/format.ts';

const tmp = mkdtempSync(join(tmpdir(), 'granule-checkpoint-damage-'));
test.after(() => rmSync(tmp, { recursive: true, force: true }));
let n = 0;

const META: CheckpointMeta = {
  trace: { path: 'traces/x.grt', bytes: 123, sha256: 'cd'.repeat(32) },
  mode: 'ept-wp', layout: 'spread', granularity: 128, epochWrites: 500,
};

/** Base of two frames and three small increments; deterministic contents. */
function make(codec: 'none' | 'deflate'): string {
  const dir = join(tmp, `src${n++}`);
  const w = CheckpointWriter.create(dir, META, { codec, sync: false });
  w.writeBase([{ frame: 0, bytes: new Uint8Array(4096).fill(0x11) }, { frame: 7, bytes: new Uint8Array(4096).map((_, i) => i * 31) }]);
  for (let e = 1; e <= 3; e++) {
    w.writeIncrement(e, [
      { frame: 7, offset: 128 * e, bytes: new Uint8Array(128).map((_, i) => i ^ e) },
      { frame: 9, offset: 4000, bytes: new Uint8Array(96).fill(e) },
      { frame: 0, offset: 0, bytes: Uint8Array.of(e, e, e) },
    ]);
  }
  w.close();
  return dir;
}

const FILES = ['epoch-000000.gck', 'epoch-000001.gck', 'epoch-000002.gck', 'epoch-000003.gck', 'manifest.json'];

function copy(src: string): string {
  const dir = join(tmp, `w${n++}`);
  cpSync(src, dir, { recursive: true });
  return dir;
}

/** Both entry points must fail with a CheckpointError naming `file` and matching `re`. */
function expectNamed(dir: string, file: string, re: RegExp, what: string): void {
  for (const run of [() => verifyChain(dir), () => restoreImage(dir)]) {
    let err: unknown;
    try { run(); } catch (e) { err = e; }
    if (!(err instanceof CheckpointError)) assert.unreachable(`${what}: expected a CheckpointError, got ${err === undefined ? 'success' : String(err)}`);
    const ce = err as CheckpointError;
    if (ce.file !== join(dir, file)) assert.unreachable(`${what}: error names ${ce.file}, not ${file}: ${ce.message}`);
    if (!re.test(ce.message)) assert.unreachable(`${what}: message ${JSON.stringify(ce.message)} does not match ${re}`);
    assert.ok(ce.message.startsWith(join(dir, file)), `${what}: the message starts with the file name`);
  }
}

test('flipping any byte of any file is detected and names that file (uncompressed and deflate)', () => {
  for (const codec of ['none', 'deflate'] as const) {
    const dir = copy(make(codec));
    for (const file of FILES) {
      const path = join(dir, file);
      const good = readFileSync(path);
      // Every byte of the small files; every 13th of a base's frame data plus all its structure.
      const positions = good.length < 2000 ? [...good.keys()] : [...good.keys()].filter((i) => i < 200 || i > good.length - 200 || i % 13 === 0);
      for (const i of positions) {
        for (const mask of [0x01, 0xff]) {
          const bad = Buffer.from(good);
          bad[i]! ^= mask;
          writeFileSync(path, bad);
          expectNamed(dir, file, /^(?!.*passed its checksum).*(checksum mismatch|bad magic|edited|the file is damaged)/, `${codec} ${file} byte ${i} ^ ${mask}`);
        }
      }
      writeFileSync(path, good);
    }
    assert.is(verifyChain(dir).epochs, 4, 'intact again');
  }
});

test('truncation at any length is detected and names the file', () => {
  const dir = copy(make('deflate'));
  for (const file of FILES) {
    const path = join(dir, file);
    const good = readFileSync(path);
    for (const len of new Set([0, 1, 7, 8, 40, 75, 76, 77, 100, good.length >> 1, good.length - 29, good.length - 28, good.length - 1])) {
      if (len >= good.length) continue;
      writeFileSync(path, good.subarray(0, len));
      expectNamed(dir, file, file === 'manifest.json' ? /manifest is empty|does not end with/ : /empty|cut short/, `${file} cut to ${len}`);
    }
    writeFileSync(path, Buffer.concat([good, Buffer.of(0)]));
    expectNamed(dir, file, file === 'manifest.json' ? /does not end with/ : /1 bytes follow the end record/, `${file} with a byte appended`);
    writeFileSync(path, good);
  }
});

test('a missing increment or base is named; earlier epochs still restore', () => {
  const src = make('deflate');
  const dir = copy(src);
  unlinkSync(join(dir, 'epoch-000002.gck'));
  expectNamed(dir, 'epoch-000002.gck', /missing: the manifest lists it as epoch 2 .*the increment chain is broken.*restore an earlier epoch with --epoch 1/, 'missing increment');
  assert.is(restoreImage(dir, 1).epoch, 1);
  assert.throws(() => restoreImage(dir, 2), /epoch-000002\.gck: missing/);

  const noBase = copy(src);
  unlinkSync(join(noBase, 'epoch-000000.gck'));
  expectNamed(noBase, 'epoch-000000.gck', /missing: .*without the base nothing can be restored/, 'missing base');

  const noManifest = copy(src);
  unlinkSync(join(noManifest, 'manifest.json'));
  expectNamed(noManifest, 'manifest.json', /missing, but the directory holds checkpoint files/, 'missing manifest');
});

test('an increment from another checkpoint run with the same epoch number is named', () => {
  const mine = copy(make('deflate'));
  const other = make('deflate'); // same contents, another chain id
  cpSync(join(other, 'epoch-000002.gck'), join(mine, 'epoch-000002.gck'));
  expectNamed(mine, 'epoch-000002.gck', /offset 16: belongs to another checkpoint \(chain id [0-9a-f]{32}; this directory's manifest has [0-9a-f]{32}\)/, 'foreign increment');
  assert.is(restoreImage(mine, 1).epoch, 1);

  const foreignManifest = copy(make('deflate'));
  cpSync(join(other, 'manifest.json'), join(foreignManifest, 'manifest.json'));
  expectNamed(foreignManifest, 'epoch-000000.gck', /belongs to another checkpoint/, 'foreign manifest');
});

test('renamed or reordered increments are named', () => {
  const dir = copy(make('deflate'));
  renameSync(join(dir, 'epoch-000001.gck'), join(dir, 'x'));
  renameSync(join(dir, 'epoch-000002.gck'), join(dir, 'epoch-000001.gck'));
  renameSync(join(dir, 'x'), join(dir, 'epoch-000002.gck'));
  expectNamed(dir, 'epoch-000001.gck', /offset 32: holds epoch 2, but the manifest lists it as epoch 1: files were renamed or reordered/, 'swapped');
  assert.is(restoreImage(dir, 0).epoch, 0);

  const shifted = copy(make('deflate'));
  unlinkSync(join(shifted, 'epoch-000001.gck'));
  renameSync(join(shifted, 'epoch-000002.gck'), join(shifted, 'epoch-000001.gck'));
  expectNamed(shifted, 'epoch-000001.gck', /holds epoch 2/, 'gap closed by renaming');
});

/** Patches bytes of an uncompressed epoch file and makes every CRC in it right again. */
function patchWithValidCrcs(path: string, at: number, value: number): Buffer {
  const b = readFileSync(path);
  b[at] = value;
  // header CRC, then the one block (codec none): payload CRC and header CRC, then nothing else changes
  b.writeUInt32LE(crc32(b.subarray(0, 72)), 72);
  const blockOff = 76;
  const stored = b.readUInt32LE(blockOff + 12);
  b.writeUInt32LE(crc32(b.subarray(blockOff + 24, blockOff + 24 + stored)), blockOff + 16);
  b.writeUInt32LE(crc32(b.subarray(blockOff, blockOff + 20)), blockOff + 20);
  writeFileSync(path, b);
  return b;
}

test('a file with valid checksums but other contents than the manifest records is named; so is a broken link', () => {
  const src = make('none');
  const dir = copy(src);
  const last = readFileSync(join(dir, 'epoch-000001.gck')).length - 28 - 1;
  patchWithValidCrcs(join(dir, 'epoch-000001.gck'), last - 10, 0x77);
  expectNamed(dir, 'epoch-000001.gck', /is a complete checkpoint file of this run, but not the one the manifest lists as epoch 1/, 'edited increment');

  // The same edit with the manifest updated to match (as a careless repair would): epoch 2's link breaks.
  const linked = copy(src);
  const patched = patchWithValidCrcs(join(linked, 'epoch-000001.gck'), last - 10, 0x77);
  const mPath = join(linked, 'manifest.json');
  const m = parseManifest(mPath, readFileSync(mPath));
  m.epochs[1]!.sha256 = sha256(patched).toString('hex');
  writeFileSync(mPath, encodeManifest(m));
  expectNamed(linked, 'epoch-000002.gck', /offset 40: does not follow this directory's epoch 1 \(its previous-file digest [0-9a-f]{16}\.\.\. is not the SHA-256 of epoch-000001\.gck/, 'broken link');
});

test('a newer format version says to upgrade, naming the file', () => {
  const src = make('deflate');
  const dir = copy(src);
  const path = join(dir, 'epoch-000003.gck');
  const b = readFileSync(path);
  b.writeUInt16LE(2, 8);
  b.writeUInt32LE(crc32(b.subarray(0, 72)), 72);
  writeFileSync(path, b);
  expectNamed(dir, 'epoch-000003.gck', /offset 8: written by a newer granule \(checkpoint format version 2\.0; this granule reads version 1\)\. upgrade granule/, 'new data file');

  const mdir = copy(src);
  const mPath = join(mdir, 'manifest.json');
  const m = parseManifest(mPath, readFileSync(mPath));
  writeFileSync(mPath, encodeManifest({ ...m, version: '2.0' }));
  expectNamed(mdir, 'manifest.json', /written by a newer granule \(checkpoint format version 2\.0; this granule reads version 1\)\. upgrade granule/, 'new manifest');

  const old = copy(src);
  const op = join(old, 'epoch-000000.gck');
  const ob = readFileSync(op);
  ob.writeUInt16LE(0, 8);
  ob.writeUInt32LE(crc32(ob.subarray(0, 72)), 72);
  writeFileSync(op, ob);
  expectNamed(old, 'epoch-000000.gck', /unknown checkpoint format version 0\.0/, 'version 0');
});

test('not a checkpoint file at all', () => {
  const dir = copy(make('deflate'));
  writeFileSync(join(dir, 'epoch-000001.gck'), '#!/bin/sh\necho hello\n');
  expectNamed(dir, 'epoch-000001.gck', /offset 0: bad magic: this is not a granule checkpoint file \(starts with 23 21 2f 62 69 6e 2f 73\)/, 'text file');
});

test.run();
