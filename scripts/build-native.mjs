#!/usr/bin/env node
// npm's install step: builds the native parts (binding.gyp: granule_kvm, granule_baselines; the
// guest image through scripts/build-guest.ts when present). It always exits 0: a missing compiler,
// node-gyp or header set only costs the KVM backend and the baselines, so it prints one line per
// skipped part saying why, and the TypeScript side explains again, with what to do, when a user
// asks for them. The simulator backend needs none of this.
//
// It runs `node-gyp configure build`, never `rebuild`: node-gyp's clean step deletes all of build/,
// which also holds the simulator's wasm.
import { spawnSync } from 'node:child_process';
import { accessSync, constants, existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { availableParallelism } from 'node:os';
import { delimiter, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = dirname(dirname(fileURLToPath(import.meta.url)));
const require = createRequire(join(root, 'package.json'));
const verbose = process.argv.includes('--verbose');
const say = (line) => console.log(`granule: ${line}`);

function onPath(name) {
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    try {
      accessSync(join(dir, name), constants.X_OK);
      return true;
    } catch {
      // keep looking
    }
  }
  return false;
}

function findNodeGyp() {
  const candidates = [];
  // npm exports its bundled node-gyp to lifecycle scripts.
  if (process.env.npm_config_node_gyp) candidates.push(process.env.npm_config_node_gyp);
  try {
    candidates.push(require.resolve('node-gyp/bin/node-gyp.js'));
  } catch {
    // not a (dev) dependency in this install
  }
  const prefix = dirname(dirname(process.execPath));
  candidates.push(join(prefix, 'lib', 'node_modules', 'npm', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'));
  return candidates.find((c) => existsSync(c));
}

function buildAddons() {
  const names = ['granule_kvm', 'granule_baselines'];
  const skip = (why) => {
    for (const n of names) say(`skipped ${n}: ${why}`);
    return false;
  };
  if (process.platform !== 'linux') return skip(`KVM and the host baselines are Linux interfaces; this is ${process.platform}`);
  const missing = [];
  if (!['c++', 'g++', 'clang++'].some(onPath)) missing.push('a C++ compiler');
  if (!onPath('make')) missing.push('make');
  if (!onPath('python3')) missing.push('python3');
  if (missing.length) return skip(`${missing.join(', ')} not found (apt-get install -y g++ make python3, then npm rebuild granule)`);
  const gyp = findNodeGyp();
  if (!gyp) return skip('node-gyp not found (npm install node-gyp, then npm rebuild granule)');
  try {
    require.resolve('node-addon-api');
  } catch {
    return skip('node-addon-api is not installed (npm install node-addon-api, then npm rebuild granule)');
  }
  const args = [gyp, 'configure', 'build', `--jobs=${Math.min(4, availableParallelism())}`];
  // Build against this Node's own headers when it ships them, instead of downloading them.
  const prefix = dirname(dirname(process.execPath));
  if (!process.env.npm_config_nodedir && existsSync(join(prefix, 'include', 'node', 'node_api.h'))) args.push(`--nodedir=${prefix}`);
  if (!verbose) args.push('--loglevel=error');
  const r = spawnSync(process.execPath, args, { cwd: root, encoding: 'utf8', stdio: verbose ? 'inherit' : 'pipe' });
  if (r.status !== 0) {
    const out = `${r.stdout ?? ''}${r.stderr ?? ''}`.trim().split('\n');
    if (out.length > 1 || out[0]) console.log(out.slice(-25).map((l) => `  ${l}`).join('\n'));
    const why = r.error ? r.error.message : `node-gyp exited with ${r.status ?? r.signal}`;
    return skip(`the build failed (${why}); the output above says where; rerun with: node scripts/build-native.mjs --verbose`);
  }
  for (const n of names) {
    const out = join(root, 'build', 'Release', `${n}.node`);
    say(existsSync(out) ? `built build/Release/${n}.node` : `skipped ${n}: its sources are not in this package`);
  }
  return true;
}

function buildGuest() {
  const script = join(root, 'scripts', 'build-guest.ts');
  if (!existsSync(script)) return;
  let tsx;
  try {
    tsx = require.resolve('tsx');
  } catch {
    say('skipped the KVM guest image: tsx is not installed (it is a development dependency)');
    return;
  }
  const r = spawnSync(process.execPath, ['--import', tsx, script], { cwd: root, encoding: 'utf8', stdio: verbose ? 'inherit' : 'pipe' });
  if (r.status === 0) say('built the KVM guest image');
  else say(`skipped the KVM guest image: ${(`${r.stderr ?? ''}${r.stdout ?? ''}`.trim().split('\n').pop()) || `exit ${r.status}`}`);
}

try {
  buildAddons();
  buildGuest();
} catch (e) {
  say(`native build skipped: ${e?.message ?? e}`);
}
process.exit(0);
