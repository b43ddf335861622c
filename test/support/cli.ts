// Running the CLI in-process (src/cli.ts main), from the sources: no build of dist/ needed.
import { main } from '../../src/cli.ts';
import type { WalkReport } from '../../src/walkfmt.ts';

/** `granule ARGS...`: its exit code and what it wrote to stdout and stderr, without colour. */
export async function runCli(args: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = '', err = '';
  const code = await main(['node', 'granule', ...args], { out: (s) => { out += s; }, err: (s) => { err += s; }, color: false });
  return { code, out, err };
}

/** `granule walk GVA -a r|w|x [--user] --json` on the demo space, parsed; throws unless it exits 0. */
export async function cliWalk(gva: bigint | string, kind: 'read' | 'write' | 'fetch', user: boolean): Promise<WalkReport & { space: unknown }> {
  const args = ['walk', typeof gva === 'string' ? gva : '0x' + gva.toString(16), '-a', kind === 'write' ? 'w' : kind === 'fetch' ? 'x' : 'r', '--json', ...(user ? ['--user'] : [])];
  const r = await runCli(args);
  if (r.code !== 0) throw new Error(`granule ${args.join(' ')} exited ${r.code}: ${r.err}`);
  return JSON.parse(r.out);
}
