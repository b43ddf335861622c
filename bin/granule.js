#!/usr/bin/env node
// Launcher for the `granule` command: runs the bundled CLI (dist/cli.js, made by `npm run build`).
import { existsSync } from 'node:fs';

const cli = new URL('../dist/cli.js', import.meta.url);
if (!existsSync(cli)) {
  console.error('granule: dist/cli.js is missing: run `npm run build` first');
  process.exit(1);
}
const { main } = await import(cli.href);
process.exitCode = await main(process.argv);
