// Builds the KVM guest: build/hw/guest.bin (a flat image, loaded at GPA 0x10000 and linked to run at
// GVA 0xffffffff80010000, the upper half; docs/guest.md)
// from hw/guest/kernel.S, player.c and guest.ld, and build/hw/guest-harness, the standalone KVM
// test of it (hw/guest/harness.c). Outputs are rebuilt only when a source is newer, and written
// to a temporary name beside the target and renamed, so a failed build leaves nothing half-written.
//   node --import tsx scripts/build-guest.ts [--force]
// Exit status: 0 built (or up to date), 1 a build step failed, 2 a tool is missing. The last line
// of the output always says what happened (scripts/build-native.mjs shows only that line).
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, renameSync, rmSync, statSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { findProgram } from '../src/record/toolchain.ts';

const root = dirname(dirname(fileURLToPath(import.meta.url)));

/** Where the two outputs go. */
export const GUEST_IMAGE = join(root, 'build', 'hw', 'guest.bin');
export const GUEST_HARNESS = join(root, 'build', 'hw', 'guest-harness');

/** Largest image that fits its area (GG_IMAGE_MAX in hw/include/granule_guest.h). */
const IMAGE_MAX = 0x20000;
/** "granuleG" at image byte offset 8 (GG_MAGIC). */
const MAGIC = 0x47656c756e617267n;

/** A tool the build needs is not installed; the message names it and how to get it. */
export class GuestToolError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'GuestToolError';
  }
}

/** A build step ran and failed; the message carries the tool's own output (file:line). */
export class GuestBuildError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'GuestBuildError';
  }
}

const TOOLS = {
  gcc: 'apt-get install -y gcc',
  as: 'apt-get install -y binutils',
  ld: 'apt-get install -y binutils',
  objcopy: 'apt-get install -y binutils',
} as const;
type Tool = keyof typeof TOOLS;

// Freestanding and position-dependent: the image runs at fixed addresses with no libc, no SSE
// state (the guest never enables or saves it), and nothing below RSP that an exception frame could
// clobber. CET and stack-protector code would need runtime support the guest does not have.
// -mcmodel=kernel: the image is linked in the top 2 GiB (GG_KBASE), where addresses are
// sign-extended 32-bit values, as in the Linux kernel.
const GUEST_CFLAGS = [
  '-O2', '-ffreestanding', '-nostdlib', '-mno-red-zone', '-mgeneral-regs-only', '-mcmodel=kernel', '-fno-pic', '-fno-pie', '-static',
  '-fno-stack-protector', '-fno-asynchronous-unwind-tables', '-fcf-protection=none', '-fno-builtin',
  '-Wall', '-Wextra', '-Werror',
];

const show = (p: string) => {
  const rel = relative(root, p);
  return rel && !rel.startsWith('..') ? rel : p;
};

function tool(name: Tool, output: string): string {
  const path = findProgram(name);
  if (!path) throw new GuestToolError(`cannot build ${show(output)}: \`${name}\` not found on PATH (${TOOLS[name]})`);
  return path;
}

function run(path: string, args: string[], what: string): void {
  const r = spawnSync(path, args, { encoding: 'utf8', cwd: root, maxBuffer: 16 << 20 });
  if (r.error) throw new GuestBuildError(`${what}: cannot run ${path}: ${r.error.message}`);
  if (r.status !== 0) {
    const out = `${r.stdout ?? ''}${r.stderr ?? ''}`.trim();
    let advice = '';
    if (/linux\/kvm\.h/.test(out)) advice = '\nThe Linux UAPI headers are missing: apt-get install -y linux-libc-dev';
    throw new GuestBuildError(`${what} failed (${show(path)} exited with ${r.status ?? r.signal})${out ? `:\n${out}` : ''}${advice}`);
  }
}

function mtime(p: string): number {
  try {
    return statSync(p).mtimeMs;
  } catch {
    return -1;
  }
}

function sources(): string[] {
  const dir = join(root, 'hw', 'guest');
  const inc = join(root, 'hw', 'include');
  return [
    ...readdirSync(dir).filter((f) => /\.(S|c|ld)$/.test(f)).map((f) => join(dir, f)),
    ...readdirSync(inc).filter((f) => f.endsWith('.h')).map((f) => join(inc, f)),
    fileURLToPath(import.meta.url),
  ];
}

/** Checks what objcopy produced before it may replace guest.bin: size and header. */
function checkImage(path: string): void {
  const bin = readFileSync(path);
  if (bin.length > IMAGE_MAX) throw new GuestBuildError(`${show(GUEST_IMAGE)}: ${bin.length} bytes, more than the ${IMAGE_MAX}-byte image area (hw/guest/guest.ld places too much)`);
  if (bin.length < 24 || bin.readBigUInt64LE(8) !== MAGIC) throw new GuestBuildError(`${show(GUEST_IMAGE)}: no granule magic at byte offset 8; hw/guest/kernel.S must start the image`);
}

/** Moves tmp to out, or removes it when the step throws. */
function publish(tmp: string, out: string, step: () => void): void {
  try {
    step();
    renameSync(tmp, out);
  } finally {
    rmSync(tmp, { force: true });
  }
}

export interface GuestBuild {
  image: string;
  harness: string;
  /** false when both outputs were already newer than every source */
  rebuilt: boolean;
}

/** Builds build/hw/guest.bin and build/hw/guest-harness; throws GuestToolError or GuestBuildError. */
export function buildGuest(opts: { force?: boolean } = {}): GuestBuild {
  const srcs = sources();
  const newest = Math.max(...srcs.map(mtime));
  const fresh = (out: string) => !opts.force && mtime(out) >= newest;
  if (fresh(GUEST_IMAGE) && fresh(GUEST_HARNESS)) return { image: GUEST_IMAGE, harness: GUEST_HARNESS, rebuilt: false };

  const gcc = tool('gcc', GUEST_IMAGE);
  tool('as', GUEST_IMAGE); // gcc runs it for kernel.S and player.c
  const ld = tool('ld', GUEST_IMAGE);
  const objcopy = tool('objcopy', GUEST_IMAGE);
  const out = dirname(GUEST_IMAGE);
  mkdirSync(out, { recursive: true });
  const work = mkdtempSync(join(out, '.guest-build-'));
  const g = (f: string) => join(root, 'hw', 'guest', f);
  const inc = `-I${join(root, 'hw', 'include')}`;
  try {
    const kernel = join(work, 'kernel.o');
    const player = join(work, 'player.o');
    const elf = join(work, 'guest.elf');
    run(gcc, [...GUEST_CFLAGS, inc, '-c', g('kernel.S'), '-o', kernel], 'assembling hw/guest/kernel.S');
    run(gcc, [...GUEST_CFLAGS, inc, '-c', g('player.c'), '-o', player], 'compiling hw/guest/player.c');
    run(ld, ['-nostdlib', '-static', '--no-dynamic-linker', '-z', 'noexecstack', '-T', g('guest.ld'), '-o', elf, kernel, player], 'linking with hw/guest/guest.ld');
    const tmpImage = join(out, `.guest.bin.${process.pid}.tmp`);
    publish(tmpImage, GUEST_IMAGE, () => {
      run(objcopy, ['-O', 'binary', elf, tmpImage], 'extracting the flat image');
      checkImage(tmpImage);
    });
    const tmpHarness = join(out, `.guest-harness.${process.pid}.tmp`);
    publish(tmpHarness, GUEST_HARNESS, () =>
      run(gcc, ['-O2', '-Wall', '-Wextra', inc, g('harness.c'), '-o', tmpHarness], 'compiling hw/guest/harness.c'),
    );
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
  return { image: GUEST_IMAGE, harness: GUEST_HARNESS, rebuilt: true };
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  try {
    const r = buildGuest({ force: process.argv.includes('--force') });
    console.log(`build-guest: ${r.rebuilt ? 'built' : 'up to date:'} ${show(r.image)} and ${show(r.harness)}`);
  } catch (e) {
    if (e instanceof GuestBuildError) {
      const [first, ...rest] = e.message.split('\n');
      if (rest.length) console.error(rest.join('\n'));
      console.error(`build-guest: ${rest.length ? `${first.replace(/:$/, '')}; its output above says where` : first}`);
      process.exit(1);
    }
    if (e instanceof GuestToolError) {
      console.error(`build-guest: ${e.message}`);
      process.exit(2);
    }
    throw e;
  }
}
