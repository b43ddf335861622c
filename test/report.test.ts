// The `granule compare` reports (src/report): the terminal table from a fixture result, and the
// self-contained HTML page: its embedded data, its escaping, that it loads nothing from the
// network, and (with chromium installed) that its charts really draw.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { mkdtempSync, mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import type { CompareResult, CompareRow } from '../src/report/types.ts';
import { formatCompareTable, summarizeCompare, fmtBytes, fmtInt, fmtRatio, fmtPercent, commandText } from '../src/report/table.ts';
import { renderCompareHtml, writeReport, buildCharts, loadChartJs, escapeHtml, ReportWriteError } from '../src/report/html.ts';
import { findChromium, CHROMIUM_ARGS, NO_CHROMIUM } from './support/browser.ts';

const FIXTURE = new URL('./fixtures/compare-result.json', import.meta.url);
const load = (): CompareResult => JSON.parse(readFileSync(FIXTURE, 'utf8'));
const strip = (s: string) => s.replace(/\x1b\[[0-9;]*m/g, '');
const rowOf = (r: CompareResult, label: string) => r.rows.find((x) => x.label === label)!;

/** The cells of the table line that starts with a label (columns are two or more spaces apart). */
function lineCells(table: string, label: string): string[] {
  const line = table.split('\n').find((l) => l.startsWith(`${label}  `));
  assert.ok(line, `a line for ${label}`);
  return line!.trim().split(/\s{2,}/);
}

/** The text of the element <script ... id="id">...</script>. */
function scriptById(html: string, id: string): string {
  const m = new RegExp(`<script type="application/json" id="${id}">([\\s\\S]*?)</script>`).exec(html);
  assert.ok(m, `script #${id}`);
  return m![1];
}

const count = (s: string, re: RegExp) => (s.match(re) ?? []).length;

test('number formats: separators, binary units that never print 1024, ratios, percentages', () => {
  assert.is(fmtInt(0), '0');
  assert.is(fmtInt(1234567), '1,234,567');
  assert.is(fmtInt(-1000), '-1,000');
  assert.is(fmtBytes(0), '0 B');
  assert.is(fmtBytes(1023), '1,023 B');
  assert.is(fmtBytes(1024), '1.00 KiB');
  assert.is(fmtBytes(2498560), '2.38 MiB');
  assert.is(fmtBytes(25153536), '24.0 MiB');
  assert.is(fmtBytes(589824), '576 KiB');
  assert.is(fmtBytes(1048575), '1.00 MiB'); // 1023.999 KiB
  assert.is(fmtBytes(142606336), '136 MiB');
  assert.is(fmtRatio(0.0993), '0.099');
  assert.is(fmtRatio(1), '1.00');
  assert.is(fmtRatio(13.947), '13.9');
  assert.is(fmtRatio(1234.4), '1,234');
  assert.is(fmtRatio(Infinity), '–');
  assert.is(fmtPercent(0.0993), '9.9%');
  assert.is(fmtPercent(0.139), '14%');
  assert.is(commandText(['vacation', '-n2', "it's here", 'a b']), `vacation -n2 'it'\\''s here' 'a b'`);
});

test('text table: a line per row with the right numbers, a header block, the notes', () => {
  const r = load();
  const t = formatCompareTable(r);
  assert.not.match(t, /\x1b\[/, 'no colour unless asked');
  for (const row of r.rows) assert.ok(t.split('\n').some((l) => l.startsWith(`${row.label}  `)), row.label);
  assert.match(t, 'traces/vacation-native.grt');
  assert.match(t, '1,130,846 events (granule-record-native): vacation -n2 -q60 -u90 -r16384 -t4096');
  assert.match(t, '14 epochs of 20,000 writes; byte ideal 1.72 MiB');
  // hand-checked against the fixture: 2,498,560 B = 2.38 MiB, 0.0993 of page level, 1.385 x ideal
  assert.equal(lineCells(t, 'gpt-wp 64 B'), ['gpt-wp 64 B', '2.38 MiB', '0.099', '1.39', '39,040', '0', '150,232', '3,004,640', '576 KiB', '136 MiB']);
  assert.equal(lineCells(t, 'ept-wp 64 B'), ['ept-wp 64 B', '2.38 MiB', '0.099', '1.39', '0', '39,040 (eptViolation)', '228,312', '4,566,240', '576 KiB', '136 MiB']);
  assert.equal(lineCells(t, 'SPP 128 B (packed)'), ['SPP 128 B (packed)', '3.12 MiB', '0.130', '1.81', '0', '25,527 (sppViolation)', '7,274', '58,192', '40.0 KiB', '2.13 MiB']);
  assert.equal(lineCells(t, 'page level (packed)'), ['page level (packed)', '24.0 MiB', '1.00', '13.9', '6,141', '0', '13,415', '107,320', '40.0 KiB', '2.13 MiB']);
  // the ideal has no MMU: dashes, not zeros
  assert.equal(lineCells(t, 'byte ideal'), ['byte ideal', '1.72 MiB', '0.072', '1.00', '–', '–', '–', '–', '–', '–']);
  // numbers are right-aligned: every cell of a column ends at the same place
  const lines = t.split('\n').filter((l) => r.rows.some((x) => l.startsWith(`${x.label}  `)));
  const end = (l: string, s: string) => l.indexOf(s) + s.length;
  assert.is(new Set(lines.map((l) => end(l, lineCells(t, l.split(/\s{2,}/)[0])[1]))).size, 1, 'checkpoint column aligned');
  for (const l of t.split('\n')) assert.ok(l.length <= 124, `line within ~120 columns: ${l.length}`);
  for (const n of r.notes) assert.match(t, n);
  assert.match(t, 'At 64 B the checkpoint holds 9.9% of page level and 1.39× the byte ideal.');
});

test('text table: colour only when asked, and it does not change the layout', () => {
  const r = load();
  const c = formatCompareTable(r, { color: true });
  assert.match(c, /\x1b\[1m/);
  assert.is(strip(c), formatCompareTable(r));
});

test('summary: names the mode when modes at the finest granularity differ, works without baselines', () => {
  const r = load();
  r.rows.find((x) => x.label === 'pml 64 B')!.checkpointBytes += 64;
  assert.match(summarizeCompare(r)[0], /^At 64 B \(gpt-wp\) the checkpoint/);
  const bare: CompareResult = { ...load(), rows: [rowOf(load(), 'gpt-wp 256 B')] };
  assert.equal(summarizeCompare(bare), ['At 256 B the checkpoint is 2.62× the byte ideal.']);
});

test('html: one document, scripts present, the embedded result parses back to the same rows', () => {
  const r = load();
  const html = renderCompareHtml(r);
  assert.is(count(html, /<html[\s>]/gi), 1);
  assert.is(count(html, /<\/html>/gi), 1);
  assert.ok(html.startsWith('<!doctype html>'));
  assert.is(count(html, /<script[\s>]/gi), 4);
  assert.is(count(html, /<\/script>/gi), 4);
  const back = JSON.parse(scriptById(html, 'granule-result')) as CompareResult;
  assert.equal(back.rows, r.rows);
  assert.equal(back, r);
  // every row is in the table, and the summary sentence is on the page
  for (const row of r.rows) assert.match(html, `<th scope="row" data-v="${r.rows.indexOf(row)}">${escapeHtml(row.label)}</th>`);
  assert.match(html, 'At 64 B the checkpoint holds 9.9% of page level and 1.39× the byte ideal.');
  // each chart has an accessible name and a table of its values
  const charts = JSON.parse(scriptById(html, 'granule-charts')) as ReturnType<typeof buildCharts>;
  assert.equal(charts.map((c) => c.id), ['chart-bytes', 'chart-stops', 'chart-epochs', 'chart-tlb', 'chart-memory']);
  for (const c of charts) {
    assert.match(html, new RegExp(`<canvas id="${c.id}" role="img" aria-label="[^"]{40,}"`));
    for (const s of c.series) assert.is(s.y.length, c.x.length, `${c.id} ${s.label}`);
  }
  assert.is(count(html, /<details><summary>Values as a table<\/summary>/g), charts.length);
  assert.ok(html.length < 600_000, `size ${html.length}`);
});

test('html charts: checkpoint bytes per mode, coinciding modes drawn once, the baselines as lines', () => {
  const r = load();
  const [bytes, stops, epochs] = buildCharts(r);
  assert.equal(bytes.x, [64, 128, 256, 512, 1024, 2048, 4096]);
  const joint = bytes.series.find((s) => s.label === 'gpt-wp, ept-wp, ept-dirty, pml')!;
  assert.ok(joint, bytes.series.map((s) => s.label).join(' | '));
  assert.equal(joint.y, bytes.x.map((g) => rowOf(r, `gpt-wp ${g} B`).checkpointBytes));
  const page = bytes.series.find((s) => s.label === 'page level (packed)')!;
  assert.is(page.kind, 'ref');
  assert.ok(page.y.every((v) => v === 25153536));
  assert.ok(bytes.series.find((s) => s.label === 'byte ideal')!.y.every((v) => v === r.idealBytes));
  assert.equal(bytes.series.find((s) => s.label === 'spp')!.y, [null, 3267456, null, null, null, null, null]);
  assert.is(bytes.yMin, 1024 * 1024);
  assert.is(bytes.yMax, 32 * 1024 * 1024);
  // faults of gpt-wp equal exits of ept-wp (the same dirty units); ept-dirty has neither
  assert.ok(stops.series.some((s) => s.label === 'gpt-wp faults, ept-wp exits'));
  assert.match(stops.caption, 'ept-dirty: no faults and no exits');
  // a zero cannot sit on a log axis: pml at 4096 B had no PML-full exit
  assert.is(stops.series.find((s) => s.label === 'pml exits')!.y[6], null);
  assert.equal(epochs.x, Array.from({ length: 14 }, (_, i) => i));
  assert.equal(epochs.series.map((s) => s.label),
    ['page level (packed)', 'byte ideal', '64 B: gpt-wp, ept-wp, ept-dirty, pml; adaptive (pml)', 'adaptive (gpt-wp), adaptive (ept-wp)']);
  assert.equal(epochs.series[1].y, rowOf(r, 'byte ideal').epochs.map((e) => e.checkpointBytes));
});

test('html: text from the result is escaped everywhere', () => {
  const evil = '</script><img src=x onerror=alert(1)>';
  const r = load();
  r.trace.path = evil;
  r.trace.command = ['sh', '-c', '</SCRIPT><script>alert(2)</script>'];
  r.notes.push(`note ${evil} & more`);
  r.rows[0].label = `<b>${evil}</b>`;
  r.rows[0].exits = { [evil]: 3 };
  r.machine = { cpu: evil, node: '"><svg onload=alert(3)>' };
  const html = renderCompareHtml(r);
  assert.is(count(html, /<img/gi), 0);
  assert.is(count(html, /<svg/gi), 0);
  assert.is(count(html, /<b>/gi), 0);
  assert.is(count(html, /<script[\s>]/gi), 4);
  assert.is(count(html, /<\/script/gi), 4);
  assert.match(html, '&lt;/script&gt;&lt;img src=x onerror=alert(1)&gt;');
  const back = JSON.parse(scriptById(html, 'granule-result')) as CompareResult;
  assert.is(back.trace.path, evil);
  assert.equal(back.trace.command, r.trace.command);
  assert.is(back.rows[0].label, r.rows[0].label);
  const charts = scriptById(html, 'granule-charts');
  assert.not.match(charts, '<');
  JSON.parse(charts);
});

test('html: nothing is fetched from the network; the only URLs are in the library licence banner', () => {
  const html = renderCompareHtml(load());
  assert.not.match(html, /\b(?:src|href)\s*=\s*["']?\s*(?:https?:)?\/\//i);
  assert.not.match(html, /<link\b/i);
  const lib = loadChartJs();
  const css = /<style>([\s\S]*?)<\/style>/.exec(html)![1];
  assert.not.match(css, /@import|url\(/i);
  assert.match(lib.version, /^4\./);
  assert.ok(html.includes(lib.source), 'Chart.js inlined');
  assert.not.match(html.replace(lib.source, ''), /https?:/i);
});

test('html: degenerate results (no fixed granularities, one epoch, no rows) still render', () => {
  const r = load();
  const page = rowOf(r, 'page level (packed)'), ideal = rowOf(r, 'byte ideal');
  const one = (x: CompareRow) => ({ ...x, epochs: x.epochs.slice(0, 1) });
  const small: CompareResult = { ...r, epochs: 1, rows: [one(page), one(ideal)], notes: [] };
  assert.equal(buildCharts(small).map((c) => c.id), ['chart-epochs']);
  assert.match(renderCompareHtml(small), '<canvas id="chart-epochs"');
  assert.match(formatCompareTable(small), 'page level (packed)');
  const empty: CompareResult = { ...r, rows: [], notes: [] };
  assert.equal(buildCharts(empty), []);
  assert.match(renderCompareHtml(empty), '<table class="results sortable">');
  assert.match(formatCompareTable(empty), 'configuration');
});

test('writeReport: renames into place and leaves no temp file, also when it fails', () => {
  const dir = mkdtempSync(join(tmpdir(), 'granule-report-'));
  try {
    const out = join(dir, 'r.html');
    writeReport(out, '<!doctype html><p>one</p>');
    writeReport(out, '<!doctype html><p>two</p>');
    assert.is(readFileSync(out, 'utf8'), '<!doctype html><p>two</p>');
    assert.equal(readdirSync(dir), ['r.html']);
    // a directory in the way: the rename fails, the temp file goes, the error says where and what to do
    mkdirSync(join(dir, 'taken.html'));
    writeFileSync(join(dir, 'taken.html', 'keep'), 'x');
    assert.throws(() => writeReport(join(dir, 'taken.html'), 'x'), (e: Error) => e instanceof ReportWriteError && /taken\.html/.test(e.message));
    assert.equal(readdirSync(dir).sort(), ['r.html', 'taken.html']);
    assert.throws(() => writeReport(join(dir, 'missing', 'r.html'), 'x'), (e: Error) => e instanceof ReportWriteError && /missing.*create its directory/.test(e.message));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('html: the page script parses, and in chromium draws every chart without an error', () => {
  const r = load();
  const html = renderCompareHtml(r);
  const scripts = [...html.matchAll(/<script>([\s\S]*?)<\/script>/g)].map((m) => m[1]);
  assert.is(scripts.length, 2);
  new Function(scripts[1]); // a syntax error would throw here
  const chromium = findChromium();
  if (!chromium) {
    console.log(`  (skipping the browser half: ${NO_CHROMIUM})`);
    return;
  }
  const dir = mkdtempSync(join(tmpdir(), 'granule-report-'));
  try {
    const file = join(dir, 'r.html');
    writeReport(file, html);
    const run = spawnSync(chromium, ['--headless', ...CHROMIUM_ARGS, '--virtual-time-budget=3000', '--dump-dom', `file://${file}`],
      { encoding: 'utf8', timeout: 60_000 });
    assert.is(run.status, 0, run.stderr);
    assert.match(run.stdout, `data-charts="${buildCharts(r).length}"`);
    assert.match(run.stdout, /id="script-error" class="error" role="alert" hidden/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test.run();
