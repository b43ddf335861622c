// The built `granule` command as a user runs it: bin/granule.js -> dist/cli.js, as a child
// process. Its JSON must agree with sim.inspect on the same space; user errors must give a clear
// message and the documented exit code (2 usage, 1 input) without a stack trace.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync, mkdirSync, copyFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { demoSpace, loadSpaceFile, type Space } from '../src/describe.ts';
import { ACC_READ, ACC_WRITE, ACC_USER, FAULT_EPT_VIOLATION } from '../src/consts.ts';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const bin = join(root, 'bin', 'granule.js');
const dir = mkdtempSync(join(tmpdir(), 'granule-cli-'));

function run(args: string[], opts: { launcher?: string } = {}) {
  const r = spawnSync(process.execPath, [opts.launcher ?? bin, ...args], { cwd: dir, encoding: 'utf8', env: { ...process.env, NO_COLOR: '' } });
  return { code: r.status, out: r.stdout, err: r.stderr };
}
const noStack = (s: string) => assert.not.match(s, /^\s+at .+:\d+:\d+\)?$/m, `a stack trace in:\n${s}`);

test.before(() => {
  // The test command builds the simulator only; bundle the CLI so the test runs the current code.
  const b = spawnSync(process.execPath, ['scripts/build.mjs'], { cwd: root, encoding: 'utf8' });
  if (b.status !== 0) throw new Error(`scripts/build.mjs failed:\n${b.stderr}`);
});

/** The CLI's references and outcome must be what sim.inspect says for the same space. */
function agrees(json: any, space: Space, gva: bigint, acc: number) {
  const r = space.sim.inspect(gva, acc);
  assert.is(json.references.length, r.steps.length);
  r.steps.forEach((s, k) => {
    const ref = json.references[k];
    assert.is(ref.table, s.kind, `reference ${k + 1}`);
    assert.is(ref.level, s.level);
    assert.is(BigInt(ref.addr), s.addr);
    assert.is(BigInt(ref.hpa), s.hpa);
    assert.is(BigInt(ref.value), s.value);
    assert.is(BigInt(ref.input), s.input);
    assert.is(ref.leaf, s.leaf);
    assert.is(ref.notPresent, s.notPresent);
  });
  if (r.fault) {
    assert.is.not(json.outcome.kind, 'ok');
    if (json.outcome.kind === 'ept-violation') {
      assert.is(json.outcome.qualification, r.fault.code);
      assert.is(BigInt(json.outcome.gpa), r.fault.gpa);
      assert.is(BigInt(json.outcome.gla), r.fault.gva);
    }
    if (json.outcome.kind === 'pf') assert.is(json.outcome.errorCode, r.fault.code);
  } else {
    assert.is(json.outcome.kind, 'ok');
    assert.is(BigInt(json.outcome.hpa), r.hpa);
  }
}

test('walk --json (demo space, demo GVA) parses and agrees with sim.inspect', async () => {
  const r = run(['walk', '--json']);
  assert.is(r.code, 0, r.err);
  assert.is(r.err, '');
  const json = JSON.parse(r.out);
  assert.is(json.gva, '0x401234');
  assert.is(json.access.text, 'supervisor read');
  assert.is(json.references.length, 24);
  assert.is(json.space.source, '<demo space>');
  const space = await demoSpace();
  assert.is(json.space.cr3, '0x' + space.cr3.toString(16));
  agrees(json, space, 0x401234n, ACC_READ);
});

test('walk --json with a space file, a GVA, --access w and --user', async () => {
  const file = join(dir, 'space.json');
  writeFileSync(file, JSON.stringify({
    physBytes: '8M',
    ept: [{ gpa: '0x0', hpa: '0x100000', size: '8K', perm: 'rwx' }, { gpa: '0x2000', hpa: '0x102000', perm: 'r' }],
    guest: [{ gva: '0x10000', gpa: '0x0', size: '12K', flags: 'rw,us' }],
  }, null, 2));
  const space = await loadSpaceFile(file);
  for (const [gva, args, acc] of [
    [0x10010n, ['-a', 'w', '--user'], ACC_WRITE | ACC_USER],
    [0x12010n, ['--access', 'w', '-u'], ACC_WRITE | ACC_USER],
    [0x13000n, [], ACC_READ],
  ] as const) {
    const r = run(['walk', '0x' + gva.toString(16), '--space', file, '--json', ...args]);
    assert.is(r.code, 0, r.err);
    agrees(JSON.parse(r.out), space, gva, acc);
  }
  const v = JSON.parse(run(['walk', '0x12010', '--space', file, '--json', '-a', 'w']).out);
  assert.is(v.outcome.kind, 'ept-violation');
  assert.is(space.sim.inspect(0x12010n, ACC_WRITE).fault?.kind, FAULT_EPT_VIOLATION);
  // no GVA: the first guest mapping
  assert.is(JSON.parse(run(['walk', '--space', file, '--json']).out).gva, '0x10000');
});

test('the text walk and the demo read as text on a pipe (no colour codes)', () => {
  const w = run(['walk', '0x401234', '-a', 'w', '--user']);
  assert.is(w.code, 0, w.err);
  assert.match(w.out, /^Walk of GVA 0x401234, user write/);
  assert.match(w.out, /^\s+24\s+EPT PTE/m);
  assert.match(w.out, /=> HPA 0x201234/);
  assert.not.match(w.out, /\x1b\[/);
  const b = run(['walk', '0x404008', '-a', 'w', '-u', '--brief']);
  assert.match(b.out, /1-4\s+EPT walk/);
  assert.match(b.out, /#PF .* error code 0x7/);

  const d = run(['demo']);
  assert.is(d.code, 0, d.err);
  assert.not.match(d.out, /\x1b\[/);
  assert.match(d.out, /24 memory references \(4 guest, 20 EPT\)/);
  assert.match(d.out, /=> #PF \(page fault, vector 14\) at the guest PTE, error code 0x7/);
  assert.match(d.out, /=> EPT violation \(VM exit 48\) at the EPT PTE, exit qualification 0x18a/);
  assert.match(d.out, /read  0x401234\s+miss\s+24\s+P RW US A\s/);
  assert.match(d.out, /read  0x401234\s+hit\s+0\s/);
  assert.match(d.out, /write 0x401234\s+miss\s+24\s+P RW US A D\s+R W X MT=WB A D/);
  assert.match(d.out, /docs\/address-space\.md/);
});

test('bad flags and arguments: exit code 2 and a message naming them', () => {
  const cases: [string[], RegExp][] = [
    [['walk', '--bogus'], /unknown option '--bogus'/],
    [['walk', '--access', 'q'], /--access <kind>' argument 'q' is invalid.*r, w, x/],
    [['walk', 'banana'], /GVA 'banana' is not an address/],
    [['walk', '0x1_0000_0000_0000_0000'], /does not fit in 64 bits/],
    [['walk', '1', '2'], /too many arguments/],
    [['walk', '--space'], /option '-s, --space <file>' argument missing/],
    [['frobnicate'], /unknown command 'frobnicate'/],
    [[], /Usage: granule/],
  ];
  for (const [args, msg] of cases) {
    const r = run(args);
    assert.is(r.code, 2, `granule ${args.join(' ')}: ${r.err}`);
    assert.match(r.err, msg);
    assert.is(r.out, '');
    noStack(r.err);
  }
  const h = run(['walk', '--help']);
  assert.is(h.code, 0);
  assert.match(h.out, /--space <file>/);
});

test('input errors: exit code 1, naming the file, the position and the path', () => {
  const bad = join(dir, 'broken.json');
  writeFileSync(bad, '{\n  "guest": [\n    { "gva": "0x400000" "gpa": "0x0" }\n  ]\n}\n');
  const r = run(['walk', '--space', bad]);
  assert.is(r.code, 1);
  assert.is(r.out, '');
  assert.ok(r.err.startsWith(`granule: error: ${bad}:3:25: `), r.err);
  noStack(r.err);

  const invalid = join(dir, 'invalid.json');
  writeFileSync(invalid, '{\n  "ept": [ { "gpa": "0x1001", "hpa": "0x0", "perm": "rw" } ]\n}\n');
  const v = run(['walk', '0x0', '--space', invalid]);
  assert.is(v.code, 1);
  assert.match(v.err, new RegExp(`${invalid.replace(/[.]/g, '\\.')}:2:21: ept\\[0\\]\\.gpa: GPA "0x1001" is not aligned`));
  noStack(v.err);

  const missing = run(['walk', '--space', join(dir, 'nope.json')]);
  assert.is(missing.code, 1);
  assert.match(missing.err, /nope\.json: cannot read the address-space file: no such file/);
  noStack(missing.err);

  const dirAsFile = run(['walk', '--space', dir]);
  assert.is(dirAsFile.code, 1);
  assert.match(dirAsFile.err, /is a directory/);
});

test('warnings go to stderr and leave stdout parseable', () => {
  const file = join(dir, 'warn.json');
  writeFileSync(file, JSON.stringify({ guest: [{ gva: '0x400000', gpa: '0x5000', flags: 'rw' }] }));
  const r = run(['walk', '--space', file, '--json']);
  assert.is(r.code, 0);
  assert.match(r.err, /granule: note: guest\[0\] maps GPA 0x5000, which no "ept" entry maps/);
  const json = JSON.parse(r.out);
  assert.is(json.outcome.kind, 'ept-violation');
  assert.is(json.space.warnings.length, 1);
});

test('the launcher says to build when dist/ is missing', () => {
  const fake = join(dir, 'pkg');
  mkdirSync(join(fake, 'bin'), { recursive: true });
  copyFileSync(bin, join(fake, 'bin', 'granule.js'));
  const r = run(['demo'], { launcher: join(fake, 'bin', 'granule.js') });
  assert.is(r.code, 1);
  assert.match(r.err, /run `npm run build` first/);
});

test.after(() => rmSync(dir, { recursive: true, force: true }));

test.run();
