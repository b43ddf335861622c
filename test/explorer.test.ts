// The explorer's shell and its server (explorer/README.md): `granule explore` serves build/explorer
// with the right content types and nothing outside it; the page, in Debian's chromium driven by
// playwright-core (no browser download), loads the simulator, shows four tabs that work from the
// keyboard and by URL hash, mounts every view without an error, and reports a failure in its error
// area instead of going blank. Screenshots go to build/explorer-shots/ (a CI artefact).
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, symlinkSync, truncateSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium, type Browser, type Page } from 'playwright-core';
import { findChromium, launchOptions, NO_CHROMIUM } from './support/browser.ts';
import { cliWalk } from './support/cli.ts';
import { startExplorerServer, resolveRequestPath, contentType, type ExplorerServer } from '../src/explore.ts';
import { main } from '../src/cli.ts';
import { InputError } from '../src/cli-io.ts';
import { TraceWriter } from '../src/trace/writer.ts';
import { EV_WRITE } from '../src/trace/events.ts';
import { compareTrace } from '../src/monitor/compare.ts';
import type { CompareResult } from '../src/report/types.ts';
import { PAGE_KEY } from '../explorer/sweep-model.ts';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const built = join(root, 'build', 'explorer');
const shots = join(root, 'build', 'explorer-shots');
const tmp = mkdtempSync(join(tmpdir(), 'granule-explorer-'));

let server: ExplorerServer;
let browser: Browser | null = null;

test.before(async () => {
  // Build the page from the current sources (needs build/sim.release.wasm: npm run build:sim).
  const b = spawnSync(process.execPath, ['scripts/build-explorer.mjs'], { cwd: root, encoding: 'utf8' });
  if (b.status !== 0) throw new Error(`scripts/build-explorer.mjs failed:\n${b.stdout}${b.stderr}`);
  server = await startExplorerServer({ port: 0 });
});

test.after(async () => {
  await browser?.close();
  await server?.close();
  rmSync(tmp, { recursive: true, force: true });
});

/** A raw GET (the path is sent exactly as given, not normalised as fetch would). */
function get(path: string, method = 'GET'): Promise<{ status: number; type: string; body: Buffer }> {
  return new Promise((done, fail) => {
    const req = request({ host: '127.0.0.1', port: server.port, path, method }, (res) => {
      const parts: Buffer[] = [];
      res.on('data', (d: Buffer) => parts.push(d));
      res.on('end', () => done({ status: res.statusCode!, type: String(res.headers['content-type']), body: Buffer.concat(parts) }));
    });
    req.on('error', fail);
    req.end();
  });
}

// ---------------------------------------------------------------------------------------------
// The build and the server

test('build: traces.json lists the bundled traces with their sizes, events, sources and descriptions', () => {
  const traces = JSON.parse(readFileSync(join(built, 'traces.json'), 'utf8'));
  assert.ok(Array.isArray(traces) && traces.length > 0, 'some traces');
  for (const t of traces) {
    assert.type(t.name, 'string');
    assert.ok(t.description.length > 0, `${t.name} has a description`);
    assert.ok(t.events > 0, `${t.name} has events`);
    assert.type(t.source, 'string');
    assert.is(statSync(join(built, t.file)).size, t.bytes, `${t.file} is copied whole`);
    assert.ok(t.bytes <= 8 * 1024 * 1024, `${t.name} is under the size limit`);
  }
  assert.ok(existsSync(join(built, 'explorer.js')) && existsSync(join(built, 'explorer.css')) && existsSync(join(built, 'sim.release.wasm')));
  assert.not.match(readFileSync(join(built, 'explorer.js'), 'utf8'), /^import\s[^;]*from\s*["']node:/m, 'no static node: import');
});

test('server: content types of the page, the bundle, the styles, the index, the module and a trace', async () => {
  const cases: [string, string][] = [
    ['/', 'text/html; charset=utf-8'],
    ['/index.html', 'text/html; charset=utf-8'],
    ['/explorer.js', 'text/javascript; charset=utf-8'],
    ['/explorer.css', 'text/css; charset=utf-8'],
    ['/traces.json', 'application/json; charset=utf-8'],
    ['/sim.release.wasm', 'application/wasm'],
  ];
  const traces = JSON.parse(readFileSync(join(built, 'traces.json'), 'utf8'));
  cases.push([`/${traces[0].file}`, 'application/octet-stream']);
  for (const [path, type] of cases) {
    const r = await get(path);
    assert.is(r.status, 200, path);
    assert.is(r.type, type, path);
  }
  const wasm = await get('/sim.release.wasm');
  assert.ok(wasm.body.equals(readFileSync(join(root, 'build', 'sim.release.wasm'))), 'the module byte for byte');
  const q = await get('/traces.json?x=1#frag');
  assert.is(q.status, 200, 'a query string is ignored');
  assert.is(contentType('a/b.GRT'), 'application/octet-stream');
  assert.is(contentType('x.unknown'), 'application/octet-stream');
});

test('server: 404 for what is not there and for directories (no listings); 405 for other methods', async () => {
  for (const path of ['/nope.js', '/traces', '/traces/', '/traces/nope.grt', '/index.html/x']) {
    const r = await get(path);
    assert.is(r.status, 404, path);
    assert.not.match(r.body.toString(), /\.grt/, `${path}: no listing`);
  }
  assert.is((await get('/', 'POST')).status, 405);
  const head = await get('/explorer.js', 'HEAD');
  assert.is(head.status, 200);
  assert.is(head.body.length, 0);
});

test('server: path traversal is refused, plain and percent-encoded', async () => {
  for (const path of [
    '/../package.json', '/traces/../../package.json', '/%2e%2e/package.json', '/%2E%2E/package.json',
    '/.%2e/package.json', '/%2e%2e%2fpackage.json', '/traces/..%2f..%2fpackage.json', '/..%5cpackage.json',
    '/%2e%2e%5c%2e%2e%5cpackage.json', '/./index.html', '/%00', '/index.html%00.js', '/%zz', '//etc/passwd', '/C:/x',
  ]) {
    const r = await get(path);
    assert.is(r.status, 403, path);
    assert.not.match(r.body.toString(), /"name": "granule"/, `${path} leaked package.json`);
  }
  const at = '/srv/x';
  assert.is(resolveRequestPath(at, '/a/b.js'), '/srv/x/a/b.js');
  assert.is(resolveRequestPath(at, '/'), '/srv/x/index.html');
  assert.is(resolveRequestPath(at, '/a%20b.js'), '/srv/x/a b.js');
  assert.is(resolveRequestPath(at, '/../x'), null);
  assert.is(resolveRequestPath(at, '/%2e%2e/x'), null);
  assert.is(resolveRequestPath(at, 'x'), null);
});

test('server: a symlink that leads out of the directory is not followed', async () => {
  const dir = join(tmp, 'site');
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'index.html'), '<!doctype html><title>t</title>');
  writeFileSync(join(tmp, 'secret.txt'), 'secret');
  symlinkSync(join(tmp, 'secret.txt'), join(dir, 'leak.txt'));
  const s = await startExplorerServer({ port: 0, root: dir });
  try {
    const r = await fetch(`${s.url}leak.txt`);
    assert.is(r.status, 404);
    assert.is((await fetch(s.url)).status, 200);
  } finally {
    await s.close();
  }
});

test('server: a port in use, and a missing build, are clear errors', async () => {
  let err = '';
  const code = await main(['node', 'granule', 'explore', '--port', String(server.port)], { out: () => {}, err: (s) => { err += s; }, color: false });
  assert.is(code, 1);
  assert.match(err, new RegExp(`port ${server.port} .*in use`));
  assert.match(err, /--port 0/);
  err = '';
  assert.is(await main(['node', 'granule', 'explore', '--port', 'http'], { out: () => {}, err: (s) => { err += s; }, color: false }), 2);
  assert.match(err, /--port 'http' is not a port number/);
  const empty = join(tmp, 'empty');
  mkdirSync(empty, { recursive: true });
  try {
    await startExplorerServer({ port: 0, root: empty });
    assert.unreachable('served a directory with no build');
  } catch (e) {
    assert.instance(e, InputError);
    assert.match((e as Error).message, /npm run build/);
  }
});

test('granule explore: prints where it serves, serves it, and keeps running until stopped', async () => {
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli.ts', 'explore', '--port', '0'], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
  try {
    const line = await new Promise<string>((done, fail) => {
      let err = '';
      const timer = setTimeout(() => fail(new Error(`no address printed within 20 s:\n${err}`)), 20000);
      child.stderr!.on('data', (d) => {
        err += d;
        if (err.includes('\n')) { clearTimeout(timer); done(err); }
      });
      child.on('exit', (c) => { clearTimeout(timer); fail(new Error(`granule explore exited (${c}):\n${err}`)); });
    });
    const m = /^granule explore: serving build\/explorer at (http:\/\/127\.0\.0\.1:(\d+)\/) \(Ctrl-C stops\)\n$/.exec(line);
    assert.ok(m, line);
    const r = await fetch(m![1]!);
    assert.is(r.status, 200);
    assert.match(await r.text(), /<title>granule explorer<\/title>/);
    assert.is(child.exitCode, null, 'still running');
  } finally {
    child.kill('SIGINT');
  }
  const code = await new Promise((done) => (child.exitCode !== null ? done(child.exitCode) : child.on('exit', (c) => done(c))));
  assert.is(code, 130, 'Ctrl-C exits as a shell expects');
});

// ---------------------------------------------------------------------------------------------
// The page, in chromium

const executable = findChromium();

async function openBrowser(): Promise<Browser | null> {
  if (!executable) {
    console.log(`  (skipping the browser tests: ${NO_CHROMIUM})`);
    return null;
  }
  browser ??= await chromium.launch(launchOptions(executable));
  return browser;
}

/** A page that records console errors, uncaught exceptions and failed requests. */
async function openPage(b: Browser) {
  const page = await b.newPage({ viewport: { width: 1280, height: 900 } });
  const problems: string[] = [];
  page.on('console', (m) => { if (m.type() === 'error') problems.push(`console: ${m.text()}`); });
  page.on('pageerror', (e) => problems.push(`exception: ${e.message}`));
  page.on('requestfailed', (r) => problems.push(`request failed: ${r.url()} ${r.failure()?.errorText}`));
  page.on('response', (r) => { if (r.status() >= 400) problems.push(`HTTP ${r.status()}: ${r.url()}`); });
  return { page, problems };
}

/** A page showing one view, mounted; null when there is no browser (the test then skips, saying why). */
async function openView(id: string) {
  const b = await openBrowser();
  if (!b) return null;
  const opened = await openPage(b);
  await opened.page.goto(`${server.url}#${id}`);
  await opened.page.waitForSelector(`#panel-${id}[data-state=ready]`);
  return opened;
}

const visiblePanel = (page: Page) => page.evaluate(() => Array.from(document.querySelectorAll('[role=tabpanel]')).filter((p) => !(p as HTMLElement).hidden).map((p) => p.id));

test('page: title, four tabs, the simulator loaded, no errors; a screenshot', async () => {
  const b = await openBrowser();
  if (!b) return;
  const { page, problems } = await openPage(b);
  await page.goto(server.url);
  await page.waitForSelector('html[data-explorer]');
  assert.is(await page.getAttribute('html', 'data-explorer'), 'ready');
  assert.is(await page.title(), 'granule explorer');
  assert.is(await page.getAttribute('html', 'lang'), 'en');
  const tabs = page.getByRole('tab');
  assert.equal(await tabs.allTextContents(), ['Walk', 'Practice', 'Granularity', 'Alias planes']);
  assert.is(await page.getAttribute('[role=tablist]', 'aria-label'), 'Views');
  assert.equal(await visiblePanel(page), ['panel-walk']);
  await page.waitForSelector('#panel-walk[data-state=ready], #panel-walk[data-state=failed]');
  assert.is(await page.getAttribute('#panel-walk', 'data-state'), 'ready');
  assert.ok(await page.locator('#errors').isHidden(), 'the error area is hidden');
  assert.is(await page.locator('#error-list li').count(), 0, 'and empty');
  assert.ok(await page.getByRole('link', { name: 'docs/explorer.md' }).isVisible(), 'the footer links the tutorial');
  mkdirSync(shots, { recursive: true });
  await page.screenshot({ path: join(shots, 'shell.png'), fullPage: true });
  await page.emulateMedia({ colorScheme: 'dark' });
  await page.screenshot({ path: join(shots, 'shell-dark.png'), fullPage: true });
  assert.equal(problems, []);
  await page.close();
});

test('page: keyboard tab switching (arrows wrap, Home, End; roving tabindex) and the URL hash', async () => {
  const b = await openBrowser();
  if (!b) return;
  const { page, problems } = await openPage(b);
  await page.goto(server.url);
  await page.waitForSelector('html[data-explorer=ready]');
  await page.focus('#tab-walk');
  const state = () => page.evaluate(() => ({
    focused: document.activeElement?.id,
    selected: Array.from(document.querySelectorAll('[role=tab][aria-selected=true]')).map((t) => t.id),
    tabbable: Array.from(document.querySelectorAll('[role=tab]')).filter((t) => (t as HTMLElement).tabIndex === 0).map((t) => t.id),
    hash: location.hash,
  }));
  const expect = async (id: string, key: string) => {
    await page.keyboard.press(key);
    const s = await state();
    assert.equal(s, { focused: `tab-${id}`, selected: [`tab-${id}`], tabbable: [`tab-${id}`], hash: `#${id}` }, `after ${key}`);
    assert.equal(await visiblePanel(page), [`panel-${id}`], `after ${key}`);
    assert.ok(await page.locator(`#panel-${id}`).isVisible(), `panel-${id} is visible`);
  };
  await expect('practice', 'ArrowRight');
  await expect('granularity', 'ArrowRight');
  await expect('practice', 'ArrowLeft');
  await expect('planes', 'End');
  await expect('walk', 'ArrowRight');
  await expect('planes', 'ArrowLeft');
  await expect('walk', 'Home');
  // Tab from the tab list goes into the panel, not along the tabs.
  await page.keyboard.press('Tab');
  assert.is.not(await page.evaluate(() => document.activeElement?.getAttribute('role')), 'tab');

  await page.goto(`${server.url}#granularity`);
  await page.waitForSelector('html[data-explorer=ready]');
  assert.equal(await visiblePanel(page), ['panel-granularity']);
  assert.is(await page.getAttribute('#tab-granularity', 'aria-selected'), 'true');
  await page.evaluate(() => { location.hash = '#planes'; });
  await page.waitForFunction(() => !(document.getElementById('panel-planes') as HTMLElement).hidden);
  await page.click('#tab-practice');
  assert.equal(await visiblePanel(page), ['panel-practice']);
  assert.is(await page.evaluate(() => location.hash), '#practice');
  assert.equal(problems, []);
  await page.close();
});

test('page: every view mounts without an error when its tab is shown; a screenshot of each', async () => {
  const b = await openBrowser();
  if (!b) return;
  const { page, problems } = await openPage(b);
  await page.goto(server.url);
  await page.waitForSelector('html[data-explorer=ready]');
  mkdirSync(shots, { recursive: true });
  for (const id of await page.evaluate(() => Array.from(document.querySelectorAll('[role=tab]')).map((t) => t.id.replace(/^tab-/, '')))) {
    await page.click(`#tab-${id}`);
    await page.waitForSelector(`#panel-${id}[data-state=ready], #panel-${id}[data-state=failed]`, { timeout: 60000 });
    assert.is(await page.getAttribute(`#panel-${id}`, 'data-state'), 'ready', `${id}: ${await page.locator('#error-list').textContent()}`);
    await page.screenshot({ path: join(shots, `shell-${id}.png`), fullPage: true });
  }
  assert.is(await page.locator('#error-list li').count(), 0);
  assert.equal(problems, []);
  await page.close();
});

test('walk view: the HPA or fault shown for the demo addresses is granule walk --json\'s; an Access fills the TLB', async () => {
  const opened = await openView('walk');
  if (!opened) return;
  const { page, problems } = opened;
  const cases: [string, 'read' | 'write' | 'fetch', boolean][] = [
    ['0x401234', 'read', true], ['0x401234', 'write', true], ['0x406000', 'read', false], ['0x405000', 'write', false], ['0x600123', 'read', true], ['0x404008', 'write', true],
  ];
  for (const [gva, kind, user] of cases) {
    await page.fill('[data-testid=walk-gva]', gva);
    await page.selectOption('[data-testid=walk-kind]', kind);
    await page.selectOption('[data-testid=walk-user]', user ? 'user' : 'supervisor');
    await page.click('[data-testid=walk-run]');
    const want = (await cliWalk(gva, kind, user)).outcome;
    const fault = page.locator('[data-testid=walk-fault]');
    const what = `${gva} ${kind} ${user ? 'user' : 'supervisor'}`;
    assert.is(await fault.getAttribute('data-kind'), want.kind, `${what}: outcome kind`);
    if (want.kind === 'ok') assert.is((await page.locator('[data-testid=walk-hpa]').textContent())?.trim(), want.hpa, `${what}: HPA`);
    else assert.is(await fault.getAttribute('data-code'), want.kind === 'pf' ? want.errorCodeHex : want.kind === 'ept-violation' ? want.qualificationHex : '', `${what}: error code or qualification`);
    assert.ok(await page.locator('[data-testid=walk-steps] tr[data-ref]').count() > 0, `${what}: the steps are shown`);
  }
  // An architectural access: a miss, then a hit from the entry it filled.
  await page.fill('[data-testid=walk-gva]', '0x401234');
  await page.selectOption('[data-testid=walk-kind]', 'read');
  await page.selectOption('[data-testid=walk-user]', 'user');
  await page.click('[data-testid=walk-access]');
  assert.is(await page.getAttribute('[data-testid=walk-access-result]', 'data-tlb'), 'miss');
  await page.click('[data-testid=walk-access]');
  assert.is(await page.getAttribute('[data-testid=walk-access-result]', 'data-tlb'), 'hit');
  assert.is(await page.getAttribute('[data-testid=walk-tlb]', 'data-hit'), 'yes');
  mkdirSync(shots, { recursive: true });
  await page.screenshot({ path: join(shots, 'walk.png'), fullPage: true });
  assert.equal(problems, []);
  await page.close();
});

test('practice view: a seeded problem, a wrong answer told so, the revealed answer checked right', async () => {
  const opened = await openView('practice');
  if (!opened) return;
  const { page, problems } = opened;
  await page.fill('[data-testid=practice-seed]', '42');
  await page.click('[data-testid=practice-seed-load]');
  await page.waitForSelector('[data-testid=practice-question][data-seed="42"]');
  await page.fill('[data-testid=practice-answer]', '0x1');
  await page.click('[data-testid=practice-check]');
  assert.is(await page.getAttribute('[data-testid=practice-verdict]', 'data-verdict'), 'wrong');
  await page.click('[data-testid=practice-reveal]');
  const right = await page.getAttribute('[data-testid=practice-solution]', 'data-answer');
  assert.ok(right, 'the solution carries its answer');
  await page.fill('[data-testid=practice-answer]', right!);
  await page.click('[data-testid=practice-check]');
  assert.is(await page.getAttribute('[data-testid=practice-verdict]', 'data-verdict'), 'right');
  await page.screenshot({ path: join(shots, 'practice.png'), fullPage: true });
  assert.equal(problems, []);
  await page.close();
});

/**
 * What `granule compare` finds for a bundled trace (compareTrace, in-process), once per trace and
 * epoch length: only the runs the test looks at (gpt-wp at the unit sizes it moves through; page
 * level and SPP come with every comparison).
 */
const compared = new Map<string, Promise<CompareResult>>();
function cliCompare(trace: string, epochWrites: number): Promise<CompareResult> {
  const key = `${trace}|e${epochWrites}`;
  let r = compared.get(key);
  if (!r) {
    r = compareTrace(join(root, 'traces', `${trace}.grt`), { modes: ['gpt-wp'], granularities: [4096, 1024, 256, 64], epochWrites });
    compared.set(key, r);
  }
  return r;
}

test('granularity view: the checkpoint bytes and faults shown as the control moves are granule compare --json\'s for the same trace', async () => {
  const opened = await openView('granularity');
  if (!opened) return;
  const { page, problems } = opened;
  const epochWrites = 5000;
  await page.fill('[data-testid=gran-epoch-writes]', String(epochWrites));
  await page.press('[data-testid=gran-epoch-writes]', 'Enter');
  const cli = await cliCompare('kvstore-wasm', epochWrites);
  const shown = async (config: string) => {
    await page.waitForSelector(`[data-testid=gran-checkpoint-bytes][data-config="${config}"][data-epoch-writes="${epochWrites}"][data-bytes]`, { timeout: 60_000 });
    return { bytes: Number(await page.getAttribute('[data-testid=gran-checkpoint-bytes]', 'data-bytes')), faults: Number(await page.getAttribute('[data-testid=gran-faults]', 'data-value')) };
  };
  const want = (mode: string, layout: string, g: number | string) => cli.rows.find((x) => x.mode === mode && x.layout === layout && x.granularity === g)!;
  await page.selectOption('[data-testid=gran-mode]', 'gpt-wp');
  const t0 = performance.now();
  for (const [pos, g] of [[0, 4096], [2, 1024], [4, 256], [6, 64]] as const) {
    await page.fill('[data-testid=gran-slider]', String(pos));
    const got = await shown(`gpt-wp/spread/${g}`);
    const w = want('gpt-wp', 'spread', g);
    assert.is(got.bytes, w.checkpointBytes, `gpt-wp ${g} B: checkpoint bytes`);
    assert.is(got.faults, w.faults, `gpt-wp ${g} B: faults`);
  }
  console.log(`  (granularity view: four settings computed and shown in ${((performance.now() - t0) / 1000).toFixed(1)} s)`);
  // Once computed, moving back is immediate.
  const t1 = performance.now();
  await page.fill('[data-testid=gran-slider]', '2');
  await shown('gpt-wp/spread/1024');
  assert.ok(performance.now() - t1 < 1000, `a computed setting shows at once (${(performance.now() - t1).toFixed(0)} ms)`);
  await page.selectOption('[data-testid=gran-mode]', 'page');
  const page0 = await shown(PAGE_KEY);
  assert.is(page0.bytes, want('page', 'packed', 4096).checkpointBytes, 'page level');
  await page.selectOption('[data-testid=gran-mode]', 'spp');
  assert.is((await shown('spp/packed/128')).bytes, want('spp', 'packed', 128).checkpointBytes, 'SPP');
  await page.selectOption('[data-testid=gran-mode]', 'gpt-wp');
  await page.fill('[data-testid=gran-slider]', '4');
  await shown('gpt-wp/spread/256');
  mkdirSync(shots, { recursive: true });
  await page.screenshot({ path: join(shots, 'granularity.png'), fullPage: true });
  assert.equal(problems, []);
  await page.close();
});

/** A valid trace with writes but no allocation events: it cannot be placed in the spread layout. */
function noAllocTrace(): Buffer {
  const file = join(tmp, 'noalloc.grt');
  const w = TraceWriter.create(file, { source: 'hand', pageSize: 4096 });
  for (let i = 0; i < 100; i++) w.access(EV_WRITE, 0x7ffd_0000_0000 + i * 64, 8, new Uint8Array(8).fill(i));
  w.close();
  return readFileSync(file);
}

test('granularity view: a file that is not a trace, a cut one, an empty one, one without allocations and one too large get specific messages, and the page keeps working', async () => {
  const opened = await openView('granularity');
  if (!opened) return;
  const { page, problems } = opened;
  const kv = readFileSync(join(root, 'traces', 'kvstore-wasm.grt'));
  const cases: [string, Buffer, RegExp][] = [
    ['notes.txt', Buffer.from('hello, this is not a trace\n'), /notes\.txt.*bad magic: this is not a granule trace/],
    ['cut.grt', kv.subarray(0, kv.length - 5000), /cut\.grt.*(ends|cut short)/],
    ['empty.grt', Buffer.alloc(0), /empty\.grt.*empty/],
    ['noalloc.grt', noAllocTrace(), /noalloc\.grt.*no allocation events/],
  ];
  // Refused by its size before a byte is read (a sparse file: nothing is written to disk).
  const huge = join(tmp, 'huge.grt');
  writeFileSync(huge, '');
  truncateSync(huge, 64 * 1024 * 1024 + 1);
  for (const [name, buffer, want] of [...cases, ['huge.grt', huge, /huge\.grt is 64\.0 MiB, over the explorer's limit of 64\.0 MiB/] as const]) {
    await page.setInputFiles('[data-testid=gran-file]', typeof buffer === 'string' ? buffer : { name, mimeType: 'application/octet-stream', buffer });
    // The message as it is when it names this file (read in the page, so a re-render cannot race it).
    const text = await page.waitForFunction((n) => {
      const e = document.querySelector('[data-testid=gran-error]') as HTMLElement | null;
      const t = e && !e.hidden ? e.textContent ?? '' : '';
      return t.includes(n) ? t : null;
    }, name, { timeout: 90_000 }).then((h) => h.jsonValue() as Promise<string>, async (e: Error) => {
      throw new Error(`${name}: no message naming it (status: ${await page.locator('[data-testid=gran-status]').textContent()}; error area: ${await page.locator('[data-testid=gran-error]').textContent()}): ${e.message}`);
    });
    assert.match(text, want, `${name}: ${text}`);
    assert.ok(await page.locator('#errors').isVisible(), `${name}: also in the page's error area`);
  }
  // Still working: a bundled trace computes.
  await page.selectOption('[data-testid=gran-mode]', 'page');
  await page.waitForSelector('[data-testid=gran-checkpoint-bytes][data-bytes]', { timeout: 60_000 });
  assert.equal(problems.filter((p) => !/^console:/.test(p)), []);
  await page.close();
});

test('alias planes view: regrouping a frame rewrites guest PTEs only (no EPT entry, no byte changes)', async () => {
  const opened = await openView('planes');
  if (!opened) return;
  const { page, problems } = opened;
  const unit = page.locator('[data-testid=planes-unit]');
  const options = await unit.locator('option').evaluateAll((os) => os.map((o) => (o as HTMLOptionElement).value));
  assert.ok(options.length >= 2, `unit choices: ${options.join(', ')}`);
  await unit.selectOption(options[options.length - 1]!);
  const ptes = Number(await page.getAttribute('[data-testid=planes-ptes-changed]', 'data-retargeted'));
  assert.ok(ptes > 0, `guest PTEs pointed elsewhere: ${ptes}`);
  assert.is(await page.getAttribute('[data-testid=planes-ept-changed]', 'data-value'), '0');
  assert.is(await page.getAttribute('[data-testid=planes-bytes-changed]', 'data-value'), '0');
  await page.screenshot({ path: join(shots, 'planes.png'), fullPage: true });
  assert.equal(problems, []);
  await page.close();
});

test('page: a missing simulator module or trace index is reported in the error area, never a blank page', async () => {
  const b = await openBrowser();
  if (!b) return;
  let { page } = await openPage(b);
  await page.route('**/sim.release.wasm', (r) => r.fulfill({ status: 404, body: 'gone' }));
  await page.goto(server.url);
  await page.waitForSelector('html[data-explorer]');
  assert.is(await page.getAttribute('html', 'data-explorer'), 'failed');
  assert.ok(await page.locator('#errors').isVisible());
  assert.match(await page.locator('#error-list').textContent() ?? '', /sim\.release\.wasm.*HTTP 404/);
  assert.match(await page.locator('#status').textContent() ?? '', /could not load the simulator/);
  assert.ok(await page.getByRole('heading', { name: 'granule explorer' }).isVisible());
  assert.is(await page.getAttribute('#panel-walk', 'data-state'), null, 'no view mounted without the module');
  await page.close();

  ({ page } = await openPage(b));
  await page.route('**/traces.json', (r) => r.fulfill({ status: 500, body: 'broken' }));
  await page.goto(server.url);
  await page.waitForSelector('html[data-explorer]');
  assert.is(await page.getAttribute('html', 'data-explorer'), 'ready', 'the page works without traces');
  assert.match(await page.locator('#error-list').textContent() ?? '', /trace index.*HTTP 500/);
  await page.click('#errors-clear');
  assert.ok(await page.locator('#errors').isHidden(), 'dismissed');
  await page.close();
});

test.run();
