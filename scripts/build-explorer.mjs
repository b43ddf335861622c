#!/usr/bin/env node
// Builds the explorer (explorer/README.md): a static page in build/explorer/ that runs the
// simulator, trace reader and monitor in the browser.
//
//   node scripts/build-explorer.mjs [--out DIR]      (default build/explorer; needs build/sim.release.wasm)
//
// It bundles explorer/main.ts (and the CSS it imports) to explorer.js + explorer.css, and
// explorer/sweep.worker.ts (the Granularity view's worker) to sweep.worker.js; copies index.html, the
// simulator module and the bundled traces; and writes traces.json, the traces' index. Files are
// written to a staging directory and renamed into place one by one, so a server reading the
// directory while it is rebuilt never sees a half-written file.
import { build } from 'esbuild';
import { tsImport } from 'tsx/esm/api';
import {
  existsSync, mkdirSync, readFileSync, readdirSync, renameSync, rmSync, statSync, copyFileSync, writeFileSync, mkdtempSync,
} from 'node:fs';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const at = (...p) => join(root, ...p);

/** Traces bigger than this stay out of the page (a browser downloads each one it opens). */
const MAX_TRACE_BYTES = 8 * 1024 * 1024;

/**
 * esbuild plugin: an import that resolves to a module under src/ with a `.browser.ts` sibling gets
 * the sibling (src/trace/codec.ts -> src/trace/codec.browser.ts, src/backend.ts ->
 * src/backend.browser.ts, ...): the browser counterparts of Node-only modules, used when they exist.
 */
const browserSwaps = {
  name: 'granule-browser-swaps',
  setup(b) {
    const src = at('src') + sep;
    b.onResolve({ filter: /^\.\.?\/.*\.ts$/ }, (args) => {
      const path = resolve(args.resolveDir, args.path);
      if (!path.startsWith(src) || path.endsWith('.browser.ts')) return undefined;
      const swap = path.replace(/\.ts$/, '.browser.ts');
      return existsSync(swap) ? { path: swap } : undefined;
    });
  },
};

class BuildFailure extends Error {}

function fail(message) {
  throw new BuildFailure(message);
}

function parseArgs(argv) {
  let out = at('build', 'explorer');
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--out' && argv[i + 1]) out = resolve(argv[++i]);
    else fail(`unknown argument '${argv[i]}' (usage: node scripts/build-explorer.mjs [--out DIR])`);
  }
  return { out };
}

const show = (p) => {
  const rel = relative(process.cwd(), p);
  return rel && !rel.startsWith('..') ? rel : p;
};

function size(n) {
  return n < 1024 * 1024 ? `${(n / 1024).toFixed(1)} KiB` : `${(n / 1024 / 1024).toFixed(2)} MiB`;
}

async function bundle(stage) {
  const entryPoints = { explorer: at('explorer', 'main.ts'), 'sweep.worker': at('explorer', 'sweep.worker.ts') };
  let result;
  try {
    result = await build({
      entryPoints,
      outdir: stage,
      bundle: true,
      platform: 'browser',
      format: 'esm',
      target: 'es2022',
      // Half the bytes to load; the source maps keep it debuggable.
      minify: true,
      sourcemap: true,
      // Node built-ins stay imports; they must only be reached on Node-only paths, as dynamic
      // imports (a static one would stop the whole page from loading: checked below).
      external: ['node:*'],
      // Images and fonts a view's CSS refers to are copied beside it.
      loader: { '.png': 'file', '.svg': 'file', '.woff2': 'file' },
      plugins: [browserSwaps],
      metafile: true,
      logLevel: 'warning',
      absWorkingDir: root,
    });
  } catch (e) {
    fail(`esbuild could not bundle the explorer (the messages above say where)`);
  }
  // A static import of node:* in a browser bundle is fatal at load time: say which source did it.
  const problems = [];
  for (const [file, output] of Object.entries(result.metafile.outputs)) {
    const stat = output.imports.filter((i) => i.external && i.kind === 'import-statement' && i.path.startsWith('node:'));
    if (!stat.length) continue;
    const names = new Set(stat.map((i) => i.path));
    const from = Object.entries(result.metafile.inputs)
      .filter(([, input]) => input.imports.some((i) => names.has(i.path) && i.kind === 'import-statement'))
      .map(([p]) => p);
    problems.push(`${file.split('/').pop()} imports ${[...names].join(', ')} statically (from ${from.join(', ') || '?'})`);
  }
  if (problems.length) {
    fail(`the browser bundle would not load: ${problems.join('; ')}. Make those imports dynamic `
      + `(await import('node:...') on the Node-only path) or give the module a browser counterpart, NAME.browser.ts beside NAME.ts.`);
  }
  return Object.keys(entryPoints);
}

async function traceIndex(stage) {
  const { traceInfo } = await tsImport(at('src', 'trace', 'reader.ts'), import.meta.url);
  let manifest = [];
  try {
    manifest = JSON.parse(readFileSync(at('traces', 'MANIFEST.json'), 'utf8'));
  } catch {
    // descriptions then come from the traces' own metadata
  }
  const described = new Map(manifest.map((m) => [m.name, m.description]));
  const entries = [];
  const skipped = [];
  mkdirSync(join(stage, 'traces'), { recursive: true });
  const files = existsSync(at('traces')) ? readdirSync(at('traces')).filter((f) => f.endsWith('.grt')).sort() : [];
  for (const f of files) {
    const path = at('traces', f);
    const bytes = statSync(path).size;
    const name = f.replace(/\.grt$/, '');
    if (bytes > MAX_TRACE_BYTES) {
      skipped.push(`${f} (${size(bytes)})`);
      continue;
    }
    let info;
    try {
      info = traceInfo(path);
    } catch (e) {
      fail(`traces/${f} does not read: ${e.message}`);
    }
    const command = Array.isArray(info.meta.command) ? info.meta.command.join(' ') : '';
    const description = described.get(name) ?? (command ? `${info.meta.source}: ${command}` : info.meta.source);
    copyFileSync(path, join(stage, 'traces', f));
    entries.push({ name, file: `traces/${f}`, bytes, events: info.events, source: info.meta.source, description });
  }
  writeFileSync(join(stage, 'traces.json'), JSON.stringify(entries, null, 2) + '\n');
  return { entries, skipped };
}

/** Every file under dir, as paths relative to it. */
function walk(dir, base = dir) {
  const out = [];
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...walk(p, base));
    else out.push(relative(base, p));
  }
  return out;
}

async function main() {
  const { out } = parseArgs(process.argv.slice(2));
  const wasm = at('build', 'sim.release.wasm');
  if (!existsSync(wasm)) fail(`build/sim.release.wasm is missing: run \`npm run build:sim\` first (or \`npm run build\`)`);
  for (const f of ['main.ts', 'sweep.worker.ts']) if (!existsSync(at('explorer', f))) fail(`explorer/${f} is missing`);

  // The stale-file sweep below must never run over a directory that is not an explorer build.
  if (existsSync(out) && readdirSync(out).length && !existsSync(join(out, 'index.html'))) {
    fail(`${show(out)} is not empty and holds no explorer build (no index.html): pick another --out`);
  }
  mkdirSync(dirname(out), { recursive: true });
  const stage = mkdtempSync(join(dirname(out), '.explorer-stage-'));
  try {
    const bundles = await bundle(stage);
    copyFileSync(at('explorer', 'index.html'), join(stage, 'index.html'));
    copyFileSync(wasm, join(stage, 'sim.release.wasm'));
    // The tutorial and its pictures travel with the page (the footer links to it).
    if (existsSync(at('docs', 'explorer.md'))) {
      mkdirSync(join(stage, 'docs', 'img'), { recursive: true });
      copyFileSync(at('docs', 'explorer.md'), join(stage, 'docs', 'explorer.md'));
      const img = at('docs', 'img');
      for (const f of existsSync(img) ? readdirSync(img) : []) {
        if (/^explorer-.*\.png$/.test(f)) copyFileSync(join(img, f), join(stage, 'docs', 'img', f));
      }
    }
    const { entries, skipped } = await traceIndex(stage);

    // Move into place file by file, then drop what the new build no longer has.
    const files = walk(stage);
    for (const f of files) {
      mkdirSync(dirname(join(out, f)), { recursive: true });
      renameSync(join(stage, f), join(out, f));
    }
    const keep = new Set(files);
    for (const f of walk(out)) if (!keep.has(f)) rmSync(join(out, f));

    const total = files.reduce((n, f) => n + statSync(join(out, f)).size, 0);
    const traceBytes = entries.reduce((n, t) => n + t.bytes, 0);
    console.log(`build-explorer: wrote ${show(out)}${sep}: ${bundles.map((b) => b + '.js').join(', ')}, explorer.css, index.html, `
      + `sim.release.wasm, ${entries.length} traces (${size(traceBytes)}) + traces.json; ${size(total)} in all`
      + (skipped.length ? `; left out (over ${size(MAX_TRACE_BYTES)}): ${skipped.join(', ')}` : ''));
  } finally {
    rmSync(stage, { recursive: true, force: true });
  }
}

try {
  await main();
} catch (e) {
  if (!(e instanceof BuildFailure)) throw e;
  console.error(`build-explorer: error: ${e.message}`);
  process.exitCode = 1;
}
