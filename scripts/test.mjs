#!/usr/bin/env node
// Runs the uvu suite (TypeScript through tsx) and ends with one plain summary line,
// "N passed, N failed, N skipped", that CI and people can read at a glance.
import { spawn } from 'node:child_process';

// An optional pattern picks test files by name; only *.test.ts files ever run (test/fixtures holds
// C sources and logs that uvu must not import).
const pattern = process.argv[2] ? `^(?=.*(?:${process.argv[2]})).*\\.test\\.ts$` : '\\.test\\.ts$';
const child = spawn(process.execPath, ['--import', 'tsx', './node_modules/uvu/bin.js', 'test', pattern], {
  stdio: ['ignore', 'pipe', 'inherit'],
  env: { ...process.env, FORCE_COLOR: process.env.FORCE_COLOR ?? (process.stdout.isTTY ? '1' : '0') },
});
let out = '';
child.stdout.on('data', (d) => { out += d; process.stdout.write(d); });
child.on('close', (code) => {
  const plain = out.replace(/\x1b\[[0-9;]*m/g, '');
  const num = (label) => Number((plain.match(new RegExp(`${label}:\\s+(\\d+)`)) ?? [])[1] ?? NaN);
  const total = num('Total'), passed = num('Passed'), skipped = num('Skipped');
  if (Number.isNaN(total)) {
    console.log(`0 passed, 1 failed (the test runner ended with code ${code} before its summary)`);
    process.exit(code || 1);
  }
  // uvu's Total leaves skipped tests out.
  console.log(`\n${passed} passed, ${total - passed} failed, ${skipped} skipped`);
  process.exit(code ?? 1);
});
