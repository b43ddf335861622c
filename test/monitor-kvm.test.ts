// The monitor on both backends (issue 5, conformance): the same bundled traces under the same
// layouts, modes and granularities must give identical dirty units, faults and checkpoint bytes
// in every epoch and identical memory at the end; a checkpoint taken on KVM must restore to the
// image a simulator run reaches (and the other way round); and what KVM cannot run is refused
// with a reason, by the library and by the CLI.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runMonitor, type MonitorOptions, type MonitorResult } from '../src/monitor/engine.ts';
import { MonitoredSpace, type DirtyUnit } from '../src/layout/space.ts';
import { kvmUnavailable } from '../src/backend.ts';
import { packageRoot } from '../src/record/toolchain.ts';

const root = packageRoot();
const bin = join(root, 'bin', 'granule.js');
const why = kvmUnavailable();
if (why) console.log(`monitor-kvm.test.ts: skipped on this machine, the KVM backend is unavailable:\n${why}`);
const kvmTest = (name: string, fn: () => Promise<void>) => test(name, async () => { if (!why) await fn(); });

const unitKey = (u: DirtyUnit) => `${u.frame}:${u.offset}:${u.len}`;

/** Runs one configuration, keeping each epoch's units, and closes the space after reading its frames. */
async function runOn(backend: 'sim' | 'kvm', trace: string, o: Omit<MonitorOptions, 'backend' | 'onEpoch'>) {
  const units: string[][] = [];
  const r: MonitorResult = await runMonitor(trace, { ...o, backend, onEpoch: (_e, us) => units.push(us.map(unitKey).sort()) });
  try {
    assert.is(r.backend.name, backend, r.backend.reason);
    const frames = Array.from({ length: r.space.framesUsed }, (_, f) => r.space.frameBytes(f));
    return { r, units, frames };
  } finally {
    await r.space.close();
  }
}

const CONFIGS: { trace: string; o: Omit<MonitorOptions, 'backend' | 'onEpoch'> }[] = [
  { trace: 'kvstore-wasm.grt', o: { mode: 'gpt-wp', layout: 'spread', granularity: 64, epochWrites: 4000 } },
  { trace: 'kvstore-wasm.grt', o: { mode: 'gpt-wp', layout: 'spread', granularity: 'adaptive', epochWrites: 4000 } },
  { trace: 'tcdb-native.grt', o: { mode: 'ept-dirty', layout: 'spread', granularity: 256, epochWrites: 5000 } },
  { trace: 'tcdb-native.grt', o: { mode: 'gpt-wp', layout: 'packed', granularity: 4096, epochWrites: 5000 } },
  { trace: 'kmeans-wasm.grt', o: { mode: 'ept-dirty', layout: 'spread', granularity: 'adaptive', epochWrites: 3000 } },
  { trace: 'kvstore-wasm.grt', o: { mode: 'ept-wp', layout: 'spread', granularity: 256, epochWrites: 4000 } },
  { trace: 'vacation-native.grt', o: { mode: 'ept-wp', layout: 'spread', granularity: 'adaptive', epochWrites: 5000 } },
  { trace: 'kvstore-wasm.grt', o: { mode: 'pml', layout: 'spread', granularity: 64, epochWrites: 4000 } },
];

for (const { trace, o } of CONFIGS) {
  const name = `${trace}, ${o.mode} ${o.layout} ${o.granularity}`;
  kvmTest(`${name}: KVM and the simulator find the same units, faults and bytes in every epoch`, async () => {
    const path = join(root, 'traces', trace);
    const sim = await runOn('sim', path, o);
    const kvm = await runOn('kvm', path, o);
    assert.ok(sim.r.epochs.length > 2, `${name}: several epochs`);
    assert.is(kvm.r.epochs.length, sim.r.epochs.length, `${name}: epochs`);
    for (let i = 0; i < sim.r.epochs.length; i++) {
      const a = sim.r.epochs[i]!, b = kvm.r.epochs[i]!;
      assert.equal(kvm.units[i], sim.units[i], `${name}: epoch ${i} dirty units`);
      assert.is(b.faults, a.faults, `${name}: epoch ${i} faults`);
      assert.is(b.checkpointBytes, a.checkpointBytes, `${name}: epoch ${i} checkpoint bytes`);
      assert.is(b.regrouped, a.regrouped, `${name}: epoch ${i} PTEs the adaptive policy rewrote`);
      assert.is(b.tlbMisses, null, 'KVM claims no TLB count');
    }
    if (o.granularity === 'adaptive') assert.ok(sim.r.epochs.some((e) => e.regrouped > 0), `${name}: the policy regrouped something`);
    if (o.mode === 'gpt-wp' || o.mode === 'ept-wp') assert.ok(sim.r.epochs.reduce((s, e) => s + e.faults, 0) > 0, `${name}: faults were taken`);
    // ept-wp: every fault is a VM exit on both (KVM: the write watch's); PML-full exits differ in
    // number (512-entry log against KVM's ring) and are not compared.
    if (o.mode === 'ept-wp') for (const e of kvm.r.epochs) assert.is(e.exits.eptViolation ?? 0, e.faults, `${name}: epoch ${e.index} exits`);
    assert.is(kvm.frames.length, sim.frames.length, `${name}: frames used`);
    kvm.frames.forEach((f, i) => assert.ok(Buffer.from(f).equals(Buffer.from(sim.frames[i]!)), `${name}: frame ${i} bytes`));
  });
}

kvmTest('a mode KVM cannot run (spp) is refused with the reason, before anything runs; auto runs it on the simulator and says why', async () => {
  try {
    await MonitoredSpace.create({ mode: 'spp', backend: 'kvm', frames: 64 });
    assert.unreachable('spp on kvm');
  } catch (e) {
    assert.match((e as Error).message, /--backend kvm: sub-page write permissions \(spp\): KVM offers no SPP.*use --backend sim/);
  }
  const auto = await MonitoredSpace.create({ mode: 'spp', backend: 'auto', frames: 64 });
  assert.is(auto.mmu.backend, 'sim');
  assert.match(auto.mmu.reason, /spp.*KVM offers no SPP/);
  await auto.close();
});

function cli(args: string[], cwd: string) {
  const r = spawnSync(process.execPath, [bin, ...args], { cwd, encoding: 'utf8', env: { ...process.env, NO_COLOR: '1' } });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

kvmTest('granule checkpoint --backend kvm, then restore --verify on either backend: the same image', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'granule-monitor-kvm-'));
  try {
    const trace = join(root, 'traces', 'tcdb-wasm.grt');
    const ck = join(dir, 'ck');
    const w = cli(['checkpoint', trace, '-o', ck, '-g', '128', '-e', '5000', '--backend', 'kvm'], dir);
    assert.is(w.code, 0, w.err);
    assert.match(w.err, /backend kvm: KVM on Linux/);
    for (const backend of ['kvm', 'sim']) {
      const r = cli(['restore', ck, '--epoch', '3', '--verify', '--json', '--backend', backend], dir);
      assert.is(r.code, 0, `${backend}: ${r.err}`);
      const out = JSON.parse(r.out) as { verified: boolean; backend: string; framesCompared: number };
      assert.ok(out.verified, `restore --verify --backend ${backend}`);
      assert.is(out.backend, backend);
      assert.ok(out.framesCompared > 10);
    }
    const bad = cli(['checkpoint', trace, '-o', join(dir, 'spp'), '-m', 'spp', '--backend', 'kvm'], dir);
    assert.is(bad.code, 2, bad.err);
    assert.match(bad.err, /--backend kvm --mode spp: .*KVM offers no SPP/);
    assert.not.match(bad.err, /^\s+at /m);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

kvmTest('granule compare --backend kvm: the rows KVM runs, the others left out with a note', async () => {
  const r = cli(['compare', join(root, 'traces', 'kvstore-wasm.grt'), '--backend', 'kvm', '-e', '8000', '-g', '4096,64', '--json'], root);
  assert.is(r.code, 0, r.err);
  const c = JSON.parse(r.out) as { backend: { name: string }; rows: { mode: string; tlbMisses: number | null; faults: number }[]; notes: string[] };
  assert.is(c.backend.name, 'kvm');
  assert.equal([...new Set(c.rows.map((x) => x.mode))], ['page', 'gpt-wp', 'ept-wp', 'ept-dirty', 'pml', 'ideal']);
  assert.ok(c.notes.some((n) => /Left out on the kvm backend: sub-page/.test(n)));
  for (const row of c.rows.filter((x) => x.mode !== 'ideal')) assert.is(row.tlbMisses, null, row.mode);
  assert.ok(c.rows.find((x) => x.mode === 'gpt-wp')!.faults > 0);
});

kvmTest('granule compare --backend kvm --live: the host baselines replay what the page-level row ran on KVM, and agree with it', async () => {
  const r = cli(['compare', join(root, 'traces', 'tcdb-native.grt'), '--backend', 'kvm', '--live', '-e', '6000', '-g', '4096', '--modes', 'gpt-wp', '--no-spp', '--json'], root);
  assert.is(r.code, 0, r.err);
  const c = JSON.parse(r.out) as { backend: { name: string }; rows: { mode: string; checkpointBytes: number; faults: number; host?: { runMs: number } }[] };
  assert.is(c.backend.name, 'kvm');
  const page = c.rows.find((x) => x.mode === 'page')!;
  const mp = c.rows.find((x) => x.mode === 'host-mprotect')!;
  assert.ok(page.checkpointBytes > 0);
  assert.is(mp.checkpointBytes, page.checkpointBytes);
  assert.is(mp.faults, page.faults);
  assert.ok(mp.host!.runMs > 0);
});

kvmTest('Ctrl-C (or SIGTERM) during a live checkpoint run: exit 130 (143), no temp file, no process left, and the epochs written restore', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'granule-monitor-kvm-sig-'));
  try {
    for (const [sig, code] of [['SIGINT', 130], ['SIGTERM', 143]] as const) {
      const ck = join(dir, `ck-${sig}`);
      const child = spawn(process.execPath, [bin, 'checkpoint', join(root, 'traces', 'kvstore-native.grt'), '-o', ck, '-e', '5000', '-m', 'ept-wp', '--backend', 'kvm'], { stdio: ['ignore', 'ignore', 'pipe'] });
      let err = '';
      child.stderr.on('data', (d: Buffer) => { err += d.toString(); });
      const exited = new Promise<number | null>((resolve) => child.on('exit', (c) => resolve(c)));
      // Interrupt it mid-run, once a few epochs are on disk.
      const t0 = performance.now();
      while (!(existsSync(ck) && readdirSync(ck).filter((f) => f.endsWith('.gck')).length >= 3)) {
        if (performance.now() - t0 > 60_000 || child.exitCode !== null) throw new Error(`no epochs appeared: ${err}`);
        await new Promise((r) => setTimeout(r, 50));
      }
      child.kill(sig);
      const got = await exited;
      assert.is(got, code, `${sig}: exit code (stderr: ${err})`);
      assert.equal(readdirSync(ck).filter((f) => f.endsWith('.tmp')), [], `${sig}: no temp file left`);
      assert.throws(() => process.kill(child.pid!, 0), undefined, `${sig}: the process is gone`);
      const r = cli(['restore', ck, '--json'], dir);
      assert.is(r.code, 0, `${sig}: the complete epochs restore: ${r.err}`);
      assert.ok((JSON.parse(r.out) as { epoch: number }).epoch >= 1);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test.run();
