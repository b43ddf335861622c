// The explorer's walk and practice views, their DOM-free logic (explorer/walk-model.ts,
// explorer/practice-model.ts) and the TLB view they read (src/tlbview.ts): outcome labels and
// step grouping against `granule walk --json`, the TLB before and after accesses, edits and
// invlpg, and the practice generator (deterministic, always loadable, solved by explainWalk).
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { cliWalk } from './support/cli.ts';
import { demoSpace, loadSpace, parseSpace, DEMO_SPACE_JSON } from '../src/describe.ts';
import { explainWalk, hex, type WalkReport } from '../src/walkfmt.ts';
import { ACC_READ, ACC_WRITE, ACC_USER, PTE_RW, PTE_D, EPT_D, INVEPT_SINGLE } from '../src/consts.ts';
import { tlbEntries, tlbLookup, tlbPredict, tlbEntriesFor } from '../src/tlbview.ts';
import {
  parseGva, parseEntryValue, accOf, faultLabel, recordLabel, outcomeHpa, walkSections, flagOptions, withFlag, refStatus,
  bitMeaning, editTexts, guestRows, eptRows, counterDelta, tlbRows, staleNote, tlbStaleText, DEMO_EXAMPLES, type AccessKind,
} from '../explorer/walk-model.ts';
import {
  generateProblem, solveProblem, checkAnswer, canonicalAnswer, parseAnswer, parseSeed, guestPath, Rng,
} from '../explorer/practice-model.ts';

// ---------------------------------------------------------------------------------------------
// Outcome labels and steps, against the CLI

const EXPECTED: Record<string, { fault: string; code: string; hpa: string; refs: number; sections: string[] }> = {
  '0x401234': { fault: 'none', code: '', hpa: '0x201234', refs: 24, sections: ['guest4', 'guest3', 'guest2', 'guest1', 'final0'] },
  '0x406000': { fault: '#PF error 0x0', code: '0x0', hpa: '', refs: 20, sections: ['guest4', 'guest3', 'guest2', 'guest1'] },
  '0x405000': { fault: 'EPT violation qualification 0x18a', code: '0x18a', hpa: '', refs: 24, sections: ['guest4', 'guest3', 'guest2', 'guest1', 'final0'] },
  '0x404008': { fault: '#PF error 0x7', code: '0x7', hpa: '', refs: 20, sections: ['guest4', 'guest3', 'guest2', 'guest1'] },
  '0x600123': { fault: 'none', code: '', hpa: '0x400123', refs: 18, sections: ['guest4', 'guest3', 'guest2', 'final0'] },
};

test('demo examples: labels, HPA and steps agree with granule walk --json', async () => {
  const space = await demoSpace();
  for (const ex of DEMO_EXAMPLES) {
    const json = await cliWalk(ex.gva, ex.kind, ex.user);
    const want = EXPECTED[hex(ex.gva)]!;
    const label = faultLabel(json.outcome);
    assert.is(label.text, want.fault, `${hex(ex.gva)} fault text`);
    assert.is(label.kind, json.outcome.kind);
    const jsonCode = json.outcome.kind === 'pf' ? json.outcome.errorCodeHex : json.outcome.kind === 'ept-violation' ? json.outcome.qualificationHex : '';
    assert.is(label.code, jsonCode, 'data-code is the JSON code');
    assert.is(label.code, want.code);
    assert.is(outcomeHpa(json.outcome), want.hpa);
    assert.is(json.references.length, want.refs);

    // the page renders explainWalk on its own simulator: the same data as the CLI prints
    const mine = explainWalk(space.sim, ex.gva, accOf(ex.kind, ex.user));
    const { space: _space, ...cliReport } = json;
    assert.equal(JSON.parse(JSON.stringify(mine)), cliReport, `${hex(ex.gva)}: the page's report is the CLI's`);

    const sections = walkSections(json);
    assert.equal(sections.map((s) => `${s.kind}${s.guestLevel}`), want.sections, `${hex(ex.gva)} sections`);
    assert.equal(sections.flatMap((s) => s.refs.map((r) => r.n)), json.references.map((r) => r.n), 'every reference once, in order');
    for (const s of sections.filter((x) => x.kind === 'guest')) {
      const last = s.refs[s.refs.length - 1]!;
      assert.is(last.table, 'guest', 'a guest step ends with the guest entry');
      assert.is(last.level, s.guestLevel);
      assert.is(s.refs.length, 5, 'four EPT entries locate the guest entry');
      for (const r of s.refs.slice(0, -1)) assert.is(r.for, last.name);
    }
    const fin = sections.find((s) => s.kind === 'final');
    if (fin) assert.ok(fin.refs.every((r) => r.table === 'ept' && r.for === 'final GPA'));
  }
});

test('the access\'s fault record is labelled as the walk\'s outcome (cold TLB)', async () => {
  for (const ex of DEMO_EXAMPLES) {
    const space = await demoSpace();
    const acc = accOf(ex.kind, ex.user);
    const walk = explainWalk(space.sim, ex.gva, acc);
    const res = space.sim.access(ex.gva, acc, 1);
    assert.equal(recordLabel(res.fault), faultLabel(walk.outcome), hex(ex.gva));
    assert.is(res.fault ? '' : hex(res.hpa), outcomeHpa(walk.outcome));
  }
});

test('entry states in words; bit meanings; flag options', () => {
  const st = (o: object) => refStatus({ notPresent: false, reserved: false, leaf: false, table: 'guest', note: '', ...o } as never);
  assert.equal(st({ notPresent: true, note: 'not present' }), { status: 'bad', text: 'not present', rest: '' });
  assert.equal(st({ notPresent: true, table: 'ept', note: 'not present (bits 2:0 = 000b)' }), { status: 'bad', text: 'not present', rest: '(bits 2:0 = 000b)' });
  assert.equal(st({ reserved: true, table: 'ept', note: 'misconfigured: memory type 2 is reserved' }), { status: 'bad', text: 'misconfigured', rest: 'memory type 2 is reserved' });
  assert.equal(st({ leaf: true, note: 'leaf: GPA 0x5000 -> HPA 0x205000' }), { status: 'leaf', text: 'leaf', rest: 'GPA 0x5000 -> HPA 0x205000' });
  assert.equal(st({ note: '-> EPT PDPT at HPA 0x802000' }), { status: 'table', text: 'points to', rest: 'EPT PDPT at HPA 0x802000' });
  assert.match(bitMeaning('guest', 1, 'RW'), /writes allowed/);
  assert.match(bitMeaning('guest', 2, 'PS'), /2 MiB/);
  assert.match(bitMeaning('ept', 1, 'MT=WB'), /memory type/);
  const g1 = flagOptions('guest', 1).map((f) => `${f.name}:${f.bit}`);
  assert.ok(g1.includes('PAT:7') && !g1.includes('PS:7') && g1.includes('XD:63') && !g1.some((x) => x.endsWith(':12')));
  const g2 = flagOptions('guest', 2).map((f) => `${f.name}:${f.bit}`);
  assert.ok(g2.includes('PS:7') && g2.includes('PAT:12'));
  const e1 = flagOptions('ept', 1).map((f) => f.name);
  assert.equal(e1.slice(0, 3), ['R', 'W', 'X']);
  assert.not.ok(e1.includes('PS'));
  assert.ok(flagOptions('ept', 3).some((f) => f.name === 'PS'));
  for (const f of [...flagOptions('guest', 2), ...flagOptions('ept', 2)]) assert.ok(f.title.length > 5, `${f.name} has a meaning`);
  assert.is(withFlag(0x1007n, PTE_RW, false), 0x1005n);
  assert.is(withFlag(0x1005n, 1n << 63n, true), 0x8000_0000_0000_1005n);
});

test('parsing the controls', () => {
  assert.is(parseGva('0x401234'), 0x401234n);
  assert.is(parseGva(' 401234 '), 0x401234n, 'the GVA field is hex, 0x or not');
  assert.is(parseGva('0xffff_8000_0000_0000'), 0xffff_8000_0000_0000n);
  assert.throws(() => parseGva(''), /type a guest-virtual address/);
  assert.throws(() => parseGva('0x40g000'), /not a hex address/);
  assert.throws(() => parseGva('0x1' + '0'.repeat(16)), /64 bits/);
  assert.is(parseEntryValue('0x0000000000001007'), 0x1007n);
  assert.is(parseEntryValue('8000000000001007'), 0x8000_0000_0000_1007n);
  assert.throws(() => parseEntryValue('xyz'), /not a hex value/);
  assert.is(accOf('write', true), ACC_WRITE | ACC_USER);
  assert.is(accOf('read', false), ACC_READ);
});

test('the demo space in words', async () => {
  const d = parseSpace(DEMO_SPACE_JSON, '<demo space>');
  assert.equal(editTexts(d), ['guest leaf for GVA 0x404000: clear RW, set SW_WP (write-protected by the monitor)']);
  const g = guestRows(d);
  assert.is(g[0]!.from, 'GVA 0x400000..0x404fff');
  assert.is(g[0]!.pages, '5 x 4 KiB');
  assert.equal(g[0]!.bits, ['P', 'RW', 'US']);
  assert.equal(g[2]!.bits, ['P', 'RW', 'US', 'PS', 'XD']);
  const e = eptRows(d);
  assert.equal(e[1]!.bits, ['R', 'MT=WB']);
  assert.equal(e[2]!.bits, ['R', 'W', 'MT=WB', 'PS']);
});

// ---------------------------------------------------------------------------------------------
// The TLB view

test('tlbview: the TLB before and after accesses, a stale entry after an edit, invlpg', async () => {
  const space = await demoSpace();
  const sim = space.sim;
  const gva = 0x401234n;
  assert.is(tlbEntries(sim).length, 0, 'a new simulator has an empty TLB');
  assert.is(tlbLookup(sim, gva), null);
  assert.is(tlbPredict(sim, gva, ACC_READ).kind, 'miss');
  const inspectOnly = explainWalk(sim, gva, ACC_WRITE | ACC_USER);
  assert.is(tlbEntries(sim).length, 0, 'the inspection walk fills nothing');

  let c0 = sim.counters();
  sim.access(gva, ACC_READ | ACC_USER, 1);
  const e = tlbLookup(sim, gva)!;
  assert.ok(e, 'a read fills the TLB');
  assert.is(e.gvaPage, 0x401000n);
  assert.is(e.hpaPage, 0x201000n);
  assert.is(e.gpaPage, 0x1000n);
  assert.equal(e.guest, { rw: true, us: true, xd: false });
  assert.equal(e.ept, { r: true, w: true, x: true });
  assert.is(e.guestDirty, false);
  assert.is(e.eptDirty, false);
  assert.is(e.guestLevel, 1);
  assert.is(e.current, true);
  assert.is(e.vpid, 1);
  assert.is(e.ep4ta, space.eptp & ~0xfffn);
  const d = counterDelta(c0, sim.counters());
  assert.is(d.find((x) => x.key === 'tlbMisses')!.delta, 1);
  assert.is(d.find((x) => x.key === 'guestRefs')!.delta + d.find((x) => x.key === 'eptRefs')!.delta, 24);
  assert.ok(tlbRows(e).some(([l, v]) => l === 'guest D cached' && v === 'no'));
  assert.is(tlbPredict(sim, gva, ACC_READ | ACC_USER).kind, 'hit');
  assert.is(tlbPredict(sim, gva, ACC_WRITE | ACC_USER).kind, 'rewalk', 'a write through a clean entry walks again');

  c0 = sim.counters();
  sim.access(gva, ACC_WRITE | ACC_USER, 1);
  assert.is(sim.counters().tlbMisses - c0.tlbMisses, 1, 'the write walked again (counted as a miss)');
  const ew = tlbLookup(sim, gva)!;
  assert.is(ew.guestDirty, true);
  assert.is(ew.eptDirty, true);
  const pte = space.guest.leafEntry(gva)!;
  assert.is(sim.read64(pte.hpa) & PTE_D, PTE_D);
  assert.is(sim.read64(space.ept.leafEntry(0x1000n)!.hpa) & EPT_D, EPT_D);
  const hit = tlbPredict(sim, gva, ACC_WRITE | ACC_USER);
  assert.equal(hit.kind === 'hit' && hit.hpa, 0x201234n);

  // Clear R/W in the guest PTE, as the view's editor does: the tables say #PF, the TLB still allows the write.
  sim.write64(pte.hpa, sim.read64(pte.hpa) & ~PTE_RW);
  const now = explainWalk(sim, gva, ACC_WRITE | ACC_USER);
  assert.is(faultLabel(now.outcome).text, '#PF error 0x7');
  assert.is(tlbPredict(sim, gva, ACC_WRITE | ACC_USER).kind, 'hit', 'the stale entry still serves the write');
  assert.match(tlbStaleText(tlbPredict(sim, gva, ACC_WRITE | ACC_USER), now.outcome), /would serve this access with HPA 0x201234, but the tables now say #PF error 0x7/);
  assert.is(tlbStaleText(tlbPredict(sim, gva, ACC_READ | ACC_USER), explainWalk(sim, gva, ACC_READ | ACC_USER).outcome), '', 'reads agree');
  c0 = sim.counters();
  const stale = sim.access(gva, ACC_WRITE | ACC_USER, 1);
  assert.is(stale.fault, null);
  assert.is(stale.hpa, 0x201234n);
  assert.is(sim.counters().tlbHits - c0.tlbHits, 1);
  const note = staleNote({ label: recordLabel(stale.fault), hpa: hex(stale.hpa) }, { label: faultLabel(now.outcome), hpa: outcomeHpa(now.outcome) }, true);
  assert.match(note, /stale TLB entry/);
  assert.is(staleNote({ label: faultLabel(inspectOnly.outcome), hpa: '0x201234' }, { label: faultLabel(inspectOnly.outcome), hpa: '0x201234' }, true), '');

  sim.invlpg(gva);
  assert.is(tlbLookup(sim, gva), null, 'invlpg drops the entry');
  const after = sim.access(gva, ACC_WRITE | ACC_USER, 1);
  assert.is(recordLabel(after.fault).text, '#PF error 0x7', 'the next access walks and faults');
});

test('tlbview: stale rights fault once, then the tables are used', async () => {
  const space = await demoSpace();
  const sim = space.sim;
  const gva = 0x404008n; // R/W = 0 (write-protected by the monitor)
  sim.access(gva, ACC_READ | ACC_USER, 1);
  assert.is(tlbLookup(sim, gva)!.guest.rw, false);
  const pte = space.guest.leafEntry(gva)!;
  sim.write64(pte.hpa, sim.read64(pte.hpa) | PTE_RW);
  const walk = explainWalk(sim, gva, ACC_WRITE | ACC_USER);
  assert.is(walk.outcome.kind, 'ok');
  const p = tlbPredict(sim, gva, ACC_WRITE | ACC_USER);
  assert.is(p.kind, 'pf');
  assert.match(tlbStaleText(p, walk.outcome), /cached rights give a #PF .* but the tables now say HPA 0x204008/);
  assert.is(recordLabel(sim.access(gva, ACC_WRITE | ACC_USER, 1).fault).text, '#PF error 0x7', 'the stale rights fault');
  assert.is(tlbLookup(sim, gva), null, 'and the fault dropped the entry');
  assert.is(sim.access(gva, ACC_WRITE | ACC_USER, 1).fault, null, 'the retry walks and succeeds');
  assert.is(tlbStaleText(tlbPredict(sim, gva, ACC_WRITE | ACC_USER), explainWalk(sim, gva, ACC_WRITE | ACC_USER).outcome), '');
});

test('tlbview: large pages are cached as 4 KiB pieces; other tags; INVEPT; other geometries', async () => {
  const space = await demoSpace();
  const sim = space.sim;
  sim.access(0x600123n, ACC_READ | ACC_USER, 1);
  sim.access(0x7ff000n, ACC_READ | ACC_USER, 1);
  const pieces = tlbEntries(sim);
  assert.equal(pieces.map((e) => [hex(e.gvaPage), hex(e.hpaPage), e.guestLevel, e.eptLevel]), [
    ['0x600000', '0x400000', 2, 2], ['0x7ff000', '0x5ff000', 2, 2], // sets 0 and 127
  ]);
  sim.invlpg(0x600000n);
  assert.is(tlbEntries(sim).length, 0, 'invlpg drops every piece of the 2 MiB page');

  sim.access(0x401000n, ACC_READ, 1);
  sim.setCpu({ vpid: 2 });
  assert.is(tlbLookup(sim, 0x401000n), null, 'another VPID does not see it');
  assert.is(tlbEntriesFor(sim, 0x401000n)[0]!.current, false);
  sim.setCpu({ vpid: 1 });
  assert.ok(tlbLookup(sim, 0x401000n));
  sim.invept(INVEPT_SINGLE, space.eptp);
  assert.is(tlbLookup(sim, 0x401000n), null, 'INVEPT single-context drops it');

  const small = await loadSpace(DEMO_SPACE_JSON, '<demo space>', { tlbSets: 4, tlbWays: 2 });
  for (const p of [0x400000n, 0x401000n, 0x402000n, 0x403000n, 0x404000n]) small.sim.access(p, ACC_READ, 1);
  assert.equal(tlbEntries(small.sim).map((e) => [e.set, e.way]), [[0, 0], [0, 1], [1, 0], [2, 0], [3, 0]], 'the geometry is the module\'s: 4 sets of 2 ways');
  assert.is(tlbLookup(small.sim, 0x404000n)!.hpaPage, 0x204000n);
});

// ---------------------------------------------------------------------------------------------
// Practice

const SEEDS = Array.from({ length: 200 }, (_, k) => k + 1).concat([0, 0xffffffff, 123456789, 2024]);

test('practice: the generator is deterministic per seed, and seeds differ', () => {
  for (const s of [1, 7, 99, 0xdeadbeef]) assert.equal(generateProblem(s), generateProblem(s));
  assert.is.not(generateProblem(1).json, generateProblem(2).json);
  assert.is(generateProblem(-1).seed, 0xffffffff, 'seeds are 32-bit');
  const r = new Rng(5), q = new Rng(5);
  for (let i = 0; i < 10; i++) assert.is(r.u32(), q.u32());
});

test('practice: every problem is a loadable space; its solution is explainWalk\'s; the canonical answer checks', async () => {
  const kinds: Record<string, number> = {};
  for (const s of SEEDS) {
    const p = generateProblem(s);
    const d = parseSpace(p.json, 'problem'); // valid per describe.ts
    assert.ok(d.guest.length >= 2 && d.guest.length <= 4, `seed ${s}: 2 to 4 guest mappings`);
    const solved = await solveProblem(p);
    const fresh = await loadSpace(p.json, 'again');
    assert.equal(solved.report, explainWalk(fresh.sim, p.gva, p.acc), `seed ${s}: the solution is explainWalk's`);
    const o = solved.report.outcome;
    kinds[o.kind] = (kinds[o.kind] ?? 0) + 1;
    const v = checkAnswer(canonicalAnswer(o), solved.report);
    assert.is(v.verdict, 'right', `seed ${s}: ${canonicalAnswer(o)} -> ${v.message}`);
    // the guest entries shown are the ones the walk reads
    const path = guestPath(solved.space, p.gva);
    for (const ref of solved.report.references.filter((x) => x.table === 'guest')) {
      const e = path.find((x) => x.level === ref.level);
      assert.ok(e, `seed ${s}: the guest ${ref.name} is shown`);
      assert.is(hex(e!.gpa), ref.addr);
      assert.is(e!.value, BigInt(ref.value));
    }
  }
  for (const k of ['ok', 'pf', 'ept-violation', 'ept-misconfig']) assert.ok((kinds[k] ?? 0) > 0, `some problem ends in ${k}: ${JSON.stringify(kinds)}`);
  assert.ok(kinds.ok! >= SEEDS.length / 5, `enough problems translate: ${JSON.stringify(kinds)}`);
});

test('practice: answers are read in the forms the hint gives', () => {
  assert.equal(parseAnswer('0x201234'), { kind: 'ok', hpa: 0x201234n });
  assert.equal(parseAnswer('HPA 201234'), { kind: 'ok', hpa: 0x201234n });
  assert.equal(parseAnswer('#PF 0x7'), { kind: 'pf', code: 7 });
  assert.equal(parseAnswer('#PF error 0x7'), { kind: 'pf', code: 7 }, 'the walk view\'s fault text');
  assert.equal(parseAnswer('page fault, error code 0x15'), { kind: 'pf', code: 0x15 });
  assert.equal(parseAnswer('#pf'), { kind: 'pf', code: null });
  assert.equal(parseAnswer('EPT violation 0x18a'), { kind: 'ept-violation', code: 0x18a });
  assert.equal(parseAnswer('EPT violation qualification 0x18a'), { kind: 'ept-violation', code: 0x18a });
  assert.equal(parseAnswer('EPT misconfiguration'), { kind: 'ept-misconfig' });
  assert.equal(parseAnswer('misconfig'), { kind: 'ept-misconfig' });
  assert.throws(() => parseAnswer(''), /type an answer/);
  assert.throws(() => parseAnswer('none'), /give the HPA/);
  assert.throws(() => parseAnswer('#PF 0xzz'), /not a hex code/);
  assert.throws(() => parseAnswer('segfault'), /not an answer I can read/);
  assert.is(parseSeed('42'), 42);
  assert.is(parseSeed('0x10'), 16);
  assert.throws(() => parseSeed('abc'), /not a number/);
  assert.throws(() => parseSeed('99999999999'), /too large/);
});

test('practice: wrong answers are told specifically what is wrong', async () => {
  const space = await demoSpace();
  const ok = explainWalk(space.sim, 0x401234n, ACC_READ);
  assert.is(checkAnswer('0x201234', ok).verdict, 'right');
  assert.match(checkAnswer('0x1234', ok).message, /is the GPA/);
  assert.match(checkAnswer('0x401234', ok).message, /is the GVA/);
  assert.match(checkAnswer('0x301234', ok).message, /offset .* is right, the frame is not/);
  assert.match(checkAnswer('0x201000', ok).message, /frame 0x201000 is right, the offset is not/);
  assert.match(checkAnswer('#PF 0x0', ok).message, /does not fault/);

  const pf = explainWalk(space.sim, 0x404008n, ACC_WRITE | ACC_USER);
  assert.is(checkAnswer('#PF 0x7', pf).verdict, 'right');
  assert.is(checkAnswer('#PF', pf).verdict, 'partial');
  const wrongCode = checkAnswer('#PF 0x6', pf);
  assert.is(wrongCode.verdict, 'wrong');
  assert.match(wrongCode.message, /bit 0 \(P\) should be 1/);
  assert.match(checkAnswer('EPT violation 0x18a', pf).message, /a #PF, not an EPT violation.*guest's own page tables/);
  assert.match(checkAnswer('0x204008', pf).message, /does not reach memory/);

  const ev = explainWalk(space.sim, 0x405000n, ACC_WRITE | ACC_USER);
  assert.is(checkAnswer('EPT violation 0x18a', ev).verdict, 'right');
  const q = checkAnswer('EPT violation 0x182', ev);
  assert.match(q.message, /bit 3 \(readable\) should be 1/);
  assert.match(checkAnswer('#PF 0x7', ev).message, /EPT that says no/);
  assert.is(checkAnswer('what', ev).verdict, 'unreadable');
});

test.run();
