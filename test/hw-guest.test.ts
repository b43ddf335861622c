// The KVM guest (hw/guest/): scripts/build-guest.ts builds the flat image and the C harness, the
// harness boots the image on /dev/kvm and checks batches, the in-guest write-protect monitor, the
// ring-full and fault exits (it exits 0 only when every check passes), and prints timings that must
// all be positive numbers. Skips, saying why, only without /dev/kvm or the build tools.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawnSync } from 'node:child_process';
import { accessSync, constants, mkdtempSync, readFileSync, rmSync, statSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { GUEST_HARNESS, GUEST_IMAGE, GuestToolError, buildGuest } from '../scripts/build-guest.ts';
import { findProgram } from '../src/record/toolchain.ts';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const header = readFileSync(join(root, 'hw', 'include', 'granule_guest.h'), 'utf8');
const define = (name: string) => Number((header.match(new RegExp(`#define ${name} (\\w+)`)) ?? [])[1]);

function whyNot(): string | undefined {
  if (process.platform !== 'linux') return `KVM is Linux-only (this is ${process.platform})`;
  try {
    accessSync('/dev/kvm', constants.R_OK | constants.W_OK);
  } catch (e) {
    return `/dev/kvm is not usable (${(e as Error).message})`;
  }
  if (!findProgram('gcc')) return 'gcc is not on PATH';
  try {
    buildGuest();
  } catch (e) {
    if (e instanceof GuestToolError) return e.message;
    throw e;
  }
  return undefined;
}

const skipWhy = whyNot();
if (skipWhy) console.log(`hw-guest.test.ts: skipping the guest tests: ${skipWhy}`);
const kvmTest = skipWhy ? test.skip : test;

kvmTest('guest.bin fits its area and carries the magic and the header\'s ABI version', () => {
  const bin = readFileSync(GUEST_IMAGE);
  assert.ok(bin.length > define('GG_PLAYER_GPA') - define('GG_IMAGE_GPA'), 'the player part is present');
  assert.ok(bin.length <= define('GG_IMAGE_MAX'), `${bin.length} bytes fit GG_IMAGE_MAX`);
  assert.is(bin.readBigUInt64LE(8), BigInt(header.match(/#define GG_MAGIC (0x[0-9a-f]+)/)![1]));
  assert.is(bin.readUInt32LE(16), define('GG_ABI_VERSION'));
  assert.is(bin.readUInt32LE(20), define('GG_PLAYER_GPA') - define('GG_IMAGE_GPA'));
});

kvmTest('the harness passes every check and reports positive timings', () => {
  const r = spawnSync(GUEST_HARNESS, [GUEST_IMAGE], { encoding: 'utf8', timeout: 120_000 });
  const out = `${r.stdout ?? ''}${r.stderr ?? ''}`;
  assert.is(r.status, 0, `guest-harness exited with ${r.status ?? r.signal}:\n${out}`);
  assert.not.match(out, /^FAIL /m);
  const checks = out.split('\n').filter((l) => l.startsWith('ok ')).length;
  assert.ok(checks >= 30, `${checks} checks ran`);
  const figures = new Map<string, number>();
  for (const m of out.matchAll(/^figure (\w+) (\S+) /gm)) figures.set(m[1], Number(m[2]));
  for (const name of ['boot_us', 'load_ns', 'store_ns', 'exit_ns', 'sync_ns', 'sync_pte_ns', 'pf_ns']) {
    const v = figures.get(name);
    assert.ok(v !== undefined && Number.isFinite(v) && v > 0, `figure ${name} = ${v}`);
  }
  console.log(`  guest figures: ${[...figures].map(([k, v]) => `${k}=${v}`).join(' ')}`);
});

kvmTest('the harness refuses an image that is not a guest, naming the file', () => {
  const dir = mkdtempSync(join(tmpdir(), 'granule-guest-'));
  try {
    const bogus = join(dir, 'bogus.bin');
    symlinkSync(join(root, 'package.json'), bogus);
    const r = spawnSync(GUEST_HARNESS, [bogus], { encoding: 'utf8', timeout: 30_000 });
    assert.is(r.status, 2);
    assert.match(r.stderr, `${bogus}: not a granule guest image`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

kvmTest('build-guest names a missing tool, exits 2 and leaves the built image alone', () => {
  const dir = mkdtempSync(join(tmpdir(), 'granule-guest-path-'));
  try {
    // Everything the build needs but objcopy.
    for (const t of ['gcc', 'as', 'ld']) symlinkSync(findProgram(t)!, join(dir, t));
    const before = statSync(GUEST_IMAGE).mtimeMs;
    const r = spawnSync(process.execPath, ['--import', 'tsx', join(root, 'scripts', 'build-guest.ts'), '--force'], {
      encoding: 'utf8',
      cwd: root,
      env: { ...process.env, PATH: dir },
    });
    assert.is(r.status, 2, `${r.stdout}${r.stderr}`);
    const last = r.stderr.trim().split('\n').pop()!;
    assert.match(last, /build-guest: cannot build build\/hw\/guest\.bin: `objcopy` not found on PATH \(apt-get install -y binutils\)/);
    assert.is(statSync(GUEST_IMAGE).mtimeMs, before);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test.run();
