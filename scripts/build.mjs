// Bundles the CLI and the library entry with esbuild (the simulator itself is built by asc).
import { build } from 'esbuild';

await build({
  entryPoints: { cli: 'src/cli.ts', index: 'src/index.ts', consts: 'src/consts.ts' },
  outdir: 'dist',
  bundle: true,
  platform: 'node',
  // jsonc-parser's default entry is UMD, whose requires esbuild cannot follow; its ESM build bundles.
  mainFields: ['module', 'main'],
  format: 'esm',
  target: 'node20',
  sourcemap: true,
  logLevel: 'warning',
  banner: { js: "import { createRequire as __cr } from 'node:module'; const require = __cr(import.meta.url);" },
});
