// The `granule` command. Exit codes: 0 done, 1 bad input (a space file, a missing build),
// 2 usage errors (unknown flags, bad arguments). User errors print one clear message, no stack.
import { Command, CommanderError, Option } from 'commander';
import { pathToFileURL } from 'node:url';
import { ACC_READ, ACC_WRITE, ACC_FETCH, ACC_USER, PTE_P, PTE_PS, EPT_PS } from './consts.ts';
import { SpaceError, loadSpaceFile, demoSpace, DEMO_GVA, pageName, type Space } from './describe.ts';
import { explainWalk, formatWalk, guestBits, eptBits, useColor, palette, hex } from './walkfmt.ts';
import { PAGE_4K, addrMaskFor } from './space.ts';
import { UsageError, isInputError, inputErrorCode, type Io } from './cli-io.ts';
import { registerTraceCommands } from './cli-trace.ts';
import { registerMonitorCommands } from './cli-monitor.ts';
import { exploreCommand, DEFAULT_PORT, DEFAULT_HOST } from './explore.ts';

const VERSION = '0.1.0';


function parseGva(text: string): bigint {
  const t = text.trim();
  let v: bigint;
  if (/^0x[0-9a-f]+(_[0-9a-f]+)*$/i.test(t)) v = BigInt(t.replace(/_/g, ''));
  else if (/^[0-9]+(_[0-9]+)*$/.test(t)) v = BigInt(t.replace(/_/g, ''));
  else throw new UsageError(`GVA '${text}' is not an address: write hex as 0x401000 (or a decimal number)`);
  if (v >= 1n << 64n) throw new UsageError(`GVA '${text}' does not fit in 64 bits`);
  return v;
}

const ACCESS: Record<string, number> = { r: ACC_READ, w: ACC_WRITE, x: ACC_FETCH };

async function loadSpaceOption(file: string | undefined): Promise<Space> {
  return file === undefined ? demoSpace() : loadSpaceFile(file);
}

// ---------------------------------------------------------------------------------------------
// granule walk

async function walkCommand(gvaArg: string | undefined, o: { space?: string; access: string; user?: boolean; json?: boolean; brief?: boolean }, io: Io): Promise<void> {
  const explicit = gvaArg === undefined ? null : parseGva(gvaArg);
  const space = await loadSpaceOption(o.space);
  for (const w of space.warnings) io.err(`granule: note: ${w}\n`);
  let gva = explicit;
  if (gva === null) {
    if (o.space === undefined) gva = DEMO_GVA;
    else if (space.description.guest[0]) gva = space.description.guest[0].gva;
    else throw new UsageError(`${o.space} has no guest mappings to pick a default GVA from: give one, e.g. granule walk 0x400000 --space ${o.space}`);
  }
  const acc = ACCESS[o.access]! | (o.user ? ACC_USER : 0);
  const report = explainWalk(space.sim, gva, acc);
  if (o.json) {
    const t = space.tables;
    const out = {
      space: {
        source: space.description.source, cr3: hex(space.cr3), eptp: hex(space.eptp), warnings: space.warnings,
        tables: { hpa: hex(t.hpa), hpaFrames: t.hpaFrames, gpa: hex(t.gpa), gpaFrames: t.gpaFrames },
      },
      ...report,
    };
    io.out(JSON.stringify(out, null, 2) + '\n');
  } else {
    io.out(formatWalk(report, { color: io.color, compact: !!o.brief }) + '\n');
  }
}

// ---------------------------------------------------------------------------------------------
// granule demo

function spaceSummary(space: Space): string[] {
  const d = space.description;
  const out: string[] = [];
  const range = (lo: bigint, size: bigint) => `${hex(lo)}..${hex(lo + size - 1n)}`;
  const lvl = (page: bigint) => (page === PAGE_4K ? 1 : page === 0x200000n ? 2 : 3);
  const pages = (size: bigint, page: bigint) => `${size / page} x ${pageName(page)}`;
  const rows = (cells: string[][]) => {
    const w = cells[0]!.map((_, k) => Math.max(...cells.map((r) => r[k]!.length)));
    return cells.map((r) => '     ' + r.map((c, k) => (k === r.length - 1 ? c : c.padEnd(w[k]!))).join('  ').trimEnd());
  };
  out.push('   guest page table (GVA -> GPA):');
  out.push(...rows(d.guest.map((g) => [
    `GVA ${range(g.gva, g.size)}`, `-> GPA ${hex(g.gpa)}`, pages(g.size, g.page),
    guestBits(g.bits | PTE_P | (g.page === PAGE_4K ? 0n : PTE_PS), lvl(g.page)).join(' '), g.note ?? '',
  ])));
  out.push('   EPT (GPA -> HPA):');
  out.push(...rows(d.ept.map((e) => [
    `GPA ${range(e.gpa, e.size)}`, `-> HPA ${hex(e.hpa)}`, pages(e.size, e.page),
    eptBits(e.bits | (e.page === PAGE_4K ? 0n : EPT_PS), lvl(e.page)).join(' '), e.note ?? '',
  ])));
  if (d.edits.length) {
    out.push('   edits applied afterwards:');
    for (const e of d.edits) {
      const what: string[] = [];
      const names = (v: bigint) => (e.table === 'guest' ? guestBits(v, 1) : eptBits(v, 2).filter((x) => !x.startsWith('MT='))).join(' ') || hex(v);
      if (e.value !== null) what.push(`value ${hex(e.value)}`);
      if (e.clear) what.push(`clear ${names(e.clear)}`);
      if (e.set) what.push(`set ${names(e.set)}`);
      if (e.mt !== null) what.push(`memory type ${e.mt}`);
      out.push(`     ${e.table} entry for ${e.table === 'guest' ? 'GVA' : 'GPA'} ${hex(e.addr)}: ${what.join(', ')}${e.note ? `  (${e.note})` : ''}`);
    }
  }
  const t = space.tables;
  out.push(`   table frames: ${t.gpaFrames} guest tables at GPA ${hex(t.gpa)}; ${t.hpaFrames} frames (guest and EPT tables) at HPA ${hex(t.hpa)}`);
  out.push(`   CR3 ${hex(space.cr3)}, EPTP ${hex(space.eptp)}; GVA 0x406000 is mapped by nothing`);
  return out;
}

async function demoCommand(io: Io): Promise<void> {
  const p = palette(io.color);
  const space = await demoSpace();
  const sim = space.sim;
  const say = (s = '') => io.out(s + '\n');
  const head = (s: string) => { say(); say(p.bold(s)); say(); };

  say(p.bold('granule demo: two-dimensional address translation, step by step'));
  say();
  say('granule models a guest page table (GVA -> GPA) on top of an EPT (GPA -> HPA) as real 8-byte');
  say('entries in a simulated host memory. Every guest page-table entry has a guest-physical address,');
  say('so the CPU must translate that address through the EPT before it can read the entry: a cold');
  say('4 KiB/4 KiB translation reads 4 x (4 + 1) + 4 = 24 entries.');

  head('1. The demo address space (granule walk uses it when no --space file is given)');
  for (const l of spaceSummary(space)) say(l);

  head('2. A walk that succeeds: user write to 0x401234');
  say(formatWalk(explainWalk(sim, 0x401234n, ACC_WRITE | ACC_USER), { color: io.color }));

  head('3. A guest page fault: user write to the write-protected page, 0x404008');
  say(p.dim('   (EPT walks that succeed are shown one line each from here on: granule walk --brief)'));
  say();
  say(formatWalk(explainWalk(sim, 0x404008n, ACC_WRITE | ACC_USER), { color: io.color, compact: true }));
  say();
  say('   This is monitoring mechanism 1: the monitor clears R/W to watch a page, the write faults');
  say('   inside the guest, the monitor records the page, sets R/W again and retries. No VM exit.');

  head('4. An EPT violation: user write to 0x405010, a page the EPT maps read-only');
  say(formatWalk(explainWalk(sim, 0x405010n, ACC_WRITE | ACC_USER), { color: io.color, compact: true }));
  say();
  say('   The guest allowed the write; the host\'s EPT did not. This is mechanism 2: a VM exit');
  say('   to the host monitor, with the GPA and the exit qualification telling it what happened.');

  head('5. Real accesses: accessed/dirty flags and the TLB');
  say('   granule walk only looks. sim.access() performs the access: it consults the TLB, walks on a');
  say('   miss, sets the accessed (A) and dirty (D) flags, and caches the translation.');
  say();
  const gva = 0x401234n;
  const pte = space.guest.leafEntry(gva)!;
  const gpa = pte.value & addrMaskFor(space.description.maxPhyAddr);
  const epte = space.ept.leafEntry(gpa)!;
  const rows: string[][] = [['access', 'TLB', 'references', 'guest PTE', 'EPT PTE (data page)']];
  const flagCells = () => [guestBits(sim.read64(pte.hpa), 1).join(' '), eptBits(sim.read64(epte.hpa), 1).join(' ')];
  rows.push(['(before)', '', '', ...flagCells()]);
  sim.resetCounters();
  let prev = sim.counters();
  const steps: [string, number][] = [['read ', ACC_READ | ACC_USER], ['read ', ACC_READ | ACC_USER], ['write', ACC_WRITE | ACC_USER], ['write', ACC_WRITE | ACC_USER]];
  for (const [name, acc] of steps) {
    const r = sim.access(gva, acc, 8, acc & ACC_WRITE ? new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8]) : undefined);
    if (r.fault) throw new Error(`demo: unexpected fault ${r.fault.kind} on ${name.trim()} ${hex(gva)}`);
    const c = sim.counters();
    const refs = (c.guestRefs! - prev.guestRefs!) + (c.eptRefs! - prev.eptRefs!);
    rows.push([`${name} ${hex(gva)}`, c.tlbHits! > prev.tlbHits! ? 'hit' : 'miss', String(refs), ...flagCells()]);
    prev = c;
  }
  const widths = rows[0]!.map((_, k) => Math.max(...rows.map((r) => r[k]!.length)));
  rows.forEach((r, k) => {
    const line = '   ' + r.map((cell, j) => cell.padEnd(widths[j]!)).join('  ').trimEnd();
    say(k === 0 ? p.dim(line) : line);
  });
  const c = sim.counters();
  say();
  say(`   counters: accesses ${c.accesses}, TLB hits ${c.tlbHits}, TLB misses ${c.tlbMisses}, walks ${c.walks}, guest refs ${c.guestRefs}, EPT refs ${c.eptRefs}, A/D writes ${c.adWrites}`);
  say();
  say('   The first read walks and sets A in the guest PTE and the EPT PTE. The second read hits the');
  say('   TLB. The first write cannot use the cached translation: a read made it, with D clear, so');
  say('   the CPU walks again (a TLB miss) to set D in both tables. From then on writes hit the TLB.');
  say('   EPT D is what the host reads to learn which GPA pages were written (mechanism 3).');

  head('6. Where to go next');
  say('   granule walk 0x406000              the unmapped GVA: a not-present #PF');
  say('   granule walk 0x600123 --user       a 2 MiB guest page on a 2 MiB EPT page: 18 references');
  say('   granule walk 0x401234 -a w --json  the same walk as data, for scripts and tests');
  say('   granule walk --space my.json ...   your own address space: docs/address-space.md');
  say('   docs/sim-semantics.md              what the simulator models, rule by rule, with SDM sections');
  say('   README.md                          the project, its layout and its tests');
}

// ---------------------------------------------------------------------------------------------
// main

export async function main(argv: string[] = process.argv, io?: Partial<Io>): Promise<number> {
  if (!io?.out) {
    // `granule demo | head`: a closed pipe ends the output quietly.
    process.stdout.on('error', (e: NodeJS.ErrnoException) => {
      if (e.code === 'EPIPE') process.exit(0);
      throw e;
    });
  }
  if (!io?.out) {
    // Ctrl-C: exit as a shell expects (130). Exiting runs the 'exit' hooks that remove the temp
    // files of unfinished traces; a recorder that must also stop its child installs its own
    // handler, and then this one steps aside.
    // SIGTERM (kill, a CI timeout) likewise, with 143. A live run's VM and its threads go with
    // the process; the kernel tears down the fds.
    for (const [sig, code] of [['SIGINT', 130], ['SIGTERM', 143]] as const) {
      process.on(sig, () => {
        if (process.listenerCount(sig) === 1) process.exit(code);
      });
    }
  }
  const out = io?.out ?? ((s: string) => { process.stdout.write(s); });
  const err = io?.err ?? ((s: string) => { process.stderr.write(s); });
  const color = io?.color ?? useColor(process.stdout);
  const ctx: Io = { out, err, color, tty: io?.tty ?? (io?.err ? false : !!process.stderr.isTTY) };

  const program = new Command('granule')
    .description('sub-page memory access monitoring: an x86-64 guest paging + EPT simulator and tools')
    .version(VERSION, '-V, --version')
    .exitOverride()
    .configureOutput({ writeOut: out, writeErr: err, outputError: (s, write) => write(`granule: ${s}`) })
    .showHelpAfterError('(run with --help for usage)')
    .allowExcessArguments(false)
    // `granule record -o OUT -- PROGRAM --its-flags`: options after the program are the program's.
    .enablePositionalOptions();

  program.command('walk')
    .description('show the two-dimensional walk of one address: every guest and EPT entry read, decoded, and the outcome')
    .argument('[gva]', 'guest-virtual address, hex as 0x401234 (default: 0x401234 in the demo space, else the first guest mapping)')
    .option('-s, --space <file>', 'address-space description (JSON, see docs/address-space.md); default: the built-in demo space')
    .addOption(new Option('-a, --access <kind>', 'access kind: r (read), w (write) or x (instruction fetch)').choices(['r', 'w', 'x']).default('r'))
    .option('-u, --user', 'user-mode access (CPL 3); default supervisor')
    .option('--json', 'print the walk as JSON (addresses and values as "0x..." strings)')
    .option('-b, --brief', 'one line for each EPT walk that succeeds')
    .action(async (gva: string | undefined, o) => walkCommand(gva, o, ctx));

  program.command('demo')
    .description('a short guided tour: the demo space, three walks (success, #PF, EPT violation), A/D bits and the TLB')
    .action(async () => demoCommand(ctx));

  program.command('explore')
    .description('serve the explorer (walks, practice, granularity sweeps, alias planes in the browser) on localhost')
    .option('-p, --port <n>', `port to listen on; 0 picks a free one (default ${DEFAULT_PORT})`)
    .option('--host <address>', `address to listen on (default ${DEFAULT_HOST}; 0.0.0.0 for every interface)`)
    .action(async (o) => { await exploreCommand(o, ctx); });

  registerTraceCommands(program, ctx);
  registerMonitorCommands(program, ctx);

  try {
    if (argv.length <= 2) {
      err(program.helpInformation());
      return 2;
    }
    await program.parseAsync(argv);
    return 0;
  } catch (e) {
    if (e instanceof CommanderError) {
      return e.exitCode === 0 || e.code === 'commander.helpDisplayed' || e.code === 'commander.version' ? 0 : 2;
    }
    if (e instanceof UsageError) {
      err(`granule: error: ${e.message}\n`);
      return 2;
    }
    if (e instanceof SpaceError) {
      err(`granule: error: ${e.message}\n`);
      return 1;
    }
    if (isInputError(e)) {
      err(`granule: error: ${e.message}\n`);
      return inputErrorCode(e);
    }
    if (e instanceof Error && /npm run build/.test(e.message)) {
      err(`granule: error: ${e.message}\n`);
      return 1;
    }
    throw e;
  }
}

// Run when executed directly (node --import tsx src/cli.ts ...); bin/granule.js calls main() itself.
if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  process.exitCode = await main(process.argv);
}
